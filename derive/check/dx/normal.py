"""Canonical vector expressions, so that two spellings of one vector compare equal: sums and
Hadamard products flattened and sorted, and a sub-expression equal to a node's equation
replaced by the node (``d(\\sigma'(W_o h_{t-1} + U_o x_t + b_o))`` is ``d(o'_t)``); in a factor,
``d(c)`` of a number is a coefficient and ``d(a \\odot b) = d(a) d(b)``."""

from __future__ import annotations

from fractions import Fraction

from ...calculus.algebra import Diag, Diag2, Factor, Outer, Sum, make_sum
from ...spec import Add, Call, CellSpec, Const, DerivAt, Expr, MatVec, Mul, Ref
from .factors import VecCol


class Normalizer:
    """Canonical vector expressions of one cell (module docstring)."""

    def __init__(self, spec: CellSpec):
        self.defs: dict[Expr, str] = {}
        self.exprs: dict[str, Expr] = {}
        for name, node in spec.nodes.items():
            e = self.vec(node.expr, exclude=name)
            self.exprs[name] = e
            if not isinstance(e, Ref):
                self.defs.setdefault(e, name)

    def vec(self, e: Expr, exclude: str | None = None) -> Expr:
        """The canonical form of a vector expression (``exclude``: a node not to replace it
        by, while its own equation is normalised)."""
        if isinstance(e, (Ref, Const)):
            return e
        out: Expr
        if isinstance(e, Call):
            out = Call(e.fn, self.vec(e.arg))
        elif isinstance(e, DerivAt):
            out = DerivAt(e.fn, self.vec(e.arg))
        elif isinstance(e, MatVec):
            out = MatVec(e.param, self.vec(e.arg))
        elif isinstance(e, Add):
            terms: list[tuple[int, Expr]] = []

            def flat(sign: int, x: Expr) -> None:
                if isinstance(x, Add):
                    for s, y in x.terms:
                        flat(sign * s, y)
                else:
                    terms.append((sign, self.vec(x)))

            flat(1, e)
            terms.sort(key=repr)
            out = terms[0][1] if len(terms) == 1 and terms[0][0] == 1 else Add(tuple(terms))
        elif isinstance(e, Mul):
            fs: list[Expr] = []

            def flatm(x: Expr) -> None:
                if isinstance(x, Mul):
                    for y in x.factors:
                        flatm(y)
                else:
                    fs.append(self.vec(x))

            flatm(e)
            fs.sort(key=repr)
            out = fs[0] if len(fs) == 1 else Mul(tuple(fs))
        else:  # pragma: no cover
            raise TypeError(e)
        name = self.defs.get(out)
        if name is not None and name != exclude:
            return Ref(name, 0, "node")
        return out

    def factor(self, f: Factor) -> tuple[Fraction, list[Factor]]:
        """A factor with normalised vectors; d(c) is a coefficient, d(a*b) = d(a) d(b)."""
        if isinstance(f, Diag):
            v = self.vec(f.v)
            parts = v.factors if isinstance(v, Mul) else (v,)
            coef = Fraction(1)
            out: list[Factor] = []
            for p in parts:
                if isinstance(p, Const):
                    coef *= p.value
                else:
                    out.append(Diag(p))
            return coef, out
        if isinstance(f, Diag2):
            return Fraction(1), [Diag2(self.vec(f.v))]
        if isinstance(f, Outer):
            return Fraction(1), [Outer(self.vec(f.v))]
        if isinstance(f, VecCol):
            return Fraction(1), [VecCol(self.vec(f.v))]
        return Fraction(1), [f]


def replace(e: Expr, old: Expr, new: Expr) -> Expr:
    """``e`` with every sub-expression equal to ``old`` replaced by ``new``."""
    if e == old:
        return new
    if isinstance(e, Call):
        return Call(e.fn, replace(e.arg, old, new))
    if isinstance(e, DerivAt):
        return DerivAt(e.fn, replace(e.arg, old, new))
    if isinstance(e, MatVec):
        return MatVec(e.param, replace(e.arg, old, new))
    if isinstance(e, Add):
        return Add(tuple((s, replace(t, old, new)) for s, t in e.terms))
    if isinstance(e, Mul):
        return Mul(tuple(replace(f, old, new) for f in e.factors))
    return e


def subst_factors(s: Sum, old: Expr, new: Expr) -> Sum:
    """The sum with ``old`` replaced by ``new`` inside its d(.) and d_2(.) factors."""
    def fix(f: Factor) -> Factor:
        if isinstance(f, Diag):
            return Diag(replace(f.v, old, new))
        if isinstance(f, Diag2):
            return Diag2(replace(f.v, old, new))
        return f

    return make_sum(((t.coef, tuple(fix(f) for f in t.factors)) for t in s), s.order)
