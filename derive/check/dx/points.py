"""Numbers for the d(x) judge: random values of everything a line can contain, and a sum of
products evaluated there (:class:`Point`); n = 3 hidden units, m = 2 inputs, k = 2 outputs
(:data:`SIZES`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...calculus.algebra import Adj, Diag, Diag2, Factor, Ident, Mat, Outer, Rec, Term
from ...spec import CellSpec, Expr
from .factors import RowGrad, VecCol

SIZES = {"hidden": 3, "input": 2, "output": 2}
SEEDS = (20240611, 7)  # the two points a line is evaluated at


class Point:
    """Random values of everything a line can contain: parameters, x_t, the states at t-1,
    the recursion symbols, the adjoint leaves and the row vector dL_t/du_t (``loss_nodes``: the
    readout's nodes, whose leaves \\frac{\\partial \\ell_t}{\\partial y_t} get values too)."""

    def __init__(self, spec: CellSpec, loss_nodes: Sequence[str], seed: int):
        from ...calculus.numeric import Step

        rng = np.random.default_rng(seed)
        params = {p: rng.normal(0.0, 0.6, size=[SIZES[d] for d in v.shape])
                  for p, v in spec.params.items()}
        x = rng.normal(size=SIZES["input"])
        prev = {s: rng.normal(size=SIZES[spec.nodes[s].dim]) for s in spec.states}
        self.step = Step(spec, params, x, prev)
        self.rec = {(s, p, 1): rng.normal(size=(SIZES[spec.nodes[s].dim],
                                                int(np.prod([SIZES[d] for d in v.shape]))))
                    for s in spec.states for p, v in spec.params.items()}
        self.adj = {(s, k): rng.normal(size=(SIZES[spec.nodes[s].dim], 1))
                    for s in spec.states for k in ("loss", "carry")}
        self.row = {s: rng.normal(size=(1, SIZES[spec.nodes[s].dim])) for s in spec.states}
        for u in loss_nodes:  # the readout's leaves \frac{\partial \ell_t}{\partial y_t}
            self.adj[(u, "loss")] = rng.normal(size=(SIZES[spec.nodes[u].dim], 1))
            self.row[u] = rng.normal(size=(1, SIZES[spec.nodes[u].dim]))

    def vec(self, e: Expr) -> np.ndarray:
        """A vector expression's value."""
        return np.asarray(self.step.vec(e), dtype=float)

    def mat(self, f: Factor, rows: int) -> np.ndarray:
        """A factor's matrix (``rows``: the columns of what precedes it)."""
        if isinstance(f, Diag):
            v = self.vec(f.v)
            return np.diag(np.broadcast_to(v, (rows,)) if v.ndim == 0 else v)
        if isinstance(f, Diag2):
            return np.kron(np.eye(rows), self.vec(f.v)[None, :])
        if isinstance(f, Mat):
            m = self.step.params[f.name]
            return m.T if f.transposed else m
        if isinstance(f, Rec):
            return self.rec[(f.state, f.wrt, f.lag)]
        if isinstance(f, Adj):
            return self.adj[(f.name, f.kind)]
        if isinstance(f, RowGrad):
            return self.row[f.name]
        if isinstance(f, Outer):
            return self.vec(f.v)[None, :]
        if isinstance(f, VecCol):
            return self.vec(f.v)[:, None]
        raise TypeError(f)  # pragma: no cover

    def term(self, t: Term, shape: tuple[int, int]) -> np.ndarray:
        """A term's value, a matrix of ``shape``."""
        acc: np.ndarray | None = None
        for f in t.factors:
            if isinstance(f, Ident):
                continue
            m = self.mat(f, acc.shape[1] if acc is not None else shape[0])
            acc = m if acc is None else acc @ m
        if acc is None:
            acc = np.eye(shape[0], shape[1])
        return float(t.coef) * acc

    def value(self, terms: Sequence[Term], shape: tuple[int, int]) -> np.ndarray:
        """A sum's value, a matrix of ``shape``."""
        out = np.zeros(shape)
        for t in terms:
            out = out + self.term(t, shape)
        return out


def size(d: tuple[str, ...]) -> int:
    """The number of entries of a dimension tuple (('hidden', 'input') -> 6)."""
    return int(np.prod([SIZES[x] for x in d])) if d else 1


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, up to rounding (relative to the larger entry)."""
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    return bool(np.allclose(a, b, rtol=1e-8, atol=1e-10 * scale))
