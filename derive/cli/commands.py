"""The ``derive`` command line.

::

    derive list                                   the cells, their parameters and states
    derive show CELL [--param A] [--mode M]       the derivation in the terminal (Unicode)
    derive latex CELL [--param A ...] [--mode M ...] [--standalone] [--notation NAME|FILE]
                      [--steps] [--width PT] [-o FILE]
    derive generate [CELL ...] [--out DIR] [--check]
    derive verify CELL

Modes: ``forward`` (RTRL, seed 001 eq 26), ``reverse`` (BPTT, seed 002), ``flow`` (the one-step
state Jacobian, then gradient flow: its products, the carousel, norm bounds, the sum over paths,
seed 000's approximation); without ``--mode`` all three. ``--param`` takes the cell's own
parameter names (``derive list``), whatever the notation prints them as.

Exit status: 0 success; 1 a check failed (``generate --check`` found stale files, ``verify``
found an error above tolerance); 2 bad input (unknown cell, parameter, mode or notation, an
unwritable output path), with a message that lists the valid choices. Output files are written
atomically. Nothing here imports SymPy: the command starts fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

MODES = ("forward", "reverse", "flow")
TOLERANCE = 1e-6
"""``derive verify`` passes when every max_rel_err is at most this."""


class _Parser(argparse.ArgumentParser):
    """argparse with derive's error format: ``derive latex: error: ...`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def _cells() -> list[str]:
    from ..spec.cells import BUILTIN

    return list(BUILTIN)


def _check_cell(parser: argparse.ArgumentParser, cell: str) -> None:
    if cell not in _cells():
        parser.error(f"unknown cell {cell!r}; valid cells: {', '.join(_cells())}")


def _check_params(parser: argparse.ArgumentParser, cell: str, params: Sequence[str] | None):
    if not params:
        return None
    from ..calculus.derivation import derive

    valid = derive(cell).params
    for p in params:
        if p not in valid:
            parser.error(f"unknown parameter {p!r} for cell {cell!r}; valid parameters: "
                         f"{', '.join(valid)}")
    return list(dict.fromkeys(params))


def _notation(parser: argparse.ArgumentParser, ref: str | None):
    from ..printing.notation import NotationError, load

    try:
        return load(ref)
    except NotationError as exc:
        parser.error(str(exc))


