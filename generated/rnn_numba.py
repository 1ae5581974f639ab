# generated from numba/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec (derive/cells.py), the engine
# or the template. Cell: rnn, numba backend.
"""Vanilla RNN of seed 004 (torch.nn.RNN, tanh) with readout y_t: forward and BPTT as fused numba loops (optional backend).

Same API as ``generated.rnn`` (which this module uses for init_params, rtrl_step,
state_jacobian and the input checks): the elementwise part of every time step runs as
one compiled loop over (batch, unit) instead of one NumPy call per operation; the matrix products
stay NumPy's BLAS calls. ``rtrl`` runs its steps the same way: per step one compiled
loop for the state Jacobian's blocks and V's coefficients, one BLAS product per state with a
dense block, one compiled loop for the diagonal blocks and V. Needs numba (``pip install "derive[numba]"``); the first call of each dtype
compiles (cached on disk afterwards). The forward cache is the same as the NumPy backend's.
"""

import numpy as np
from numba import njit

from generated import _runtime as rt
from generated.rnn import (  # noqa: F401  (re-exported: same API)
    PARAMS,
    STATE,
    _check_array,
    _check_state,
    _check_xs,
    _sizes,
    _unpack,
    init_params,
    rtrl_step,
    state_jacobian,
)
from generated.rnn import forward as _forward_vectorized


# Per-step versus vectorised forward, chosen by size: NumPy's SIMD tanh/exp are ~60x faster per
# element than numba's scalar libm calls (measured: 0.31 ms vs 18.8 ms for 1e6 float32 tanh), so
# the fused scalar loop only wins while a step is small enough for NumPy's ~1 us per call to
# dominate. Above this many (batch x unit) elements per step the forward runs the NumPy kernel's
# vectorised step (same cache). The backward has no transcendentals and always runs fused.
FUSED_FORWARD_MAX = 512  # measured crossover on this 2-core machine (bench/README.md)


@njit(cache=True, inline="always")
def _sigmoid_s(z):
    """sigma(z) with one exp: exp(-|z|) never overflows."""
    e = np.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@njit(cache=True, inline="always")
def _tanh_s(z):
    """tanh(z) = -expm1(-2|z|) / (2 + expm1(-2|z|)), signed: one expm1, accurate near 0."""
    e = np.expm1(-2.0 * abs(z))
    r = -e / (2.0 + e)
    return r if z >= 0 else -r


@njit(cache=True)
def _forward_step(t, A_x, A_h, S_h, b_h):
    """The elementwise part of forward step t, fused: one pass over (batch, unit)."""
    batch, n_hidden = S_h.shape[1], S_h.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            # h_t = tanh(W @ x + U @ h_prev + b_h)
            h = _tanh_s((A_x[t, b, 0 * n_hidden + j] + A_h[b, 0 * n_hidden + j]))
            S_h[t + 1, b, j] = h


