"""The d(x) reading of a whole file: every candidate context judged, the one that fits kept,
and the :class:`~derive.check.report.Report`.

**Cell and notation.** ``--cell``/``--notation`` fix them; otherwise every built-in cell under
every shipped notation is tried (:func:`derive.check.dx.candidates.candidates`): the candidates
under which the fewest symbols fail to resolve are kept, then those with the most correct lines,
then those with the fewest ill-typed lines (the reading under which the shapes compose). A
remaining tie whose verdicts differ is a usage error (exit 2) that lists the choices; a tie that
changes no verdict takes the first candidate and the report names the others.
"""

from __future__ import annotations

from typing import Any

from ..errors import CheckError
from ..report import LineResult, Report
from .candidates import candidates
from .context import Context
from .lines import Judged, judge_document, name_binding
from .reading import Document, skipped_lines


def check_document(doc: Document, cell: Any = None, notation: Any = None) -> Report:
    """The d(x) reading of a document: its display equations against derive's own cells (the
    given ones, or inferred: module docstring)."""
    if not doc.chains and not doc.problems:
        what = "display math ($$...$$, \\[...\\], equation or align)" if doc.fmt == "md" else \
            "display math (equation, align, \\[...\\], $$...$$)"
        extra = ""
        if doc.skipped:
            extra = (f" ({doc.skipped} display row{'s' if doc.skipped > 1 else ''} without an "
                     "'=' or another relation outside braces)")
        raise CheckError(f"{doc.source}: no equations found: expected {what} holding an "
                         f"equation 'lhs = rhs'{extra}")
    ctxs = candidates(cell, notation)
    if not ctxs:
        raise CheckError("no cell and notation to check against")
    inferred = len(ctxs) > 1
    scored = [(ctx, judge_document(doc, ctx)) for ctx in ctxs]
    also: list[str] = []
    if inferred:
        scored = _best(doc, scored)
        also = [c.label for c, _ in scored[1:]]
    ctx, judged = scored[0]
    results = list(judged.results)
    for k, (p, m) in enumerate(doc.problems, len(doc.chains) + 1):
        results.append(LineResult(k, k, 1, "unparsed", f"{doc.pos.where(p)}: {m}",
                                  position=doc.pos(p), token=doc.text[p:p + 2].strip() or None))
    return Report(doc.source, ctx.spec.name, ctx.notation_label, inferred,
                  [name_binding(r) for r in results], len(doc.chains), doc.skipped, also,
                  skipped_lines(doc))


def _best(doc: Document, scored: list[tuple[Context, Judged]]) -> list[tuple[Context, Judged]]:
    """The candidates that fit best, first the one to take (module docstring)."""
    fewest = min(j.unknown for _, j in scored)
    scored = [s for s in scored if s[1].unknown == fewest]
    for verdict, sign in (("correct", 1), ("ill-typed", -1)):
        if len(scored) > 1:  # most correct lines, then fewest whose shapes clash
            best = max(_count(j, verdict, sign) for _, j in scored)
            scored = [s for s in scored if _count(s[1], verdict, sign) == best]
    verdicts = {tuple((r.verdict, r.detail) for r in j.results) for _, j in scored}
    if len(scored) > 1 and len(verdicts) > 1:
        choices = ", ".join(f"--cell {c.spec.name} --notation {c.notation}" for c, _ in scored)
        raise CheckError(f"{doc.source}: the equations fit several cells equally well and the "
                         f"verdicts depend on which; choose one: {choices}")
    return scored


def _count(j: Judged, verdict: str, sign: int) -> int:
    return sign * sum(r.verdict == verdict for r in j.results)
