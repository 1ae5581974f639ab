"""The display math of a file: of a ``.tex`` file (``equation``, ``align``, ``gather``,
``multline``, ``eqnarray`` and their starred forms, ``\\[ \\]``, ``$$ $$``: the environments of
:data:`derive.check.dx.tables.DISPLAY_ENVS`) or of Markdown (``$$ $$`` and ``\\[ \\]`` outside code
fences). Inline ``$...$`` is prose to this reader and is ignored."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .tables import DISPLAY_ENVS


@dataclass(frozen=True)
class Block:
    """One display-math block: its content and the content's offset in the file."""

    text: str
    start: int
    env: str


_OPEN = re.compile(r"\$\$|\\\[|\\begin\{(?P<env>(?:" + "|".join(DISPLAY_ENVS) + r")\*?)\}")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_COMMENT = re.compile(r"(?<!\\)%[^\n]*")


def blank(text: str, spans: Iterable[re.Match]) -> str:
    """``text`` with the spans blanked (newlines kept): offsets are preserved."""
    chars = list(text)
    for m in spans:
        for k in range(m.start(), m.end()):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)


def find_blocks(text: str, fmt: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """Display-math blocks of a file (``fmt``: tex | md) and problems found while scanning them
    ((offset, message), e.g. an unclosed ``$$``). Offsets are preserved: comments and code
    fences are blanked, not removed."""
    scan = blank(text, _FENCE.finditer(text)) if fmt == "md" else text
    if fmt == "tex":
        scan = blank(scan, _COMMENT.finditer(scan))
    blocks: list[Block] = []
    problems: list[tuple[int, str]] = []
    pos = 0
    while True:
        m = _OPEN.search(scan, pos)
        if not m:
            break
        if m.group() == "$$":
            close, env = "$$", "$$"
        elif m.group() == r"\[":
            close, env = r"\]", r"\[ \]"
        else:
            env = m.group("env")
            close = r"\end{" + env + "}"
        end = scan.find(close, m.end())
        if end < 0:
            problems.append((m.start(), f"{m.group()!s} is never closed (expected {close})"))
            break
        blocks.append(Block(scan[m.end():end], m.end(), env))
        pos = end + len(close)
    return blocks, problems
