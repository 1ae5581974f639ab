"""Generated kernels against torch: torch.autograd / torch.func on a hand-written torch version of
every cell (<= 1e-9, float64), and torch.nn.LSTM / GRU / RNN through derive.tools.interop."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require
from test_kernels import CELLS, B, M, N, T, kernel, rel, setup

torch = require("torch", "torch is not installed (pip install torch==2.13.0)")
import torch_reference  # noqa: E402

from derive.tools import interop  # noqa: E402


def tt(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


@pytest.mark.parametrize("cell", CELLS)
def test_all_modes_match_torch_func(cell):
    mod, P, xs, s0, rng = setup(cell, seed=3)
    R = rng.normal(size=(T, B, N))
    hs, cache = mod.forward(P, xs, s0)
    g = mod.backward(P, cache, R, input_grad=True)
    tp = {k: tt(v).requires_grad_() for k, v in P.items()}
    ts0 = {k: tt(v).requires_grad_() for k, v in s0.items()}
    txs = tt(xs).requires_grad_()
    ths, _ = torch_reference.run(cell, tp, txs, ts0)
    assert rel(hs, ths.detach().numpy()) <= 1e-12
    (ths * tt(R)).sum().backward()
    for k in P:
        assert rel(g[k], tp[k].grad.numpy()) <= 1e-9, k
    for s in mod.STATE:
        assert rel(g[f"{s}0"], ts0[s].grad.numpy()) <= 1e-9, s
    assert rel(g["xs"], txs.grad.numpy()) <= 1e-9

    # forward mode: dh_T/dA with torch.func.jacfwd
    plain = {k: tt(v) for k, v in P.items()}

    def h_T(params):
        return torch_reference.run(cell, params, tt(xs), {k: tt(v) for k, v in s0.items()})[1]

    jac = torch.func.jacfwd(lambda p: h_T(p)["h"])(plain)
    sens = mod.rtrl(P, xs, s0)
    state, online = dict(s0), None
    for t in range(T):
        state, online = mod.rtrl_step(P, xs[t], state, online)
    for k in P:
        assert rel(sens[k], jac[k].numpy()) <= 1e-9, k
        assert rel(online["h"][k], jac[k].numpy()) <= 1e-9, k

    # one-step state Jacobian with torch.func.jacrev, per batch row
    J = mod.state_jacobian(P, xs[0], s0)
    for b in range(B):
        def step(flat, b=b):
            prev = {s: flat[i * N:(i + 1) * N][None] for i, s in enumerate(mod.STATE)}
            out = torch_reference.STEPS[cell](plain, tt(xs[0][b:b + 1]), prev)
            return torch.cat([out[s][0] for s in mod.STATE])

        flat = tt(np.concatenate([s0[s][b] for s in mod.STATE]))
        assert rel(J[b], torch.func.jacrev(step)(flat).numpy()) <= 1e-9


MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


@pytest.mark.parametrize("cell", sorted(MODULES))
def test_outputs_and_gradients_match_torch_nn(cell):
    torch.manual_seed(0)
    Mod = getattr(torch.nn, MODULES[cell])
    net = Mod(M, N, dtype=torch.float64)
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(T, B, M))
    s0 = {s: 0.5 * rng.normal(size=(B, N)) for s in kernel(cell).STATE}
    R = rng.normal(size=(T, B, N))
    txs = tt(xs).requires_grad_()
    th0 = tt(s0["h"])[None].requires_grad_()
    if cell == "lstm":
        tc0 = tt(s0["c"])[None].requires_grad_()
        out, _ = net(txs, (th0, tc0))
    else:
        out, _ = net(txs, th0)
    (out * tt(R)).sum().backward()

    mod = kernel(cell)
    P = interop.from_torch(cell, net.state_dict())
    hs, cache = mod.forward(P, xs, s0)
    assert rel(hs, out.detach().numpy()) <= 1e-12
    g = mod.backward(P, cache, R, input_grad=True)
    tg = interop.to_torch(cell, {k: g[k] for k in P}, gradient=True)
    for name, p in net.named_parameters():
        assert rel(tg[name], p.grad.numpy()) <= 1e-9, name
    assert rel(g["xs"], txs.grad.numpy()) <= 1e-9
    assert rel(g["h0"], th0.grad[0].numpy()) <= 1e-9
    if cell == "lstm":
        assert rel(g["c0"], tc0.grad[0].numpy()) <= 1e-9


def test_torch_nn_lstm_float32_through_the_kernel():
    torch.manual_seed(0)
    net = torch.nn.LSTM(M, N)
    P = interop.from_torch("lstm", net.state_dict())
    assert all(v.dtype == np.float32 for v in P.values())
    xs = np.random.default_rng(2).normal(size=(T, B, M)).astype(np.float32)
    hs, _ = kernel("lstm").forward(P, xs)
    want, _ = net(torch.from_numpy(xs))
    assert hs.dtype == np.float32 and rel(hs, want.detach().numpy()) <= 1e-5
