# generated from numpy/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: gru_cho.
"""GRU of Cho et al. 2014 ("Learning phrase representations using RNN encoder-decoder for statistical machine translation", EMNLP 2014, arXiv:1406.1078, eqs 5-8): reset before the recurrent product, no biases: forward, BPTT, RTRL and state Jacobians, derived by derive.

Forward equations (the cell spec; x is x_t, <state>_prev the state at t-1):
    r = sigmoid(W_r @ x + U_r @ h_prev)
    z = sigmoid(W_z @ x + U_z @ h_prev)
    h_tilde = tanh(W @ x + U @ (r * h_prev))
    h = z * h_prev + (1 - z) * h_tilde

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
    "W_r": ("n_hidden", "n_in"),
    "U_r": ("n_hidden", "n_hidden"),
    "W_z": ("n_hidden", "n_in"),
    "U_z": ("n_hidden", "n_hidden"),
    "W": ("n_hidden", "n_in"),
    "U": ("n_hidden", "n_hidden"),
}
# the keys of backward()'s gradients of the input sequence and of the initial states
INPUT_GRAD = "xs"
STATE0_GRAD = { "h": "h0" }
READOUT = ()
READOUT_PARAMS = {}
STATE = ("h",)
SPEC_DIGEST = "a6774e4d1b9a47108d8976f0268611d1d275593d40764303ad1299cf44840b48"  # SHA-256 of the cell spec this kernel was printed from

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
    P["stack:x"] = np.concatenate([params["W_r"], params["W_z"], params["W"]], axis=0)
    P["stack:h"] = np.concatenate([params["U_r"], params["U_z"]], axis=0)
    # biases folded into the input projection: A_x = X Theta_x^T + b_stack_x
    P["bias:x"] = np.concatenate([np.zeros(params["W_r"].shape[0], params["W_r"].dtype), np.zeros(params["W_z"].shape[0], params["W_z"].dtype), np.zeros(params["W"].shape[0], params["W"].dtype)])
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
    U = P["U"]
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    W_stack_h_T = np.ascontiguousarray(W_stack_h.T)  # C order: BLAS is faster at small B
    # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (+ folded biases)
    A_x = (xs.reshape(steps * batch, n_in) @ W_stack_x.T).reshape(steps, batch, -1)
    A_x += P["bias:x"]
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    C_r = np.empty((steps, batch, n_hidden), dtype)
    C_z = np.empty((steps, batch, n_hidden), dtype)
    C_h_tilde = np.empty((steps, batch, n_hidden), dtype)
    C_tmp1 = np.empty((steps, batch, n_hidden), dtype)
    C_tmp0 = np.empty((steps, batch, n_hidden), dtype)
    A_h = np.empty((batch, 2 * n_hidden), dtype)
    for t in range(steps):
        h_prev = S_h[t]
        # A_{h} = [U_r; U_z] h_{t-1}
        np.matmul(h_prev, W_stack_h_T, out=A_h)
        # pre-activations whose x and state projections share columns
        A_h[:, 0:2 * n_hidden] += A_x[t, :, 0:2 * n_hidden]
        # r_t = \sigma(W_r x_t + U_r h_{t-1})
        r = C_r[t]
        _sigmoid(A_h[:, 0:n_hidden], out=r)
        # z_t = \sigma(W_z x_t + U_z h_{t-1})
        z = C_z[t]
        _sigmoid(A_h[:, n_hidden:2 * n_hidden], out=z)
        tmp1 = C_tmp1[t]
        np.multiply(r, h_prev, out=tmp1)
        # \tilde{h}_t = \tanh(W x_t + U (r_t \odot h_{t-1}))
        h_tilde = C_h_tilde[t]
        np.tanh(A_x[t, :, 2 * n_hidden:3 * n_hidden] + tmp1 @ U.T, out=h_tilde)
        tmp0 = C_tmp0[t]
        tmp0[...] = 1.0
        tmp0 -= z
        # h_t = z_t \odot h_{t-1} + (1 - z_t) \odot \tilde{h}_t
        h = S_h[t + 1]
        np.multiply(z, h_prev, out=h)
        h += tmp0 * h_tilde
        if mask is not None:  # a held sequence keeps its states
            S_h[t + 1] = np.where(mask[t], S_h[t + 1], S_h[t])
    cache = {"xs": xs, "backend": "numpy", "mask": mask, "state": {
        "h": S_h[-1],
    }}
    cache["S_h"] = S_h
    cache["C_r"] = C_r
    cache["C_z"] = C_z
    cache["C_h_tilde"] = C_h_tilde
    cache["C_tmp1"] = C_tmp1
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
    U = P["U"]
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    S_h = cache["S_h"]
    C_r = cache["C_r"]
    C_z = cache["C_z"]
    C_h_tilde = cache["C_h_tilde"]
    C_tmp1 = cache["C_tmp1"]
    C_tmp0 = cache["C_tmp0"]
    d_h_next = carry["h"]
    dA_x = np.zeros((steps, batch, 3 * n_hidden), dtype)
    g_U = np.zeros(params["U"].shape, dtype)
    for t in range(steps - 1, -1, -1):
        if mask is not None:  # a held step passes the carried adjoints through unchanged
            held = (d_h_next, )
            d_h_next = np.where(mask[t], d_h_next, 0)
        h_prev = S_h[t]
        r = C_r[t]
        z = C_z[t]
        h_tilde = C_h_tilde[t]
        tmp1 = C_tmp1[t]
        tmp0 = C_tmp0[t]
        # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
        d_h = dhs[t] + d_h_next
        # \bar{\tilde{h}}_t = d(1 - z_t) \bar{h}_t
        d_h_tilde = tmp0 * d_h
        # \bar{\hat{\tilde{h}}}_t = d(\tilde{h}'_t) \bar{\tilde{h}}_t
        d_h_tilde_hat = dA_x[t, :, 2 * n_hidden:3 * n_hidden]
        d_h_tilde_hat[...] = (1.0 - h_tilde * h_tilde) * d_h_tilde
        # \bar{z}_t = d(h_{t-1}) \bar{h}_t - d(\tilde{h}_t) \bar{h}_t
        d_z = h_prev * d_h - h_tilde * d_h
        # \bar{\hat{z}}_t = d(z'_t) \bar{z}_t
        d_z_hat = dA_x[t, :, n_hidden:2 * n_hidden]
        d_z_hat[...] = (z * (1.0 - z)) * d_z
        # \bar{r}_t = d(h_{t-1}) U^\top \bar{\hat{\tilde{h}}}_t
        d_r = h_prev * (d_h_tilde_hat @ U)
        # \bar{\hat{r}}_t = d(r'_t) \bar{r}_t
        d_r_hat = dA_x[t, :, 0:n_hidden]
        d_r_hat[...] = (r * (1.0 - r)) * d_r
        g_U += d_h_tilde_hat.T @ tmp1
        # \delta h_{t-1} = U_r^\top \bar{\hat{r}}_t + U_z^\top \bar{\hat{z}}_t + d(r_t) U^\top \bar{\hat{\tilde{h}}}_t + d(z_t) \bar{h}_t
        d_h_next = dA_x[t, :, 0:2 * n_hidden] @ W_stack_h[0:2 * n_hidden] + (r * (d_h_tilde_hat @ U) + z * d_h)
        if mask is not None:
            d_h_next = np.where(mask[t], d_h_next, held[0])
    grads = {}
    G_W_stack_x_0 = dA_x[:, :, 0:3 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
    grads['W_r'] = G_W_stack_x_0[0:n_hidden]
    grads['W_z'] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads['W'] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    G_W_stack_h_0 = dA_x[:, :, 0:2 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    grads['U_r'] = G_W_stack_h_0[0:n_hidden]
    grads['U_z'] = G_W_stack_h_0[n_hidden:2 * n_hidden]
    grads["U"] = g_U
    grads = {name: grads[name] for name in PARAMS}
    grads["h0"] = d_h_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:3 * n_hidden] @ W_stack_x[0:3 * n_hidden]
    return grads


RTRL_DENSE_MAX = 1073741824  # see rt.use_dense_product


def _local_step(params, x_t, prev, S=None, out=None, V=None, off=None, P=None, dense=None):
    """One step: the new states, the state-Jacobian blocks and (with S) the RTRL update of the
    sensitivities S into ``out`` (V: strided views of out's diagonal structure, off: column
    offsets, P: _unpack(params) when the caller keeps it, dense: (J buffer, whole S, whole
    out) for the one-matmul product; see _runtime.rtrl)."""
    if P is None:
        P = _unpack(params)
    U_r = P["U_r"]
    U_z = P["U_z"]
    U = P["U"]
    W_stack_x = P["stack:x"]
    W_stack_h = P["stack:h"]
    W_stack_h_T = W_stack_h.T
    batch, n_hidden = x_t.shape[0], prev[STATE[0]].shape[1]
    A_x = (x_t @ W_stack_x.T + P["bias:x"])[None]
    t = 0
    h_prev = prev["h"]
    # A_{h} = [U_r; U_z] h_{t-1}
    A_h = h_prev @ W_stack_h_T
    # pre-activations whose x and state projections share columns
    A_h[:, 0:2 * n_hidden] += A_x[t, :, 0:2 * n_hidden]
    # r_t = \sigma(W_r x_t + U_r h_{t-1})
    r = _sigmoid(A_h[:, 0:n_hidden])
    # z_t = \sigma(W_z x_t + U_z h_{t-1})
    z = _sigmoid(A_h[:, n_hidden:2 * n_hidden])
    tmp1 = r * h_prev
    # \tilde{h}_t = \tanh(W x_t + U (r_t \odot h_{t-1}))
    h_tilde = np.tanh(A_x[t, :, 2 * n_hidden:3 * n_hidden] + tmp1 @ U.T)
    tmp0 = 1.0 - z
    # h_t = z_t \odot h_{t-1} + (1 - z_t) \odot \tilde{h}_t
    h = z * h_prev + tmp0 * h_tilde
    ones = np.ones((batch, n_hidden), x_t.dtype)
    Jd_h_h = z
    JM_h_h = (h_prev * (z * (1.0 - z)))[..., None] * U_z + -(((z * (1.0 - z)) * h_tilde)[..., None] * U_z) + (tmp0 * (1.0 - h_tilde * h_tilde))[..., None] * (U @ ((h_prev * (r * (1.0 - r)))[..., None] * U_r)) + (tmp0 * (1.0 - h_tilde * h_tilde))[..., None] * (U * r[..., None, :])
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
        np.matmul(JM_h_h, S_h_1, out=out_h)
        out_h += Jd_h_h[..., None] * S_h_1
    # S_u += V_u^A, through the strided views of the diagonal structure
    u0 = (tmp0 * (1.0 - h_tilde * h_tilde))[..., None] * (U * (h_prev * (r * (1.0 - r)))[..., None, :]) * ones[..., None]
    out_h[:, :, off['W_r'][0]:off['W_r'][1]] += (u0[..., None] * x_t[..., None, None, :]).reshape(batch, n_hidden, -1)
    out_h[:, :, off['U_r'][0]:off['U_r'][1]] += (u0[..., None] * h_prev[..., None, None, :]).reshape(batch, n_hidden, -1)
    u1 = h_prev * (z * (1.0 - z)) * ones
    V['h']['W_z'] += u1[..., None] * x_t[..., None, :]
    u2 = (-((z * (1.0 - z)) * h_tilde)) * ones
    V['h']['W_z'] += u2[..., None] * x_t[..., None, :]
    V['h']['U_z'] += u1[..., None] * h_prev[..., None, :]
    V['h']['U_z'] += u2[..., None] * h_prev[..., None, :]
    u3 = tmp0 * (1.0 - h_tilde * h_tilde) * ones
    V['h']['W'] += u3[..., None] * x_t[..., None, :]
    V['h']['U'] += u3[..., None] * tmp1[..., None, :]
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
