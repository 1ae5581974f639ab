# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: cifg_lstm.
"""LSTM with coupled input and forget gate, no peepholes (Greff, Srivastava, Koutnik, Steunebrink, Schmidhuber 2017, "LSTM: A search space odyssey", IEEE TNNLS 28(10), arXiv:1503.04069): forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    z = tanh(W_z @ x + R_z @ y_prev + b_z)
    i = sigmoid(W_i @ x + R_i @ y_prev + b_i)
    f = 1 - i
    c = z * i + c_prev * f
    o = sigmoid(W_o @ x + R_o @ y_prev + b_o)
    y = tanh(c) * o

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
    "W_z": ("n_hidden", "n_in"),
    "W_i": ("n_hidden", "n_in"),
    "W_o": ("n_hidden", "n_in"),
    "R_z": ("n_hidden", "n_hidden"),
    "R_i": ("n_hidden", "n_hidden"),
    "R_o": ("n_hidden", "n_hidden"),
    "b_z": ("n_hidden",),
    "b_i": ("n_hidden",),
    "b_o": ("n_hidden",),
}
# the keys of backward()'s gradients of the input sequence and of the initial states
INPUT_GRAD = "xs"
STATE0_GRAD = { "y": "y0", "c": "c0" }
READOUT = ()
READOUT_PARAMS = {}
STATE = ("y", "c")
SPEC_DIGEST = "1f9f7a7a1725cc3ae5e6660b032b237147aacc0444f8d51b607b9ff52049b209"  # SHA-256 of the cell spec this kernel was printed from

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
    P["stack:x"] = np.concatenate([params["W_z"], params["W_i"], params["W_o"]], axis=0)
    P["stack:y"] = np.concatenate([params["R_z"], params["R_i"], params["R_o"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["bias:x"] = np.concatenate([params["b_z"], params["b_i"], params["b_o"]])
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
    W_stack_y = P["stack:y"]
    W_stack_y_T = np.ascontiguousarray(W_stack_y.T)  # C order: BLAS is faster at small B
    # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (+ folded biases)
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["bias:x"]
    S_y = np.empty((steps + 1, batch, n_hidden), dtype)
    S_y[0] = state["y"]
    S_c = np.empty((steps + 1, batch, n_hidden), dtype)
    S_c[0] = state["c"]
    C_z = np.empty((steps, batch, n_hidden), dtype)
    C_i = np.empty((steps, batch, n_hidden), dtype)
    C_f = np.empty((steps, batch, n_hidden), dtype)
    C_o = np.empty((steps, batch, n_hidden), dtype)
    C_tanh_c = np.empty((steps, batch, n_hidden), dtype)
    A_y = np.empty((batch, 3 * n_hidden), dtype)
    for t in range(steps):
        y_prev = S_y[t]
        c_prev = S_c[t]
        # A_{y} = [R_z; R_i; R_o] y_{t-1}
        np.matmul(y_prev, W_stack_y_T, out=A_y)
        # pre-activations whose x and state projections share columns
        A_y[...] += A_x[t]
        # z_t = \tanh(W_z x_t + R_z y_{t-1} + b_z)
        z = C_z[t]
        np.tanh(A_y[:, 0:n_hidden], out=z)
        # i_t = \sigma(W_i x_t + R_i y_{t-1} + b_i)
        i = C_i[t]
        _sigmoid(A_y[:, n_hidden:2 * n_hidden], out=i)
        # f_t = 1 - i_t
        f = C_f[t]
        f[...] = 1.0
        f -= i
        # c_t = z_t \odot i_t + c_{t-1} \odot f_t
        c = S_c[t + 1]
        np.multiply(z, i, out=c)
        c += c_prev * f
        # o_t = \sigma(W_o x_t + R_o y_{t-1} + b_o)
        o = C_o[t]
        _sigmoid(A_y[:, 2 * n_hidden:3 * n_hidden], out=o)
        tanh_c = C_tanh_c[t]
        np.tanh(c, out=tanh_c)
        # y_t = \tanh(c_t) \odot o_t
        y = S_y[t + 1]
        np.multiply(tanh_c, o, out=y)
        if mask is not None:  # a held sequence keeps its states
            S_y[t + 1] = np.where(mask[t], S_y[t + 1], S_y[t])
            S_c[t + 1] = np.where(mask[t], S_c[t + 1], S_c[t])
    cache = {"xs": xs, "backend": "numpy", "mask": mask, "state": {
        "y": S_y[-1],
        "c": S_c[-1],
    }}
    cache["S_y"] = S_y
    cache["S_c"] = S_c
    cache["C_z"] = C_z
    cache["C_i"] = C_i
    cache["C_f"] = C_f
    cache["C_o"] = C_o
    cache["C_tanh_c"] = C_tanh_c
    if mask is not None:
        return np.where(mask, S_y[1:], 0), cache
    return S_y[1:], cache


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
    W_stack_y = P["stack:y"]
    S_y = cache["S_y"]
    S_c = cache["S_c"]
    C_z = cache["C_z"]
    C_i = cache["C_i"]
    C_f = cache["C_f"]
    C_o = cache["C_o"]
    C_tanh_c = cache["C_tanh_c"]
    d_y_next = carry["y"]
    d_c_next = carry["c"]
    dA_x = np.zeros((steps, batch, 3 * n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        if mask is not None:  # a held step passes the carried adjoints through unchanged
            held = (d_y_next, d_c_next, )
            d_y_next = np.where(mask[t], d_y_next, 0)
            d_c_next = np.where(mask[t], d_c_next, 0)
        c_prev = S_c[t]
        z = C_z[t]
        i = C_i[t]
        f = C_f[t]
        o = C_o[t]
        tanh_c = C_tanh_c[t]
        # \bar{y}_t = \frac{\partial \ell_t}{\partial y_t} + \delta y_t
        d_y = dhs[t] + d_y_next
        # \bar{o}_t = d(\tanh(c_t)) \bar{y}_t
        d_o = tanh_c * d_y
        # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
        d_o_hat = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        d_o_hat[...] = (o * (1.0 - o)) * d_o
        # \bar{c}_t = \delta c_t + d(o_t) d(\tanh'(c_t)) \bar{y}_t
        d_c = d_c_next + o * ((1.0 - tanh_c * tanh_c) * d_y)
        # \bar{f}_t = d(c_{t-1}) \bar{c}_t
        d_f = c_prev * d_c
        # \bar{i}_t = -\bar{f}_t + d(z_t) \bar{c}_t
        d_i = -d_f + z * d_c
        # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
        d_i_hat = dA_x[t, :, n_hidden:2 * n_hidden]
        d_i_hat[...] = (i * (1.0 - i)) * d_i
        # \bar{z}_t = d(i_t) \bar{c}_t
        d_z = i * d_c
        # \bar{\hat{z}}_t = d(z'_t) \bar{z}_t
        d_z_hat = dA_x[t, :, 0:n_hidden]
        d_z_hat[...] = (1.0 - z * z) * d_z
        # \delta y_{t-1} = R_z^\top \bar{\hat{z}}_t + R_i^\top \bar{\hat{i}}_t + R_o^\top \bar{\hat{o}}_t
        d_y_next = dA_x[t, :, 0:3 * n_hidden] @ W_stack_y[0:3 * n_hidden]
        # \delta c_{t-1} = d(f_t) \bar{c}_t
        d_c_next = f * d_c
        if mask is not None:
            d_y_next = np.where(mask[t], d_y_next, held[0])
            d_c_next = np.where(mask[t], d_c_next, held[1])
    grads = {}
    G_W_stack_x_0 = dA_x[:, :, 0:3 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads['W_z'] = G_W_stack_x_0[0:n_hidden]
    grads['W_i'] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads['W_o'] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    G_W_stack_y_0 = dA_x[:, :, 0:3 * n_hidden].reshape(steps * batch, -1).T @ S_y[:-1].reshape(steps * batch, -1)
    grads['R_z'] = G_W_stack_y_0[0:n_hidden]
    grads['R_i'] = G_W_stack_y_0[n_hidden:2 * n_hidden]
    grads['R_o'] = G_W_stack_y_0[2 * n_hidden:3 * n_hidden]
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads['b_z'] = colsum_dA_x[0:n_hidden]
    grads['b_i'] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads['b_o'] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads["y0"] = d_y_next
    grads["c0"] = d_c_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:3 * n_hidden] @ W_stack_x[0:3 * n_hidden]
    return grads


RTRL_DENSE_MAX = 32  # see rt.use_dense_product


def _local_step(params, x_t, prev, S=None, out=None, V=None, off=None, P=None, dense=None):
    """One step: the new states, the state-Jacobian blocks and (with S) the RTRL update of the
    sensitivities S into ``out`` (V: strided views of out's diagonal structure, off: column
    offsets, P: _unpack(params) when the caller keeps it, dense: (J buffer, whole S, whole
    out) for the one-matmul product; see _runtime.rtrl)."""
    if P is None:
        P = _unpack(params)
    R_z = P["R_z"]
    R_i = P["R_i"]
    R_o = P["R_o"]
    W_stack_x = P["stack:x"]
    W_stack_y = P["stack:y"]
    W_stack_y_T = W_stack_y.T
    batch, n_hidden = x_t.shape[0], prev[STATE[0]].shape[1]
    A_x = (x_t @ W_stack_x.T + P["bias:x"])[None]
    t = 0
    y_prev = prev["y"]
    c_prev = prev["c"]
    # A_{y} = [R_z; R_i; R_o] y_{t-1}
    A_y = y_prev @ W_stack_y_T
    # pre-activations whose x and state projections share columns
    A_y[...] += A_x[t]
    # z_t = \tanh(W_z x_t + R_z y_{t-1} + b_z)
    z = np.tanh(A_y[:, 0:n_hidden])
    # i_t = \sigma(W_i x_t + R_i y_{t-1} + b_i)
    i = _sigmoid(A_y[:, n_hidden:2 * n_hidden])
    # f_t = 1 - i_t
    f = 1.0 - i
    # c_t = z_t \odot i_t + c_{t-1} \odot f_t
    c = z * i + c_prev * f
    # o_t = \sigma(W_o x_t + R_o y_{t-1} + b_o)
    o = _sigmoid(A_y[:, 2 * n_hidden:3 * n_hidden])
    tanh_c = np.tanh(c)
    # y_t = \tanh(c_t) \odot o_t
    y = tanh_c * o
    ones = np.ones((batch, n_hidden), x_t.dtype)
    Jd_y_y = None
    JM_y_y = (o * (1.0 - tanh_c * tanh_c) * i * (1.0 - z * z))[..., None] * R_z + (o * (1.0 - tanh_c * tanh_c) * z * (i * (1.0 - i)))[..., None] * R_i + -((o * (1.0 - tanh_c * tanh_c) * (i * (1.0 - i)) * c_prev)[..., None] * R_i) + (tanh_c * (o * (1.0 - o)))[..., None] * R_o
    Jd_y_c = o * (1.0 - tanh_c * tanh_c) * f
    JM_y_c = None
    Jd_c_y = None
    JM_c_y = (i * (1.0 - z * z))[..., None] * R_z + (z * (i * (1.0 - i)))[..., None] * R_i + -(((i * (1.0 - i)) * c_prev)[..., None] * R_i)
    Jd_c_c = f
    JM_c_c = None
    J = {
        ("y", "y"): (JM_y_y, Jd_y_y),
        ("y", "c"): (JM_y_c, Jd_y_c),
        ("c", "y"): (JM_c_y, Jd_c_y),
        ("c", "c"): (JM_c_c, Jd_c_c),
    }
    new_state = {
        "y": y,
        "c": c,
    }
    if S is None:
        return new_state, J, None
    S_y_1 = S['y']
    S_c_1 = S['c']
    out_y = out['y']
    out_c = out['c']
    if dense is not None:
        # a small state: S <- J S with the whole state Jacobian, one matmul
        np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], out=dense[2])
    else:
        np.matmul(JM_y_y, S_y_1, out=out_y)
        out_y += Jd_y_c[..., None] * S_c_1
        np.matmul(JM_c_y, S_y_1, out=out_c)
        out_c += Jd_c_c[..., None] * S_c_1
    # S_u += V_u^A, through the strided views of the diagonal structure
    u0 = o * (1.0 - tanh_c * tanh_c) * i * (1.0 - z * z) * ones
    V['y']['W_z'] += u0[..., None] * x_t[..., None, :]
    u1 = o * (1.0 - tanh_c * tanh_c) * z * (i * (1.0 - i)) * ones
    V['y']['W_i'] += u1[..., None] * x_t[..., None, :]
    u2 = (-(o * (1.0 - tanh_c * tanh_c) * (i * (1.0 - i)) * c_prev)) * ones
    V['y']['W_i'] += u2[..., None] * x_t[..., None, :]
    u3 = tanh_c * (o * (1.0 - o)) * ones
    V['y']['W_o'] += u3[..., None] * x_t[..., None, :]
    V['y']['R_z'] += u0[..., None] * y_prev[..., None, :]
    V['y']['R_i'] += u1[..., None] * y_prev[..., None, :]
    V['y']['R_i'] += u2[..., None] * y_prev[..., None, :]
    V['y']['R_o'] += u3[..., None] * y_prev[..., None, :]
    u4 = o * (1.0 - tanh_c * tanh_c) * i * ones
    V['y']['b_z'] += u4 * (1.0 - z * z)
    u5 = o * (1.0 - tanh_c * tanh_c) * z * ones
    V['y']['b_i'] += u5 * (i * (1.0 - i))
    u6 = (-(o * (1.0 - tanh_c * tanh_c) * (i * (1.0 - i)))) * ones
    V['y']['b_i'] += u6 * c_prev
    u7 = tanh_c * ones
    V['y']['b_o'] += u7 * (o * (1.0 - o))
    u8 = i * (1.0 - z * z) * ones
    V['c']['W_z'] += u8[..., None] * x_t[..., None, :]
    u9 = z * (i * (1.0 - i)) * ones
    V['c']['W_i'] += u9[..., None] * x_t[..., None, :]
    u10 = (-((i * (1.0 - i)) * c_prev)) * ones
    V['c']['W_i'] += u10[..., None] * x_t[..., None, :]
    V['c']['R_z'] += u8[..., None] * y_prev[..., None, :]
    V['c']['R_i'] += u9[..., None] * y_prev[..., None, :]
    V['c']['R_i'] += u10[..., None] * y_prev[..., None, :]
    u11 = i * ones
    V['c']['b_z'] += u11 * (1.0 - z * z)
    u12 = z * ones
    V['c']['b_i'] += u12 * (i * (1.0 - i))
    u13 = (-(i * (1.0 - i))) * ones
    V['c']['b_i'] += u13 * c_prev
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
