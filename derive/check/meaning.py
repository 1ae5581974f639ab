"""What a written expression is worth in the author's cell (issue 16, items 2 and 3).

:class:`Evaluator` turns an AST of :mod:`derive.check.grammar` into numbers of a
:class:`~derive.check.world.World`: a symbol at a time is the node's value (a unit index picks a
component, ``w_{ij}`` an entry of W), ``\\frac{\\partial E}{\\partial x^t}``, ``\\delta x^t`` and
``\\nabla_{x^t} E`` are adjoints, ``\\frac{\\partial u}{\\partial v}`` and ``\\nabla_v u`` are
Jacobians (one step, the states of t-1 held; or total, through time, in forward-mode lines),
``\\sigma'(z)``, ``\\tanh^2``, ``diag(v)``, transposes, ``\\sum_t``, sums over units and the
Kronecker ``\\delta(a, b)`` are what they say. Aliases (names the document introduces) are
evaluated from their latest definition above the line.

The premises of :mod:`derive.check.premises` give the rest a value: an abstract function
``f(x_j, h_{j-1}, w)`` is the cell's step at those arguments and ``\\partial_h f(\\dots)`` its
partial derivative in the argument written with h (``\\partial_w`` of a call that has no
argument w, ``\\partial_w l(y_t, o_t)``, is the total derivative); ``w`` is the parameter vector;
``\\mathbf{E}[\\dots]`` averages over the outcomes of the random variables it reads; a sum over
steps whose index times symbols (``\\sum_{i=t}^{1} \\dots x_i``) puts the index in their scripts
and runs down where it is written so; ``\\sum_{a \\in \\{f, i, c, o\\}}`` binds a to each gate
(``W_a`` -> ``W_f``; ``c`` -> the node its weight ``W_C`` feeds). A node, input or target
written without its time (``h`` in ``\\frac{dh}{da_C}``, ``\\hat{y}``) is read at the line's
step, and a parameter whose subscript differs only in case (``W_{xc}``) as the cell's.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import grammar as g
from . import lexicon as lx
from .cell import Cell, Key, Reading, read_atom, time_of
from .premise_values import NeedRandom, PremiseValues
from .premises import Premises
from .world import (
    H,
    NotJudged,
    Pert,
    ShapeError,
    World,
    apply,
    cell_eval,
    pert_maker,
    plus,
    product,
)


@dataclass
class Alias:
    key: Key
    expr: g.Node
    pos: int
    timevar: bool  # written at time t: evaluated at the time it is read at
    # the time its left-hand side is written at: \gamma_t^{(k-1)} = dJ^{(t)}/dh^{(k-1)} is
    # read at k-1 of a step k, its t the step of the line's loss
    time: tuple | None = None


@dataclass
class Env:
    t: int
    T: int
    idx: dict[str, int] = field(default_factory=dict)
    mode: str = "step"        # how \frac{\partial u}{\partial v} is read: step | total
    override: dict = field(default_factory=dict)  # (key, time) -> value (a perturbed world)
    syms: dict = field(default_factory=dict)      # a \sum over named gates: a -> f
    # a line whose step is written (k) (Goodfellow et al.'s h^{(k-1)}): t is then the step of
    # a per-step loss J^{(t)}, at or after k; loss_at: the step whose loss is differentiated
    lt: int | None = None
    loss_at: int | None = None

    def at(self, t: int) -> Env:
        """The same reading at another step."""
        return dataclasses.replace(self, t=t, idx=dict(self.idx))


class Evaluator(PremiseValues):
    """The value of a written expression at a step (see the module docstring)."""

    def __init__(self, world: World, aliases: list[Alias], timed: set[Key], pos: int,
                 section=None, premises: Premises | None = None):
        self.w = world
        self.premises = premises or Premises()
        self.cell: Cell = world.cell
        self.timed = timed | set(world.cell.nodes) | set(world.cell.inputs)
        self.pos = pos
        self.section = section or (lambda _p: 0)
        self.all_aliases = aliases
        self.aliases = [a for a in aliases if a.pos < pos]
        self.values = world.inner
        self.params = world.params
        self.inputs = world.inputs
        self.node_defs: list[tuple[Key, g.Node, int]] = []
        self.focus: g.Atom | None = None   # the node a line is about (see _bare_derivative)
        # derivatives of a node by a name it does not read (the chain rule through m_t where
        # the document's m_t is not the node's pre-activation): a value that differs is then
        # no verdict on the line
        self.unlinked: list[str] = []
        self._busy: set = set()   # the definitions being evaluated (one that reads itself)
        # copies of a node the document differentiates by (s_a, s_b of s): copy -> (the node,
        # its one reader), the document's one assignment (DocumentJudge._copy_readers)
        self.copies: dict[Key, tuple[Key, tuple]] = {}

    # -- symbols -----------------------------------------------------------------------------
    def reading(self, a: g.Atom) -> Reading:
        """An atom read; a node, input or target written without its time (``h`` beside
        ``h_{t-1}``, ``\\hat{y}``, ``x`` in ``\\frac{d\\sigma}{dx}``) is read at the line's step."""
        r = read_atom(a, self.timed)
        if r.time is not None and r.time[0] == "k" and len(r.indices) == 1 and \
                r.key.name_sub is None and (Key(r.key.base, r.indices[0]) in self.cell.params
                                            or any(al.key == Key(r.key.base, r.indices[0])
                                                   for al in self.all_aliases)):
            # W_{q}^{(k)}, z_{q}^{(k)}: the step's copy of W_q, z_q at k, not an entry q
            return dataclasses.replace(r, key=Key(r.key.base, r.indices[0]), indices=())
        if r.time is None and not r.indices and a.sup is None and (
                r.key in self.cell.nodes or r.key in self.cell.inputs or
                r.key in self.cell.targets):
            return dataclasses.replace(r, time=("t", 0, None))
        return r

    def resolve(self, a: g.Atom, env: Env) -> g.Atom:
        """An atom with the names a sum over gates binds put in (``W_a`` -> ``W_f``; ``a_t``
        -> the gate named c: the node its weight W_c feeds)."""
        if not env.syms:
            return a
        base, sub = a.base, a.sub
        if base in env.syms:
            base = self.gate_of(env.syms[base]).base
        if sub in env.syms:
            sub = env.syms[sub]
        return a if (base, sub) == (a.base, a.sub) else dataclasses.replace(a, base=base, sub=sub)

    def gate_of(self, name: str) -> Key:
        """The node a gate's name stands for: the node of that name, else the one whose
        equation reads the weight with that subscript (``c`` -> the candidate, read through
        ``W_C``)."""
        if Key(name) in self.cell.nodes:
            return Key(name)
        for k in self.cell.order:
            for a in g.walk(self.cell.nodes[k]):
                if isinstance(a, g.Atom):
                    p = self.param_of(read_atom(a, self.timed))
                    if p is not None and p.name_sub is not None and \
                            p.name_sub.lower() == name.lower():
                        return k
        raise NotJudged(f"the gate {name} of the sum is not a node of the cell")

    def param_of(self, r: Reading) -> Key | None:
        """The parameter a reading names: itself, the matrix of an entry (``w_{ij}``), or the
        one parameter whose subscript differs only in case (``W_{xc}`` for ``W_{xC}``)."""
        if r.key in self.cell.params:
            return r.key
        mat = self.entry_of(r)
        if mat is not None:
            return mat
        if r.key.name_sub is None or r.time is not None or r.key in self.cell.nodes:
            return None
        same = [k for k in self.cell.params if k.base == r.key.base and k.name_sub is not None
                and k.name_sub.lower() == r.key.name_sub.lower()]
        return same[0] if len(same) == 1 else None

    def step(self, r: Reading, env: Env) -> int:
        assert r.time is not None
        var, off, sym = r.time
        if var == "n":
            return off
        base = env.T if var == "T" else env.t
        if var == "k":
            base = env.idx.get("k", env.t)
        elif var == "t" and env.lt is not None:
            base = env.lt
        for sign, name in re.findall(r"([+-])([^+-]+)", sym or ""):
            if name in ("t", "T"):
                val = env.t if name == "t" else env.T
            elif name in env.idx:
                val = env.idx[name]
            else:
                raise NotJudged(f"a time {var}{sym} with {name} not bound by a sum")
            off += val * (1 if sign == "+" else -1)
        return base + off

    def alias(self, key: Key) -> Alias | None:
        """The definition of a name: the nearest one in the line's section, else the latest
        one above."""
        here = self.section(self.pos)
        same = [a for a in self.all_aliases if a.key == key and self.section(a.pos) == here]
        if same:
            return min(same, key=lambda a: abs(a.pos - self.pos))
        for a in reversed(self.aliases):
            if a.key == key:
                return a
        return None

    def _alias_timed(self, key: Key, timed: bool, var: str | None = None) -> Alias | None:
        """The nearest definition of a name written with a time (``J^{(t)} = ...``; with
        ``var``, that step letter) or without one (``J = ...``)."""
        cands = [a for a in self.all_aliases if a.key == key and a.timevar == timed and (
            var is None or (a.time is not None and a.time[0] == var))]
        here = self.section(self.pos)
        same = [a for a in cands if self.section(a.pos) == here]
        above = [a for a in cands if a.pos < self.pos]
        pool = same or above
        return min(pool, key=lambda a: abs(a.pos - self.pos)) if pool else None

    def atom(self, a: g.Atom, env: Env) -> np.ndarray:
        a = self.resolve(a, env)
        r = self.reading(a)
        if a.primes:
            return self.prime_of(a, r, env)
        if r.key in self.copies and r.time is not None:   # a copy has its node's value
            return self.pick(self.node(self.copies[r.key][0], self.step(r, env), env),
                             r.indices, env, a)
        if r.key in self.premises.dists:
            which = ("rv", r.key, self.step(r, env) if r.time is not None else env.t)
            if which in env.override:
                return env.override[which]
            raise NeedRandom(which, a.text)
        al = self.alias(r.key) if (r.key not in self.cell.nodes) else None
        if al is None and r.time is None and r.key not in self.cell.params:
            al = self.alias(Key(a.base, a.sub))
        if al is not None and al.timevar != (r.time is not None):
            # J = \sum_t J^{(t)} beside J^{(t)} = ...: the definition written with (or
            # without) a time, as the symbol is read
            al = self._alias_timed(r.key, r.time is not None) or al
        if al is not None and r.time is not None and al.time is not None and \
                al.time[0] != r.time[0] and "k" in (r.time[0], al.time[0]):
            # \delta_t^{(k)} read where \delta_t^{(t)} (its loss at the same step) is also
            # defined: the definition written with the same step letter
            same = self._alias_timed(r.key, True, r.time[0])
            al = same or al
        if al is not None:
            sub_env = env
            if al.timevar and r.time is not None:
                sub_env = env.at(self.step(r, env))
                if al.time is not None and al.time[0] == "k":
                    sub_env = dataclasses.replace(
                        sub_env, t=sub_env.t - al.time[1],
                        lt=env.lt if env.lt is not None else env.t)
            elif r.time is not None and r.time[0] == "k":
                sub_env = env.at(self.step(r, env))   # z_{f}^{(k)} of z_f = b_f + W_f h^{(t-1)}
            if env.lt is not None and (al.time is None or al.time[0] != "k"):
                sub_env = dataclasses.replace(sub_env, lt=None)   # its t is its own step
            if (al.key, al.pos) in self._busy:
                raise NotJudged(f"the definition of {a.text} reads itself")
            self._busy.add((al.key, al.pos))
            try:
                v = self.eval(al.expr, sub_env)
            finally:
                self._busy.discard((al.key, al.pos))
            return self.pick(v, r.indices, env, a)
        if r.key in self.cell.nodes or r.key in self.cell.inputs:
            if r.time is None:
                raise NotJudged(f"{a.text} without its time index")
            s = self.step(r, env)
            v = self.node(r.key, s, env)
            return self.pick(v, r.indices, env, a)
        if r.key in self.cell.targets:
            s = self.step(r, env)
            if (r.key, s) not in self.w.targets:
                raise NotJudged(f"the target {a.text} at step {s} does not exist")
            return self.pick(self.w.targets[(r.key, s)], r.indices, env, a)
        p = self.param_of(r)
        if p is not None:
            return self.pick(self.params[p], r.indices, env, a)
        if r.key in self.premises.param_vector:
            return self.w.flat_params(self.params)
        if r.key in self.premises.free:
            return np.asarray(self.premises.free[r.key])
        if a.base in env.idx and a.sub is None:
            return np.asarray(float(env.idx[a.base]))
        if a.base == "T" and a.sub is None and a.sup is None:
            return np.asarray(float(env.T))   # the number of steps (\\frac{1}{T} \\sum_t)
        raise NotJudged(f"{a.text} is not a symbol of the cell nor defined in the document")

    def entry_of(self, r: Reading) -> Key | None:
        """``w_{ij}`` names an entry of W, ``b^k_y`` one of b_y."""
        if not r.indices:
            return None
        for k in self.cell.params:
            if k.base.lower() == r.key.base.lower() and k.name_sub == r.key.name_sub:
                return k
        return None

    def pick(self, v: np.ndarray, indices: tuple[str, ...], env: Env, a: g.Atom) -> np.ndarray:
        if not indices:
            return v
        v = np.asarray(v)
        try:
            ix = tuple(env.idx[i] for i in indices)
        except KeyError as exc:
            raise NotJudged(f"the index {exc.args[0]} of {a.text} is not bound") from None
        if len(ix) != v.ndim:
            raise NotJudged(f"{a.text}: {len(ix)} indices on a {v.ndim}-index quantity")
        if any(i >= n for i, n in zip(ix, v.shape, strict=True)):
            return np.asarray(0.0)
        return np.asarray(v[ix])

    def node(self, k: Key, s: int, env: Env) -> np.ndarray:
        if (k, s) in env.override:
            return env.override[(k, s)]
        if k in self.cell.inputs:
            if (k, s) not in self.inputs:
                raise NotJudged(f"the input at step {s} does not exist")
            return self.inputs[(k, s)]
        if (k, s) not in self.values:
            raise NotJudged(f"{k.latex} at step {s} does not exist (steps 1..{self.w.T})")
        return self.values[(k, s)]

    def prime_of(self, a: g.Atom, r: Reading, env: Env) -> np.ndarray:
        """``h'_t`` / ``{h^i_1}'``: the derivative of the node's activation at its
        pre-activation."""
        if r.key not in self.cell.nodes or r.time is None:
            raise NotJudged(f"{a.text}: a prime on a symbol that is not a node of the cell")
        e = self.cell.nodes[r.key]
        if not isinstance(e, g.Call) or e.arg is None:
            raise NotJudged(f"{a.text}: the node is not an activation of a pre-activation")
        s = self.step(r, env)
        z = self.local(e.arg, s)
        return self.pick(apply(self.cell, e.fn, z, 1, 1), r.indices, env, a)

    def local(self, e: g.Node, s: int) -> np.ndarray:
        """A sub-expression of a node's equation at step s."""
        from .world import cell_eval

        def lookup(key: Key, lag: int) -> np.ndarray:
            if key in self.cell.nodes:
                return self.values[(key, s - lag)]
            if key in self.w.params:
                return self.w.params[key]
            return self.w.inputs[(key, s)]
        return cell_eval(self.cell, e, lookup)

    # -- expressions ---------------------------------------------------------------------------
    def eval(self, e: g.Node, env: Env) -> np.ndarray:
        m = getattr(self, "_" + type(e).__name__.lower(), None)
        if m is None:
            raise NotJudged(f"{type(e).__name__} is not read")
        return m(e, env)

    def _num(self, e: g.Num, env: Env) -> np.ndarray:
        return np.asarray(float(e.value))

    def _atom(self, e: g.Atom, env: Env) -> np.ndarray:
        return self.atom(e, env)

    def _add(self, e: g.Add, env: Env) -> np.ndarray:
        out = None
        for sign, t in e.terms:
            v = sign * np.asarray(self.eval(t, env))
            if out is None:
                out = v
            else:
                out = plus(out, v)
        return out  # type: ignore[return-value]

    def _mul(self, e: g.Mul, env: Env) -> np.ndarray:
        acc = self.eval(e.factors[0], env)
        for op, f in zip(e.ops, e.factors[1:], strict=True):
            v = self.eval(f, env)
            if self._stacked(f, env) and np.ndim(acc) == 2 and np.ndim(v) == 2 \
                    and v.shape[0] == 1 and acc.shape[1] == v.shape[1] > 1:
                v = v.reshape(-1)   # W_o [h_{t-1}, x_t]: a matrix times the stacked column
            acc = product(acc, v, op)
        return acc

    def _stacked(self, f: g.Node, env: Env) -> bool:
        """A stack, or a name the document gives to one (``X = (x_t | h_{t-1})``)."""
        if isinstance(f, g.Stack):
            return True
        if isinstance(f, g.Atom):
            r = self.reading(self.resolve(f, env))
            al = self.alias(r.key) if r.key not in self.cell.nodes else None
            return al is not None and isinstance(al.expr, g.Stack)
        return False

    def _div(self, e: g.Div, env: Env) -> np.ndarray:
        return np.asarray(self.eval(e.a, env)) / np.asarray(self.eval(e.b, env))

    def _pow(self, e: g.Pow, env: Env) -> np.ndarray:
        v = np.asarray(self.eval(e.base, env))
        exp = e.exp if isinstance(e.exp, int) else self._bound(e.exp, env, 0)
        if v.ndim == 2 and v.shape[0] == v.shape[1] and v.shape[0] > 1 and exp >= 0:
            return np.linalg.matrix_power(v, exp)
        return v ** exp

    def _tr(self, e: g.Tr, env: Env) -> np.ndarray:
        v = np.asarray(self.eval(e.of, env))
        if v.ndim == 0:
            return v
        if v.ndim == 1:   # a column's transpose is a row; in a cell of rows, a row's a column
            return v.reshape(-1, 1) if self.cell.rows else v.reshape(1, -1)
        if v.shape[0] == 1:
            return v.reshape(-1)
        return v.T

    def _call(self, e: g.Call, env: Env) -> np.ndarray:
        if e.fn == "prod" and isinstance(e.arg, g.Stack):
            return self._chain_product(e.arg, env)
        if e.fn in self.premises.abstract or e.fn in self.premises.losses:
            if e.primes or e.power != 1:
                raise NotJudged(f"{e.fn} with a prime or a power")
            return self.abstract(e, env, self.arguments(e, env))
        if e.fn in self.premises.functions and e.arg is not None and not e.primes:
            fd = self.premises.functions[e.fn]
            z = self.eval(e.arg, env)
            out = cell_eval(self.cell, fd.body, lambda _k, _lag: z)
            return out ** e.power if e.power != 1 else out
        if isinstance(e.arg, g.Stack):
            raise NotJudged(f"{e.fn} of several arguments, a function the document does not "
                            "define")
        if e.arg is None:
            at = self._bare_derivative(e, env)
            if at is not None:
                return at
            raise NotJudged(f"{e.fn}' written without its argument: the point it is taken at "
                            "is not written")
        if e.primes and any(isinstance(n, (g.Deriv, g.Kron)) for n in g.walk(e.arg)):
            # \sigma_h' \left( \delta(\alpha,i) x_j + \dots \right): no point of evaluation
            # holds derivatives; the bracket is a factor of the bare derivative
            at = self._bare_derivative(g.Call(e.fn, None, e.power, e.primes), env)
            if at is None:
                raise NotJudged(f"{e.fn}' before a bracket of derivatives, about another node "
                                "than the line's: the point it is taken at is not written")
            return product(at, np.asarray(self.eval(e.arg, env)), "generic")
        z = self.eval(e.arg, env)
        return apply(self.cell, e.fn, z, e.primes, e.power)

    def _bare_derivative(self, e: g.Call, env: Env) -> np.ndarray | None:
        """``\\sigma_y'`` without its argument, in a line about y_1^k: the derivative at the
        pre-activation of that node, at its step and unit (the author's "scalar obtained from
        evaluating the derivative"); None where the line is about no node of that activation."""
        focus = getattr(self, "focus", None)
        if focus is None:
            return None
        r = self.reading(focus)
        d = self.cell.nodes.get(r.key)
        if r.time is None or not isinstance(d, g.Call) or d.fn != e.fn or d.arg is None:
            return None
        z = self.local(d.arg, self.step(r, env))
        return self.pick(apply(self.cell, e.fn, z, e.primes, e.power), r.indices, env, focus)

    def _chain_product(self, pair: g.Stack, env: Env) -> np.ndarray:
        """prod(a, b): a gradient and a Jacobian (either order) contracted over the shape
        they share: dL/dv = sum over u of dL/du du/dv."""
        a, b = (np.asarray(self.eval(x, env)) for x in pair.items)
        for u, j in ((a, b), (b, a)):
            if u.ndim <= j.ndim and j.shape[:u.ndim] == u.shape:
                return np.tensordot(u, j, axes=u.ndim)
        raise ShapeError(f"prod of {_sh(a)} and {_sh(b)}: no shape in common")

    def _diag(self, e: g.Diag, env: Env) -> np.ndarray:
        v = np.asarray(self.eval(e.arg, env)).reshape(-1)
        return np.diag(v)

    def _kron(self, e: g.Kron, env: Env) -> np.ndarray:
        try:
            return np.asarray(1.0 if env.idx[e.a] == env.idx[e.b] else 0.0)
        except KeyError:
            raise NotJudged(f"\\delta({e.a}, {e.b}) with an unbound index") from None

    def _cases(self, e: g.Cases, env: Env) -> np.ndarray:
        """The value of the first case whose condition holds at the line's unit indices (an
        "otherwise" where none does)."""
        rest = None
        for cond, value in e.branches:
            if cond is None:
                rest = value if rest is None else rest
                continue
            a, rel, b = (self._case_index(cond[0], env), cond[1], self._case_index(cond[2], env))
            if {"=": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b,
                    ">=": a >= b}[rel]:
                return self.eval(value, env)
        if rest is None:
            raise NotJudged("no case holds at " + ", ".join(
                f"{k} = {v + 1}" for k, v in sorted(env.idx.items())))
        return self.eval(rest, env)

    @staticmethod
    def _case_index(name: str, env: Env) -> int:
        if name.isdigit():
            raise NotJudged(f"a case's condition compares an index with the number {name} "
                            "(where the document counts from is not read)")
        if name not in env.idx:
            raise NotJudged(f"a case's condition reads {name}, which the left-hand side does "
                            "not index")
        return env.idx[name]

    def _elided(self, e: g.Elided, env: Env) -> np.ndarray:
        raise NotJudged(f"an elided expression ({e.text}), not a whole value")

    def _stack(self, e: g.Stack, env: Env) -> np.ndarray:
        vals = [np.asarray(self.eval(x, env)) for x in e.items]
        if all(v.ndim == 1 for v in vals):
            return np.concatenate(vals).reshape(1, -1)  # written in a row
        if all(v.ndim == 2 for v in vals):
            return np.hstack(vals)
        raise NotJudged("a stack of mixed shapes")

    def _big(self, e: g.Big, env: Env) -> np.ndarray:
        """A sum or product over time (``\\sum_{t=1}^T``; an index i or j over steps puts its
        value in the scripts it times, ``x_{i}``, ``h_{j-1}``; ``\\sum_{i=t}^{1}`` runs down),
        over units, or over named gates (``\\sum_{a \\in \\{f, i, o\\}}``)."""
        if e.var is None:
            raise NotJudged(f"\\{e.op} without its index")
        var = e.var
        if e.members is not None:
            envs = [dataclasses.replace(env, idx=dict(env.idx), syms={**env.syms, var: m})
                    for m in e.members]
            return self._fold(e, [(x, e.body) for x in envs])
        if var in ("t", r"\tau", "k", "j", "i", "s") and (e.lo is not None or var in ("t",)) and \
                not self._unit_var(var, e.body):
            lo = self._bound(e.lo, env, 1)
            hi = self._bound(e.hi, env, env.T)
            down = lo > hi and e.hi is not None and (e.hi.strip().isdigit() or
                                                     e.hi.strip() in env.idx)
            rng = range(lo, hi - 1, -1) if down else range(lo, hi + 1)
            kind = "t" if var in ("t", r"\tau") else "steps"
        else:
            rng = range(self._unit_range(var, e.body, env))
            kind = "units"
        items = []
        for v in rng:
            if kind == "t":
                items.append((env.at(v), e.body))
                continue
            sub = dataclasses.replace(env, idx={**env.idx, var: v})
            items.append((sub, _put_time(e.body, var, v, self.timed) if kind == "steps"
                          else e.body))
        return self._fold(e, items)

    def _fold(self, e: g.Big, items: list) -> np.ndarray:
        acc = None
        for sub, body in items:
            x = np.asarray(self.eval(body, sub))
            if acc is None:
                acc = x
            elif e.op == "sum":
                acc = plus(acc, x)
            else:
                acc = product(acc, x, "generic")
        if acc is None:
            return np.asarray(0.0 if e.op == "sum" else 1.0)
        return acc

    def _bound(self, b: str | None, env: Env, default: int) -> int:
        if b is None:
            return default
        s = b.replace(" ", "")
        if s.isdigit():
            return int(s)
        t = time_of(s)
        if t is not None and t[2] is None:
            return (env.T if t[0] == "T" else env.t) + t[1] if t[0] != "n" else t[1]
        if s in env.idx:
            return env.idx[s]
        # a difference of times (T-t, t+1): the letters bound, then integer arithmetic
        vals = {"T": env.T, "t": env.t, **env.idx}
        terms = re.findall(r"([+-]?)([A-Za-z]|\d+)", s)
        if terms and "".join(a + b for a, b in terms) == s and all(
                b.isdigit() or b in vals for _, b in terms):
            return sum((-1 if a == "-" else 1) * (int(b) if b.isdigit() else vals[b])
                       for a, b in terms)
        raise NotJudged(f"a bound {b} that is not a time")

    def _unit_var(self, var: str, body: g.Node) -> bool:
        for a in g.walk(body):
            if isinstance(a, g.Atom):
                r = self.reading(a)
                if var in r.indices:
                    return True
            if isinstance(a, g.Kron) and var in (a.a, a.b):
                return True
        return False

    def _unit_range(self, var: str, body: g.Node, env: Env) -> int:
        for a in g.walk(body):
            if isinstance(a, g.Atom):
                r = self.reading(a)
                if var in r.indices:
                    pos = r.indices.index(var)
                    try:
                        v = np.asarray(self._unindexed(a, r, env))
                    except NotJudged:
                        continue
                    if v.ndim > pos:
                        return v.shape[pos]
        raise NotJudged(f"a sum over {var} whose range is not known")

    def _unindexed(self, a: g.Atom, r: Reading, env: Env) -> np.ndarray:
        if r.key in self.cell.params:
            return self.w.params[r.key]
        mat = self.entry_of(r)
        if mat is not None:
            return self.w.params[mat]
        if r.key in self.cell.nodes or r.key in self.cell.inputs:
            return self.node(r.key, self.step(r, env) if r.time else env.t, env)
        raise NotJudged("unknown")

    # -- derivatives -------------------------------------------------------------------------------
    def _adj(self, e: g.Adj, env: Env) -> np.ndarray:
        if not isinstance(e.of, g.Atom):
            raise NotJudged("\\delta of an expression")
        return self.loss_derivative(e.of, env, "all")

    def at_loss(self, loss: g.Node, env: Env) -> Env:
        """The reading of a derivative of J^{(t)}: the loss of that step alone."""
        if not isinstance(loss, g.Loss) or loss.step is None:
            return env
        r = time_of(loss.step.strip())
        if r is None:
            raise NotJudged(f"the loss {loss.name}^{{{loss.step}}} at a step not read")
        return dataclasses.replace(env, idx=dict(env.idx), loss_at=self.step(
            Reading(Key(loss.name), r, ()), env))

    def _deriv(self, e: g.Deriv, env: Env) -> np.ndarray:
        env = self.at_loss(e.num, env)
        if isinstance(e.num, g.Loss):
            if not isinstance(e.den, g.Atom):
                raise NotJudged("a derivative of the loss by an expression")
            return self.loss_derivative(e.den, env, "all")
        if isinstance(e.num, g.Call) and isinstance(e.den, g.Atom) and (
                e.num.fn in self.premises.abstract or e.num.fn in self.premises.losses):
            part = self.partial(e.num, e.den, env)
            if part is not None:
                return part
        return self.jacobian(e.num, e.den, env, env.mode)

    def loss_derivative(self, den: g.Atom, env: Env, via: str, steps: str = "all") -> np.ndarray:
        """dE/d(den): a node's adjoint (``via``: all | within | later), a parameter's
        gradient (``steps``: 'all', or 't' for the part of the line's step), the parameter
        vector's, or a name's the document gives to a stack or to a part of an equation."""
        den = self.resolve(den, env)
        r = self.reading(den)
        at = None if env.loss_at is None else frozenset([env.loss_at])
        if r.key in self.copies and r.time is not None:
            node, reader = self.copies[r.key]
            s = self.step(r, env)
            if not 0 <= s <= env.T:
                return np.zeros(self.w.dims[node])
            return self.pick(self.w.copy_adjoint(node, s, reader, at), r.indices, env, den)
        if at is not None and (r.key in self.premises.param_vector or (
                r.key not in self.cell.nodes and r.key not in self.cell.inputs and
                self.param_of(r) is None)):
            raise NotJudged("the derivative of a per-step loss by a name")
        if r.key in self.premises.param_vector:
            return self.w.grad_all(frozenset([env.t]) if steps == "t" else None)
        if r.key in self.cell.nodes or r.key in self.cell.inputs:
            if r.time is None:
                raise NotJudged(f"{den.text} without its time index")
            s = self.step(r, env)
            if s > env.T or s < 0 or (s == 0 and r.key not in self.cell.states):
                return np.zeros(self.w.dims[r.key])
            return self.pick(self.w.adjoint(r.key, s, via, at), r.indices, env, den)
        p = self.param_of(r)
        if p is not None:
            sel = None
            if r.time is not None:
                sel = frozenset([self.step(r, env)])
            elif steps == "t":
                sel = frozenset([env.t])
            return self.pick(self.w.grad(p, sel, at), r.indices, env, den)
        al = self.alias(r.key)
        if al is not None and isinstance(al.expr, (g.Stack, g.Tr)):
            inner = al.expr.of if isinstance(al.expr, g.Tr) else al.expr
            if isinstance(inner, g.Stack) and all(isinstance(x, g.Atom) for x in inner.items):
                sub = env.at(self.step(r, env) if r.time else env.t)
                parts = [np.asarray(self.loss_derivative(x, sub, via)) for x in inner.items]
                if all(p_.ndim == 1 for p_ in parts):
                    return np.concatenate(parts)
                return np.hstack(parts)
        if al is not None:
            got = self._held_adjoint(al.expr, self.step(r, env) if r.time else env.t)
            if got is not None:
                return self.pick(got, r.indices, env, den)
        raise NotJudged(f"the derivative of the loss by {den.text}, which is not a symbol of "
                        "the cell")

    def _held_adjoint(self, expr: g.Node, s: int) -> np.ndarray | None:
        """dL/d(expr) at step s, for a name the document gives to a part of the cell's own
        equations (``a_C = \\tanh(C_t)``, ``a_o = W_o [h_{t-1}, x_t] + b_o``): through every
        node whose equation holds that part, by the node's total adjoint."""
        if not 1 <= s <= self.w.T:
            return None
        hits = [k for k in self.cell.order
                if any(m == expr for m in g.walk(self.cell.nodes[k]))]
        if not hits or isinstance(expr, g.Atom):
            return None
        vals, w = self.w.values, self.w

        def lookup(key: Key, lag: int) -> np.ndarray:
            if key in self.cell.nodes:
                return vals[(key, s - lag)]
            if key in w.params:
                return w.params[key]
            return w.inputs[(key, s)]

        v0 = np.asarray(cell_eval(self.cell, expr, lookup), dtype=complex)
        total = np.zeros(v0.size)
        for k in hits:
            cols = []
            for j in range(v0.size):
                d = np.zeros(v0.size, dtype=complex)
                d[j] = 1j * H
                out = cell_eval(self.cell, self.cell.nodes[k], lookup,
                                (expr, v0 + d.reshape(v0.shape)))
                cols.append(np.asarray(out).imag.reshape(-1) / H)
            total = total + self.w.adjoint(k, s, "all") @ np.stack(cols, axis=-1)
        return total.reshape(v0.shape)

    def jacobian(self, num: g.Node, den: g.Node, env: Env, mode: str) -> np.ndarray:
        """d(num)/d(den): den a node at a step, a parameter (or an entry), an input or an
        alias; num any expression, evaluated in the perturbed world."""
        if not isinstance(den, g.Atom):
            raise NotJudged("a derivative by an expression")
        den = self.resolve(den, env)
        r = self.reading(den)
        key = ("jac", num, den, env.t, mode, tuple(sorted(env.idx.items())),
               self.section(self.pos), tuple(sorted(self.copies.items(), key=str)))
        if key in self.w._cache and not env.override and not env.syms:
            return self.w._cache[key]
        out = self._jacobian(num, den, r, env, mode)
        if not env.override and not env.syms:
            self.w._cache[key] = out
        return out

    def _num_step(self, num: g.Node, env: Env) -> int:
        steps = [self.step(self.reading(a), env) for a in g.walk(num)
                 if isinstance(a, g.Atom) and self.reading(a).time is not None]
        return max(steps) if steps else env.t

    def _jacobian(self, num: g.Node, den: g.Node, r: Reading, env: Env,
                  mode: str) -> np.ndarray:
        assert isinstance(den, g.Atom)
        s_num = self._num_step(num, env)
        if r.key in self.copies and r.time is not None:
            # by a copy: through its one reader, everything after it recomputed
            node, reader = self.copies[r.key]
            s = self.step(r, env)
            n = self.w.dims[node]
            cols = []
            if r.indices and r.indices[0] not in env.idx:
                raise NotJudged(f"the index {r.indices[0]} of {den.text} is not bound")
            for j in (range(n) if not r.indices else [env.idx[r.indices[0]]]):
                d = np.zeros(n, dtype=complex)
                d[j] = 1j * H
                cols.append(self._measure(num, env, Pert("copy", node, s, d, reader=reader),
                                          "total", s_num))
            out = np.stack(cols, axis=-1)
            return out[..., 0] if r.indices else out
        if r.key in self.cell.nodes or r.key in self.cell.inputs:
            s = self.step(r, env)
            n = self.w.dims[r.key]
            if r.key in self.cell.inputs:
                make = pert_maker("input", r.key, s)
            elif s == 0:
                make = pert_maker("state0", r.key, 0)
            else:
                make = pert_maker("node", r.key, s)
            single = r.indices
            cols = []
            for j in (range(n) if not single else [env.idx[single[0]]]):
                d = np.zeros(n, dtype=complex)
                d[j] = 1j * H
                cols.append(self._measure(num, env, make(d), mode, s_num))
            out = np.stack(cols, axis=-1)
            return out[..., 0] if single else out
        if r.key in self.premises.param_vector:   # \partial_w h_t: by every parameter
            n = self.w.flat_params().size
            cols = []
            for j in range(n):
                d = np.zeros(n, dtype=complex)
                d[j] = 1j * H
                steps = None if mode == "total" else frozenset([s_num])
                cols.append(self._measure(num, env, Pert("params", r.key, None, d, steps=steps),
                                          mode, s_num))
            return np.stack(cols, axis=-1)
        p = self.param_of(r)
        if p is not None:
            shape = self.w.params[p].shape
            n = int(np.prod(shape))
            pos = None
            if r.indices:
                pos = int(np.ravel_multi_index(tuple(env.idx[i] for i in r.indices), shape))
            cols = []
            for j in (range(n) if pos is None else [pos]):
                d = np.zeros(n, dtype=complex)
                d[j] = 1j * H
                steps = None if mode == "total" else frozenset([s_num])
                cols.append(self._measure(num, env, Pert("param", p, None, d, steps=steps),
                                          mode, s_num))
            out = np.stack(cols, axis=-1)
            return out[..., 0] if pos is not None else out
        al = self.alias(r.key)
        if al is not None:
            v0 = np.asarray(self.eval(al.expr, env))
            n = v0.size
            cols = []
            for j in range(n):
                d = np.zeros(n, dtype=complex)
                d[j] = 1j * H
                ov = dict(env.override)
                ov[("alias", r.key)] = v0 + d.reshape(v0.shape)
                sub = dataclasses.replace(env, idx=dict(env.idx), override=ov)
                val = np.asarray(self._eval_with_alias(num, sub, r.key))
                cols.append(val.imag / H)
            return np.stack(cols, axis=-1)
        raise NotJudged(f"a derivative by {den.text}, which is not a symbol of the cell")

    def _eval_with_alias(self, num: g.Node, env: Env, key: Key) -> np.ndarray:
        """num with the alias ``key`` held at its perturbed value: through the latest
        definitions of the aliases in between."""
        saved = self.atom
        outer = self

        def atom(a: g.Atom, env2: Env) -> np.ndarray:
            a = outer.resolve(a, env2)
            r2 = outer.reading(a)
            if ("alias", r2.key) in env2.override:
                return env2.override[("alias", r2.key)]
            al = outer.alias(r2.key)
            if al is None and r2.key in outer.cell.nodes and r2.time is not None and \
                    r2.time[:2] == ("t", 0) and r2.time[2] is None:
                # a node read through the local definition that mentions the alias
                loc = outer._local_def(r2.key, key, env)
                if loc is not None:
                    return outer.eval(loc, env2)
                held = outer._held_part(r2.key, key, env2)
                if held is not None:
                    return held
                outer.unlinked.append(
                    f"{r2.key.latex} does not depend on {key.latex} as the document defines "
                    f"{key.latex} (it is not a part of the equation of {r2.key.latex})")
            return saved(a, env2)
        self.atom = atom  # type: ignore[method-assign]
        try:
            return self.eval(num, env)
        finally:
            self.atom = saved  # type: ignore[method-assign]

    def _held_part(self, node: Key, alias: Key, env: Env) -> np.ndarray | None:
        """A node whose equation holds the expression a name stands for (``h_t = o_t \\odot
        \\tanh(C_t)`` and ``a_C = \\tanh(C_t)``), with that part held at the name's
        (perturbed) value."""
        al = self.alias(alias)
        e = self.cell.nodes.get(node)
        if al is None or e is None or not any(m == al.expr for m in g.walk(e)):
            return None
        s = env.t

        def lookup(key: Key, lag: int) -> np.ndarray:
            if key in self.cell.nodes:
                return self.values[(key, s - lag)]
            if key in self.params:
                return self.params[key]
            return self.inputs[(key, s)]

        return cell_eval(self.cell, e, lookup, (al.expr, env.override[("alias", alias)]))

    def _local_def(self, node: Key, alias: Key, env: Env) -> g.Node | None:
        if getattr(self, "_in_local", False):
            return None
        self._in_local = True
        try:
            return self._local_def_(node, alias, env)
        finally:
            self._in_local = False

    def _local_def_(self, node: Key, alias: Key, env: Env) -> g.Node | None:
        """The equation of a node written through the name ``alias`` (``i_t = \\sigma(p)``),
        nearest in the line's section."""
        here = self.section(self.pos)
        cands = [(k, e, p) for k, e, p in self.node_defs if k == node and
                 self.section(p) == here and any(self.reading(x).key == alias for x in g.walk(e)
                                                  if isinstance(x, g.Atom))]
        for _, e, _ in sorted(cands, key=lambda c: abs(c[2] - self.pos)):
            try:  # an equation that agrees with the cell (not the author's slip)
                v = np.asarray(self.eval(e, env))
                if np.allclose(v, self.values[(node, env.t)]):
                    return e
            except (NotJudged, ShapeError, KeyError, ValueError):
                continue
        e = self.cell.nodes.get(node)
        al = self.alias(alias)
        if isinstance(e, g.Call) and e.arg is not None and al is not None:
            try:  # the name is the node's pre-activation: the node is act(name)
                if np.allclose(np.asarray(self.eval(al.expr, env)),
                               self.local(e.arg, env.t)):
                    return g.Call(e.fn, g.Atom(alias.base, alias.name_sub), e.power, e.primes)
            except (NotJudged, ShapeError, KeyError, ValueError):
                pass
        return None

    def _measure(self, num: g.Node, env: Env, pert: Pert, mode: str, s: int) -> np.ndarray:
        w = self.w
        sub_env = dataclasses.replace(env, idx=dict(env.idx))
        if mode == "total":
            _, inner, _ = w.run(pert)
        elif mode == "partial":
            inner, num, sub_env = self._held(num, sub_env, pert)
        else:
            inner = dict(w.inner)
            ext = {k: v for k, v in w.values.items()}
            if pert.kind == "state0":
                ext[(pert.key, 0)] = ext[(pert.key, 0)] + pert.delta
                inner[(pert.key, 0)] = ext[(pert.key, 0)]
            if pert.kind == "node" and pert.step == s - 1:
                ext[(pert.key, s - 1)] = ext[(pert.key, s - 1)] + pert.delta
                inner[(pert.key, s - 1)] = ext[(pert.key, s - 1)]
            params = w.perturbed_params(dataclasses.replace(pert, steps=None), s)
            if 1 <= s <= w.T:
                cur: dict = {}
                for k in w.cell.order:
                    val = w.node_value(k, s, cur, ext, params,
                                       pert if pert.kind == "input" else None)
                    if pert.kind == "node" and pert.key == k and pert.step == s:
                        val = val + pert.delta
                    cur[k] = val
                    inner[(k, s)] = val
        saved = self.values, self.params, self.inputs
        self.values = inner
        if pert.kind in ("param", "params") and (
                pert.steps is None or any(st in pert.steps for st in (s, env.t))):
            self.params = w.perturbed_params(dataclasses.replace(pert, steps=None), s)
        if pert.kind == "input":
            self.inputs = dict(w.inputs)
            self.inputs[(pert.key, pert.step)] = w.inputs[(pert.key, pert.step)] + pert.delta
        try:
            v = np.asarray(self.eval(num, sub_env), dtype=complex)
        finally:
            self.values, self.params, self.inputs = saved
        return v.imag / H

    def _held(self, num: g.Node, env: Env, pert: Pert) -> tuple[dict, g.Node, Env]:
        """A partial derivative, as a sum over paths writes it (``\\partial h_t / \\partial
        h_{t-1}`` beside the paths through z_t, r_t and the candidate): only the perturbed
        node, input or parameter moves, every other node keeps its value, and a node in the
        numerator is its equation at its step."""
        inner = dict(self.w.inner)
        if pert.kind == "state0":
            inner[(pert.key, 0)] = inner[(pert.key, 0)] + pert.delta
        if pert.kind == "node" and pert.step is not None:
            inner[(pert.key, pert.step)] = inner[(pert.key, pert.step)] + pert.delta
        if isinstance(num, g.Atom):
            r = self.reading(num)
            if r.key in self.cell.nodes and r.time is not None and not r.indices:
                return inner, self.cell.nodes[r.key], env.at(self.step(r, env))
        return inner, num, env


