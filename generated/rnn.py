# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec (derive/cells.py), the engine
# or the template. Cell: rnn.
"""Vanilla RNN of seed 004 (torch.nn.RNN, tanh) with readout y_t: forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    h = tanh(W @ x + U @ h_prev + b_h)

API (numpy only; every array keeps the parameters' floating dtype):

PARAMS
    parameter name -> shape in terms of n_hidden and n_in, in the order used everywhere.
STATE
    the state names; the first is the output h.
init_params(n_in, n_hidden, *, seed=0, dtype=np.float64) -> dict
    uniform(-1/sqrt(n_hidden), 1/sqrt(n_hidden)) like torch.
forward(params, xs, state0=None) -> (hs, cache)
    xs (T, B, n_in) -> hs (T, B, n_hidden); state0 maps each state name to (B, n_hidden)
    (zeros when None). cache["state"] holds the final state.
backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False) -> grads
    dhs = dL/dh_t for every t, (T, B, n_hidden); dstate optionally maps state names to dL/d(final
    state). grads[name] for every parameter (same shape and dtype), grads["<state>0"] = dL/d(initial
    state) for every state, and grads["xs"] = dL/dxs when input_grad=True. It reuses the cache's
    memory, so one cache serves one backward unless keep_cache=True.
rtrl(params, xs, state0=None) -> dict
    forward mode: dh_T/dA for every parameter A, shape (B, n_hidden, *A.shape).
rtrl_step(params, x_t, state, sens=None) -> (state, sens)
    one online step; sens[s][A] = d s_t / dA, shape (B, n_hidden, *A.shape) (zeros when None).
state_jacobian(params, x_t, state) -> ndarray
    d(all states at t)/d(all states at t-1), (B, S, S), states concatenated in STATE order.
"""

import numpy as np

from generated import _runtime as rt

PARAMS = {
    "W": ("n_hidden", "n_in"),
    "U": ("n_hidden", "n_hidden"),
    "b_h": ("n_hidden",),
}
STATE = ("h",)


_sigmoid = rt.sigmoid


def init_params(n_in, n_hidden, *, seed=0, dtype=np.float64):
    """Parameters drawn uniform(-1/sqrt(n_hidden), 1/sqrt(n_hidden)), as torch initialises."""
    return rt.init_params(PARAMS, n_in, n_hidden, seed=seed, dtype=dtype)


def _sizes(params):
    """Validate a parameter dict; returns (n_hidden, n_in, dtype)."""
    return rt.sizes(PARAMS, params)


_check_array = rt.check_array
_check_xs = rt.check_xs


def _check_state(state, batch, n_hidden, dtype, what="state0"):
    return rt.check_state(STATE, state, batch, n_hidden, dtype, what)


