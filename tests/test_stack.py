"""Stacks and both directions of the NumPy and numba kernels (``stack_forward``,
``stack_backward``, ``stack_rtrl`` of every kernel module): lstm, gru and rnn against
torch.nn.LSTM/GRU/RNN (two layers, bidirectional, packed variable lengths), and random cells of
the whole grammar against a stack of the independent interpreter (tests/fuzz_reference.py,
torch autograd) run one sequence at a time, so that lengths and reversal are checked against
code that shares nothing with the kernels."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from conftest import require
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import derive
from derive.tools.interop import from_torch

F64 = torch.float64
NN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def _kernel(cell: str, backend: str):
    if backend == "numba":
        require("numba", "the numba backend")
    return importlib.import_module(f"derive.kernels.{cell}" + ("_numba" if backend == "numba"
                                                               else ""))


def _layers(cell: str, sd: dict, num_layers: int, dirs: int) -> list[list[dict]]:
    """Each (layer, direction)'s derive parameters from a torch state dict."""
    out = []
    for l_ in range(num_layers):
        layer = []
        for d in range(dirs):
            sfx = f"_l{l_}" + ("_reverse" if d else "")
            layer.append(from_torch(cell, {k[:-len(sfx)] + "_l0": v for k, v in sd.items()
                                           if k.endswith(sfx)}))
        out.append(layer)
    return out


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stack_equals_torch_nn_packed(cell, backend):
    """Two layers, bidirectional, packed variable lengths, initial states given: outputs, final
    states, every parameter's gradient, the initial states' and the input's gradients equal
    torch.nn's within 1e-10 (float64)."""
    K = _kernel(cell, backend)
    torch.manual_seed(0)
    T, B, n_in, n, L = 5, 3, 3, 4, 2
    ref = NN[cell](n_in, n, num_layers=L, bidirectional=True, dtype=F64)
    lens = torch.tensor([5, 2, 4])
    x = torch.randn(T, B, n_in, dtype=F64, requires_grad=True)
    S = len(K.STATE)
    h0 = [torch.randn(2 * L, B, n, dtype=F64, requires_grad=True) for _ in range(S)]
    R = torch.randn(T, B, 2 * n, dtype=F64)
    Rh = [torch.randn(2 * L, B, n, dtype=F64) for _ in range(S)]
    packed = pack_padded_sequence(x, lens, enforce_sorted=False)
    out, hn = ref(packed, h0[0] if S == 1 else tuple(h0))
    out, _ = pad_packed_sequence(out, total_length=T)
    hn = (hn,) if S == 1 else hn
    loss = (out * R).sum() + sum((a * b).sum() for a, b in zip(hn, Rh, strict=True))
    loss.backward()

    layers = _layers(cell, {k: v.detach() for k, v in ref.state_dict().items()}, L, 2)
    state0 = [[{s: h0[i][2 * l_ + d].detach().numpy() for i, s in enumerate(K.STATE)}
               for d in range(2)] for l_ in range(L)]
    got, cache = K.stack_forward(layers, x.detach().numpy(), state0, lengths=lens.numpy())
    np.testing.assert_allclose(got, out.detach().numpy(), atol=1e-10, rtol=0)
    for l_ in range(L):
        for d in range(2):
            for i, s in enumerate(K.STATE):
                np.testing.assert_allclose(cache["state"][l_][d][s],
                                           hn[i][2 * l_ + d].detach().numpy(), atol=1e-10)
    dstate = [[{s: Rh[i][2 * l_ + d].numpy() for i, s in enumerate(K.STATE)} for d in range(2)]
              for l_ in range(L)]
    grads, dxs = K.stack_backward(layers, cache, R.numpy(), dstate=dstate, input_grad=True)
    np.testing.assert_allclose(dxs, x.grad.numpy(), atol=1e-10, rtol=0)
    # torch's gradients in derive's names: a merged bias b = bias_ih + bias_hh has the gradient
    # of either, so bias_hh's merged blocks are zeroed before from_torch adds the two
    tg = {k: p.grad.detach().clone() for k, p in ref.named_parameters()}
    for k in tg:
        if k.startswith("bias_hh"):
            tg[k][:2 * n if cell == "gru" else None] = 0.0
    expect = _layers(cell, tg, L, 2)
    for l_ in range(L):
        for d in range(2):
            for p in K.PARAMS:
                np.testing.assert_allclose(grads[l_][d][p], expect[l_][d][p], atol=1e-10,
                                           rtol=0, err_msg=f"layer {l_} dir {d} {p}")
            for i, s in enumerate(K.STATE):
                np.testing.assert_allclose(grads[l_][d][K.STATE0_GRAD[s]],
                                           h0[i].grad[2 * l_ + d].numpy(), atol=1e-10)


