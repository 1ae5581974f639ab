"""derive.torch: derived cells as torch layers (issue 17).

References that share no code with what they check: torch.nn.LSTM / GRU / RNN (the classic
cells, stacked, bidirectional, packed), torch.autograd.gradcheck (central differences, both
modes), each sequence run alone (variable lengths), and torch autograd through
tests/fuzz_reference.py's interpreter of the spec (random cells of the whole grammar).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import require

torch = require("torch", "the torch layer is torch")

import derive  # noqa: E402
import derive.torch as dt  # noqa: E402
from derive.codegen.jax_backend import render_jax_kernel  # noqa: E402
from derive.codegen.torch_backend import render_torch_kernel  # noqa: E402

F64 = torch.float64
NN = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def _run(module, x, lens, R, hR):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    xx = x.clone().requires_grad_()
    out, h = module(pack_padded_sequence(xx, lens, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True)
    hh = h if isinstance(h, tuple) else (h,)
    loss = ((out - R) ** 2).mean() + sum(((a - b) ** 2).mean() for a, b in zip(hh, hR,
                                                                              strict=True))
    return out, hh, xx, loss


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stacked_bidirectional_packed_equals_torch_nn(cell):
    """num_layers=2, bidirectional, batch_first, packed variable lengths: outputs, final states
    and every gradient within 1e-10 of torch.nn's; 100 SGD steps give the same loss curve."""
    torch.manual_seed(0)
    ref = NN[cell](3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=F64)
    ours = dt.RNN(cell, 3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=F64)
    ours.load_state_dict(ref.state_dict())
    assert set(ours.state_dict()) == set(ref.state_dict())
    x = torch.randn(3, 4, 3, dtype=F64)
    lens = torch.tensor([4, 2, 3])
    R = torch.randn(3, 4, 8, dtype=F64)
    S = 2 if cell == "lstm" else 1
    hR = [torch.randn(4, 3, 4, dtype=F64) for _ in range(S)]
    got = []
    for m in (ref, ours):
        out, hh, xx, loss = _run(m, x, lens, R, hR)
        loss.backward()
        got.append((out, hh, xx.grad, {k: p.grad for k, p in m.named_parameters()}))
    (o1, h1, x1, g1), (o2, h2, x2, g2) = got
    torch.testing.assert_close(o2, o1, atol=1e-10, rtol=0)
    for a, b in zip(h2, h1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    torch.testing.assert_close(x2, x1, atol=1e-10, rtol=0)
    assert set(g1) == set(g2)
    for k in g1:
        torch.testing.assert_close(g2[k], g1[k], atol=1e-10, rtol=0, msg=k)
    # 100 SGD steps from the same weights
    curves = []
    start = {k: v.clone() for k, v in ref.state_dict().items()}
    for m in (ref, ours):
        m.load_state_dict(start)
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        curve = []
        for _ in range(100):
            opt.zero_grad()
            loss = _run(m, x, lens, R, hR)[3]
            loss.backward()
            opt.step()
            curve.append(loss.item())
        curves.append(np.array(curve))
    assert np.abs(curves[0] - curves[1]).max() < 1e-6


def _params(K, n_in, n, gen):
    dims = {"n_hidden": n, "n_in": n_in}
    return {p: (0.5 * torch.randn(*[dims[d] for d in shape], generator=gen, dtype=F64))
            .requires_grad_() for p, shape in K.PARAMS.items()}


@pytest.mark.parametrize("cell", derive.cells())
def test_gradcheck_and_lengths_of_every_cell(cell):
    """gradcheck (reverse and forward mode) of the cell's Function with variable lengths, and
    each sequence of a padded batch equal to the sequence run alone, gradients included."""
    f = dt.sequence(cell)
    K = f.kernel
    gen = torch.Generator().manual_seed(1)
    P = _params(K, 2, 3, gen)
    xs = torch.randn(4, 3, 2, generator=gen, dtype=F64, requires_grad=True)
    s0 = {s: torch.randn(3, 3, generator=gen, dtype=F64, requires_grad=True) for s in K.STATE}
    lens = torch.tensor([4, 1, 3])
    mask = dt.lengths_mask(lens, 4)

    def fn(x, *a):
        hs, fin = f(x, dict(zip(K.STATE, a[:len(K.STATE)], strict=True)),
                    dict(zip(K.PARAMS, a[len(K.STATE):], strict=True)), mask)
        return hs, *fin.values()

    args = (xs, *s0.values(), *P.values())
    assert torch.autograd.gradcheck(fn, args, check_forward_ad=True, check_undefined_grad=False)
    R = torch.randn(4, 3, 3, generator=gen, dtype=F64)
    hs, fin = f(xs, s0, P, mask)
    loss = (hs * R).sum() + sum(v.sum() for v in fin.values())
    grads = torch.autograd.grad(loss, [*P.values(), xs])
    total = [torch.zeros_like(g) for g in grads]
    for b, n in enumerate(lens.tolist()):
        xb = xs[:n, b:b + 1]
        hb, fb = f(xb, {s: v[b:b + 1] for s, v in s0.items()}, P)
        torch.testing.assert_close(hs[:n, b:b + 1], hb, atol=1e-12, rtol=0)
        assert torch.all(hs[n:, b] == 0)
        for s in K.STATE:
            torch.testing.assert_close(fin[s][b:b + 1], fb[s], atol=1e-12, rtol=0)
        lb = (hb * R[:n, b:b + 1]).sum() + sum(v.sum() for v in fb.values())
        gb = torch.autograd.grad(lb, [*P.values(), xs])
        total = [t + g for t, g in zip(total, gb, strict=True)]
    for a, b in zip(grads, total, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("cell", derive.cells())
def test_second_derivatives_of_every_cell(cell):
    """Reverse over reverse (create_graph=True) through the derived BPTT: gradgradcheck
    (central differences of the first derivatives) with variable lengths on the torch kernels,
    and without lengths on the numba path, whose backward then runs the torch kernels."""
    gen = torch.Generator().manual_seed(5)
    for backend, lengths in (("torch", torch.tensor([3, 1])), ("numba", None)):
        if backend == "numba" and importlib.util.find_spec("numba") is None:
            require("numba", "the numba backend")
        f = dt.sequence(cell, backend)
        K = f.kernel
        P = _params(K, 2, 3, gen)
        xs = torch.randn(3, 2, 2, generator=gen, dtype=F64, requires_grad=True)
        s0 = {s: torch.randn(2, 3, generator=gen, dtype=F64, requires_grad=True)
              for s in K.STATE}
        mask = None if lengths is None else dt.lengths_mask(lengths, 3)

        def fn(x, *a, f=f, K=K, mask=mask):
            hs, fin = f(x, dict(zip(K.STATE, a[:len(K.STATE)], strict=True)),
                        dict(zip(K.PARAMS, a[len(K.STATE):], strict=True)), mask)
            return hs, *fin.values()

        assert torch.autograd.gradgradcheck(fn, (xs, *s0.values(), *P.values()))


@pytest.mark.parametrize("cell", derive.cells())
def test_numba_path_gradcheck_of_every_cell(cell):
    """On plain CPU tensors without lengths the Function runs the cell's numba kernels: its
    gradients pass gradcheck (central differences) and its forward-mode tangents
    (check_forward_ad: the torch kernels' forward mode on the same call) agree with them."""
    require("numba", "the numba backend")
    f = dt.sequence(cell, "numba")
    K = f.kernel
    gen = torch.Generator().manual_seed(3)
    P = _params(K, 2, 3, gen)
    xs = torch.randn(4, 3, 2, generator=gen, dtype=F64, requires_grad=True)
    s0 = {s: torch.randn(3, 3, generator=gen, dtype=F64, requires_grad=True) for s in K.STATE}
    hs, _ = f(xs, s0, P)
    assert "CellSequenceHost" in hs.grad_fn.name()

    def fn(x, *a):
        hs, fin = f(x, dict(zip(K.STATE, a[:len(K.STATE)], strict=True)),
                    dict(zip(K.PARAMS, a[len(K.STATE):], strict=True)))
        return hs, *fin.values()

    args = (xs, *s0.values(), *P.values())
    assert torch.autograd.gradcheck(fn, args, check_forward_ad=True, check_undefined_grad=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_numba_path_stacked_bidirectional_equals_torch_nn(cell, dtype):
    """The layer on the numba kernels (no lengths: the fused loops run): outputs, final states
    and every gradient equal torch.nn's (1e-10 in float64, 1e-4 in float32); a second backward
    through the same graph (retain_graph) gives the same gradients; an in-place change of the
    output before backward is caught by autograd, not read silently."""
    require("numba", "the numba backend")
    torch.manual_seed(0)
    ref = NN[cell](3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype)
    ours = dt.RNN(cell, 3, 4, num_layers=2, bidirectional=True, batch_first=True, dtype=dtype,
                  backend="numba")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 3, dtype=dtype, requires_grad=True)
    R = torch.randn(3, 5, 8, dtype=dtype)
    tol = 1e-10 if dtype == F64 else 1e-4
    got = []
    for m in (ref, ours):
        out, hh = m(x)
        hh = hh if isinstance(hh, tuple) else (hh,)
        loss = (out * R).sum() + sum((h ** 2).sum() for h in hh)
        params = [p for _, p in m.named_parameters()]
        g = torch.autograd.grad(loss, [x, *params], retain_graph=True)
        if m is ours:
            again = torch.autograd.grad(loss, [x, *params])
            for a, b in zip(g, again, strict=True):
                torch.testing.assert_close(a, b, atol=0, rtol=0)
        got.append((out, hh, g))
    (o1, h1, g1), (o2, h2, g2) = got
    torch.testing.assert_close(o2, o1, atol=tol, rtol=0)
    for a, b in zip((*h2, *g2), (*h1, *g1), strict=True):
        torch.testing.assert_close(a, b, atol=tol, rtol=0)
    f = dt.sequence(cell, "numba")
    K = f.kernel
    P = _params(K, 3, 4, torch.Generator().manual_seed(0))
    hs, _ = f(x.transpose(0, 1).detach().to(F64), {s: torch.zeros(3, 4, dtype=F64)
                                                   for s in K.STATE}, P)
    loss = hs.sum()
    hs.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_torch_func_transforms_run_through_the_function():
    import torch.func as tf

    f = dt.sequence("gru")
    K = f.kernel
    gen = torch.Generator().manual_seed(2)
    P = {k: v.detach() for k, v in _params(K, 2, 3, gen).items()}
    xs = torch.randn(3, 2, 2, generator=gen, dtype=F64)
    s0 = {"h": torch.zeros(2, 3, dtype=F64)}

    def loss(p, x):
        return f(x, s0, p)[0].pow(2).sum()

    g = tf.grad(loss)(P, xs)
    ref = torch.autograd.grad(loss({k: v.requires_grad_() for k, v in P.items()}, xs),
                              list(P.values()))
    for k, r in zip(P, ref, strict=True):
        torch.testing.assert_close(g[k], r)
    P = {k: v.detach() for k, v in P.items()}
    jac = tf.jacrev(lambda x: f(x, s0, P)[0])(xs)
    jfw = tf.jacfwd(lambda x: f(x, s0, P)[0])(xs)
    torch.testing.assert_close(jac, jfw, atol=1e-12, rtol=0)
    batch = torch.randn(4, 3, 2, 2, dtype=F64)
    v = tf.vmap(lambda x: loss(P, x))(batch)
    torch.testing.assert_close(v, torch.stack([loss(P, b) for b in batch]))


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_random_cells_through_the_layer_match_the_reference_interpreter(backend):
    """Any cell means any cell: random specs of the whole grammar, forward and every gradient
    of the torch Function (its torch kernels, and its numba kernels on plain CPU tensors)
    against torch autograd through the independent interpreter."""
    hyp = require("hypothesis", "property-based tests")
    if backend == "numba":
        require("numba", "the numba backend")
    import cell_strategies
    import fuzz_reference

    # a random cell's numba module compiles in seconds: fewer of them
    @hyp.settings(max_examples=6 if backend == "torch" else 3, deadline=None, derandomize=True,
                  suppress_health_check=list(hyp.HealthCheck))
    @hyp.given(cell_strategies.cells_with_sizes())
    # found by CI: a state the cell never changes (returned as-is), and a cell with a readout
    @hyp.example(pair=({"name": "fuzz", "params": {"U": ("hidden", "input"),
                                                   "W": ("hidden", "hidden"),
                                                   "W1": ("hidden", "hidden"), "b": ("hidden",)},
                        "nodes": {"h": "h_prev", "c": "tanh(U @ x + W @ h_prev + W1 @ c_prev + b)"},
                        "states": ("h", "c")}, {"n_hidden": 2, "n_in": 1, "T": 3, "B": 2}))
    @hyp.example(pair=({"name": "fuzz", "params": {"U": ("hidden", "input"),
                                                   "W": ("hidden", "hidden"), "b": ("hidden",)},
                        "nodes": {"h": "tanh(U @ x + W @ h_prev + b)"}, "states": ("h",),
                        "readout_params": {"V": ("output", "hidden")},
                        "readout": {"y": "V @ h"}}, {"n_hidden": 2, "n_in": 1, "T": 3, "B": 2}))
    def check(pair):
        spec, sz = pair
        try:
            f = dt.sequence(spec, backend)
        except derive.spec.SpecError:
            hyp.reject()
        K = f.kernel
        n, m, T, B = sz["n_hidden"], sz["n_in"], sz["T"], sz["B"]
        rng = np.random.default_rng(0)
        dims = {"n_hidden": n, "n_in": m}
        P = {p: 0.5 * rng.standard_normal([dims[d] for d in s]) for p, s in K.PARAMS.items()}
        xs = rng.standard_normal((T, B, m))
        s0 = {s: 0.5 * rng.standard_normal((B, n)) for s in K.STATE}
        dhs = rng.standard_normal((T, B, n))
        ref = fuzz_reference.gradients(spec, P, xs, s0, dhs)
        refh = fuzz_reference.forward({k: v for k, v in spec.items()
                                       if k not in ("readout", "readout_params")},
                                      P, xs, s0)["hs"]  # the layer has no readout
        tP = {k: torch.tensor(v, requires_grad=True) for k, v in P.items()}
        tx = torch.tensor(xs, requires_grad=True)
        ts0 = {k: torch.tensor(v, requires_grad=True) for k, v in s0.items()}
        hs, _ = f(tx, ts0, tP)
        np.testing.assert_allclose(hs.detach().numpy(), refh, atol=1e-9)
        got = torch.autograd.grad((hs * torch.tensor(dhs)).sum(), [*tP.values(), tx,
                                                                    *ts0.values()])
        for k, g in zip(tP, got, strict=False):
            np.testing.assert_allclose(g.numpy(), ref["params"][k], atol=1e-8, err_msg=k)
        np.testing.assert_allclose(got[len(tP)].numpy(), ref["xs"], atol=1e-8)
        for s, g in zip(ts0, got[len(tP) + 1:], strict=True):
            np.testing.assert_allclose(g.numpy(), ref["state0"][s], atol=1e-8)

    check()


def test_load_state_dict_takes_what_interop_gives():
    from derive.tools import interop

    ref = torch.nn.LSTM(3, 4, dtype=F64)
    params = interop.from_torch("lstm", ref.state_dict())
    ours = dt.RNN("lstm", 3, 4, dtype=F64)
    ours.load_state_dict(interop.to_torch("lstm", params))  # NumPy arrays
    x = torch.randn(5, 2, 3, dtype=F64)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], atol=1e-12, rtol=0)


