# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec (derive/cells.py), the engine
# or the template. Cell: sigmoid_lstm.
"""LSTM of seed 001, eqs (1)-(6): sigmoid candidate and h_t = o_t * sigma(s_t): forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    o = sigmoid(W_o @ h_prev + U_o @ x + b_o)
    i = sigmoid(W_i @ h_prev + U_i @ x + b_i)
    f = sigmoid(W_f @ h_prev + U_f @ x + b_f)
    s_tilde = sigmoid(W @ h_prev + U @ x + b)
    s = f * s_prev + i * s_tilde
    h = o * sigmoid(s)

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
    "W": ("n_hidden", "n_hidden"),
    "W_i": ("n_hidden", "n_hidden"),
    "W_f": ("n_hidden", "n_hidden"),
    "W_o": ("n_hidden", "n_hidden"),
    "U": ("n_hidden", "n_in"),
    "U_i": ("n_hidden", "n_in"),
    "U_f": ("n_hidden", "n_in"),
    "U_o": ("n_hidden", "n_in"),
    "b": ("n_hidden",),
    "b_i": ("n_hidden",),
    "b_f": ("n_hidden",),
    "b_o": ("n_hidden",),
}
STATE = ("h", "s")


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
    # W_stack_x = [U; U_i; U_f; U_o] acts on x
    P["W_stack_x"] = np.concatenate([params["U"], params["U_i"], params["U_f"], params["U_o"]], axis=0)
    # W_stack_h = [W; W_i; W_f; W_o] acts on h
    P["W_stack_h"] = np.concatenate([params["W"], params["W_i"], params["W_f"], params["W_o"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["b_stack_x"] = np.concatenate([params["b"], params["b_i"], params["b_f"], params["b_o"]])
    return P


def forward(params, xs, state0=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward."""
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch = xs.shape[:2]
    state = _check_state(state0, batch, n_hidden, dtype)
    P = _unpack(params)
    W = P["W"]
    W_i = P["W_i"]
    W_f = P["W_f"]
    W_o = P["W_o"]
    U = P["U"]
    U_i = P["U_i"]
    U_f = P["U_f"]
    U_o = P["U_o"]
    b = P["b"]
    b_i = P["b_i"]
    b_f = P["b_f"]
    b_o = P["b_o"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    W_stack_h_T = np.ascontiguousarray(W_stack_h.T)  # C order: BLAS is faster at small B
    # input projections of all steps in one matmul: A_x[t] = W_stack_x x_t
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["b_stack_x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    S_s = np.empty((steps + 1, batch, n_hidden), dtype)
    S_s[0] = state["s"]
    C_sigmoid_s = np.empty((steps, batch, n_hidden), dtype)
    A_h = np.empty((batch, 4 * n_hidden), dtype)
    for t in range(steps):
        x_t = xs[t]
        h_prev = S_h[t]
        s_prev = S_s[t]
        # A_h = [W; W_i; W_f; W_o] h_{t-1}: one matmul
        np.matmul(h_prev, W_stack_h_T, out=A_h)
        # pre-activations of the gates whose x and h projections share a slot
        A_h[...] += A_x[t]
        # o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o)
        o = A_x[t, :, 3 * n_hidden:4 * n_hidden]
        _sigmoid(A_h[:, 3 * n_hidden:4 * n_hidden], out=o)
        # i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i)
        i = A_x[t, :, 1 * n_hidden:2 * n_hidden]
        _sigmoid(A_h[:, 1 * n_hidden:2 * n_hidden], out=i)
        # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
        f = A_x[t, :, 2 * n_hidden:3 * n_hidden]
        _sigmoid(A_h[:, 2 * n_hidden:3 * n_hidden], out=f)
        # \tilde{s}_t = \sigma(W h_{t-1} + U x_t + b)
        s_tilde = A_x[t, :, 0 * n_hidden:1 * n_hidden]
        _sigmoid(A_h[:, 0 * n_hidden:1 * n_hidden], out=s_tilde)
        # s_t = f_t \odot s_{t-1} + i_t \odot \tilde{s}_t
        s = S_s[t + 1]
        np.multiply(f, s_prev, out=s)
        s += i * s_tilde
        # h_t = o_t \odot \sigma(s_t)
        h = S_h[t + 1]
        sigmoid_s = C_sigmoid_s[t]
        _sigmoid(s, out=sigmoid_s)
        np.multiply(o, sigmoid_s, out=h)
    cache = {"xs": xs, "state": {s: S[-1] for s, S in zip(STATE, (S_h, S_s, ))}}
    cache["S_h"] = S_h
    cache["S_s"] = S_s
    cache["sigmoid_s"] = C_sigmoid_s
    cache["o"] = A_x[:, :, 3 * n_hidden:4 * n_hidden]  # stored in A_x
    cache["i"] = A_x[:, :, 1 * n_hidden:2 * n_hidden]  # stored in A_x
    cache["f"] = A_x[:, :, 2 * n_hidden:3 * n_hidden]  # stored in A_x
    cache["s_tilde"] = A_x[:, :, 0 * n_hidden:1 * n_hidden]  # stored in A_x
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
    W = P["W"]
    W_i = P["W_i"]
    W_f = P["W_f"]
    W_o = P["W_o"]
    U = P["U"]
    U_i = P["U_i"]
    U_f = P["U_f"]
    U_o = P["U_o"]
    b = P["b"]
    b_i = P["b_i"]
    b_f = P["b_f"]
    b_o = P["b_o"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    S_h = cache["S_h"]
    d_h_next = carry["h"]
    S_s = cache["S_s"]
    d_s_next = carry["s"]
    dA_x = np.empty((steps, batch, 4 * n_hidden), dtype) if keep_cache else cache["A_x"]
    for t in range(steps - 1, -1, -1):
        x_t = xs[t]
        h_prev = S_h[t]
        h = S_h[t + 1]
        s_prev = S_s[t]
        s = S_s[t + 1]
        sigmoid_s = cache["sigmoid_s"][t]
        o = cache["o"][t]  # its slot receives its adjoint after the last read
        i = cache["i"][t]  # its slot receives its adjoint after the last read
        f = cache["f"][t]  # its slot receives its adjoint after the last read
        s_tilde = cache["s_tilde"][t]  # its slot receives its adjoint after the last read
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{s}_t = \delta s_t + d(o_t) d(\sigma'(s_t)) \bar{h}_t
        d_s = d_s_next + o * (sigmoid_s * (1.0 - sigmoid_s)) * d_h
        # \bar{\tilde{s}}_t = d(i_t) \bar{s}_t
        d_s_tilde = i * d_s
        # \bar{f}_t = d(s_{t-1}) \bar{s}_t
        d_f = s_prev * d_s
        # \bar{i}_t = d(\tilde{s}_t) \bar{s}_t
        d_i = s_tilde * d_s
        # \bar{\hat{\tilde{s}}}_t = d(\tilde{s}'_t) \bar{\tilde{s}}_t
        d_s_tilde_hat = dA_x[t, :, 0 * n_hidden:1 * n_hidden]
        np.multiply((s_tilde * (1.0 - s_tilde)), d_s_tilde, out=d_s_tilde_hat)
        # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
        d_i_hat = dA_x[t, :, 1 * n_hidden:2 * n_hidden]
        np.multiply((i * (1.0 - i)), d_i, out=d_i_hat)
        # \bar{o}_t = d(\sigma(s_t)) \bar{h}_t
        d_o = sigmoid_s * d_h
        # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
        d_o_hat = dA_x[t, :, 3 * n_hidden:4 * n_hidden]
        np.multiply((o * (1.0 - o)), d_o, out=d_o_hat)
        # \delta s_{t-1} = d(f_t) \bar{s}_t
        d_s_new = f * d_s
        # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
        d_f_hat = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        np.multiply((f * (1.0 - f)), d_f, out=d_f_hat)
        # \delta h_{t-1} = W_o^\top \bar{\hat{o}}_t + W_i^\top \bar{\hat{i}}_t + W_f^\top \bar{\hat{f}}_t + W^\top \bar{\hat{\tilde{s}}}_t
        d_h_new = dA_x[t] @ W_stack_h
        d_h_next = d_h_new
        d_s_next = d_s_new
    cache["consumed"] = not keep_cache
    grads = {}
    # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
    G_W_stack_x_0 = dA_x[:, :, 0 * n_hidden:4 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads["U"] = G_W_stack_x_0[0 * n_hidden:1 * n_hidden]
    grads["U_i"] = G_W_stack_x_0[1 * n_hidden:2 * n_hidden]
    grads["U_f"] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    grads["U_o"] = G_W_stack_x_0[3 * n_hidden:4 * n_hidden]
    G_W_stack_h_0 = dA_x[:, :, 0 * n_hidden:4 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads["W"] = G_W_stack_h_0[0 * n_hidden:1 * n_hidden]
    grads["W_i"] = G_W_stack_h_0[1 * n_hidden:2 * n_hidden]
    grads["W_f"] = G_W_stack_h_0[2 * n_hidden:3 * n_hidden]
    grads["W_o"] = G_W_stack_h_0[3 * n_hidden:4 * n_hidden]
    # bias gradients: dL/db = sum_t \bar a_t, the stored adjoints' column sums
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads["b"] = colsum_dA_x[0 * n_hidden:1 * n_hidden]
    grads["b_i"] = colsum_dA_x[1 * n_hidden:2 * n_hidden]
    grads["b_f"] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads["b_o"] = colsum_dA_x[3 * n_hidden:4 * n_hidden]
    grads["h0"] = d_h_next
    grads["s0"] = d_s_next
    if input_grad:
        grads["xs"] = dA_x @ W_stack_x
    return grads


_apply = rt.apply_block


RTRL_DENSE_MAX = 32  # see rt.use_dense_product and KernelPlan.rtrl_dense_max


def _local_step(params, x_t, prev, S=None, out=None, V=None, off=None, P=None, dense=None):
    """One step: the new states, the state-Jacobian blocks and (with S) the RTRL update of the
    sensitivities S into ``out`` (V: strided views of out's diagonal structure, off: column
    offsets, P: _unpack(params) when the caller keeps it, dense: (J buffer, whole S, whole
    out) for the one-matmul product; see generated._runtime.rtrl)."""
    if P is None:
        P = _unpack(params)
    W = P["W"]
    W_i = P["W_i"]
    W_f = P["W_f"]
    W_o = P["W_o"]
    U = P["U"]
    U_i = P["U_i"]
    U_f = P["U_f"]
    U_o = P["U_o"]
    b = P["b"]
    b_i = P["b_i"]
    b_f = P["b_f"]
    b_o = P["b_o"]
    W_stack_x = P["W_stack_x"]
    W_stack_h = P["W_stack_h"]
    batch, n_hidden = x_t.shape[0], prev["h"].shape[1]
    A_x = (x_t @ W_stack_x.T + P["b_stack_x"])[None]
    t = 0
    h_prev = prev["h"]
    s_prev = prev["s"]
    # A_h = [W; W_i; W_f; W_o] h_{t-1}: one matmul
    A_h = h_prev @ W_stack_h.T
    # pre-activations of the gates whose x and h projections share a slot
    A_h[...] += A_x[t]
    # o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o)
    o = _sigmoid(A_h[:, 3 * n_hidden:4 * n_hidden])
    # i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i)
    i = _sigmoid(A_h[:, 1 * n_hidden:2 * n_hidden])
    # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
    f = _sigmoid(A_h[:, 2 * n_hidden:3 * n_hidden])
    # \tilde{s}_t = \sigma(W h_{t-1} + U x_t + b)
    s_tilde = _sigmoid(A_h[:, 0 * n_hidden:1 * n_hidden])
    # s_t = f_t \odot s_{t-1} + i_t \odot \tilde{s}_t
    s = f * s_prev + i * s_tilde
    # h_t = o_t \odot \sigma(s_t)
    sigmoid_s = _sigmoid(s)
    h = o * sigmoid_s
    # \partial h_t / \partial h_{t-1} = d(\sigma(s_t)) d(o'_t) W_o + d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) W_f + d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t) W_i + d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t) W
    Jd_h_h = None
    JM_h_h = (sigmoid_s * (o * (1.0 - o)))[..., None] * W_o + (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_prev * (f * (1.0 - f)))[..., None] * W_f + (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_tilde * (i * (1.0 - i)))[..., None] * W_i + (o * (sigmoid_s * (1.0 - sigmoid_s)) * i * (s_tilde * (1.0 - s_tilde)))[..., None] * W
    # \partial h_t / \partial s_{t-1} = d(o_t) d(\sigma'(s_t)) d(f_t)
    Jd_h_s = o * (sigmoid_s * (1.0 - sigmoid_s)) * f
    JM_h_s = None
    # \partial s_t / \partial h_{t-1} = d(s_{t-1}) d(f'_t) W_f + d(\tilde{s}_t) d(i'_t) W_i + d(i_t) d(\tilde{s}'_t) W
    Jd_s_h = None
    JM_s_h = (s_prev * (f * (1.0 - f)))[..., None] * W_f + (s_tilde * (i * (1.0 - i)))[..., None] * W_i + (i * (s_tilde * (1.0 - s_tilde)))[..., None] * W
    # \partial s_t / \partial s_{t-1} = d(f_t)
    Jd_s_s = f
    JM_s_s = None
    J = {
        ("h", "h"): (JM_h_h, Jd_h_h),
        ("h", "s"): (JM_h_s, Jd_h_s),
        ("s", "h"): (JM_s_h, Jd_s_h),
        ("s", "s"): (JM_s_s, Jd_s_s),
    }
    new_state = { "h": h, "s": s }
    if S is None:
        return new_state, J, None
    ones = np.ones((batch, n_hidden), x_t.dtype)
    S_h = S["h"]
    S_s = S["s"]
    out_h = out["h"]
    out_s = out["s"]
    if dense is not None:
        # small state: S <- J S with the whole state Jacobian, one matmul (rt.use_dense_product)
        np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], out=dense[2])
    else:
        # S_h <- sum_v (d h_t / d v_(t-1)) S_v
        np.matmul(JM_h_h, S_h, out=out_h)
        out_h += Jd_h_s[..., None] * S_s
        # S_s <- sum_v (d s_t / d v_(t-1)) S_v
        np.matmul(JM_s_h, S_h, out=out_s)
        out_s += Jd_s_s[..., None] * S_s
    # S_u += V_u^A, through the strided views of the diagonal structure
    # V_h^W = d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t) d_2(h_{t-1})
    u0 = (o * (sigmoid_s * (1.0 - sigmoid_s)) * i * (s_tilde * (1.0 - s_tilde))) * ones
    V['h']['W'] += u0[..., None] * h_prev[..., None, :]
    # V_h^W_i = d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t) d_2(h_{t-1})
    u1 = (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_tilde * (i * (1.0 - i))) * ones
    V['h']['W_i'] += u1[..., None] * h_prev[..., None, :]
    # V_h^W_f = d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) d_2(h_{t-1})
    u2 = (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_prev * (f * (1.0 - f))) * ones
    V['h']['W_f'] += u2[..., None] * h_prev[..., None, :]
    # V_h^W_o = d(\sigma(s_t)) d(o'_t) d_2(h_{t-1})
    u3 = (sigmoid_s * (o * (1.0 - o))) * ones
    V['h']['W_o'] += u3[..., None] * h_prev[..., None, :]
    # V_h^U = d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t) d_2(x_t)
    V['h']['U'] += u0[..., None] * x_t[..., None, :]
    # V_h^U_i = d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t) d_2(x_t)
    V['h']['U_i'] += u1[..., None] * x_t[..., None, :]
    # V_h^U_f = d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) d_2(x_t)
    V['h']['U_f'] += u2[..., None] * x_t[..., None, :]
    # V_h^U_o = d(\sigma(s_t)) d(o'_t) d_2(x_t)
    V['h']['U_o'] += u3[..., None] * x_t[..., None, :]
    # V_h^b = d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t)
    u4 = (o * (sigmoid_s * (1.0 - sigmoid_s)) * i) * ones
    V['h']['b'] += u4 * (s_tilde * (1.0 - s_tilde))
    # V_h^b_i = d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t)
    u5 = (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_tilde) * ones
    V['h']['b_i'] += u5 * (i * (1.0 - i))
    # V_h^b_f = d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t)
    u6 = (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_prev) * ones
    V['h']['b_f'] += u6 * (f * (1.0 - f))
    # V_h^b_o = d(\sigma(s_t)) d(o'_t)
    u7 = (sigmoid_s) * ones
    V['h']['b_o'] += u7 * (o * (1.0 - o))
    # V_s^W = d(i_t) d(\tilde{s}'_t) d_2(h_{t-1})
    u8 = (i * (s_tilde * (1.0 - s_tilde))) * ones
    V['s']['W'] += u8[..., None] * h_prev[..., None, :]
    # V_s^W_i = d(\tilde{s}_t) d(i'_t) d_2(h_{t-1})
    u9 = (s_tilde * (i * (1.0 - i))) * ones
    V['s']['W_i'] += u9[..., None] * h_prev[..., None, :]
    # V_s^W_f = d(s_{t-1}) d(f'_t) d_2(h_{t-1})
    u10 = (s_prev * (f * (1.0 - f))) * ones
    V['s']['W_f'] += u10[..., None] * h_prev[..., None, :]
    # V_s^U = d(i_t) d(\tilde{s}'_t) d_2(x_t)
    V['s']['U'] += u8[..., None] * x_t[..., None, :]
    # V_s^U_i = d(\tilde{s}_t) d(i'_t) d_2(x_t)
    V['s']['U_i'] += u9[..., None] * x_t[..., None, :]
    # V_s^U_f = d(s_{t-1}) d(f'_t) d_2(x_t)
    V['s']['U_f'] += u10[..., None] * x_t[..., None, :]
    # V_s^b = d(i_t) d(\tilde{s}'_t)
    u11 = (i) * ones
    V['s']['b'] += u11 * (s_tilde * (1.0 - s_tilde))
    # V_s^b_i = d(\tilde{s}_t) d(i'_t)
    u12 = (s_tilde) * ones
    V['s']['b_i'] += u12 * (i * (1.0 - i))
    # V_s^b_f = d(s_{t-1}) d(f'_t)
    u13 = (s_prev) * ones
    V['s']['b_f'] += u13 * (f * (1.0 - f))
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
