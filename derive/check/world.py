"""The author's cell at a random point: forward values over T steps, and the derivatives a
derivation talks about, measured by the complex step (exact to rounding; issue 16, item 2).

* ``adjoint(k, s, via)``: dE/dk_s for the loss E of :mod:`derive.check.cell` (random linear,
  or the cross-entropy of a softmax readout against random target distributions):
  ``via='all'`` the total, ``'within'`` only through the readers of step s (and the loss at s),
  ``'later'`` only through step s+1 (the carry of BPTT: what ``\\delta c^t +=`` adds to);
* ``grad(p, steps)``: dE/dp through every step (``None``) or through the steps given;
* ``jacobian(measure, v, s, mode)``: d(measure)/dv with v a node at step s (``'step'``: the
  states of step s-1 held, the other nodes of step s recomputed; ``'total'``: everything after v
  recomputed), a parameter or an input.

Parameters are flattened row-major, so a Jacobian by a matrix is an ordinary matrix; the
*parameter vector* (``w`` of ``h_t = f(x_t, h_{t-1}, w)``) is every parameter so flattened, in
the cell's order (a perturbation of kind ``params``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import grammar as g
from . import lexicon as lx
from .cell import Cell, Key, read_atom

H = 1e-30  # the complex step
HIDDEN, INPUT, READOUT = 3, 2, 2


@dataclass(frozen=True)
class Pert:
    """One perturbation: ``kind`` node | param | input | state0, what, at which step, how."""

    kind: str                    # node | param | params | input | state0 | copy
    key: Key
    step: int | None
    delta: np.ndarray
    scope: str = "all"           # node: all | within | later
    steps: frozenset | None = None  # param, params: the steps that see it (None: all)
    # copy: the one reader that sees the perturbed node, (node, lag) or ("loss", 0)
    reader: tuple | None = None


def pert_maker(kind: str, key: Key, step: int, scope: str = "all") -> Callable[[np.ndarray], Pert]:
    """A perturbation of one thing by a direction given later."""
    def make(delta: np.ndarray) -> Pert:
        return Pert(kind, key, step, delta, scope)
    return make


class World:
    """Forward values of a :class:`Cell` at a random point, T steps."""

    def __init__(self, cell: Cell, T: int = 4, seed: int = 0):
        self.cell = cell
        self.T = T
        rng = np.random.default_rng(seed)
        self.dims = self._dims()
        self.params: dict[Key, np.ndarray] = {}
        for k, kind in cell.params.items():
            shape = self.pshape(k)
            self.params[k] = rng.normal(scale=0.7, size=shape)
            del kind
        self.inputs = {(k, s): rng.normal(size=self.dims[k]) for k in cell.inputs
                       for s in range(1, T + 1)}
        self.state0 = {k: rng.normal(scale=0.5, size=self.dims[k]) for k in cell.states}
        self.loss_w: dict = {}
        ext, _, _ = self.run(None)
        self.loss_w = {(k, s): rng.normal(size=np.shape(ext[(k, s)])) for k in cell.outputs
                       for s in range(1, T + 1)}
        # the targets of a cross-entropy: random distributions over the readout's units
        self.targets = {(y, s): _distribution(rng, np.shape(ext[(k, s)]))
                        for y, k in cell.targets.items() for s in range(1, T + 1)}
        self.values, self.inner, _ = self.run(None)
        self._cache: dict = {}

    # -- sizes -------------------------------------------------------------------------------
    def _dims(self) -> dict[Key, int]:
        cell = self.cell
        dims: dict[Key, int] = {k: INPUT for k in cell.inputs}
        for k in cell.order:
            dims[k] = READOUT if k in cell.readout else HIDDEN
        self._pshape: dict[Key, tuple[int, ...]] = {}
        for k in cell.order:
            self._assign(cell.nodes[k], dims[k], dims)
        for p in cell.params:
            self._pshape.setdefault(p, (HIDDEN, HIDDEN) if cell.params[p] == "matrix"
                                    else (HIDDEN,))
        return dims

    def _vdim(self, e: g.Node, dims: dict[Key, int]) -> int | None:
        if isinstance(e, g.Atom):
            r = read_atom(e, set(dims))
            if r.time is not None:
                return dims.get(r.key)
            shape = self._pshape.get(r.key)
            return shape[0] if shape and len(shape) == 1 else None
        if isinstance(e, g.Stack):
            ds = [self._vdim(x, dims) for x in e.items]
            return None if None in ds else sum(ds)  # type: ignore[arg-type]
        if isinstance(e, g.Mul) and self.cell.rows:
            last = e.factors[-1]
            if isinstance(last, g.Atom) and self.cell.params.get(
                    read_atom(last, set(dims)).key) == "matrix":
                shape = self._pshape.get(read_atom(last, set(dims)).key)
                return shape[1] if shape else None
        if isinstance(e, g.Mul):
            first = e.factors[0]
            if isinstance(first, g.Atom) and self.cell.params.get(
                    read_atom(first, set(dims)).key) == "matrix":
                shape = self._pshape.get(read_atom(first, set(dims)).key)
                return shape[0] if shape else None
        for c in g._children(e):
            d = self._vdim(c, dims)
            if d is not None:
                return d
        return None

    def _assign(self, e: g.Node, d: int, dims: dict[Key, int]) -> None:
        if isinstance(e, g.Atom):
            r = read_atom(e, set(dims))
            if r.time is None and self.cell.params.get(r.key) == "vector":
                self._pshape.setdefault(r.key, (d,))
            return
        if isinstance(e, g.Mul):
            fs = list(e.factors)
            if self.cell.rows and self._row_product(e, d, dims):
                return
            if isinstance(fs[0], g.Atom):
                r = read_atom(fs[0], set(dims))
                if r.time is None and self.cell.params.get(r.key) == "matrix":
                    rest = fs[1] if len(fs) == 2 else g.Mul(tuple(fs[1:]), e.ops[1:])
                    cols = self._vdim(rest, dims) or HIDDEN
                    self._pshape.setdefault(r.key, (d, cols))
                    if not isinstance(rest, g.Stack):
                        self._assign(rest, cols, dims)
                    return
            for f in fs:
                self._assign(f, d, dims)
            return
        for c in g._children(e):
            self._assign(c, d, dims)

    def _row_product(self, e: g.Mul, d: int, dims: dict[Key, int]) -> bool:
        """``h_{t-1} W_z`` in a cell of row vectors: the matrix last, its rows the length of
        what it multiplies."""
        last = e.factors[-1]
        if not isinstance(last, g.Atom):
            return False
        r = read_atom(last, set(dims))
        if r.time is not None or self.cell.params.get(r.key) != "matrix":
            return False
        rest = e.factors[0] if len(e.factors) == 2 else g.Mul(e.factors[:-1], e.ops[:-1])
        rows = self._vdim(rest, dims) or HIDDEN
        self._pshape.setdefault(r.key, (rows, d))
        self._assign(rest, rows, dims)
        return True

    def pshape(self, k: Key) -> tuple[int, ...]:
        return self._pshape[k]

    # -- forward -----------------------------------------------------------------------------
    def run(self, pert: Pert | None, loss_steps: frozenset | None = None
            ) -> tuple[dict, dict, complex]:
        """Values (as step s+1 and the loss read them), values inside each step, the loss (of
        the steps ``loss_steps`` only where given: a per-step loss J^{(t)})."""
        cell = self.cell
        dtype = complex if pert is not None else float
        ext: dict[tuple[Key, int], np.ndarray] = {}
        inner: dict[tuple[Key, int], np.ndarray] = {}
        for k, v in self.state0.items():
            v = v.astype(dtype)
            if pert is not None and pert.kind == "state0" and pert.key == k:
                v = v + pert.delta
            ext[(k, 0)] = inner[(k, 0)] = v
        loss = 0j
        for s in range(1, self.T + 1):
            params = self.perturbed_params(pert, s)
            cur: dict[Key, np.ndarray] = {}
            for k in cell.order:
                val = self.node_value(k, s, cur, ext, params, pert)
                if pert is not None and pert.kind == "node" and pert.key == k and pert.step == s:
                    if pert.scope in ("all", "within"):
                        cur[k] = val + pert.delta
                    else:
                        cur[k] = val
                    ext[(k, s)] = val + pert.delta if pert.scope in ("all", "later") else val
                else:
                    cur[k] = val
                    ext[(k, s)] = val
                inner[(k, s)] = cur[k]
            for k in cell.outputs:
                if (k, s) in self.loss_w and (loss_steps is None or s in loss_steps):
                    out = cur[k]
                    if pert is not None and pert.kind == "copy" and pert.reader == ("loss", 0) \
                            and pert.key == k and pert.step == s:
                        out = out + pert.delta
                    loss = loss + self.step_loss(k, s, out)
        return ext, inner, loss

    def step_loss(self, k: Key, s: int, value: np.ndarray) -> np.ndarray:
        """The loss's term of output k at step s."""
        if self.cell.loss == "cross-entropy":
            y = next(y for y, r in self.cell.targets.items() if r == k)
            return -np.sum(self.targets[(y, s)] * np.log(value))
        return np.sum(self.loss_w[(k, s)] * value)

    def param_keys(self) -> list[Key]:
        """The parameters in the order of the parameter vector."""
        return list(self.params)

    def flat_params(self, params: dict | None = None) -> np.ndarray:
        """The parameter vector: every parameter flattened row-major, in the cell's order."""
        params = self.params if params is None else params
        return np.concatenate([np.asarray(params[k]).reshape(-1) for k in self.param_keys()])

    def unflat(self, vec: np.ndarray) -> dict[Key, np.ndarray]:
        """The parameters of a parameter vector."""
        out, at = {}, 0
        for k in self.param_keys():
            n = self.params[k].size
            out[k] = vec[at:at + n].reshape(self.params[k].shape)
            at += n
        return out

    def perturbed_params(self, pert: Pert | None, s: int) -> dict[Key, np.ndarray]:
        """The parameters step s reads under a perturbation."""
        if pert is None or pert.kind not in ("param", "params") or (
                pert.steps is not None and s not in pert.steps):
            return self.params
        if pert.kind == "params":
            return self.unflat(self.flat_params() + pert.delta)
        params = dict(self.params)
        params[pert.key] = params[pert.key] + pert.delta.reshape(params[pert.key].shape)
        return params

    def node_value(self, k: Key, s: int, cur: dict, ext: dict, params: dict,
                   pert: Pert | None) -> np.ndarray:
        def lookup(key: Key, lag: int) -> np.ndarray:
            if key in self.cell.nodes:
                v = cur[key] if lag == 0 else ext[(key, s - lag)]
                if pert is not None and pert.kind == "copy" and pert.key == key and \
                        pert.step == s - lag and pert.reader == (k, lag):
                    v = v + pert.delta   # the copy only this reader reads
                return v
            if key in params:
                return params[key]
            v = self.inputs[(key, s)]
            if pert is not None and pert.kind == "input" and pert.key == key and pert.step == s:
                v = v + pert.delta
            return v
        return cell_eval(self.cell, self.cell.nodes[k], lookup)

    # -- derivatives ---------------------------------------------------------------------------
    def _directional(self, make: Callable[[np.ndarray], Pert], n: int,
                     measure: Callable[[dict, dict, complex], np.ndarray],
                     loss_steps: frozenset | None = None) -> np.ndarray:
        cols = []
        for j in range(n):
            e = np.zeros(n, dtype=complex)
            e[j] = 1j * H
            ext, inner, loss = self.run(make(e), loss_steps)
            cols.append(np.asarray(measure(ext, inner, loss)).imag / H)
        return np.stack(cols, axis=-1)

    def adjoint(self, k: Key, s: int, via: str = "all",
                loss_steps: frozenset | None = None) -> np.ndarray:
        key = ("adj", k, s, via, loss_steps)
        if key not in self._cache:
            if k in self.cell.inputs:
                make = pert_maker("input", k, s)
            elif s == 0:
                make = pert_maker("state0", k, 0)
            else:
                make = pert_maker("node", k, s, via)
            self._cache[key] = self._directional(make, self.dims[k], lambda _e, _i, loss: loss,
                                                 loss_steps)
        return self._cache[key]

    def copy_adjoint(self, k: Key, s: int, reader: tuple,
                     loss_steps: frozenset | None = None) -> np.ndarray:
        """dE/dk_s for a copy of k_s that only ``reader`` reads ((node, lag): the node of step
        s + lag whose equation reads k at that lag; ("loss", 0): the loss of step s)."""
        key = ("copy", k, s, reader, loss_steps)
        if key not in self._cache:
            self._cache[key] = self._directional(
                lambda e: Pert("copy", k, s, e, reader=reader), self.dims[k],
                lambda _e, _i, loss: loss, loss_steps)
        return self._cache[key]

    def readers(self, k: Key) -> list[tuple]:
        """Who reads node k: (node, lag) for each node whose equation reads k at that lag, in
        the cell's order, and ("loss", 0) where k is an output."""
        out: list[tuple] = []
        for n in self.cell.order:
            for a in g.walk(self.cell.nodes[n]):
                if isinstance(a, g.Atom):
                    r = read_atom(a, set(self.cell.nodes) | set(self.cell.inputs))
                    if r.key == k:
                        lag = -r.time[1] if r.time is not None else 0
                        if (n, lag) not in out:
                            out.append((n, lag))
        if k in self.cell.outputs:
            out.append(("loss", 0))
        return out

    def grad_all(self, steps: frozenset | None = None) -> np.ndarray:
        """dE/dw for the parameter vector w."""
        return np.concatenate([self.grad(p, steps).reshape(-1) for p in self.param_keys()])

    def grad(self, p: Key, steps: frozenset | None = None,
             loss_steps: frozenset | None = None) -> np.ndarray:
        key = ("grad", p, steps, loss_steps)
        if key not in self._cache:
            shape = self.params[p].shape
            n = int(np.prod(shape))
            self._cache[key] = self._directional(
                lambda e: Pert("param", p, None, e, steps=steps), n,
                lambda _e, _i, loss: loss, loss_steps).reshape(shape)
        return self._cache[key]


