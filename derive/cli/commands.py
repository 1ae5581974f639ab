"""The ``derive`` command line.

::

    derive list [CELL ...]                        the cells, their parameters and states
    derive show CELL [--param A] [--mode M]       the derivation in the terminal (Unicode)
    derive latex CELL [--param A ...] [--mode M ...] [--standalone] [--notation NAME|FILE]
                      [--steps] [--width PT] [-o FILE]
    derive generate [CELL ...] [--out DIR] [--check]
    derive verify CELL [--kernels DIR] [--backend numpy|numba]
    derive new NAME [--like CELL] [-o FILE] [--force]
    derive --version

CELL is a built-in cell's name (``derive list``) or a cell spec file (.toml or .json; ``derive
new`` writes a commented starter). Modes: ``forward`` (RTRL, Williams & Zipser 1989, in the
d(x) notation: dh_t/dA = M_t dh_{t-1}/dA + N_t ds_{t-1}/dA + V_t), ``reverse`` (BPTT, Werbos
1990: the adjoint recursions and dL/dA = sum_t ...), ``flow`` (the one-step state Jacobian, then
gradient flow: its products, the constant error carousel of Hochreiter & Schmidhuber 1997, the
norm bounds of Bengio et al. 1994 and Pascanu et al. 2013, the sum over paths, and the truncated
gradient of Gers et al. 2000); without ``--mode`` all three. ``--param`` takes the cell's own
parameter names, whatever the notation prints them as.

Exit status: 0 success; 1 a check failed (``generate --check`` found stale files, ``verify``
found an error above tolerance); 2 bad input (unknown cell, a spec file that does not read,
an unknown parameter, mode or notation, an unwritable output path), with a message that names
what was expected. Output files are written atomically with the mode the umask gives. Nothing
here imports SymPy until a command needs it: the command starts fast.
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


def _derivation(parser: argparse.ArgumentParser, cell: str):
    """The derivation of a built-in cell or a spec file; bad input is a usage error."""
    from ..spec import SpecError
    from ._cells import derivation

    try:
        return derivation(cell)
    except SpecError as exc:
        parser.error(str(exc))


def _check_params(parser: argparse.ArgumentParser, d, params: Sequence[str] | None):
    if not params:
        return None
    valid = d.params
    for p in params:
        if p not in valid:
            parser.error(f"unknown parameter {p!r} for cell {d.name!r}; valid parameters: "
                         f"{', '.join(valid)}")
    return list(dict.fromkeys(params))


def _notation(parser: argparse.ArgumentParser, ref: str | None):
    from ..printing.notation import NotationError, load

    try:
        return load(ref)
    except NotationError as exc:
        parser.error(str(exc))


def _writable(parser: argparse.ArgumentParser, out: str, what: str = "-o") -> Path:
    """Reject an output path that cannot be written, before any work is done; a symlink
    stands for its target (which is written, the link kept)."""
    if not out.strip():
        parser.error(f"{what}: expected a file path, got an empty one")
    path = Path(os.path.realpath(out))
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
    from ..tools.files import write_file

    try:
        write_file(path, text)
    except OSError as exc:
        parser.error(f"cannot write {str(path)!r}: {exc.strerror or exc}")


# ----------------------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive list [CELL ...]``: the given cells (default: every built-in cell) with their
    states and parameters."""
    from ..printing.notation import available

    ds = [_derivation(parser, c) for c in (args.cells or _cells())]
    for d in ds:
        spec = d.spec
        print(f"{spec.name}: {spec.title}")
        print(f"  states  {', '.join(spec.states)}")
        print(f"  params  {' '.join(spec.cell_params)}")
        if spec.readout_params:
            print(f"  readout {' '.join(spec.readout_params)} "
                  f"({', '.join(spec.readout_nodes)})")
    if not args.cells:
        print(f"\nmodes: {', '.join(MODES)}; notations: {', '.join(available())} "
              f"(or a .toml file); your own cell: a spec file (`derive new NAME`)")
    return 0


