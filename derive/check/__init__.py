"""``derive check``: a hand derivation parsed (``parse``) and judged line by line against the
engine (``judge``). ``python -m derive.check FILE`` runs it on its own."""

from .judge import (
    VERDICTS,
    CheckError,
    LineResult,
    Report,
    SkippedLine,
    add_arguments,
    candidates,
    check_file,
    check_text,
    main,
    register,
    run,
)

__all__ = ["VERDICTS", "CheckError", "LineResult", "Report", "SkippedLine", "add_arguments",
           "candidates", "check_file", "check_text", "main", "register", "run"]
