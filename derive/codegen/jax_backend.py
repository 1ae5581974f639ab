"""The JAX backend: the functional kernel of :mod:`derive.codegen.torch_backend` printed with
:class:`~derive.codegen.jax_printer.JaxPrinter` into ``templates/jax/kernel.py.j2``, each step a
``lax.scan`` body (forward; backward as a reversed scan carrying the adjoints and the
accumulated gradients; forward mode carrying the states and their tangents).

Printed on demand for the same reasons as the torch kernel (its module docstring): any cell
must work, and the text is cheap to print and import once per process.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from ..calculus.derivation import get_spec
from ..spec import CellSpec
from .jax_printer import JaxPrinter
from .torch_backend import FunctionalKernel, import_text, render


class JaxKernel(FunctionalKernel):
    """The template context of one cell's JAX module."""

    printer_class = JaxPrinter
    template = "jax/kernel.py.j2"


def render_jax_kernel(cell: str | CellSpec) -> str:
    """The text of a cell's JAX module."""
    return render(cell, JaxKernel)


def load_jax_kernel(cell: str | Mapping[str, Any] | CellSpec) -> ModuleType:
    """A cell's JAX module, printed and imported once per process."""
    return import_text(render_jax_kernel(get_spec(cell)), "jax")


__all__ = ["JaxKernel", "load_jax_kernel", "render_jax_kernel"]
