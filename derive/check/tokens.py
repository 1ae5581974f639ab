"""LaTeX math as tokens, for both readers of ``derive check``.

Every token keeps its offset in the file (a verdict points at it). :func:`strip_layout` drops
what only lays the formula out (spacing, sizing, alignment): ``\\left.``/``\\right.`` vanish, so a
bracket may open on one row and close on another. :func:`canon` gives a run of tokens one text,
so ``W_o`` and ``W_{o}``, ``\\tilde s`` and ``\\tilde{s}`` are the same symbol.

The commands this layer knows are the tables below; a new spacing or sizing command is one entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# commands that only lay out, dropped
SPACING = {r"\quad", r"\qquad", r"\displaystyle", r"\textstyle", r"\notag", r"\nonumber",
           r"\medspace", r"\thinspace", r"\thickspace", r"\negthinspace", r"\hfill",
           r"\displaybreak", r"\allowdisplaybreaks", r"\pagebreak", r"\nopagebreak",
           r"\linebreak", r"\nolinebreak", r"\strut", r"\mathstrut", r"\space", r"\enspace"}
ESC_SPACING = {r"\,", r"\;", r"\:", r"\!", r"\>"}
# spacing commands dropped together with their {argument} (\hspace{-117.45pt}, \phantom{=})
SPACING_ARG = {r"\hspace", r"\hskip", r"\vspace", r"\kern", r"\mkern", r"\mskip",
               r"\phantom", r"\hphantom", r"\vphantom"}
# bracket sizes, dropped (the bracket stays)
SIZERS = {r"\left", r"\right", r"\middle", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl",
          r"\bigr", r"\Bigl", r"\Bigr", r"\biggl", r"\biggr", r"\Biggl", r"\Biggr", r"\bigm",
          r"\Bigm"}
# accents and font commands: part of the symbol they decorate (\tilde{s}, \mathbf{W})
ACCENTS = {r"\tilde", r"\hat", r"\bar", r"\vec", r"\dot", r"\ddot", r"\check", r"\breve",
           r"\widetilde", r"\widehat", r"\overline", r"\mathbf", r"\mathit", r"\boldsymbol",
           r"\mathcal", r"\mathsf", r"\mathtt", r"\bm", r"\mathrm", r"\underline", r"\mathbb"}


@dataclass(frozen=True)
class Tok:
    """One token: ``kind`` in cmd | letter | num | char | row; ``pos`` is its offset in the file."""

    kind: str
    text: str
    pos: int

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


_TOKEN = re.compile(r"(?P<ws>\s+)|(?P<row>\\\\)|(?P<cmd>\\[A-Za-z]+)|(?P<esc>\\[^A-Za-z\s])"
                    r"|(?P<space>\\\s)|(?P<num>\d+(?:\.\d+)?)|(?P<letter>[A-Za-z])|(?P<char>.)",
                    re.S)


def tokenize(text: str, offset: int = 0) -> list[Tok]:
    """Tokens of a LaTeX math string, whitespace dropped; ``offset`` is added to positions."""
    out: list[Tok] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "char"
        if kind in ("ws", "space"):
            continue
        if kind == "esc":
            kind = "cmd"
        out.append(Tok(kind, m.group(), m.start() + offset))
    return out


def match_brace(toks: Sequence[Tok], i: int) -> int:
    """Index of the '}' closing the '{' at i (len(toks)-1 when unbalanced)."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "{":
            depth += 1
        elif toks[j].text == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


def canon(toks: Sequence[Tok]) -> str:
    """Canonical text of a token run: single-token groups unwrapped, accents braced, no spaces
    (``W_{o}`` -> ``W_o``, ``\\tilde s`` -> ``\\tilde{s}``)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "{":
            j = match_brace(toks, i)
            inner = canon(toks[i + 1:j])
            out.append(inner if _single(toks[i + 1:j]) else "{" + inner + "}")
            i = j + 1
            continue
        if t.kind == "cmd" and t.text in ACCENTS and i + 1 < len(toks):
            if toks[i + 1].text == "{":
                j = match_brace(toks, i + 1)
                arg = toks[i + 2:j]
                i = j + 1
            else:
                arg = [toks[i + 1]]
                i += 2
            out.append(t.text + "{" + canon(arg) + "}")
            continue
        out.append(t.text)
        if t.kind == "cmd" and i + 1 < len(toks) and toks[i + 1].kind == "letter":
            out.append(" ")
        i += 1
    return "".join(out)


def _single(toks: Sequence[Tok]) -> bool:
    return len(toks) == 1 or (len(toks) >= 2 and toks[0].kind == "cmd" and toks[0].text in ACCENTS
                              and (len(toks) == 2 or (toks[1].text == "{"
                                                      and match_brace(toks, 1) == len(toks) - 1)))


def strip_layout(toks: Sequence[Tok]) -> list[Tok]:
    """Drop spacing, sizing and alignment tokens; ``\\left.`` and ``\\right.`` vanish."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text in SPACING_ARG:
            i += 1
            if i < len(toks) and toks[i].text == "*":
                i += 1
            if i < len(toks) and toks[i].text == "{":
                i = match_brace(toks, i) + 1
            continue
        if t.text in SPACING or t.text in ESC_SPACING or t.text in ("&", "~"):
            i += 1
            if t.text in SPACING and i + 2 < len(toks) and toks[i].text == "[" and \
                    toks[i + 2].text == "]":  # \displaybreak[1]
                i += 3
            continue
        if t.text in SIZERS:
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and nxt.text == ".":
                i += 2
                continue
            if nxt is not None and nxt.text in (r"\{", r"\}", r"\lbrace", r"\rbrace"):
                i += 1
                continue
            i += 1
            continue
        out.append(t)
        i += 1
    return out


def spelled(toks: Sequence[Tok]) -> str:
    """The tokens as the file spells them, with its word breaks (``\\text{when }`` -> 'when'):
    a space where the file has a gap, its row breaks and alignment already dropped."""
    out = ""
    for k, t in enumerate(toks):
        if k and t.pos > toks[k - 1].end:
            out += " "
        out += t.text
    return out