def test_any_cell_any_options_and_a_spec_file(tmp_path):
    import json

    from derive.spec.cells import MGU

    path = tmp_path / "mine.json"
    path.write_text(json.dumps({**MGU, "name": "mine"}))
    m = dt.RNN(str(path), 3, 5, num_layers=2, bidirectional=True, dropout=0.5, bias=False,
               dtype=F64)
    assert "b_f_l0" in dict(m.named_buffers())  # bias=False: the summand biases are zero
    out, h = m(torch.randn(4, 2, 3, dtype=F64))
    assert out.shape == (4, 2, 10) and h.shape == (4, 2, 5)
    m2 = dt.RNN("peephole_lstm", 3, 5, dtype=F64)
    out, (h, c) = m2(torch.randn(4, 2, 3, dtype=F64))
    assert c.shape == (1, 2, 5)


def test_a_missing_torch_facet_raises():
    from derive.spec.activations import ACTIVATIONS, Activation, register, unregister

    facets = {f: getattr(ACTIVATIONS["tanh"], f) for f in Activation.__dataclass_fields__
              if not f.startswith(("torch", "jax"))}
    register(Activation(**{**facets, "name": "tanh_nofacet"}))
    try:
        spec = {"name": "nofacet", "params": {"W": ("hidden", "input"), "U": ("hidden", "hidden")},
                "nodes": {"h": "tanh_nofacet(W @ x + U @ h_prev)"}, "states": ("h",)}
        with pytest.raises(ValueError, match="torch"):
            render_torch_kernel(derive.calculus.derivation.get_spec(spec))
    finally:
        unregister("tanh_nofacet")


