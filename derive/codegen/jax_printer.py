"""The JAX printer: IR expressions as ``jax.numpy`` code of the module alias ``_jnp``.

The functional torch printer (:class:`~derive.codegen.torch_printer.TorchPrinter`) with JAX's
table: the activations' ``jax`` facets, ``.at[...].add`` for a write into columns,
``jnp.concatenate`` and ``jnp.zeros``. Everything else prints as it does for torch and NumPy.
"""

from __future__ import annotations

from .ir import Cols, Expr, Var
from .torch_printer import TorchPrinter


class JaxPrinter(TorchPrinter):
    """Prints IR expressions as JAX code (``_jnp`` is jax.numpy, ``_jax`` is jax)."""

    lib = "jax"
    module = "_jnp"

    def add_into(self, place: Expr, value: str) -> str:
        if isinstance(place, Var):
            return f"{place.ident} = {place.ident} + {value}"
        assert isinstance(place, Cols) and place.time is None, place
        return f"{place.array} = {place.array}.at[:, {place.lo}:{place.hi}].add({value})"

    def concat(self, parts: list[str]) -> str:
        if len(parts) == 1:
            return parts[0]
        return f"_jnp.concatenate(({', '.join(parts)}), axis=1)"

    def zeros(self, shape: str, like: str) -> str:
        return f"_jnp.zeros({shape}, {like}.dtype)"

    def where(self, cond: str, a: str, b: str) -> str:
        return f"_jnp.where({cond}, {a}, {b})"
