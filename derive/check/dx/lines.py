"""Every equation of a document judged under one cell context: its left-hand side read, each of
its lines read and judged (:func:`derive.check.dx.judge.judge_line`) under every binding of the
generic symbols, and the verdicts as :class:`~derive.check.report.LineResult` records.

**Generic lines** (seed 001 eqs 7-13): ``A`` is every parameter of the cell in turn, ``g_t``
every gate, ``W_g``/``U_g``/``b_g`` the parameter of g's equation with that LaTeX base letter
(:mod:`derive.check.dx.symbols`); a block that mentions ``A_{p \\neq g}`` (eq 10's heading)
restricts A to parameters outside g's equation. A line is correct when it is correct for every
binding; otherwise its verdict and detail are those of the first failing binding (recorded in
``binding``, and named in the detail by :func:`name_binding`).

**Two readings of** ``\\bar{u}_t``: the adjoint of u, or the node named ``\\bar{u}`` where the
cell has one (minLSTM's ``\\bar{f}_t``); the adjoint reading stands unless the node's reads and
judges better (:func:`_reading_score`).

**unparsed**: the line (or its left-hand side) cannot be read; ``detail`` gives the line and
column in the file and the offending token (also in ``position`` and ``token``). A line that
derive fails to judge for a reason of its own is reported so, never as a traceback.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..report import LineResult
from ..source import Positions
from ..tokens import Tok
from .context import Context
from .errors import ParseError
from .judge import judge_line
from .parser import parse_lhs, parse_side
from .reading import Document
from .symbols import Lexicon, unresolved
from .syntax import LAdj, LDef, Lhs, Side
from .verdict import Verdict


@dataclass(frozen=True)
class Judged:
    """A document's verdicts under one context, and how many symbols of its judged lines do not
    resolve there (what cell inference minimises)."""

    results: tuple[LineResult, ...]
    unknown: int


def judge_document(doc: Document, ctx: Context) -> Judged:
    """Every equation of ``doc`` judged under ``ctx`` (module docstring); an equation whose
    every line is skipped is not read, its left-hand side neither."""
    unknown = 0
    for idx, ch in enumerate(doc.chains, 1):  # symbols of the judged lines only
        judged = doc.judged(idx)
        if judged:
            unknown += unresolved(ch.lhs, ctx.lex) + sum(unresolved(ch.rhs[k - 1], ctx.lex)
                                                         for k in judged)
    results: list[LineResult] = []
    for idx, ch in enumerate(doc.chains, 1):
        if ch.rhs and not doc.judged(idx):
            continue
        results.extend(_judge_equation(doc, ctx, idx))
    return Judged(tuple(results), unknown)


def name_binding(r: LineResult) -> LineResult:
    """A failing generic line with its binding named in the detail (``with A = W_o: ...``)."""
    if r.verdict != "correct" and r.binding:
        b = ", ".join(f"{k} = {v}" for k, v in r.binding.items())
        return dataclasses.replace(r, detail=f"with {b}: {r.detail}")
    return r


def _judge_equation(doc: Document, ctx: Context, idx: int) -> list[LineResult]:
    ch = doc.chains[idx - 1]
    try:
        lhs0, generic = parse_lhs(ch.lhs, ctx.lex)
    except ParseError as exc:
        v = _unparsed(doc.pos, exc, "" if exc.message.startswith("left-hand side")
                      else "left-hand side: ", ch.anchor)
        return [_result(doc, ctx, idx, k, v, r) for k, r in enumerate(ch.rhs or [()], 1)
                if (idx, k) not in doc.skips]
    readings: list[tuple[Lhs, frozenset[str], bool]] = [(lhs0, generic, False)]
    if isinstance(lhs0, LAdj):  # \bar{u}_t may name a node too (minLSTM's \bar{f}_t)
        try:
            alt, alt_generic = parse_lhs(ch.lhs, ctx.lex, as_node=True)
        except ParseError:
            alt = None
        if isinstance(alt, LDef):
            readings.append((alt, alt_generic, True))
    best: list[LineResult] | None = None
    for lhs, gen, as_node in readings:
        got = _judge_chain(doc, ctx, idx, lhs, gen, as_node)
        if best is None or _reading_score(got) > _reading_score(best):
            best = got
    assert best is not None
    return best


def _reading_score(results: list[LineResult]) -> tuple[int, int, int]:
    """How well a reading of a left-hand side fits its lines: more correct, fewer unparsed,
    fewer ill-typed."""
    return (sum(r.verdict == "correct" for r in results),
            -sum(r.verdict == "unparsed" for r in results),
            -sum(r.verdict == "ill-typed" for r in results))


def _judge_chain(doc: Document, ctx: Context, idx: int, lhs0: Lhs, generic: frozenset[str],
                 as_node: bool) -> list[LineResult]:
    """The results of the lines of one chain, its left-hand side read as ``lhs0`` (``as_node``:
    \\bar{u}_t as the node named so, :meth:`derive.check.dx.parser.Parser.lhs`)."""
    ch = doc.chains[idx - 1]
    sides, generic = _read_sides(doc, ctx, idx, lhs0, generic)
    binds = _bindings(ctx.lex, generic, ch.restricted)
    results: list[LineResult] = []
    for k, (r, s0) in enumerate(zip(ch.rhs, sides, strict=True), 1):
        if s0 is None:  # skipped
            continue
        if isinstance(s0, ParseError):
            results.append(_result(doc, ctx, idx, k, _unparsed(doc.pos, s0, anchor=ch.anchor),
                                   r))
            continue
        verdict, used = _judge_bindings(doc, ctx, idx, r, lhs0, s0, binds, as_node)
        if used is None and len(binds) > 1:
            verdict = dataclasses.replace(verdict,
                                          detail=_all_bindings(ctx, generic, len(binds)))
        results.append(_result(doc, ctx, idx, k, verdict, r,
                               used if len(binds) > 1 or used else None, s0.notes))
    return results


def _judge_bindings(doc: Document, ctx: Context, idx: int, r: Sequence[Tok], lhs0: Lhs,
                    s0: Side, binds: list[dict[str, str]], as_node: bool
                    ) -> tuple[Verdict, dict[str, str] | None]:
    """The verdict on one line over the bindings: the first that is not correct (and its
    binding), else a correct one (numeric where one binding needed numbers) and None."""
    ch = doc.chains[idx - 1]
    verdict: Verdict | None = None
    for b in binds:
        try:
            lhs = parse_lhs(ch.lhs, ctx.lex, b, as_node=as_node)[0] if b else lhs0
            side = parse_side(r, ctx.lex, b, vector=isinstance(lhs0, LDef))[0] if b else s0
        except ParseError as exc:
            return _unparsed(doc.pos, exc, anchor=ch.anchor), b
        try:
            v = judge_line(ctx, doc.pos, lhs, side)
        except Exception as exc:  # noqa: BLE001 - a report, never a traceback
            v = Verdict("unparsed", f"derive could not judge this line "
                        f"({type(exc).__name__}: {exc}); please report it",
                        token=r[0] if r else None)
        if v.verdict != "correct":
            return v, b
        if verdict is None or (v.method == "numeric"):
            verdict = v
    assert verdict is not None
    return verdict, None


def _read_sides(doc: Document, ctx: Context, idx: int, lhs: Lhs, generic: frozenset[str]
                ) -> tuple[list[Side | ParseError | None], frozenset[str]]:
    """The right-hand sides of a chain read for its left-hand side (a cell equation's as
    vectors), None for a skipped line, and the generic symbols used with those they use."""
    sides: list[Side | ParseError | None] = []
    for k, r in enumerate(doc.chains[idx - 1].rhs, 1):
        if (idx, k) in doc.skips:
            sides.append(None)
            continue
        try:
            side, used = parse_side(r, ctx.lex, vector=isinstance(lhs, LDef))
        except ParseError as exc:
            sides.append(exc)
            continue
        sides.append(side)
        generic |= used
    return sides, generic


def _bindings(lex: Lexicon, generic: frozenset[str], restricted: bool) -> list[dict[str, str]]:
    """Every binding of the generic symbols a chain uses (one empty binding when none)."""
    gates: list[str | None] = list(lex.gates) if "g" in generic else [None]
    out = []
    for g in gates:
        params: list[str | None] = list(lex.spec.cell_params) if "A" in generic else [None]
        if restricted and g is not None and "A" in generic:
            own = set(lex.gate_params(g))
            params = [p for p in params if p not in own]
        for p in params:
            b = {}
            if g is not None:
                b["g"] = g
            if p is not None:
                b["A"] = p
            out.append(b)
    return out


def _result(doc: Document, ctx: Context, idx: int, k: int, v: Verdict, rhs_toks: Sequence[Tok],
            binding: Mapping[str, str] | None = None,
            notes: Sequence[tuple[int, str]] = ()) -> LineResult:
    """The record of line ``k`` of equation ``idx``."""
    ch = doc.chains[idx - 1]
    pos = doc.pos
    anchor = rhs_toks[0].pos if rhs_toks else (ch.lhs[0].pos if ch.lhs else 0)
    tok = v.token
    return LineResult(
        equation=idx, tag=doc.tag(idx), line=k, verdict=v.verdict, detail=v.detail,
        lhs=pos.span(ch.lhs), rhs=pos.span(rhs_toks),
        position=pos(tok.pos if tok is not None else anchor), label=ch.label, method=v.method,
        binding=_pretty_binding(ctx, binding), differences=[d.to_dict() for d in v.differences],
        notes=[f"{pos.where(p)}: {m}" for p, m in dict(notes).items()],
        token=tok.text if tok is not None else None)


def _pretty_binding(ctx: Context, b: Mapping[str, str] | None) -> dict[str, str] | None:
    if not b:
        return None
    out = {}
    if "g" in b:
        out["g"] = ctx.lex.latex(b["g"])
    if "A" in b:
        out["A"] = ctx.lex.latex(b["A"])
    return out


def _all_bindings(ctx: Context, generic: frozenset[str], n: int) -> str:
    parts = []
    if "A" in generic:
        parts.append("every parameter A")
    if "g" in generic:
        parts.append("every gate g (" + ", ".join(ctx.lex.latex(g) + "_t"
                                                  for g in ctx.lex.gates) + ")")
    return f"for {' and '.join(parts)} ({n} cases)"


def _unparsed(pos: Positions, exc: ParseError, prefix: str = "",
              anchor: Tok | None = None) -> Verdict:
    tok = exc.tok if exc.tok is not None else anchor
    where = ""
    if tok is not None:
        where = f"{pos.where(tok.pos)}" + (f", at {tok.text!r}" if exc.tok is not None else "")
        where += ": "
    return Verdict("unparsed", where + prefix + exc.message, token=tok)