def forward(params, xs, state0=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward."""
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch = xs.shape[:2]
    if batch * n_hidden > FUSED_FORWARD_MAX:
        return _forward_vectorized(params, xs, state0)
    state = _check_state(state0, batch, n_hidden, dtype)
    P = _unpack(params)
    # input projections of all steps in one matmul: A_x[t] = W_stack_x x_t
    A_x = (xs.reshape(steps * batch, n_in) @ P["W_stack_x"].T).reshape(steps, batch, -1)
    A_x += P["b_stack_x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    W_stack_h_T = P["W_stack_h"].T
    A_h = np.empty((batch, W_stack_h_T.shape[1]), dtype)
    b_h = np.ascontiguousarray(P["b_h"])
    for t in range(steps):
        np.matmul(S_h[t], W_stack_h_T, out=A_h)  # the recurrent projection (BLAS)
        _forward_step(t, A_x, A_h, S_h, b_h)
    cache = {"xs": xs, "state": {s: S[-1] for s, S in zip(STATE, (S_h, ))}}
    cache["S_h"] = S_h
    return S_h[1:], cache


@njit(cache=True)
def _backward_step(t, dhs, S_h, b_h, dA_x, d_h_next, R_h):
    """The elementwise part of backward step t, fused: one pass over (batch, unit); writes the
    projection adjoints of step t and the carried adjoints that bypass the stacked matmul."""
    batch, n_hidden = dhs.shape[1], dhs.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            # bar{h}_t = frac{partial ell_t}{partial h_t} + delta h_t
            d_h = dhs[t, b, j] + d_h_next[b, j]
            # bar{hat{h}}_t = d(h'_t) bar{h}_t
            d_h_hat = ((1.0 - S_h[t + 1, b, j] * S_h[t + 1, b, j])) * d_h
            dA_x[t, b, 0 * n_hidden + j] = d_h_hat
            R_h[b, j] = 0.0


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden); see generated.rnn
    (one cache serves one backward unless keep_cache=True)."""
    n_hidden, n_in, dtype = _sizes(params)
    if not isinstance(cache, dict) or "xs" not in cache:
        raise ValueError("cache must be the dict returned by forward()")
    if cache.get("consumed"):
        raise ValueError("this cache was used by an earlier backward(), which reuses its memory; "
                         "run forward() again, or pass keep_cache=True to backward()")
    xs = cache["xs"]
    steps, batch = xs.shape[:2]
    if xs.shape[2] != n_in or xs.dtype != dtype:
        raise ValueError(f"cache was made with xs of shape {xs.shape} and dtype {xs.dtype}; "
                         f"params expect n_in={n_in} and dtype {dtype}")
    dhs = np.ascontiguousarray(_check_array("dhs", dhs, (steps, batch, n_hidden), dtype))
    carry = _check_state(dstate, batch, n_hidden, dtype, "dstate")
    P = _unpack(params)
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    S_h = cache["S_h"]
    d_h_next = np.ascontiguousarray(carry["h"])
    b_h = np.ascontiguousarray(P["b_h"])
    dA_x = np.empty((steps, batch, 1 * n_hidden), dtype)
    R_h = np.empty((batch, n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        _backward_step(t, dhs, S_h, b_h, dA_x, d_h_next, R_h)
        # carried adjoints: the stacked part as one matmul (BLAS), the rest from the fused loop
        d_h_next = dA_x[t] @ W_stack_h
        d_h_next += R_h
    grads = {}
    # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
    G_W_stack_x_0 = dA_x[:, :, 0 * n_hidden:1 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads["W"] = G_W_stack_x_0[0 * n_hidden:1 * n_hidden]
    G_W_stack_h_0 = dA_x[:, :, 0 * n_hidden:1 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads["U"] = G_W_stack_h_0[0 * n_hidden:1 * n_hidden]
    # bias gradients: dL/db = sum_t \bar a_t, the stored adjoints' column sums
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads["b_h"] = colsum_dA_x[0 * n_hidden:1 * n_hidden]
    grads["h0"] = d_h_next
    if input_grad:
        grads["xs"] = dA_x @ W_stack_x
    return grads


@njit(cache=True)
def _rtrl_coef(t, S_h, b_h, U, J_h, U0):
    """RTRL step t, first pass over (batch, unit): row j of the state Jacobian's dense column
    blocks (diagonal blocks of the same column folded in), the other diagonal blocks, and the
    coefficients of V_t (one per distinct d(.) product; see derive.codegen_numba.rtrl_parts)."""
    batch, n_hidden = S_h.shape[1], S_h.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            k0 = ((1.0 - S_h[t + 1, b, j] * S_h[t + 1, b, j]))
            # d h_t / d h_(t-1), row j: the dense part
            for m in range(n_hidden):
                J_h[b, 0 * n_hidden + j, m] = k0 * U[j, m]
            U0[b, j] = k0


@njit(cache=True)
def _rtrl_post(t, out, S, OFF, xs, S_h, U0):
    """RTRL step t, after out = J S (BLAS): out += the diagonal blocks times S and V_t, whose
    entries lie at out[b, u_j, OFF[A] + j k + l] (A d_2(z)) or out[b, u_j, OFF[A] + j] (a
    vector parameter): one pass over (batch, unit)."""
    batch, n_hidden, width = out.shape[0], out.shape[1] // 1, out.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            # V_t on its diagonal structure
            # V_h^W = d(h'_t) d_2(x_t)
            u = U0[b, j]
            o = OFF[0] + j * xs.shape[-1]
            for l in range(xs.shape[-1]):
                out[b, 0 * n_hidden + j, o + l] += u * xs[t, b, l]
            # V_h^U = d(h'_t) d_2(h_{t-1})
            u = U0[b, j]
            o = OFF[1] + j * S_h.shape[-1]
            for l in range(S_h.shape[-1]):
                out[b, 0 * n_hidden + j, o + l] += u * S_h[t, b, l]
            # V_h^b_h = d(h'_t)
            out[b, 0 * n_hidden + j, OFF[2] + j] += U0[b, j]


def rtrl(params, xs, state0=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape), by the RTRL
    recursion S_t = J_t S_(t-1) + V_t over the stacked sensitivities of all parameters (the same
    layout and result as generated.rnn.rtrl): the forward pass first (all steps' values),
    then per step two compiled passes and one BLAS product per dense Jacobian column."""
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch = xs.shape[:2]
    _, cache = forward(params, xs, state0)
    P = _unpack(params)
    S_h = cache["S_h"]
    b_h = np.ascontiguousarray(P["b_h"])
    U = np.ascontiguousarray(P["U"])
    off, _, _, width = rt.sens_layout(PARAMS, n_hidden, n_in)
    OFF = np.array([off[p][0] for p in PARAMS], np.int64)
    rows = len(STATE) * n_hidden
    # S_0 = 0; one block for both buffers, freed whole (see rt.sens_buffers)
    whole = list(np.zeros((2, batch, rows, width), dtype))
    J_h = np.zeros((batch, rows, n_hidden), dtype)  # d(all states)/d h_(t-1)
    U0 = np.empty((batch, n_hidden), dtype)
    for t in range(steps):
        S, out = whole[t % 2], whole[1 - t % 2]
        _rtrl_coef(t, S_h, b_h, U, J_h, U0)
        np.matmul(J_h, S[:, 0 * n_hidden:1 * n_hidden], out=out)
        _rtrl_post(t, out, S, OFF, xs, S_h, U0)
    # a compact copy of the output state's rows: the result keeps neither buffer alive
    return rt.split_sens(PARAMS, params, whole[steps % 2][:, :n_hidden].copy(), off, batch,
                         n_hidden)