def _unpack(params):
    """Local names of the parameters and the stacked blocks Theta_v (seed 002)."""
    P = dict(params)
    # W_stack_x = [W] acts on x
    P["W_stack_x"] = np.concatenate([params["W"]], axis=0)
    # W_stack_h = [U] acts on h
    P["W_stack_h"] = np.concatenate([params["U"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["b_stack_x"] = np.concatenate([params["b_h"]])
    return P


def forward(params, xs, state0=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward."""
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch = xs.shape[:2]
    state = _check_state(state0, batch, n_hidden, dtype)
    P = _unpack(params)
    W = P["W"]
    U = P["U"]
    b_h = P["b_h"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    W_stack_h_T = np.ascontiguousarray(W_stack_h.T)  # C order: BLAS is faster at small B
    # input projections of all steps in one matmul: A_x[t] = W_stack_x x_t
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["b_stack_x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    A_h = np.empty((batch, 1 * n_hidden), dtype)
    for t in range(steps):
        x_t = xs[t]
        h_prev = S_h[t]
        # A_h = [U] h_{t-1}: one matmul
        np.matmul(h_prev, W_stack_h_T, out=A_h)
        # pre-activations of the gates whose x and h projections share a slot
        A_h[...] += A_x[t]
        # h_t = \tanh(W x_t + U h_{t-1} + b_h)
        h = S_h[t + 1]
        np.tanh(A_h[:, 0 * n_hidden:1 * n_hidden], out=h)
    cache = {"xs": xs, "state": {s: S[-1] for s, S in zip(STATE, (S_h, ))}}
    cache["S_h"] = S_h
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden); see the module docstring.

    The pre-activation adjoints are written over the gate values the cache holds (the memory
    is reused, as torch frees saved tensors), so a cache serves one backward unless
    keep_cache=True."""
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
    dhs = _check_array("dhs", dhs, (steps, batch, n_hidden), dtype)
    carry = _check_state(dstate, batch, n_hidden, dtype, "dstate")
    P = _unpack(params)
    W = P["W"]
    U = P["U"]
    b_h = P["b_h"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    S_h = cache["S_h"]
    d_h_next = carry["h"]
    dA_x = np.empty((steps, batch, 1 * n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        x_t = xs[t]
        h_prev = S_h[t]
        h = S_h[t + 1]
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{\hat{h}}_t = d(h'_t) \bar{h}_t
        d_h_hat = dA_x[t, :, 0 * n_hidden:1 * n_hidden]
        np.multiply((1.0 - h * h), d_h, out=d_h_hat)
        # \delta h_{t-1} = U^\top \bar{\hat{h}}_t
        d_h_new = dA_x[t] @ W_stack_h
        d_h_next = d_h_new
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


_apply = rt.apply_block


RTRL_DENSE_MAX = 1073741824  # see rt.use_dense_product and KernelPlan.rtrl_dense_max


def _local_step(params, x_t, prev, S=None, out=None, V=None, off=None, P=None, dense=None):
    """One step: the new states, the state-Jacobian blocks and (with S) the RTRL update of the
    sensitivities S into ``out`` (V: strided views of out's diagonal structure, off: column
    offsets, P: _unpack(params) when the caller keeps it, dense: (J buffer, whole S, whole
    out) for the one-matmul product; see generated._runtime.rtrl)."""
    if P is None:
        P = _unpack(params)
    W = P["W"]
    U = P["U"]
    b_h = P["b_h"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    batch, n_hidden = x_t.shape[0], prev["h"].shape[1]
    A_x = (x_t @ W_stack_x.T + P["b_stack_x"])[None]
    t = 0
    h_prev = prev["h"]
    # A_h = [U] h_{t-1}: one matmul
    A_h = h_prev @ W_stack_h.T
    # pre-activations of the gates whose x and h projections share a slot
    A_h[...] += A_x[t]
    # h_t = \tanh(W x_t + U h_{t-1} + b_h)
    h = np.tanh(A_h[:, 0 * n_hidden:1 * n_hidden])
    # \partial h_t / \partial h_{t-1} = d(h'_t) U
    Jd_h_h = None
    JM_h_h = ((1.0 - h * h))[..., None] * U
    J = {
        ("h", "h"): (JM_h_h, Jd_h_h),
    }
    new_state = { "h": h }
    if S is None:
        return new_state, J, None
    ones = np.ones((batch, n_hidden), x_t.dtype)
    S_h = S["h"]
    out_h = out["h"]
    if dense is not None:
        # small state: S <- J S with the whole state Jacobian, one matmul (rt.use_dense_product)
        np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], out=dense[2])
    else:
        # S_h <- sum_v (d h_t / d v_(t-1)) S_v
        np.matmul(JM_h_h, S_h, out=out_h)
    # S_u += V_u^A, through the strided views of the diagonal structure
    # V_h^W = d(h'_t) d_2(x_t)
    u0 = ((1.0 - h * h)) * ones
    V['h']['W'] += u0[..., None] * x_t[..., None, :]
    # V_h^U = d(h'_t) d_2(h_{t-1})
    V['h']['U'] += u0[..., None] * h_prev[..., None, :]
    # V_h^b_h = d(h'_t)
    u1 = (1.0) * ones
    V['h']['b_h'] += u1 * (1.0 - h * h)
    return new_state, J, out


def rtrl_step(params, x_t, state, sens=None):
    """One step of real-time recurrent learning: d s_t/dA = sum_v J[s][v] d v_(t-1)/dA + V_s^A."""
    return rt.rtrl_step(PARAMS, STATE, _local_step, params, x_t, state, sens,
                        unpack=_unpack, dense_max=RTRL_DENSE_MAX)


def rtrl(params, xs, state0=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape)."""
    return rt.rtrl(PARAMS, STATE, _local_step, params, xs, state0, unpack=_unpack,
                   dense_max=RTRL_DENSE_MAX)


def state_jacobian(params, x_t, state):
    """d(all states at t)/d(all states at t-1), shape (B, S, S), states in STATE order."""
    return rt.state_jacobian(PARAMS, STATE, _local_step, params, x_t, state)
