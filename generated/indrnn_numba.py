# generated from numba/kernel.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: indrnn, numba backend.
"""IndRNN (Li, Li, Cook, Zhu, Gao 2018, "Independently recurrent neural network (IndRNN): building a longer and deeper RNN", CVPR 2018, arXiv:1803.04831): forward and BPTT as fused numba loops (optional backend).

Same API as its NumPy sibling ``indrnn`` (which this module uses for init_params, rtrl_step,
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

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from . import _runtime as rt
from .indrnn import (  # noqa: F401  (re-exported: same API)
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
from .indrnn import backward as _numpy_backward  # variable lengths: the NumPy path
from .indrnn import forward as _numpy_forward
from .indrnn import rtrl as _numpy_rtrl


# ---------------------------------------------------------------------------- activations
# sigma and tanh as branch-free arithmetic that LLVM vectorises inside the fused loops (a libm
# call per element cannot be: numba's scalar exp/tanh made the fused forward 4-5x slower than
# these). exp(x) for x <= 0 is rebuilt as 2^n (1 + p): n = round(x / ln 2) by the shift trick,
# r = x - n ln 2 in two parts (Cody-Waite), p = expm1(r) by its Taylor series (|r| <= ln2 / 2:
# the first omitted term is below half an ulp), 2^n written straight into the exponent bits.
# Each dtype computes in its own precision (float32 lanes are twice as many), with fused
# multiply-adds allowed (fastmath "contract" only: 2.5x faster in float32). Measured against
# long double over [-100, 100] and +-[1e-30, 100]: float64 <= 1.6 ulp, float32 <= 1.4 ulp
# (where the result is a normal number); tests/test_kernels.py checks the bound. Printed into
# every numba kernel instead of imported from one module: numba invalidates a kernel's on-disk
# cache only when the kernel's own file changes, so code inlined from elsewhere could go stale.
@intrinsic
def _f64_from_bits(typingctx, i):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _f64_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _f32_from_bits(typingctx, i):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@intrinsic
def _f32_bits(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


_D_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + shift rounds x to an integer in the low bits
_D_SHIFT_BITS = 0x4338000000000000
_D_LN2_HI, _D_LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_D_INV_LN2 = 1.0 / math.log(2.0)
_D_C = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))  # 1/13!, ..., 1/2!
_F = np.float32
_F_SHIFT = _F(12582912.0)  # 1.5 * 2**23
_F_SHIFT_BITS = np.int32(0x4B400000)
_F_LN2_HI, _F_LN2_LO = _F(0.693359375), _F(-2.12194440e-4)
_F_C7, _F_C6, _F_C5, _F_C4, _F_C3, _F_C2 = (_F(1.0 / math.factorial(k)) for k in range(7, 1, -1))
_F_INV_LN2, _F_MIN = _F(1.0 / math.log(2.0)), _F(-87.33654)  # ln(2^-126): n >= -126
_F_0, _F_1, _F_2, _F_127, _F_23 = _F(0.0), _F(1.0), _F(2.0), np.int32(127), np.int32(23)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _exp_parts_f64(x):
    """(s, p) with exp(x) = s (1 + p), s = 2^n, for x <= 0; s = 0 below ln(2^-1022)."""
    under = x < -708.39
    x = -708.39 if under else x  # (NaN passes through)
    t = x * _D_INV_LN2 + _D_SHIFT
    n = t - _D_SHIFT
    r = (x - n * _D_LN2_HI) - n * _D_LN2_LO
    p = _D_C[0]
    for c in _D_C[1:]:
        p = p * r + c
    p = (p * r) * r + r
    s = _f64_from_bits((_f64_bits(t) - _D_SHIFT_BITS + 1023) << 52)
    return (0.0 if under else s), p


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _exp_parts_f32(x):
    """(s, p) with exp(x) = s (1 + p), s = 2^n, for x <= 0 in float32; s = 0 below ln(2^-126)."""
    under = x < _F_MIN
    x = _F_MIN if under else x  # (NaN passes through)
    t = x * _F_INV_LN2 + _F_SHIFT
    n = t - _F_SHIFT
    r = (x - n * _F_LN2_HI) - n * _F_LN2_LO
    p = ((((_F_C7 * r + _F_C6) * r + _F_C5) * r + _F_C4) * r + _F_C3) * r + _F_C2
    p = (p * r) * r + r
    s = _f32_from_bits((_f32_bits(t) - _F_SHIFT_BITS + _F_127) << _F_23)
    return (_F_0 if under else s), p


def _sigmoid_s(z):
    """sigma(z) = 1 / (1 + exp(-z)), from exp(-|z|) (never overflows); compiled by _sigmoid_impl."""
    raise NotImplementedError("called from compiled code only")


def _tanh_s(z):
    """tanh(z) = m / (2 - m) with m = -expm1(-2|z|), z's sign (accurate near 0); see _tanh_impl."""
    raise NotImplementedError("called from compiled code only")


