"""Factors a hand derivation writes that the engine's middle layer
(:mod:`derive.calculus.algebra`) has no name for: a loss gradient as a row, a vector standing in
a matrix product, and dP/dP waiting for its vector."""

from __future__ import annotations

from dataclasses import dataclass

from ...calculus.algebra import Factor
from ...spec import Expr


@dataclass(frozen=True)
class RowGrad(Factor):
    """\\frac{\\partial L_t}{\\partial u_t} as a row vector (1 x n), seed 001 eq 9."""

    name: str


@dataclass(frozen=True)
class VecCol(Factor):
    """A vector written inside a matrix product (a column, n x 1)."""

    v: Expr


@dataclass(frozen=True)
class SelfD(Factor):
    """dP/dP, to be applied to the vector that follows it (giving d_2(v))."""

    name: str
