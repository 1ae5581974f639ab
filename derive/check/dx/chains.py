"""The rows of display math grouped into equation *chains* ``lhs = rhs_1 = rhs_2 ...``.

Every block is tokenised (each token keeps its offset in the file), its layout dropped
(:func:`derive.check.tokens.strip_layout`), and split into rows at ``\\\\`` (outside braces and
outside a matrix environment). Then, row by row:

* a row with something before its first top-level relation starts a chain; a row starting with
  ``=`` adds right-hand sides to the last one; a row without a relation continues the last
  right-hand side;
* a row without a relation before any chain, or after a row that ends a numbered equation
  (``\\label`` or ``\\tag``), is held: it is the left-hand side of the next row when that row
  starts with a relation (a long left-hand side set on its own row), else a heading (seed 001's
  ``\\mathbf{3.4} ...``), skipped and counted;
* the relations (:data:`derive.check.dx.tables.RELATIONS`: ``=``, ``\\le``, ``\\approx``, ``<``,
  ``\\sim``, ...) all split rows and are recorded per right-hand side (:attr:`Chain.rels`); a
  top-level ``\\text{when ...}`` (``if``, ``where``, ``for``, ...:
  :data:`~derive.check.dx.tables.CONDITION_WORDS`) starts a side condition whose ``=`` are prose.

Equation numbers: ``\\tag{N}`` and seed 001's trailing ``\\quad (N)``; ``\\label{..}`` is kept.
Each belongs to the last chain that starts before it. Trailing punctuation of a right-hand side
ends a sentence, not the mathematics, and is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..tokens import Tok, match_brace, spelled, strip_layout, tokenize
from .atoms import match_activation
from .blocks import Block, blank
from .tables import CONDITION_WORDS, INNER_ENVS, RELATIONS, RESTRICTING, TEXT


@dataclass(frozen=True)
class Chain:
    """One equation: ``lhs = rhs[0] = rhs[1] ...`` as token runs."""

    lhs: tuple[Tok, ...]
    rhs: tuple[tuple[Tok, ...], ...]
    block: int
    tag: str | None = None
    label: str | None = None
    restricted: bool = False  # the block mentions A_{p \neq g}: A ranges over other gates' params
    anchor: Tok | None = None  # the first '=' (where an empty side is reported)
    rels: tuple[str, ...] = ()  # the relation before each rhs: '=', '\le', ...

    @property
    def pos(self) -> int:
        return self.lhs[0].pos if self.lhs else (self.rhs[0][0].pos if self.rhs and self.rhs[0]
                                                 else 0)


@dataclass
class _Draft:
    """A chain while its block's rows are read (frozen into a :class:`Chain` at the end)."""

    lhs: list[Tok]
    anchor: Tok
    first: int  # offset of its first row, to attribute tags and labels
    rhs: list[list[Tok]] = field(default_factory=list)
    rels: list[str] = field(default_factory=list)
    tag: str | None = None
    label: str | None = None

    def freeze(self, block: int, restricted: bool) -> Chain:
        rhs = []
        for part in self.rhs:
            part = list(part)
            while part and part[-1].text in (",", ".", ";"):  # the end of a sentence
                part.pop()
            rhs.append(tuple(part))
        return Chain(tuple(self.lhs), tuple(rhs), block, self.tag, self.label, restricted,
                     self.anchor, tuple(self.rels))


_TAG = re.compile(r"\\tag\*?\{(?P<v>[^{}]*)\}")
_LABEL = re.compile(r"\\label\{(?P<v>[^{}]*)\}")
_INNER_ENV = re.compile(r"\\(?:begin|end)\{(?:" + "|".join(INNER_ENVS) + r")\*?\}"
                        r"(?:\{[^{}]*\})?")


def chains(blocks: Sequence[Block]) -> tuple[list[Chain], int, list[tuple[int, str]]]:
    """The equation chains of the blocks, how many rows were skipped as headings, and blocks
    that cannot be split ((offset, message): unbalanced braces)."""
    out: list[Chain] = []
    skipped = 0
    problems: list[tuple[int, str]] = []
    for bi, b in enumerate(blocks):
        tags = [(m.start() + b.start, m.group("v").strip()) for m in _TAG.finditer(b.text)]
        labels = [(m.start() + b.start, m.group("v").strip()) for m in _LABEL.finditer(b.text)]
        clean = blank(b.text, [*_TAG.finditer(b.text), *_LABEL.finditer(b.text),
                               *_INNER_ENV.finditer(b.text)])
        toks = tokenize(clean, b.start)
        restricted = any(r in b.text for r in RESTRICTING)
        bad = _unbalanced(toks)
        if bad is not None:
            problems.append((bad.pos, f"unbalanced {bad.text!r} in display math"))
            continue
        toks, qtags = _quad_tags(toks)
        tags.extend(qtags)
        drafts, headings = _group(strip_layout(toks), sorted(p for p, _ in [*tags, *labels]))
        skipped += headings
        for pos, v in tags:
            c = _owner(drafts, pos)
            if c is not None and c.tag is None:
                c.tag = v
        for pos, v in labels:
            c = _owner(drafts, pos)
            if c is not None and c.label is None:
                c.label = v
        out.extend(c.freeze(bi, restricted) for c in drafts)
    return out, skipped, problems