@overload(_sigmoid_s, jit_options={"fastmath": {"contract"}})
def _sigmoid_impl(z):
    if z == types.float32:
        def sigmoid_f32(z):
            s, p = _exp_parts_f32(-abs(z))
            e = s * p + s
            r = _F_1 / (_F_1 + e)
            return r if z >= _F_0 else e * r
        return sigmoid_f32

    def sigmoid_f64(z):
        s, p = _exp_parts_f64(-abs(z))
        e = s * p + s
        r = 1.0 / (1.0 + e)
        return r if z >= 0.0 else e * r
    return sigmoid_f64


@overload(_tanh_s, jit_options={"fastmath": {"contract"}})
def _tanh_impl(z):
    if z == types.float32:
        def tanh_f32(z):
            s, p = _exp_parts_f32(_F_2 * -abs(z))
            m = (_F_1 - s) - s * p  # -expm1(-2|z|) >= 0
            return math.copysign(m / (_F_2 - m), z)
        return tanh_f32

    def tanh_f64(z):
        s, p = _exp_parts_f64(-2.0 * abs(z))
        m = (1.0 - s) - s * p
        return math.copysign(m / (2.0 - m), z)
    return tanh_f64
# ---------------------------------------------------------------------------- matrix products
# The whole-sequence kernels (_forward_seq, _backward_seq) make their small matrix products
# here instead of in NumPy's BLAS, for two reasons measured on a 2-core machine: OpenBLAS
# repacks the weight matrix on every call, so a (16, 128) @ (128, 512) product runs at 40-47
# GFLOP/s on two threads where these loops reach 25-28 GFLOP/s on *one*; and a BLAS call from
# inside the loop would keep OpenBLAS's worker spinning beside our own threads (an idle
# OpenBLAS worker spins for about 0.1 s after each call: two busy threads of ours plus it on two
# cores made the batch split no faster than one thread). Printed into every numba kernel for
# the same reason as the activations (numba's cache invalidation is per file).
@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _nt2(u0, u1, W, out0, out1, zero, two, add):
    """out_q[c] (+)= sum_k u_q[k] W[c, k] for the rows u0, u1 (u1 only where ``two``): a 2 x 4
    block of dot products, each vectorised over k (reassociation allowed here only, so that
    LLVM keeps vector partial sums; the activations stay exactly as written)."""
    rows, width = W.shape
    top = rows - rows % 4
    for c in range(0, top, 4):
        w0 = W[c]
        w1 = W[c + 1]
        w2 = W[c + 2]
        w3 = W[c + 3]
        a00 = zero
        a01 = zero
        a02 = zero
        a03 = zero
        a10 = zero
        a11 = zero
        a12 = zero
        a13 = zero
        for k in range(width):
            x0 = u0[k]
            x1 = u1[k]
            a00 += x0 * w0[k]
            a01 += x0 * w1[k]
            a02 += x0 * w2[k]
            a03 += x0 * w3[k]
            a10 += x1 * w0[k]
            a11 += x1 * w1[k]
            a12 += x1 * w2[k]
            a13 += x1 * w3[k]
        if add:
            a00 += out0[c]
            a01 += out0[c + 1]
            a02 += out0[c + 2]
            a03 += out0[c + 3]
        out0[c] = a00
        out0[c + 1] = a01
        out0[c + 2] = a02
        out0[c + 3] = a03
        if two:
            if add:
                a10 += out1[c]
                a11 += out1[c + 1]
                a12 += out1[c + 2]
                a13 += out1[c + 3]
            out1[c] = a10
            out1[c + 1] = a11
            out1[c + 2] = a12
            out1[c + 3] = a13
    for c in range(top, rows):
        w0 = W[c]
        a00 = zero
        a10 = zero
        for k in range(width):
            a00 += u0[k] * w0[k]
            a10 += u1[k] * w0[k]
        out0[c] = a00 + out0[c] if add else a00
        if two:
            out1[c] = a10 + out1[c] if add else a10


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _rank_update(D, c0, V, lo, hi, G):
    """G[c, :] += sum_{lo <= b < hi} D[b, c0 + c] V[b, :]: one step's share of a weight
    gradient sum_t (bar a_t) v_t^T. Eight batch rows per pass over G (each pass loads and
    stores a row of G once for eight fused multiply-adds: 28 GFLOP/s on one Zen core at
    (512, 128), where four rows per pass reach 24), then four, then one."""
    rows = G.shape[0]
    b = lo
    while b + 8 <= hi:
        v0, v1, v2, v3 = V[b], V[b + 1], V[b + 2], V[b + 3]
        v4, v5, v6, v7 = V[b + 4], V[b + 5], V[b + 6], V[b + 7]
        d0, d1, d2, d3 = D[b], D[b + 1], D[b + 2], D[b + 3]
        d4, d5, d6, d7 = D[b + 4], D[b + 5], D[b + 6], D[b + 7]
        for c in range(rows):
            s0, s1, s2, s3 = d0[c0 + c], d1[c0 + c], d2[c0 + c], d3[c0 + c]
            s4, s5, s6, s7 = d4[c0 + c], d5[c0 + c], d6[c0 + c], d7[c0 + c]
            g = G[c]
            for k in range(g.shape[0]):
                g[k] += ((s0 * v0[k] + s1 * v1[k] + s2 * v2[k] + s3 * v3[k])
                         + (s4 * v4[k] + s5 * v5[k] + s6 * v6[k] + s7 * v7[k]))
        b += 8
    while b + 4 <= hi:
        v0, v1, v2, v3 = V[b], V[b + 1], V[b + 2], V[b + 3]
        d0, d1, d2, d3 = D[b], D[b + 1], D[b + 2], D[b + 3]
        for c in range(rows):
            s0, s1, s2, s3 = d0[c0 + c], d1[c0 + c], d2[c0 + c], d3[c0 + c]
            g = G[c]
            for k in range(g.shape[0]):
                g[k] += s0 * v0[k] + s1 * v1[k] + s2 * v2[k] + s3 * v3[k]
        b += 4
    while b < hi:
        v0 = V[b]
        d0 = D[b]
        for c in range(rows):
            s0 = d0[c0 + c]
            g = G[c]
            for k in range(g.shape[0]):
                g[k] += s0 * v0[k]
        b += 1


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _colsum(D, lo, hi, out):
    """out += sum_{lo <= b < hi} D[b]: one step's share of a bias gradient sum_t (bar a_t)."""
    for b in range(lo, hi):
        d = D[b]
        for c in range(out.shape[0]):
            out[c] += d[c]


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
    # W_stack_x = [W]
    P["stack:x"] = np.concatenate([params["W"]], axis=0)
    return P


