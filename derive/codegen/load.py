"""Print a cell's kernel for one backend and import it, without writing into a kernel package
of the project.

Tests, ``bench/fuzz.py`` and tools use this to run the kernels of cells that are not built in.
Each distinct NumPy kernel text becomes a private package of the process (a folder in a
temporary directory on ``sys.path``, named after the text's hash) holding ``_runtime.py``, the
NumPy module and, when asked for, the numba module: the same layout as ``derive generate --out``
writes, with the same relative imports, imported once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ..calculus.derivation import get_spec
from ..spec import CellSpec
from .naming import module_name

BACKENDS = ("numpy", "numba", "torch", "jax")
_FOLDER: Path | None = None


def _folder() -> Path:
    global _FOLDER
    if _FOLDER is None:
        _FOLDER = Path(tempfile.mkdtemp(prefix="derive-kernels-"))
        sys.path.insert(0, str(_FOLDER))
    return _FOLDER


def _package(numpy_text: str) -> str:
    """The private package holding this NumPy kernel text (made on first use)."""
    from .numpy_backend import package_files

    name = f"_derive_kernels_{hashlib.sha1(numpy_text.encode()).hexdigest()[:16]}"
    root = _folder() / name
    if not root.is_dir():
        root.mkdir()
        (root / "__init__.py").write_text('"""Kernels printed by derive.codegen.load."""\n')
        (root / "_runtime.py").write_text(package_files([])["_runtime.py"])
    return name


def _numba_runtime() -> str:
    """The private package's ``_numba_runtime.py``: a re-export of the built-in package's when
    that one is this very text (so every cell of the process shares its compiled helpers, and
    the built-in kernels' disk cache), else the text itself."""
    from ..resources import KERNELS_PACKAGE
    from .numba_backend import render_numba_runtime

    text = render_numba_runtime()
    found = importlib.util.find_spec(KERNELS_PACKAGE)
    for folder in (found.submodule_search_locations or []) if found else []:
        path = Path(folder) / "_numba_runtime.py"
        if path.is_file() and path.read_text() == text:
            return (f'"""The helpers of {KERNELS_PACKAGE}._numba_runtime, shared."""\n\n'
                    f"from {KERNELS_PACKAGE}._numba_runtime import *  # noqa: F403\n"
                    f"from {KERNELS_PACKAGE}._numba_runtime import __all__  # noqa: F401\n")
    return text


def load_kernel(cell: str | Mapping[str, Any] | CellSpec, backend: str = "numpy") -> ModuleType:
    """The kernel module of ``cell`` for ``backend``, printed and imported.

    'numpy' and 'numba' have the API of the built-in kernels (``derive.kernels.lstm``: forward,
    backward, rtrl, rtrl_step, state_jacobian); 'torch' and 'jax' are the functional modules
    behind :mod:`derive.torch` and :mod:`derive.jax` (:mod:`derive.codegen.torch_backend`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    spec = get_spec(cell)
    if backend == "torch":
        from .torch_backend import load_torch_kernel

        return load_torch_kernel(spec)
    if backend == "jax":
        from .jax_backend import load_jax_kernel

        return load_jax_kernel(spec)
    from .numpy_backend import render_kernel

    numpy_text = render_kernel(spec)
    pkg = _package(numpy_text)
    mod = module_name(spec.name)
    files = {mod: numpy_text}
    if backend == "numba":
        from .numba_backend import render_numba_kernel

        mod += "_numba"
        files[mod] = render_numba_kernel(spec)
        files["_numba_runtime"] = _numba_runtime()
    for stem, text in files.items():
        path = _folder() / pkg / f"{stem}.py"
        if not path.exists():
            path.write_text(text)
    importlib.invalidate_caches()
    return importlib.import_module(f"{pkg}.{mod}")
