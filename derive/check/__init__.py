"""``derive check``: a hand derivation judged line by line against the engine.

Read in this order: :mod:`~derive.check.tokens` and :mod:`~derive.check.source` (LaTeX tokens
and positions, for both readers); the d(x) reader :mod:`derive.check.dx` (derive's own
notation); the reader of the author's own notation (:mod:`~derive.check.reverse` and the
modules it names); :mod:`~derive.check.report` (the verdict records), :mod:`~derive.check.api`
(:func:`check_file`, :func:`check_text`: which reader), :mod:`~derive.check.command` (the command
line). ``python -m derive.check FILE`` runs it on its own."""

from .api import check_file, check_text
from .command import add_arguments, main, register, run
from .dx.candidates import candidates
from .errors import CheckError
from .report import VERDICTS, LineResult, Report, SkippedLine

__all__ = ["VERDICTS", "CheckError", "LineResult", "Report", "SkippedLine", "add_arguments",
           "candidates", "check_file", "check_text", "main", "register", "run"]
