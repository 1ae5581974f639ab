"""One step of a lowered :class:`~derive.codegen.lower.Program` as the numba kernels run it.

The NumPy kernels run a step as one array statement after another. The numba kernels run its
elementwise statements fused, as loops over (batch row b, unit j), and its matrix products
between those loops (NumPy's BLAS per step, or the printed ``_nt2`` per pair of batch rows).
This module decides that, from the statements alone, with set operations on what each statement
reads and writes (nothing here prints code):

* :func:`hoist`: a matrix product inside a statement, ``W (r * h_{t-1})`` (the minimal gated
  unit, Cho's GRU), becomes a :class:`Product` of its own, reading the vector from an array
  (computed first, by an :class:`Assign` of its own where it is not a value of the step) and
  writing a (B, rows) array that the statement then reads elementwise;
* :func:`schedule`: list scheduling in program order: an :class:`Assign` joins the first loop
  of its size that comes after every statement it depends on, a :class:`Product` the first
  group of products after them; each loop is one compiled pass over (b, j);
* :func:`array_needs`: which values of a loop must live in arrays (read by another phase, by
  a product, or after the step's loops) and which stay scalars of their loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, is_dataclass, replace

from ..spec import Mul
from .ir import (
    At,
    BatchOuter,
    BatchSum,
    Cols,
    Column,
    Const,
    Dot,
    Expr,
    MatMul,
    Row,
    Signed,
    Var,
    idents,
    parts,
)
from .naming import Namer
from .numba_printer import Place


@dataclass(frozen=True)
class Assign:
    """An elementwise statement of a fused loop: the scalar ``ident`` (None: none) = ``expr``,
    written to every place of ``stores`` (``op`` '+=': added into them, a gradient sum)."""

    ident: str | None
    expr: Expr
    dim: str  # the loop's size: 'n_hidden' or 'n_in'
    stores: tuple[Place, ...] = ()
    op: str = "="
    comment: str = ""

    def reads(self) -> frozenset[str]:
        """Values and arrays the statement reads."""
        return frozenset(leaves(self.expr))

    def writes(self) -> frozenset[str]:
        return frozenset(([self.ident] if self.ident else []) + [p.array for p in self.stores])


@dataclass(frozen=True)
class Product:
    """``out[b] (+)= M vec[b]`` for every batch row: the matrix product ``vec @ M.T``
    (``transposed`` False) or ``vec @ M[rows]`` (True: M^T vec, rows lo:hi of M) of a vector
    the step holds in an array (``vec``: a Var, Cols or At of one)."""

    out: Place
    vec: Expr
    matrix: str
    transposed: bool = False
    rows: tuple[str, str] | None = None
    add: bool = False
    comment: str = ""

    def reads(self) -> frozenset[str]:
        return frozenset(leaves(self.vec)) | ({self.out.array} if self.add else frozenset())

    def writes(self) -> frozenset[str]:
        return frozenset({self.out.array})


@dataclass(frozen=True)
class Loop:
    """One fused pass over (b, j), j < ``dim``."""

    dim: str
    body: tuple[Assign, ...]


@dataclass(frozen=True)
class Rank:
    """``acc += sum_b a_b v_b^T``: a step's share of dL/dW for a matrix outside the stacks
    (``a``, ``v``: vectors the step holds in arrays)."""

    acc: str
    a: Expr
    v: Expr


Phase = Loop | tuple  # a loop, or a group of products run one after the other


def leaves(e: Expr) -> set[str]:
    """The identifiers and arrays an expression reads (:func:`~derive.codegen.ir.idents`)."""
    return idents(e)


def subexprs(e: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions (:func:`~derive.codegen.ir.parts`)."""
    return parts(e)


def rebuild(e: Expr, f: Callable[[Expr], Expr]) -> Expr:
    """``e`` with ``f`` applied to each direct subexpression."""
    if isinstance(e, Signed):
        return Signed(tuple((s, f(t)) for s, t in e.terms))
    if isinstance(e, Mul):
        return Mul(tuple(f(x) for x in e.factors))
    if not is_dataclass(e):
        return e
    changes = {}
    for fl in fields(e):
        v = getattr(e, fl.name)
        if isinstance(v, Expr):
            changes[fl.name] = f(v)
    return replace(e, **changes) if changes else e


def elementwise(e: Expr) -> bool:
    """Can ``e`` be computed one element at a time (no matrix product, no batch sum)?"""
    if isinstance(e, (Dot, MatMul, BatchOuter, BatchSum, Column, Row)):
        return False
    return all(elementwise(s) for s in subexprs(e))


