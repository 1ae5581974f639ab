# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: lstm.
"""LSTM (torch.nn.LSTM): forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    i = sigmoid(W_xi @ x + W_hi @ h_prev + b_i)
    f = sigmoid(W_xf @ x + W_hf @ h_prev + b_f)
    g = tanh(W_xg @ x + W_hg @ h_prev + b_g)
    o = sigmoid(W_xo @ x + W_ho @ h_prev + b_o)
    c = f * c_prev + i * g
    h = o * tanh(c)

API (numpy only; every array keeps the parameters' floating dtype):

PARAMS
    parameter name -> shape in terms of n_hidden and n_in, in the order used everywhere.
STATE
    the state names; the first is the output h.
READOUT, READOUT_PARAMS
    the readout's outputs y and its parameters (empty for a cell without a readout).
SPEC_DIGEST
    the SHA-256 of the cell spec this module was printed from (CellSpec.digest): tools match a
    kernel to a cell by content, never by name.
INPUT_GRAD, STATE0_GRAD
    the keys of backward()'s gradients of xs and of the initial states: "xs" and "<state>0",
    or "_xs" and "_<state>0" where a parameter has that name.
init_params(n_in, n_hidden, *, seed=0, dtype=np.float64, n_out=None) -> dict
    uniform(-1/sqrt(n_hidden), 1/sqrt(n_hidden)) like torch; with n_out, the readout's too.
forward(params, xs, state0=None, *, lengths=None, mask=None) -> (hs, cache)
    xs (T, B, n_in) -> hs (T, B, n_hidden); state0 maps each state name to (B, n_hidden)
    (zeros when None). cache["state"] holds the final state. Variable lengths: lengths (B,)
    (sequence b runs steps 0..lengths[b]-1, as torch's packed sequences) or mask (T, B) of
    booleans; where the mask is False the states are held, hs is 0, and backward passes no
    gradient through the step.
readout(params, hs) -> dict (a cell with a readout)
    y_t for every step: {name: (T, B, n_out)}.
backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None)
    dhs = dL/dh_t for every t, (T, B, n_hidden); dstate optionally maps state names to
    dL/d(final state); dys maps the readout's outputs to dL/dy_t. Returns grads[name] for
    every parameter (same shape and dtype), the initial states' gradients under STATE0_GRAD,
    and dL/dxs under INPUT_GRAD when input_grad=True. The cache is left intact (keep_cache is
    accepted for compatibility and has no effect).
rtrl(params, xs, state0=None, *, lengths=None, mask=None) -> dict
    forward mode: dh_T/dA for every parameter A, shape (B, n_hidden, *A.shape) (with lengths:
    of each sequence's last state).
rtrl_step(params, x_t, state, sens=None) -> (state, sens)
    one online step; sens[s][A] = d s_t / dA, shape (B, n_hidden, *A.shape) (zeros when None).
state_jacobian(params, x_t, state) -> ndarray
    d(all states at t)/d(all states at t-1), (B, S, S), states concatenated in STATE order.
stack_forward(layers, xs, state0=None, *, lengths=None) -> (out, cache)
    layers[l][d] parameter dicts of layer l, direction d (1: each sequence reversed within its
    length, Schuster and Paliwal 1997); layer l + 1 reads layer l's outputs concatenated,
    out (T, B, dirs * n_hidden); cache["state"][l][d] the final states.
stack_backward(layers, cache, douts, *, dstate=None, input_grad=False) -> (grads, dxs)
    BPTT through the layers, composed through each layer's input gradient: grads[l][d].
stack_rtrl(layers, xs, state0=None, *, lengths=None) -> sens
    forward mode per layer: sens[l][d][A] = d s^{l,d}_T / dA for layer l's own parameters A,
    its input held at what the layers below give (the cross-layer terms are not included).
"""

import numpy as np

from . import _runtime as rt

