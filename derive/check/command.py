"""The command line of ``derive check``::

    derive check FILE [--cell CELL] [--notation NAME|FILE] [--json]
    python -m derive.check FILE ...            (the same, standalone)

Exit status: 0 every judged line correct, 1 a line is not, 2 a usage error
(:mod:`derive.check.report`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .api import check_file
from .errors import CheckError

PROG = "derive check"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``derive check``."""
    p.add_argument("file", metavar="FILE", help="a .tex file or Markdown with $$...$$ math")
    p.add_argument("--cell", "-c", metavar="CELL",
                   help="the cell (derive list) or a .json/.toml spec; default: inferred")
    p.add_argument("--notation", "-n", metavar="NAME|FILE",
                   help="native, goodfellow, standard or a notation .toml; default: inferred")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one record per judged line (skipped lines: none)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand to ``derive``'s subparsers (``args.func`` is :func:`run`)."""
    p = subparsers.add_parser(
        "check", help="verify a hand derivation (.tex or Markdown) line by line",
        description="Verify every line of a hand derivation in the d(x) notation against the "
                    "engine; exit 0 when all are correct, 1 otherwise, 2 on bad input.")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run ``derive check``; returns the exit status."""
    try:
        report = check_file(args.file, cell=args.cell, notation=args.notation)
    except CheckError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        sys.stdout.write(report.format())
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m derive.check FILE [--cell CELL] [--notation N] [--json]``."""

    class _P(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            self.exit(2, f"{PROG}: error: {message}\n(see `{PROG} --help`)\n")

    p = _P(prog=PROG, description="Verify a hand derivation against the engine.")
    add_arguments(p)
    return run(p.parse_args(argv), p)
