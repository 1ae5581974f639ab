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
* a write into columns of an array (:meth:`add_into`) makes a new array.

:class:`~derive.codegen.jax_printer.JaxPrinter` is the same printer with JAX's table.
"""

from __future__ import annotations

from ..spec.activations import ACTIVATIONS
from .ir import ActDeriv, ActValue, At, BatchOuter, Cols, Expr, Var
from .numpy_printer import ADD, ATOM, MUL, NumpyPrinter, _is_call


class TorchPrinter(NumpyPrinter):
    """Prints IR expressions as torch code of the module alias ``_torch``."""

    _default_settings: dict = {"steps": {}}
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