def _sequence(P):
    """True where forward() and backward() run the whole-sequence kernels (see above)."""
    return sum(P[k].nbytes for k in ("stack:x", )) <= SEQUENCE_MAX_BYTES


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _forward_step(t, A_x, u, b_, S_h, zero):
    """Forward step t, loop 1 of 1, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = A_x.shape[1], u.shape[0]
    for b in range(batch):
        A_x_t_0 = A_x[t, b, 0:n_hidden]
        S_h_t = S_h[t, b]
        S_h_t1 = S_h[t + 1, b]
        for j in range(n_hidden):
            h_prev = S_h_t[j]
            # h_t = \operatorname{ReLU}(W x_t + u \odot h_{t-1} + b)
            S_h_t1[j] = max(A_x_t_0[j] + u[j] * h_prev + b_[j], zero)


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _forward_seq(lo, hi, xs, W_stack_x, A_x, u, b_, S_h, nil, zero):
    """Forward over all steps for batch rows lo..hi-1 (one thread's chunk): per step and pair of
    rows the products (_nt2) and the fused loops of _forward_step."""
    steps, n_hidden = xs.shape[0], u.shape[0]
    for t in range(steps):
        for b0 in range(lo, hi, 2):
            b1 = min(b0 + 1, hi - 1)
            _nt2(xs[t, b0], xs[t, b1], W_stack_x, A_x[t, b0], A_x[t, b1], nil, b1 > b0, False)
            for b in range(b0, b1 + 1):
                A_x_t_0 = A_x[t, b, 0:n_hidden]
                S_h_t = S_h[t, b]
                S_h_t1 = S_h[t + 1, b]
                for j in range(n_hidden):
                    h_prev = S_h_t[j]
                    # h_t = \operatorname{ReLU}(W x_t + u \odot h_{t-1} + b)
                    S_h_t1[j] = max(A_x_t_0[j] + u[j] * h_prev + b_[j], zero)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _backward_step(t, dhs, d_h_next, u, S_h, dA_x, g_u, R_h, zero, one):
    """Backward step t, loop 1 of 1, fused: one pass over (batch, unit), the unit loop over row
    views of batch row b (vectorised)."""
    batch, n_hidden = dhs.shape[1], dhs.shape[2]
    for b in range(batch):
        dhs_t = dhs[t, b]
        d_h_next_b = d_h_next[b]
        S_h_t1 = S_h[t + 1, b]
        S_h_t = S_h[t, b]
        dA_x_t_0 = dA_x[t, b, 0:n_hidden]
        R_h_b = R_h[b]
        for j in range(n_hidden):
            h = S_h_t1[j]
            h_prev = S_h_t[j]
            # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
            d_h = dhs_t[j] + d_h_next_b[j]
            # \bar{\hat{h}}_t = d(h'_t) \bar{h}_t
            d_h_hat = (one if h > zero else zero) * d_h
            dA_x_t_0[j] = d_h_hat
            g_u[j] += h_prev * d_h_hat
            # \delta h_{t-1} = d(u) \bar{\hat{h}}_t
            R_h_b[j] = u[j] * d_h_hat


@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)
def _backward_seq(lo, hi, dhs, d_h_next, u, S_h, dA_x, g_u, R_h, xs, G_W_stack_x_0, colsum_dA_x, nil, zero, one):
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
                S_h_t1 = S_h[t + 1, b]
                S_h_t = S_h[t, b]
                dA_x_t_0 = dA_x[t, b, 0:n_hidden]
                R_h_b = R_h[b]
                for j in range(n_hidden):
                    h = S_h_t1[j]
                    h_prev = S_h_t[j]
                    # \bar{h}_t = \frac{\partial \ell_t}{\partial h_t} + \delta h_t
                    d_h = dhs_t[j] + d_h_next_b[j]
                    # \bar{\hat{h}}_t = d(h'_t) \bar{h}_t
                    d_h_hat = (one if h > zero else zero) * d_h
                    dA_x_t_0[j] = d_h_hat
                    g_u[j] += h_prev * d_h_hat
                    # \delta h_{t-1} = d(u) \bar{\hat{h}}_t
                    R_h_b[j] = u[j] * d_h_hat
            # carried adjoints delta v_(t-1): the stacked products, then the rest
            # \delta h_{t-1} = d(u) \bar{\hat{h}}_t
            for b in range(b0, b1 + 1):
                d_h_next[b] = R_h[b]
        # weight gradients: sum_t (bar a_t) v_t^T, this step's rows
        _rank_update(dA_x[t], 0, xs[t], lo, hi, G_W_stack_x_0)
        _colsum(dA_x[t], lo, hi, colsum_dA_x)


@njit(cache=True)
def _rtrl_coef(t, u, S_h, D_h_h, U0, U1, U2, zero, one):
    """RTRL step t, first pass over (batch, unit): row j of the state Jacobian's dense column
    blocks (diagonal blocks of the same column folded in), the other diagonal blocks, and V_t's
    coefficients."""
    batch, n_hidden = S_h.shape[1], u.shape[0]
    for b in range(batch):
        S_h_t1 = S_h[t + 1, b]
        S_h_t = S_h[t, b]
        for j in range(n_hidden):
            h = S_h_t1[j]
            h_prev = S_h_t[j]
            k0 = (one if h > zero else zero) * u[j]
            k1 = one if h > zero else zero
            k2 = (one if h > zero else zero) * h_prev
            k3 = one * (one if h > zero else zero)
            D_h_h[b, j] = k0
            U0[b, j] = k1
            U1[b, j] = k2
            U2[b, j] = k3


@njit(cache=True)
def _rtrl_post(t, out, S, OFF, xs, D_h_h, U0, U1, U2):
    """RTRL step t, after out = J S (BLAS): out += the diagonal blocks times S and V_t, whose
    entries lie at out[b, u_j, OFF[A] + j k + l] (A d_2(z)) or out[b, u_j, OFF[A] + j] (a vector
    parameter A)."""
    batch, n_hidden = out.shape[0], out.shape[1] // 1
    width = out.shape[2]
    for b in range(batch):
        for j in range(n_hidden):
            # out_u += d(D_uh) S_h: the diagonal blocks, one pass over S_h
            d0 = D_h_h[b, j]
            s = S[b, 0 * n_hidden + j]
            r0 = out[b, 0 * n_hidden + j]
            for p in range(width):
                r0[p] += d0 * s[p]
            # V_t on its diagonal structure
            # V_h^u
            out[b, 0 * n_hidden + j, OFF[1] + j] += U1[b, j]
            # V_h^b
            out[b, 0 * n_hidden + j, OFF[2] + j] += U2[b, j]
            # V_u^A = ... d_2(x_t) for V_h^W
            u0 = U0[b, j]
            o0 = OFF[0] + j * xs.shape[-1]
            for l in range(xs.shape[-1]):
                zl = xs[t, b, l]
                out[b, 0 * n_hidden + j, o0 + l] += u0 * zl


def forward(params, xs, state0=None, *, lengths=None, mask=None):
    """Run the cell over xs (T, B, n_in); returns hs (T, B, n_hidden) and the cache for backward.
    A variable-length batch (lengths= or mask=, see indrnn.forward) runs the NumPy
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
    u = np.ascontiguousarray(P["u"])
    b_ = np.ascontiguousarray(P["b"])
    zero = dtype.type(0.0)  # in the arrays' dtype
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        W_stack_x = np.ascontiguousarray(P["stack:x"])
        A_x = np.empty((steps, batch, P["stack:x"].shape[0]), dtype)
        nil = dtype.type(0.0)
        args = (xs, W_stack_x, A_x, u, b_, S_h, nil, zero,)
        rt.run_chunks(_forward_seq, rt.row_chunks(batch, rt.num_threads()), lambda chunk: args)
    else:
        # input projections of all steps in one matmul: A_x[t] = Theta_x x_t (the biases are
        # added in the fused loops, which read A_x anyway: no extra pass)
        A_x = (xs.reshape(steps * batch, n_in) @ P["stack:x"].T).reshape(steps, batch, -1)
        for t in range(steps):
            _forward_step(t, A_x, u, b_, S_h, zero)
    cache = {"xs": xs, "backend": "numba",
             "state": {s: S[-1] for s, S in zip(STATE, (S_h, ))}}
    cache["S_h"] = S_h
    return S_h[1:], cache


def backward(params, cache, dhs, *, dstate=None, input_grad=False, keep_cache=False, dys=None):
    """BPTT: gradients of L given dhs = dL/dh_t (T, B, n_hidden) and, for a cell with a readout,
    dys = {name: dL/dy_t}; see indrnn.backward."""
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
    d_h_next = carry["h"].copy()  # ours: written in place
    dA_x = np.empty((steps, batch, n_hidden), dtype)
    R_h = np.empty((batch, n_hidden), dtype)
    u = np.ascontiguousarray(P["u"])
    zero = dtype.type(0.0)  # in the arrays' dtype
    one = dtype.type(1.0)  # in the arrays' dtype
    W_stack_x = P["stack:x"]
    if _sequence(P):
        xs = np.ascontiguousarray(xs)
        chunks = rt.row_chunks(batch, rt.num_threads())
        # each chunk sums its own share of every gradient; the shares are added at the end
        G_W_stack_x_0_part = np.zeros((len(chunks), n_hidden, n_in), dtype)
        colsum_dA_x_part = np.zeros((len(chunks), dA_x.shape[2]), dtype)
        g_u_part = np.zeros((len(chunks),) + params["u"].shape, dtype)
        nil = dtype.type(0.0)
        rt.run_chunks(_backward_seq, chunks, lambda chunk: (dhs, d_h_next, u, S_h, dA_x, g_u_part[chunk], R_h, xs, G_W_stack_x_0_part[chunk], colsum_dA_x_part[chunk], nil, zero, one,))
        G_W_stack_x_0 = G_W_stack_x_0_part.sum(axis=0)
        colsum_dA_x = colsum_dA_x_part.sum(axis=0)
        g_u = g_u_part.sum(axis=0)
    else:
        g_u = np.zeros(params["u"].shape, dtype)
        for t in range(steps - 1, -1, -1):
            _backward_step(t, dhs, d_h_next, u, S_h, dA_x, g_u, R_h, zero, one)
            # \delta h_{t-1} = d(u) \bar{\hat{h}}_t
            d_h_next, R_h = R_h, d_h_next  # no copy
        # weight gradients: dL/dTheta_v = sum_t \bar a_{v,t} v_t^T, one matmul over all steps
        G_W_stack_x_0 = dA_x[:, :, 0:n_hidden].reshape(steps * batch, -1).T @ xs.reshape(steps * batch, -1)
        colsum_dA_x = dA_x.reshape(steps * batch, -1).sum(axis=0)
    grads = {}
    grads["W"] = G_W_stack_x_0[0:n_hidden]
    grads["u"] = g_u
    grads["b"] = colsum_dA_x[0:n_hidden]
    grads = {name: grads[name] for name in PARAMS}
    grads[STATE0_GRAD["h"]] = d_h_next
    if input_grad:
        grads[INPUT_GRAD] = dA_x[:, :, 0:n_hidden] @ W_stack_x[0:n_hidden]
    return grads


def rtrl(params, xs, state0=None, *, lengths=None, mask=None):
    """Forward-mode gradients dh_T/dA for every parameter A: (B, n_hidden, *A.shape), by the RTRL
    recursion S_t = J_t S_(t-1) + V_t over the stacked sensitivities of all parameters (the same
    layout and result as indrnn.rtrl): the forward pass first (all steps' values),
    then per step two compiled passes and one BLAS product per dense Jacobian column. With
    lengths= or mask=, the NumPy kernel's rtrl."""
    if lengths is not None or mask is not None:
        return _numpy_rtrl(params, xs, state0, lengths=lengths, mask=mask)
    n_hidden, n_in, dtype = _sizes(params)
    xs = _check_xs(xs, n_in, dtype)
    steps, batch, n_in = xs.shape
    _, cache = forward(params, xs, state0)
    S_h = cache["S_h"]
    P = _unpack(params)
    u = np.ascontiguousarray(P["u"])
    zero = dtype.type(0.0)  # in the arrays' dtype
    one = dtype.type(1.0)  # in the arrays' dtype
    off, _, _, width = rt.sens_layout(PARAMS, n_hidden, n_in)
    OFF = np.array([off[p][0] for p in PARAMS], np.int64)
    rows = len(STATE) * n_hidden
    # S_0 = 0; one block for both buffers, freed whole (see rt.sens_buffers)
    whole = list(np.zeros((2, batch, rows, width), dtype))
    D_h_h = np.empty((batch, n_hidden), dtype)
    U0 = np.empty((batch, n_hidden), dtype)
    U1 = np.empty((batch, n_hidden), dtype)
    U2 = np.empty((batch, n_hidden), dtype)
    for t in range(steps):
        S, out = whole[t % 2], whole[1 - t % 2]
        _rtrl_coef(t, u, S_h, D_h_h, U0, U1, U2, zero, one)
        out[...] = 0.0
        _rtrl_post(t, out, S, OFF, xs, D_h_h, U0, U1, U2)
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
