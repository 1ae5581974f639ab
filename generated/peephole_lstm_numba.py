# generated from numba/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: peephole_lstm, numba backend.
"""LSTM with peepholes (Gers & Schmidhuber): i, f see c_{t-1}, o sees c_t: forward and BPTT as fused numba loops (optional backend).

Same API as its NumPy sibling ``peephole_lstm`` (which this module uses for init_params, rtrl_step,
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
from .peephole_lstm import (  # noqa: F401  (re-exported: same API)
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
from .peephole_lstm import backward as _numpy_backward  # variable lengths: the NumPy path
from .peephole_lstm import forward as _numpy_forward
from .peephole_lstm import rtrl as _numpy_rtrl


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
    # W_stack_x = [W_xi; W_xf; W_xg; W_xo]
    P["stack:x"] = np.concatenate([params["W_xi"], params["W_xf"], params["W_xg"], params["W_xo"]], axis=0)
    # W_stack_h = [W_hi; W_hf; W_hg; W_ho]
    P["stack:h"] = np.concatenate([params["W_hi"], params["W_hf"], params["W_hg"], params["W_ho"]], axis=0)
    return P


def _sequence(P):
    """True where forward() and backward() run the whole-sequence kernels (see above)."""
    return sum(P[k].nbytes for k in ("stack:x", "stack:h", )) <= SEQUENCE_MAX_BYTES


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step(t, A_x, A_h, p_i, b_i, p_f, b_f, b_g, p_o, b_o, S_c, C_tanh_c, S_h):
    """Forward step t, loop 1 of 1, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = A_x.shape[1], p_i.shape[0]
    for b in range(batch):
        A_x_t_0 = A_x[t, b, 0:n_hidden]
        A_h_b_0 = A_h[b, 0:n_hidden]
        A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
        A_h_b_1 = A_h[b, n_hidden:2 * n_hidden]
        A_x_t_2 = A_x[t, b, 2 * n_hidden:3 * n_hidden]
        A_h_b_2 = A_h[b, 2 * n_hidden:3 * n_hidden]
        A_x_t_3 = A_x[t, b, 3 * n_hidden:4 * n_hidden]
        A_h_b_3 = A_h[b, 3 * n_hidden:4 * n_hidden]
        S_c_t = S_c[t, b]
        S_c_t1 = S_c[t + 1, b]
        C_tanh_c_t = C_tanh_c[t, b]
        S_h_t1 = S_h[t + 1, b]
        for j in range(n_hidden):
            c_prev = S_c_t[j]
            # i_t = \sigma(W_{xi} x_t + W_{hi} h_{t-1} + p_i \odot c_{t-1} + b_i)
            i = _sigmoid_s(A_x_t_0[j] + A_h_b_0[j] + p_i[j] * c_prev + b_i[j])
            A_x_t_0[j] = i
            # f_t = \sigma(W_{xf} x_t + W_{hf} h_{t-1} + p_f \odot c_{t-1} + b_f)
            f = _sigmoid_s(A_x_t_1[j] + A_h_b_1[j] + p_f[j] * c_prev + b_f[j])
            A_x_t_1[j] = f
            # g_t = \tanh(W_{xg} x_t + W_{hg} h_{t-1} + b_g)
            g = _tanh_s(A_x_t_2[j] + A_h_b_2[j] + b_g[j])
            A_x_t_2[j] = g
            # c_t = f_t \odot c_{t-1} + i_t \odot g_t
            c = f * c_prev + i * g
            S_c_t1[j] = c
            # o_t = \sigma(W_{xo} x_t + W_{ho} h_{t-1} + p_o \odot c_t + b_o)
            o = _sigmoid_s(A_x_t_3[j] + A_h_b_3[j] + p_o[j] * c + b_o[j])
            A_x_t_3[j] = o
            tanh_c = _tanh_s(c)
            C_tanh_c_t[j] = tanh_c
            # h_t = o_t \odot \tanh(c_t)
            S_h_t1[j] = o * tanh_c


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _forward_seq(lo, hi, xs, W_cat, S_h, A_x, p_i, b_i, p_f, b_f, b_g, p_o, b_o, S_c, C_tanh_c, nil):
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
                A_x_t_0 = A_x[t, b, 0:n_hidden]
                A_x_t_1 = A_x[t, b, n_hidden:2 * n_hidden]
                A_x_t_2 = A_x[t, b, 2 * n_hidden:3 * n_hidden]
                A_x_t_3 = A_x[t, b, 3 * n_hidden:4 * n_hidden]
                S_c_t = S_c[t, b]
                S_c_t1 = S_c[t + 1, b]
                C_tanh_c_t = C_tanh_c[t, b]
                S_h_t1 = S_h[t + 1, b]
                for j in range(n_hidden):
                    c_prev = S_c_t[j]
                    # i_t = \sigma(W_{xi} x_t + W_{hi} h_{t-1} + p_i \odot c_{t-1} + b_i)
                    i = _sigmoid_s(A_x_t_0[j] + p_i[j] * c_prev + b_i[j])
                    A_x_t_0[j] = i
                    # f_t = \sigma(W_{xf} x_t + W_{hf} h_{t-1} + p_f \odot c_{t-1} + b_f)
                    f = _sigmoid_s(A_x_t_1[j] + p_f[j] * c_prev + b_f[j])
                    A_x_t_1[j] = f
                    # g_t = \tanh(W_{xg} x_t + W_{hg} h_{t-1} + b_g)
                    g = _tanh_s(A_x_t_2[j] + b_g[j])
                    A_x_t_2[j] = g
                    # c_t = f_t \odot c_{t-1} + i_t \odot g_t
                    c = f * c_prev + i * g
                    S_c_t1[j] = c
                    # o_t = \sigma(W_{xo} x_t + W_{ho} h_{t-1} + p_o \odot c_t + b_o)
                    o = _sigmoid_s(A_x_t_3[j] + p_o[j] * c + b_o[j])
                    A_x_t_3[j] = o
                    tanh_c = _tanh_s(c)
                    C_tanh_c_t[j] = tanh_c
                    # h_t = o_t \odot \tanh(c_t)
                    S_h_t1[j] = o * tanh_c


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step(t, dhs, d_h_next, d_c_next, p_o, p_i, p_f, C_tanh_c, dA_x, S_c, g_p_i, g_p_f, g_p_o, R_c, one):
    """Backward step t, loop 1 of 1, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = dhs.shape[1], dhs.shape[2]
    for b in range(batch):
        dhs_t = dhs[t, b]
        d_h_next_b = d_h_next[b]
        d_c_next_b = d_c_next[b]
        C_tanh_c_t = C_tanh_c[t, b]
        dA_x_t_0 = dA_x[t, b, 3 * n_hidden:4 * n_hidden]
        dA_x_t_1 = dA_x[t, b, 0:n_hidden]
        dA_x_t_2 = dA_x[t, b, 2 * n_hidden:3 * n_hidden]
        S_c_t = S_c[t, b]
        dA_x_t_3 = dA_x[t, b, n_hidden:2 * n_hidden]
        S_c_t1 = S_c[t + 1, b]
        R_c_b = R_c[b]
        for j in range(n_hidden):
            tanh_c = C_tanh_c_t[j]
            o = dA_x_t_0[j]
            i = dA_x_t_1[j]
            g = dA_x_t_2[j]
            c_prev = S_c_t[j]
            f = dA_x_t_3[j]
            c = S_c_t1[j]
            # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
            d_h = dhs_t[j] + d_h_next_b[j]
            # \bar{o}_t = d(\tanh(c_t)) \bar{h}_t
            d_o = tanh_c * d_h
            # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
            d_o_hat = o * (one - o) * d_o
            dA_x_t_0[j] = d_o_hat
            # \bar{c}_t = \delta c_t + d(p_o) \bar{\hat{o}}_t + d(o_t) d(\tanh'(c_t)) \bar{h}_t
            d_c = d_c_next_b[j] + p_o[j] * d_o_hat + o * ((one - tanh_c * tanh_c) * d_h)
            # \bar{g}_t = d(i_t) \bar{c}_t
            d_g = i * d_c
            # \bar{\hat{g}}_t = d(g'_t) \bar{g}_t
            dA_x_t_2[j] = (one - g * g) * d_g
            # \bar{f}_t = d(c_{t-1}) \bar{c}_t
            d_f = c_prev * d_c
            # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
            d_f_hat = f * (one - f) * d_f
            dA_x_t_3[j] = d_f_hat
            # \bar{i}_t = d(g_t) \bar{c}_t
            d_i = g * d_c
            # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
            d_i_hat = i * (one - i) * d_i
            dA_x_t_1[j] = d_i_hat
            g_p_i[j] += c_prev * d_i_hat
            g_p_f[j] += c_prev * d_f_hat
            g_p_o[j] += c * d_o_hat
            # \delta c_{t-1} = d(p_i) \bar{\hat{i}}_t + d(p_f) \bar{\hat{f}}_t + d(f_t) \bar{c}_t
            R_c_b[j] = p_i[j] * d_i_hat + p_f[j] * d_f_hat + f * d_c


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _backward_seq(lo, hi, dhs, d_h_next, d_c_next, p_o, p_i, p_f, C_tanh_c, dA_x, S_c, g_p_i, g_p_f, g_p_o, R_c, WT_W_stack_h, xs, G_W_stack_x_0, S_h, G_W_stack_h_0, colsum_dA_x, nil, one):
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
                d_c_next_b = d_c_next[b]
                C_tanh_c_t = C_tanh_c[t, b]
                dA_x_t_0 = dA_x[t, b, 3 * n_hidden:4 * n_hidden]
                dA_x_t_1 = dA_x[t, b, 0:n_hidden]
                dA_x_t_2 = dA_x[t, b, 2 * n_hidden:3 * n_hidden]
                S_c_t = S_c[t, b]
                dA_x_t_3 = dA_x[t, b, n_hidden:2 * n_hidden]
                S_c_t1 = S_c[t + 1, b]
                R_c_b = R_c[b]
                for j in range(n_hidden):
                    tanh_c = C_tanh_c_t[j]
                    o = dA_x_t_0[j]
                    i = dA_x_t_1[j]
                    g = dA_x_t_2[j]
                    c_prev = S_c_t[j]
                    f = dA_x_t_3[j]
                    c = S_c_t1[j]
                    # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
                    d_h = dhs_t[j] + d_h_next_b[j]
                    # \bar{o}_t = d(\tanh(c_t)) \bar{h}_t
                    d_o = tanh_c * d_h
                    # \bar{\hat{o}}_t = d(o'_t) \bar{o}_t
                    d_o_hat = o * (one - o) * d_o
                    dA_x_t_0[j] = d_o_hat
                    # \bar{c}_t = \delta c_t + d(p_o) \bar{\hat{o}}_t + d(o_t) d(\tanh'(c_t)) \bar{h}_t
                    d_c = d_c_next_b[j] + p_o[j] * d_o_hat + o * ((one - tanh_c * tanh_c) * d_h)
                    # \bar{g}_t = d(i_t) \bar{c}_t
                    d_g = i * d_c
                    # \bar{\hat{g}}_t = d(g'_t) \bar{g}_t
                    dA_x_t_2[j] = (one - g * g) * d_g
                    # \bar{f}_t = d(c_{t-1}) \bar{c}_t
                    d_f = c_prev * d_c
                    # \bar{\hat{f}}_t = d(f'_t) \bar{f}_t
                    d_f_hat = f * (one - f) * d_f
                    dA_x_t_3[j] = d_f_hat
                    # \bar{i}_t = d(g_t) \bar{c}_t
                    d_i = g * d_c
                    # \bar{\hat{i}}_t = d(i'_t) \bar{i}_t
                    d_i_hat = i * (one - i) * d_i
                    dA_x_t_1[j] = d_i_hat
                    g_p_i[j] += c_prev * d_i_hat
                    g_p_f[j] += c_prev * d_f_hat
                    g_p_o[j] += c * d_o_hat
                    # \delta c_{t-1} = d(p_i) \bar{\hat{i}}_t + d(p_f) \bar{\hat{f}}_t + d(f_t) \bar{c}_t
                    R_c_b[j] = p_i[j] * d_i_hat + p_f[j] * d_f_hat + f * d_c
            # carried adjoints delta v_(t-1): the stacked products, then the rest
            # \delta h_{t-1} = W_{hi}^\top \bar{\hat{i}}_t + W_{hf}^\top \bar{\hat{f}}_t + W_{hg}^\top \bar{\hat{g}}_t + W_{ho}^\top \bar{\hat{o}}_t
            _nt2(dA_x[t, b0, 0:4 * n_hidden], dA_x[t, b1, 0:4 * n_hidden], WT_W_stack_h, d_h_next[b0], d_h_next[b1], nil, b1 > b0, False)
            # \delta c_{t-1} = d(p_i) \bar{\hat{i}}_t + d(p_f) \bar{\hat{f}}_t + d(f_t) \bar{c}_t
            for b in range(b0, b1 + 1):
                d_c_next[b] = R_c[b]
        # weight gradients: sum_t (bar a_t) v_t^T, this step's rows
        _rank_update(dA_x[t], 0, xs[t], lo, hi, G_W_stack_x_0)
        _rank_update(dA_x[t], 0, S_h[t], lo, hi, G_W_stack_h_0)
        _colsum(dA_x[t], lo, hi, colsum_dA_x)


@njit(cache=True)
def _rtrl_coef(t, p_o, p_f, p_i, C_tanh_c, C_o, S_c, C_f, C_g, C_i, W_ho, W_hf, W_hi, W_hg, J_h, D_h_c, D_c_c, U0, U1, U2, U3, U4, U5, U6, U7, U8, U9, U10, U11, one):
    """RTRL step t, first pass over (batch, unit): row j of the state Jacobian's dense column
    blocks (diagonal blocks of the same column folded in), the other diagonal blocks, and V_t's
    coefficients."""
    batch, n_hidden = C_tanh_c.shape[1], p_o.shape[0]
    for b in range(batch):
        C_tanh_c_t = C_tanh_c[t, b]
        C_o_t = C_o[t, b]
        S_c_t = S_c[t, b]
        C_f_t = C_f[t, b]
        C_g_t = C_g[t, b]
        C_i_t = C_i[t, b]
        S_c_t1 = S_c[t + 1, b]
        for j in range(n_hidden):
            tanh_c = C_tanh_c_t[j]
            o = C_o_t[j]
            c_prev = S_c_t[j]
            f = C_f_t[j]
            g = C_g_t[j]
            i = C_i_t[j]
            c = S_c_t1[j]
            k0 = tanh_c * (o * (one - o))
            k1 = tanh_c * (o * (one - o)) * p_o[j] * c_prev * (f * (one - f))
            k2 = tanh_c * (o * (one - o)) * p_o[j] * g * (i * (one - i))
            k3 = tanh_c * (o * (one - o)) * p_o[j] * i * (one - g * g)
            k4 = o * c_prev * (f * (one - f)) * (one - tanh_c * tanh_c)
            k5 = o * g * (i * (one - i)) * (one - tanh_c * tanh_c)
            k6 = o * i * (one - g * g) * (one - tanh_c * tanh_c)
            k7 = c_prev * (f * (one - f))
            k8 = g * (i * (one - i))
            k9 = i * (one - g * g)
            k10 = tanh_c * (o * (one - o)) * p_o[j] * c_prev * (f * (one - f)) * p_f[j] + tanh_c * (o * (one - o)) * p_o[j] * f + tanh_c * (o * (one - o)) * p_o[j] * g * (i * (one - i)) * p_i[j] + o * c_prev * (f * (one - f)) * p_f[j] * (one - tanh_c * tanh_c) + o * f * (one - tanh_c * tanh_c) + o * g * (i * (one - i)) * p_i[j] * (one - tanh_c * tanh_c)
            k11 = c_prev * (f * (one - f)) * p_f[j] + f + g * (i * (one - i)) * p_i[j]
            k12 = tanh_c * (o * (one - o)) * p_o[j] * g * (i * (one - i)) + o * g * (i * (one - i)) * (one - tanh_c * tanh_c)
            k13 = tanh_c * (o * (one - o)) * p_o[j] * c_prev * (f * (one - f)) + o * c_prev * (f * (one - f)) * (one - tanh_c * tanh_c)
            k14 = tanh_c * (o * (one - o)) * p_o[j] * i * (one - g * g) + o * i * (one - g * g) * (one - tanh_c * tanh_c)
            k15 = tanh_c * (o * (one - o)) * p_o[j] * c_prev * g * (i * (one - i)) + o * c_prev * g * (i * (one - i)) * (one - tanh_c * tanh_c)
            k16 = tanh_c * (o * (one - o)) * p_o[j] * c_prev * c_prev * (f * (one - f)) + o * c_prev * c_prev * (f * (one - f)) * (one - tanh_c * tanh_c)
            k17 = tanh_c * (o * (one - o)) * c
            k18 = c_prev * g * (i * (one - i))
            k19 = c_prev * c_prev * (f * (one - f))
            # d h_t / d h_(t-1), row j: the dense part
            for m in range(n_hidden):
                J_h[b, 0 * n_hidden + j, m] = k0 * W_ho[j, m] + k1 * W_hf[j, m] + k2 * W_hi[j, m] + k3 * W_hg[j, m] + k4 * W_hf[j, m] + k5 * W_hi[j, m] + k6 * W_hg[j, m]
            # d c_t / d h_(t-1), row j: the dense part
            for m in range(n_hidden):
                J_h[b, 1 * n_hidden + j, m] = k7 * W_hf[j, m] + k8 * W_hi[j, m] + k9 * W_hg[j, m]
            D_h_c[b, j] = k10
            D_c_c[b, j] = k11
            U0[b, j] = k12
            U1[b, j] = k13
            U2[b, j] = k14
            U3[b, j] = k0
            U4[b, j] = k15
            U5[b, j] = k16
            U6[b, j] = k17
            U7[b, j] = k8
            U8[b, j] = k7
            U9[b, j] = k9
            U10[b, j] = k18
            U11[b, j] = k19


@njit(cache=True)
def _rtrl_post(t, out, S, OFF, xs, S_h, D_h_c, D_c_c, U0, U1, U2, U3, U4, U5, U6, U7, U8, U9, U10, U11):
    """RTRL step t, after out = J S (BLAS): out += the diagonal blocks times S and V_t, whose
    entries lie at out[b, u_j, OFF[A] + j k + l] (A d_2(z)) or out[b, u_j, OFF[A] + j] (a vector
    parameter A)."""
    batch, n_hidden = out.shape[0], out.shape[1] // 2
    width = out.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            # out_u += d(D_uc) S_c: the diagonal blocks, one pass over S_c
            d0 = D_h_c[b, j]
            d1 = D_c_c[b, j]
            s = S[b, 1 * n_hidden + j]
            r0 = out[b, 0 * n_hidden + j]
            r1 = out[b, 1 * n_hidden + j]
            for p in range(width):
                r0[p] += d0 * s[p]
                r1[p] += d1 * s[p]
            # V_t on its diagonal structure
            # V_h^b_i
            out[b, 0 * n_hidden + j, OFF[8] + j] += U0[b, j]
            # V_h^b_f
            out[b, 0 * n_hidden + j, OFF[9] + j] += U1[b, j]
            # V_h^b_g
            out[b, 0 * n_hidden + j, OFF[10] + j] += U2[b, j]
            # V_h^b_o
            out[b, 0 * n_hidden + j, OFF[11] + j] += U3[b, j]
            # V_h^p_i
            out[b, 0 * n_hidden + j, OFF[12] + j] += U4[b, j]
            # V_h^p_f
            out[b, 0 * n_hidden + j, OFF[13] + j] += U5[b, j]
            # V_h^p_o
            out[b, 0 * n_hidden + j, OFF[14] + j] += U6[b, j]
            # V_c^b_i
            out[b, 1 * n_hidden + j, OFF[8] + j] += U7[b, j]
            # V_c^b_f
            out[b, 1 * n_hidden + j, OFF[9] + j] += U8[b, j]
            # V_c^b_g
            out[b, 1 * n_hidden + j, OFF[10] + j] += U9[b, j]
            # V_c^p_i
            out[b, 1 * n_hidden + j, OFF[12] + j] += U10[b, j]
            # V_c^p_f
            out[b, 1 * n_hidden + j, OFF[13] + j] += U11[b, j]
            # V_u^A = ... d_2(x_t) for V_h^W_xi, V_h^W_xf, V_h^W_xg, V_h^W_xo, V_c^W_xi, V_c^W_xf, V_c^W_xg
            u0 = U0[b, j]
            u1 = U1[b, j]
            u2 = U2[b, j]
            u3 = U3[b, j]
            u4 = U7[b, j]
            u5 = U8[b, j]
            u6 = U9[b, j]
            o0 = OFF[0] + j * xs.shape[-1]
            o1 = OFF[1] + j * xs.shape[-1]
            o2 = OFF[2] + j * xs.shape[-1]
            o3 = OFF[3] + j * xs.shape[-1]
            o4 = OFF[0] + j * xs.shape[-1]
            o5 = OFF[1] + j * xs.shape[-1]
            o6 = OFF[2] + j * xs.shape[-1]
            for l in range(xs.shape[-1]):
                zl = xs[t, b, l]
                out[b, 0 * n_hidden + j, o0 + l] += u0 * zl
                out[b, 0 * n_hidden + j, o1 + l] += u1 * zl
                out[b, 0 * n_hidden + j, o2 + l] += u2 * zl
                out[b, 0 * n_hidden + j, o3 + l] += u3 * zl
                out[b, 1 * n_hidden + j, o4 + l] += u4 * zl
                out[b, 1 * n_hidden + j, o5 + l] += u5 * zl
                out[b, 1 * n_hidden + j, o6 + l] += u6 * zl
            # V_u^A = ... d_2(h_prev) for V_h^W_hi, V_h^W_hf, V_h^W_hg, V_h^W_ho, V_c^W_hi, V_c^W_hf, V_c^W_hg
            u0_1 = U0[b, j]
            u1_1 = U1[b, j]
            u2_1 = U2[b, j]
            u3_1 = U3[b, j]
            u4_1 = U7[b, j]
            u5_1 = U8[b, j]
            u6_1 = U9[b, j]
            o0_1 = OFF[4] + j * S_h.shape[-1]
            o1_1 = OFF[5] + j * S_h.shape[-1]
            o2_1 = OFF[6] + j * S_h.shape[-1]
            o3_1 = OFF[7] + j * S_h.shape[-1]
            o4_1 = OFF[4] + j * S_h.shape[-1]
            o5_1 = OFF[5] + j * S_h.shape[-1]
            o6_1 = OFF[6] + j * S_h.shape[-1]
            for l in range(S_h.shape[-1]):
                zl = S_h[t, b, l]
                out[b, 0 * n_hidden + j, o0_1 + l] += u0_1 * zl
                out[b, 0 * n_hidden + j, o1_1 + l] += u1_1 * zl
                out[b, 0 * n_hidden + j, o2_1 + l] += u2_1 * zl
                out[b, 0 * n_hidden + j, o3_1 + l] += u3_1 * zl
                out[b, 1 * n_hidden + j, o4_1 + l] += u4_1 * zl
                out[b, 1 * n_hidden + j, o5_1 + l] += u5_1 * zl
                out[b, 1 * n_hidden + j, o6_1 + l] += u6_1 * zl


def forward(params, xs, state0=None, *, lengths=None, mask=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward.
    A variable-length batch (lengths= or mask=, see peephole_lstm.forward) runs the NumPy
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
    S_c = np.empty((steps + 1, batch, n_hidden), dtype)
    S_c[0] = state["c"]
    C_tanh_c = np.empty((steps, batch, n_hidden), dtype)
    b_i = np.ascontiguousarray(P["b_i"])
    b_f = np.ascontiguousarray(P["b_f"])
    b_g = np.ascontiguousarray(P["b_g"])
    b_o = np.ascontiguousarray(P["b_o"])
    p_i = np.ascontiguousarray(P["p_i"])
    p_f = np.ascontiguousarray(P["p_f"])
    p_o = np.ascontiguousarray(P["p_o"])
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        W_cat = np.concatenate((P["stack:x"], P["stack:h"]), axis=1)
        A_x = np.empty((steps, batch, P["stack:x"].shape[0]), dtype)
        nil = dtype.type(0.0)
        args = (xs, W_cat, S_h, A_x, p_i, b_i, p_f, b_f, b_g, p_o, b_o, S_c, C_tanh_c, nil,)
        rt.run_chunks(_forward_seq, rt.row_chunks(batch, rt.num_threads()), lambda chunk: args)
    else:
        # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (the biases are
        # added in the fused loops, which read A_x anyway: no extra pass)
        A_x = (xs.reshape(steps * batch, n_in) @ P["stack:x"].T).reshape(steps, batch, -1)
        A_h = np.empty((batch, P["stack:h"].shape[0]), dtype)
        W_stack_h = P["stack:h"]
        W_stack_h_T = np.ascontiguousarray(W_stack_h.T)
        for t in range(steps):
            # A_{h} = [W_hi; W_hf; W_hg; W_ho] h_{t-1}
            np.matmul(S_h[t], W_stack_h_T, out=A_h)
            _forward_step(t, A_x, A_h, p_i, b_i, p_f, b_f, b_g, p_o, b_o, S_c, C_tanh_c, S_h)
    cache = {"xs": xs, "backend": "numba",
             "state": {s: S[-1] for s, S in zip(STATE, (S_h, S_c, ))}}
    cache["S_h"] = S_h
    cache["S_c"] = S_c
    cache["C_i"] = A_x[:, :, 0:n_hidden]  # kept in A_x's columns
    cache["C_f"] = A_x[:, :, n_hidden:2 * n_hidden]  # kept in A_x's columns
    cache["C_g"] = A_x[:, :, 2 * n_hidden:3 * n_hidden]  # kept in A_x's columns
    cache["C_o"] = A_x[:, :, 3 * n_hidden:4 * n_hidden]  # kept in A_x's columns
    cache["C_tanh_c"] = C_tanh_c
    cache["A_x"] = A_x
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden) and, for a cell with a readout,
    dys = {name: dL/dy_t}; see peephole_lstm.backward (one cache serves one backward unless
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
    S_c = cache["S_c"]
    C_tanh_c = cache["C_tanh_c"]
    d_h_next = carry["h"].copy()  # ours: written in place
    d_c_next = carry["c"].copy()  # ours: written in place
    # the gates kept in A_x's columns become their adjoints; a copy when the cache is kept
    dA_x = cache["A_x"].copy() if keep_cache else cache["A_x"]
    R_c = np.empty((batch, n_hidden), dtype)
    p_i = np.ascontiguousarray(P["p_i"])
    p_f = np.ascontiguousarray(P["p_f"])
    p_o = np.ascontiguousarray(P["p_o"])
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
        g_p_i_part = np.zeros((len(chunks),) + params["p_i"].shape, dtype)
        g_p_f_part = np.zeros((len(chunks),) + params["p_f"].shape, dtype)
        g_p_o_part = np.zeros((len(chunks),) + params["p_o"].shape, dtype)
        WT_W_stack_h = np.ascontiguousarray(W_stack_h[0:4 * n_hidden].T)
        nil = dtype.type(0.0)
        rt.run_chunks(_backward_seq, chunks, lambda chunk: (dhs, d_h_next, d_c_next, p_o, p_i, p_f, C_tanh_c, dA_x, S_c, g_p_i_part[chunk], g_p_f_part[chunk], g_p_o_part[chunk], R_c, WT_W_stack_h, xs, G_W_stack_x_0_part[chunk], S_h, G_W_stack_h_0_part[chunk], colsum_dA_x_part[chunk], nil, one,))
        G_W_stack_x_0 = G_W_stack_x_0_part.sum(axis=0)
        G_W_stack_h_0 = G_W_stack_h_0_part.sum(axis=0)
        colsum_dA_x = colsum_dA_x_part.sum(axis=0)
        g_p_i = g_p_i_part.sum(axis=0)
        g_p_f = g_p_f_part.sum(axis=0)
        g_p_o = g_p_o_part.sum(axis=0)
    else:
        g_p_i = np.zeros(params["p_i"].shape, dtype)
        g_p_f = np.zeros(params["p_f"].shape, dtype)
        g_p_o = np.zeros(params["p_o"].shape, dtype)
        for t in range(steps - 1, -1, -1):
            _backward_step(t, dhs, d_h_next, d_c_next, p_o, p_i, p_f, C_tanh_c, dA_x, S_c, g_p_i, g_p_f, g_p_o, R_c, one)
            # \delta h_{t-1} = W_{hi}^\top \bar{\hat{i}}_t + W_{hf}^\top \bar{\hat{f}}_t + W_{hg}^\top \bar{\hat{g}}_t + W_{ho}^\top \bar{\hat{o}}_t
            d_h_next = dA_x[t, :, 0:4 * n_hidden] @ W_stack_h[0:4 * n_hidden]
            # \delta c_{t-1} = d(p_i) \bar{\hat{i}}_t + d(p_f) \bar{\hat{f}}_t + d(f_t) \bar{c}_t
            d_c_next, R_c = R_c, d_c_next  # no copy
        # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
        G_W_stack_x_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
        G_W_stack_h_0 = dA_x[:, :, 0:4 * n_hidden].reshape(steps * batch, -1).T @ S_h[:-1].reshape(steps * batch, -1)
        colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    cache["consumed"] = not keep_cache
    grads = {}
    grads["W_xi"] = G_W_stack_x_0[0:n_hidden]
    grads["W_xf"] = G_W_stack_x_0[n_hidden:2 * n_hidden]
    grads["W_xg"] = G_W_stack_x_0[2 * n_hidden:3 * n_hidden]
    grads["W_xo"] = G_W_stack_x_0[3 * n_hidden:4 * n_hidden]
    grads["W_hi"] = G_W_stack_h_0[0:n_hidden]
    grads["W_hf"] = G_W_stack_h_0[n_hidden:2 * n_hidden]
    grads["W_hg"] = G_W_stack_h_0[2 * n_hidden:3 * n_hidden]
    grads["W_ho"] = G_W_stack_h_0[3 * n_hidden:4 * n_hidden]
    grads["b_i"] = colsum_dA_x[0:n_hidden]
    grads["b_f"] = colsum_dA_x[n_hidden:2 * n_hidden]
    grads["b_g"] = colsum_dA_x[2 * n_hidden:3 * n_hidden]
    grads["b_o"] = colsum_dA_x[3 * n_hidden:4 * n_hidden]
    grads["p_i"] = g_p_i
    grads["p_f"] = g_p_f
    grads["p_o"] = g_p_o
    grads = {name: grads[name] for name in PARAMS}
    grads[STATE0_GRAD["h"]] = d_h_next
    grads[STATE0_GRAD["c"]] = d_c_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:4 * n_hidden] @ W_stack_x[0:4 * n_hidden]
    return grads


def rtrl(params, xs, state0=None, *, lengths=None, mask=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape), by the RTRL
    recursion S_t = J_t S_(t-1) + V_t over the stacked sensitivities of all parameters (the same
    layout and result as peephole_lstm.rtrl): the forward pass first (all steps' values),
    then per step two compiled passes and one BLAS product per dense Jacobian column. With
    lengths= or mask=, the NumPy kernel's rtrl."""
    if lengths is not None or mask is not None:
        return _numpy_rtrl(params, xs, state0, lengths=lengths, mask=mask)
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch, n_in = xs.shape
    _, cache = forward(params, xs, state0)
    S_h = cache["S_h"]
    S_c = cache["S_c"]
    C_i = cache["C_i"]
    C_f = cache["C_f"]
    C_g = cache["C_g"]
    C_o = cache["C_o"]
    C_tanh_c = cache["C_tanh_c"]
    P = _unpack(params)
    p_i = np.ascontiguousarray(P["p_i"])
    p_f = np.ascontiguousarray(P["p_f"])
    p_o = np.ascontiguousarray(P["p_o"])
    W_ho = np.ascontiguousarray(P["W_ho"])
    W_hf = np.ascontiguousarray(P["W_hf"])
    W_hi = np.ascontiguousarray(P["W_hi"])
    W_hg = np.ascontiguousarray(P["W_hg"])
    one = dtype.type(1.0)  # in the arrays' dtype
    off, _, _, width = rt.sens_layout(PARAMS, n_hidden, n_in)
    OFF = np.array([off[p][0] for p in PARAMS], np.int64)
    rows = len(STATE) * n_hidden
    # S_0 = 0; one block for both buffers, freed whole (see rt.sens_buffers)
    whole = list(np.zeros((2, batch, rows, width), dtype))
    J_h = np.zeros((batch, rows, n_hidden), dtype)  # d(all states)/d h_(t-1)
    D_h_c = np.empty((batch, n_hidden), dtype)
    D_c_c = np.empty((batch, n_hidden), dtype)
    U0 = np.empty((batch, n_hidden), dtype)
    U1 = np.empty((batch, n_hidden), dtype)
    U2 = np.empty((batch, n_hidden), dtype)
    U3 = np.empty((batch, n_hidden), dtype)
    U4 = np.empty((batch, n_hidden), dtype)
    U5 = np.empty((batch, n_hidden), dtype)
    U6 = np.empty((batch, n_hidden), dtype)
    U7 = np.empty((batch, n_hidden), dtype)
    U8 = np.empty((batch, n_hidden), dtype)
    U9 = np.empty((batch, n_hidden), dtype)
    U10 = np.empty((batch, n_hidden), dtype)
    U11 = np.empty((batch, n_hidden), dtype)
    for t in range(steps):
        S, out = whole[t % 2], whole[1 - t % 2]
        _rtrl_coef(t, p_o, p_f, p_i, C_tanh_c, C_o, S_c, C_f, C_g, C_i, W_ho, W_hf, W_hi, W_hg, J_h, D_h_c, D_c_c, U0, U1, U2, U3, U4, U5, U6, U7, U8, U9, U10, U11, one)
        np.matmul(J_h, S[:, 0 * n_hidden:1 * n_hidden], out=out)
        _rtrl_post(t, out, S, OFF, xs, S_h, D_h_c, D_c_c, U0, U1, U2, U3, U4, U5, U6, U7, U8, U9, U10, U11)
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
