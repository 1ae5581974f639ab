"""Evaluate the spec and the derived matrix expressions at concrete values.

This is the *instantiation* of the d(x) notation: d(v) becomes ``np.diag(v)``, d_2(v) becomes
``I_n kron v^T`` (parameters flattened row-major), W its array, the recursion symbols the arrays
you supply. It materialises everything on purpose: it exists to check derivations at small
sizes and to measure gradient flow, not to be fast (the generated kernels are the fast path).

Arrays of dtype ``object`` holding SymPy expressions work too: activations then use SymPy's exact
functions, which is how the tests compare with ``sympy.Matrix.jacobian``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..spec import Add, Call, CellSpec, Const, DerivAt, Expr, MatVec, Mul, Ref
from ..spec.activations import ACTIVATIONS
from .algebra import Adj, Diag, Diag2, Ident, Mat, Outer, Rec, Sum


def _act(fn: str, z: np.ndarray) -> np.ndarray:
    act = ACTIVATIONS[fn]
    if z.dtype == object:
        return np.array([act.sympy(v) for v in z], dtype=object)
    return act.value(z)


def _dact(fn: str, z: np.ndarray) -> np.ndarray:
    """act'(z), at the pre-activation z."""
    act = ACTIVATIONS[fn]
    if z.dtype == object:
        return np.array([act.sympy_deriv(v) for v in z], dtype=object)
    return act.derivative(z)


class Step:
    """The values of every node of one time step: ``Step(spec, params, x, prev)``.

    ``params`` maps names to arrays (2-D for matrices, 1-D for vectors), ``x`` is x_t (1-D),
    ``prev`` maps state names to their value at t-1. Implements the node expressions exactly as
    written in the spec (the cell's forward equations).
    """

    def __init__(self, spec: CellSpec, params: Mapping[str, Any], x: Any,
                 prev: Mapping[str, Any]):
        self.spec = spec
        self.params = {k: np.asarray(v) for k, v in params.items()}
        self.x = np.asarray(x)
        self.prev = {k: np.asarray(v) for k, v in prev.items()}
        self.values: dict[str, np.ndarray] = {}
        with_readout = all(p in self.params for p in spec.readout_params)
        for name, node in spec.nodes.items():
            if node.role == "readout" and not with_readout:
                continue
            self.values[name] = self.vec(node.expr)

    def vec(self, e: Expr) -> np.ndarray:
        """Value of a vector expression."""
        if isinstance(e, Ref):
            if e.kind == "input":
                return self.x
            if e.kind == "param":
                return self.params[e.name]
            if e.lag == 1:
                return self.prev[e.name]
            return self.values[e.name]
        if isinstance(e, Const):
            return np.asarray(e.value.numerator / e.value.denominator)
        if isinstance(e, Call):
            return _act(e.fn, self.vec(e.arg))
        if isinstance(e, DerivAt):
            return _dact(e.fn, self.vec(e.arg))
        if isinstance(e, MatVec):
            return self.params[e.param] @ self.vec(e.arg)
        if isinstance(e, Add):
            out = 0
            for s, t in e.terms:
                out = out + s * self.vec(t)
            return out
        if isinstance(e, Mul):
            out = 1
            for f in e.factors:
                out = out * self.vec(f)
            return out
        raise TypeError(e)

    @property
    def states(self) -> dict[str, np.ndarray]:
        return {s: self.values[s] for s in self.spec.states}

    def n(self) -> int:
        return len(self.values[self.spec.states[0]])

    def evaluate(self, s: Sum, rec: Mapping[tuple, Any] | None = None,
                 adj: Mapping[tuple, Any] | None = None,
                 shape: tuple[int, ...] | None = None) -> np.ndarray:
        """Instantiate a derived expression. ``rec[(state, wrt, lag)]`` gives the recursion
        symbols d state_{t-lag}/d wrt, ``adj[(name, kind)]`` the adjoint vectors; ``shape`` is
        the result's shape when the sum is empty (zero)."""
        if not s and shape is not None:
            return np.zeros(shape, dtype=object if self.x.dtype == object else float)
        n = self.n()
        total: Any = None
        for term in s:
            acc: Any = None
            for f in term.factors:
                if isinstance(f, Outer):
                    acc = np.outer(acc, self.vec(f.v)).reshape(-1)
                    continue
                m = self.factor(f, n, rec, adj)
                acc = m if acc is None else acc @ m
            c = term.coef
            val = acc * (c.numerator / c.denominator) if c != 1 else acc
            total = val if total is None else total + val
        if total is None:
            raise ValueError("cannot evaluate an empty sum without a shape; treat it as zero")
        return total

    def factor(self, f: Any, n: int, rec: Mapping | None, adj: Mapping | None) -> np.ndarray:
        if isinstance(f, Diag):
            v = np.broadcast_to(self.vec(f.v), (n,))
            return np.diag(v) if v.dtype != object else _obj_diag(v)
        if isinstance(f, Diag2):
            v = self.vec(f.v)
            eye = np.eye(n, dtype=v.dtype if v.dtype == object else float)
            if v.dtype == object:
                eye = _obj_diag(np.array([1] * n, dtype=object))
            return np.kron(eye, v[None, :])
        if isinstance(f, Mat):
            m = self.params[f.name]
            return m.T if f.transposed else m
        if isinstance(f, Ident):
            return np.eye(n)
        if isinstance(f, Rec):
            if rec is None or (f.state, f.wrt, f.lag) not in rec:
                raise KeyError(f"no value given for d{f.state}_(t-{f.lag})/d{f.wrt}")
            return np.asarray(rec[(f.state, f.wrt, f.lag)])
        if isinstance(f, Adj):
            if adj is None or (f.name, f.kind) not in adj:
                raise KeyError(f"no value given for adjoint {f.kind} of {f.name}")
            return np.asarray(adj[(f.name, f.kind)])
        raise TypeError(f)


def _obj_diag(v: np.ndarray) -> np.ndarray:
    n = len(v)
    out = np.zeros((n, n), dtype=object)
    for i in range(n):
        out[i, i] = v[i]
    return out


def param_size(spec: CellSpec, name: str, sizes: Mapping[str, int]) -> int:
    """Number of entries of a parameter for given dimension sizes."""
    return int(np.prod([sizes[d] for d in spec.params[name].shape]))
