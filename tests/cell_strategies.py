"""Random valid cell specs from the whole spec grammar, for the fuzz (``tests/test_fuzz.py``,
``bench/fuzz.py``).

One generator, :func:`generate`, draws a spec from a plain :class:`random.Random`, so that
``bench/fuzz.py --seed S`` is reproducible; :func:`cell_specs` / :func:`cells_with_sizes` are the
hypothesis strategies built on the same function through ``st.randoms()`` (the generator is
written so that a draw of 0 always takes the simpler branch, so hypothesis' shrinking of the
draws simplifies the spec; ``tests/test_fuzz.py`` turns it off because each check is slow and
shrinks with ``bench/fuzz.py``'s structural shrinker instead).

What a spec may contain (every drawn spec is valid by derive's rules: sizes agree, every declared
parameter is used, no cycles):

* one to three states, the first the output h, each of size hidden; intermediate nodes defined
  in any order (the spec's node order is sometimes shuffled: derive sorts them);
* parameters (hidden, hidden), (hidden, input), (hidden,); a readout with (output, hidden) and
  (output,) parameters;
* matvecs on x, on ``act(x)`` and ``(x * x)``, on previous states, on nodes of the same step,
  on compound expressions (``W @ (r * h_prev)``, Cho's GRU reset), nested (``A @ B @ x``), on
  an activation; shared matrices (one parameter in two places);
* activations at the top of a node (gates) and inside sums and products, nested activations;
* constants (``1 - z``, ``0.5 * h_prev``), subtraction, a leading unary minus, Hadamard products of
  2-3 factors, 1-D parameters as biases and as Hadamard factors (peepholes);
* states that ignore their previous value, cells that never read x, nodes reading only some of
  the previous states, matrices on a non-output state's previous value only, nodes nobody reads;
* names partly drawn from :data:`COLLIDING_NAMES` (and per-state variants such as ``h0``, ``S_h``,
  ``d_h_next``), chosen to collide with the names a code generator introduces, and Python
  keywords.

Activations: the intersection of the reference's table and ``derive.spec.activations.ACTIVATIONS``
(read for its names only), ``reciprocal`` only of an argument bounded away from 0, ``exp`` only
of a bounded argument.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import fuzz_reference

# Names a NumPy / numba code generator binds: locals of the kernel templates, runtime helpers,
# module names, loop indices.
COLLIDING_NAMES = (
    "U1", "s0", "s1", "d_h", "d_c", "d_h_next", "tanh_c", "sigmoid_c", "ones", "P", "J", "S",
    "V", "rt", "np", "t", "xs", "x_t", "params", "cache", "grads", "out", "dense", "steps",
    "batch", "n_hidden", "n_in", "dtype", "b", "j", "m", "math", "state", "state0", "dhs",
    "sens", "zero", "one", "A_x", "W_stack_x", "C_s0", "g_W", "k", "i",
    # more of the same kind: activation and module names, numba's locals
    "tanh", "sigmoid", "exp", "njit", "types", "half", "two", "OFF", "lo", "hi", "nil", "off",
    "prev", "new_state", "views", "whole", "carry", "dxs_rest", "b_stack_x", "mask", "lengths",
    "held", "SPEC_DIGEST",
    # symbols the LaTeX and text printers reserve: d(.), I, L, M_t, N_t
    "d", "I", "L", "M", "N",
)
KEYWORDS = ("lambda", "in", "def", "class", "return", "None", "True", "if", "for", "not",
            "is", "and", "or", "import", "yield", "pass", "global", "with", "while")
CONSTANTS = ("1", "0.5", "2", "0.25", "1.5")

SUM, PROD, MV, ATOM = 0, 1, 2, 3  # precedence of an expression's top operator
DIM = {"hidden": "H", "input": "X", "output": "O"}


def derive_activation_names() -> list[str]:
    """The activations both derive and the reference know (derive's dict read for its keys)."""
    from derive.spec.activations import ACTIVATIONS

    both = set(ACTIVATIONS) & set(fuzz_reference.ACTIVATIONS)
    first = [a for a in ("tanh", "sigmoid") if a in both]  # a 0 draw (shrinking) picks tanh
    return first + sorted(both - set(first))


class _Gen:
    """One spec from one random source (see :func:`generate`)."""

    def __init__(self, rnd: random.Random, activations: Sequence[str], collide: float):
        self.r = rnd
        self.acts = list(activations)
        if not self.acts:
            raise ValueError("no activations to draw from")
        self.collide = collide
        self.taken: set[str] = {"x"}
        self.params: dict[str, tuple[str, ...]] = {}
        self.readout_params: dict[str, tuple[str, ...]] = {}
        self.counter = 0
        self.states: list[str] = []
        self.defined: list[str] = []  # nodes of step t defined so far (states included)
        self.unused: list[str] = []  # intermediates nobody reads yet
        self.prev: list[str] = []  # previous states the current node may read
        self.has_x = True
        self.readout_mode = False
        self.readout_nodes: list[str] = []
        self.current: str | None = None

    # -- random helpers: a 0 draw always takes the first / simpler branch ----------------------
    def maybe(self, p: float) -> bool:
        """True with probability p; False when the draw shrinks to 0."""
        return self.r.random() >= 1.0 - p

    def pick(self, options: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
        if weights is None:
            return options[self.r.randrange(len(options))]
        u = self.r.random() * sum(weights)
        for opt, w in zip(options, weights, strict=True):
            if u < w:
                return opt
            u -= w
        return options[-1]

    # -- names -----------------------------------------------------------------------------------
    def _ok(self, name: str, param: bool) -> bool:
        if name in self.taken or name.endswith("_prev") or "__hat" in name:
            return False
        return not param or name[:1].isalpha()

    def fresh(self, plain: str, *, param: bool = False) -> str:
        """A new name: sometimes a colliding or keyword name, else ``plain`` (numbered)."""
        if self.maybe(self.collide):
            dynamic = [f"{s}0" for s in self.states] + [f"S_{s}" for s in self.states] + \
                      [f"d_{s}_next" for s in self.states] + [f"C_{s}" for s in self.states] + \
                      [f"g_{p}" for p in self.params] + [f"JM_{s}_{s}" for s in self.states]
            pool = [*COLLIDING_NAMES, *dynamic] if self.maybe(0.8) else list(KEYWORDS)
            pool = [n for n in pool if self._ok(n, param)]
            if pool:
                name = self.pick(pool)
                self.taken.add(name)
                return name
        name = plain
        while not self._ok(name, param):
            self.counter += 1
            name = f"{plain}{self.counter}"
        self.taken.add(name)
        return name

    # -- parameters ------------------------------------------------------------------------------
    def param(self, shape: tuple[str, ...], plain: str) -> str:
        table = self.readout_params if self.readout_mode else self.params
        same = [p for p, s in table.items() if s == shape]
        if same and self.maybe(0.15):  # a shared parameter
            return self.pick(same)
        name = self.fresh(plain, param=True)
        table[name] = shape
        return name

    def matrix(self, on: str) -> str:
        if self.readout_mode:
            return self.param(("output", "hidden"), "V")
        return self.param(("hidden", on), "U" if on == "input" else "W")

    def vector(self, plain: str = "b") -> str:
        return self.param(("output",) if self.readout_mode else ("hidden",), plain)

    # -- activations -----------------------------------------------------------------------------
    def act(self, inner: str) -> str:
        """act(inner) for a random activation; reciprocal and exp get a safe argument."""
        fn = self.pick(self.acts)
        if fn == "reciprocal":
            safe = [f"1 + {a}({inner})" for a in ("softplus", "sigmoid") if a in self.acts] + \
                   [f"2 + {a}({inner})" for a in ("tanh", "softsign", "hard_sigmoid")
                    if a in self.acts]
            if not safe:
                return self.act(inner) if len(self.acts) > 1 else f"2 + {inner}"
            return f"reciprocal({self.pick(safe)})"
        if fn == "exp":
            safe = [f"0.5 * {a}({inner})" for a in ("tanh", "sigmoid", "softsign",
                                                    "hard_sigmoid") if a in self.acts]
            if not safe:
                return self.act(inner) if len(self.acts) > 1 else f"exp({inner})"
            return f"exp({self.pick(safe)})"
        return f"{fn}({inner})"

    # -- expressions: (text, precedence) -----------------------------------------------------------
    @staticmethod
    def wrap(e: tuple[str, int], need: int) -> str:
        return e[0] if e[1] >= need else f"({e[0]})"

    def ref(self) -> tuple[str, int] | None:
        """A hidden-sized name: a node of this step (preferring unread ones) or a previous state;
        None when there is none."""
        nodes = [n for n in self.defined if n != self.current]
        prevs = [f"{s}_prev" for s in self.prev]
        opts = []
        if prevs:
            opts.append("prev")
        if nodes:
            opts.append("node")
        if not opts:
            return None
        kind = self.pick(opts)
        if kind == "prev":
            return self.pick(prevs), ATOM
        unread = [n for n in self.unused if n in nodes]
        name = self.pick(unread) if unread and self.maybe(0.7) else self.pick(nodes)
        if name in self.unused:
            self.unused.remove(name)
        return name, ATOM

    def leaf(self) -> tuple[str, int]:
        got = self.ref()
        if got is not None and not self.maybe(0.15):
            return got
        if self.readout_mode:
            return self.vector("b_y"), ATOM
        if self.has_x and (got is None or self.maybe(0.5)):
            return f"{self.matrix('input')} @ x", MV
        return self.vector(), ATOM

    def x_operand(self) -> str:
        k = self.pick(["x", "act", "sq"], [0.8, 0.12, 0.08])
        if k == "act":
            return self.act("x")
        return "x" if k == "x" else "(x * x)"

    def matvec(self, depth: int) -> tuple[str, int]:
        """M @ operand: x, a name, a compound, a nested matvec or an activation."""
        if self.readout_mode:  # mostly of the output state h, sometimes of another state
            on = self.pick(["state", "act", "compound"], [0.6, 0.2, 0.2]) if depth > 0 \
                else "state"
            V = self.matrix("hidden")

            def state() -> str:
                return self.states[0] if not self.maybe(0.1) else self.pick(self.states)

            if on == "state":
                return f"{V} @ {state()}", MV
            if on == "act":
                return f"{V} @ {self.act(state())}", MV
            return f"{V} @ ({state()} {self.pick(['*', '+', '-'])} {state()})", MV
        kinds = ["x", "ref", "compound", "nested", "act"]
        weights = [0.4 if self.has_x else 0.0, 0.35, 0.1, 0.07, 0.08]
        if depth <= 0:
            weights = [weights[0], weights[1], 0, 0, 0]
        if self.ref() is None and not self.has_x:
            return self.leaf()  # nothing to multiply: a bias
        kind = self.pick(kinds, weights)
        if kind == "x":
            return f"{self.matrix('input')} @ {self.x_operand()}", MV
        if kind == "ref":
            got = self.ref()
            if got is None:
                return f"{self.matrix('input')} @ {self.x_operand()}", MV
            return f"{self.matrix('hidden')} @ {got[0]}", MV
        if kind == "compound":  # W @ (r * h_prev), W @ (a - b)
            inner = self.prod(depth - 1) if self.maybe(0.6) else self.sum(depth - 1)
            return f"{self.matrix('hidden')} @ {self.wrap(inner, ATOM)}", MV
        if kind == "nested":
            inner = self.matvec(depth - 1)
            if inner[1] != MV:
                inner = (f"({inner[0]})", ATOM)
            return f"{self.matrix('hidden')} @ {inner[0]}", MV
        inner = self.vec(depth - 1)
        return f"{self.matrix('hidden')} @ {self.act(inner[0])}", MV

    def sum(self, depth: int, const_ok: bool = True) -> tuple[str, int]:
        n = self.pick([2, 3], [0.75, 0.25])
        terms: list[str] = []
        has_const = False
        for k in range(n):
            if const_ok and not has_const and k == 0 and self.maybe(0.12):
                terms.append(self.pick(CONSTANTS))
                has_const = True
                continue
            t = self.vec(depth - 1)
            terms.append(self.wrap(t, PROD))
        text = terms[0]
        if self.maybe(0.12):
            text = "-" + text if self.maybe(0.5) else "- " + text
        for t in terms[1:]:
            text += f" {self.pick(['+', '-'], [0.7, 0.3])} {t}"
        return text, SUM

    def prod(self, depth: int) -> tuple[str, int]:
        n = self.pick([2, 3], [0.75, 0.25])
        factors: list[str] = []
        has_const = False
        for k in range(n):
            kind = self.pick(["vec", "const", "peep", "one_minus"], [0.7, 0.1, 0.1, 0.1])
            if kind == "const" and not has_const and k < n - 1:
                factors.append(self.pick(CONSTANTS))
                has_const = True
            elif kind == "peep":
                factors.append(self.vector("p"))
            elif kind == "one_minus":
                r = self.ref() or self.leaf()
                factors.append(f"({self.pick(CONSTANTS)} - {self.wrap(r, PROD)})")
            else:
                factors.append(self.wrap(self.vec(depth - 1), PROD))
        return " * ".join(factors), PROD

    def vec(self, depth: int) -> tuple[str, int]:
        """A hidden-sized (readout: output-sized) expression of at most ``depth`` levels."""
        if depth <= 0:
            return self.leaf() if self.maybe(0.6) or self.readout_mode else self.matvec(0)
        kind = self.pick(["leaf", "matvec", "act", "sum", "prod"], [0.3, 0.25, 0.15, 0.15, 0.15])
        if kind == "leaf":
            return self.leaf()
        if kind == "matvec":
            return self.matvec(depth)
        if kind == "act":
            return self.act(self.vec(depth - 1)[0]), ATOM
        if kind == "sum":
            return self.sum(depth)
        return self.prod(depth)

    def gate_pre(self, depth: int) -> str:
        """W_x x + W_h1 s1_prev + ... + b, with a random subset of the terms (some peephole)."""
        terms = []
        if self.has_x and not self.maybe(0.15):
            terms.append(f"{self.matrix('input')} @ {self.x_operand()}")
        for s in self.prev:
            if not self.maybe(0.3):
                if self.maybe(0.12):
                    terms.append(f"{self.vector('p')} * {s}_prev")  # peephole
                else:
                    terms.append(f"{self.matrix('hidden')} @ {s}_prev")
        if self.maybe(0.25):
            terms.append(self.wrap(self.vec(depth - 1), PROD))
        if not terms or not self.maybe(0.2):
            terms.append(self.vector())
        if len(terms) > 1 and self.maybe(0.3):
            self.r.shuffle(terms)
        return " + ".join(terms)

    def node(self, state: bool) -> str:
        """One node expression: a gate, a state update in a classic shape, or anything."""
        shapes = ["gate", "any", "interp", "lstm", "residual", "reset", "scaled"]
        weights = [0.4, 0.3, 0.08, 0.08, 0.06, 0.05, 0.03] if not state else \
            [0.2, 0.3, 0.15, 0.15, 0.1, 0.05, 0.05]
        kind = self.pick(shapes, weights)
        gates = [n for n in self.defined if n != self.current]
        if kind == "gate":
            return self.act(self.gate_pre(2))
        if kind == "interp" and gates:  # (1 - z) * n + z * h_prev
            z = self.pick(gates)
            a = self.wrap(self.ref() or self.leaf(), PROD)
            b = self.wrap(self.ref() or self.leaf(), PROD)
            return f"(1 - {z}) * {a} + {z} * {b}"
        if kind == "lstm" and gates:  # f * c_prev + i * g
            a = self.wrap(self.ref() or self.leaf(), PROD)
            b = self.wrap(self.ref() or self.leaf(), PROD)
            c = self.wrap(self.ref() or self.leaf(), PROD)
            d = self.wrap(self.vec(1), PROD)
            return f"{a} * {b} + {c} * {d}"
        if kind == "residual":  # tanh(W @ x) + h_prev
            inner = self.act(self.wrap(self.matvec(1), SUM))
            rest = self.wrap(self.ref() or self.leaf(), PROD)
            return f"{inner} + {rest}"
        if kind == "reset" and self.prev:  # tanh(U x + b + r * (W h_prev + b2)), W @ (r * h_prev)
            r = self.wrap(self.ref() or self.leaf(), PROD)
            s = self.pick(self.prev)
            pre = f"{self.matrix('input')} @ {self.x_operand()} + " if self.has_x else ""
            if self.maybe(0.5):
                return self.act(f"{pre}{self.vector()} + {r} * ({self.matrix('hidden')} @ "
                                f"{s}_prev + {self.vector()})")
            return self.act(f"{pre}{self.matrix('hidden')} @ ({r} * {s}_prev)")
        if kind == "scaled":  # 0.5 * h_prev + 0.5 * tanh(...)
            a = self.wrap(self.ref() or self.leaf(), PROD)
            return f"{self.pick(CONSTANTS)} * {a} + {self.pick(CONSTANTS)} * " \
                   f"{self.act(self.gate_pre(1))}"
        return self.vec(3)[0]

    # -- the whole cell --------------------------------------------------------------------------
    def cell(self, name: str) -> dict[str, Any]:
        r = self
        n_states = r.pick([1, 2, 3], [0.45, 0.35, 0.2])
        for k in range(n_states):
            plain = ("h", "c", "m")[k]
            sname = self.fresh(plain) if k or r.maybe(0.5) else plain
            self.taken.add(sname)
            self.states.append(sname)
        self.has_x = not r.maybe(0.12)
        n_nodes = r.pick([0, 1, 2, 3, 4], [0.15, 0.25, 0.25, 0.2, 0.15])
        inter = [self.fresh(("g", "a", "z", "f", "o")[k % 5]) for k in range(n_nodes)]
        order: list[tuple[str, bool]] = [(n, False) for n in inter]
        perm = list(self.states)
        r.r.shuffle(perm)
        for s in perm:  # states after the intermediates, sometimes interleaved
            pos = len(order) if not r.maybe(0.3) else r.r.randint(0, len(order))
            order.insert(pos, (s, True))
        nodes: dict[str, str] = {}
        for k, (nname, is_state) in enumerate(order):
            self.current = nname
            # which previous states this node reads (some nodes read only some, or none)
            self.prev = [s for s in self.states if not r.maybe(0.35)]
            text = self.node(is_state)
            last_state = is_state and all(st for _, st in order[k + 1:])
            if last_state and self.unused and not r.maybe(0.1):  # leave no node unread
                extra = " + ".join(self.unused)
                text = f"({text}) * {extra}" if r.maybe(0.3) else f"{text} + {extra}"
                self.unused.clear()
            nodes[nname] = text
            self.defined.append(nname)
            if not is_state:
                self.unused.append(nname)
        self.current = None
        spec: dict[str, Any] = {"name": name, "params": dict(self.params)}
        if r.maybe(0.25):  # the spec's node order need not be topological
            items = list(nodes.items())
            r.r.shuffle(items)
            nodes = dict(items)
        spec["nodes"] = nodes
        spec["states"] = tuple(self.states)
        if r.maybe(0.3):
            self.readout_mode = True
            readout: dict[str, str] = {}
            for k in range(r.pick([1, 2], [0.75, 0.25])):
                yname = self.fresh("y")
                self.current = yname
                pre = self.matvec(1)[0]
                if r.maybe(0.6):
                    pre += f" + {self.vector('b_y')}"
                if k and r.maybe(0.5):
                    pre += f" * {self.readout_nodes[0]}"
                readout[yname] = self.act(pre) if r.maybe(0.6) else pre
                self.readout_nodes.append(yname)
            spec["readout_params"] = dict(self.readout_params)
            spec["readout"] = readout
        return spec


def generate(rnd: random.Random, *, activations: Iterable[str] | None = None,
             collide: float = 0.2, name: str = "fuzz") -> dict[str, Any]:
    """A random valid cell spec (the plain-data format of ``derive/spec/cells.py``).

    ``activations``: the names to draw from (default: :func:`derive_activation_names`);
    ``collide``: how often a name comes from :data:`COLLIDING_NAMES` / :data:`KEYWORDS`."""
    acts = list(activations) if activations is not None else derive_activation_names()
    return _Gen(rnd, acts, collide).cell(name)


def cell_specs(*, activations: Iterable[str] | None = None, collide: float = 0.2):
    """The hypothesis strategy of :func:`generate` (shrinks through the random draws)."""
    from hypothesis import strategies as st

    acts = list(activations) if activations is not None else derive_activation_names()
    return st.randoms(use_true_random=False).map(
        lambda rnd: generate(rnd, activations=acts, collide=collide))


def cells_with_sizes(*, activations: Iterable[str] | None = None, collide: float = 0.2):
    """The hypothesis strategy of (spec, sizes) pairs, both from one random source."""
    from hypothesis import strategies as st

    acts = list(activations) if activations is not None else derive_activation_names()

    def both(rnd: random.Random) -> tuple[dict[str, Any], dict[str, int]]:
        spec = generate(rnd, activations=acts, collide=collide)
        return spec, sizes_for(rnd)

    return st.randoms(use_true_random=False).map(both)


def spec_text(spec: Mapping[str, Any]) -> str:
    """One readable line: states, parameters with their shapes, nodes, readout."""
    def shape(v) -> str:
        return ",".join(DIM.get(x, x) for x in ((v,) if isinstance(v, str) else v))

    def shapes(d) -> str:
        return ", ".join(f"{k}:({shape(v)})" for k, v in dict(d).items())

    nodes = "; ".join(f"{k} = {v}" for k, v in dict(spec["nodes"]).items())
    text = f"states={tuple(spec['states'])} params[{shapes(spec['params'])}] | {nodes}"
    if spec.get("readout"):
        ro = "; ".join(f"{k} = {v}" for k, v in dict(spec["readout"]).items())
        text += f" | readout[{shapes(spec.get('readout_params') or {})}] {ro}"
    return text


def sizes_for(rnd: random.Random) -> dict[str, int]:
    """Small sizes: n_hidden 2-4, n_in 1-3, n_out 1-2, T 3, B 2."""
    return {"n_hidden": rnd.randint(2, 4), "n_in": rnd.randint(1, 3), "n_out": rnd.randint(1, 2),
            "T": 3, "B": 2}
