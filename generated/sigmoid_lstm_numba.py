# generated from numba/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: sigmoid_lstm, numba backend.
"""LSTM with a sigmoid candidate and h_t = o_t * sigmoid(s_t), W on h_t-1 and U on x_t (the notation of Goodfellow, Bengio and Courville 2016, sec. 10.10): forward and BPTT as fused numba loops (optional backend).

Same API as its NumPy sibling ``sigmoid_lstm`` (which this module uses for init_params, rtrl_step,
state_jacobian and the input checks): the elementwise part of every time step runs as
one compiled loop over (batch, unit) instead of one NumPy call per operation. Where the stacked
matrices are small (SEQUENCE_MAX_BYTES), forward and backward each run as one compiled call per
thread over all time steps for a chunk of the batch (threads: $DERIVE_NUM_THREADS, default the
usable CPUs), with their own matrix products; above it, the matrix products are NumPy's BLAS
calls, per step. ``rtrl`` runs its steps the same way: per step one compiled
loop for the state Jacobian's blocks and V's coefficients, one BLAS product per state with a
dense block, one compiled loop for the diagonal blocks and V. Needs numba (``pip install "derive-rnn[numba]"``); the first call of each dtype
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
from .sigmoid_lstm import (  # noqa: F401  (re-exported: same API)
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
    rtrl_step,
    state_jacobian,
)
from .sigmoid_lstm import backward as _numpy_backward  # variable lengths: the NumPy path
from .sigmoid_lstm import forward as _numpy_forward
from .sigmoid_lstm import rtrl as _numpy_rtrl


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
    # W_stack_x = [U; U_i; U_f; U_o]
    P["stack:x"] = np.concatenate([params["U"], params["U_i"], params["U_f"], params["U_o"]], axis=0)
    # W_stack_h = [W; W_i; W_f; W_o]
    P["stack:h"] = np.concatenate([params["W"], params["W_i"], params["W_f"], params["W_o"]], axis=0)
    return P


def _sequence(P):
    """True where forward() and backward() run the whole-sequence kernels (see above)."""
    return sum(P[k].nbytes for k in ("stack:x", "stack:h", )) <= SEQUENCE_MAX_BYTES


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step(t, A_h, A_x, b_o, b_i, b_f, b_, S_s, C_sigmoid_s, S_h):
    """Forward step t, loop 1 of 1, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = A_h.shape[0], b_o.shape[0]
    for b in range(batch):
        A_h_b_0 = A_h[b, 3 * n_hidden:4 * n_hidden]
        A_x_t_0 = A_x[t, b, 3 * n_hidden:4 * n_hidden]
        A_h_b_1 = A_h[b, n_hidden:2 * n_hidden]
        A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
        A_h_b_2 = A_h[b, 2 * n_hidden:3 * n_hidden]
        A_x_t_2 = A_x[t, b, 2 * n_hidden:3 * n_hidden]
        A_h_b_3 = A_h[b, 0:n_hidden]
        A_x_t_3 = A_x[t, b, 0:n_hidden]
        S_s_t = S_s[t, b]
        S_s_t1 = S_s[t + 1, b]
        C_sigmoid_s_t = C_sigmoid_s[t, b]
        S_h_t1 = S_h[t + 1, b]
        for j in range(n_hidden):
            s_prev = S_s_t[j]
            # o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o)
            o = _sigmoid_s(A_h_b_0[j] + A_x_t_0[j] + b_o[j])
            A_x_t_0[j] = o
            # i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i)
            i = _sigmoid_s(A_h_b_1[j] + A_x_t_1[j] + b_i[j])
            A_x_t_1[j] = i
            # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
            f = _sigmoid_s(A_h_b_2[j] + A_x_t_2[j] + b_f[j])
            A_x_t_2[j] = f
            # \tilde{s}_t = \sigma(W h_{t-1} + U x_t + b)
            s_tilde = _sigmoid_s(A_h_b_3[j] + A_x_t_3[j] + b_[j])
            A_x_t_3[j] = s_tilde
            # s_t = f_t \odot s_{t-1} + i_t \odot \tilde{s}_t
            s = f * s_prev + i * s_tilde
            S_s_t1[j] = s
            sigmoid_s = _sigmoid_s(s)
            C_sigmoid_s_t[j] = sigmoid_s
            # h_t = o_t \odot \sigma(s_t)
            S_h_t1[j] = o * sigmoid_s


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _forward_seq(lo, hi, xs, W_cat, S_h, A_x, b_o, b_i, b_f, b_, S_s, C_sigmoid_s, nil):
    """Forward over all steps for batch rows lo..hi-1 (one thread's chunk): per step and pair of
    rows the products (_nt2) and the fused loops of _forward_step."""
    steps, n_in, n_hidden = xs.shape[0], xs.shape[2], S_h.shape[2]
    U = np.empty((2, W_cat.shape[1]), xs.dtype)  # rows [x_t; h_(t-1)] of a pair
    for t in range(steps):
        for b0 in range(lo, hi, 2):
            b1 = min(b0 + 1, hi - 1)
            for q in range(2):
                U[q, :n_in] = xs[t, b0 + q * (b1 - b0)]
                U[q, n_in + 0 * n_hidden:n_in + 1 * n_hidden] = S_h[t, b0 + q * (b1 - b0)]
            # A_x[t, b] = [W_stack_x W_stack_h] U: the input and recurrent products at once
            _nt2(U[0], U[1], W_cat, A_x[t, b0], A_x[t, b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                A_x_t_0 = A_x[t, b, 3 * n_hidden:4 * n_hidden]
                A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
                A_x_t_2 = A_x[t, b, 2 * n_hidden:3 * n_hidden]
                A_x_t_3 = A_x[t, b, 0:n_hidden]
                S_s_t = S_s[t, b]
                S_s_t1 = S_s[t + 1, b]
                C_sigmoid_s_t = C_sigmoid_s[t, b]
                S_h_t1 = S_h[t + 1, b]
                for j in range(n_hidden):
                    s_prev = S_s_t[j]
                    # o_t = \sigma(W_o h_{t-1} + U_o x_t + b_o)
                    o = _sigmoid_s(A_x_t_0[j] + b_o[j])
                    A_x_t_0[j] = o
                    # i_t = \sigma(W_i h_{t-1} + U_i x_t + b_i)
                    i = _sigmoid_s(A_x_t_1[j] + b_i[j])
                    A_x_t_1[j] = i
                    # f_t = \sigma(W_f h_{t-1} + U_f x_t + b_f)
                    f = _sigmoid_s(A_x_t_2[j] + b_f[j])
                    A_x_t_2[j] = f
                    # \tilde{s}_t = \sigma(W h_{t-1} + U x_t + b)
                    s_tilde = _sigmoid_s(A_x_t_3[j] + b_[j])
                    A_x_t_3[j] = s_tilde
                    # s_t = f_t \odot s_{t-1} + i_t \odot \tilde{s}_t
                    s = f * s_prev + i * s_tilde
                    S_s_t1[j] = s
                    sigmoid_s = _sigmoid_s(s)
                    C_sigmoid_s_t[j] = sigmoid_s
                    # h_t = o_t \odot \sigma(s_t)
                    S_h_t1[j] = o * sigmoid_s


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step(t, dhs, d_h_next, d_s_next, dA_x, C_sigmoid_s, S_s, R_s, one):
    """Backward step t, loop 1 of 1, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = dhs.shape[1], dhs.shape[2]
    for b in range(batch):
        dhs_t = dhs[t, b]
        d_h_next_b = d_h_next[b]
        d_s_next_b = d_s_next[b]
        dA_x_t_0 = dA_x[t, b, 3 * n_hidden:4 * n_hidden]
        C_sigmoid_s_t = C_sigmoid_s[t, b]
        dA_x_t_1 = dA_x[t, b, n_hidden:2 * n_hidden]
        dA_x_t_2 = dA_x[t, b, 0:n_hidden]
        S_s_t = S_s[t, b]
        dA_x_t_3 = dA_x[t, b, 2 * n_hidden:3 * n_hidden]
        R_s_b = R_s[b]
        for j in range(n_hidden):
            o = dA_x_t_0[j]
            sigmoid_s = C_sigmoid_s_t[j]
            i = dA_x_t_1[j]
            s_tilde = dA_x_t_2[j]
            s_prev = S_s_t[j]
            f = dA_x_t_3[j]
            # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
            d_h = dhs_t[j] + d_h_next_b[j]
            # \bar{s}_t = \delta s_t + d(o_t) d(\sigma'(s_t)) \bar{h}_t
            d_s = d_s_next_b[j] + o * (sigmoid_s * (one - sigmoid_s) * d_h)
            # \bar{\tilde{s}}_t = d(i_t) \bar{s}_t
            d_s_tilde = i * d_s
            # \bar{\hat{\tilde{s}}}_t = d(\tilde{s}'_t) \bar{\tilde{s}}_t
            dA_x_t_2[j] = s_tilde * (one - s_tilde) * d_s_tilde
            # \bar{f}_t = d(s_{t-1}) \bar{s}_t
            d_f = s_prev * d_s
            # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
            dA_x_t_3[j] = f * (one - f) * d_f
            # \bar{i}_t = d(\tilde{s}_t) \bar{s}_t
            d_i = s_tilde * d_s
            # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
            dA_x_t_1[j] = i * (one - i) * d_i
            # \bar{o}_t = d(\sigma(s_t)) \bar{h}_t
            d_o = sigmoid_s * d_h
            # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
            dA_x_t_0[j] = o * (one - o) * d_o
            # \delta s_{t-1} = d(f_t) \bar{s}_t
            R_s_b[j] = f * d_s


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _backward_seq(lo, hi, dhs, d_h_next, d_s_next, dA_x, C_sigmoid_s, S_s, R_s, WT_W_stack_h, xs, G_W_stack_x_0, S_h, G_W_stack_h_0, colsum_dA_x, nil, one):
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
                d_s_next_b = d_s_next[b]
                dA_x_t_0 = dA_x[t, b, 3 * n_hidden:4 * n_hidden]
                C_sigmoid_s_t = C_sigmoid_s[t, b]
                dA_x_t_1 = dA_x[t, b, n_hidden:2 * n_hidden]
                dA_x_t_2 = dA_x[t, b, 0:n_hidden]
                S_s_t = S_s[t, b]
                dA_x_t_3 = dA_x[t, b, 2 * n_hidden:3 * n_hidden]
                R_s_b = R_s[b]
                for j in range(n_hidden):
                    o = dA_x_t_0[j]
                    sigmoid_s = C_sigmoid_s_t[j]
                    i = dA_x_t_1[j]
                    s_tilde = dA_x_t_2[j]
                    s_prev = S_s_t[j]
                    f = dA_x_t_3[j]
                    # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
                    d_h = dhs_t[j] + d_h_next_b[j]
                    # \bar{s}_t = \delta s_t + d(o_t) d(\sigma'(s_t)) \bar{h}_t
                    d_s = d_s_next_b[j] + o * (sigmoid_s * (one - sigmoid_s) * d_h)
                    # \bar{\tilde{s}}_t = d(i_t) \bar{s}_t
                    d_s_tilde = i * d_s
                    # \bar{\hat{\tilde{s}}}_t = d(\tilde{s}'_t) \bar{\tilde{s}}_t
                    dA_x_t_2[j] = s_tilde * (one - s_tilde) * d_s_tilde
                    # \bar{f}_t = d(s_{t-1}) \bar{s}_t
                    d_f = s_prev * d_s
                    # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
                    dA_x_t_3[j] = f * (one - f) * d_f
                    # \bar{i}_t = d(\tilde{s}_t) \bar{s}_t
                    d_i = s_tilde * d_s
                    # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
                    dA_x_t_1[j] = i * (one - i) * d_i
                    # \bar{o}_t = d(\sigma(s_t)) \bar{h}_t
                    d_o = sigmoid_s * d_h
                    # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
                    dA_x_t_0[j] = o * (one - o) * d_o
                    # \delta s_{t-1} = d(f_t) \bar{s}_t
                    R_s_b[j] = f * d_s
            # carried adjoints delta v_(t-1): the stacked products, then the rest
            # \delta h_{t-1} = W_o^\top \bar{\hat{o}}_t + W_i^\top \bar{\hat{i}}_t + W_f^\top \bar{\hat{f}}_t + W^\top \bar{\hat{\tilde{s}}}_t
            _nt2(dA_x[t, b0, 0:4 * n_hidden], dA_x[t, b1, 0:4 * n_hidden], WT_W_stack_h, d_h_next[b0], d_h_next[b1], nil, b1 > b0, False)
            # \delta s_{t-1} = d(f_t) \bar{s}_t
            for b in range(b0, b1 + 1):
                d_s_next[b] = R_s[b]
        # weight gradients: sum_t (bar a_t) v_t^T, this step's rows
        _rank_update(dA_x[t], 0, xs[t], lo, hi, G_W_stack_x_0)
        _rank_update(dA_x[t], 0, S_h[t], lo, hi, G_W_stack_h_0)
        _colsum(dA_x[t], lo, hi, colsum_dA_x)


@njit(cache=True)
def _rtrl_coef(t, C_sigmoid_s, C_o, S_s, C_f, C_s_tilde, C_i, W_o, W_f, W_i, W, J_h, D_h_s, D_s_s, U0, U1, U2, U3, U4, U5, U6, one):
    """RTRL step t, first pass over (batch, unit): row j of the state Jacobian's dense column
    blocks (diagonal blocks of the same column folded in), the other diagonal blocks, and V_t's
    coefficients."""
    batch, n_hidden = C_sigmoid_s.shape[1], C_sigmoid_s.shape[2]
    for b in range(batch):
        C_sigmoid_s_t = C_sigmoid_s[t, b]
        C_o_t = C_o[t, b]
        S_s_t = S_s[t, b]
        C_f_t = C_f[t, b]
        C_s_tilde_t = C_s_tilde[t, b]
        C_i_t = C_i[t, b]
        for j in range(n_hidden):
            sigmoid_s = C_sigmoid_s_t[j]
            o = C_o_t[j]
            s_prev = S_s_t[j]
            f = C_f_t[j]
            s_tilde = C_s_tilde_t[j]
            i = C_i_t[j]
            k0 = sigmoid_s * (o * (one - o))
            k1 = o * (sigmoid_s * (one - sigmoid_s)) * s_prev * (f * (one - f))
            k2 = o * (sigmoid_s * (one - sigmoid_s)) * s_tilde * (i * (one - i))
            k3 = o * (sigmoid_s * (one - sigmoid_s)) * i * (s_tilde * (one - s_tilde))
            k4 = s_prev * (f * (one - f))
            k5 = s_tilde * (i * (one - i))
            k6 = i * (s_tilde * (one - s_tilde))
            k7 = o * (sigmoid_s * (one - sigmoid_s)) * f
            k8 = f
            # d h_t / d h_(t-1), row j: the dense part
            for m in range(n_hidden):
                J_h[b, 0 * n_hidden + j, m] = k0 * W_o[j, m] + k1 * W_f[j, m] + k2 * W_i[j, m] + k3 * W[j, m]
            # d s_t / d h_(t-1), row j: the dense part
            for m in range(n_hidden):
                J_h[b, 1 * n_hidden + j, m] = k4 * W_f[j, m] + k5 * W_i[j, m] + k6 * W[j, m]
            D_h_s[b, j] = k7
            D_s_s[b, j] = k8
            U0[b, j] = k3
            U1[b, j] = k2
            U2[b, j] = k1
            U3[b, j] = k0
            U4[b, j] = k6
            U5[b, j] = k5
            U6[b, j] = k4


@njit(cache=True)
def _rtrl_post(t, out, S, OFF, S_h, xs, D_h_s, D_s_s, U0, U1, U2, U3, U4, U5, U6):
    """RTRL step t, after out = J S (BLAS): out += the diagonal blocks times S and V_t, whose
    entries lie at out[b, u_j, OFF[A] + j k + l] (A d_2(z)) or out[b, u_j, OFF[A] + j] (a vector
    parameter A)."""
    batch, n_hidden = out.shape[0], out.shape[1] // 2
    width = out.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            # out_u += d(D_us) S_s: the diagonal blocks, one pass over S_s
            d0 = D_h_s[b, j]
            d1 = D_s_s[b, j]
            s = S[b, 1 * n_hidden + j]
            r0 = out[b, 0 * n_hidden + j]
            r1 = out[b, 1 * n_hidden + j]
            for p in range(width):
                r0[p] += d0 * s[p]
                r1[p] += d1 * s[p]
            # V_t on its diagonal structure
            # V_h^b
            out[b, 0 * n_hidden + j, OFF[8] + j] += U0[b, j]
            # V_h^b_i
            out[b, 0 * n_hidden + j, OFF[9] + j] += U1[b, j]
            # V_h^b_f
            out[b, 0 * n_hidden + j, OFF[10] + j] += U2[b, j]
            # V_h^b_o
            out[b, 0 * n_hidden + j, OFF[11] + j] += U3[b, j]
            # V_s^b
            out[b, 1 * n_hidden + j, OFF[8] + j] += U4[b, j]
            # V_s^b_i
            out[b, 1 * n_hidden + j, OFF[9] + j] += U5[b, j]
            # V_s^b_f
            out[b, 1 * n_hidden + j, OFF[10] + j] += U6[b, j]
            # V_u^A = ... d_2(h_prev) for V_h^W, V_h^W_i, V_h^W_f, V_h^W_o, V_s^W, V_s^W_i, V_s^W_f
            u0 = U0[b, j]
            u1 = U1[b, j]
            u2 = U2[b, j]
            u3 = U3[b, j]
            u4 = U4[b, j]
            u5 = U5[b, j]
            u6 = U6[b, j]
            o0 = OFF[0] + j * S_h.shape[-1]
            o1 = OFF[1] + j * S_h.shape[-1]
            o2 = OFF[2] + j * S_h.shape[-1]
            o3 = OFF[3] + j * S_h.shape[-1]
            o4 = OFF[0] + j * S_h.shape[-1]
            o5 = OFF[1] + j * S_h.shape[-1]
            o6 = OFF[2] + j * S_h.shape[-1]
            for l in range(S_h.shape[-1]):
                zl = S_h[t, b, l]
                out[b, 0 * n_hidden + j, o0 + l] += u0 * zl
                out[b, 0 * n_hidden + j, o1 + l] += u1 * zl
                out[b, 0 * n_hidden + j, o2 + l] += u2 * zl
                out[b, 0 * n_hidden + j, o3 + l] += u3 * zl
                out[b, 1 * n_hidden + j, o4 + l] += u4 * zl
                out[b, 1 * n_hidden + j, o5 + l] += u5 * zl
                out[b, 1 * n_hidden + j, o6 + l] += u6 * zl
            # V_u^A = ... d_2(x_t) for V_h^U, V_h^U_i, V_h^U_f, V_h^U_o, V_s^U, V_s^U_i, V_s^U_f
            u0_1 = U0[b, j]
            u1_1 = U1[b, j]
            u2_1 = U2[b, j]
            u3_1 = U3[b, j]
            u4_1 = U4[b, j]
            u5_1 = U5[b, j]
            u6_1 = U6[b, j]
            o0_1 = OFF[4] + j * xs.shape[-1]
            o1_1 = OFF[5] + j * xs.shape[-1]
            o2_1 = OFF[6] + j * xs.shape[-1]
            o3_1 = OFF[7] + j * xs.shape[-1]
            o4_1 = OFF[4] + j * xs.shape[-1]
            o5_1 = OFF[5] + j * xs.shape[-1]
            o6_1 = OFF[6] + j * xs.shape[-1]
            for l in range(xs.shape[-1]):
                zl = xs[t, b, l]
                out[b, 0 * n_hidden + j, o0_1 + l] += u0_1 * zl
                out[b, 0 * n_hidden + j, o1_1 + l] += u1_1 * zl
                out[b, 0 * n_hidden + j, o2_1 + l] += u2_1 * zl
                out[b, 0 * n_hidden + j, o3_1 + l] += u3_1 * zl
                out[b, 1 * n_hidden + j, o4_1 + l] += u4_1 * zl
                out[b, 1 * n_hidden + j, o5_1 + l] += u5_1 * zl
                out[b, 1 * n_hidden + j, o6_1 + l] += u6_1 * zl


def forward(params, xs, state0=None, *, lengths=None, mask=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward.
    A variable-length batch (lengths= or mask=, see sigmoid_lstm.forward) runs the NumPy
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
    S_s = np.empty((steps + 1, batch, n_hidden), dtype)
    S_s[0] = state["s"]
    C_sigmoid_s = np.empty((steps, batch, n_hidden), dtype)
    b_ = np.ascontiguousarray(P["b"])
    b_i = np.ascontiguousarray(P["b_i"])
    b_f = np.ascontiguousarray(P["b_f"])
    b_o = np.ascontiguousarray(P["b_o"])
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        W_cat = np.concatenate((P["stack:x"], P["stack:h"]), axis=1)
        A_x = np.empty((steps, batch, P["stack:x"].shape[0]), dtype)
        nil = dtype.type(0.0)
        args = (xs, W_cat, S_h, A_x, b_o, b_i, b_f, b_, S_s, C_sigmoid_s, nil,)
        rt.run_chunks(_forward_seq, rt.row_chunks(batch, rt.num_threads()), lambda chunk: args)
    else:
        # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (the biases are
        # added in the fused loops, which read A_x anyway: no extra pass)
        A_x = (xs.reshape(steps * batch, n_in) @ P["stack:x"].T).reshape(steps, batch, -1)
        A_h = np.empty((batch, P["stack:h"].shape[0]), dtype)
        W_stack_h = P["stack:h"]
        W_stack_h_T = np.ascontiguousarray(W_stack_h.T)
        for t in range(steps):
            # A_{h} = [W; W_i; W_f; W_o] h_{t-1}
            np.matmul(S_h[t], W_stack_h_T, out=A_h)
            _forward_step(t, A_h, A_x, b_o, b_i, b_f, b_, S_s, C_sigmoid_s, S_h)
    cache = {"xs": xs, "backend": "numba",
             "state": {s: S[-1] for s, S in zip(STATE, (S_h, S_s, ))}}
    cache["S_h"] = S_h
    cache["S_s"] = S_s
    cache["C_o"] = A_x[:, :, 3 * n_hidden:4 * n_hidden]  # kept in A_x's columns
    cache["C_i"] = A_x[:, :, n_hidden:2 * n_hidden]  # kept in A_x's columns
    cache["C_f"] = A_x[:, :, 2 * n_hidden:3 * n_hidden]  # kept in A_x's columns
    cache["C_s_tilde"] = A_x[:, :, 0:n_hidden]  # kept in A_x's columns
    cache["C_sigmoid_s"] = C_sigmoid_s
    cache["A_x"] = A_x
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden) and, for a cell with a readout,
    dys = {name: dL/dy_t}; see sigmoid_lstm.backward (one cache serves one backward unless
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
    S_s = cache["S_s"]
    C_sigmoid_s = cache["C_sigmoid_s"]
    d_h_next = carry["h"].copy()  # ours: written in place
    d_s_next = carry["s"].copy()  # ours: written in place
    # the gates kept in A_x's columns become their adjoints; a copy when the cache is kept
    dA_x = cache["A_x"].copy() if keep_cache else cache["A_x"]
    R_s = np.empty((batch, n_hidden), dtype)
    one = dtype.type(1.0)  # in the arrays' dtype
    W_stack_h = P["stack:h"]
    W_stack_x = P["stack:x"]
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        chunks = rt.row_chunks(batch, rt.num_threads())
        # each chunk sums its own share of every gradient; the shares are added at the end
        G_W_stack_x_0_part = np.zeros((len(chunks), 4 * n_hidden, n_in), dtype)
        G_W_stack_h_0_part = np.zeros((len(chunks), 4 * n_hidden, n_hidden), dtype)
        colsum_dA_x_part = np.zeros((len(chunks), dA_x.shape[2]), dtype)
        WT_W_stack_h = np.ascontiguousarray(W_stack_h[0:4 * n_hidden].T)
        nil = dtype.type(0.0)
        rt.run_chunks(_backward_seq, chunks, lambda chunk: (dhs, d_h_next, d_s_next, dA_x, C_sigmoid_s, S_s, R_s, WT_W_stack_h, xs, G_W_stack_x_0_part[chunk], S_h, G_W_stack_h_0_part[chunk], colsum_dA_x_part[chunk], nil, one,))
        G_W_stack_x_0 = G_W_stack_x_0_part.sum(axis=0)
        G_W_stack_h_0 = G_W_stack_h_0_part.sum(axis=0)
        colsum_dA_x = colsum_dA_x_part.sum(axis=0)
    else:
        for t in range(steps - 1, -1, -1):
            _backward_step(t, dhs, d_h_next, d_s_next, dA_x, C_sigmoid_s, S_s, R_s, one)
            # \delta h_{t-1} = W_o^\top \bar{\hat{o}}_t + W_i^\top \bar{\hat{i}}_t + W_f^\top \bar{\hat{f}}_t + W^\top \bar{\hat{\tilde{s}}}_t
            d_h_next = dA_x[t, :, 0:4 * n_hidden] @ W_stack_h[0:4 * n_hidden]
            # \delta s_{t-1} = d(f_t) \bar{s}_t
            d_s_next, R_s = R_s, d_s_next  # no copy
        # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
        G_W_stack_x_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
        G_W_stack_h_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
        colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    cache["consumed"] = not keep_cache
    grads = {}
    grads["U"] = G_W_stack_x_0[0:n_hidden]
    grads["U_i"] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads["U_f"] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    grads["U_o"] = G_W_stack_x_0[3 * n_hidden:4 * n_hidden]
    grads["W"] = G_W_stack_h_0[0:n_hidden]
    grads["W_i"] = G_W_stack_h_0[n_hidden:2 * n_hidden]
    grads["W_f"] = G_W_stack_h_0[2 * n_hidden:3 * n_hidden]
    grads["W_o"] = G_W_stack_h_0[3 * n_hidden:4 * n_hidden]
    grads["b"] = colsum_dA_x[0:n_hidden]
    grads["b_i"] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads["b_f"] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads["b_o"] = colsum_dA_x[3 * n_hidden:4 * n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads[STATE0_GRAD["h"]] = d_h_next
    grads[STATE0_GRAD["s"]] = d_s_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:4 * n_hidden] @ W_stack_x[0:4 * n_hidden]
    return grads


def rtrl(params, xs, state0=None, *, lengths=None, mask=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape), by the RTRL
    recursion S_t = J_t S_(t-1) + V_t over the stacked sensitivities of all parameters (the same
    layout and result as sigmoid_lstm.rtrl): the forward pass first (all steps' values),
    then per step two compiled passes and one BLAS product per dense Jacobian column. With
    lengths= or mask=, the NumPy kernel's rtrl."""
    if lengths is not None or mask is not None:
        return _numpy_rtrl(params, xs, state0, lengths=lengths, mask=mask)
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch, n_in = xs.shape
    _, cache = forward(params, xs, state0)
    S_h = cache["S_h"]
    S_s = cache["S_s"]
    C_o = cache["C_o"]
    C_i = cache["C_i"]
    C_f = cache["C_f"]
    C_s_tilde = cache["C_s_tilde"]
    C_sigmoid_s = cache["C_sigmoid_s"]
    P = _unpack(params)
    W_o = np.ascontiguousarray(P["W_o"])
    W_f = np.ascontiguousarray(P["W_f"])
    W_i = np.ascontiguousarray(P["W_i"])
    W = np.ascontiguousarray(P["W"])
    one = dtype.type(1.0)  # in the arrays' dtype
    off, _, _, width = rt.sens_layout(PARAMS, n_hidden, n_in)
    OFF = np.array([off[p][0] for p in PARAMS], np.int64)
    rows = len(STATE) * n_hidden
    # S_0 = 0; one block for both buffers, freed whole (see rt.sens_buffers)
    whole = list(np.zeros((2, batch, rows, width), dtype))
    J_h = np.zeros((batch, rows, n_hidden), dtype)  # d(all states)/d h_(t-1)
    D_h_s = np.empty((batch, n_hidden), dtype)
    D_s_s = np.empty((batch, n_hidden), dtype)
    U0 = np.empty((batch, n_hidden), dtype)
    U1 = np.empty((batch, n_hidden), dtype)
    U2 = np.empty((batch, n_hidden), dtype)
    U3 = np.empty((batch, n_hidden), dtype)
    U4 = np.empty((batch, n_hidden), dtype)
    U5 = np.empty((batch, n_hidden), dtype)
    U6 = np.empty((batch, n_hidden), dtype)
    for t in range(steps):
        S, out = whole[t % 2], whole[1 - t % 2]
        _rtrl_coef(t, C_sigmoid_s, C_o, S_s, C_f, C_s_tilde, C_i, W_o, W_f, W_i, W, J_h, D_h_s, D_s_s, U0, U1, U2, U3, U4, U5, U6, one)
        np.matmul(J_h, S[:, 0 * n_hidden:1 * n_hidden], out=out)
        _rtrl_post(t, out, S, OFF, S_h, xs, D_h_s, D_s_s, U0, U1, U2, U3, U4, U5, U6)
    # a compact copy of the output state's rows: the result keeps neither buffer alive
    return rt.split_sens(PARAMS, params, whole[steps % 2][:, :n_hidden].copy(), off, batch,
                         n_hidden)


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