@pytest.mark.parametrize("cell", ["lstm", "mgu", "minlstm"])
def test_printed_kernels_have_no_unused_names(cell, tmp_path):
    import shutil
    import subprocess

    exe = shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed")
    files = []
    for name, text in (("t", render_torch_kernel(cell)), ("j", render_jax_kernel(cell))):
        files.append(tmp_path / f"{cell}_{name}.py")
        files[-1].write_text(text)
    r = subprocess.run([exe, "check", "--isolated", "--select", "F", *map(str, files)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_on_cuda_equals_cudnn(cell):
    torch.manual_seed(0)
    ref = NN[cell](8, 16, num_layers=2, bidirectional=True, dtype=F64).cuda()
    ours = dt.RNN(cell, 8, 16, num_layers=2, bidirectional=True, dtype=F64).cuda()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(7, 3, 8, dtype=F64, device="cuda", requires_grad=True)
    o1, _ = ref(x)
    g1 = torch.autograd.grad(o1.pow(2).sum(), [x, *ref.parameters()])
    o2, _ = ours(x)
    g2 = torch.autograd.grad(o2.pow(2).sum(), [x, *ours.parameters()])
    torch.testing.assert_close(o2, o1, atol=1e-10, rtol=0)
    for a, b in zip(g2, g1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unbatched_input_as_torch_nn_takes_it(cell):
    """A 2-D input (T, input_size) is one sequence, with a (num_layers * dirs, hidden) initial
    state, as torch.nn.LSTM/GRU take it: outputs and final states equal nn's."""
    torch.manual_seed(0)
    ref = NN[cell](3, 4, num_layers=2, bidirectional=True, dtype=F64)
    ours = dt.RNN(cell, 3, 4, num_layers=2, bidirectional=True, dtype=F64)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(5, 3, dtype=F64)
    S = 2 if cell == "lstm" else 1
    hx = tuple(torch.randn(4, 4, dtype=F64) for _ in range(S))
    hx = hx[0] if S == 1 else hx
    (o1, h1), (o2, h2) = ref(x, hx), ours(x, hx)
    torch.testing.assert_close(o2, o1, atol=1e-12, rtol=0)
    for a, b in zip((h2,) if S == 1 else h2, (h1,) if S == 1 else h1, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_bad_input_is_said_in_the_layers_words():
    m = dt.RNN("lstm", 3, 4)
    with pytest.raises(ValueError, match="input.size\\(-1\\) must be equal to input_size. "
                                         "Expected 3, got 7"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="input dtype \\(torch.float64\\) does not match"):
        m(torch.randn(5, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="initial h must have shape .* = \\(1, 2, 4\\), got "
                                         "\\(1, 2, 5\\)"):
        m(torch.randn(5, 2, 3), (torch.zeros(1, 2, 5), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="got 4-D"):
        m(torch.randn(5, 3, 2, 3))
    with pytest.raises(TypeError, match="got list"):
        m([1, 2])


@pytest.mark.parametrize("cell", ["lstm", "gru", "mgu"])
def test_numba_chunks_on_torchs_openmp_team_equal_the_thread_pool(cell, monkeypatch):
    """On Linux with torch's OpenMP backend the numba kernels' batch chunks run on torch's own
    OpenMP team (derive/torch/openmp.py): more chunks than cores (3 torch threads, 7 rows), the
    outputs and every gradient are bit for bit those of the kernels' own thread pool on the
    same chunks, and the team did run every forward and backward."""
    require("numba", "the numba backend")
    import sys

    from derive.torch import openmp

    if sys.platform.startswith("linux") and "ATen parallel backend: OpenMP" in \
            torch.__config__.parallel_info():
        assert openmp.runner() is not None, "torch runs on OpenMP here, but no team was found"
    if openmp.runner() is None:
        pytest.skip("torch does not run on an OpenMP team here")
    ran = []
    real = openmp.TorchOpenMP.run

    def counting(self, fn, chunks, args):
        done = real(self, fn, chunks, args)
        ran.append((fn.__name__, len(chunks), done))
        return done

    monkeypatch.setattr(openmp.TorchOpenMP, "run", counting)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        torch.manual_seed(0)
        x = torch.randn(6, 7, 5, dtype=F64)
        got = []
        for team in (True, False):
            if not team:
                monkeypatch.setattr(openmp, "runner", lambda: None)
                monkeypatch.setenv("DERIVE_NUM_THREADS", "3")
            torch.manual_seed(1)
            m = dt.RNN(cell, 5, 4, num_layers=2, bidirectional=True, dtype=F64,
                       backend="numba")
            xx = x.clone().requires_grad_()
            out, _ = m(xx)
            (out * torch.linspace(-1, 1, out.numel(), dtype=F64).view_as(out)).sum().backward()
            got.append([out, xx.grad, *(p.grad for p in m.parameters())])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*got, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # 2 layers x 2 directions, a forward and a backward each, all on the team in 3 chunks
    assert len(ran) == 8 and all(n == 3 and done for _, n, done in ran), ran


def test_openmp_runner_leaves_what_it_cannot_pass_to_the_pool():
    """Arguments the trampoline cannot pass by address (a strided view, a read-only array, an
    object) make the runner decline, and the kernels' pool runs the call."""
    from derive.torch import openmp

    a = np.zeros((4, 6))
    assert openmp._kind(a) == ("a", 2, "float64")
    assert openmp._kind(np.float32(1)) == ("s", "float32")
    assert openmp._kind(True) == ("s", "bool_") and openmp._kind(3) == ("s", "int64")
    assert openmp._kind(a[:, ::2]) is None
    a.setflags(write=False)
    assert openmp._kind(a) is None and openmp._kind(object()) is None
