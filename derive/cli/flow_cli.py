"""``derive flow``: measure vanishing and exploding gradients of cells, print, plot, save.

::

    derive flow CELL|SPEC [...] [--steps T] [--seed S] [--forget-bias F] [--hidden N]
                [--inputs M] [--plot FILE.png|FILE.pdf] [--json FILE]

For every cell (a built-in name or a cell spec file) it runs the cell's kernel over T steps
(weights as torch initialises them, ``--forget-bias`` added to the carousel gates' biases, x_t ~
N(0, 1), zero initial state) and measures ||dh_T/dh_k||, ||ds_T/ds_k|| and the carousel path
prod d(f_j) against the lag T-k, beside the derived bound (:mod:`derive.tools.flow`). It prints
a table (norms at lag 1, 10 and T-1, the decay factor per step, the bound at T-1) and the error
of the truncated gradient of Gers, Schmidhuber & Cummins (2000); ``--plot`` writes a log-scale
figure (needs matplotlib: ``pip install 'derive-rnn[plot]'``), ``--json`` the full data with the
symbolic results as LaTeX.

Exit status: 0 success; 2 bad input (unknown cell, a bad number, an unwritable or unsupported
output path, --plot without matplotlib), with a message saying what was expected.

Wired into ``derive`` by :func:`register`; also runs on its own: ``python -m derive.cli.flow_cli``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

PROG = "derive flow"
DESCRIPTION = ("Measure vanishing and exploding gradients of cells (norms of dh_T/dh_k, "
               "ds_T/ds_k and the carousel path against the lag T-k, beside the derived bound); "
               "print a table, plot and save the data.")
PLOT_SUFFIXES = (".png", ".pdf")


class UsageError(Exception):
    """Bad command-line input: printed as ``derive flow: error: ...``, exit status 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``derive flow``."""
    p.add_argument("cells", nargs="+", metavar="CELL", help="built-in cells (derive list) or "
                   "cell spec files (.toml or .json)")
    p.add_argument("--steps", "-T", type=int, default=50, metavar="T",
                   help="time steps to run; lags 1..T-1 are measured (default 50)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of the weights and inputs (default 0)")
    p.add_argument("--forget-bias", type=float, default=0.0, metavar="F",
                   help="added to the biases of the carousel gates (b_f of the LSTMs, b_z of "
                        "the GRU; default 0: the weights as initialised)")
    p.add_argument("--hidden", type=int, default=16, metavar="N",
                   help="hidden size (default 16)")
    p.add_argument("--inputs", type=int, default=8, metavar="M", help="input size (default 8)")
    p.add_argument("--plot", metavar="FILE", help="write the figure here (.png or .pdf)")
    p.add_argument("--json", metavar="FILE", help="write the full data here as JSON")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``flow`` subcommand to ``derive``'s subparsers (``args.func`` is :func:`run`)."""
    p = subparsers.add_parser(
        "flow", help="measure and plot vanishing/exploding gradients of cells",
        description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)


def _writable(out: str, what: str) -> Path:
    if not out.strip():
        raise UsageError(f"{what}: expected a file path, got an empty one")
    path = Path(os.path.realpath(out))  # a symlink: its target is written
    parent = path.parent
    if path.is_dir():
        raise UsageError(f"{what} {out!r} is a directory; expected a file path")
    if not parent.is_dir():
        raise UsageError(f"{what} {out!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{what} {out!r}: permission denied")
    return path


def check(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """Validate everything before any work; returns the plot and JSON paths."""
    from ..spec import SpecError
    from ._cells import derivation

    try:
        args.derivations = [derivation(c) for c in dict.fromkeys(args.cells)]
    except SpecError as exc:
        raise UsageError(str(exc)) from None
    if args.steps < 2:
        raise UsageError(f"--steps {args.steps}: expected at least 2 (lags 1..T-1)")
    if args.hidden < 1 or args.inputs < 1:
        raise UsageError(f"--hidden {args.hidden} --inputs {args.inputs}: expected positive "
                         "sizes")
    if not -50.0 <= args.forget_bias <= 50.0:
        raise UsageError(f"--forget-bias {args.forget_bias:g}: expected a number in [-50, 50]")
    plot = json_path = None
    if args.plot is not None:
        if not args.plot.strip():
            raise UsageError("--plot: expected a file path, got an empty one")
        suffix = Path(args.plot).suffix.lower()
        if suffix not in PLOT_SUFFIXES:
            raise UsageError(f"--plot {args.plot!r}: expected a .png or .pdf file, got "
                             f"{suffix or 'no suffix'!r}")
        if importlib.util.find_spec("matplotlib") is None:
            raise UsageError("--plot needs matplotlib, which is not installed; install it with "
                             "pip install 'derive-rnn[plot]' (or: pip install matplotlib)")
        plot = _writable(args.plot, "--plot")
    if args.json is not None:
        json_path = _writable(args.json, "--json")
    return plot, json_path


def _atomic(path: Path, write) -> None:
    from ..tools.files import write_with

    write_with(path, write)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run ``derive flow``; returns the exit status (2 with a message on bad input)."""
    try:
        plot_path, json_path = check(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}\n(see `{PROG} --help`)", file=sys.stderr)
        return 2
    from ..tools import flow

    flows = [flow.run_cell(d, steps=args.steps, seed=args.seed, forget_bias=args.forget_bias,
                           n_hidden=args.hidden, n_in=args.inputs) for d in args.derivations]
    print(f"gradient flow over T={args.steps} steps, n_hidden={args.hidden}, "
          f"n_in={args.inputs}, seed={args.seed}, forget bias {args.forget_bias:g}; "
          f"spectral norms of d(.)_T/d(.)_k against the lag T-k")
    print(flow.summary_table(flows))
    try:
        if plot_path is not None:
            _atomic(plot_path, lambda tmp: flow.plot(flows, tmp))
            print(f"wrote {plot_path}", file=sys.stderr)
        if json_path is not None:
            data = {"command": "derive flow", "cells": []}
            for f, d in zip(flows, args.derivations, strict=True):
                item = f.to_dict()
                item["latex"] = [list(r) for r in flow.latex_rows(d)]
                data["cells"].append(item)
            text = json.dumps(data, indent=1)

            def write_json(tmp: str) -> None:
                Path(tmp).write_text(text + "\n", encoding="utf-8")

            _atomic(json_path, write_json)
            print(f"wrote {json_path}", file=sys.stderr)
    except OSError as exc:
        print(f"{PROG}: error: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser of ``derive flow``."""
    p = _Parser(prog=PROG, description=DESCRIPTION)
    add_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m derive.cli.flow_cli CELL ...``: the same as ``derive flow CELL ...``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run(args, parser)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
