"""Factors, products and terms of the middle layer as LaTeX in a notation's names: what a
verdict quotes (the printers of :mod:`derive.printing.latex`, with the factors of
:mod:`derive.check.dx.factors` added)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...calculus.algebra import Factor, Ident, Term
from ...printing.latex import factor as latex_factor
from ...printing.latex import vec as latex_vec
from ...spec import Ref
from .factors import RowGrad, SelfD, VecCol


def flatex(names: Mapping[str, str], f: Factor) -> str:
    """One factor."""
    if isinstance(f, RowGrad):
        return rf"\frac{{\partial L_t}}{{\partial {latex_vec(Ref(f.name), names)}}}"
    if isinstance(f, VecCol):
        return latex_vec(f.v, names)
    if isinstance(f, SelfD):
        nm = names.get(f.name, f.name)
        return rf"\frac{{\partial {nm}}}{{\partial {nm}}}"
    return latex_factor(f, names)


def product_latex(names: Mapping[str, str], factors: Sequence[Factor]) -> str:
    """A product, identities dropped (``I`` when nothing else is left)."""
    fs = [f for f in factors if not isinstance(f, Ident)] or list(factors)
    return " ".join(flatex(names, f) for f in fs) if fs else "I"


def term_latex(names: Mapping[str, str], t: Term) -> str:
    """A term: its coefficient (a fraction as \\frac) and its product."""
    body = product_latex(names, t.factors)
    c = t.coef
    if c == 1:
        return body
    if c == -1:
        return "-" + body
    mag = abs(c)
    num = str(mag.numerator) if mag.denominator == 1 else \
        rf"\frac{{{mag.numerator}}}{{{mag.denominator}}}"
    return ("-" if c < 0 else "") + num + " " + body
