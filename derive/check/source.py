"""Positions in the checked file: an offset as (line, column), and a token run as the file
spells it (what a verdict quotes and where it points)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from .tokens import Tok, spelled


class Positions:
    """Line and column of the offsets of one text (1-based)."""

    def __init__(self, text: str):
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self.text = text

    def __call__(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, pos) - 1
        return k + 1, pos - self.starts[k] + 1

    def where(self, pos: int) -> str:
        """``line L, column C`` of an offset."""
        line, col = self(pos)
        return f"line {line}, column {col}"

    def span(self, toks: Sequence[Tok]) -> str:
        """The tokens as LaTeX: the file's own spacing, row breaks and alignment dropped."""
        return spelled(toks)
