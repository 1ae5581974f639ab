"""Kernel code generation: a derivation lowered to statements, printed per backend.

``render_kernel`` / ``kernel_files`` / ``package_files`` give the text of ``generated/``'s NumPy
modules; :func:`load_kernel` prints any cell (a built-in name, a spec dict or a
:class:`~derive.spec.CellSpec`) for a backend and imports the result, for tests and tools.
"""

from .load import load_kernel
from .numpy_backend import environment, kernel_files, package_files, render_kernel

__all__ = ["environment", "kernel_files", "load_kernel", "package_files", "render_kernel"]
