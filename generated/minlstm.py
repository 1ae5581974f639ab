# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: minlstm.
"""minLSTM, sequential mode (Feng, Tung, Ahmed, Bengio, Hajimirsadeghi 2024, "Were RNNs all we needed?", arXiv:2410.01201): forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    f = sigmoid(W_f @ x + b_f)
    i = sigmoid(W_i @ x + b_i)
    h_tilde = W_h @ x + b_h
    f_prime = f * reciprocal(f + i)
    i_prime = i * reciprocal(f + i)
    h = f_prime * h_prev + i_prime * h_tilde

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
    "W_f": ("n_hidden", "n_in"),
    "b_f": ("n_hidden",),
    "W_i": ("n_hidden", "n_in"),
    "b_i": ("n_hidden",),
    "W_h": ("n_hidden", "n_in"),
    "b_h": ("n_hidden",),
}
# the keys of backward()'s gradients of the input sequence and of the initial states
INPUT_GRAD = "xs"
STATE0_GRAD = { "h": "h0" }
READOUT = ()
READOUT_PARAMS = {}
STATE = ("h",)
SPEC_DIGEST = "44982f92ba46ff5af11ddd60b3ed934cd17b068b33b91a9d683d38a1a70b3890"  # SHA-256 of the cell spec this kernel was printed from

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
    P["stack:x"] = np.concatenate([params["W_f"], params["W_i"], params["W_h"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["bias:x"] = np.concatenate([params["b_f"], params["b_i"], np.zeros(params["W_h"].shape[0], params["W_h"].dtype)])
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
    b_h = P["b_h"]
    W_stack_x = P["stack:x"]
    # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (+ folded biases)
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["bias:x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    C_f = np.empty((steps, batch, n_hidden), dtype)
    C_i = np.empty((steps, batch, n_hidden), dtype)
    C_h_tilde = np.empty((steps, batch, n_hidden), dtype)
    C_f_prime = np.empty((steps, batch, n_hidden), dtype)
    C_i_prime = np.empty((steps, batch, n_hidden), dtype)
    C_tmp0 = np.empty((steps, batch, n_hidden), dtype)
    for t in range(steps):
        h_prev = S_h[t]
        # f_t = \sigma(W_f x_t + b_f)
        f = C_f[t]
        _sigmoid(A_x[t, :, 0:n_hidden], out=f)
        # i_t = \sigma(W_i x_t + b_i)
        i = C_i[t]
        _sigmoid(A_x[t, :, n_hidden:2 * n_hidden], out=i)
        # \tilde{h}_t = W_h x_t + b_h
        h_tilde = C_h_tilde[t]
        h_tilde[...] = A_x[t, :, 2 * n_hidden:3 * n_hidden]
        h_tilde += b_h
        tmp0 = C_tmp0[t]
        np.divide(1.0, (f + i), out=tmp0)
        # \bar{f}_t = f_t \odot \operatorname{recip}(f_t + i_t)
        f_prime = C_f_prime[t]
        np.multiply(f, tmp0, out=f_prime)
        # \bar{i}_t = i_t \odot \operatorname{recip}(f_t + i_t)
        i_prime = C_i_prime[t]
        np.multiply(i, tmp0, out=i_prime)
        # h_t = \bar{f}_t \odot h_{t-1} + \bar{i}_t \odot \tilde{h}_t
        h = S_h[t + 1]
        np.multiply(f_prime, h_prev, out=h)
        h += i_prime * h_tilde
        if mask is not None:  # a held sequence keeps its states
            S_h[t + 1] = np.where(mask[t], S_h[t + 1], S_h[t])
    cache = {"xs": xs, "backend": "numpy", "mask": mask, "state": {
        "h": S_h[-1],
    }}
    cache["S_h"] = S_h
    cache["C_f"] = C_f
    cache["C_i"] = C_i
    cache["C_h_tilde"] = C_h_tilde
    cache["C_f_prime"] = C_f_prime
    cache["C_i_prime"] = C_i_prime
    cache["C_tmp0"] = C_tmp0
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
    S_h = cache["S_h"]
    C_f = cache["C_f"]
    C_i = cache["C_i"]
    C_h_tilde = cache["C_h_tilde"]
    C_f_prime = cache["C_f_prime"]
    C_i_prime = cache["C_i_prime"]
    C_tmp0 = cache["C_tmp0"]
    d_h_next = carry["h"]
    dA_x = np.zeros((steps, batch, 3 * n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        if mask is not None:  # a held step passes the carried adjoints through unchanged
            held = (d_h_next, )
            d_h_next = np.where(mask[t], d_h_next, 0)
        h_prev = S_h[t]
        f = C_f[t]
        i = C_i[t]
        h_tilde = C_h_tilde[t]
        f_prime = C_f_prime[t]
        i_prime = C_i_prime[t]
        tmp0 = C_tmp0[t]
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{\bar{i}}_t = d(\tilde{h}_t) \bar{h}_t
        d_i_prime = h_tilde * d_h
        # \bar{\bar{f}}_t = d(h_{t-1}) \bar{h}_t
        d_f_prime = h_prev * d_h
        # \bar{\tilde{h}}_t = d(\bar{i}_t) \bar{h}_t
        d_h_tilde = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        d_h_tilde[...] = i_prime * d_h
        # \bar{i}_t = d(f_t) d(\operatorname{recip}'(f_t + i_t)) \bar{\bar{f}}_t + d(\operatorname{recip}(f_t + i_t)) \bar{\bar{i}}_t + d(\operatorname{recip}'(f_t + i_t)) d(i_t) \bar{\bar{i}}_t
        d_i = f * ((-np.square(tmp0)) * d_f_prime) + tmp0 * d_i_prime + (-np.square(tmp0)) * (i * d_i_prime)
        # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
        d_i_hat = dA_x[t, :, n_hidden:2 * n_hidden]
        d_i_hat[...] = (i * (1.0 - i)) * d_i
        # \bar{f}_t = d(\operatorname{recip}(f_t + i_t)) \bar{\bar{f}}_t + d(f_t) d(\operatorname{recip}'(f_t + i_t)) \bar{\bar{f}}_t + d(\operatorname{recip}'(f_t + i_t)) d(i_t) \bar{\bar{i}}_t
        d_f = tmp0 * d_f_prime + f * ((-np.square(tmp0)) * d_f_prime) + (-np.square(tmp0)) * (i * d_i_prime)
        # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
        d_f_hat = dA_x[t, :, 0:n_hidden]
        d_f_hat[...] = (f * (1.0 - f)) * d_f
        # \delta h_{t-1} = d(\bar{f}_t) \bar{h}_t
        d_h_next = f_prime * d_h
        if mask is not None:
            d_h_next = np.where(mask[t], d_h_next, held[0])
    grads = {}
    G_W_stack_x_0 = dA_x[:, :, 0:3 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads['W_f'] = G_W_stack_x_0[0:n_hidden]
    grads['W_i'] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads['W_h'] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads['b_f'] = colsum_dA_x[0:n_hidden]
    grads['b_i'] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads['b_h'] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads["h0"] = d_h_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:3 * n_hidden] @ W_stack_x[0:3 * n_hidden]
    return grads


RTRL_DENSE_MAX = 0  # see rt.use_dense_product


def _local_step(params, x_t, prev, S=None, out=None, V=None, off=None, P=None, dense=None):
    """One step: the new states, the state-Jacobian blocks and (with S) the RTRL update of the
    sensitivities S into ``out`` (V: strided views of out's diagonal structure, off: column
    offsets, P: _unpack(params) when the caller keeps it, dense: (J buffer, whole S, whole
    out) for the one-matmul product; see _runtime.rtrl)."""
    if P is None:
        P = _unpack(params)
    b_h = P["b_h"]
    W_stack_x = P["stack:x"]
    batch, n_hidden = x_t.shape[0], prev[STATE[0]].shape[1]
    A_x = (x_t @ W_stack_x.T + P["bias:x"])[None]
    t = 0
    h_prev = prev["h"]
    # f_t = \sigma(W_f x_t + b_f)
    f = _sigmoid(A_x[t, :, 0:n_hidden])
    # i_t = \sigma(W_i x_t + b_i)
    i = _sigmoid(A_x[t, :, n_hidden:2 * n_hidden])
    # \tilde{h}_t = W_h x_t + b_h
    h_tilde = A_x[t, :, 2 * n_hidden:3 * n_hidden] + b_h
    tmp0 = 1.0 / ((f + i))
    # \bar{f}_t = f_t \odot \operatorname{recip}(f_t + i_t)
    f_prime = f * tmp0
    # \bar{i}_t = i_t \odot \operatorname{recip}(f_t + i_t)
    i_prime = i * tmp0
    # h_t = \bar{f}_t \odot h_{t-1} + \bar{i}_t \odot \tilde{h}_t
    h = f_prime * h_prev + i_prime * h_tilde
    ones = np.ones((batch, n_hidden), x_t.dtype)
    Jd_h_h = f_prime
    JM_h_h = None
    J = {
        ("h", "h"): (JM_h_h, Jd_h_h),
    }
    new_state = {
        "h": h,
    }
    if S is None:
        return new_state, J, None
    S_h_1 = S['h']
    out_h = out['h']
    if dense is not None:
        # a small state: S <- J S with the whole state Jacobian, one matmul
        np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], out=dense[2])
    else:
        np.multiply(Jd_h_h[..., None], S_h_1, out=out_h)
    # S_u += V_u^A, through the strided views of the diagonal structure
    u0 = h_prev * tmp0 * (f * (1.0 - f)) * ones
    V['h']['W_f'] += u0[..., None] * x_t[..., None, :]
    u1 = h_prev * f * (f * (1.0 - f)) * (-np.square(tmp0)) * ones
    V['h']['W_f'] += u1[..., None] * x_t[..., None, :]
    u2 = (f * (1.0 - f)) * (-np.square(tmp0)) * h_tilde * i * ones
    V['h']['W_f'] += u2[..., None] * x_t[..., None, :]
    u3 = h_prev * tmp0 * ones
    V['h']['b_f'] += u3 * (f * (1.0 - f))
    u4 = h_prev * f * (f * (1.0 - f)) * ones
    V['h']['b_f'] += u4 * (-np.square(tmp0))
    u5 = (f * (1.0 - f)) * (-np.square(tmp0)) * h_tilde * ones
    V['h']['b_f'] += u5 * i
    u6 = h_prev * f * (-np.square(tmp0)) * (i * (1.0 - i)) * ones
    V['h']['W_i'] += u6[..., None] * x_t[..., None, :]
    u7 = tmp0 * (i * (1.0 - i)) * h_tilde * ones
    V['h']['W_i'] += u7[..., None] * x_t[..., None, :]
    u8 = (-np.square(tmp0)) * (i * (1.0 - i)) * h_tilde * i * ones
    V['h']['W_i'] += u8[..., None] * x_t[..., None, :]
    u9 = h_prev * f * (-np.square(tmp0)) * ones
    V['h']['b_i'] += u9 * (i * (1.0 - i))
    u10 = tmp0 * (i * (1.0 - i)) * ones
    V['h']['b_i'] += u10 * h_tilde
    u11 = (-np.square(tmp0)) * (i * (1.0 - i)) * h_tilde * ones
    V['h']['b_i'] += u11 * i
    u12 = i_prime * ones
    V['h']['W_h'] += u12[..., None] * x_t[..., None, :]
    u13 = 1.0 * ones
    V['h']['b_h'] += u13 * i_prime
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
