"""A derived cell's sequence as a ``torch.autograd.Function``: backward is the derived BPTT,
``jvp`` the derived forward mode.

``sequence(cell)(xs, state0, params, mask=None) -> (hs, final)`` runs the cell's functional
torch kernel (:mod:`derive.codegen.torch_backend`) over a whole sequence. The Function is
written the way ``torch.func`` needs it: ``forward`` without ``ctx``, a separate
``setup_context``, the intermediate values backward reads returned as extra, non-differentiable
outputs (a Function may not stash tensors on ``ctx`` in its forward for torch.func), and
``generate_vmap_rule`` (the kernels are functional). Reverse mode over reverse mode is not
derived: backward is ``once_differentiable`` and a second derivative raises instead of
silently missing the paths through the saved values.

References: BPTT (Werbos 1990) in adjoint form (stacked gate blocks, dL/dTheta =
sum_t \\bar a_t v_t^T); forward mode as RTRL (Williams and Zipser 1989),
d s_t = sum_v J_t[s][v] d v_{t-1} + V_t[dA] + (d s_t / d x_t) d x_t, contracted with one
tangent.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ..codegen.torch_backend import load_torch_kernel
from ..spec import CellSpec


def _function(K: ModuleType) -> type[torch.autograd.Function]:
    names = tuple(K.PARAMS)
    states = tuple(K.STATE)
    S, NP = len(states), len(names)

    class CellSequence(torch.autograd.Function):
        """(mask, xs, *state0, *params) -> (hs, *final states, *cache)."""

        generate_vmap_rule = True

        @staticmethod
        def forward(mask, xs, *args):
            state0 = dict(zip(states, args[:S], strict=True))
            params = dict(zip(names, args[S:], strict=True))
            hs, final, cache = K.forward(params, xs, state0, mask)
            inputs = (mask, xs, *args)
            # an output that is an input (a state the cell never changes, h = h_prev; an input
            # kept in the cache) must be a view of it for autograd with a setup_context
            return tuple(o.view_as(o) if any(o is i for i in inputs) else o
                         for o in (hs, *(final[s] for s in states), *cache))

        @staticmethod
        def setup_context(ctx, inputs, output):
            mask, xs, *args = inputs
            cache = output[1 + S:]
            ctx.mark_non_differentiable(*cache)
            ctx.save_for_backward(mask, xs, *args, *cache)
            ctx.save_for_forward(mask, xs, *args)

        @staticmethod
        @once_differentiable
        def backward(ctx, dhs, *douts):
            mask, xs, *rest = ctx.saved_tensors
            params = dict(zip(names, rest[S:S + NP], strict=True))
            cache = tuple(rest[S + NP:])
            dstate = {s: torch.zeros_like(rest[k]) if d is None else d
                      for k, (s, d) in enumerate(zip(states, douts[:S], strict=True))}
            if dhs is None:
                dhs = xs.new_zeros(xs.shape[:2] + (rest[0].shape[-1],))
            g = K.backward(params, xs, cache, dhs, dstate, mask,
                           input_grad=ctx.needs_input_grad[1])
            return (None, g.get(K.INPUT_GRAD), *(g[K.STATE0_GRAD[s]] for s in states),
                    *(g[p] for p in names))

        @staticmethod
        def jvp(ctx, dmask, dxs, *dargs):
            mask, xs, *args = ctx.saved_tensors
            zero = [torch.zeros_like(a) if d is None else d for a, d in zip(args, dargs,
                                                                           strict=True)]
            dxs = torch.zeros_like(xs) if dxs is None else dxs
            _, _, ths, tfinal = K.tangent(dict(zip(names, args[S:], strict=True)), xs,
                                          dict(zip(states, args[:S], strict=True)),
                                          dict(zip(names, zero[S:], strict=True)), dxs,
                                          dict(zip(states, zero[:S], strict=True)), mask)
            n_cache = len(K.CACHE)
            return (ths, *(tfinal[s] for s in states), *([None] * n_cache))

    CellSequence.__name__ = CellSequence.__qualname__ = f"CellSequence_{K.__name__}"
    return CellSequence


@functools.cache
def _for_module(K: ModuleType) -> type[torch.autograd.Function]:
    return _function(K)


def sequence(cell: str | Mapping[str, Any] | CellSpec) -> Callable[..., tuple]:
    """``f(xs, state0, params, mask=None) -> (hs, final)`` for ``cell``: xs (T, B, n_in),
    state0 {state: (B, n_hidden)}, params {name: tensor} (the cell's own names), mask
    (T, B, 1) booleans true while t < length (states frozen after it, hs zero there).
    Differentiable by the derived BPTT, forward-differentiable by the derived forward mode."""
    K = load_torch_kernel(cell)
    fn = _for_module(K)

    def run(xs: torch.Tensor, state0: Mapping[str, torch.Tensor],
            params: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> tuple:
        out = fn.apply(mask, xs, *(state0[s] for s in K.STATE), *(params[p] for p in K.PARAMS))
        return out[0], dict(zip(K.STATE, out[1:1 + len(K.STATE)], strict=True))

    run.kernel = K  # type: ignore[attr-defined]
    return run


def lengths_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(T, B, 1) booleans, true where t < lengths[b]."""
    t = torch.arange(steps, device=lengths.device)[:, None]
    return (t < lengths.to(t.device)[None, :])[..., None]
