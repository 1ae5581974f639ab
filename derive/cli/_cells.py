"""The cell argument of every command: a built-in cell's name or a cell spec file."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..calculus.derivation import Derivation

CELL_HELP = "a built-in cell (derive list) or a cell spec file (.toml or .json)"


def derivation(arg: str) -> Derivation:
    """The derivation of a built-in cell or of the cell in a spec file; a bad argument raises
    :class:`derive.spec.SpecError` with a message naming the file and the field or line."""
    from ..calculus.derivation import derive
    from ..spec.cells import BUILTIN
    from ..spec.files import resolve_cell

    if arg in BUILTIN:
        return derive(arg)  # cached by name
    return derive(resolve_cell(arg))
