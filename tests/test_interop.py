"""derive.tools.interop against torch.nn.LSTM / GRU / RNN: forward values, round trip, gradients.

The forward check runs the converted parameters through the hand-written NumPy references of
``tests/reference.py``; the gradient check differentiates a small torch re-implementation of each
cell, written here in derive's parameter layout, and maps its gradients back with
``to_torch(..., gradient=True)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="torch is not installed (pip install torch==2.13.0); interop tests compare with it",
)

from derive.tools.interop import from_torch, to_torch  # noqa: E402

try:
    from tests import reference as ref  # noqa: E402
except ImportError:  # tests/ is not importable as a package: pytest put tests/ on sys.path
    import reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
N_IN, N_HIDDEN, T, B = 3, 4, 5, 2
CELLS = ("lstm", "gru", "rnn")
TOL = 1e-12


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def make_module(cell: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Module:
    """A single-layer torch module for ``cell`` with random (seeded) parameters."""
    torch.manual_seed(seed)
    if cell == "lstm":
        return torch.nn.LSTM(N_IN, N_HIDDEN, dtype=dtype)
    if cell == "gru":
        return torch.nn.GRU(N_IN, N_HIDDEN, dtype=dtype)
    return torch.nn.RNN(N_IN, N_HIDDEN, nonlinearity="tanh", dtype=dtype)


def make_inputs(cell: str, seed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Input sequence (T, B, n_in) and initial states (B, n_hidden) keyed by derive state name."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(T, B, N_IN, generator=g, dtype=torch.float64)
    state0 = {"h": 0.5 * torch.randn(B, N_HIDDEN, generator=g, dtype=torch.float64)}
    if cell == "lstm":
        state0["c"] = 0.5 * torch.randn(B, N_HIDDEN, generator=g, dtype=torch.float64)
    return xs, state0


def run_module(
    cell: str, module: torch.nn.Module, xs: torch.Tensor, state0: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Module outputs (T, B, n) and final states (B, n) keyed by derive state name."""
    if cell == "lstm":
        out, (hn, cn) = module(xs, (state0["h"][None], state0["c"][None]))
        return out, {"h": hn[0], "c": cn[0]}
    out, hn = module(xs, state0["h"][None])
    return out, {"h": hn[0]}


def torch_step_lstm(p: dict[str, torch.Tensor], x: torch.Tensor, prev: dict[str, torch.Tensor]):
    h_prev, c_prev = prev["h"], prev["c"]
    i = torch.sigmoid(x @ p["W_xi"].T + h_prev @ p["W_hi"].T + p["b_i"])
    f = torch.sigmoid(x @ p["W_xf"].T + h_prev @ p["W_hf"].T + p["b_f"])
    g = torch.tanh(x @ p["W_xg"].T + h_prev @ p["W_hg"].T + p["b_g"])
    o = torch.sigmoid(x @ p["W_xo"].T + h_prev @ p["W_ho"].T + p["b_o"])
    c = f * c_prev + i * g
    return {"h": o * torch.tanh(c), "c": c}


def torch_step_gru(p: dict[str, torch.Tensor], x: torch.Tensor, prev: dict[str, torch.Tensor]):
    h_prev = prev["h"]
    r = torch.sigmoid(x @ p["W_xr"].T + h_prev @ p["W_hr"].T + p["b_r"])
    z = torch.sigmoid(x @ p["W_xz"].T + h_prev @ p["W_hz"].T + p["b_z"])
    n = torch.tanh(x @ p["W_xn"].T + p["b_xn"] + r * (h_prev @ p["W_hn"].T + p["b_hn"]))
    return {"h": (1 - z) * n + z * h_prev}


def torch_step_rnn(p: dict[str, torch.Tensor], x: torch.Tensor, prev: dict[str, torch.Tensor]):
    return {"h": torch.tanh(x @ p["W"].T + prev["h"] @ p["U"].T + p["b_h"])}


TORCH_STEPS: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "lstm": torch_step_lstm,
    "gru": torch_step_gru,
    "rnn": torch_step_rnn,
}


def as_numpy(d: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in d.items()}