def cmd_show(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive show``: the derivation as Unicode text."""
    from ..document.text import show

    d = _derivation(parser, args.cell)
    params = _check_params(parser, d, args.param)
    note = _notation(parser, args.notation)
    width = args.width or max(60, shutil.get_terminal_size((100, 24)).columns)
    sys.stdout.write(show(d, modes=args.mode or MODES, params=params, notation=note,
                          steps=args.steps, width=width))
    return 0


def cmd_latex(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive latex``: a fragment (or with --standalone an article) to stdout or -o FILE."""
    from ..document.latex_doc import document

    d = _derivation(parser, args.cell)
    params = _check_params(parser, d, args.param)
    note = _notation(parser, args.notation)
    if not 150 <= args.width <= 2000:
        parser.error(f"--width {args.width:g}: expected a text width in pt between 150 and "
                     f"2000 (345 is the article class at 10pt)")
    out = _writable(parser, args.output) if args.output is not None else None
    text = document(d, modes=args.mode or MODES, params=params, notation=note,
                    steps=args.steps, standalone=args.standalone, width=args.width)
    if out is None:
        sys.stdout.write(text)
    else:
        _write(parser, out, text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive generate``: write kernels; ``--check`` only compares.

    Without ``--out``: the built-in kernels (``derive.kernels``, the repository's generated/:
    kernels, LaTeX articles, package index), in a source checkout only. With ``--out DIR``: a
    kernel package of the given cells (default: every built-in cell) that imports on its own.
    """
    from ..spec import SpecError
    from ..spec.files import looks_like_file
    from ..tools import generate

    ds = [_derivation(parser, c) for c in args.cells]
    own = [c for c in args.cells if c not in _cells() or looks_like_file(c)]
    if args.out is not None and not args.out.strip():
        parser.error("--out: expected a directory, got an empty path")
    if args.out is None:
        if own:
            parser.error(f"--out DIR is needed for {own[0]!r}: the kernels of a cell spec file "
                         f"go into a kernel package folder of yours (it imports on its own)")
        if not generate.CHECKOUT and not args.check:
            parser.error(f"without --out, generate rewrites the built-in kernels inside the "
                         f"installed package ({generate.GENERATED}); give --out DIR to write a "
                         f"kernel package of your own")
        out = generate.GENERATED
    else:
        out = Path(os.path.realpath(args.out))
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} is not a directory")
    if out == generate.GENERATED.resolve() and own:
        parser.error(f"{own[0]!r}: the built-in kernel package holds the built-in cells only; "
                     f"give --out DIR")
    try:
        if out == generate.GENERATED.resolve() or args.out is None:
            files = generate.outputs([d.name for d in ds] or None)
        else:
            files = generate.package_outputs([d.spec for d in ds] or
                                             [_derivation(parser, c).spec for c in _cells()])
    except SpecError as exc:
        parser.error(str(exc))
    where = _shown(out)
    again = " ".join(["derive generate", *args.cells, *(["--out", args.out] if args.out else [])])
    if args.check:
        diffs = generate.stale(files, out)
        if not diffs:
            print(f"{where} is up to date ({len(files)} files)")
            return 0
        print(f"{where} is stale: {len(diffs)} of {len(files)} files differ")
        for rel in sorted(diffs):
            print(f"  {rel}: {_diff_summary(diffs[rel])}")
        print(f"run `{again}` to update them")
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
    """``derive verify``: run a cell's kernel against numeric differences; print the largest
    error per mode and parameter; exit 1 when one exceeds the tolerance."""
    import importlib

    d = _derivation(parser, args.cell)
    verify = importlib.import_module("derive.tools.verify")
    if args.kernels is not None and not args.kernels.strip():
        parser.error("--kernels: expected a directory, got an empty path")
    if args.backend == "numba" and importlib.util.find_spec("numba") is None:
        parser.error("--backend numba needs numba, which is not installed "
                     "(pip install 'derive-rnn[numba]')")
    try:
        rows = list(verify.run(d, backend=args.backend, kernels=args.kernels))
    except verify.KernelError as exc:
        parser.error(str(exc))
    print(format_table(rows))
    bad = [r for r in rows if not float(r["max_rel_err"]) <= TOLERANCE]
    if not rows:
        print(f"{d.name}: no checks ran")
        return 1
    if bad:
        print(f"{d.name}: FAIL, {len(bad)} of {len(rows)} checks exceed max_rel_err "
              f"{TOLERANCE:g}")
        return 1
    print(f"{d.name}: ok, all {len(rows)} checks within max_rel_err {TOLERANCE:g}")
    return 0


def cmd_new(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``derive new NAME``: write a commented starter spec (TOML) for a cell of your own."""
    from ..spec import CellSpec, SpecError
    from ..spec.files import starter_toml

    like = _derivation(parser, args.like).spec if args.like else None
    try:
        CellSpec.from_dict({"name": args.name, "params": {"b": "hidden"},
                            "nodes": {"h": "h_prev + b"}, "states": ["h"]})
    except SpecError as exc:
        parser.error(f"NAME {args.name!r}: {str(exc).split(': ', 2)[-1]}")
    out = args.output if args.output is not None else f"{args.name}.toml"
    path = _writable(parser, out)
    if path.exists() and not args.force:
        parser.error(f"{out!r} exists; choose another -o FILE or pass --force to replace it")
    text = starter_toml(args.name, like)
    _write(parser, path, text)
    print(f"wrote {out}: edit it, then try `derive show {out}` and "
          f"`derive generate {out} --out {args.name}_kernels`", file=sys.stderr)
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
    from ._cells import CELL_HELP

    p = _Parser(prog="derive", description="Derive, print and run the gradients of recurrent "
                "cells (forward RTRL, reverse BPTT, gradient flow).",
                epilog="CELL: " + CELL_HELP + ".")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    s = sub.add_parser("list", help="the cells with their parameters and states")
    s.add_argument("cells", nargs="*", metavar="CELL",
                   help="only these (default: every built-in cell); " + CELL_HELP)
    s.set_defaults(func=cmd_list)

    def derivation_args(s: argparse.ArgumentParser) -> None:
        s.add_argument("cell", metavar="CELL", help=CELL_HELP)
        s.add_argument("--param", "-p", action="append", metavar="A",
                       help="only this parameter (repeatable; the cell's own names)")
        s.add_argument("--mode", "-m", action="append", choices=MODES,
                       help="forward, reverse or flow (repeatable; default: all three)")
        s.add_argument("--notation", "-n", metavar="NAME|FILE",
                       help=f"{', '.join(_notations())} (default native), or a notation "
                            f".toml file")
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

    s = sub.add_parser("generate", help="write kernels: the built-in ones, or a package of "
                       "your cells (--out DIR)")
    s.add_argument("cells", nargs="*", metavar="CELL",
                   help="only these (default: every built-in cell); " + CELL_HELP)
    s.add_argument("--out", metavar="DIR",
                   help="write a kernel package here (NumPy and numba kernels, runtime, "
                        "__init__; relative imports) instead of the built-in kernels")
    s.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 with a summary when anything is stale")
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("verify", help="check a cell's kernel against numeric differences")
    s.add_argument("cell", metavar="CELL", help=CELL_HELP)
    s.add_argument("--kernels", metavar="DIR",
                   help="the kernel package to check (written by `derive generate CELL --out "
                        "DIR`; default: the built-in kernel, or one printed for the cell)")
    s.add_argument("--backend", choices=("numpy", "numba"), default="numpy",
                   help="which kernel module (default numpy)")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("new", help="write a commented starter spec file for a cell of your own")
    s.add_argument("name", metavar="NAME", help="the cell's name (also the file's: NAME.toml)")
    s.add_argument("--like", metavar="CELL", help="start from this cell (" + CELL_HELP + ")")
    s.add_argument("-o", "--output", metavar="FILE", help="write here (default: NAME.toml)")
    s.add_argument("--force", action="store_true", help="replace an existing file")
    s.set_defaults(func=cmd_new)

    from .. import check
    from . import flow_cli

    flow_cli.register(sub)
    check.register(sub)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    try:
        return f"{version('derive-rnn')} (derive-rnn)"
    except PackageNotFoundError:
        return f"{__version__} (derive-rnn, not installed)"


def _notations() -> list[str]:
    from ..printing.notation import available

    return available()


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