def _reference_stack(spec, layers, xs, state0, lengths, R, Rs):
    """The stack by the independent interpreter, one sequence at a time (its own length, the
    reverse direction on the flipped sequence): (out, finals, loss) as torch tensors of the
    leaves in layers/xs/state0."""
    import fuzz_reference

    T, B = xs.shape[:2]
    loss = 0.0
    outs = torch.zeros(T, B, R.shape[2], dtype=F64)
    finals = {}
    for b, m in enumerate(lengths):
        inp = xs[:m, b:b + 1]
        for l_, layer in enumerate(layers):
            hs = []
            for d, P in enumerate(layer):
                s0 = {s: v[b:b + 1] for s, v in state0[l_][d].items()}
                x = inp if d == 0 else inp.flip(0)
                h, fin, _ = fuzz_reference.run(spec, P, x, s0, readout=False)
                hs.append(h if d == 0 else h.flip(0))
                for s, v in fin.items():
                    finals[l_, d, s, b] = v[0]
                    loss = loss + (v[0] * Rs[l_][d][s][b]).sum()
            inp = torch.cat(hs, dim=2)
        outs[:m, b:b + 1] = inp
        loss = loss + (inp * R[:m, b:b + 1]).sum()
    return outs, finals, loss


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_random_cells_stacked_bidirectional_match_the_reference(backend):
    """Any cell means any cell: random specs, two layers, both directions, variable lengths."""
    hyp = require("hypothesis", "property-based tests")
    if backend == "numba":
        require("numba", "the numba backend")
    import cell_strategies

    from derive.codegen.load import load_kernel

    @hyp.settings(max_examples=8 if backend == "numpy" else 2, deadline=None,
                  derandomize=True, suppress_health_check=list(hyp.HealthCheck))
    @hyp.given(cell_strategies.cells_with_sizes())
    def check(pair):
        spec, sz = pair
        spec = {k: v for k, v in spec.items() if k not in ("readout", "readout_params")}
        try:
            K = load_kernel(spec, backend)
        except derive.spec.SpecError:
            hyp.reject()
        n, m, T, B = sz["n_hidden"], sz["n_in"], sz["T"], sz["B"]
        rng = np.random.default_rng(0)
        lengths = rng.integers(0, T + 1, size=B)
        lengths[0] = T
        layers, state0 = [], []
        for l_ in range(2):
            dims = {"n_hidden": n, "n_in": m if l_ == 0 else 2 * n}
            layers.append([{p: 0.5 * rng.standard_normal([dims[d] for d in s])
                            for p, s in K.PARAMS.items()} for _ in range(2)])
            state0.append([{s: 0.5 * rng.standard_normal((B, n)) for s in K.STATE}
                           for _ in range(2)])
        xs = rng.standard_normal((T, B, m))
        R = rng.standard_normal((T, B, 2 * n))
        Rs = [[{s: rng.standard_normal((B, n)) for s in K.STATE} for _ in range(2)]
              for _ in range(2)]

        out, cache = K.stack_forward(layers, xs, state0, lengths=lengths)
        grads, dxs = K.stack_backward(layers, cache, R, dstate=Rs, input_grad=True)

        tl = [[{p: torch.tensor(v, requires_grad=True) for p, v in P.items()} for P in layer]
              for layer in layers]
        ts = [[{s: torch.tensor(v, requires_grad=True) for s, v in S.items()} for S in layer]
              for layer in state0]
        tx = torch.tensor(xs, requires_grad=True)
        rout, rfin, loss = _reference_stack(spec, tl, tx, ts, lengths, torch.tensor(R),
                                            [[{s: torch.tensor(v) for s, v in S.items()}
                                              for S in layer] for layer in Rs])
        np.testing.assert_allclose(out, rout.detach().numpy(), atol=1e-9)
        for (l_, d, s, b), v in rfin.items():
            np.testing.assert_allclose(cache["state"][l_][d][s][b], v.detach().numpy(),
                                       atol=1e-9)
        leaves = [tx] + [v for layer in tl for P in layer for v in P.values()] + \
            [v for layer in ts for S in layer for v in S.values()]
        ref = torch.autograd.grad(loss, leaves, allow_unused=True)
        ref = [np.zeros(a.shape) if g is None else g.numpy() for a, g in zip(leaves, ref,
                                                                              strict=True)]
        got = [dxs] + [grads[l_][d][p] for l_, layer in enumerate(tl)
                       for d, P in enumerate(layer) for p in P] + \
            [grads[l_][d][K.STATE0_GRAD[s]] for l_, layer in enumerate(ts)
             for d, S in enumerate(layer) for s in S]
        for k, (a, b) in enumerate(zip(got, ref, strict=True)):
            np.testing.assert_allclose(a, b, atol=1e-8, err_msg=f"leaf {k}")

    check()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_stack_rtrl_is_each_layers_rtrl_on_its_input(backend):
    """stack_rtrl: layer l's sensitivities are its own RTRL with the input the layers below
    give it, checked against central differences of stack_forward's final states
    in that layer's own parameters (which move nothing below it)."""
    K = _kernel("gru", backend)
    rng = np.random.default_rng(4)
    T, B, m, n = 4, 2, 3, 3
    layers = [[K.init_params(m if l_ == 0 else 2 * n, n, seed=10 * l_ + d) for d in range(2)]
              for l_ in range(2)]
    xs = rng.standard_normal((T, B, m))
    lengths = np.array([4, 2])
    sens = K.stack_rtrl(layers, xs, lengths=lengths)
    eps = 1e-6
    for l_, d, p in [(1, 0, "W_hz"), (1, 1, "b_r"), (0, 1, "W_xn"), (0, 0, "b_hn")]:
        A = layers[l_][d][p]
        idx = tuple(int(i) for i in np.unravel_index(5 % A.size, A.shape))
        vals = []
        for sgn in (1, -1):
            A[idx] += sgn * eps
            _, cache = K.stack_forward(layers, xs, lengths=lengths)
            vals.append(cache["state"][l_][d]["h"])
            A[idx] -= sgn * eps
        fd = (vals[0] - vals[1]) / (2 * eps)
        np.testing.assert_allclose(sens[l_][d][p][(slice(None), slice(None)) + idx], fd,
                                   atol=1e-7)


def test_stack_refuses_ragged_layers():
    K = _kernel("rnn", "numpy")
    P = K.init_params(2, 3)
    with pytest.raises(ValueError, match="same number of directions"):
        K.stack_forward([[P, P], [P]], np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="non-empty list"):
        K.stack_forward([], np.zeros((2, 1, 2)))
