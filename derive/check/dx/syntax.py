"""The syntax tree of the d(x) reader (:mod:`derive.check.dx.parser` builds it): left-hand sides
(``L*``), the factors of a matrix product (``F*``), signed sums of products (:class:`MSum`,
:class:`MProd`) and a right-hand side (:class:`Side`). Vectors are the spec's own expressions
(:class:`derive.spec.Expr`: ``Ref``, ``Add``, ``Mul``, ``MatVec``, ``Call``, ``DerivAt``,
``Const``). All values: frozen."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ...spec import Expr
from ..tokens import Tok


@dataclass(frozen=True)
class Loss:
    """The loss in a numerator: ``L_t`` / ``\\ell_t`` (step loss) or ``L`` (summed over t)."""

    total: bool


# ----------------------------------------------------------------------------- factors


@dataclass(frozen=True)
class FDiag:
    """d(v), the diagonal matrix of a vector, or (``two``) seed 001's d_2(v)."""

    v: Expr
    two: bool = False


@dataclass(frozen=True)
class FMat:
    """A weight matrix, ``W`` or ``W^\\top``."""

    name: str
    transposed: bool = False


@dataclass(frozen=True)
class FIdent:
    """The identity ``I``."""


@dataclass(frozen=True)
class FDeriv:
    """\\frac{\\partial num}{\\partial den}: num an Expr or Loss, den an Expr (Ref(kind=param)
    for a parameter, any vector expression otherwise). ``self_param`` marks dP/dP."""

    num: Expr | Loss
    den: Expr
    tok: Tok
    self_param: str | None = None


@dataclass(frozen=True)
class FVec:
    """A vector inside a matrix product: a column, or with ``transposed`` the row v^T."""

    v: Expr
    transposed: bool = False


@dataclass(frozen=True)
class FAdj:
    """\\bar{u}_t (kind bar) or \\delta u_{t-lag} (kind carry)."""

    name: str
    kind: str
    lag: int = 0


@dataclass(frozen=True)
class FBlock:
    """A block of seed 001 eq 26: M_t, N_t or V_t."""

    which: str  # M | N | V
    tok: Tok | None = None


@dataclass(frozen=True)
class FCoef:
    """A number."""

    value: Fraction


@dataclass(frozen=True)
class MSum:
    """A signed sum of products."""

    items: tuple[tuple[int, MProd], ...]


@dataclass(frozen=True)
class MProd:
    """A product: of F* factors and bracketed MSum groups."""

    factors: tuple


@dataclass(frozen=True)
class Side:
    """A parsed right-hand side: a matrix sum (or a vector for a cell equation), whether it is
    written under ``\\sum_t``, and notes on tolerated typos."""

    body: MSum | Expr
    summed: bool = False
    notes: tuple[tuple[int, str], ...] = ()


# ----------------------------------------------------------------------------- left-hand sides


@dataclass(frozen=True)
class LDeriv:
    """\\frac{\\partial num}{\\partial den}."""

    num: Expr | Loss
    den: Expr


@dataclass(frozen=True)
class LBlock:
    """M_t or N_t."""

    which: str


@dataclass(frozen=True)
class LAdj:
    """An adjoint: \\bar{u}_t (kind bar) or \\delta u_{t-lag} (kind carry)."""

    name: str
    kind: str  # bar | carry
    lag: int


@dataclass(frozen=True)
class LDef:
    """A node of the cell: its own equation u_t = ..."""

    node: str


Lhs = LDeriv | LBlock | LAdj | LDef
