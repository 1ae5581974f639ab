# generated from numba/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: gru_cho, numba backend.
"""GRU of Cho et al. 2014 ("Learning phrase representations using RNN encoder-decoder for statistical machine translation", EMNLP 2014, arXiv:1406.1078, eqs 5-8): reset before the recurrent product, no biases: forward and BPTT as fused numba loops (optional backend).

Same API as its NumPy sibling ``gru_cho`` (which this module uses for init_params, rtrl_step,
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
from .gru_cho import (  # noqa: F401  (re-exported: same API)
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
from .gru_cho import backward as _numpy_backward  # variable lengths: the NumPy path
from .gru_cho import forward as _numpy_forward


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
    # W_stack_x = [W_r; W_z; W]
    P["stack:x"] = np.concatenate([params["W_r"], params["W_z"], params["W"]], axis=0)
    # W_stack_h = [U_r; U_z]
    P["stack:h"] = np.concatenate([params["U_r"], params["U_z"]], axis=0)
    return P


def _sequence(P):
    """True where forward() and backward() run the whole-sequence kernels (see above)."""
    return sum(P[k].nbytes for k in ("stack:x", "stack:h", "U", )) <= SEQUENCE_MAX_BYTES


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step(t, A_x, A_h, S_h, C_z, C_tmp1, C_tmp0, one):
    """Forward step t, loop 1 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = A_x.shape[1], S_h.shape[2]
    for b in range(batch):
        A_x_t_0 = A_x[t, b, 0:n_hidden]
        A_h_b_0 = A_h[b, 0:n_hidden]
        A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
        A_h_b_1 = A_h[b, n_hidden:2 * n_hidden]
        S_h_t = S_h[t, b]
        C_z_t = C_z[t, b]
        C_tmp1_t = C_tmp1[t, b]
        C_tmp0_t = C_tmp0[t, b]
        for j in range(n_hidden):
            h_prev = S_h_t[j]
            # r_t = \sigma(W_r x_t + U_r h_{t-1})
            r = _sigmoid_s(A_x_t_0[j] + A_h_b_0[j])
            A_x_t_0[j] = r
            # z_t = \sigma(W_z x_t + U_z h_{t-1})
            z = _sigmoid_s(A_x_t_1[j] + A_h_b_1[j])
            C_z_t[j] = z
            C_tmp1_t[j] = r * h_prev
            C_tmp0_t[j] = one - z


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step_1(t, A_x, U__v, C_z, S_h, C_tmp0):
    """Forward step t, loop 2 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = A_x.shape[1], U__v.shape[1]
    for b in range(batch):
        A_x_t_2 = A_x[t, b, 2 * n_hidden:3 * n_hidden]
        U__v_b = U__v[b]
        C_z_t = C_z[t, b]
        S_h_t = S_h[t, b]
        C_tmp0_t = C_tmp0[t, b]
        S_h_t1 = S_h[t + 1, b]
        for j in range(n_hidden):
            z = C_z_t[j]
            h_prev = S_h_t[j]
            tmp0 = C_tmp0_t[j]
            # \tilde{h}_t = \tanh(W x_t + U (r_t \odot h_{t-1}))
            h_tilde = _tanh_s(A_x_t_2[j] + U__v_b[j])
            A_x_t_2[j] = h_tilde
            # h_t = z_t \odot h_{t-1} + (1 - z_t) \odot \tilde{h}_t
            S_h_t1[j] = z * h_prev + tmp0 * h_tilde


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _forward_seq(lo, hi, xs, W_stack_x, A_x, S_h, W_stack_h, A_h, C_z, C_tmp1, C_tmp0, U_, U__v, nil, one):
    """Forward over all steps for batch rows lo..hi-1 (one thread's chunk): per step and pair of
    rows the products (_nt2) and the fused loops of _forward_step."""
    steps, n_hidden = xs.shape[0], S_h.shape[2]
    for t in range(steps):
        for b0 in range(lo, hi, 2):
            b1 = min(b0 + 1, hi - 1)
            _nt2(xs[t, b0], xs[t, b1], W_stack_x, A_x[t, b0], A_x[t, b1], nil, b1 > b0, False)
            _nt2(S_h[t, b0], S_h[t, b1], W_stack_h, A_h[b0], A_h[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                A_x_t_0 = A_x[t, b, 0:n_hidden]
                A_h_b_0 = A_h[b, 0:n_hidden]
                A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
                A_h_b_1 = A_h[b, n_hidden:2 * n_hidden]
                S_h_t = S_h[t, b]
                C_z_t = C_z[t, b]
                C_tmp1_t = C_tmp1[t, b]
                C_tmp0_t = C_tmp0[t, b]
                for j in range(n_hidden):
                    h_prev = S_h_t[j]
                    # r_t = \sigma(W_r x_t + U_r h_{t-1})
                    r = _sigmoid_s(A_x_t_0[j] + A_h_b_0[j])
                    A_x_t_0[j] = r
                    # z_t = \sigma(W_z x_t + U_z h_{t-1})
                    z = _sigmoid_s(A_x_t_1[j] + A_h_b_1[j])
                    C_z_t[j] = z
                    C_tmp1_t[j] = r * h_prev
                    C_tmp0_t[j] = one - z
            _nt2(C_tmp1[t, b0], C_tmp1[t, b1], U_, U__v[b0], U__v[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                A_x_t_2 = A_x[t, b, 2 * n_hidden:3 * n_hidden]
                U__v_b = U__v[b]
                C_z_t = C_z[t, b]
                S_h_t = S_h[t, b]
                C_tmp0_t = C_tmp0[t, b]
                S_h_t1 = S_h[t + 1, b]
                for j in range(n_hidden):
                    z = C_z_t[j]
                    h_prev = S_h_t[j]
                    tmp0 = C_tmp0_t[j]
                    # \tilde{h}_t = \tanh(W x_t + U (r_t \odot h_{t-1}))
                    h_tilde = _tanh_s(A_x_t_2[j] + U__v_b[j])
                    A_x_t_2[j] = h_tilde
                    # h_t = z_t \odot h_{t-1} + (1 - z_t) \odot \tilde{h}_t
                    S_h_t1[j] = z * h_prev + tmp0 * h_tilde


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step(t, dhs, d_h_next, C_tmp0, dA_x, S_h, C_z, T_d_h, one):
    """Backward step t, loop 1 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = dhs.shape[1], dhs.shape[2]
    for b in range(batch):
        dhs_t = dhs[t, b]
        d_h_next_b = d_h_next[b]
        C_tmp0_t = C_tmp0[t, b]
        dA_x_t_0 = dA_x[t, b, 2 * n_hidden:3 * n_hidden]
        S_h_t = S_h[t, b]
        C_z_t = C_z[t, b]
        T_d_h_b = T_d_h[b]
        dA_x_t_1 = dA_x[t, b, n_hidden:2 * n_hidden]
        for j in range(n_hidden):
            tmp0 = C_tmp0_t[j]
            h_tilde = dA_x_t_0[j]
            h_prev = S_h_t[j]
            z = C_z_t[j]
            # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
            d_h = dhs_t[j] + d_h_next_b[j]
            T_d_h_b[j] = d_h
            # \bar{\tilde{h}}_t = d(1 - z_t) \bar{h}_t
            d_h_tilde = tmp0 * d_h
            # \bar{\hat{\tilde{h}}}_t = d(\tilde{h}'_t) \bar{\tilde{h}}_t
            dA_x_t_0[j] = (one - h_tilde * h_tilde) * d_h_tilde
            # \bar{z}_t = d(h_{t-1}) \bar{h}_t - d(\tilde{h}_t) \bar{h}_t
            d_z = h_prev * d_h - h_tilde * d_h
            # \bar{\hat{z}}_t = d(z'_t) \bar{z}_t
            dA_x_t_1[j] = z * (one - z) * d_z


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step_1(t, U__v_1, S_h, dA_x, C_z, T_d_h, R_h, one):
    """Backward step t, loop 2 of 2, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = U__v_1.shape[0], U__v_1.shape[1]
    for b in range(batch):
        U__v_1_b = U__v_1[b]
        S_h_t = S_h[t, b]
        dA_x_t_2 = dA_x[t, b, 0:n_hidden]
        C_z_t = C_z[t, b]
        T_d_h_b = T_d_h[b]
        R_h_b = R_h[b]
        for j in range(n_hidden):
            h_prev = S_h_t[j]
            r = dA_x_t_2[j]
            z = C_z_t[j]
            d_h = T_d_h_b[j]
            # \bar{r}_t = d(h_{t-1}) U^\top \bar{\hat{\tilde{h}}}_t
            d_r = h_prev * U__v_1_b[j]
            # \bar{\hat{r}}_t = d(r'_t) \bar{r}_t
            dA_x_t_2[j] = r * (one - r) * d_r
            # \delta h_{t-1} = U_r^\top \bar{\hat{r}}_t + U_z^\top \bar{\hat{z}}_t + d(r_t) U^\top \bar{\hat{\tilde{h}}}_t + d(z_t) \bar{h}_t
            R_h_b[j] = r * U__v_1_b[j] + z * d_h


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _backward_seq(lo, hi, dhs, d_h_next, C_tmp0, dA_x, S_h, C_z, T_d_h, WT_U_, U__v_1, R_h, WT_W_stack_h, xs, G_W_stack_x_0, G_W_stack_h_0, C_tmp1, g_U_, nil, one):
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
                C_tmp0_t = C_tmp0[t, b]
                dA_x_t_0 = dA_x[t, b, 2 * n_hidden:3 * n_hidden]
                S_h_t = S_h[t, b]
                C_z_t = C_z[t, b]
                T_d_h_b = T_d_h[b]
                dA_x_t_1 = dA_x[t, b, n_hidden:2 * n_hidden]
                for j in range(n_hidden):
                    tmp0 = C_tmp0_t[j]
                    h_tilde = dA_x_t_0[j]
                    h_prev = S_h_t[j]
                    z = C_z_t[j]
                    # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
                    d_h = dhs_t[j] + d_h_next_b[j]
                    T_d_h_b[j] = d_h
                    # \bar{\tilde{h}}_t = d(1 - z_t) \bar{h}_t
                    d_h_tilde = tmp0 * d_h
                    # \bar{\hat{\tilde{h}}}_t = d(\tilde{h}'_t) \bar{\tilde{h}}_t
                    dA_x_t_0[j] = (one - h_tilde * h_tilde) * d_h_tilde
                    # \bar{z}_t = d(h_{t-1}) \bar{h}_t - d(\tilde{h}_t) \bar{h}_t
                    d_z = h_prev * d_h - h_tilde * d_h
                    # \bar{\hat{z}}_t = d(z'_t) \bar{z}_t
                    dA_x_t_1[j] = z * (one - z) * d_z
            _nt2(dA_x[t, b0, 2 * n_hidden:3 * n_hidden], dA_x[t, b1, 2 * n_hidden:3 * n_hidden], WT_U_, U__v_1[b0], U__v_1[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                U__v_1_b = U__v_1[b]
                S_h_t = S_h[t, b]
                dA_x_t_2 = dA_x[t, b, 0:n_hidden]
                C_z_t = C_z[t, b]
                T_d_h_b = T_d_h[b]
                R_h_b = R_h[b]
                for j in range(n_hidden):
                    h_prev = S_h_t[j]
                    r = dA_x_t_2[j]
                    z = C_z_t[j]
                    d_h = T_d_h_b[j]
                    # \bar{r}_t = d(h_{t-1}) U^\top \bar{\hat{\tilde{h}}}_t
                    d_r = h_prev * U__v_1_b[j]
                    # \bar{\hat{r}}_t = d(r'_t) \bar{r}_t
                    dA_x_t_2[j] = r * (one - r) * d_r
                    # \delta h_{t-1} = U_r^\top \bar{\hat{r}}_t + U_z^\top \bar{\hat{z}}_t + d(r_t) U^\top \bar{\hat{\tilde{h}}}_t + d(z_t) \bar{h}_t
                    R_h_b[j] = r * U__v_1_b[j] + z * d_h
            # carried adjoints delta v_(t-1): the stacked products, then the rest
            # \delta h_{t-1} = U_r^\top \bar{\hat{r}}_t + U_z^\top \bar{\hat{z}}_t + d(r_t) U^\top \bar{\hat{\tilde{h}}}_t + d(z_t) \bar{h}_t
            _nt2(dA_x[t, b0, 0:2 * n_hidden], dA_x[t, b1, 0:2 * n_hidden], WT_W_stack_h, d_h_next[b0], d_h_next[b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                d_h_next[b] += R_h[b]
        # weight gradients: sum_t (bar a_t) v_t^T, this step's rows
        _rank_update(dA_x[t], 0, xs[t], lo, hi, G_W_stack_x_0)
        _rank_update(dA_x[t], 0, S_h[t], lo, hi, G_W_stack_h_0)
        _rank_update(dA_x[t], 2 * n_hidden, C_tmp1[t], lo, hi, g_U_)


def forward(params, xs, state0=None, *, lengths=None, mask=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward.
    A variable-length batch (lengths= or mask=, see gru_cho.forward) runs the NumPy
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
    C_z = np.empty((steps, batch, n_hidden), dtype)
    C_tmp1 = np.empty((steps, batch, n_hidden), dtype)
    C_tmp0 = np.empty((steps, batch, n_hidden), dtype)
    U__v = np.empty((batch, n_hidden), dtype)
    one = dtype.type(1.0)  # in the arrays' dtype
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        W_stack_x = np.ascontiguousarray(P["stack:x"])
        A_x = np.empty((steps, batch, P["stack:x"].shape[0]), dtype)
        A_h = np.empty((batch, P["stack:h"].shape[0]), dtype)
        W_stack_h = np.ascontiguousarray(P["stack:h"])
        U_ = np.ascontiguousarray(P["U"])
        nil = dtype.type(0.0)
        args = (xs, W_stack_x, A_x, S_h, W_stack_h, A_h, C_z, C_tmp1, C_tmp0, U_, U__v, nil, one,)
        rt.run_chunks(_forward_seq, rt.row_chunks(batch, rt.num_threads()), lambda chunk: args)
    else:
        # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (the biases are
        # added in the fused loops, which read A_x anyway: no extra pass)
        A_x = (xs.reshape(steps * batch, n_in) @ P["stack:x"].T).reshape(steps, batch, -1)
        A_h = np.empty((batch, P["stack:h"].shape[0]), dtype)
        W_stack_h = P["stack:h"]
        U_ = P["U"]
        W_stack_h_T = np.ascontiguousarray(W_stack_h.T)
        U__T = np.ascontiguousarray(U_.T)
        for t in range(steps):
            # A_{h} = [U_r; U_z] h_{t-1}
            np.matmul(S_h[t], W_stack_h_T, out=A_h)
            _forward_step(t, A_x, A_h, S_h, C_z, C_tmp1, C_tmp0, one)
            np.matmul(C_tmp1[t], U__T, out=U__v)
            _forward_step_1(t, A_x, U__v, C_z, S_h, C_tmp0)
    cache = {"xs": xs, "backend": "numba",
             "state": {s: S[-1] for s, S in zip(STATE, (S_h, ))}}
    cache["S_h"] = S_h
    cache["C_r"] = A_x[:, :, 0:n_hidden]  # kept in A_x's columns
    cache["C_z"] = C_z
    cache["C_h_tilde"] = A_x[:, :, 2 * n_hidden:3 * n_hidden]  # kept in A_x's columns
    cache["C_tmp1"] = C_tmp1
    cache["C_tmp0"] = C_tmp0
    cache["A_x"] = A_x
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden) and, for a cell with a readout,
    dys = {name: dL/dy_t}; see gru_cho.backward (one cache serves one backward unless
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
    C_z = cache["C_z"]
    C_tmp1 = cache["C_tmp1"]
    C_tmp0 = cache["C_tmp0"]
    d_h_next = carry["h"].copy()  # ours: written in place
    # the gates kept in A_x's columns become their adjoints; a copy when the cache is kept
    dA_x = cache["A_x"].copy() if keep_cache else cache["A_x"]
    R_h = np.empty((batch, n_hidden), dtype)
    U__v_1 = np.empty((batch, n_hidden), dtype)
    T_d_h = np.empty((batch, n_hidden), dtype)
    one = dtype.type(1.0)  # in the arrays' dtype
    W_stack_h = P["stack:h"]
    W_stack_x = P["stack:x"]
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        chunks = rt.row_chunks(batch, rt.num_threads())
        # each chunk sums its own share of every gradient; the shares are added at the end
        G_W_stack_x_0_part = np.zeros((len(chunks), 3 * n_hidden, n_in), dtype)
        G_W_stack_h_0_part = np.zeros((len(chunks), 2 * n_hidden, n_hidden), dtype)
        g_U__part = np.zeros((len(chunks),) + params["U"].shape, dtype)
        U_ = np.ascontiguousarray(P["U"])
        WT_U_ = np.ascontiguousarray(U_.T)
        WT_W_stack_h = np.ascontiguousarray(W_stack_h[0:2 * n_hidden].T)
        nil = dtype.type(0.0)
        rt.run_chunks(_backward_seq, chunks, lambda chunk: (dhs, d_h_next, C_tmp0, dA_x, S_h, C_z, T_d_h, WT_U_, U__v_1, R_h, WT_W_stack_h, xs, G_W_stack_x_0_part[chunk], G_W_stack_h_0_part[chunk], C_tmp1, g_U__part[chunk], nil, one,))
        G_W_stack_x_0 = G_W_stack_x_0_part.sum(axis=0)
        G_W_stack_h_0 = G_W_stack_h_0_part.sum(axis=0)
        g_U_ = g_U__part.sum(axis=0)
    else:
        g_U_ = np.zeros(params["U"].shape, dtype)
        U_ = P["U"]
        for t in range(steps - 1, -1, -1):
            _backward_step(t, dhs, d_h_next, C_tmp0, dA_x, S_h, C_z, T_d_h, one)
            np.matmul(dA_x[t, :, 2 * n_hidden:3 * n_hidden], U_, out=U__v_1)
            _backward_step_1(t, U__v_1, S_h, dA_x, C_z, T_d_h, R_h, one)
            # \delta h_{t-1} = U_r^\top \bar{\hat{r}}_t + U_z^\top \bar{\hat{z}}_t + d(r_t) U^\top \bar{\hat{\tilde{h}}}_t + d(z_t) \bar{h}_t
            d_h_next = dA_x[t, :, 0:2 * n_hidden] @ W_stack_h[0:2 * n_hidden]
            d_h_next += R_h
            g_U_ += dA_x[t, :, 2 * n_hidden:3 * n_hidden].T @ C_tmp1[t]
        # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
        G_W_stack_x_0 = dA_x[:, :, 0:3 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
        G_W_stack_h_0 = dA_x[:, :, 0:2 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
    cache["consumed"] = not keep_cache
    grads = {}
    grads["W_r"] = G_W_stack_x_0[0:n_hidden]
    grads["W_z"] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads["W"] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    grads["U_r"] = G_W_stack_h_0[0:n_hidden]
    grads["U_z"] = G_W_stack_h_0[n_hidden:2 * n_hidden]
    grads["U"] = g_U_
    grads = {name: grads[name] for name in PARAMS}
    grads[STATE0_GRAD["h"]] = d_h_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:3 * n_hidden] @ W_stack_x[0:3 * n_hidden]
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
