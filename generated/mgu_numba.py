# generated from numba/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: mgu, numba backend.
"""Minimal gated unit (Zhou, Wu, Zhang, Zhou 2016, "Minimal gated unit for recurrent neural networks", Int. J. Autom. Comput. 13(3), arXiv:1603.09420): forward and BPTT as fused numba loops (optional backend).

Same API as its NumPy sibling ``mgu`` (which this module uses for init_params, rtrl_step,
state_jacobian, rtrl and the input checks): the elementwise part of every time step runs as
one compiled loop over (batch, unit) instead of one NumPy call per operation. Where the stacked
matrices are small (SEQUENCE_MAX_BYTES), forward and backward each run as one compiled call per
thread over all time steps for a chunk of the batch (threads: $DERIVE_NUM_THREADS, default the
usable CPUs), with their own matrix products; above it, the matrix products are NumPy's BLAS
calls, per step. Needs numba (``pip install "derive-rnn[numba]"``); the first call of each dtype
compiles (cached on disk afterwards). The forward cache is the same as the NumPy backend's.
"""

import math  # noqa: F401  (activations printed as math.* scalar code)

import numpy as np
from numba import njit

from . import _runtime as rt
from ._numba_runtime import (  # noqa: F401  (helpers the printed loops call)
    _colsum,
    _exp_parts_f32,
    _exp_parts_f64,
    _nt2,
    _rank_update,
    _sigmoid_s,
    _tanh_s,
)
from .mgu import (  # noqa: F401  (re-exported: same API)
    INPUT_GRAD,
    PARAMS,
    READOUT,
    READOUT_PARAMS,
    SPEC_DIGEST,
    STATE,
    STATE0_GRAD,
    _check_array,
    _check_state,
    _check_xs,
    _sizes,
    init_params,
    rtrl,
    rtrl_step,
    state_jacobian,
)
from .mgu import backward as _numpy_backward  # variable lengths: the NumPy path
from .mgu import forward as _numpy_forward


# the shared helpers this module was printed against (SHA-256 of _numba_runtime.py): a change
# there changes this file too, so numba's per-file cache never runs stale helper code
NUMBA_RUNTIME = "5c4c0b3c9acef5c0bf907a2b4cf4f13d7a18753792156736ad409dcaec8e9114"
# Whole-sequence kernels where the matrices are small enough to stay in a core's cache
# (bytes of all of them <= SEQUENCE_MAX_BYTES): every step of a batch chunk in one compiled
# call per thread, products by _nt2 / _rank_update, no BLAS and no Python per step. Above it,
# per-step BLAS products around the fused step loops (BLAS is faster on big blocks). Measured
# on a 2-core Zen machine, whole BPTT step, this path / per-step BLAS: c1 0.40-0.68, c2
# 0.67-0.92 (stacks of 288-768 KiB), c3 1.04-1.15 (1.5-4 MiB); bench/README.md.
SEQUENCE_MAX_BYTES = 1048576
FUSED = True  # compiled loops (a cell the fused printer does not print re-exports NumPy's)


def _unpack(params):
    """The parameters and the stacked blocks Theta_v of the matrices acting on one vector."""
    P = dict(params)
    # W_stack_x = [U_f; U_h]
    P["stack:x"] = np.concatenate([params["U_f"], params["U_h"]], axis=0)
    # W_stack_h = [W_f]
    P["stack:h"] = np.concatenate([params["W_f"]], axis=0)
    return P


