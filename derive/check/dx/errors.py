"""Why a line of the d(x) reader gets no value: it cannot be read (:class:`ParseError`, reported
as *unparsed* with the line, column and token), it is read but means nothing derive can check
(:class:`Unsupported`, also *unparsed*), or its shapes do not compose (:class:`IllTyped`,
reported as *ill-typed*)."""

from __future__ import annotations

from ..tokens import Tok


class ParseError(Exception):
    """A side of an equation cannot be read. ``kind``: syntax | symbol | unsupported (symbol
    errors are counted to infer the cell: :func:`derive.check.dx.symbols.unresolved`)."""

    def __init__(self, message: str, tok: Tok | None, kind: str = "syntax"):
        super().__init__(message)
        self.message = message
        self.tok = tok
        self.kind = kind


class Unsupported(Exception):
    """Readable, but not a meaning derive can check (reported as unparsed)."""

    def __init__(self, message: str, tok: Tok | None = None):
        super().__init__(message)
        self.tok = tok


class IllTyped(Exception):
    """Shapes do not compose; ``term`` and ``factor`` (LaTeX) name where, when known."""

    def __init__(self, message: str, term: str | None = None, factor: str | None = None):
        super().__init__(message)
        self.term = term
        self.factor = factor
