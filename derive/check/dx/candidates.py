"""The (cell, notation) contexts a file is judged under: the given ones, or every built-in cell
under every shipped notation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...calculus.derivation import Derivation, derive
from ...spec import CellSpec, SpecError
from ..errors import CheckError
from .context import Context


def load_cell(cell: str | Mapping[str, Any] | CellSpec | Derivation) -> Derivation:
    """A built-in cell's name, a spec file (.toml/.json, read as every command reads one:
    :func:`derive.spec.files.resolve_cell`), a spec dict or a CellSpec, derived."""
    if isinstance(cell, Derivation):
        return cell
    try:
        if isinstance(cell, str):
            from ...spec.files import resolve_cell

            cell = resolve_cell(cell)
        return derive(cell)  # type: ignore[arg-type]
    except SpecError as exc:
        raise CheckError(str(exc)) from None


def candidates(cell: Any = None, notation: Any = None) -> list[Context]:
    """The (cell, notation) contexts to try: the given ones, or every built-in cell under every
    shipped notation (notations naming every symbol of a cell alike are one context, the others
    its ``aliases``)."""
    from ...printing.notation import NotationError, available, load
    from ...spec.cells import BUILTIN

    cells = [load_cell(cell)] if cell is not None else [derive(c) for c in BUILTIN]
    if notation is not None:
        try:
            notes = [load(notation)]
        except NotationError as exc:
            raise CheckError(str(exc)) from None
    else:
        notes = [load(n) for n in available()]
    groups: dict[tuple, tuple[Derivation, dict[str, str], list[str]]] = {}
    for d in cells:
        for note in notes:
            try:
                names = note.names(d.spec)
            except NotationError as exc:
                if notation is not None:
                    raise CheckError(str(exc)) from None
                continue
            key = (d.name, tuple(sorted(names.items())))
            groups.setdefault(key, (d, names, []))[2].append(note.name)
    return [Context(d, names, alike[0], alike[1:]) for d, names, alike in groups.values()]
