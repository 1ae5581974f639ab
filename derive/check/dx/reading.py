"""A file read by the d(x) reader: its display math (:mod:`derive.check.dx.blocks`), the
equation chains (:mod:`derive.check.dx.chains`) and which lines are out of scope
(:mod:`derive.check.dx.scope`), as one value (:class:`Document`).

**What a line is.** Every right-hand side after a relation of a chain ``lhs = r_1 = r_2 ...`` is
a line (1-based within its equation); each is compared with the engine's value of the
*left-hand side*, never with the previous line. The equation's ``tag`` is its ``\\tag{N}`` (or
seed 001's trailing ``\\quad (N)``) as a string, else its 1-based index among the file's
equations (an int).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..report import SkippedLine
from ..source import Positions
from .blocks import find_blocks
from .chains import Chain, chains
from .scope import skip_reason


@dataclass(frozen=True)
class Document:
    """A file's equations: ``skipped`` rows (headings), ``problems`` ((offset, message): what
    could not be split into equations) and ``skips`` ((equation, line) -> the reason it is not
    judged)."""

    text: str
    fmt: str
    source: str
    pos: Positions
    chains: tuple[Chain, ...]
    skipped: int
    problems: tuple[tuple[int, str], ...]
    skips: Mapping[tuple[int, int], str]

    def tag(self, idx: int) -> str | int:
        """The tag of equation ``idx`` (1-based): its number as written, else ``idx``."""
        ch = self.chains[idx - 1]
        return ch.tag if ch.tag is not None else idx

    def judged(self, idx: int) -> list[int]:
        """The lines of equation ``idx`` that are judged (1-based)."""
        return [k for k in range(1, len(self.chains[idx - 1].rhs) + 1)
                if (idx, k) not in self.skips]


def read_document(text: str, fmt: str, source: str) -> Document:
    """The equations of a file (``fmt``: tex | md)."""
    blocks, problems = find_blocks(text, fmt)
    cs, skipped, more = chains(blocks)
    skips = {}
    for idx, ch in enumerate(cs, 1):
        for k in range(1, len(ch.rhs) + 1):
            why = skip_reason(ch, k)
            if why is not None:
                skips[(idx, k)] = why
    return Document(text, fmt, source, Positions(text), tuple(cs), skipped,
                    tuple(sorted(problems + more)), skips)


def skipped_lines(doc: Document) -> list[SkippedLine]:
    """The lines not judged, each with its reason."""
    pos = doc.pos
    out = []
    for (idx, k), why in sorted(doc.skips.items()):
        ch = doc.chains[idx - 1]
        rhs = ch.rhs[k - 1]
        anchor = rhs[0].pos if rhs else (ch.lhs[0].pos if ch.lhs else 0)
        out.append(SkippedLine(idx, doc.tag(idx), k, why, pos.span(ch.lhs), pos.span(rhs),
                               pos(anchor), ch.label))
    return out
