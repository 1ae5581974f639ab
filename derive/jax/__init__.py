"""Derived cells as JAX sequence functions with derived derivatives.

``sequence_vjp(cell)`` is a ``jax.custom_vjp`` function whose reverse mode is the derived BPTT
(the BPTT adjoint recursions of Werbos 1990 as a reversed ``lax.scan``); ``sequence_jvp(cell)``
a ``jax.custom_jvp`` function whose forward mode is the derived tangent recursion (RTRL,
Williams and Zipser 1989: d s_t = sum_v J_t[s][v] d v_{t-1} + V_t[dA] + (d s_t/d x_t) d x_t,
along one direction).
JAX allows one custom rule per function, hence two functions; both compute the same values,
``jit`` and ``vmap`` trace through either, ``jax.grad`` uses the first (the second is
transposed by JAX, which its linear tangent step allows) and ``jax.jvp`` the second.

Call ``f(params, xs, state0, mask=None) -> (hs, final)``: params {name: array} in the cell's
own names, xs (T, B, n_in), state0 {state: (B, n_hidden)}, mask (T, B, 1) booleans true while
t < length (:func:`lengths_mask`; states frozen after the length, hs zero there, no gradient
through those steps). ``stack(cell, ...)`` composes layers and both directions.

float64 needs ``jax.config.update("jax_enable_x64", True)`` before arrays are made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..codegen.jax_backend import load_jax_kernel
from ..spec import CellSpec

Cell = str | Mapping[str, Any] | CellSpec


def sequence_vjp(cell: Cell) -> Callable[..., tuple]:
    """The cell's sequence function with the derived BPTT as its reverse mode."""
    K = load_jax_kernel(cell)

    @jax.custom_vjp
    def f(params, xs, state0, mask=None):
        hs, final, _ = K.forward(params, xs, state0, mask)
        return hs, final

    def fwd(params, xs, state0, mask=None):
        hs, final, cache = K.forward(params, xs, state0, mask)
        return (hs, final), (params, xs, cache, mask)

    def bwd(res, cot):
        params, xs, cache, mask = res
        dhs, dfinal = cot
        g = K.backward(params, xs, cache, dhs, dfinal, mask)
        return ({p: g[p] for p in K.PARAMS}, g[K.INPUT_GRAD],
                {s: g[K.STATE0_GRAD[s]] for s in K.STATE}, None)

    f.defvjp(fwd, bwd)
    f.kernel = K  # type: ignore[attr-defined]
    return f


def sequence_jvp(cell: Cell) -> Callable[..., tuple]:
    """The cell's sequence function with the derived forward mode as its JVP."""
    K = load_jax_kernel(cell)

    @jax.custom_jvp
    def f(params, xs, state0, mask=None):
        hs, final, _ = K.forward(params, xs, state0, mask)
        return hs, final

    @f.defjvp
    def f_jvp(primals, tangents):
        params, xs, state0, mask = (*primals, None)[:4] if len(primals) < 4 else primals
        dparams, dxs, dstate0 = tangents[:3]
        hs, final, ths, tfinal = K.tangent(params, xs, state0, dparams, dxs, dstate0, mask)
        return (hs, final), (ths, tfinal)

    f.kernel = K  # type: ignore[attr-defined]
    return f


def lengths_mask(lengths: Any, steps: int) -> jax.Array:
    """(T, B, 1) booleans, true where t < lengths[b]."""
    return (jnp.arange(steps)[:, None] < jnp.asarray(lengths)[None, :])[..., None]


def reverse(xs: jax.Array, lengths: Any = None) -> jax.Array:
    """Each sequence of xs (T, B, ...) reversed within its own length."""
    if lengths is None:
        return xs[::-1]
    steps = xs.shape[0]
    t = jnp.arange(steps)[:, None]
    L = jnp.asarray(lengths)[None, :]
    idx = jnp.where(t < L, L - 1 - t, t)
    return jnp.take_along_axis(xs, idx.reshape(idx.shape + (1,) * (xs.ndim - 2)), axis=0)


def stack(f: Callable[..., tuple], layers: Sequence[Sequence[Mapping[str, Any]]], xs: jax.Array,
          state0: Sequence[Sequence[Mapping[str, Any]]] | None = None,
          lengths: Any = None) -> tuple[jax.Array, list]:
    """Layers of one cell's sequence function ``f``: ``layers[l][d]`` the parameters of layer l
    and direction d (one or two directions), ``state0[l][d]`` its initial states (zeros when
    None). Layer l+1 reads the concatenated outputs of layer l (the input gradient composes
    them); direction 1 runs each sequence reversed within its length. Returns (outputs
    (T, B, dirs * n_hidden), finals[l][d])."""
    K = f.kernel  # type: ignore[attr-defined]
    mask = None if lengths is None else lengths_mask(lengths, xs.shape[0])
    finals = []
    h = xs
    for l_, dirs in enumerate(layers):
        outs, fl = [], []
        for d, params in enumerate(dirs):
            n = next(params[p].shape[0] for p in K.PARAMS)
            s0 = (state0[l_][d] if state0 is not None else
                  {s: jnp.zeros((xs.shape[1], n), xs.dtype) for s in K.STATE})
            x = h if d == 0 else reverse(h, lengths)
            hs, final = f(params, x, s0, mask)
            outs.append(hs if d == 0 else reverse(hs, lengths))
            fl.append(final)
        h = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)
        finals.append(fl)
    return h, finals


__all__ = ["lengths_mask", "reverse", "sequence_jvp", "sequence_vjp", "stack"]