def _writable(parser: argparse.ArgumentParser, out: str) -> Path:
    """Reject an output path that cannot be written, before any work is done."""
    path = Path(out)
    parent = path.parent
    if path.is_dir():
        parser.error(f"cannot write {out!r}: it is a directory; expected a file path")
    if not parent.exists():
        parser.error(f"cannot write {out!r}: directory {str(parent)!r} does not exist")
    if not parent.is_dir():
        parser.error(f"cannot write {out!r}: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        parser.error(f"cannot write {out!r}: permission denied")
    return path


def _write(parser: argparse.ArgumentParser, path: Path, text: str) -> None:
    from ..tools.generate import write_atomic

    try:
        write_atomic(path, text)
    except OSError as exc:
        parser.error(f"cannot write {str(path)!r}: {exc.strerror or exc}")


# ----------------------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive list``: every built-in cell with its states and parameters."""
    from ..calculus.derivation import derive
    from ..printing.notation import available

    for name in _cells():
        spec = derive(name).spec
        print(f"{name}: {spec.title}")
        print(f"  states  {', '.join(spec.states)}")
        print(f"  params  {' '.join(spec.cell_params)}")
        if spec.readout_params:
            print(f"  readout {' '.join(spec.readout_params)} "
                  f"({', '.join(spec.readout_nodes)})")
    print(f"\nmodes: {', '.join(MODES)}; notations: {', '.join(available())} "
          f"(or a .toml file)")
    return 0


def cmd_show(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive show``: the derivation as Unicode text."""
    from ..document.text import show

    _check_cell(parser, args.cell)
    params = _check_params(parser, args.cell, args.param)
    note = _notation(parser, args.notation)
    width = args.width or max(60, shutil.get_terminal_size((100, 24)).columns)
    sys.stdout.write(show(args.cell, modes=args.mode or MODES, params=params, notation=note,
                          steps=args.steps, width=width))
    return 0


def cmd_latex(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive latex``: a fragment (or with --standalone an article) to stdout or -o FILE."""
    from ..document.latex_doc import document

    _check_cell(parser, args.cell)
    params = _check_params(parser, args.cell, args.param)
    note = _notation(parser, args.notation)
    if not 150 <= args.width <= 2000:
        parser.error(f"--width {args.width:g}: expected a text width in pt between 150 and "
                     f"2000 (345 is the article class at 10pt)")
    out = _writable(parser, args.output) if args.output else None
    text = document(args.cell, modes=args.mode or MODES, params=params, notation=note,
                    steps=args.steps, standalone=args.standalone, width=args.width)
    if out is None:
        sys.stdout.write(text)
    else:
        _write(parser, out, text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive generate``: regenerate generated/ (kernels and LaTeX); --check only compares."""
    from ..tools import generate

    for c in args.cells:
        _check_cell(parser, c)
    out = Path(args.out) if args.out else generate.GENERATED
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} is not a directory")
    files = generate.outputs(args.cells or None)
    where = _shown(out)
    if args.check:
        diffs = generate.stale(files, out)
        if not diffs:
            print(f"{where} is up to date ({len(files)} files)")
            return 0
        print(f"{where} is stale: {len(diffs)} of {len(files)} files differ")
        for rel in sorted(diffs):
            print(f"  {rel}: {_diff_summary(diffs[rel])}")
        print("run `derive generate` to update them")
        return 1
    try:
        written = generate.write_all(files, out)
    except OSError as exc:
        parser.error(f"cannot write to {str(out)!r}: {exc.strerror or exc}")
    for rel in written:
        print(f"wrote {where}/{rel}")
    print(f"{where}: {len(written)} of {len(files)} files updated")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


def _diff_summary(diff: str) -> str:
    lines = diff.splitlines()
    if lines and lines[0].startswith("--- /dev/null"):
        return "missing"
    plus = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    minus = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    return f"+{plus} -{minus} lines"


def cmd_verify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive verify``: run the generated kernels against numeric differences; print the
    largest error per mode and parameter; exit 1 when one exceeds the tolerance."""
    import importlib

    _check_cell(parser, args.cell)
    verify = importlib.import_module("derive.tools.verify")
    rows = list(verify.run(args.cell))
    print(format_table(rows))
    bad = [r for r in rows if not float(r["max_rel_err"]) <= TOLERANCE]
    if not rows:
        print(f"{args.cell}: no checks ran")
        return 1
    if bad:
        print(f"{args.cell}: FAIL, {len(bad)} of {len(rows)} checks exceed max_rel_err "
              f"{TOLERANCE:g}")
        return 1
    print(f"{args.cell}: ok, all {len(rows)} checks within max_rel_err {TOLERANCE:g}")
    return 0


def format_table(rows: Sequence[dict]) -> str:
    """An aligned table of verify rows: mode, param, max_abs_err, max_rel_err, status."""
    head = ("mode", "param", "max_abs_err", "max_rel_err", "status")
    body = [(str(r["mode"]), str(r["param"]), f"{float(r['max_abs_err']):.2e}",
             f"{float(r['max_rel_err']):.2e}",
             "ok" if float(r["max_rel_err"]) <= TOLERANCE else "FAIL") for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    right = (False, False, True, True, False)

    def fmt(cols: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cols, widths, right, strict=True)).rstrip()

    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)])


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``derive`` command."""
    p = _Parser(prog="derive", description="Derive, print and run the gradients of recurrent "
                "cells (forward RTRL, reverse BPTT, gradient flow).")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("list", help="the cells with their parameters and states")
    s.set_defaults(func=cmd_list)

    def derivation_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("cell", metavar="CELL", help="a cell name (derive list)")
        s.add_argument("--param", "-p", action="append", metavar="A",
                       help="only this parameter (repeatable; the cell's own names)")
        s.add_argument("--mode", "-m", action="append", choices=MODES,
                       help="forward, reverse or flow (repeatable; default: all three)")
        s.add_argument("--notation", "-n", metavar="NAME|FILE",
                       help="native (default), seed001, standard, or a notation .toml file")
        s.add_argument("--steps", action="store_true",
                       help="forward mode: the chain-rule lines before the collected form")

    s = sub.add_parser("show", help="the derivation in the terminal")
    derivation_args(s)
    s.add_argument("--width", type=int, metavar="COLS", help="line width (default: terminal)")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("latex", help="the derivation as LaTeX for a paper")
    derivation_args(s)
    s.add_argument("--standalone", action="store_true",
                   help="a complete article instead of a fragment to \\input")
    s.add_argument("--width", type=float, default=345.0, metavar="PT",
                   help="text width to break equations for, in pt (default 345: article 10pt)")
    s.add_argument("-o", "--output", metavar="FILE", help="write here (atomically), not stdout")
    s.set_defaults(func=cmd_latex)

    s = sub.add_parser("generate", help="regenerate generated/ (kernels and LaTeX)")
    s.add_argument("cells", nargs="*", metavar="CELL", help="only these cells (default: all)")
    s.add_argument("--out", metavar="DIR", help="output directory (default: generated/)")
    s.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 with a summary when anything is stale")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("verify", help="check a generated kernel against numeric differences")
    s.add_argument("cell", metavar="CELL", help="a cell name (derive list)")
    s.set_defaults(func=cmd_verify)

    from .. import check
    from . import flow_cli

    flow_cli.register(sub)
    check.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``derive`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]  # type: ignore[union-attr]
    try:
        return int(args.func(args, sub))
    except BrokenPipeError:  # `derive show lstm | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