def _distribution(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """A random probability vector (positive, summing to 1)."""
    e = np.exp(rng.normal(size=shape))
    return e / e.sum()


def cell_eval(cell: Cell, e: g.Node, lookup: Callable[[Key, int], np.ndarray],
              held: tuple[g.Node, np.ndarray] | None = None) -> np.ndarray:
    """A node's expression (:mod:`derive.check.grammar`) at one step; ``held``: a
    subexpression and the value it is given wherever it occurs."""
    if held is not None and e == held[0]:
        return held[1]

    def rec(x: g.Node) -> np.ndarray:
        return cell_eval(cell, x, lookup, held)

    if isinstance(e, g.Num):
        return np.asarray(float(e.value))
    if isinstance(e, g.Atom):
        r = read_atom(e, set(cell.nodes) | set(cell.inputs))
        lag = -r.time[1] if r.time is not None else 0
        return lookup(r.key, lag)
    if isinstance(e, g.Add):
        out = 0
        for sign, t in e.terms:
            out = out + sign * rec(t)
        return out
    if isinstance(e, g.Mul):
        acc = rec(e.factors[0])
        for op, f in zip(e.ops, e.factors[1:], strict=True):
            acc = product(acc, rec(f), op)
        return acc
    if isinstance(e, g.Call):
        return apply(cell, e.fn, rec(e.arg), e.primes, e.power)  # type: ignore[arg-type]
    if isinstance(e, g.Stack):   # a stacked input [h_{t-1}, x_t]
        return np.concatenate([np.atleast_1d(rec(x)) for x in e.items])
    if isinstance(e, g.Pow):
        return rec(e.base) ** e.exp
    if isinstance(e, g.Div):
        return rec(e.a) / rec(e.b)
    raise ValueError(f"cannot evaluate {type(e).__name__} in a forward equation")


def activation(cell: Cell, fn: str) -> tuple:
    base = fn.split("_", 1)[0]
    if fn in lx.ACTIVATIONS:
        return lx.ACTIVATIONS[fn]
    if fn in cell.generic:
        return lx.GENERIC_ACTIVATIONS[cell.generic[fn]]
    if base in lx.ACTIVATIONS and "_" not in fn:
        return lx.ACTIVATIONS[base]
    cell.generic[fn] = len(cell.generic) % len(lx.GENERIC_ACTIVATIONS)
    return lx.GENERIC_ACTIVATIONS[cell.generic[fn]]


def apply(cell: Cell, fn: str, z: np.ndarray, primes: int, power: int) -> np.ndarray:
    value, deriv = activation(cell, fn)
    if primes > 1 or (primes and deriv is None):
        raise ValueError(f"{fn}{chr(39) * primes} is not modelled")
    out = deriv(z) if primes else value(z)
    return out ** power if power != 1 else out


class ShapeError(Exception):
    pass


class NotJudged(Exception):
    """The line cannot be given a value; ``reason`` says why (it is skipped with it)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def shape_text(a: np.ndarray) -> str:
    a = np.asarray(a)
    if a.ndim == 0:
        return "a scalar"
    if a.ndim == 1:
        return f"a vector of {a.shape[0]}"
    return f"a {a.shape[0]}x{a.shape[1]} matrix"


def plus(a, b) -> np.ndarray:
    """A sum as the shapes allow: equal shapes, a scalar, or a row and a column of one
    length."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape == b.shape or a.ndim == 0 or b.ndim == 0:
        return a + b
    if a.size == b.size and (a.ndim == 1 or b.ndim == 1) and 1 in a.shape + b.shape:
        return a.reshape(-1) + b.reshape(-1)
    raise ShapeError(f"a sum of {shape_text(a)} and {shape_text(b)}")


def product(a, b, op: str):
    """A product as the shapes decide (see :data:`derive.check.lexicon.PRODUCTS`): scalars
    scale; two vectors of one length multiply elementwise; a matrix times a vector, a vector
    times a matrix (a row), a column times an explicit row (an outer product); matrices
    multiply; two matrices of one shape multiply elementwise under an elementwise operator."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if op == "elementwise":
        if a.shape == b.shape:
            return a * b
        if a.size == b.size and 1 in a.shape + b.shape:
            return a.reshape(-1) * b.reshape(-1)
        raise ShapeError(f"{shape_text(a)} and {shape_text(b)} multiplied elementwise")
    if a.ndim == 1 and b.ndim == 1:
        if a.shape == b.shape:
            return a * b
        raise ShapeError(f"{shape_text(a)} times {shape_text(b)}")
    if a.ndim == 2 and b.ndim == 1:
        if a.shape[1] == b.shape[0]:
            return a @ b
        if a.shape[1] == 1:   # x^T delta with x a row: a column times a row, an outer product
            return np.outer(a[:, 0], b)
        if a.shape[0] == 1 and a.shape[1] * 1 == b.shape[0]:
            return a @ b
        raise ShapeError(f"{shape_text(a)} times {shape_text(b)}")
    if a.ndim == 1 and b.ndim == 2:
        if b.shape[0] == 1:
            return np.outer(a, b[0])
        if b.shape[0] == a.shape[0]:
            return a @ b
        raise ShapeError(f"{shape_text(a)} times {shape_text(b)}")
    if a.shape[1] == b.shape[0]:
        return a @ b
    if a.shape == b.shape and a.shape[0] == 1:
        return a * b
    if b.shape[0] == 1 and a.shape[1] > 1:
        # a row x^T after a Jacobian: the row stands for d(Wx)/dW = I (x) x^T (the local
        # partial written \nabla_W q = x^T), so J x^T is J (I (x) x^T)
        return a @ np.kron(np.eye(a.shape[1]), b)
    raise ShapeError(f"{shape_text(a)} times {shape_text(b)}")
