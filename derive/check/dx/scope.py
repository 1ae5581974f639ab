"""What the d(x) reader judges: one-step equalities of the d(x) calculus (seed 001 eqs 7-25).
:func:`skip_reason` says why a line is not one; that line is *skipped* with the reason
(:class:`derive.check.report.SkippedLine`).

Skipped, first reason that applies: a relation other than ``=`` (a bound ``\\le``/``<``/``\\ge``,
an approximation ``\\approx``/``\\sim``, or another: ``\\propto``, ``\\neq``); a statement over
several steps: ``\\prod``, a ``\\sum`` over an index other than t (the ``\\sum_t`` of a gradient
is judged), a time index other than t and t-1 (``h_k``, ``f_j``, ``c_{j-1}``, ``x_{t-k}``,
``s_{t-2}``; digits such as ``T_0`` are names), a norm ``\\|.\\|``; and, outside the calculus: a
total derivative ``\\frac{\\mathrm{d} c_t}{\\mathrm{d} c_{t-1}}`` (seed 000's, the other states
of step t-1 following), a part of a derivative ``|_{\\mathrm{carousel}}``, the block state
Jacobian ``J_t`` (with ``\\partial (h_t, c_t)``, a ``pmatrix``), a side condition
``\\text{when ...}``, an elision (``\\ldots``, ``\\text{other terms}``). What derive's own export
writes in its flow section is of these kinds, except the one-step Jacobian blocks, which are
judged. The reason names the relation or the symbol found, and depends on the text alone, never
on the cell. The left-hand side counts for every line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..tokens import Tok, canon, match_brace, spelled
from .atoms import match_activation, read_atom, time_lag
from .chains import Chain
from .tables import (
    APPROXIMATIONS,
    BARS,
    BLOCK_JACOBIAN,
    BOUNDS,
    CONDITION_WORDS,
    ELLIPSES,
    FRACS,
    MATRICES,
    NORMS,
    OTHER_STEPS,
    PARTIAL,
    PRODUCT_OVER_STEPS,
    SUM,
    SUM_INDEX,
    TEXT,
    TIME_NOW,
    UPRIGHT,
)


def skip_reason(ch: Chain, k: int) -> str | None:
    """Why line ``k`` (1-based) of a chain is not judged, or None when it is (module
    docstring)."""
    rel = ch.rels[k - 1] if k - 1 < len(ch.rels) else "="
    if rel != "=":
        what = "a bound" if rel in BOUNDS else "an approximation" if rel in APPROXIMATIONS else \
            "a relation"
        return f"{what} ({rel}), not an equation"
    toks = [*ch.lhs, *ch.rhs[k - 1]]
    return _several_steps(toks) or _outside(toks)


def _script(toks: Sequence[Tok], i: int) -> tuple[str | None, int]:
    """The canonical subscript right after toks[i-1] (toks[i] is '_'), and the index after it."""
    if i >= len(toks) or toks[i].text != "_" or i + 1 >= len(toks):
        return None, i
    if toks[i + 1].text == "{":
        j = match_brace(toks, i + 1)
        return canon(toks[i + 2:j]), j + 1
    return toks[i + 1].text, i + 2


def _bound_var(toks: Sequence[Tok], i: int) -> str | None:
    """The index of the \\sum or \\prod at toks[i] (``\\prod_{j=k+1}^{t}`` -> 'j'), if written."""
    sub, _ = _script(toks, i + 1)
    if sub is None:
        return None
    return sub.split("=", 1)[0].strip() or None


def _other_time(sub: str | None) -> bool:
    """A time subscript other than t and t-1: j, k, l (with an offset), t-k, t-2, t+1."""
    if sub is None:
        return False
    s = sub.replace(" ", "")
    if s in (TIME_NOW, TIME_NOW + "-1"):
        return False
    return any(re.fullmatch(p, s) for p in OTHER_STEPS)


def _several_steps(toks: Sequence[Tok]) -> str | None:
    for i, t in enumerate(toks):
        if t.text == PRODUCT_OVER_STEPS:
            var = _bound_var(toks, i)
            return "a statement over several steps (\\prod" + (f" over {var})" if var else ")")
    for i, t in enumerate(toks):
        if t.text == SUM:
            var = _bound_var(toks, i)
            if var is not None and var != SUM_INDEX:
                return f"a statement over several steps (\\sum over {var})"
    for i in range(len(toks)):
        a = read_atom(toks, i)
        if a is not None and _other_time(a.sub):
            sub = a.sub if len(a.sub) == 1 else "{" + a.sub + "}"  # type: ignore[arg-type]
            return f"a statement over several steps ({a.base}_{sub} at step {a.sub})"
    for t in toks:
        if t.text in NORMS:
            return "a statement about norms (\\|\\cdot\\|), not an equation of the d(x) calculus"
    return None


def _total_d(den: Sequence[Tok]) -> bool:
    """A denominator written with an upright or plain d: ``\\mathrm{d} c_{t-1}``, ``d c``."""
    if not den:
        return False
    if den[0].text in UPRIGHT:
        nxt = den[1:4]
        return bool(nxt) and (nxt[0].text == "d" or [x.text for x in nxt] == ["{", "d", "}"])
    return den[0].text == "d" and (len(den) == 1 or den[1].text not in ("(", "[", "_"))


def _text_words(toks: Sequence[Tok], i: int) -> str | None:
    """The words of a ``\\text{...}`` at toks[i] (not an activation named so), else None."""
    if toks[i].text in TEXT and i + 1 < len(toks) and toks[i + 1].text == "{" and \
            match_activation(toks, i) is None:
        return spelled(toks[i + 2:match_brace(toks, i + 1)])
    return None


def _outside(toks: Sequence[Tok]) -> str | None:
    """Readable mathematics that is not a one-step equality of the d(x) calculus."""
    for i, t in enumerate(toks):
        if t.text in FRACS and i + 1 < len(toks) and toks[i + 1].text == "{":
            j = match_brace(toks, i + 1)
            den = toks[j + 2:match_brace(toks, j + 1)] if j + 1 < len(toks) and \
                toks[j + 1].text == "{" else []
            if _total_d(den):
                return ("a total derivative (\\mathrm{d}), not a one-step \\partial of the "
                        "d(x) calculus")
    for i, t in enumerate(toks):
        if t.text in BARS and i + 1 < len(toks) and toks[i + 1].text == "_":
            sub, _ = _script(toks, i + 1)
            return f"a part of a derivative (|_{{{sub}}}), not its whole value"
    for i, t in enumerate(toks):
        a = read_atom(toks, i) if t.text == BLOCK_JACOBIAN else None
        if a is not None and a.base == BLOCK_JACOBIAN and time_lag(a.sub) is not None:
            sub = a.sub if a.sub == TIME_NOW else "{" + str(a.sub) + "}"
            return (f"a statement about the block state Jacobian J_{sub}, outside the one-state "
                    "d(x) calculus")
        if t.text == PARTIAL and i + 1 < len(toks) and toks[i + 1].text == "(":
            depth = 0
            for j in range(i + 1, len(toks)):
                depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
                if depth == 0:
                    break
                if toks[j].text == "," and depth == 1:
                    return ("a statement about the block state Jacobian (a derivative of "
                            "stacked states), outside the one-state d(x) calculus")
        if t.text == r"\begin" and i + 2 < len(toks) and toks[i + 1].text == "{":
            name = canon(toks[i + 2:match_brace(toks, i + 1)])
            if name.rstrip("*") in MATRICES:
                return (f"a statement about the block state Jacobian (a block matrix, {name}), "
                        "outside the one-state d(x) calculus")
    for i in range(len(toks)):
        words = _text_words(toks, i)
        first = words.split() if words is not None else []
        if first and first[0].lower() in CONDITION_WORDS:
            return f"a conditional statement (\\text{{{first[0]} ...}})"
    for i, t in enumerate(toks):
        if t.text in ELLIPSES:
            return f"an elided expression ({t.text}), not a whole value"
        words = _text_words(toks, i)
        if words is not None and any(ch.isalpha() for ch in words.strip()):
            return f"an elided expression (\\text{{{words.strip()}}}), not a whole value"
    return None
