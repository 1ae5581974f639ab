"""What ``derive check`` hands back: one verdict record per judged line (:class:`LineResult`),
one per line not judged (:class:`SkippedLine`), and the :class:`Report` of a file, its text
(:meth:`Report.format`), its JSON (:meth:`Report.to_json`) and its exit status.

Skipped lines are listed in the text as ``skipped: <reason>`` and counted in its summary line;
they are *not* in ``--json`` (a list of verdict records, whose ``verdict`` is one of
:data:`VERDICTS`) and never make the exit status 1. Exit status: 0 every judged line correct
(skipped lines do not count); 1 a line is wrong, ill-typed, unparsed or malformed; 2 a usage
error (:class:`derive.check.errors.CheckError`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

VERDICTS = ("correct", "wrong", "ill-typed", "unparsed", "malformed")
_ALWAYS_COUNTED = VERDICTS[:4]  # "malformed" is counted where it occurs
# the cell of a report judged against the cell the document's own equations define
OWN_CELL = "the document's own"


@dataclass(frozen=True)
class LineResult:
    """The verdict on one line (one right-hand side) of one equation."""

    equation: int
    tag: str | int
    line: int
    verdict: str
    detail: str
    lhs: str = ""
    rhs: str = ""
    position: tuple[int, int] = (0, 0)
    label: str | None = None
    method: str = ""
    binding: dict[str, str] | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag, "line": self.line, "verdict": self.verdict, "detail": self.detail,
            "equation": self.equation, "lhs": self.lhs, "rhs": self.rhs,
            "position": {"line": self.position[0], "column": self.position[1]},
        }
        if self.label:
            out["label"] = self.label
        if self.method:
            out["method"] = self.method
        if self.binding:
            out["binding"] = self.binding
        if self.differences:
            out["differences"] = self.differences
        if self.notes:
            out["notes"] = self.notes
        if self.token is not None:
            out["token"] = self.token
        return out


@dataclass(frozen=True)
class SkippedLine:
    """A line that is not judged (not a one-step equality of the d(x) calculus) and why."""

    equation: int
    tag: str | int
    line: int
    reason: str
    lhs: str = ""
    rhs: str = ""
    position: tuple[int, int] = (0, 0)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag, "line": self.line, "reason": self.reason,
            "equation": self.equation, "lhs": self.lhs, "rhs": self.rhs,
            "position": {"line": self.position[0], "column": self.position[1]},
        }
        if self.label:
            out["label"] = self.label
        return out


@dataclass(frozen=True)
class Report:
    """All verdicts on one file; ``skipped``: the lines not judged (not in ``to_json``)."""

    source: str
    cell: str
    notation: str
    inferred: bool
    results: list[LineResult]
    equations: int
    skipped_rows: int = 0
    also_fits: list[str] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every judged line is correct (skipped lines do not count), else 1."""
        return 0 if all(r.verdict == "correct" for r in self.results) else 1

    def counts(self) -> dict[str, int]:
        """How many judged lines got each verdict."""
        return {v: sum(r.verdict == v for r in self.results) for v in VERDICTS}

    def to_json(self) -> str:
        """The verdict records, one per judged line; skipped lines are omitted."""
        return json.dumps([r.to_dict() for r in self.results], indent=2, ensure_ascii=False)

    def format(self) -> str:
        """Human-readable report: one block per equation, one row per line."""
        how = "inferred from the symbols" if self.inferred else "given"
        out = [f"{self.source}: cell {self.cell}, notation {self.notation} ({how})"]
        if self.also_fits:
            more = len(self.also_fits) - 3
            out.append(f"  (the verdicts are the same under {', '.join(self.also_fits[:3])}" +
                       (f" and {more} more" if more > 0 else "") + ")")
        last = None
        rows: list[LineResult | SkippedLine] = [*self.results, *self.skipped]
        rows.sort(key=lambda r: (r.equation, r.line))  # stable: the results keep their order
        for r in rows:
            if r.equation != last:
                last = r.equation
                tag = f"({r.tag})" if isinstance(r.tag, str) else f"#{r.tag}"
                out.append(f"{tag} {r.lhs}   [line {r.position[0]}]")
            if isinstance(r, SkippedLine):
                out.append(f"  line {r.line}: skipped: {r.reason}")
                continue
            extra = f" [{r.method}]" if r.method and r.verdict == "correct" else ""
            out.append(f"  line {r.line}: {r.verdict}{extra}" +
                       (f": {r.detail}" if r.detail else ""))
            out.extend(f"      note: {n}" for n in r.notes)
        c = self.counts()
        n = len(self.results) + len(self.skipped)
        out.append(f"{n} lines in {self.equations} equations: " +
                   ", ".join(f"{c[v]} {v}" for v in VERDICTS if v in _ALWAYS_COUNTED or c[v])
                   + f", {len(self.skipped)} skipped")
        bad = [r for r in self.results if r.verdict != "correct"]
        if bad and self.cell == OWN_CELL:
            out.append("not correct: " + ", ".join(f"line {r.position[0]} ({r.verdict})"
                                                   for r in bad))
        if self.skipped and not self.results:
            out.append("nothing judged: every line is skipped (not a one-step equation of the "
                       "d(x) calculus)")
        return "\n".join(out) + "\n"
