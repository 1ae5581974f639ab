"""What ``derive generate`` writes, as text, and how.

Two kinds of output folder, one rule for each:

* **the built-in kernels** (:data:`GENERATED`, the package ``derive.kernels``; ``generated/`` in
  the repository): :func:`outputs` gives, for every built-in cell, its NumPy and numba kernels
  and its LaTeX article (``latex/<cell>.tex``), plus the package's ``__init__`` and runtime. It
  is the single source for ``derive generate [--check]`` and for the golden test that fails
  when the checked-in folder is stale.
* **a kernel package of the user's cells** (``derive generate SPEC... --out DIR``):
  :func:`package_outputs` gives the NumPy and numba kernel of each cell, the runtime and an
  ``__init__``: a package that imports on its own from wherever it lies (relative imports
  only), with the API of the built-in kernels. LaTeX is not part of it (``derive latex``).

Writing goes through :func:`derive.tools.files.write_tree`: staged, then swapped in whole.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..calculus.derivation import cells as builtin_cells
from ..calculus.derivation import get_spec
from ..codegen.naming import module_name
from ..resources import CHECKOUT, GENERATED, KERNELS_PACKAGE  # noqa: F401  (where it writes)
from ..spec import CellSpec, SpecError
from .files import write_file, write_tree


def _kernels(cell: str | CellSpec) -> dict[str, str]:
    """A cell's two kernel modules: ``<module>.py`` (NumPy) and ``<module>_numba.py``."""
    from ..codegen.numba_backend import render_numba_kernel
    from ..codegen.numpy_backend import render_kernel

    spec = get_spec(cell)
    mod = module_name(spec.name)
    return {f"{mod}.py": render_kernel(cell), f"{mod}_numba.py": render_numba_kernel(cell)}


def _numba_runtime() -> dict[str, str]:
    """The package's ``_numba_runtime.py``, the helpers its numba kernels share."""
    from ..codegen.numba_backend import render_numba_runtime

    return {"_numba_runtime.py": render_numba_runtime()}


def outputs(cells: Iterable[str] | None = None) -> dict[str, str]:
    """Relative path -> text of the built-in kernel package's files for the given built-in
    cells (default: all)."""
    from .. import codegen
    from ..document import latex_doc

    names = list(cells) if cells is not None else builtin_cells()
    files: dict[str, str] = {}
    for name in names:
        files.update(_kernels(name))
        files.update(latex_doc.generated_files(name))
    # the package index always lists every built-in kernel, whichever cells are regenerated
    files.update(codegen.package_files(builtin_cells()))
    files.update(_numba_runtime())
    return dict(sorted(files.items()))


def package_outputs(specs: Sequence[CellSpec]) -> dict[str, str]:
    """Relative path -> text of a kernel package holding ``specs``' kernels (module names from
    :func:`derive.codegen.naming.module_name`; two cells may not share one)."""
    from .. import codegen

    seen: dict[str, str] = {}
    for s in specs:
        mod = module_name(s.name)
        if mod in seen and seen[mod] != s.digest:
            other = [t.name for t in specs if module_name(t.name) == mod]
            raise SpecError(f"cells {other[0]!r} and {s.name!r} would both be the kernel module "
                            f"{mod!r}; give one of them another name")
        seen[mod] = s.digest
    files: dict[str, str] = {}
    for s in specs:
        files.update(_kernels(s))
    files.update(codegen.package_files(list(seen)))
    files.update(_numba_runtime())
    return dict(sorted(files.items()))


def cell_specs(cells: Iterable[str | CellSpec]) -> list[CellSpec]:
    return [get_spec(c) for c in cells]


def stale(files: dict[str, str], out: Path) -> dict[str, str]:
    """Files that differ from what is on disk under ``out``: path -> unified diff."""
    diffs: dict[str, str] = {}
    for rel, text in files.items():
        p = out / rel
        try:
            old = p.read_text(encoding="utf-8") if p.exists() else None
        except (OSError, UnicodeDecodeError):
            old = ""
        if old != text:
            diffs[rel] = "".join(difflib.unified_diff(
                (old or "").splitlines(True), text.splitlines(True),
                fromfile=f"{rel} (on disk)" if old is not None else "/dev/null",
                tofile=f"{rel} (regenerated)", n=1))
    return diffs


def write_all(files: dict[str, str], out: Path) -> list[str]:
    """Write every file that changed, all at once (staged, then swapped in); returns the
    relative paths written."""
    return write_tree(files, out)


def write_atomic(path: Path, text: str) -> None:
    """Write one file so that readers see the old or the new content, never a partial one."""
    write_file(path, text)


__all__ = ["GENERATED", "cell_specs", "outputs", "package_outputs", "stale", "write_all",
           "write_atomic"]