def _put_time(node: g.Node, var: str, value: int, timed: set[Key]) -> g.Node:
    """The body of a sum over steps with the index's value put in the scripts that time a
    symbol by it (``x_{i}`` -> ``x_{3}``, ``h_{i-1}`` -> ``h_{2}``; ``j`` in a nested bound)."""
    pat = re.compile(re.escape(var) + r"\s*(?:([+-])\s*(\d+))?")

    def put(script: str | None) -> str | None:
        if script is None:
            return None
        m = pat.fullmatch(script.strip())
        if not m:
            return script
        off = int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1)
        return str(value + off)

    def rec(n: g.Node) -> g.Node:
        if isinstance(n, g.Atom):
            if Key(n.base) not in timed:
                return n
            sub, sup = put(n.sub), put(n.sup)
            return n if (sub, sup) == (n.sub, n.sup) else dataclasses.replace(n, sub=sub, sup=sup)
        changes = {}
        for f in dataclasses.fields(n):
            v = getattr(n, f.name)
            if isinstance(v, g.Node):
                changes[f.name] = rec(v)
            elif isinstance(v, tuple) and v and all(isinstance(x, g.Node) for x in v):
                changes[f.name] = tuple(rec(x) for x in v)
            elif isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and
                                                    isinstance(x[1], g.Node) for x in v):
                changes[f.name] = tuple((x[0], rec(x[1])) for x in v)
        if isinstance(n, g.Big):
            changes["lo"], changes["hi"] = put(n.lo), put(n.hi)
        return dataclasses.replace(n, **changes) if changes else n

    return rec(node)


def _sh(a) -> str:
    from .world import shape_text
    return shape_text(a)


def loss_atoms(node: g.Node) -> bool:
    return any(isinstance(n, (g.Loss,)) for n in g.walk(node))


__all__ = ["Alias", "Env", "Evaluator", "NotJudged", "Mapping", "lx"]
