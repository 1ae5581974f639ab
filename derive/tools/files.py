"""How derive writes files: whole or not at all, with the mode the umask gives.

* :func:`write_file` writes one file atomically (a temporary file in the same folder, then
  ``os.replace``): a reader sees the old or the new content, an interrupted write leaves
  nothing behind. A symlink is followed: its target is written, the link stays.
* :func:`write_tree` writes a set of files into a folder as one change: it stages a copy of the
  folder with every change applied, then swaps the two folders (``renameat2(RENAME_EXCHANGE)``
  where Linux offers it, else two renames), so a failed or interrupted run leaves the old
  folder whole, never a mix of old and new files, and no temporary files.

Created files get ``0o666 & ~umask`` and folders ``0o777 & ~umask`` (``mkstemp`` alone would
give 0600 whatever the umask).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_with(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Write ``path`` atomically through ``write(tmp_path)``; returns the path written (the
    target of a symlink)."""
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


def write_file(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8, ``\\n`` line ends)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)

    return write_with(path, write)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def write_tree(files: Mapping[str, str], out: str | os.PathLike[str]) -> list[str]:
    """Make the folder ``out`` hold ``files`` (relative path -> text), changing only the files
    that differ, as one change (see the module docstring). Files of ``out`` not in ``files``
    are kept. Returns the relative paths written, in order."""
    out = Path(os.path.realpath(out))
    changed = [rel for rel, text in files.items() if _read(out / rel) != text]
    if not changed:
        return []
    mask = _umask()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".staged", dir=out.parent))
    old: Path | None = None
    try:
        if out.exists():
            shutil.copytree(out, stage, symlinks=True, dirs_exist_ok=True)
            shutil.copystat(out, stage)
        else:
            os.chmod(stage, 0o777 & ~mask)
        for rel in changed:
            p = stage / rel
            if not p.parent.exists():
                p.parent.mkdir(parents=True)
                os.chmod(p.parent, 0o777 & ~mask)
            if p.is_symlink():
                p.unlink()
            with open(p, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(files[rel])
            os.chmod(p, 0o666 & ~mask)
        if not out.exists():
            os.rename(stage, out)
        elif _exchange(stage, out):
            old = stage  # the old folder now lies at the staging path
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.rmdir(old)
            os.rename(out, old)
            os.rename(stage, out)
    except BaseException:
        if stage.exists() and stage != old:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return changed


def _read(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


__all__ = ["write_file", "write_tree", "write_with"]
