"""``derive verify CELL [--kernels DIR] [--backend B]``: check a kernel against numeric
differences.

The kernel is the built-in one (``derive.kernels``), or the one in a kernel package written by
``derive generate SPEC --out DIR`` (``kernels=DIR``), or, for a cell with neither, the kernel
printed for its spec; it must have been printed from this very spec (its ``SPEC_DIGEST``).

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

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..calculus.derivation import derive
from ..calculus.numeric import Step
from ..codegen.naming import module_name
from ..resources import KERNELS_PACKAGE
from ..spec import CellSpec

BACKENDS = ("numpy", "numba")


class KernelError(ValueError):
    """A kernel package that cannot be used for the cell: missing, or printed from another
    spec."""


def import_package(folder: str | os.PathLike[str]) -> str:
    """Import the kernel package in ``folder`` under a private name (it imports relatively,
    so any name works); returns that name."""
    folder = Path(folder).resolve()
    init = folder / "__init__.py"
    if not init.is_file():
        raise KernelError(f"{folder}: not a kernel package (no __init__.py); write one with "
                          f"`derive generate SPEC --out {folder}`")
    name = f"_derive_kernels_at_{hashlib.sha1(str(folder).encode()).hexdigest()[:12]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, init,
                                                      submodule_search_locations=[str(folder)])
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return name


def find_kernel(spec: CellSpec, backend: str = "numpy",
                kernels: str | os.PathLike[str] | None = None) -> ModuleType:
    """The kernel module of ``spec`` for ``backend``: from the package in ``kernels`` (which
    must hold this spec's kernel), else the built-in one when it was printed from this spec,
    else printed now (:func:`derive.codegen.load_kernel`)."""
    if backend not in BACKENDS:
        raise KernelError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    stem = module_name(spec.name) + ("_numba" if backend == "numba" else "")
    if kernels is not None:
        pkg = import_package(kernels)
        path = Path(kernels) / f"{stem}.py"
        if not path.is_file():
            raise KernelError(f"{path}: no kernel of cell {spec.name!r} there; write it with "
                              f"`derive generate SPEC --out {kernels}`")
        mod = importlib.import_module(f"{pkg}.{stem}")
        if getattr(mod, "SPEC_DIGEST", None) != spec.digest:
            raise KernelError(f"{path} was printed from another spec of {spec.name!r} (its "
                              f"SPEC_DIGEST differs); regenerate it with "
                              f"`derive generate SPEC --out {kernels}`")
        return mod
    try:
        mod = importlib.import_module(f"{KERNELS_PACKAGE}.{stem}")
        if getattr(mod, "SPEC_DIGEST", None) == spec.digest:
            return mod
    except ImportError:
        pass
    from ..codegen.load import load_kernel

    return load_kernel(spec, backend)

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


def run(cell: str | CellSpec, seed: int = 0, *, backend: str = "numpy",
        kernels: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Verify the kernel of ``cell`` (see :func:`find_kernel`); one row per (mode, parameter)."""
    spec = derive(cell).spec
    mod = find_kernel(spec, backend, kernels)
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
        rows.append(_row("backward", f"{s}0", grads[mod.STATE0_GRAD[s]],
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
