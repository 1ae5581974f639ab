"""The torch printer: IR expressions (:mod:`derive.codegen.ir`) as functional torch code.

A variant of :class:`~derive.codegen.numpy_printer.NumpyPrinter` (SymPy's pattern: a subclass
that overrides a few ``_print_<Class>`` methods and a table): torch tensors take NumPy's
operators (``@``, ``.T``, ``[..., None]``, ``.sum(axis=...)``), so only what differs is printed
here:

* activations come from the registry's ``torch`` facets (:meth:`Activation.facet`, which
  raises for a record without them: nothing defaults to the NumPy text);
* the kernels are functional (no ``out=``, no writes into preallocated arrays), so that
  ``torch.func`` transforms (vmap, jacrev, jvp) run through them, and one step's value of an
  array with a time axis is a local of the step: the setting ``steps`` maps such an array to
  its local (``A_x[t, :, 0:n]`` prints ``A_x_t[:, 0:n]``; the JAX kernels' ``lax.scan`` bodies
  have no ``t`` to index with);
* a write into columns of an array (:meth:`add_into`) makes a new array;
* a sum of products of adjoint blocks with consecutive row blocks of one matrix
  (``a @ W[0:2n] + b @ W[2n:3n]``: the GRU's carried adjoint, whose W_hn block reads r_t times
  its own adjoint) prints as one product of the blocks side by side (``cat((a, b)) @ W[0:3n]``):
  one matrix product per step, as autodiff of the forward's one product makes it. Measured
  with JAX on the GRU at c3 (T=100, B=64, H=256), both variants and ``jax.grad`` through
  ``lax.scan`` interleaved in one process: two products 0.931x jax.grad's time in float32 and
  0.946x in float64, one product 0.905x and 0.932x. The setting ``merge_products``.

:class:`~derive.codegen.jax_printer.JaxPrinter` is the same printer with JAX's table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec.activations import ACTIVATIONS
from .ir import ActDeriv, ActValue, At, BatchOuter, Cols, Dot, Expr, Signed, Var
from .numpy_printer import ADD, ATOM, MUL, NumpyPrinter, _is_call


class TorchPrinter(NumpyPrinter):
    """Prints IR expressions as torch code of the module alias ``_torch``."""

    _default_settings: dict = {"steps": {}, "merge_products": True}
    lib = "torch"  # the activation facets read: torch, torch_deriv, torch_deriv_from_output
    module = "_torch"  # the printed module's name of the array library

    # -- arrays with a time axis: their value at t is a local of the step -------------------
    def _step_local(self, array: str, time: str | None) -> str | None:
        if time is None:
            return None
        return self.settings["steps"].get(array)

    def _print_Cols(self, e: Cols) -> tuple[str, int]:
        local = self._step_local(e.array, e.time)
        if local is None:
            return super()._print_Cols(e)
        return f"{local}[:, {e.lo}:{e.hi}]", ATOM

    def _print_At(self, e: At) -> tuple[str, int]:
        local = self._step_local(e.array, e.time)
        return (local, ATOM) if local is not None else super()._print_At(e)

    # -- one product for consecutive row blocks of one matrix -------------------------------
    def _print_Signed(self, e: Signed) -> tuple[str, int]:
        if not self.settings["merge_products"]:
            return super()._print_Signed(e)
        terms: list[tuple[int, Expr]] = []
        run: list[Dot] = []

        def close() -> None:
            if len(run) == 1:
                terms.append((1, run[0]))
            elif run:
                terms.append((1, _Merged(tuple(run))))
            run.clear()

        for sign, t in e.terms:
            if sign > 0 and isinstance(t, Dot) and t.transposed and t.rows is not None and (
                    not run or (run[-1].matrix == t.matrix and run[-1].rows[1] == t.rows[0])):
                run.append(t)
                continue
            close()
            if sign > 0 and isinstance(t, Dot) and t.transposed and t.rows is not None:
                run.append(t)
            else:
                terms.append((sign, t))
        close()
        return super()._print_Signed(Signed(tuple(terms)))

    def _print__Merged(self, e: _Merged) -> tuple[str, int]:
        first, last = e.dots[0], e.dots[-1]
        blocks = self.concat([self.doprint(d.vec) for d in e.dots])
        blocks = blocks if len(e.dots) == 1 else f"({blocks})"
        return f"{blocks} @ {first.matrix}[{first.rows[0]}:{last.rows[1]}]", MUL

    # -- reductions -------------------------------------------------------------------------
    def _print_BatchOuter(self, e: BatchOuter) -> tuple[str, int]:
        """sum_b a_b v_b^T (BPTT's dL/dW = sum_t \\bar a_t v_t^T, one step's part)."""
        if not e.v_batched:
            axis = "(0, 1)" if e.axes == 2 else "0"
            a = self.operand(e.a, ATOM)
            return f"{self.module}.outer({a}.sum(axis={axis}), {self.doprint(e.v)})", ATOM
        if e.axes == 2:
            a, v = self.operand(e.a, ATOM), self.operand(e.v, ATOM)
            return (f"{a}.reshape(-1, {a}.shape[-1]).T @ {v}.reshape(-1, {v}.shape[-1])",
                    MUL)
        return f"{self.operand(e.a, ATOM)}.T @ {self.operand(e.v, MUL, right=True)}", MUL

    # -- activations from the registry's backend facets -------------------------------------
    def _print_ActValue(self, e: ActValue) -> tuple[str, int]:
        fmt = ACTIVATIONS[e.fn].facet(self.lib)
        if _is_call(fmt):
            return fmt.format(z=self.doprint(e.z)), ATOM
        return fmt.format(z=self.operand(e.z, ATOM)), ADD

    def _print_ActDeriv(self, e: ActDeriv) -> tuple[str, int]:
        act = ACTIVATIONS[e.fn]
        if e.from_output:
            fmt = act.facet(f"{self.lib}_deriv_from_output")
            return fmt.format(y=self.operand(e.arg, ATOM)), ADD
        return act.facet(f"{self.lib}_deriv").format(z=self.operand(e.arg, ATOM)), ADD

    # -- statements the NumPy kernels write in place ----------------------------------------
    def add_into(self, place: Expr, value: str) -> str:
        """``place += value`` as a new array bound to the place's name: the whole array
        (``Var``) or columns lo:hi of a (batch, columns) array (``Cols`` without time)."""
        if isinstance(place, Var):
            return f"{place.ident} = {place.ident} + {value}"
        assert isinstance(place, Cols) and place.time is None, place
        a = place.array
        return (f"{a} = {self.module}.cat(({a}[:, :{place.lo}], {a}[:, {place.lo}:{place.hi}] "
                f"+ {value}, {a}[:, {place.hi}:]), 1)")

    def concat(self, parts: list[str]) -> str:
        """Blocks of columns side by side: one step's row of a buffer of adjoints."""
        if len(parts) == 1:
            return parts[0]
        return f"{self.module}.cat(({', '.join(parts)}), 1)"

    def zeros(self, shape: str, like: str) -> str:
        """Zeros of ``shape`` in the dtype and device of the array ``like``."""
        return f"{like}.new_zeros({shape})"

    def where(self, cond: str, a: str, b: str) -> str:
        return f"{self.module}.where({cond}, {a}, {b})"


@dataclass(frozen=True)
class _Merged(Expr):
    """Products M[r_k]^T v_k over consecutive row blocks r_k of one matrix, printed as one
    (a printing device of :meth:`TorchPrinter._print_Signed`, not an IR node)."""

    dots: tuple[Dot, ...]
