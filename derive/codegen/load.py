"""Print a cell's kernel for one backend and import it, without writing into ``generated/``.

Tests, ``bench/fuzz.py`` and tools use this to run the kernels of cells that are not built in.
Each distinct printed text is imported once per process, as a module of its own name in a
private folder of the process (the numba module imports its NumPy sibling by that name).
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ..calculus.derivation import get_spec
from ..spec import CellSpec

BACKENDS = ("numpy", "numba")
_FOLDER: Path | None = None


def _folder() -> Path:
    global _FOLDER
    if _FOLDER is None:
        _FOLDER = Path(tempfile.mkdtemp(prefix="derive-kernels-"))
        sys.path.insert(0, str(_FOLDER))
    return _FOLDER


def _import(text: str, stem: str) -> ModuleType:
    name = f"_derive_{stem}_{hashlib.sha1(text.encode()).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    path = _folder() / f"{name}.py"
    if not path.exists():
        path.write_text(text)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def load_kernel(cell: str | Mapping[str, Any] | CellSpec, backend: str = "numpy") -> ModuleType:
    """The kernel module of ``cell`` for ``backend`` ('numpy' or 'numba'), printed and imported.

    It has the API of ``generated.<cell>`` (forward, backward, rtrl, rtrl_step, state_jacobian).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    spec = get_spec(cell)
    from .numpy_backend import render_kernel

    numpy_text = render_kernel(spec)
    numpy_mod = _import(numpy_text, "numpy")
    if backend == "numpy":
        return numpy_mod
    from .numba_backend import render_numba_kernel

    return _import(render_numba_kernel(spec, numpy_module=numpy_mod.__name__), "numba")
