# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: sigmoid_lstm.
"""LSTM with a sigmoid candidate and h_t = o_t * sigmoid(s_t), W on h_t-1 and U on x_t (the notation of Goodfellow, Bengio and Courville 2016, sec. 10.10): forward, BPTT, RTRL and state Jacobians, derived by derive.

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
# the keys of backward()'s gradients of the input sequence and of the initial states
INPUT_GRAD = "xs"
STATE0_GRAD = { "h": "h0", "s": "s0" }
READOUT = ()
READOUT_PARAMS = {}
STATE = ("h", "s")
SPEC_DIGEST = "6d38bce11e7afe7e40390564a9db0618db24ada0fb687afa38aac3de9abf242a"  # SHA-256 of the cell spec this kernel was printed from

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
    P["stack:x"] = np.concatenate([params["U"], params["U_i"], params["U_f"], params["U_o"]], axis=0)
    P["stack:h"] = np.concatenate([params["W"], params["W_i"], params["W_f"], params["W_o"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["bias:x"] = np.concatenate([params["b"], params["b_i"], params["b_f"], params["b_o"]])
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
    S_s = np.empty((steps + 1, batch, n_hidden), dtype)
    S_s[0] = state["s"]
    C_o = np.empty((steps, batch, n_hidden), dtype)
    C_i = np.empty((steps, batch, n_hidden), dtype)
    C_f = np.empty((steps, batch, n_hidden), dtype)
    C_s_tilde = np.empty((steps, batch, n_hidden), dtype)
    C_sigmoid_s = np.empty((steps, batch, n_hidden), dtype)
    A_h = np.empty((batch, 4 * n_hidden), dtype)
    for t in range(steps):
        h_prev = S_h[t]
        s_prev = S_s[t]
        # A_{h} = [W; W_i; W_f; W_o] h_{t-1}
        np.matmul(h_prev, W_stack_h_T, out=A_h)
        # pre-activations whose x and state projections share columns
        A_h[...] += A_x[t]
        # o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o)
        o = C_o[t]
        _sigmoid(A_h[:, 3 * n_hidden:4 * n_hidden], out=o)
        # i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i)
        i = C_i[t]
        _sigmoid(A_h[:, n_hidden:2 * n_hidden], out=i)
        # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
        f = C_f[t]
        _sigmoid(A_h[:, 2 * n_hidden:3 * n_hidden], out=f)
        # \tilde{s}_t = \sigma(W h_{t-1} + U x_t + b)
        s_tilde = C_s_tilde[t]
        _sigmoid(A_h[:, 0:n_hidden], out=s_tilde)
        # s_t = f_t \odot s_{t-1} + i_t \odot \tilde{s}_t
        s = S_s[t + 1]
        np.multiply(f, s_prev, out=s)
        s += i * s_tilde
        sigmoid_s = C_sigmoid_s[t]
        _sigmoid(s, out=sigmoid_s)
        # h_t = o_t \odot \sigma(s_t)
        h = S_h[t + 1]
        np.multiply(o, sigmoid_s, out=h)
        if mask is not None:  # a held sequence keeps its states
            S_h[t + 1] = np.where(mask[t], S_h[t + 1], S_h[t])
            S_s[t + 1] = np.where(mask[t], S_s[t + 1], S_s[t])
    cache = {"xs": xs, "backend": "numpy", "mask": mask, "state": {
        "h": S_h[-1],
        "s": S_s[-1],
    }}
    cache["S_h"] = S_h
    cache["S_s"] = S_s
    cache["C_o"] = C_o
    cache["C_i"] = C_i
    cache["C_f"] = C_f
    cache["C_s_tilde"] = C_s_tilde
    cache["C_sigmoid_s"] = C_sigmoid_s
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
    S_s = cache["S_s"]
    C_o = cache["C_o"]
    C_i = cache["C_i"]
    C_f = cache["C_f"]
    C_s_tilde = cache["C_s_tilde"]
    C_sigmoid_s = cache["C_sigmoid_s"]
    d_h_next = carry["h"]
    d_s_next = carry["s"]
    dA_x = np.zeros((steps, batch, 4 * n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        if mask is not None:  # a held step passes the carried adjoints through unchanged
            held = (d_h_next, d_s_next, )
            d_h_next = np.where(mask[t], d_h_next, 0)
            d_s_next = np.where(mask[t], d_s_next, 0)
        s_prev = S_s[t]
        o = C_o[t]
        i = C_i[t]
        f = C_f[t]
        s_tilde = C_s_tilde[t]
        sigmoid_s = C_sigmoid_s[t]
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{s}_t = \delta s_t + d(o_t) d(\sigma'(s_t)) \bar{h}_t
        d_s = d_s_next + o * ((sigmoid_s * (1.0 - sigmoid_s)) * d_h)
        # \bar{\tilde{s}}_t = d(i_t) \bar{s}_t
        d_s_tilde = i * d_s
        # \bar{\hat{\tilde{s}}}_t = d(\tilde{s}'_t) \bar{\tilde{s}}_t
        d_s_tilde_hat = dA_x[t, :, 0:n_hidden]
        d_s_tilde_hat[...] = (s_tilde * (1.0 - s_tilde)) * d_s_tilde
        # \bar{f}_t = d(s_{t-1}) \bar{s}_t
        d_f = s_prev * d_s
        # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
        d_f_hat = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        d_f_hat[...] = (f * (1.0 - f)) * d_f
        # \bar{i}_t = d(\tilde{s}_t) \bar{s}_t
        d_i = s_tilde * d_s
        # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
        d_i_hat = dA_x[t, :, n_hidden:2 * n_hidden]
        d_i_hat[...] = (i * (1.0 - i)) * d_i
        # \bar{o}_t = d(\sigma(s_t)) \bar{h}_t
        d_o = sigmoid_s * d_h
        # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
        d_o_hat = dA_x[t, :, 3 * n_hidden:4 * n_hidden]
        d_o_hat[...] = (o * (1.0 - o)) * d_o
        # \delta h_{t-1} = W_o^\top \bar{\hat{o}}_t + W_i^\top \bar{\hat{i}}_t + W_f^\top \bar{\hat{f}}_t + W^\top \bar{\hat{\tilde{s}}}_t
        d_h_next = dA_x[t, :, 0:4 * n_hidden] @ W_stack_h[0:4 * n_hidden]
        # \delta s_{t-1} = d(f_t) \bar{s}_t
        d_s_next = f * d_s
        if mask is not None:
            d_h_next = np.where(mask[t], d_h_next, held[0])
            d_s_next = np.where(mask[t], d_s_next, held[1])
    grads = {}
    G_W_stack_x_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads['U'] = G_W_stack_x_0[0:n_hidden]
    grads['U_i'] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads['U_f'] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    grads['U_o'] = G_W_stack_x_0[3 * n_hidden:4 * n_hidden]
    G_W_stack_h_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads['W'] = G_W_stack_h_0[0:n_hidden]
    grads['W_i'] = G_W_stack_h_0[n_hidden:2 * n_hidden]
    grads['W_f'] = G_W_stack_h_0[2 * n_hidden:3 * n_hidden]
    grads['W_o'] = G_W_stack_h_0[3 * n_hidden:4 * n_hidden]
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads['b'] = colsum_dA_x[0:n_hidden]
    grads['b_i'] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads['b_f'] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads['b_o'] = colsum_dA_x[3 * n_hidden:4 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads["h0"] = d_h_next
    grads["s0"] = d_s_next
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
    W = P["W"]
    W_i = P["W_i"]
    W_f = P["W_f"]
    W_o = P["W_o"]
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    W_stack_h_T = W_stack_h.T
    batch, n_hidden = x_t.shape[0], prev[STATE[0]].shape[1]
    A_x = (x_t @ W_stack_x.T + P["bias:x"])[None]
    t = 0
    h_prev = prev["h"]
    s_prev = prev["s"]
    # A_{h} = [W; W_i; W_f; W_o] h_{t-1}
    A_h = h_prev @ W_stack_h_T
    # pre-activations whose x and state projections share columns
    A_h[...] += A_x[t]
    # o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o)
    o = _sigmoid(A_h[:, 3 * n_hidden:4 * n_hidden])
    # i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i)
    i = _sigmoid(A_h[:, n_hidden:2 * n_hidden])
    # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
    f = _sigmoid(A_h[:, 2 * n_hidden:3 * n_hidden])
    # \tilde{s}_t = \sigma(W h_{t-1} + U x_t + b)
    s_tilde = _sigmoid(A_h[:, 0:n_hidden])
    # s_t = f_t \odot s_{t-1} + i_t \odot \tilde{s}_t
    s = f * s_prev + i * s_tilde
    sigmoid_s = _sigmoid(s)
    # h_t = o_t \odot \sigma(s_t)
    h = o * sigmoid_s
    ones = np.ones((batch, n_hidden), x_t.dtype)
    Jd_h_h = None
    JM_h_h = (sigmoid_s * (o * (1.0 - o)))[..., None] * W_o + (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_prev * (f * (1.0 - f)))[..., None] * W_f + (o * (sigmoid_s * (1.0 - sigmoid_s)) * s_tilde * (i * (1.0 - i)))[..., None] * W_i + (o * (sigmoid_s * (1.0 - sigmoid_s)) * i * (s_tilde * (1.0 - s_tilde)))[..., None] * W
    Jd_h_s = o * (sigmoid_s * (1.0 - sigmoid_s)) * f
    JM_h_s = None
    Jd_s_h = None
    JM_s_h = (s_prev * (f * (1.0 - f)))[..., None] * W_f + (s_tilde * (i * (1.0 - i)))[..., None] * W_i + (i * (s_tilde * (1.0 - s_tilde)))[..., None] * W
    Jd_s_s = f
    JM_s_s = None
    J = {
        ("h", "h"): (JM_h_h, Jd_h_h),
        ("h", "s"): (JM_h_s, Jd_h_s),
        ("s", "h"): (JM_s_h, Jd_s_h),
        ("s", "s"): (JM_s_s, Jd_s_s),
    }
    new_state = {
        "h": h,
        "s": s,
    }
    if S is None:
        return new_state, J, None
    S_h_1 = S['h']
    S_s_1 = S['s']
    out_h = out['h']
    out_s = out['s']
    if dense is not None:
        # a small state: S <- J S with the whole state Jacobian, one matmul
        np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], out=dense[2])
    else:
        np.matmul(JM_h_h, S_h_1, out=out_h)
        out_h += Jd_h_s[..., None] * S_s_1
        np.matmul(JM_s_h, S_h_1, out=out_s)
        out_s += Jd_s_s[..., None] * S_s_1
    # S_u += V_u^A, through the strided views of the diagonal structure
    u0 = o * (sigmoid_s * (1.0 - sigmoid_s)) * i * (s_tilde * (1.0 - s_tilde)) * ones
    V['h']['W'] += u0[..., None] * h_prev[..., None, :]
    u1 = o * (sigmoid_s * (1.0 - sigmoid_s)) * s_tilde * (i * (1.0 - i)) * ones
    V['h']['W_i'] += u1[..., None] * h_prev[..., None, :]
    u2 = o * (sigmoid_s * (1.0 - sigmoid_s)) * s_prev * (f * (1.0 - f)) * ones
    V['h']['W_f'] += u2[..., None] * h_prev[..., None, :]
    u3 = sigmoid_s * (o * (1.0 - o)) * ones
    V['h']['W_o'] += u3[..., None] * h_prev[..., None, :]
    V['h']['U'] += u0[..., None] * x_t[..., None, :]
    V['h']['U_i'] += u1[..., None] * x_t[..., None, :]
    V['h']['U_f'] += u2[..., None] * x_t[..., None, :]
    V['h']['U_o'] += u3[..., None] * x_t[..., None, :]
    u4 = o * (sigmoid_s * (1.0 - sigmoid_s)) * i * ones
    V['h']['b'] += u4 * (s_tilde * (1.0 - s_tilde))
    u5 = o * (sigmoid_s * (1.0 - sigmoid_s)) * s_tilde * ones
    V['h']['b_i'] += u5 * (i * (1.0 - i))
    u6 = o * (sigmoid_s * (1.0 - sigmoid_s)) * s_prev * ones
    V['h']['b_f'] += u6 * (f * (1.0 - f))
    u7 = sigmoid_s * ones
    V['h']['b_o'] += u7 * (o * (1.0 - o))
    u8 = i * (s_tilde * (1.0 - s_tilde)) * ones
    V['s']['W'] += u8[..., None] * h_prev[..., None, :]
    u9 = s_tilde * (i * (1.0 - i)) * ones
    V['s']['W_i'] += u9[..., None] * h_prev[..., None, :]
    u10 = s_prev * (f * (1.0 - f)) * ones
    V['s']['W_f'] += u10[..., None] * h_prev[..., None, :]
    V['s']['U'] += u8[..., None] * x_t[..., None, :]
    V['s']['U_i'] += u9[..., None] * x_t[..., None, :]
    V['s']['U_f'] += u10[..., None] * x_t[..., None, :]
    u11 = i * ones
    V['s']['b'] += u11 * (s_tilde * (1.0 - s_tilde))
    u12 = s_tilde * ones
    V['s']['b_i'] += u12 * (i * (1.0 - i))
    u13 = s_prev * ones
    V['s']['b_f'] += u13 * (f * (1.0 - f))
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
