# generated from numba/runtime.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Shared by the numba kernels of this package.
"""The numba kernels' shared compiled helpers: sigma and tanh as branch-free arithmetic in the
arrays' own dtype, and the matrix-product kernels of the whole-sequence path.

One module per kernel package, imported by every ``<cell>_numba.py`` beside it, so that each
helper compiles once per process and signature (and once into numba's disk cache) instead of
once per cell: a cell's first call compiled about twice the code when every module printed its
own copy. Every kernel module carries ``NUMBA_RUNTIME``, the SHA-256 of this file's text, in
its own text, so that a change here changes every kernel file too and numba's per-file cache
invalidation cannot keep a kernel compiled against an older helper.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["_colsum", "_exp_parts_f32", "_exp_parts_f64", "_f32_bits", "_f32_from_bits",
           "_f64_bits", "_f64_from_bits", "_nt2", "_rank_update", "_sigmoid_s", "_tanh_s"]


# ---------------------------------------------------------------------------- activations
# sigma and tanh as branch-free arithmetic that LLVM vectorises inside the fused loops (a libm
# call per element cannot be: numba's scalar exp/tanh made the fused forward 4-5x slower than
# these). exp(x) for x <= 0 is rebuilt as 2^n (1 + p): n = round(x / ln 2) by the shift trick,
# r = x - n ln 2 in two parts (Cody-Waite), p = expm1(r) by its Taylor series (|r| <= ln2 / 2:
# the first omitted term is below half an ulp), 2^n written straight into the exponent bits.
# Each dtype computes in its own precision (float32 lanes are twice as many), with fused
# multiply-adds allowed (fastmath "contract" only: 2.5x faster in float32). Measured against
# long double over [-100, 100] and +-[1e-30, 100]: float64 <= 1.6 ulp, float32 <= 1.4 ulp
# (where the result is a normal number); tests/test_kernels.py checks the bound. Shared by the
# package's kernels (_numba_runtime.py); each kernel's text carries this file's digest, since
# numba invalidates a kernel's on-disk cache only when the kernel's own file changes.
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
# cores made the batch split no faster than one thread). Shared like the activations.
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