def max_err(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    assert set(a) == set(b)
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


# --------------------------------------------------------------------------------------------
# (a) forward through the independent NumPy reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_from_torch_matches_module_forward(cell: str) -> None:
    module = make_module(cell)
    xs, state0 = make_inputs(cell)
    with torch.no_grad():
        out, final = run_module(cell, module, xs, state0)

    params = from_torch(cell, module.state_dict())
    assert set(params) == set(ref.PARAM_SHAPES[cell](N_HIDDEN, N_IN))
    for name, shape in ref.PARAM_SHAPES[cell](N_HIDDEN, N_IN).items():
        assert params[name].shape == shape, name
        assert params[name].dtype == np.float64, name

    states = ref.numpy_run(cell, params, xs.numpy(), as_numpy(state0))
    hs = np.stack([s["h"] for s in states])
    assert np.max(np.abs(hs - out.numpy())) <= TOL
    assert max_err(states[-1], as_numpy(final)) <= TOL


@pytest.mark.parametrize("cell", CELLS)
def test_from_torch_accepts_numpy_and_keeps_dtype(cell: str) -> None:
    module = make_module(cell, dtype=torch.float32)
    sd_np = {k: v.numpy() for k, v in module.state_dict().items()}
    from_tensors = from_torch(cell, module.state_dict())
    from_arrays = from_torch(cell, sd_np)
    for name in from_tensors:
        assert from_tensors[name].dtype == np.float32
        np.testing.assert_array_equal(from_tensors[name], from_arrays[name])
    back = to_torch(cell, from_arrays)
    assert all(v.dtype == np.float32 for v in back.values())


def test_from_torch_returns_copies() -> None:
    module = make_module("rnn")
    params = from_torch("rnn", module.state_dict())
    before = module.weight_ih_l0.detach().clone()
    params["W"][...] = 123.0
    assert torch.equal(module.weight_ih_l0.detach(), before)


# --------------------------------------------------------------------------------------------
# (b) round trip through to_torch into a fresh module
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_round_trip_into_fresh_module(cell: str) -> None:
    module = make_module(cell, seed=0)
    fresh = make_module(cell, seed=7)
    xs, state0 = make_inputs(cell)

    sd = to_torch(cell, from_torch(cell, module.state_dict()))
    assert set(sd) == set(module.state_dict())
    np.testing.assert_array_equal(sd["bias_hh_l0"][: 2 * N_HIDDEN if cell == "gru" else None], 0)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})

    with torch.no_grad():
        out, final = run_module(cell, module, xs, state0)
        out2, final2 = run_module(cell, fresh, xs, state0)
    assert torch.max(torch.abs(out - out2)).item() <= TOL
    assert max_err(as_numpy(final), as_numpy(final2)) <= TOL

    # and the derive parameters themselves survive the round trip
    params = from_torch(cell, module.state_dict())
    assert max_err(from_torch(cell, sd), params) <= TOL


