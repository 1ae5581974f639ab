"""A derived cell's sequence as a ``torch.autograd.Function``: backward is the derived BPTT,
``jvp`` the derived forward mode.

``sequence(cell)(xs, state0, params, mask=None) -> (hs, final)`` runs the cell's functional
torch kernel (:mod:`derive.codegen.torch_backend`) over a whole sequence. The Function is
written the way ``torch.func`` needs it: ``forward`` without ``ctx``, a separate
``setup_context``, the intermediate values backward reads returned as extra, non-differentiable
outputs (a Function may not stash tensors on ``ctx`` in its forward for torch.func), and
``generate_vmap_rule`` (the kernels are functional). Reverse over reverse (``create_graph=True``:
gradient penalties, Hessian-vector products): backward then recomputes the forward from the
saved inputs with autograd recording and runs the derived BPTT as torch operations on it, so
the second derivative also follows every path through the values the first backward read (a
backward on the saved cache would miss those paths silently).

On the CPU the same Function can run the cell's numba kernel instead (``backend="numba"``, what
``"auto"`` picks there when numba is installed): the fused BPTT loops of
:mod:`derive.codegen.numba_backend`, called on the tensors' memory without copies. Measured
(bench/README.md, "The derived torch layer"): the torch-printed kernels run one small torch op
per statement per step, which costs 3x nn.LSTM's oneDNN kernel at B=64, H=256 in float32; the
fused loops are within noise of it. The numba path takes only plain CPU tensors in float32 or
float64 with no ``torch.func`` transform active and no mask; anything else, and every
``jvp``, runs the torch kernels, which print the same derivation. The fused loops split the
batch over torch's own OpenMP team (:mod:`derive.torch.openmp`), not over threads of their own.

References: BPTT (Werbos 1990) in adjoint form (stacked gate blocks, dL/dTheta =
sum_t \\bar a_t v_t^T); forward mode as RTRL (Williams and Zipser 1989),
d s_t = sum_v J_t[s][v] d v_{t-1} + V_t[dA] + (d s_t / d x_t) d x_t, contracted with one
tangent.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..calculus.derivation import get_spec
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
        def backward(ctx, dhs, *douts):
            mask, xs, *rest = ctx.saved_tensors
            params = dict(zip(names, rest[S:S + NP], strict=True))
            cache = tuple(rest[S + NP:])
            if torch.is_grad_enabled():  # create_graph: the cache again, as a function of inputs
                _, _, cache = K.forward(params, xs, dict(zip(states, rest[:S], strict=True)),
                                        mask)
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


def _array(t: torch.Tensor):
    return t.detach().numpy()


def _differentiable_backward(K: ModuleType, xs: torch.Tensor, args: list, dhs, douts,
                             input_grad: bool) -> tuple:
    """The derived BPTT as torch operations on a forward recomputed from the inputs (for
    ``create_graph=True``): (dxs, *dstate0, *dparams), differentiable again."""
    states, names = tuple(K.STATE), tuple(K.PARAMS)
    S = len(states)
    params = dict(zip(names, args[S:], strict=True))
    _, _, cache = K.forward(params, xs, dict(zip(states, args[:S], strict=True)), None)
    dstate = {s: torch.zeros_like(args[k]) if d is None else d
              for k, (s, d) in enumerate(zip(states, douts, strict=True))}
    if dhs is None:
        dhs = xs.new_zeros(xs.shape[:2] + (args[0].shape[-1],))
    g = K.backward(params, xs, cache, dhs, dstate, None, input_grad=input_grad)
    return (g.get(K.INPUT_GRAD), *(g[K.STATE0_GRAD[s]] for s in states),
            *(g[p] for p in names))


def _host_function(K: ModuleType, H: ModuleType) -> type[torch.autograd.Function]:
    """The sequence Function over the NumPy-API kernel ``H`` (the cell's numba module): the
    same derivation as :func:`_function`, run by fused loops on the tensors' own memory.
    Backward is the kernel's BPTT; ``jvp`` is the torch kernel's forward mode (``K``)."""
    names = tuple(K.PARAMS)
    states = tuple(K.STATE)
    S = len(states)

    class CellSequenceHost(torch.autograd.Function):
        """(xs, *state0, *params) -> (hs, *final states), on plain CPU tensors."""

        @staticmethod
        def forward(ctx, xs, *args):
            params = {p: _array(a) for p, a in zip(names, args[S:], strict=True)}
            with _threads(H):
                hs, cache = H.forward(params, _array(xs),
                                      {s: _array(a) for s, a in zip(states, args[:S],
                                                                    strict=True)})
            # the final states get their own memory (hs[-1] is the kernel's S_h[T], which its
            # backward reads): nn.LSTM's h_n does not alias its output either
            out = (torch.from_numpy(hs),
                   *(torch.from_numpy(cache["state"][s].copy()) for s in states))
            ctx.cache = cache
            # saved so that autograd's version counters catch an in-place change of an input
            # or of hs (the cache holds views of both) before backward reads them
            ctx.save_for_backward(xs, *args, out[0])
            ctx.save_for_forward(xs, *args)
            return out

        @staticmethod
        def backward(ctx, dhs, *douts):
            xs, *args, _ = ctx.saved_tensors
            if torch.is_grad_enabled():  # create_graph: the torch kernels, differentiable
                return _differentiable_backward(K, xs, args, dhs, douts, ctx.needs_input_grad[0])
            params = {p: _array(a) for p, a in zip(names, args[S:], strict=True)}
            cache = ctx.cache
            if dhs is None:
                dhs = xs.new_zeros(xs.shape[:2] + (args[0].shape[-1],))
            dstate = {s: (np.zeros(args[k].shape, cache["xs"].dtype) if d is None else _array(d))
                      for k, (s, d) in enumerate(zip(states, douts, strict=True))}
            with _threads(H):
                if cache.get("consumed"):  # a second backward (retain_graph): the cache again
                    _, cache = H.forward(params, _array(xs),
                                         {s: _array(a) for s, a in zip(states, args[:S],
                                                                       strict=True)})
                g = H.backward(params, cache, _array(dhs), dstate=dstate,
                               input_grad=ctx.needs_input_grad[0])
            ctx.cache = cache
            dxs = torch.from_numpy(g[K.INPUT_GRAD]) if ctx.needs_input_grad[0] else None
            return (dxs, *(torch.from_numpy(g[K.STATE0_GRAD[s]]) for s in states),
                    *(torch.from_numpy(np.ascontiguousarray(g[p])) for p in names))

        @staticmethod
        def jvp(ctx, dxs, *dargs):
            xs, *args = ctx.saved_tensors
            tangents = [torch.zeros_like(a) if d is None else d
                        for a, d in zip(args, dargs, strict=True)]
            dxs = torch.zeros_like(xs) if dxs is None else dxs
            _, _, ths, tfinal = K.tangent(dict(zip(names, args[S:], strict=True)), xs,
                                          dict(zip(states, args[:S], strict=True)),
                                          dict(zip(names, tangents[S:], strict=True)), dxs,
                                          dict(zip(states, tangents[:S], strict=True)), None)
            return (ths, *(tfinal[s] for s in states))

    CellSequenceHost.__name__ = CellSequenceHost.__qualname__ = f"CellSequenceHost_{H.__name__}"
    return CellSequenceHost


def _threads(H: ModuleType) -> Any:
    """Where the numba kernel ``H`` splits its batch: on torch's own OpenMP team when there
    is one to share (:mod:`derive.torch.openmp` measures why), else on the kernel's threads."""
    from .openmp import runner

    r = runner()
    rt = getattr(H, "rt", None)
    if r is None or not hasattr(rt, "chunk_runner"):  # (a package printed before the hook)
        return contextlib.nullcontext()
    return rt.chunk_runner(r)


@functools.cache
def _for_host(K: ModuleType, H: ModuleType) -> type[torch.autograd.Function]:
    return _host_function(K, H)


BACKENDS = ("auto", "torch", "numba")


def _numba_kernel(spec: CellSpec) -> ModuleType | None:
    """The cell's numba module (built in when printed from this spec, else printed now), or
    None when numba is not installed."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return None
    from ..tools.verify import find_kernel

    return find_kernel(spec, "numba")


def _plain_cpu(tensors: tuple[torch.Tensor, ...]) -> bool:
    """Tensors the numba kernels can read in place: CPU, float32/float64, not wrapped by a
    torch.func transform, not traced by torch.compile."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return False
    dtype = tensors[0].dtype
    return dtype in (torch.float32, torch.float64) and all(
        t.device.type == "cpu" and t.dtype == dtype and not t.is_sparse
        and not torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def sequence(cell: str | Mapping[str, Any] | CellSpec,
             backend: str = "auto") -> Callable[..., tuple]:
    """``f(xs, state0, params, mask=None) -> (hs, final)`` for ``cell``: xs (T, B, n_in),
    state0 {state: (B, n_hidden)}, params {name: tensor} (the cell's own names), mask
    (T, B, 1) booleans true while t < length (states frozen after it, hs zero there).
    Differentiable by the derived BPTT, forward-differentiable by the derived forward mode.

    ``backend``: "torch" runs the cell's torch kernels (any device, every torch.func
    transform); "numba" runs its fused numba loops where the call allows (plain CPU tensors in
    float32/float64, no mask, no torch.func transform) and the torch kernels otherwise;
    "auto" is "numba" when numba is installed, else "torch"."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    spec = get_spec(cell)
    K = load_torch_kernel(spec)
    fn = _for_module(K)
    host = None
    if backend != "torch":
        H = _numba_kernel(spec)
        if H is None and backend == "numba":
            raise ImportError("backend='numba' needs numba: pip install 'derive-rnn[numba]'")
        host = None if H is None else _for_host(K, H)

    def run(xs: torch.Tensor, state0: Mapping[str, torch.Tensor],
            params: Mapping[str, torch.Tensor], mask: torch.Tensor | None = None) -> tuple:
        args = (*(state0[s] for s in K.STATE), *(params[p] for p in K.PARAMS))
        if host is not None and mask is None and _plain_cpu((xs, *args)):
            out = host.apply(xs, *args)
        else:
            out = fn.apply(mask, xs, *args)
        return out[0], dict(zip(K.STATE, out[1:1 + len(K.STATE)], strict=True))

    run.kernel = K  # type: ignore[attr-defined]
    run.host = host  # type: ignore[attr-defined]
    return run


def lengths_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(T, B, 1) booleans, true where t < lengths[b]."""
    t = torch.arange(steps, device=lengths.device)[:, None]
    return (t < lengths.to(t.device)[None, :])[..., None]
