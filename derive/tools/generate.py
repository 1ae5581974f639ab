"""What ``derive generate`` writes: every file of ``generated/``, as text, and how it is written.

:func:`outputs` maps paths relative to ``generated/`` to their full text; it is the single
source for the CLI (``derive generate [--check]``) and for the golden test that fails when the
checked-in ``generated/`` is stale. Emitters: NumPy kernels (:mod:`derive.codegen`), the optional
numba kernels (:mod:`derive.codegen.numba_backend`) and LaTeX documents
(:mod:`derive.document.latex_doc`).
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..calculus.derivation import cells as builtin_cells
from ..resources import GENERATED, ROOT, TEMPLATES  # noqa: F401  (where generate writes)


def outputs(cells: Iterable[str] | None = None) -> dict[str, str]:
    """Relative path -> text of every generated file for the given cells (default: all)."""
    from .. import codegen
    from ..codegen import numba_backend
    from ..document import latex_doc

    names = list(cells) if cells is not None else builtin_cells()
    files: dict[str, str] = {}
    for name in names:
        files.update(codegen.kernel_files(name))
        files.update(numba_backend.kernel_files(name))
        files.update(latex_doc.generated_files(name))
    # the package index always lists every built-in kernel, whichever cells are regenerated
    files.update(codegen.package_files(builtin_cells()))
    return dict(sorted(files.items()))


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def stale(files: dict[str, str], out: Path) -> dict[str, str]:
    """Files that differ from what is on disk under ``out``: path -> unified diff."""
    diffs: dict[str, str] = {}
    for rel, text in files.items():
        p = out / rel
        old = p.read_text(encoding="utf-8") if p.exists() else None
        if old != text:
            diffs[rel] = "".join(difflib.unified_diff(
                (old or "").splitlines(True), text.splitlines(True),
                fromfile=f"{rel} (on disk)" if old is not None else "/dev/null",
                tofile=f"{rel} (regenerated)", n=1))
    return diffs


def write_all(files: dict[str, str], out: Path) -> list[str]:
    """Write every file that changed; returns the relative paths written."""
    changed = list(stale(files, out))
    for rel in changed:
        write_atomic(out / rel, files[rel])
    return changed
