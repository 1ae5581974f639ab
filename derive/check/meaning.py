"""What a written expression is worth in the author's cell (issue 16, items 2 and 3).

:class:`Evaluator` turns an AST of :mod:`derive.check.grammar` into numbers of a
:class:`~derive.check.world.World`: a symbol at a time is the node's value (a unit index picks a
component, ``w_{ij}`` an entry of W), ``\\frac{\\partial E}{\\partial x^t}``, ``\\delta x^t`` and
``\\nabla_{x^t} E`` are adjoints, ``\\frac{\\partial u}{\\partial v}`` and ``\\nabla_v u`` are
Jacobians (one step, the states of t-1 held; or total, through time, in forward-mode lines),
``\\sigma'(z)``, ``\\tanh^2``, ``diag(v)``, transposes, ``\\sum_t``, sums over units and the
Kronecker ``\\delta(a, b)`` are what they say. Aliases (names the document introduces) are
evaluated from their latest definition above the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import grammar as g
from . import lexicon as lx
from .cell import Cell, Key, Reading, read_atom, time_of
from .world import H, Pert, ShapeError, World, apply, cell_eval, pert_maker, product


class NotJudged(Exception):
    """The line cannot be given a value; ``reason`` says why (it is skipped with it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Alias:
    key: Key
    expr: g.Node
    pos: int
    timevar: bool  # written at time t: evaluated at the time it is read at


@dataclass
class Env:
    t: int
    T: int
    idx: dict[str, int] = field(default_factory=dict)
    mode: str = "step"        # how \frac{\partial u}{\partial v} is read: step | total
    override: dict = field(default_factory=dict)  # (key, time) -> value (a perturbed world)


class Evaluator:
    def __init__(self, world: World, aliases: list[Alias], timed: set[Key], pos: int,
                 section=None):
        self.w = world
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

    # -- symbols -----------------------------------------------------------------------------
    def reading(self, a: g.Atom) -> Reading:
        return read_atom(a, self.timed)

    def step(self, r: Reading, env: Env) -> int:
        assert r.time is not None
        var, off, sym = r.time
        if var == "n":
            return off
        base = env.T if var == "T" else env.t
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

    def atom(self, a: g.Atom, env: Env) -> np.ndarray:
        r = self.reading(a)
        if a.primes:
            return self.prime_of(a, r, env)
        al = self.alias(r.key) if (r.key not in self.cell.nodes) else None
        if al is None and r.time is None and r.key not in self.cell.params:
            al = self.alias(Key(a.base, a.sub))
        if al is not None:
            sub_env = env
            if al.timevar and r.time is not None:
                sub_env = Env(self.step(r, env), env.T, dict(env.idx), env.mode, env.override)
            v = self.eval(al.expr, sub_env)
            return self.pick(v, r.indices, env, a)
        if r.key in self.cell.nodes or r.key in self.cell.inputs:
            if r.time is None:
                raise NotJudged(f"{a.text} without its time index")
            s = self.step(r, env)
            v = self.node(r.key, s, env)
            return self.pick(v, r.indices, env, a)
        if r.key in self.cell.params:
            return self.pick(self.params[r.key], r.indices, env, a)
        mat = self.entry_of(r)
        if mat is not None:
            return self.pick(self.params[mat], r.indices, env, a)
        if a.base in env.idx and a.sub is None:
            return np.asarray(float(env.idx[a.base]))
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
                out = _plus(out, v)
        return out  # type: ignore[return-value]

    def _mul(self, e: g.Mul, env: Env) -> np.ndarray:
        acc = self.eval(e.factors[0], env)
        for op, f in zip(e.ops, e.factors[1:], strict=True):
            v = self.eval(f, env)
            if isinstance(f, g.Stack) and np.ndim(acc) == 2 and np.ndim(v) == 2 \
                    and v.shape[0] == 1 and acc.shape[1] == v.shape[1] > 1:
                v = v.reshape(-1)   # W_o [h_{t-1}, x_t]: a matrix times the stacked column
            acc = product(acc, v, op)
        return acc

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
        if v.ndim == 1:
            return v.reshape(1, -1)
        if v.shape[0] == 1:
            return v.reshape(-1)
        return v.T

    def _call(self, e: g.Call, env: Env) -> np.ndarray:
        if e.fn == "prod" and isinstance(e.arg, g.Stack):
            return self._chain_product(e.arg, env)
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
        if e.var is None:
            raise NotJudged(f"\\{e.op} without its index")
        tv = time_of(e.var)
        var = e.var
        if var in ("t", r"\tau", "k", "j", "i", "s") and (e.lo is not None or var in ("t",)) and \
                not self._unit_var(var, e.body):
            lo = self._bound(e.lo, env, 1)
            hi = self._bound(e.hi, env, env.T)
            rng = range(lo, hi + 1)
            time_sum = var in ("t", r"\tau")
        else:
            rng = range(self._unit_range(var, e.body, env))
            time_sum = False
        del tv
        acc = None
        for v in rng:
            if time_sum:
                sub = Env(v, env.T, dict(env.idx), env.mode, env.override)
            else:
                sub = Env(env.t, env.T, {**env.idx, var: v}, env.mode, env.override)
            x = np.asarray(self.eval(e.body, sub))
            if acc is None:
                acc = x
            elif e.op == "sum":
                acc = _plus(acc, x)
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

    def _deriv(self, e: g.Deriv, env: Env) -> np.ndarray:
        if isinstance(e.num, g.Loss):
            if not isinstance(e.den, g.Atom):
                raise NotJudged("a derivative of the loss by an expression")
            return self.loss_derivative(e.den, env, "all")
        return self.jacobian(e.num, e.den, env, env.mode)

    def loss_derivative(self, den: g.Atom, env: Env, via: str, steps: str = "all") -> np.ndarray:
        r = self.reading(den)
        if r.key in self.cell.nodes or r.key in self.cell.inputs:
            if r.time is None:
                raise NotJudged(f"{den.text} without its time index")
            s = self.step(r, env)
            if s > env.T or s < 0 or (s == 0 and r.key not in self.cell.states):
                return np.zeros(self.w.dims[r.key])
            return self.pick(self.w.adjoint(r.key, s, via), r.indices, env, den)
        p = r.key if r.key in self.cell.params else self.entry_of(r)
        if p is not None:
            sel = None
            if r.time is not None:
                sel = frozenset([self.step(r, env)])
            return self.pick(self.w.grad(p, sel), r.indices, env, den)
        al = self.alias(r.key)
        if al is not None and isinstance(al.expr, (g.Stack, g.Tr)):
            inner = al.expr.of if isinstance(al.expr, g.Tr) else al.expr
            if isinstance(inner, g.Stack) and all(isinstance(x, g.Atom) for x in inner.items):
                sub = Env(self.step(r, env) if r.time else env.t, env.T, dict(env.idx),
                          env.mode, env.override)
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
        r = self.reading(den)
        key = ("jac", num, den, env.t, mode, tuple(sorted(env.idx.items())),
               self.section(self.pos))
        if key in self.w._cache and not env.override:
            return self.w._cache[key]
        out = self._jacobian(num, den, r, env, mode)
        if not env.override:
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
        if (r.key in self.cell.nodes or r.key in self.cell.inputs) and r.time is None:
            raise NotJudged(f"{den.text} is written without its time step")
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
        p = r.key if r.key in self.cell.params else self.entry_of(r)
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
                sub = Env(env.t, env.T, dict(env.idx), env.mode, ov)
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
            return saved(a, env2)
        self.atom = atom  # type: ignore[method-assign]
        try:
            return self.eval(num, env)
        finally:
            self.atom = saved  # type: ignore[method-assign]

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
        if mode == "total":
            _, inner, _ = w.run(pert)
        else:
            inner = dict(w.inner)
            ext = {k: v for k, v in w.values.items()}
            if pert.kind == "state0":
                ext[(pert.key, 0)] = ext[(pert.key, 0)] + pert.delta
                inner[(pert.key, 0)] = ext[(pert.key, 0)]
            if pert.kind == "node" and pert.step == s - 1:
                ext[(pert.key, s - 1)] = ext[(pert.key, s - 1)] + pert.delta
                inner[(pert.key, s - 1)] = ext[(pert.key, s - 1)]
            params = w.params
            if pert.kind == "param":
                params = dict(w.params)
                params[pert.key] = params[pert.key] + pert.delta.reshape(params[pert.key].shape)
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
        if pert.kind == "param":
            self.params = dict(w.params)
            if pert.steps is None or any(st in pert.steps for st in (s, env.t)):
                self.params[pert.key] = w.params[pert.key] + pert.delta.reshape(
                    w.params[pert.key].shape)
        if pert.kind == "input":
            self.inputs = dict(w.inputs)
            self.inputs[(pert.key, pert.step)] = w.inputs[(pert.key, pert.step)] + pert.delta
        try:
            v = np.asarray(self.eval(num, Env(env.t, env.T, dict(env.idx), env.mode,
                                              env.override)), dtype=complex)
        finally:
            self.values, self.params, self.inputs = saved
        return v.imag / H


def _plus(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape == b.shape or a.ndim == 0 or b.ndim == 0:
        return a + b
    if a.size == b.size and (a.ndim == 1 or b.ndim == 1) and 1 in a.shape + b.shape:
        return a.reshape(-1) + b.reshape(-1)
    raise ShapeError(f"a sum of {_sh(a)} and {_sh(b)}")


def _sh(a) -> str:
    from .world import shape_text
    return shape_text(a)


def loss_atoms(node: g.Node) -> bool:
    return any(isinstance(n, (g.Loss,)) for n in g.walk(node))


__all__ = ["Alias", "Env", "Evaluator", "NotJudged", "Mapping", "lx"]
