"""Variable-length sequences in the NumPy kernels (``lengths=`` / ``mask=``): every mode equals
running each sequence alone for its own length, for every built-in cell and for random cells
(the reference is the same kernel on one unpadded sequence at a time, so padding, holding and
the held steps' zero gradient are what is tested)."""

from __future__ import annotations

import numpy as np
import pytest
from cell_strategies import cell_specs
from hypothesis import HealthCheck, assume, given, settings

from derive.codegen import load_kernel
from derive.spec.cells import BUILTIN

T, B, N, M = 6, 4, 3, 2
LENGTHS = np.array([6, 1, 4, 0])


def _check(mod, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    P = mod.init_params(M, N, seed=seed)
    P = {k: v * 1.5 for k, v in P.items()}
    xs = rng.normal(size=(T, B, M))
    s0 = {s: 0.5 * rng.normal(size=(B, N)) for s in mod.STATE}
    dhs = rng.normal(size=(T, B, N))
    dfin = {s: rng.normal(size=(B, N)) for s in mod.STATE}
    hs, cache = mod.forward(P, xs, s0, lengths=LENGTHS)
    g = mod.backward(P, cache, dhs, dstate=dfin, input_grad=True)
    sens = mod.rtrl(P, xs, s0, lengths=LENGTHS)
    want_g = {k: np.zeros_like(v) for k, v in g.items()}
    for b, n in enumerate(LENGTHS):
        one = {s: s0[s][b:b + 1] for s in mod.STATE}
        if n == 0:
            for s in mod.STATE:
                assert np.allclose(cache["state"][s][b], s0[s][b])
                want_g[mod.STATE0_GRAD[s]][b] = dfin[s][b]
            assert np.all(hs[:, b] == 0)
            continue
        h1, c1 = mod.forward(P, xs[:n, b:b + 1], one)
        assert np.allclose(hs[:n, b], h1[:, 0], atol=1e-12) and np.all(hs[n:, b] == 0)
        for s in mod.STATE:
            assert np.allclose(cache["state"][s][b], c1["state"][s][0], atol=1e-12)
        g1 = mod.backward(P, c1, dhs[:n, b:b + 1], dstate={s: dfin[s][b:b + 1] for s in mod.STATE},
                          input_grad=True)
        for k in P:
            want_g[k] += g1[k]
        for s in mod.STATE:
            want_g[mod.STATE0_GRAD[s]][b] = g1[mod.STATE0_GRAD[s]][0]
        want_g[mod.INPUT_GRAD][:n, b] = g1[mod.INPUT_GRAD][:, 0]
        s1 = mod.rtrl(P, xs[:n, b:b + 1], one)
        for k in P:
            assert np.allclose(sens[k][b], s1[k][0], atol=1e-10), k
    for k in g:
        assert np.allclose(g[k], want_g[k], atol=1e-10), k


@pytest.mark.parametrize("cell", list(BUILTIN))
def test_lengths_equal_each_sequence_alone(cell):
    _check(load_kernel(cell))


@pytest.mark.parametrize("cell", ["lstm", "gru", "mgu", "rnn"])
def test_the_numba_modules_take_lengths_too(cell):
    """The numba module runs a variable-length batch on the NumPy kernel's path; its own
    backward follows that cache, and full-length batches stay on the fused loops."""
    import importlib

    from conftest import require

    require("numba", "the numba backend is optional")
    mod = importlib.import_module(f"derive.kernels.{cell}_numba")
    _check(mod)
    P = mod.init_params(M, N)
    _, cache = mod.forward(P, np.ones((T, B, M)))
    assert cache["backend"] == "numba"


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(cell_specs())
def test_lengths_on_random_cells(spec):
    from derive.spec import SpecError

    try:
        mod = load_kernel(spec)
    except SpecError:  # refused when read (counted by bench/fuzz.py); nothing to run
        assume(False)
    with np.errstate(all="ignore"):
        _check(mod, seed=3)


def test_mask_equals_lengths_and_bad_input_is_refused():
    mod = load_kernel("gru")
    P = mod.init_params(M, N)
    xs = np.random.default_rng(0).normal(size=(T, B, M))
    mask = np.arange(T)[:, None] < LENGTHS[None, :]
    a, _ = mod.forward(P, xs, lengths=LENGTHS)
    b, _ = mod.forward(P, xs, mask=mask)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="lengths must lie in"):
        mod.forward(P, xs, lengths=np.array([7, 1, 1, 1]))
    with pytest.raises(ValueError, match="lengths or mask, not both"):
        mod.forward(P, xs, lengths=LENGTHS, mask=mask)
    with pytest.raises(ValueError, match="mask must be booleans"):
        mod.forward(P, xs, mask=mask.astype(float))
