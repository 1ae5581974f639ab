"""Every built-in cell, every parameter, all three modes at n_hidden=3: the engine's d(x)
expressions, instantiated with NumPy, equal central finite differences of an independent
hand-written NumPy step (tests/reference.py) to <= 1e-7 relative, in float64."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import reference
from engine_checks import engine_modes, phi_weights, random_adjoints

import derive
from derive.calculus.numeric import Step

N, M = 3, 4
EPS = 1e-6


def central(f: Callable[[np.ndarray], np.ndarray], a: np.ndarray) -> np.ndarray:
    """Jacobian of f at a (flattened row-major) by central differences; columns = entries of a."""
    cols = []
    for k in range(a.size):
        hi = a.reshape(-1).copy()
        lo = hi.copy()
        hi[k] += EPS
        lo[k] -= EPS
        cols.append((f(hi.reshape(a.shape)) - f(lo.reshape(a.shape))) / (2 * EPS))
    return np.stack(cols, axis=-1)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


@pytest.mark.parametrize("cell", reference.CELLS)
def test_finite_differences_all_modes(cell: str) -> None:
    D = derive.derive(cell)
    rng = np.random.default_rng(11)
    P = reference.random_params(cell, N, M, rng)
    x = rng.normal(size=M)
    prev = reference.random_state(cell, N, rng)
    adj_in = random_adjoints(D, N, rng)
    got = engine_modes(D, Step(D.spec, P, x, prev), adj_in)
    w = phi_weights(D, adj_in)

    def step(P=P, x=x, prev=prev):
        return reference.numpy_step(cell, P, x, prev)

    def phi(**kw):
        out = step(**kw)
        return np.array(sum(w[u] @ out[u] for u in D.states))

    want = {}
    for A in D.params:
        for u in D.states:
            want[("V", u, A)] = central(lambda a, A=A, u=u: step(P={**P, A: a})[u], P[A])
        want[("grad", A)] = central(lambda a, A=A: phi(P={**P, A: a}), P[A])
    for u in D.states:
        for v in D.states:
            want[("J", u, v)] = central(lambda a, u=u, v=v: step(prev={**prev, v: a})[u], prev[v])
    for v in D.states:
        want[("carry", v)] = central(lambda a, v=v: phi(prev={**prev, v: a}), prev[v])
    want[("grad", "x")] = central(lambda a: phi(x=a), x)
    assert set(got) == set(want)
    worst = max((rel_err(got[k], want[k]), k) for k in want)
    assert worst[0] <= 1e-7, f"{cell}: worst relative error {worst[0]:.2e} at {worst[1]}"