def _sequence(P):
    """True where forward() and backward() run the whole-sequence kernels (see above)."""
    return sum(P[k].nbytes for k in ("stack:x", "stack:h", "W_h", )) <= SEQUENCE_MAX_BYTES


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step(t, A_h, A_x, b_f, S_h, C_tmp1, C_tmp0, one):
    """Forward step t, loop 1 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = A_h.shape[0], b_f.shape[0]
    for b in range(batch):
        A_h_b_0 = A_h[b, 0:n_hidden]
        A_x_t_0 = A_x[t, b, 0:n_hidden]
        S_h_t = S_h[t, b]
        C_tmp1_t = C_tmp1[t, b]
        C_tmp0_t = C_tmp0[t, b]
        for j in range(n_hidden):
            h_prev = S_h_t[j]
            # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
            f = _sigmoid_s(A_h_b_0[j] + A_x_t_0[j] + b_f[j])
            A_x_t_0[j] = f
            C_tmp1_t[j] = f * h_prev
            C_tmp0_t[j] = one - f


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step_1(t, W_h_v, A_x, b_h, C_tmp0, S_h, C_h_tilde):
    """Forward step t, loop 2 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = W_h_v.shape[0], W_h_v.shape[1]
    for b in range(batch):
        W_h_v_b = W_h_v[b]
        A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
        C_tmp0_t = C_tmp0[t, b]
        S_h_t = S_h[t, b]
        A_x_t_0 = A_x[t, b, 0:n_hidden]
        C_h_tilde_t = C_h_tilde[t, b]
        S_h_t1 = S_h[t + 1, b]
        for j in range(n_hidden):
            tmp0 = C_tmp0_t[j]
            h_prev = S_h_t[j]
            f = A_x_t_0[j]
            # \tilde{h}_t = \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h)
            h_tilde = _tanh_s(W_h_v_b[j] + A_x_t_1[j] + b_h[j])
            C_h_tilde_t[j] = h_tilde
            # h_t = (1 - f_t) \odot h_{t-1} + f_t \odot \tilde{h}_t
            S_h_t1[j] = tmp0 * h_prev + f * h_tilde


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _forward_seq(lo, hi, xs, W_stack_x, A_x, S_h, W_stack_h, A_h, b_f, C_tmp1, C_tmp0, W_h, W_h_v, b_h, C_h_tilde, nil, one):
    """Forward over all steps for batch rows lo..hi-1 (one thread's chunk): per step and pair of
    rows the products (_nt2) and the fused loops of _forward_step."""
    steps, n_hidden = xs.shape[0], S_h.shape[2]
    for t in range(steps):
        for b0 in range(lo, hi, 2):
            b1 = min(b0 + 1, hi - 1)
            _nt2(xs[t, b0], xs[t, b1], W_stack_x, A_x[t, b0], A_x[t, b1], nil, b1 > b0, False)
            _nt2(S_h[t, b0], S_h[t, b1], W_stack_h, A_h[b0], A_h[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                A_h_b_0 = A_h[b, 0:n_hidden]
                A_x_t_0 = A_x[t, b, 0:n_hidden]
                S_h_t = S_h[t, b]
                C_tmp1_t = C_tmp1[t, b]
                C_tmp0_t = C_tmp0[t, b]
                for j in range(n_hidden):
                    h_prev = S_h_t[j]
                    # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
                    f = _sigmoid_s(A_h_b_0[j] + A_x_t_0[j] + b_f[j])
                    A_x_t_0[j] = f
                    C_tmp1_t[j] = f * h_prev
                    C_tmp0_t[j] = one - f
            _nt2(C_tmp1[t, b0], C_tmp1[t, b1], W_h, W_h_v[b0], W_h_v[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                W_h_v_b = W_h_v[b]
                A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
                C_tmp0_t = C_tmp0[t, b]
                S_h_t = S_h[t, b]
                A_x_t_0 = A_x[t, b, 0:n_hidden]
                C_h_tilde_t = C_h_tilde[t, b]
                S_h_t1 = S_h[t + 1, b]
                for j in range(n_hidden):
                    tmp0 = C_tmp0_t[j]
                    h_prev = S_h_t[j]
                    f = A_x_t_0[j]
                    # \tilde{h}_t = \tanh(W_h (f_t \odot h_{t-1}) + U_h x_t + b_h)
                    h_tilde = _tanh_s(W_h_v_b[j] + A_x_t_1[j] + b_h[j])
                    C_h_tilde_t[j] = h_tilde
                    # h_t = (1 - f_t) \odot h_{t-1} + f_t \odot \tilde{h}_t
                    S_h_t1[j] = tmp0 * h_prev + f * h_tilde


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step(t, dhs, d_h_next, dA_x, C_h_tilde, T_d_h, one):
    """Backward step t, loop 1 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = dhs.shape[1], dhs.shape[2]
    for b in range(batch):
        dhs_t = dhs[t, b]
        d_h_next_b = d_h_next[b]
        dA_x_t_0 = dA_x[t, b, 0:n_hidden]
        C_h_tilde_t = C_h_tilde[t, b]
        T_d_h_b = T_d_h[b]
        dA_x_t_1 = dA_x[t, b, n_hidden:2 * n_hidden]
        for j in range(n_hidden):
            f = dA_x_t_0[j]
            h_tilde = C_h_tilde_t[j]
            # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
            d_h = dhs_t[j] + d_h_next_b[j]
            T_d_h_b[j] = d_h
            # \bar{\tilde{h}}_t = d(f_t) \bar{h}_t
            d_h_tilde = f * d_h
            # \bar{\hat{\tilde{h}}}_t = d(\tilde{h}'_t) \bar{\tilde{h}}_t
            dA_x_t_1[j] = (one - h_tilde * h_tilde) * d_h_tilde


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step_1(t, W_h_v_1, S_h, T_d_h, C_h_tilde, dA_x, C_tmp0, R_h, one):
    """Backward step t, loop 2 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = W_h_v_1.shape[0], W_h_v_1.shape[1]
    for b in range(batch):
        W_h_v_1_b = W_h_v_1[b]
        S_h_t = S_h[t, b]
        T_d_h_b = T_d_h[b]
        C_h_tilde_t = C_h_tilde[t, b]
        dA_x_t_0 = dA_x[t, b, 0:n_hidden]
        C_tmp0_t = C_tmp0[t, b]
        R_h_b = R_h[b]
        for j in range(n_hidden):
            h_prev = S_h_t[j]
            d_h = T_d_h_b[j]
            h_tilde = C_h_tilde_t[j]
            f = dA_x_t_0[j]
            tmp0 = C_tmp0_t[j]
            # \bar{f}_t = d(h_{t-1}) W_h^\top \bar{\hat{\tilde{h}}}_t - d(h_{t-1}) \bar{h}_t + d(\tilde{h}_t) \bar{h}_t
            d_f = h_prev * W_h_v_1_b[j] - h_prev * d_h + h_tilde * d_h
            # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
            dA_x_t_0[j] = f * (one - f) * d_f
            # \delta h_{t-1} = W_f^\top \bar{\hat{f}}_t + d(f_t) W_h^\top \bar{\hat{\tilde{h}}}_t + d(1 - f_t) \bar{h}_t
            R_h_b[j] = f * W_h_v_1_b[j] + tmp0 * d_h


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _backward_seq(lo, hi, dhs, d_h_next, dA_x, C_h_tilde, T_d_h, WT_W_h, W_h_v_1, S_h, C_tmp0, R_h, WT_W_stack_h, xs, G_W_stack_x_0, G_W_stack_h_0, colsum_dA_x, C_tmp1, g_W_h, nil, one):
    """BPTT over all steps for batch rows lo..hi-1 (one thread's chunk): per step and pair of rows
    the fused loops of _backward_step, the products between them and the carried adjoints
    (_nt2); per step this chunk's share of the weight and bias gradients (_rank_update, _colsum,
    into the chunk's own partial sums)."""
    steps, n_hidden = dhs.shape[0], dhs.shape[2]
    for t in range(steps - 1, -1, -1):
        for b0 in range(lo, hi, 2):
            b1 = min(b0 + 1, hi - 1)
            for b in range(b0, b1 + 1):
                dhs_t = dhs[t, b]
                d_h_next_b = d_h_next[b]
                dA_x_t_0 = dA_x[t, b, 0:n_hidden]
                C_h_tilde_t = C_h_tilde[t, b]
                T_d_h_b = T_d_h[b]
                dA_x_t_1 = dA_x[t, b, n_hidden:2 * n_hidden]
                for j in range(n_hidden):
                    f = dA_x_t_0[j]
                    h_tilde = C_h_tilde_t[j]
                    # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
                    d_h = dhs_t[j] + d_h_next_b[j]
                    T_d_h_b[j] = d_h
                    # \bar{\tilde{h}}_t = d(f_t) \bar{h}_t
                    d_h_tilde = f * d_h
                    # \bar{\hat{\tilde{h}}}_t = d(\tilde{h}'_t) \bar{\tilde{h}}_t
                    dA_x_t_1[j] = (one - h_tilde * h_tilde) * d_h_tilde
            _nt2(dA_x[t, b0, n_hidden:2 * n_hidden], dA_x[t, b1, n_hidden:2 * n_hidden], WT_W_h, W_h_v_1[b0], W_h_v_1[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                W_h_v_1_b = W_h_v_1[b]
                S_h_t = S_h[t, b]
                T_d_h_b = T_d_h[b]
                C_h_tilde_t = C_h_tilde[t, b]
                dA_x_t_0 = dA_x[t, b, 0:n_hidden]
                C_tmp0_t = C_tmp0[t, b]
                R_h_b = R_h[b]
                for j in range(n_hidden):
                    h_prev = S_h_t[j]
                    d_h = T_d_h_b[j]
                    h_tilde = C_h_tilde_t[j]
                    f = dA_x_t_0[j]
                    tmp0 = C_tmp0_t[j]
                    # \bar{f}_t = d(h_{t-1}) W_h^\top \bar{\hat{\tilde{h}}}_t - d(h_{t-1}) \bar{h}_t + d(\tilde{h}_t) \bar{h}_t
                    d_f = h_prev * W_h_v_1_b[j] - h_prev * d_h + h_tilde * d_h
                    # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
                    dA_x_t_0[j] = f * (one - f) * d_f
                    # \delta h_{t-1} = W_f^\top \bar{\hat{f}}_t + d(f_t) W_h^\top \bar{\hat{\tilde{h}}}_t + d(1 - f_t) \bar{h}_t
                    R_h_b[j] = f * W_h_v_1_b[j] + tmp0 * d_h
            # carried adjoints delta v_(t-1): the stacked products, then the rest
            # \delta h_{t-1} = W_f^\top \bar{\hat{f}}_t + d(f_t) W_h^\top \bar{\hat{\tilde{h}}}_t + d(1 - f_t) \bar{h}_t
            _nt2(dA_x[t, b0, 0:n_hidden], dA_x[t, b1, 0:n_hidden], WT_W_stack_h, d_h_next[b0], d_h_next[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                d_h_next[b] += R_h[b]
        # weight gradients: sum_t (bar a_t) v_t^T, this step's rows
        _rank_update(dA_x[t], 0, xs[t], lo, hi, G_W_stack_x_0)
        _rank_update(dA_x[t], 0, S_h[t], lo, hi, G_W_stack_h_0)
        _colsum(dA_x[t], lo, hi, colsum_dA_x)
        _rank_update(dA_x[t], n_hidden, C_tmp1[t], lo, hi, g_W_h)


def forward(params, xs, state0=None, *, lengths=None, mask=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward.
    A variable-length batch (lengths= or mask=, see mgu.forward) runs the NumPy
    kernel's path (the fused loops take whole sequences); backward() follows its cache."""
    if lengths is not None or mask is not None:
        return _numpy_forward(params, xs, state0, lengths=lengths, mask=mask)
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch, n_in = xs.shape
    state = _check_state(state0, batch, n_hidden, dtype)
    P = _unpack(params)
    S_h = np.empty((steps + 1, batch, n_hidden), dtype)
    S_h[0] = state["h"]
    C_h_tilde = np.empty((steps, batch, n_hidden), dtype)
    C_tmp1 = np.empty((steps, batch, n_hidden), dtype)
    C_tmp0 = np.empty((steps, batch, n_hidden), dtype)
    b_f = np.ascontiguousarray(P["b_f"])
    b_h = np.ascontiguousarray(P["b_h"])
    W_h_v = np.empty((batch, n_hidden), dtype)
    one = dtype.type(1.0)  # in the arrays' dtype
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        W_stack_x = np.ascontiguousarray(P["stack:x"])
        A_x = np.empty((steps, batch, P["stack:x"].shape[0]), dtype)
        A_h = np.empty((batch, P["stack:h"].shape[0]), dtype)
        W_stack_h = np.ascontiguousarray(P["stack:h"])
        W_h = np.ascontiguousarray(P["W_h"])
        nil = dtype.type(0.0)
        args = (xs, W_stack_x, A_x, S_h, W_stack_h, A_h, b_f, C_tmp1, C_tmp0, W_h, W_h_v, b_h, C_h_tilde, nil, one,)
        rt.run_chunks(_forward_seq, rt.row_chunks(batch, rt.num_threads()), lambda chunk: args)
    else:
        # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (the biases are
        # added in the fused loops, which read A_x anyway: no extra pass)
        A_x = (xs.reshape(steps * batch, n_in) @ P["stack:x"].T).reshape(steps, batch, -1)
        A_h = np.empty((batch, P["stack:h"].shape[0]), dtype)
        W_stack_h = P["stack:h"]
        W_h = P["W_h"]
        W_stack_h_T = np.ascontiguousarray(W_stack_h.T)
        W_h_T = np.ascontiguousarray(W_h.T)
        for t in range(steps):
            # A_{h} = [W_f] h_{t-1}
            np.matmul(S_h[t], W_stack_h_T, out=A_h)
            _forward_step(t, A_h, A_x, b_f, S_h, C_tmp1, C_tmp0, one)
            np.matmul(C_tmp1[t], W_h_T, out=W_h_v)
            _forward_step_1(t, W_h_v, A_x, b_h, C_tmp0, S_h, C_h_tilde)
    cache = {"xs": xs, "backend": "numba",
             "state": {s: S[-1] for s, S in zip(STATE, (S_h, ))}}
    cache["S_h"] = S_h
    cache["C_f"] = A_x[:, :, 0:n_hidden]  # kept in A_x's columns
    cache["C_h_tilde"] = C_h_tilde
    cache["C_tmp1"] = C_tmp1
    cache["C_tmp0"] = C_tmp0
    cache["A_x"] = A_x
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden) and, for a cell with a readout,
    dys = {name: dL/dy_t}; see mgu.backward (one cache serves one backward unless
    keep_cache=True)."""
    n_hidden, n_in, dtype = _sizes(params)
    if not isinstance(cache, dict) or "xs" not in cache:
        raise ValueError("cache must be the dict returned by forward()")
    if cache.get("backend") == "numpy" and cache.get("mask") is not None:  # variable lengths
        return _numpy_backward(params, cache, dhs, dstate=dstate, input_grad=input_grad, dys=dys)
    if cache.get("backend") != "numba":
        raise ValueError(f"this cache was made by the {cache.get('backend')} backend's "
                         f"forward(); pass it to that module's backward()")
    if cache.get("consumed"):
        raise ValueError("this cache was used by an earlier backward(), which reuses its memory; "
                         "run forward() again, or pass keep_cache=True to backward()")
    xs = cache["xs"]
    steps, batch = xs.shape[:2]
    if (n_in is not None and xs.shape[2] != n_in) or xs.dtype != dtype:
        raise ValueError(f"cache was made with xs of shape {xs.shape} and dtype {xs.dtype}; "
                         f"params expect n_in={n_in} and dtype {dtype}")
    n_in = xs.shape[2]
    dhs = np.ascontiguousarray(_check_array("dhs", dhs, (steps, batch, n_hidden), dtype))
    carry = _check_state(dstate, batch, n_hidden, dtype, "dstate")
    if dys is not None:
        raise ValueError("dys is the readout's gradient, and this cell has no readout")
    P = _unpack(params)
    S_h = cache["S_h"]
    C_h_tilde = cache["C_h_tilde"]
    C_tmp1 = cache["C_tmp1"]
    C_tmp0 = cache["C_tmp0"]
    d_h_next = carry["h"].copy()  # ours: written in place
    # the gates kept in A_x's columns become their adjoints; a copy when the cache is kept
    dA_x = cache["A_x"].copy() if keep_cache else cache["A_x"]
    R_h = np.empty((batch, n_hidden), dtype)
    W_h_v_1 = np.empty((batch, n_hidden), dtype)
    T_d_h = np.empty((batch, n_hidden), dtype)
    one = dtype.type(1.0)  # in the arrays' dtype
    W_stack_h = P["stack:h"]
    W_stack_x = P["stack:x"]
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        chunks = rt.row_chunks(batch, rt.num_threads())
        # each chunk sums its own share of every gradient; the shares are added at the end
        G_W_stack_x_0_part = np.zeros((len(chunks), 2 * n_hidden, n_in), dtype)
        G_W_stack_h_0_part = np.zeros((len(chunks), n_hidden, n_hidden), dtype)
        colsum_dA_x_part = np.zeros((len(chunks), dA_x.shape[2]), dtype)
        g_W_h_part = np.zeros((len(chunks),) + params["W_h"].shape, dtype)
        W_h = np.ascontiguousarray(P["W_h"])
        WT_W_h = np.ascontiguousarray(W_h.T)
        WT_W_stack_h = np.ascontiguousarray(W_stack_h[0:n_hidden].T)
        nil = dtype.type(0.0)
        rt.run_chunks(_backward_seq, chunks, lambda chunk: (dhs, d_h_next, dA_x, C_h_tilde, T_d_h, WT_W_h, W_h_v_1, S_h, C_tmp0, R_h, WT_W_stack_h, xs, G_W_stack_x_0_part[chunk], G_W_stack_h_0_part[chunk], colsum_dA_x_part[chunk], C_tmp1, g_W_h_part[chunk], nil, one,))
        G_W_stack_x_0 = G_W_stack_x_0_part.sum(axis=0)
        G_W_stack_h_0 = G_W_stack_h_0_part.sum(axis=0)
        colsum_dA_x = colsum_dA_x_part.sum(axis=0)
        g_W_h = g_W_h_part.sum(axis=0)
    else:
        g_W_h = np.zeros(params["W_h"].shape, dtype)
        W_h = P["W_h"]
        for t in range(steps - 1, -1, -1):
            _backward_step(t, dhs, d_h_next, dA_x, C_h_tilde, T_d_h, one)
            np.matmul(dA_x[t, :, n_hidden:2 * n_hidden], W_h, out=W_h_v_1)
            _backward_step_1(t, W_h_v_1, S_h, T_d_h, C_h_tilde, dA_x, C_tmp0, R_h, one)
            # \delta h_{t-1} = W_f^\top \bar{\hat{f}}_t + d(f_t) W_h^\top \bar{\hat{\tilde{h}}}_t + d(1 - f_t) \bar{h}_t
            d_h_next = dA_x[t, :, 0:n_hidden] @ W_stack_h[0:n_hidden]
            d_h_next += R_h
            g_W_h += dA_x[t, :, n_hidden:2 * n_hidden].T @ C_tmp1[t]
        # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
        G_W_stack_x_0 = dA_x[:, :, 0:2 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
        G_W_stack_h_0 = dA_x[:, :, 0:n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
        colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    cache["consumed"] = not keep_cache
    grads = {}
    grads["U_f"] = G_W_stack_x_0[0:n_hidden]
    grads["U_h"] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads["W_f"] = G_W_stack_h_0[0:n_hidden]
    grads["b_f"] = colsum_dA_x[0:n_hidden]
    grads["W_h"] = g_W_h
    grads["b_h"] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads[STATE0_GRAD["h"]] = d_h_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:2 * n_hidden] @ W_stack_x[0:2 * n_hidden]
    return grads


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
