# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec (derive/cells.py), the engine
# or the template. Cell: gru.
"""GRU (torch.nn.GRU): forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    r = sigmoid(W_xr @ x + W_hr @ h_prev + b_r)
    z = sigmoid(W_xz @ x + W_hz @ h_prev + b_z)
    n = tanh(W_xn @ x + b_xn + r * (W_hn @ h_prev + b_hn))
    h = (1 - z) * n + z * h_prev

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
    "W_xr": ("n_hidden", "n_in"),
    "W_xz": ("n_hidden", "n_in"),
    "W_xn": ("n_hidden", "n_in"),
    "W_hr": ("n_hidden", "n_hidden"),
    "W_hz": ("n_hidden", "n_hidden"),
    "W_hn": ("n_hidden", "n_hidden"),
    "b_r": ("n_hidden",),
    "b_z": ("n_hidden",),
    "b_xn": ("n_hidden",),
    "b_hn": ("n_hidden",),
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
    # W_stack_x = [W_xr; W_xz; W_xn] acts on x
    P["W_stack_x"] = np.concatenate([params["W_xr"], params["W_xz"], params["W_xn"]], axis=0)
    # W_stack_h = [W_hr; W_hz; W_hn] acts on h
    P["W_stack_h"] = np.concatenate([params["W_hr"], params["W_hz"], params["W_hn"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["b_stack_x"] = np.concatenate([params["b_r"], params["b_z"], params["b_xn"]])
    return P


def forward(params, xs, state0=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward."""
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch = xs.shape[:2]
    state = _check_state(state0, batch, n_hidden, dtype)
    P = _unpack(params)
    W_xr = P["W_xr"]
    W_xz = P["W_xz"]
    W_xn = P["W_xn"]
    W_hr = P["W_hr"]
    W_hz = P["W_hz"]
    W_hn = P["W_hn"]
    b_r = P["b_r"]
    b_z = P["b_z"]
    b_xn = P["b_xn"]
    b_hn = P["b_hn"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    W_stack_h_T = np.ascontiguousarray(W_stack_h.T)  # C order: BLAS is faster at small B
    # input projections of all steps in one matmul: A_x[t] = W_stack_x x_t
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["b_stack_x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    C_s0 = np.empty((steps, batch, n_hidden), dtype)
    C_s1 = np.empty((steps, batch, n_hidden), dtype)
    A_h = np.empty((batch, 3 * n_hidden), dtype)
    for t in range(steps):
        x_t = xs[t]
        h_prev = S_h[t]
        # A_h = [W_hr; W_hz; W_hn] h_{t-1}: one matmul
        np.matmul(h_prev, W_stack_h_T, out=A_h)
        # pre-activations of the gates whose x and h projections share a slot
        A_h[:, 0 * n_hidden:2 * n_hidden] += A_x[t][:, 0 * n_hidden:2 * n_hidden]
        # r_t = \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r)
        r = A_x[t, :, 0 * n_hidden:1 * n_hidden]
        _sigmoid(A_h[:, 0 * n_hidden:1 * n_hidden], out=r)
        # z_t = \sigma(W_{xz} x_t + W_{hz} h_{t-1} + b_z)
        z = A_x[t, :, 1 * n_hidden:2 * n_hidden]
        _sigmoid(A_h[:, 1 * n_hidden:2 * n_hidden], out=z)
        # n_t = \tanh(W_{xn} x_t + b_{xn} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
        n = A_x[t, :, 2 * n_hidden:3 * n_hidden]
        s1 = C_s1[t]
        s1[...] = A_h[:, 2 * n_hidden:3 * n_hidden]
        s1 += b_hn
        np.tanh(A_x[t][:, 2 * n_hidden:3 * n_hidden] + r * (s1), out=n)
        # h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        h = S_h[t + 1]
        s0 = C_s0[t]
        s0[...] = 1.0
        s0 -= z
        np.multiply((s0), n, out=h)
        h += z * h_prev
    cache = {"xs": xs, "state": {s: S[-1] for s, S in zip(STATE, (S_h, ))}}
    cache["S_h"] = S_h
    cache["s0"] = C_s0
    cache["s1"] = C_s1
    cache["r"] = A_x[:, :, 0 * n_hidden:1 * n_hidden]  # stored in A_x
    cache["z"] = A_x[:, :, 1 * n_hidden:2 * n_hidden]  # stored in A_x
    cache["n"] = A_x[:, :, 2 * n_hidden:3 * n_hidden]  # stored in A_x
    cache["A_x"] = A_x
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
    W_xr = P["W_xr"]
    W_xz = P["W_xz"]
    W_xn = P["W_xn"]
    W_hr = P["W_hr"]
    W_hz = P["W_hz"]
    W_hn = P["W_hn"]
    b_r = P["b_r"]
    b_z = P["b_z"]
    b_xn = P["b_xn"]
    b_hn = P["b_hn"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    S_h = cache["S_h"]
    d_h_next = carry["h"]
    dA_h = np.empty((steps, batch, 1 * n_hidden), dtype)
    dA_x = np.empty((steps, batch, 3 * n_hidden), dtype) if keep_cache else cache["A_x"]
    for t in range(steps - 1, -1, -1):
        x_t = xs[t]
        h_prev = S_h[t]
        h = S_h[t + 1]
        s0 = cache["s0"][t]
        s1 = cache["s1"][t]
        r = cache["r"][t]  # its slot receives its adjoint after the last read
        z = cache["z"][t]  # its slot receives its adjoint after the last read
        n = cache["n"][t]  # its slot receives its adjoint after the last read
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{n}_t = d(1 - z_t) \bar{h}_t
        d_n = s0 * d_h
        # \bar{z}_t = -d(n_t) \bar{h}_t + d(h_{t-1}) \bar{h}_t
        d_z = -n * d_h + h_prev * d_h
        # \bar{\hat{n}}_t = d(n'_t) \bar{n}_t
        d_n_hat = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        np.multiply((1.0 - n * n), d_n, out=d_n_hat)
        # \bar{r}_t = d(W_{hn} h_{t-1} + b_{hn}) \bar{\hat{n}}_t
        d_r = s1 * d_n_hat
        # \bar{a}_{W_hn} (projection adjoint; dL/dW_hn = sum_t of it times h_{t-1}^T)
        dA_h[t, :, 0 * n_hidden:1 * n_hidden] = r * d_n_hat
        # \bar{\hat{r}}_t = d(r'_t) \bar{r}_t
        d_r_hat = dA_x[t, :, 0 * n_hidden:1 * n_hidden]
        np.multiply((r * (1.0 - r)), d_r, out=d_r_hat)
        # \delta h_{t-1} = W_{hr}^\top \bar{\hat{r}}_t + W_{hz}^\top \bar{\hat{z}}_t + W_{hn}^\top d(r_t) \bar{\hat{n}}_t + d(z_t) \bar{h}_t
        d_h_new = z * d_h
        # \bar{\hat{z}}_t = d(z'_t) \bar{z}_t
        d_z_hat = dA_x[t, :, 1 * n_hidden:2 * n_hidden]
        np.multiply((z * (1.0 - z)), d_z, out=d_z_hat)
        d_h_new += dA_x[t, :, 0 * n_hidden:2 * n_hidden] @ W_stack_h[0 * n_hidden:2 * n_hidden] + dA_h[t, :, 0 * n_hidden:1 * n_hidden] @ W_stack_h[2 * n_hidden:3 * n_hidden]
        d_h_next = d_h_new
    cache["consumed"] = not keep_cache
    grads = {}
    # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
    G_W_stack_x_0 = dA_x[:, :, 0 * n_hidden:3 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads["W_xr"] = G_W_stack_x_0[0 * n_hidden:1 * n_hidden]
    grads["W_xz"] = G_W_stack_x_0[1 * n_hidden:2 * n_hidden]
    grads["W_xn"] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    G_W_stack_h_0 = dA_x[:, :, 0 * n_hidden:2 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads["W_hr"] = G_W_stack_h_0[0 * n_hidden:1 * n_hidden]
    grads["W_hz"] = G_W_stack_h_0[1 * n_hidden:2 * n_hidden]
    G_W_stack_h_1 = dA_h[:, :, 0 * n_hidden:1 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads["W_hn"] = G_W_stack_h_1[0 * n_hidden:1 * n_hidden]
    # bias gradients: dL/db = sum_t \bar a_t, the stored adjoints' column sums
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    colsum_dA_h = dA_h.reshape(steps * batch, -1).sum(axis=0)
    grads["b_r"] = colsum_dA_x[0 * n_hidden:1 * n_hidden]
    grads["b_z"] = colsum_dA_x[1 * n_hidden:2 * n_hidden]
    grads["b_xn"] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads["b_hn"] = colsum_dA_h[0 * n_hidden:1 * n_hidden]
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
    W_xr = P["W_xr"]
    W_xz = P["W_xz"]
    W_xn = P["W_xn"]
    W_hr = P["W_hr"]
    W_hz = P["W_hz"]
    W_hn = P["W_hn"]
    b_r = P["b_r"]
    b_z = P["b_z"]
    b_xn = P["b_xn"]
    b_hn = P["b_hn"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    batch, n_hidden = x_t.shape[0], prev["h"].shape[1]
    A_x = (x_t @ W_stack_x.T + P["b_stack_x"])[None]
    t = 0
    h_prev = prev["h"]
    # A_h = [W_hr; W_hz; W_hn] h_{t-1}: one matmul
    A_h = h_prev @ W_stack_h.T
    # pre-activations of the gates whose x and h projections share a slot
    A_h[:, 0 * n_hidden:2 * n_hidden] += A_x[t][:, 0 * n_hidden:2 * n_hidden]
    # r_t = \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r)
    r = _sigmoid(A_h[:, 0 * n_hidden:1 * n_hidden])
    # z_t = \sigma(W_{xz} x_t + W_{hz} h_{t-1} + b_z)
    z = _sigmoid(A_h[:, 1 * n_hidden:2 * n_hidden])
    # n_t = \tanh(W_{xn} x_t + b_{xn} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
    s1 = A_h[:, 2 * n_hidden:3 * n_hidden] + b_hn
    n = np.tanh(A_x[t][:, 2 * n_hidden:3 * n_hidden] + r * (s1))
    # h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
    s0 = 1.0 - z
    h = (s0) * n + z * h_prev
    # \partial h_t / \partial h_{t-1} = -d(n_t) d(z'_t) W_{hz} + d(1 - z_t) d(n'_t) d(W_{hn} h_{t-1} + b_{hn}) d(r'_t) W_{hr} + d(1 - z_t) d(n'_t) d(r_t) W_{hn} + d(z'_t) d(h_{t-1}) W_{hz} + d(z_t)
    Jd_h_h = z
    JM_h_h = -1.0 * ((n * (z * (1.0 - z)))[..., None] * W_hz) + (s0 * (1.0 - n * n) * s1 * (r * (1.0 - r)))[..., None] * W_hr + (s0 * (1.0 - n * n) * r)[..., None] * W_hn + ((z * (1.0 - z)) * h_prev)[..., None] * W_hz
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
        out_h += Jd_h_h[..., None] * S_h
    # S_u += V_u^A, through the strided views of the diagonal structure
    # V_h^W_xr = d(1 - z_t) d(n'_t) d(W_{hn} h_{t-1} + b_{hn}) d(r'_t) d_2(x_t)
    u0 = (s0 * (1.0 - n * n) * s1 * (r * (1.0 - r))) * ones
    V['h']['W_xr'] += u0[..., None] * x_t[..., None, :]
    # V_h^W_xz = -d(n_t) d(z'_t) d_2(x_t) + d(z'_t) d(h_{t-1}) d_2(x_t)
    u1 = (-1.0 * (n * (z * (1.0 - z)))) * ones
    V['h']['W_xz'] += u1[..., None] * x_t[..., None, :]
    u2 = ((z * (1.0 - z)) * h_prev) * ones
    V['h']['W_xz'] += u2[..., None] * x_t[..., None, :]
    # V_h^W_xn = d(1 - z_t) d(n'_t) d_2(x_t)
    u3 = (s0 * (1.0 - n * n)) * ones
    V['h']['W_xn'] += u3[..., None] * x_t[..., None, :]
    # V_h^W_hr = d(1 - z_t) d(n'_t) d(W_{hn} h_{t-1} + b_{hn}) d(r'_t) d_2(h_{t-1})
    V['h']['W_hr'] += u0[..., None] * h_prev[..., None, :]
    # V_h^W_hz = -d(n_t) d(z'_t) d_2(h_{t-1}) + d(z'_t) d(h_{t-1}) d_2(h_{t-1})
    V['h']['W_hz'] += u1[..., None] * h_prev[..., None, :]
    V['h']['W_hz'] += u2[..., None] * h_prev[..., None, :]
    # V_h^W_hn = d(1 - z_t) d(n'_t) d(r_t) d_2(h_{t-1})
    u4 = (s0 * (1.0 - n * n) * r) * ones
    V['h']['W_hn'] += u4[..., None] * h_prev[..., None, :]
    # V_h^b_r = d(1 - z_t) d(n'_t) d(W_{hn} h_{t-1} + b_{hn}) d(r'_t)
    u5 = (s0 * (1.0 - n * n) * s1) * ones
    V['h']['b_r'] += u5 * (r * (1.0 - r))
    # V_h^b_z = -d(n_t) d(z'_t) + d(z'_t) d(h_{t-1})
    u6 = (-1.0 * (n)) * ones
    V['h']['b_z'] += u6 * (z * (1.0 - z))
    u7 = ((z * (1.0 - z))) * ones
    V['h']['b_z'] += u7 * h_prev
    # V_h^b_xn = d(1 - z_t) d(n'_t)
    u8 = (s0) * ones
    V['h']['b_xn'] += u8 * (1.0 - n * n)
    # V_h^b_hn = d(1 - z_t) d(n'_t) d(r_t)
    V['h']['b_hn'] += u3 * r
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