class Sizes:
    """The size (a size code: 'n_hidden', 'n_in') of every vector of a step, inferred from the
    statements: a value's size is its expression's; leaves from the Program."""

    def __init__(self, known: dict[str, str], cols: dict[tuple[str, str, str], str],
                 matrices: dict[str, tuple[str, str]]):
        self.known = dict(known)  # identifier -> size
        self.cols = cols  # (array, lo, hi) -> size of those columns
        self.matrices = matrices  # matrix identifier -> (rows, columns)

    def of(self, e: Expr) -> str | None:
        if isinstance(e, Var):
            return self.known.get(e.ident)
        if isinstance(e, Cols):
            return self.cols.get((e.array, e.lo, e.hi))
        if isinstance(e, At):
            return self.known.get(e.array)
        if isinstance(e, Dot):
            rows, cols = self.matrices[e.matrix]
            return cols if e.transposed else rows
        if isinstance(e, Const):
            return None
        for sub in subexprs(e):
            d = self.of(sub)
            if d is not None:
                return d
        return None

    def bind(self, ident: str, e: Expr, default: str = "n_hidden") -> str:
        d = self.of(e) or default
        self.known[ident] = d
        return d


def hoist(items: Iterable, names: Namer, sizes: Sizes, held: Callable[[str], bool]) -> list:
    """The items with every matrix product inside an elementwise statement made a
    :class:`Product` of its own (see the module docstring). ``held(ident)``: is that value of
    the step one the kernel keeps in an array anyway (a state, a cached value)? A product of
    anything else (a compound expression) first stores its vector with an Assign."""
    out: list = []
    made: dict[tuple, str] = {}  # one product per (vector, matrix): W^T a read twice is one

    def vec_of(e: Expr) -> Expr:
        if isinstance(e, (Cols, At)) or (isinstance(e, Var) and held(e.ident)):
            return e
        if isinstance(e, Var):
            return e  # a value of the step: the plan keeps it in an array (read by a product)
        ident = names.fresh("v")
        out.append(Assign(ident, e, sizes.bind(ident, e)))
        return Var(ident)

    def lift(e: Expr) -> Expr:
        e = rebuild(e, lift)
        if isinstance(e, Dot):
            key = (e.vec, e.matrix, e.transposed, e.rows)
            if key not in made:
                vec = vec_of(e.vec)
                made[key] = ident = names.fresh(f"{e.matrix}_v")
                sizes.bind(ident, e)
                out.append(Product(Place(ident), vec, e.matrix, e.transposed, e.rows))
            return Var(made[key])
        return e

    for it in items:
        if isinstance(it, Assign):
            expr = lift(it.expr)
            out.append(replace(it, expr=expr))
        else:
            out.append(it)
    return out


def schedule(items: Iterable) -> tuple[Phase, ...]:
    """Loops and product groups in an order that respects every dependency (a statement reads
    what an earlier one writes; a write after an earlier read of the same thing), each
    statement as early as that allows, program order kept within a phase."""
    phases: list[list] = []  # [kind, dim, items]: kind 'loop' or 'prod'
    written: dict[str, int] = {}  # identifier or array -> last phase writing it
    read: dict[str, int] = {}  # identifier or array -> last phase reading it
    for it in items:
        kind, dim = ("loop", it.dim) if isinstance(it, Assign) else ("prod", None)
        lo = 0
        for k in it.reads():
            if k in written:
                p = written[k]
                lo = max(lo, p if phases[p][:2] == [kind, dim] else p + 1)
        for k in it.writes():
            if k in read:
                lo = max(lo, read[k])
            if k in written:  # two writes of one array (a gradient sum): keep their order
                lo = max(lo, written[k])
        idx = next((i for i in range(lo, len(phases)) if phases[i][:2] == [kind, dim]), None)
        if idx is None:
            phases.append([kind, dim, []])
            idx = len(phases) - 1
        phases[idx][2].append(it)
        for k in it.writes():
            written[k] = max(written.get(k, -1), idx)
        for k in it.reads():
            read[k] = max(read.get(k, -1), idx)
    return tuple(Loop(dim, tuple(body)) if kind == "loop" else tuple(body)
                 for kind, dim, body in phases)


def array_needs(phases: tuple[Phase, ...], later: Iterable[Expr] = ()) -> set[str]:
    """Values computed by a loop that something outside that loop reads: another loop, a
    product, or the ``later`` expressions (what runs after the phases). They must be kept in
    arrays; every other value of a loop stays a scalar of it."""
    home: dict[str, int] = {}
    for i, ph in enumerate(phases):
        if isinstance(ph, Loop):
            for a in ph.body:
                if a.ident:
                    home[a.ident] = i
    need: set[str] = set()
    for i, ph in enumerate(phases):
        items = ph.body if isinstance(ph, Loop) else ph
        for it in items:
            for k in it.reads():
                if k in home and (home[k] != i or not isinstance(ph, Loop)):
                    need.add(k)
    for e in later:
        need |= leaves(e) & set(home)
    return need


__all__ = ["Assign", "Loop", "Phase", "Product", "Rank", "Sizes", "array_needs", "elementwise",
           "hoist", "leaves", "rebuild", "schedule", "subexprs"]
