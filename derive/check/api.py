"""``derive check`` from Python: :func:`check_file`, :func:`check_text` return a
:class:`~derive.check.report.Report`; usage errors (no file, no equations, unknown cell or
notation, an ambiguous cell) raise :class:`~derive.check.errors.CheckError`.

Two readers: the d(x) reader (:mod:`derive.check.dx`: derive's own notation, against derive's
cells) and the reader of the author's own notation (:mod:`derive.check.reverse`: reverse mode in
elementwise notation, against the cell the document's forward equations define). With
``cell`` or ``notation`` given, the d(x) reader alone; otherwise the d(x) reading stands where
it judges at least as many lines as it fails to read (:func:`_reads_well`), the document's own
cell is used where it does not, and a document the second reader finds no mathematics in falls
back to the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .dx.infer import check_document
from .dx.reading import read_document
from .errors import CheckError
from .report import OWN_CELL, LineResult, Report, SkippedLine
from .source import Positions


def _fmt(path: str | None, text: str) -> str:
    if path is not None and Path(path).suffix.lower() in (".tex", ".ltx", ".sty", ".latex"):
        return "tex"
    if path is not None and Path(path).suffix.lower() in (".md", ".markdown", ".txt", ".mdx"):
        return "md"
    return "tex" if r"\begin{document}" in text or r"\documentclass" in text else "md"


def check_text(text: str, *, cell: Any = None, notation: Any = None, fmt: str | None = None,
               source: str = "<string>") -> Report:
    """Check the display equations of a LaTeX (``fmt='tex'``) or Markdown (``'md'``) text.

    ``cell``: a built-in name, a spec dict / :class:`~derive.spec.CellSpec` /
    :class:`~derive.calculus.derivation.Derivation`, a ``.json``/``.toml`` spec path, or None to
    infer; ``notation``: a shipped profile name, a ``.toml`` path or None to infer. Raises
    :class:`CheckError` for usage errors (no equations, unknown or ambiguous cell)."""
    fmt = fmt or _fmt(None, text)
    if fmt not in ("tex", "md"):
        raise CheckError(f"unknown format {fmt!r}; expected 'tex' or 'md'")
    doc = read_document(text, fmt, source)
    if cell is not None or notation is not None:
        return check_document(doc, cell, notation)
    try:
        old = check_document(doc, cell, notation)
    except CheckError:
        old = None
    if old is not None and _reads_well(old):
        return old
    own = check_own(text, fmt=fmt, source=source, need_cell=old is not None)
    if own is not None:
        return own
    if old is not None:
        return old
    return check_document(doc, cell, notation)


def _reads_well(rep: Report) -> bool:
    """The d(x) reading stands where it judges most of the lines it does not skip."""
    c = rep.counts()
    judged = c["correct"] + c["wrong"] + c["ill-typed"]
    return judged >= c["unparsed"] and (judged > 0 or c["unparsed"] == 0)


def check_own(text: str, *, fmt: str = "md", source: str = "<string>",
              need_cell: bool = False) -> Report | None:
    """The derivation judged against the cell its own forward equations define
    (:mod:`derive.check.reverse`): every mathematical line, inline math included, at its own
    line; None when the document holds no mathematical line at all (or, with ``need_cell``,
    defines no cell)."""
    from .reverse import DocumentJudge

    dj = DocumentJudge(text, fmt)
    if need_cell and dj.cell is None:
        return None
    lines = dj.lines()
    problems = dj.problems
    if not lines and not problems:
        return None
    pos = Positions(text)
    results: list[LineResult] = []
    skipped: list[SkippedLine] = []
    for ln in lines:
        where = pos(ln.pos)
        if ln.verdict == "skipped":
            skipped.append(SkippedLine(ln.eq_index, ln.eq_index, ln.k, ln.detail, ln.lhs, ln.rhs,
                                       where))
            continue
        results.append(LineResult(ln.eq_index, ln.eq_index, ln.k, ln.verdict, ln.detail,
                                  ln.lhs, ln.rhs, where, method="numeric",
                                  differences=ln.differences))
    n = len(dj.eqs)
    for k, (p, m) in enumerate(problems, n + 1):
        results.append(LineResult(k, k, 1, "malformed", f"{pos.where(p)}: {m}",
                                  position=pos(p), token=text[p:p + 2].strip() or None))
    how = dj.cell.describe() if dj.cell is not None else f"no cell ({dj.cell_error})"
    return Report(source, OWN_CELL, how, True, results, n, 0, [], skipped)


def check_file(path: str | Path, *, cell: Any = None, notation: Any = None) -> Report:
    """Check a ``.tex`` or Markdown file (see :func:`check_text`)."""
    p = Path(path)
    if not p.exists():
        raise CheckError(f"file {str(path)!r} not found")
    if p.is_dir():
        raise CheckError(f"{str(path)!r} is a directory; expected a .tex or Markdown file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckError(f"{str(path)!r} is not UTF-8 text; expected a .tex or Markdown "
                         "file") from None
    except OSError as exc:
        raise CheckError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return check_text(text, cell=cell, notation=notation, fmt=_fmt(str(p), text),
                      source=str(path))
