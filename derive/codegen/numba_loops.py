"""Printing the numba kernels' compiled functions: fused loops, their row views, their
arguments and sizes (shared by :mod:`derive.codegen.numba_backend` and
:mod:`derive.codegen.numba_rtrl`).

A loop body is printed statement by statement with
:class:`~derive.codegen.numba_printer.NumbaPrinter`: the values it reads from arrays are loaded
once at the top of the unit loop (``i = A_x_t_0[j]``, before any write: a gate's columns of A_x
are read and then overwritten by its adjoint), a value read later in the loop is bound to its
scalar, a value kept in an array is written to its row view. What a function takes as
arguments is what its loops and lines use (:class:`Record`), never found by reading code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping

from .ir import Expr, Var
from .naming import Namer
from .numba_printer import Constants, NumbaPrinter, Place, Views
from .numba_schedule import Loop, subexprs


def var_order(e: Expr) -> list[str]:
    """The Var identifiers of ``e`` in reading order (left to right), each once."""
    out: list[str] = []

    def walk(x: Expr) -> None:
        if isinstance(x, Var) and x.ident not in out:
            out.append(x.ident)
        for sub in subexprs(x):
            walk(sub)

    walk(e)
    return out


def rows_of(place: Place) -> str:
    """The (B, k) array of ``place`` for every batch row at step t: ``A_x[t, :, lo:hi]``."""
    parts = ([place.time] if place.time is not None else [])
    if place.lo is not None:
        parts += [":"] if place.batched else []
        parts.append(f"{place.lo}:{place.hi}")
    return f"{place.array}[{', '.join(parts)}]" if parts else place.array


def quote(name: str) -> str:
    """A name as a string literal of the printed code (a cell name may hold any character)."""
    return json.dumps(name)


def block(lines: list[str]) -> list[str]:
    """A block's lines, with ``pass`` where it holds no statement (only comments, or none)."""
    return lines if any(not line.lstrip().startswith("#") for line in lines) else \
        lines + ["pass"]


def indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + line for line in lines]


class Record:
    """What one compiled function uses: the places it reads or writes through views (named by
    the module-wide :class:`Views`), the arrays it takes, its constants."""

    def __init__(self, views: Views, consts: Constants):
        self._views, self._consts = views, consts
        self.places: list[Place] = []
        self.arrays: list[str] = []
        self.constants: list[str] = []

    def name(self, place_or_value) -> str:
        if isinstance(place_or_value, Place):
            if place_or_value not in self.places:
                self.places.append(place_or_value)
            self.use(place_or_value.array)
            return self._views.name(place_or_value)
        name = self._consts.name(place_or_value)
        if name not in self.constants:
            self.constants.append(name)
        return name

    def use(self, *arrays: str) -> None:
        for a in arrays:
            if a not in self.arrays:
                self.arrays.append(a)

    def merge(self, other: Record) -> None:
        self.use(*other.arrays)
        self.places += [p for p in other.places if p not in self.places]
        self.constants += [c for c in other.constants if c not in self.constants]


class LoopPrinter:
    """Prints the fused loops of one module: its Namer, row views and typed constants, and
    where each array keeps its sizes (``axes``: array -> {size symbol: axis})."""

    def __init__(self, names: Namer, axes: Mapping[str, Mapping[str, int]]):
        self.names = names
        self.views, self.consts = Views(names), Constants(names)
        self.axes = axes

    def record(self) -> Record:
        return Record(self.views, self.consts)


    def size_line(self, args: list[str], syms: list[str], fallback: str) -> str:
        """``batch, n_hidden = S_h.shape[1], S_h.shape[2]``: the sizes ``syms`` from arrays
        among ``args`` (``fallback`` joins the arguments where none has one)."""
        axes, found = self.axes, []
        for sym in dict.fromkeys(syms):
            src = next((a for a in args if sym in axes.get(a, {})), None)
            if src is None:
                src = next(a for a in (fallback, "xs") if sym in axes.get(a, {}))
                args.append(src)
            found.append((sym, f"{src}.shape[{axes[src][sym]}]"))
        return f"{', '.join(s for s, _ in found)} = {', '.join(e for _, e in found)}"

    def loop(self, loop: Loop, places: Mapping[str, Place], rec: Record, keep: bool = False,
             index: str = "j") -> tuple[list[str], list[str]]:
        """(the views to take per batch row, the unit loop's body) of one fused loop; ``keep``
        binds every value to its scalar (lines printed after the statements read them)."""
        mine = self.record()
        bound = {a.ident for a in loop.body if a.ident}
        # a value the loop reads from a row view is loaded once into its scalar, before any
        # write (parameters and product rows are read in place, values of the loop are its
        # scalars)
        held = {v for a in loop.body for v in var_order(a.expr)
                if v not in bound and places.get(v) is not None and places[v].batched
                and places[v].array != v}
        reads: list[str] = []
        printer = NumbaPrinter(places=places, scalars=held | bound, views=mine, consts=mine,
                               index=index, reads=reads)
        printed, per = [], []
        for a in loop.body:
            mark = len(reads)
            printed.append(printer.doprint(a.expr))
            per.append(reads[mark:])
        reads_left = Counter(reads)
        loaded = [v for v in dict.fromkeys(reads) if v in held]
        body = [f"{v} = {mine.name(places[v])}[{index}]" for v in loaded]
        for a, code, mine_reads in zip(loop.body, printed, per, strict=True):
            reads_left.subtract(mine_reads)
            if a.comment:
                body.append(f"# {a.comment}")
            value = code
            if a.ident and (keep or reads_left[a.ident] > 0 or len(a.stores) > 1):
                body.append(f"{a.ident} = {value}")
                value = a.ident
            elif len(a.stores) > 1:
                tmp = self.names.fresh("e")
                body.append(f"{tmp} = {value}")
                value = tmp
            op = "+=" if a.op == "+=" else "="
            body += [f"{mine.name(st)}[{index}] {op} {value}" for st in a.stores]
        views = [self.views.define(pl) for pl in mine.places
                 if not (pl.time is None and not pl.batched and pl.lo is None)]
        rec.merge(mine)
        return views, body

    def args(self, rec: Record, first: list[str]) -> list[str]:
        """The arguments of a compiled function: ``first``, the arrays it uses, its
        constants."""
        out = list(first)
        out += [a for a in rec.arrays if a not in out]
        return out + [c for c in rec.constants if c not in out]


__all__ = ["LoopPrinter", "Record", "block", "indent", "quote", "rows_of", "var_order"]