def _group(toks: list[Tok], ends: list[int]) -> tuple[list[_Draft], int]:
    """The chains of one block's tokens (``ends``: where numbered equations end), and how many
    rows were skipped as headings."""
    drafts: list[_Draft] = []
    skipped = 0
    cur: _Draft | None = None
    pending: list[Tok] | None = None  # a left-hand side on a row of its own
    ended = False  # the previous row ended a numbered equation
    prev_sep = -1
    for row, sep in _rows(toks):
        was_ended, ended = ended, any(prev_sep < p < sep for p in ends) or (ended and not row)
        prev_sep = sep
        if not row:
            continue
        cond = _condition(row)
        limit = len(row) if cond is None else cond
        eqs = [k for k in range(limit) if row[k].text in RELATIONS and _depth(row, k) == 0]
        if not eqs:
            if cur is None or not cur.rhs or was_ended:
                if pending is not None:
                    skipped += 1
                pending = row
                continue
            cur.rhs[-1].extend(row)
            continue
        lhs = row[:eqs[0]]
        first = row[0].pos
        if pending is not None:
            if not lhs:
                lhs, first = pending, pending[0].pos
            else:
                skipped += 1
            pending = None
        parts = [row[a + 1:b] for a, b in zip(eqs, [*eqs[1:], len(row)], strict=True)]
        if lhs or cur is None:
            cur = _Draft(lhs, row[eqs[0]], first)
            drafts.append(cur)
        cur.rhs.extend(parts)
        cur.rels.extend(row[k].text for k in eqs)
    if pending is not None:
        skipped += 1
    return drafts, skipped


def _condition(row: Sequence[Tok]) -> int | None:
    """Index of a top-level ``\\text{when ...}`` (``if``, ``where``, ...): a side condition,
    whose own '=' are prose, not relations of the row."""
    for k, t in enumerate(row):
        if t.text in TEXT and k + 1 < len(row) and row[k + 1].text == "{" and \
                _depth(row, k) == 0 and match_activation(row, k) is None:
            words = spelled(row[k + 2:match_brace(row, k + 1)]).split()
            if words and words[0].lower() in CONDITION_WORDS:
                return k
    return None


def _unbalanced(toks: Sequence[Tok]) -> Tok | None:
    """The first brace without its partner, if any."""
    stack: list[Tok] = []
    for t in toks:
        if t.text == "{":
            stack.append(t)
        elif t.text == "}":
            if not stack:
                return t
            stack.pop()
    return stack[0] if stack else None


def _owner(drafts: list[_Draft], pos: int) -> _Draft | None:
    """The chain a tag at ``pos`` belongs to: the last chain starting before it."""
    owner = None
    for c in drafts:
        if c.first <= pos:
            owner = c
    return owner if owner is not None else (drafts[0] if drafts else None)


def _depth(row: Sequence[Tok], k: int) -> int:
    d = 0
    for t in row[:k]:
        d += {"{": 1, "}": -1}.get(t.text, 0)
    return d


def _quad_tags(toks: list[Tok]) -> tuple[list[Tok], list[tuple[int, str]]]:
    """Seed 001 numbers equations as ``\\quad (7)`` at the end of a row: take those as tags."""
    out: list[Tok] = []
    tags: list[tuple[int, str]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if (t.text in (r"\quad", r"\qquad") and i + 3 < len(toks) and toks[i + 1].text == "("
                and toks[i + 2].kind == "num" and toks[i + 3].text == ")"
                and (i + 4 == len(toks) or toks[i + 4].kind == "row")):
            tags.append((t.pos, toks[i + 2].text))
            i += 4
            continue
        out.append(t)
        i += 1
    return out, tags


def _rows(toks: list[Tok]) -> list[tuple[list[Tok], int]]:
    """The rows (split at ``\\\\`` outside braces and outside a matrix environment) and the
    offset of the separator that ends each (a large number for the last)."""
    rows: list[tuple[list[Tok], int]] = []
    cur: list[Tok] = []
    depth = env = 0
    for t in toks:
        if t.text == "{":
            depth += 1
        elif t.text == "}":
            depth -= 1
        elif t.text == r"\begin":
            env += 1
        elif t.text == r"\end":
            env = max(env - 1, 0)
        if (t.kind == "row" or t.text == r"\cr") and depth <= 0 and env == 0:
            rows.append((cur, t.pos))
            cur = []
            continue
        cur.append(t)
    rows.append((cur, 1 << 62))
    return rows