# --------------------------------------------------------------------------------------------
# (c) gradients: derive layout -> torch layout with gradient=True
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_map_to_torch_autograd(cell: str) -> None:
    module = make_module(cell)
    xs, state0 = make_inputs(cell)
    R = torch.randn(T, B, N_HIDDEN, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    out, _ = run_module(cell, module, xs, state0)
    (out * R).sum().backward()
    torch_grads = {name: p.grad.numpy() for name, p in module.named_parameters()}

    params = {
        k: torch.tensor(v, requires_grad=True)
        for k, v in from_torch(cell, module.state_dict()).items()
    }
    prev = dict(state0)
    hs = []
    for x in xs:
        prev = TORCH_STEPS[cell](params, x, prev)
        hs.append(prev["h"])
    out_ref = torch.stack(hs)
    assert torch.max(torch.abs(out_ref - out.detach())).item() <= TOL
    (out_ref * R).sum().backward()
    derive_grads = {k: p.grad.numpy() for k, p in params.items()}

    mapped = to_torch(cell, derive_grads, gradient=True)
    assert set(mapped) == set(torch_grads)
    assert max_err(mapped, torch_grads) <= TOL

    # gradient=False would have put zeros into bias_hh_l0: that is *not* the gradient
    if cell != "gru":
        wrong = to_torch(cell, derive_grads, gradient=False)
        assert not np.allclose(wrong["bias_hh_l0"], torch_grads["bias_hh_l0"])


# --------------------------------------------------------------------------------------------
# (d) bad input
# --------------------------------------------------------------------------------------------


def test_unknown_cell_lists_valid_ones() -> None:
    sd = make_module("lstm").state_dict()
    for fn in (lambda: from_torch("peephole_lstm", sd), lambda: to_torch("LSTM", {})):
        with pytest.raises(ValueError) as info:
            fn()
        msg = str(info.value)
        assert "unknown cell" in msg
        assert all(c in msg for c in ("'lstm'", "'gru'", "'rnn'"))


def test_missing_and_extra_keys_are_named() -> None:
    sd = dict(make_module("gru").state_dict())
    del sd["bias_hh_l0"]
    sd["weight_foo"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        from_torch("gru", sd)
    msg = str(info.value)
    assert "missing bias_hh_l0" in msg
    assert "unexpected weight_foo" in msg

    params = from_torch("lstm", make_module("lstm").state_dict())
    del params["b_o"]
    params["b_x"] = np.zeros(N_HIDDEN)
    with pytest.raises(ValueError) as info:
        to_torch("lstm", params)
    msg = str(info.value)
    assert "missing b_o" in msg and "unexpected b_x" in msg and "W_xi" in msg


def test_rnn_readout_params_rejected() -> None:
    params = from_torch("rnn", make_module("rnn").state_dict())
    params["V"] = np.zeros((2, N_HIDDEN))
    params["b_y"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"readout parameters V, b_y have no counterpart"):
        to_torch("rnn", params, gradient=True)


@pytest.mark.parametrize(
    "kwargs", [{"num_layers": 2}, {"bidirectional": True}], ids=["two-layer", "bidirectional"]
)
def test_deep_or_bidirectional_rejected(kwargs: dict) -> None:
    module = torch.nn.LSTM(N_IN, N_HIDDEN, dtype=torch.float64, **kwargs)
    with pytest.raises(ValueError) as info:
        from_torch("lstm", module.state_dict())
    msg = str(info.value)
    assert "only single-layer unidirectional modules are supported" in msg
    assert ("weight_ih_l1" if "num_layers" in kwargs else "weight_ih_l0_reverse") in msg


def test_lstm_rows_not_multiple_of_four() -> None:
    sd = dict(make_module("lstm").state_dict())
    sd["weight_ih_l0"] = sd["weight_ih_l0"][:-1]
    with pytest.raises(ValueError) as info:
        from_torch("lstm", sd)
    msg = str(info.value)
    assert "multiple of 4" in msg and "(15, 3)" in msg


def test_inconsistent_hidden_sizes() -> None:
    sd = dict(make_module("gru").state_dict())
    sd["weight_hh_l0"] = torch.zeros(3 * N_HIDDEN, N_HIDDEN + 1, dtype=torch.float64)
    with pytest.raises(ValueError) as info:
        from_torch("gru", sd)
    msg = str(info.value)
    assert "weight_hh_l0" in msg and "(12, 4)" in msg and "(12, 5)" in msg

    sd = dict(make_module("rnn").state_dict())
    sd["bias_ih_l0"] = torch.zeros(N_HIDDEN + 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"bias_ih_l0 should have shape \(4,\).*got \(6,\)"):
        from_torch("rnn", sd)

    params = from_torch("lstm", make_module("lstm").state_dict())
    params["W_hf"] = np.zeros((N_HIDDEN, N_HIDDEN + 1))
    with pytest.raises(ValueError, match=r"W_hf should have shape \(4, 4\).*got \(4, 5\)"):
        to_torch("lstm", params)
    params = from_torch("gru", make_module("gru").state_dict())
    params["b_hn"] = np.zeros(N_HIDDEN - 1)
    with pytest.raises(ValueError, match=r"b_hn should have shape \(4,\).*got \(3,\)"):
        to_torch("gru", params, gradient=True)


# --------------------------------------------------------------------------------------------
# derive.tools.interop must stay torch-free
# --------------------------------------------------------------------------------------------


def test_interop_does_not_import_torch() -> None:
    path = ROOT / "derive" / "interop.py"
    code = (
        "import importlib.util, sys\n"
        "try:\n"
        "    import derive.tools.interop\n"
        "except Exception:  # the package may be incomplete while it is being written\n"
        f"    spec = importlib.util.spec_from_file_location('derive_interop', {str(path)!r})\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    spec.loader.exec_module(mod)\n"
        "assert 'torch' not in sys.modules, 'derive.tools.interop imported torch'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
