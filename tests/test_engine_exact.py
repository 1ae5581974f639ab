"""Every built-in cell, every parameter, all three modes: the d(x)-notation result instantiated
at n_hidden=2, n_in=3 equals SymPy's exact Jacobian (``Matrix.jacobian``) of the same cell
written by hand with scalar symbols (tests/reference.py, which shares no code with derive).

Both sides are exact SymPy expressions in the same scalar symbols. Equality is decided by
evaluating their difference at random points with 50-digit arithmetic (a nonzero difference of
such analytic expressions is nonzero at a random point with probability 1); the tolerance 1e-35
is far below float64 and far above the working precision's noise.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference
import sympy as sp
from engine_checks import engine_modes, phi_weights

import derive
from derive.calculus.numeric import Step

N, M = 2, 3


def _obj(mat: sp.Matrix, ndim: int) -> np.ndarray:
    arr = np.empty((mat.rows, mat.cols), dtype=object)
    for i in range(mat.rows):
        for j in range(mat.cols):
            arr[i, j] = mat[i, j]
    return arr[:, 0] if ndim == 1 else arr


def _sym_vec(name: str, n: int) -> list[sp.Symbol]:
    return [sp.Symbol(f"{name}_{i}", real=True) for i in range(n)]


@pytest.mark.parametrize("cell", reference.CELLS)
def test_exact_sympy_jacobian_all_modes(cell: str) -> None:
    D = derive.derive(cell)
    P, x, prev = reference.sympy_symbols(cell, N, M)
    ref = reference.sympy_step(cell, P, x, prev)
    shapes = reference.PARAM_SHAPES[cell](N, M)
    step = Step(D.spec, {k: _obj(v, len(shapes[k])) for k, v in P.items()}, _obj(x, 1),
                {s: _obj(v, 1) for s, v in prev.items()})
    # adjoints as symbols too: the reverse mode is then checked as an identity in them
    adj_in = {(u, "carry"): np.array(_sym_vec(f"carry_{u}", N), dtype=object) for u in D.states}
    adj_in[(D.output, "loss")] = np.array(_sym_vec("loss", N), dtype=object)
    got = engine_modes(D, step, adj_in)

    want: dict = {}
    for A in D.params:
        for u in D.states:
            want[("V", u, A)] = ref[u].jacobian(reference.flat_symbols(P[A]))
    for u in D.states:
        for v in D.states:
            want[("J", u, v)] = ref[u].jacobian(list(prev[v]))
    w = phi_weights(D, adj_in)
    phi = sum((sp.Matrix(w[u]).T * ref[u])[0, 0] for u in D.states)
    for v in D.states:
        want[("carry", v)] = [sp.diff(phi, s) for s in prev[v]]
    for A in D.params:
        want[("grad", A)] = [sp.diff(phi, s) for s in reference.flat_symbols(P[A])]
    want[("grad", "x")] = [sp.diff(phi, s) for s in x]

    everything = set()
    for m in [*P.values(), x, *prev.values()]:
        everything |= set(m)
    for a in adj_in.values():
        everything |= set(a)
    rng = np.random.default_rng(7)
    points = [{s: sp.Float(rng.uniform(-1, 1), 50) for s in everything} for _ in range(2)]
    assert set(got) == set(want)
    for key in want:
        g = np.asarray(got[key], dtype=object).reshape(-1)
        r = np.asarray(sp.Matrix(want[key]), dtype=object).reshape(-1)
        assert g.shape == r.shape, f"{cell} {key}: shape {g.shape} vs {r.shape}"
        for pt in points:
            diff = max(abs(sp.N(sp.sympify(a - b).xreplace(pt), 50))
                       for a, b in zip(g, r, strict=True))
            assert diff < 1e-35, f"{cell} {key}: differs from the exact Jacobian by {diff}"


def test_rnn_readout_forward_exact() -> None:
    """Seed 004's readout: dy_t/dA = d(y'_t) V dh_t/dA, and dy_t/dV = d(y'_t) d_2(h_t)."""
    D = derive.derive("rnn")
    P, x, prev = reference.sympy_symbols("rnn", N, M, readout=True)
    h = reference.sympy_step("rnn", P, x, prev)["h"]
    y = reference.sympy_readout(P, h)
    shapes = {**reference.PARAM_SHAPES["rnn"](N, M), **reference.READOUT_SHAPES["rnn"](N, M)}
    step = Step(D.spec, {k: _obj(v, len(shapes[k])) for k, v in P.items()}, _obj(x, 1),
                {"h": _obj(prev["h"], 1)})
    rng = np.random.default_rng(3)
    syms = set().union(*[set(m) for m in [*P.values(), x, prev["h"]]])
    pt = {s: sp.Float(rng.uniform(-1, 1), 50) for s in syms}
    for A in ["W", "U", "b_h", "V", "b_y"]:
        flat = reference.flat_symbols(P[A])
        rec = {("h", A, 0): np.asarray(h.jacobian(flat), dtype=object)}
        got = step.evaluate(D.forward[A].raw.readout["y"], rec=rec)
        want = np.asarray(y.jacobian(flat), dtype=object)
        diff = max(abs(sp.N(sp.sympify(a - b).xreplace(pt), 50))
                   for a, b in zip(got.reshape(-1), want.reshape(-1), strict=True))
        assert diff < 1e-35, f"dy/d{A} differs by {diff}"
