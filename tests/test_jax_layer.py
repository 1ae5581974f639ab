"""derive.jax: custom_vjp (derived BPTT) and custom_jvp (derived forward mode) sequence
functions of every cell, against the NumPy kernels (gradients and RTRL), each sequence run
alone (variable lengths), and the torch layer (stacked, bidirectional)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require

jax = require("jax", "the JAX sequence functions are JAX")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import derive  # noqa: E402
from derive.codegen.load import load_kernel  # noqa: E402
from derive.jax import lengths_mask, sequence_jvp, sequence_vjp, stack  # noqa: E402


@pytest.mark.parametrize("cell", derive.cells())
def test_grad_and_jvp_equal_the_numpy_kernels(cell):
    K = load_kernel(cell)
    P = {k: v for k, v in K.init_params(3, 4, seed=1).items() if k in K.PARAMS}
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(5, 2, 3))
    s0 = {s: rng.normal(size=(2, 4)) for s in K.STATE}
    hs, cache = K.forward(P, xs, s0)
    dhs = rng.normal(size=hs.shape)
    g = K.backward(P, cache, dhs, input_grad=True)
    fv, fj = sequence_vjp(cell), sequence_jvp(cell)

    def loss(p, x, s):
        return jnp.sum(fv(p, x, s)[0] * dhs)

    gp, gx, gs = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(P, xs, s0)
    for k in P:
        np.testing.assert_allclose(gp[k], g[k], atol=1e-10, rtol=0, err_msg=k)
    np.testing.assert_allclose(gx, g[K.INPUT_GRAD], atol=1e-10, rtol=0)
    for s in K.STATE:
        np.testing.assert_allclose(gs[s], g[K.STATE0_GRAD[s]], atol=1e-10, rtol=0)
    sens = K.rtrl(P, xs, s0)
    dP = {k: rng.normal(size=v.shape) for k, v in P.items()}
    zx = np.zeros_like(xs)
    zs = {s: np.zeros((2, 4)) for s in K.STATE}
    (h, _), (th, _) = jax.jit(lambda p, d: jax.jvp(lambda q: fj(q, xs, s0), (p,), (d,)))(P, dP)
    np.testing.assert_allclose(h, hs, atol=1e-12, rtol=0)
    ref = sum(sens[k].reshape(2, 4, -1) @ dP[k].reshape(-1) for k in P)
    np.testing.assert_allclose(th[-1], ref, atol=1e-10, rtol=0)
    # the tangent of x and of the initial state: against the transposed derived BPTT
    dx = rng.normal(size=xs.shape)
    _, (tx, _) = jax.jvp(lambda x: fj(P, x, s0), (xs,), (dx,))
    np.testing.assert_allclose(np.sum(tx * dhs), np.sum(dx * g[K.INPUT_GRAD]), atol=1e-10)
    _, (t0, _) = jax.jvp(lambda s: fj(P, xs, s), (s0,), ({**zs, K.STATE[0]: np.ones((2, 4))},))
    np.testing.assert_allclose(np.sum(t0 * dhs), np.sum(g[K.STATE0_GRAD[K.STATE[0]]]),
                               atol=1e-10)
    del zx
    # variable lengths: each sequence as if alone, values and gradients
    lens = np.array([5, 3])
    m = lengths_mask(lens, 5)
    hm, fin = fv(P, xs, s0, m)
    gm = jax.grad(lambda p: jnp.sum(fv(p, xs, s0, m)[0] * dhs))(P)
    total = {k: 0.0 for k in P}
    for b, n in enumerate(lens):
        sb = {s: v[b:b + 1] for s, v in s0.items()}
        hb, cb = K.forward(P, xs[:n, b:b + 1], sb)
        np.testing.assert_allclose(hm[:n, b:b + 1], hb, atol=1e-12, rtol=0)
        assert np.all(np.asarray(hm[n:, b]) == 0)
        for s in K.STATE:
            np.testing.assert_allclose(fin[s][b:b + 1], cb["state"][s], atol=1e-12, rtol=0)
        gb = K.backward(P, cb, dhs[:n, b:b + 1])
        total = {k: total[k] + gb[k] for k in P}
    for k in P:
        np.testing.assert_allclose(gm[k], total[k], atol=1e-10, rtol=0, err_msg=k)
    (_, _), (tm, _) = jax.jvp(lambda p: fj(p, xs, s0, m), (P,), (dP,))
    assert np.all(np.asarray(tm[3:, 1]) == 0)


def test_vmap_over_sequences_equals_a_loop():
    f = sequence_vjp("gru")
    K = f.kernel
    rng = np.random.default_rng(3)
    P = {k: v for k, v in load_kernel("gru").init_params(2, 3, seed=0).items()}
    xs = rng.normal(size=(4, 5, 2, 2))
    s0 = {"h": np.zeros((2, 3))}

    def loss(p, x):
        return jnp.sum(f(p, x, s0)[0] ** 2)

    got = jax.vmap(jax.grad(loss), in_axes=(None, 0))(P, xs)
    for i in range(4):
        ref = jax.grad(loss)(P, xs[i])
        for k in K.PARAMS:
            np.testing.assert_allclose(got[k][i], ref[k], atol=1e-12)


def test_stacked_bidirectional_equals_the_torch_layer():
    torch = require("torch", "the reference layer")
    import derive.torch as dt

    torch.manual_seed(0)
    m = dt.RNN("lstm", 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor([5, 2, 4])
    out, _ = m(x, lengths=lens)
    gx = torch.autograd.grad(out.pow(2).sum(), x)[0]
    layers = [[{k: v.detach().numpy() for k, v in m.cell_params(layer, d).items()}
               for d in range(2)] for layer in range(2)]
    f = sequence_vjp("lstm")
    o, _ = stack(f, layers, x.detach().numpy(), lengths=lens.numpy())
    np.testing.assert_allclose(o, out.detach().numpy(), atol=1e-12)
    g = jax.grad(lambda xx: jnp.sum(stack(f, layers, xx, lengths=lens.numpy())[0] ** 2))(
        x.detach().numpy())
    np.testing.assert_allclose(g, gx.numpy(), atol=1e-10)