PARAMS = {
    "W_xi": ("n_hidden", "n_in"),
    "W_xf": ("n_hidden", "n_in"),
    "W_xg": ("n_hidden", "n_in"),
    "W_xo": ("n_hidden", "n_in"),
    "W_hi": ("n_hidden", "n_hidden"),
    "W_hf": ("n_hidden", "n_hidden"),
    "W_hg": ("n_hidden", "n_hidden"),
    "W_ho": ("n_hidden", "n_hidden"),
    "b_i": ("n_hidden",),
    "b_f": ("n_hidden",),
    "b_g": ("n_hidden",),
    "b_o": ("n_hidden",),
}
# the keys of backward()'s gradients of the input sequence and of the initial states
INPUT_GRAD = "xs"
STATE0_GRAD = { "h": "h0", "c": "c0" }
READOUT = ()
READOUT_PARAMS = {}
STATE = ("h", "c")
SPEC_DIGEST = "4da985da4a11dd7b478be4bf50bc2b4ad5d616af4ffe105aa03c8e2dbf20d232"  # SHA-256 of the cell spec this kernel was printed from

_sigmoid = rt.sigmoid


def init_params(n_in, n_hidden, *, seed=0, dtype=np.float64, n_out=None):
    """Parameters drawn uniform(-1/sqrt(n_hidden), 1/sqrt(n_hidden)), as torch initialises;
    with n_out (a cell with a readout), the readout's parameters too."""
    if n_out is not None and not READOUT_PARAMS:
        raise ValueError("n_out is the readout's size, and this cell has no readout")
    return rt.init_params({**PARAMS, **(READOUT_PARAMS if n_out is not None else {})}, n_in,
                          n_hidden, seed=seed, dtype=dtype, n_out=n_out)


def _sizes(params):
    """Validate a parameter dict; returns (n_hidden, n_in, dtype) (n_in None when no parameter
    has an input dimension: then xs fixes it)."""
    return rt.sizes(PARAMS, params, READOUT_PARAMS)


_check_array = rt.check_array
_check_xs = rt.check_xs


def _check_state(state, batch, n_hidden, dtype, what="state0"):
    return rt.check_state(STATE, state, batch, n_hidden, dtype, what)


