# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: mingru.
"""minGRU, sequential mode (Feng, Tung, Ahmed, Bengio, Hajimirsadeghi 2024, "Were RNNs all we needed?", arXiv:2410.01201): forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    z = sigmoid(W_z @ x + b_z)
    h_tilde = W_h @ x + b_h
    h = (1 - z) * h_prev + z * h_tilde

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
    "b_z": ("n_hidden",),
    "W_h": ("n_hidden", "n_in"),
    "b_h": ("n_hidden",),
}
# the keys of backward()'s gradients of the input sequence and of the initial states
INPUT_GRAD = "xs"
STATE0_GRAD = { "h": "h0" }
READOUT = ()
READOUT_PARAMS = {}
STATE = ("h",)
SPEC_DIGEST = "04cc7ffdd04f005f1b4b83b49dd44450c458436db4486618e78c09bb259eea43"  # SHA-256 of the cell spec this kernel was printed from

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
    P["stack:x"] = np.concatenate([params["W_z"], params["W_h"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["bias:x"] = np.concatenate([params["b_z"], np.zeros(params["W_h"].shape[0], params["W_h"].dtype)])
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
    C_z = np.empty((steps, batch, n_hidden), dtype)
    C_h_tilde = np.empty((steps, batch, n_hidden), dtype)
    C_tmp0 = np.empty((steps, batch, n_hidden), dtype)
    for t in range(steps):
        h_prev = S_h[t]
        # z_t = \sigma(W_z x_t + b_z)
        z = C_z[t]
        _sigmoid(A_x[t, :, 0:n_hidden], out=z)
        # \tilde{h}_t = W_h x_t + b_h
        h_tilde = C_h_tilde[t]
        h_tilde[...] = A_x[t, :, n_hidden:2 * n_hidden]
        h_tilde += b_h
        tmp0 = C_tmp0[t]
        tmp0[...] = 1.0
        tmp0 -= z
        # h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde{h}_t
        h = S_h[t + 1]
        np.multiply(tmp0, h_prev, out=h)
        h += z * h_tilde
        if mask is not None:  # a held sequence keeps its states
            S_h[t + 1] = np.where(mask[t], S_h[t + 1], S_h[t])
    cache = {"xs": xs, "backend": "numpy", "mask": mask, "state": {
        "h": S_h[-1],
    }}
    cache["S_h"] = S_h
    cache["C_z"] = C_z
    cache["C_h_tilde"] = C_h_tilde
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
    C_z = cache["C_z"]
    C_h_tilde = cache["C_h_tilde"]
    C_tmp0 = cache["C_tmp0"]
    d_h_next = carry["h"]
    dA_x = np.zeros((steps, batch, 2 * n_hidden), dtype)
    for t in range(steps - 1, -1, -1):
        if mask is not None:  # a held step passes the carried adjoints through unchanged
            held = (d_h_next, )
            d_h_next = np.where(mask[t], d_h_next, 0)
        h_prev = S_h[t]
        z = C_z[t]
        h_tilde = C_h_tilde[t]
        tmp0 = C_tmp0[t]
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{\tilde{h}}_t = d(z_t) \bar{h}_t
        d_h_tilde = dA_x[t, :, n_hidden:2 * n_hidden]
        d_h_tilde[...] = z * d_h
        # \bar{z}_t = -d(h_{t-1}) \bar{h}_t + d(\tilde{h}_t) \bar{h}_t
        d_z = -(h_prev * d_h) + h_tilde * d_h
        # \bar{\hat{z}}_t = d(z'_t) \bar{z}_t
        d_z_hat = dA_x[t, :, 0:n_hidden]
        d_z_hat[...] = (z * (1.0 - z)) * d_z
        # \delta h_{t-1} = d(1 - z_t) \bar{h}_t
        d_h_next = tmp0 * d_h
        if mask is not None:
            d_h_next = np.where(mask[t], d_h_next, held[0])
    grads = {}
    G_W_stack_x_0 = dA_x[:, :, 0:2 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads['W_z'] = G_W_stack_x_0[0:n_hidden]
    grads['W_h'] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads['b_z'] = colsum_dA_x[0:n_hidden]
    grads['b_h'] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads["h0"] = d_h_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:2 * n_hidden] @ W_stack_x[0:2 * n_hidden]
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
    # z_t = \sigma(W_z x_t + b_z)
    z = _sigmoid(A_x[t, :, 0:n_hidden])
    # \tilde{h}_t = W_h x_t + b_h
    h_tilde = A_x[t, :, n_hidden:2 * n_hidden] + b_h
    tmp0 = 1.0 - z
    # h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde{h}_t
    h = tmp0 * h_prev + z * h_tilde
    ones = np.ones((batch, n_hidden), x_t.dtype)
    Jd_h_h = tmp0
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
    u0 = (-(h_prev * (z * (1.0 - z)))) * ones
    V['h']['W_z'] += u0[..., None] * x_t[..., None, :]
    u1 = (z * (1.0 - z)) * h_tilde * ones
    V['h']['W_z'] += u1[..., None] * x_t[..., None, :]
    u2 = (-h_prev) * ones
    V['h']['b_z'] += u2 * (z * (1.0 - z))
    u3 = (z * (1.0 - z)) * ones
    V['h']['b_z'] += u3 * h_tilde
    u4 = z * ones
    V['h']['W_h'] += u4[..., None] * x_t[..., None, :]
    u5 = 1.0 * ones
    V['h']['b_h'] += u5 * z
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
