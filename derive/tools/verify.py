"""``derive verify CELL``: check a generated kernel against numeric differences.

At small random sizes (n_hidden=3, n_in=2, T=4, B=2, float64) it compares

* ``forward``: the kernel's hs with the spec evaluated step by step
  (:class:`derive.calculus.numeric.Step`);
* ``backward``: every parameter's and initial state's gradient of L = sum_t <h_t, R_t> with
  central differences of the kernel's own forward;
* ``rtrl``: dh_T/dA with central differences of h_T;
* ``state_jacobian``: with central differences of one step.

Each row holds the largest absolute and relative (to the largest reference entry) error.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..calculus.derivation import derive
from ..calculus.numeric import Step

N, M, T, B = 3, 2, 4, 2
EPS = 1e-6


def _central(f: Callable[[np.ndarray], np.ndarray], a: np.ndarray) -> np.ndarray:
    cols = []
    for k in range(a.size):
        hi = a.reshape(-1).copy()
        lo = hi.copy()
        hi[k] += EPS
        lo[k] -= EPS
        cols.append((f(hi.reshape(a.shape)) - f(lo.reshape(a.shape))) / (2 * EPS))
    return np.moveaxis(np.array(cols), 0, -1).reshape(np.shape(cols[0]) + a.shape)


def _row(mode: str, param: str, got: Any, want: Any) -> dict[str, Any]:
    err = float(np.abs(np.asarray(got) - want).max())
    scale = float(max(np.abs(want).max(), 1e-300))
    return {"mode": mode, "param": param, "max_abs_err": err, "max_rel_err": err / scale}


def run(cell: str, seed: int = 0) -> list[dict[str, Any]]:
    """Verify ``generated/<cell>.py``; one row per (mode, parameter)."""
    mod = importlib.import_module(f"derive.kernels.{cell}")
    spec = derive(cell).spec
    rng = np.random.default_rng(seed)
    P = {k: 2.0 * v for k, v in mod.init_params(M, N, seed=seed + 1).items()}
    xs = rng.normal(size=(T, B, M))
    s0 = {s: 0.5 * rng.normal(size=(B, N)) for s in mod.STATE}
    R = rng.normal(size=(T, B, N))
    rows = []

    hs, cache = mod.forward(P, xs, s0)
    want = np.empty_like(hs)
    for b in range(B):
        prev = {s: s0[s][b] for s in mod.STATE}
        for t in range(T):
            prev = Step(spec, P, xs[t, b], prev).states
            want[t, b] = prev[mod.STATE[0]]
    rows.append(_row("forward", "-", hs, want))

    grads = mod.backward(P, cache, R)

    def loss(P=P, s0=s0) -> np.ndarray:
        return np.asarray(np.sum(mod.forward(P, xs, s0)[0] * R))

    for A in P:
        rows.append(_row("backward", A, grads[A],
                         _central(lambda a, A=A: loss(P={**P, A: a}), P[A])))
    for s in mod.STATE:
        rows.append(_row("backward", f"{s}0", grads[f"{s}0"],
                         _central(lambda a, s=s: loss(s0={**s0, s: a}), s0[s])))

    sens = mod.rtrl(P, xs, s0)

    def h_T(P: dict) -> np.ndarray:
        return mod.forward(P, xs, s0)[1]["state"][mod.STATE[0]]

    for A in P:
        rows.append(_row("rtrl", A, sens[A], _central(lambda a, A=A: h_T({**P, A: a}), P[A])))

    J = mod.state_jacobian(P, xs[0], s0)
    want_j = np.empty_like(J)
    for b in range(B):
        flat = np.concatenate([s0[s][b] for s in mod.STATE])

        def step(v: np.ndarray, b: int = b) -> np.ndarray:
            prev = {s: v[i * N:(i + 1) * N][None] for i, s in enumerate(mod.STATE)}
            _, c = mod.forward(P, xs[:1, b:b + 1], prev)
            return np.concatenate([c["state"][s][0] for s in mod.STATE])

        want_j[b] = _central(step, flat)
    rows.append(_row("state_jacobian", "-", J, want_j))
    return rows