def _unpack(params):
    """The parameters and the stacked blocks Theta_v of the matrices acting on one vector."""
    P = dict(params)
    P["stack:x"] = np.concatenate([params["W_xi"], params["W_xf"], params["W_xg"], params["W_xo"]], axis=0)
    P["stack:h"] = np.concatenate([params["W_hi"], params["W_hf"], params["W_hg"], params["W_ho"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["bias:x"] = np.concatenate([params["b_i"], params["b_f"], params["b_g"], params["b_o"]])
    return P


def forward(params, xs, state0=None, *, lengths=None, mask=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward.
    With lengths (B,) or mask (T, B), a sequence's states are held where its mask is False."""
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch, n_in = xs.shape
    state = _check_state(state0, batch, n_hidden, dtype)
    mask = rt.step_mask(lengths, mask, steps, batch)
    P = _unpack(params)
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    W_stack_h_T = np.ascontiguousarray(W_stack_h.T)  # C order: BLAS is faster at small B
    # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (+ folded biases)
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["bias:x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    S_c = np.empty((steps + 1, batch, n_hidden), dtype)
    S_c[0] = state["c"]
    C_i = np.empty((steps, batch, n_hidden), dtype)
    C_f = np.empty((steps, batch, n_hidden), dtype)
    C_g = np.empty((steps, batch, n_hidden), dtype)
    C_o = np.empty((steps, batch, n_hidden), dtype)
    C_tanh_c = np.empty((steps, batch, n_hidden), dtype)
    A_h = np.empty((batch, 4 * n_hidden), dtype)
    for t in range(steps):
        h_prev = S_h[t]
        c_prev = S_c[t]
        # A_{h} = [W_hi; W_hf; W_hg; W_ho] h_{t-1}
        np.matmul(h_prev, W_stack_h_T, out=A_h)
        # pre-activations whose x and state projections share columns
        A_h[...] += A_x[t]
        # i_t = \sigma(W_{xi} x_t + W_{hi} h_{t-1} + b_i)
        i = C_i[t]
        _sigmoid(A_h[:, 0:n_hidden], out=i)
        # f_t = \sigma(W_{xf} x_t + W_{hf} h_{t-1} + b_f)
        f = C_f[t]
        _sigmoid(A_h[:, n_hidden:2 * n_hidden], out=f)
        # g_t = \tanh(W_{xg} x_t + W_{hg} h_{t-1} + b_g)
        g = C_g[t]
        np.tanh(A_h[:, 2 * n_hidden:3 * n_hidden], out=g)
        # o_t = \sigma(W_{xo} x_t + W_{ho} h_{t-1} + b_o)
        o = C_o[t]
        _sigmoid(A_h[:, 3 * n_hidden:4 * n_hidden], out=o)
        # c_t = f_t \odot c_{t-1} + i_t \odot g_t
        c = S_c[t + 1]
        np.multiply(f, c_prev, out=c)
        c += i * g
        tanh_c = C_tanh_c[t]
        np.tanh(c, out=tanh_c)
        # h_t = o_t \odot \tanh(c_t)
        h = S_h[t + 1]
        np.multiply(o, tanh_c, out=h)
        if mask is not None:  # a held sequence keeps its states
            S_h[t + 1] = np.where(mask[t], S_h[t + 1], S_h[t])
            S_c[t + 1] = np.where(mask[t], S_c[t + 1], S_c[t])
    cache = {"xs": xs, "backend": "numpy", "mask": mask, "state": {
        "h": S_h[-1],
        "c": S_c[-1],
    }}
    cache["S_h"] = S_h
    cache["S_c"] = S_c
    cache["C_i"] = C_i
    cache["C_f"] = C_f
    cache["C_g"] = C_g
    cache["C_o"] = C_o
    cache["C_tanh_c"] = C_tanh_c
    if mask is not None:
        return np.where(mask, S_h[1:], 0), cache
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden) and, for a cell with a readout,
    dys = {name: dL/dy_t (T, B, n_out)}; see the module docstring."""
    n_hidden, n_in, dtype = _sizes(params)
    if not isinstance(cache, dict) or "xs" not in cache:
        raise ValueError("cache must be the dict returned by forward()")
    if cache.get("backend") != "numpy":
        raise ValueError(f"this cache was made by the {cache.get('backend')} backend's "
                         f"forward(); pass it to that module's backward()")
    xs = cache["xs"]
    steps, batch = xs.shape[:2]
    if (n_in is not None and xs.shape[2] != n_in) or xs.dtype != dtype:
        raise ValueError(f"cache was made with xs of shape {xs.shape} and dtype {xs.dtype}; "
                         f"params expect n_in={n_in} and dtype {dtype}")
    n_in = xs.shape[2]
    dhs = _check_array("dhs", dhs, (steps, batch, n_hidden), dtype)
    carry = _check_state(dstate, batch, n_hidden, dtype, "dstate")
    mask = cache.get("mask")
    if dys is not None:
        raise ValueError("dys is the readout's gradient, and this cell has no readout")
    if mask is not None:  # no loss reaches a held step
        dhs = np.where(mask, dhs, 0)
    P = _unpack(params)
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    S_h = cache["S_h"]
    S_c = cache["S_c"]
    C_i = cache["C_i"]
    C_f = cache["C_f"]
    C_g = cache["C_g"]
    C_o = cache["C_o"]
    C_tanh_c = cache["C_tanh_c"]
    d_h_next = carry["h"]
    d_c_next = carry["c"]
    dA_x = np.zeros((steps, batch, 4 * n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        if mask is not None:  # a held step passes the carried adjoints through unchanged
            held = (d_h_next, d_c_next, )
            d_h_next = np.where(mask[t], d_h_next, 0)
            d_c_next = np.where(mask[t], d_c_next, 0)
        c_prev = S_c[t]
        i = C_i[t]
        f = C_f[t]
        g = C_g[t]
        o = C_o[t]
        tanh_c = C_tanh_c[t]
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{c}_t = \delta c_t + d(o_t) d(\tanh'(c_t)) \bar{h}_t
        d_c = d_c_next + o * ((1.0 - tanh_c * tanh_c) * d_h)
        # \bar{o}_t = d(\tanh(c_t)) \bar{h}_t
        d_o = tanh_c * d_h
        # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
        d_o_hat = dA_x[t, :, 3 * n_hidden:4 * n_hidden]
        d_o_hat[...] = (o * (1.0 - o)) * d_o
        # \bar{g}_t = d(i_t) \bar{c}_t
        d_g = i * d_c
        # \bar{\hat{g}}_t = d(g'_t) \bar{g}_t
        d_g_hat = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        d_g_hat[...] = (1.0 - g * g) * d_g
        # \bar{f}_t = d(c_{t-1}) \bar{c}_t
        d_f = c_prev * d_c
        # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
        d_f_hat = dA_x[t, :, n_hidden:2 * n_hidden]
        d_f_hat[...] = (f * (1.0 - f)) * d_f
        # \bar{i}_t = d(g_t) \bar{c}_t
        d_i = g * d_c
        # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
        d_i_hat = dA_x[t, :, 0:n_hidden]
        d_i_hat[...] = (i * (1.0 - i)) * d_i
        # \delta h_{t-1} = W_{hi}^\top \bar{\hat{i}}_t + W_{hf}^\top \bar{\hat{f}}_t + W_{hg}^\top \bar{\hat{g}}_t + W_{ho}^\top \bar{\hat{o}}_t
        d_h_next = dA_x[t, :, 0:4 * n_hidden] @ W_stack_h[0:4 * n_hidden]
        # \delta c_{t-1} = d(f_t) \bar{c}_t
        d_c_next = f * d_c
        if mask is not None:
            d_h_next = np.where(mask[t], d_h_next, held[0])
            d_c_next = np.where(mask[t], d_c_next, held[1])
    grads = {}
    G_W_stack_x_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads['W_xi'] = G_W_stack_x_0[0:n_hidden]
    grads['W_xf'] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads['W_xg'] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    grads['W_xo'] = G_W_stack_x_0[3 * n_hidden:4 * n_hidden]
    G_W_stack_h_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads['W_hi'] = G_W_stack_h_0[0:n_hidden]
    grads['W_hf'] = G_W_stack_h_0[n_hidden:2 * n_hidden]
    grads['W_hg'] = G_W_stack_h_0[2 * n_hidden:3 * n_hidden]
    grads['W_ho'] = G_W_stack_h_0[3 * n_hidden:4 * n_hidden]
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads['b_i'] = colsum_dA_x[0:n_hidden]
    grads['b_f'] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads['b_g'] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads['b_o'] = colsum_dA_x[3 * n_hidden:4 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads["h0"] = d_h_next
    grads["c0"] = d_c_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:4 * n_hidden] @ W_stack_x[0:4 * n_hidden]
    return grads


RTRL_DENSE_MAX = 32  # see rt.use_dense_product


def _local_step(params, x_t, prev, S=None, out=None, V=None, off=None, P=None, dense=None):
    """One step: the new states, the state-Jacobian blocks and (with S) the RTRL update of the
    sensitivities S into ``out`` (V: strided views of out's diagonal structure, off: column
    offsets, P: _unpack(params) when the caller keeps it, dense: (J buffer, whole S, whole
    out) for the one-matmul product; see _runtime.rtrl)."""
    if P is None:
        P = _unpack(params)
    W_hi = P["W_hi"]
    W_hf = P["W_hf"]
    W_hg = P["W_hg"]
    W_ho = P["W_ho"]
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    W_stack_h_T = W_stack_h.T
    batch, n_hidden = x_t.shape[0], prev[STATE[0]].shape[1]
    A_x = (x_t @ W_stack_x.T + P["bias:x"])[None]
    t = 0
    h_prev = prev["h"]
    c_prev = prev["c"]
    # A_{h} = [W_hi; W_hf; W_hg; W_ho] h_{t-1}
    A_h = h_prev @ W_stack_h_T
    # pre-activations whose x and state projections share columns
    A_h[...] += A_x[t]
    # i_t = \sigma(W_{xi} x_t + W_{hi} h_{t-1} + b_i)
    i = _sigmoid(A_h[:, 0:n_hidden])
    # f_t = \sigma(W_{xf} x_t + W_{hf} h_{t-1} + b_f)
    f = _sigmoid(A_h[:, n_hidden:2 * n_hidden])
    # g_t = \tanh(W_{xg} x_t + W_{hg} h_{t-1} + b_g)
    g = np.tanh(A_h[:, 2 * n_hidden:3 * n_hidden])
    # o_t = \sigma(W_{xo} x_t + W_{ho} h_{t-1} + b_o)
    o = _sigmoid(A_h[:, 3 * n_hidden:4 * n_hidden])
    # c_t = f_t \odot c_{t-1} + i_t \odot g_t
    c = f * c_prev + i * g
    tanh_c = np.tanh(c)
    # h_t = o_t \odot \tanh(c_t)
    h = o * tanh_c
    ones = np.ones((batch, n_hidden), x_t.dtype)
    Jd_h_h = None
    JM_h_h = (tanh_c * (o * (1.0 - o)))[..., None] * W_ho + (o * (1.0 - tanh_c * tanh_c) * c_prev * (f * (1.0 - f)))[..., None] * W_hf + (o * (1.0 - tanh_c * tanh_c) * g * (i * (1.0 - i)))[..., None] * W_hi + (o * (1.0 - tanh_c * tanh_c) * i * (1.0 - g * g))[..., None] * W_hg
    Jd_h_c = o * (1.0 - tanh_c * tanh_c) * f
    JM_h_c = None
    Jd_c_h = None
    JM_c_h = (c_prev * (f * (1.0 - f)))[..., None] * W_hf + (g * (i * (1.0 - i)))[..., None] * W_hi + (i * (1.0 - g * g))[..., None] * W_hg
    Jd_c_c = f
    JM_c_c = None
    J = {
        ("h", "h"): (JM_h_h, Jd_h_h),
        ("h", "c"): (JM_h_c, Jd_h_c),
        ("c", "h"): (JM_c_h, Jd_c_h),
        ("c", "c"): (JM_c_c, Jd_c_c),
    }
    new_state = {
        "h": h,
        "c": c,
    }
    if S is None:
        return new_state, J, None
    S_h_1 = S['h']
    S_c_1 = S['c']
    out_h = out['h']
    out_c = out['c']
    if dense is not None:
        # a small state: S <- J S with the whole state Jacobian, one matmul
        np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], out=dense[2])
    else:
        np.matmul(JM_h_h, S_h_1, out=out_h)
        out_h += Jd_h_c[..., None] * S_c_1
        np.matmul(JM_c_h, S_h_1, out=out_c)
        out_c += Jd_c_c[..., None] * S_c_1
    # S_u += V_u^A, through the strided views of the diagonal structure
    u0 = o * (1.0 - tanh_c * tanh_c) * g * (i * (1.0 - i)) * ones
    V['h']['W_xi'] += u0[..., None] * x_t[..., None, :]
    u1 = o * (1.0 - tanh_c * tanh_c) * c_prev * (f * (1.0 - f)) * ones
    V['h']['W_xf'] += u1[..., None] * x_t[..., None, :]
    u2 = o * (1.0 - tanh_c * tanh_c) * i * (1.0 - g * g) * ones
    V['h']['W_xg'] += u2[..., None] * x_t[..., None, :]
    u3 = tanh_c * (o * (1.0 - o)) * ones
    V['h']['W_xo'] += u3[..., None] * x_t[..., None, :]
    V['h']['W_hi'] += u0[..., None] * h_prev[..., None, :]
    V['h']['W_hf'] += u1[..., None] * h_prev[..., None, :]
    V['h']['W_hg'] += u2[..., None] * h_prev[..., None, :]
    V['h']['W_ho'] += u3[..., None] * h_prev[..., None, :]
    u4 = o * (1.0 - tanh_c * tanh_c) * g * ones
    V['h']['b_i'] += u4 * (i * (1.0 - i))
    u5 = o * (1.0 - tanh_c * tanh_c) * c_prev * ones
    V['h']['b_f'] += u5 * (f * (1.0 - f))
    u6 = o * (1.0 - tanh_c * tanh_c) * i * ones
    V['h']['b_g'] += u6 * (1.0 - g * g)
    u7 = tanh_c * ones
    V['h']['b_o'] += u7 * (o * (1.0 - o))
    u8 = g * (i * (1.0 - i)) * ones
    V['c']['W_xi'] += u8[..., None] * x_t[..., None, :]
    u9 = c_prev * (f * (1.0 - f)) * ones
    V['c']['W_xf'] += u9[..., None] * x_t[..., None, :]
    u10 = i * (1.0 - g * g) * ones
    V['c']['W_xg'] += u10[..., None] * x_t[..., None, :]
    V['c']['W_hi'] += u8[..., None] * h_prev[..., None, :]
    V['c']['W_hf'] += u9[..., None] * h_prev[..., None, :]
    V['c']['W_hg'] += u10[..., None] * h_prev[..., None, :]
    u11 = g * ones
    V['c']['b_i'] += u11 * (i * (1.0 - i))
    u12 = c_prev * ones
    V['c']['b_f'] += u12 * (f * (1.0 - f))
    u13 = i * ones
    V['c']['b_g'] += u13 * (1.0 - g * g)
    return new_state, J, out


def rtrl_step(params, x_t, state, sens=None):
    """One step of real-time recurrent learning: d s_t/dA = sum_v J[s][v] d v_(t-1)/dA + V_s^A."""
    return rt.rtrl_step(PARAMS, STATE, _local_step, params, x_t, state, sens,
                        unpack=_unpack, dense_max=RTRL_DENSE_MAX)


def rtrl(params, xs, state0=None, *, lengths=None, mask=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape); with
    lengths or mask, of each sequence's last state (see forward)."""
    return rt.rtrl(PARAMS, STATE, _local_step, params, xs, state0, unpack=_unpack,
                   dense_max=RTRL_DENSE_MAX, lengths=lengths, mask=mask)


def state_jacobian(params, x_t, state):
    """d(all states at t)/d(all states at t-1), shape (B, S, S), states in STATE order."""
    return rt.state_jacobian(PARAMS, STATE, _local_step, params, x_t, state)


def stack_forward(layers, xs, state0=None, *, lengths=None):
    """Layers and directions of this cell: layers[l][d] parameter dicts (d = 1 runs each
    sequence reversed within its length); layer l + 1 reads layer l's outputs concatenated.
    Returns (out (T, B, dirs * n_hidden), cache); see rt.stack_forward."""
    return rt.stack_forward(forward, layers, xs, state0, lengths=lengths)


def stack_backward(layers, cache, douts, *, dstate=None, input_grad=False):
    """BPTT through stack_forward's layers: (grads[l][d], dL/dxs or None); see
    rt.stack_backward."""
    return rt.stack_backward(backward, INPUT_GRAD, STATE0_GRAD, layers, cache, douts,
                             dstate=dstate, input_grad=input_grad)


def stack_rtrl(layers, xs, state0=None, *, lengths=None):
    """Forward mode per layer: sens[l][d][A] = d s^{l,d}_T / dA for layer l's own parameters,
    its input held at what the layers below give (not the cross-layer terms); see
    rt.stack_rtrl."""
    return rt.stack_rtrl(forward, rtrl, layers, xs, state0, lengths=lengths)
