"""derive.tools.verify finds kernels right, and finds a wrong one wrong."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from derive.tools import verify


@pytest.mark.parametrize("cell", ["lstm", "sigmoid_lstm", "rnn", "gru", "peephole_lstm"])
def test_generated_kernels_verify(cell):
    rows = verify.run(cell)
    modes = {r["mode"] for r in rows}
    assert modes == {"forward", "backward", "rtrl", "state_jacobian"}
    worst = max(rows, key=lambda r: r["max_rel_err"])
    assert worst["max_rel_err"] <= 1e-6, worst


def test_a_broken_kernel_is_caught(monkeypatch):
    mod = importlib.import_module("derive.kernels.gru")
    real = mod.backward

    def broken(params, cache, dhs, **kw):
        g = real(params, cache, dhs, **kw)
        g["W_hz"] = g["W_hz"] * 1.01  # a 1% slip, like a dropped term
        return g

    monkeypatch.setattr(mod, "backward", broken)
    rows = {(r["mode"], r["param"]): r for r in verify.run("gru")}
    assert rows[("backward", "W_hz")]["max_rel_err"] > 1e-3
    assert rows[("backward", "W_hr")]["max_rel_err"] < 1e-6
    assert np.isfinite(rows[("rtrl", "W_hz")]["max_rel_err"])
