"""The expression language of cells and derivations: the AST and how to walk it.

Every node expression of a cell spec (:mod:`derive.spec.parse` reads it from text) and every
argument of d(.) and d_2(.) in a derivation is one of these frozen values (``d(s_{t-1})`` is
``Diag(Ref("s", lag=1))``). :data:`HAT`, :data:`PREV` and :data:`INPUT` are the naming
conventions of a cell's graph (a gate's pre-activation node, a previous state, the input).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

HAT = "__hat"
PREV = "_prev"
INPUT = "x"


class SpecError(ValueError):
    """A cell spec is malformed; the message names the cell and the culprit."""


# ----------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Expr:
    """Base of the vector-expression AST."""


@dataclass(frozen=True)
class Ref(Expr):
    """A named vector: input ``x``, node/state value, previous state (lag=1) or 1-D parameter."""

    name: str
    lag: int = 0
    kind: str = "node"  # node | input | param


@dataclass(frozen=True)
class Const(Expr):
    """A constant vector c * 1 (the all-ones vector times a number)."""

    value: Fraction


@dataclass(frozen=True)
class Call(Expr):
    """Elementwise activation act(arg)."""

    fn: str
    arg: Expr


@dataclass(frozen=True)
class DerivAt(Expr):
    """The elementwise derivative act'(arg). ``DerivAt(f, Ref('g__hat'))`` prints as g'_t."""

    fn: str
    arg: Expr


@dataclass(frozen=True)
class MatVec(Expr):
    """Matrix-vector product ``P @ arg`` with a 2-D parameter P."""

    param: str
    arg: Expr


@dataclass(frozen=True)
class Add(Expr):
    """Signed sum: ``terms`` is a tuple of (sign, expr), sign in {+1, -1}."""

    terms: tuple[tuple[int, Expr], ...]


@dataclass(frozen=True)
class Mul(Expr):
    """Hadamard product of two or more vectors."""

    factors: tuple[Expr, ...]


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of e."""
    if isinstance(e, (Call, DerivAt, MatVec)):
        return (e.arg,)
    if isinstance(e, Add):
        return tuple(t for _, t in e.terms)
    if isinstance(e, Mul):
        return e.factors
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """e and all its subexpressions, pre-order."""
    yield e
    for c in children(e):
        yield from walk(c)


def params_in(e: Expr) -> set[str]:
    """Names of the parameters an expression uses."""
    return {x.name for x in walk(e) if isinstance(x, Ref) and x.kind == "param"} | \
        {x.param for x in walk(e) if isinstance(x, MatVec)}


def refs_in(e: Expr) -> set[Ref]:
    """The vector references an expression uses (nodes, x, previous states, 1-D params)."""
    return {x for x in walk(e) if isinstance(x, Ref)}
