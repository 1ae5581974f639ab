"""The NumPy printer: IR expressions (:mod:`derive.codegen.ir`) as batch-leading NumPy code.

A visitor in the manner of SymPy's printers: :meth:`NumpyPrinter.doprint` dispatches on the
expression's class to ``_print_<Class>``, each returning the text and its precedence, so that
parentheses appear exactly where Python's grammar needs them (``(a * b) @ W`` stays
``(a * b) @ W``; ``a * (b @ W)`` keeps its parentheses). Activations are printed from the one
registry (:mod:`derive.spec.activations`). A backend variant overrides methods, never edits text.
"""

from __future__ import annotations

from fractions import Fraction

from ..spec import Const, Mul
from ..spec.activations import ACTIVATIONS
from .ir import (
    ActDeriv,
    ActValue,
    At,
    BatchOuter,
    BatchSum,
    Cols,
    Column,
    Dot,
    Expr,
    MatMul,
    Matrix,
    Row,
    Scaled,
    Signed,
    Var,
)

ATOM, MUL, ADD = 3, 2, 1


def number(c: Fraction) -> str:
    """A rational constant as a Python float literal."""
    c = Fraction(c)
    return repr(c.numerator / c.denominator) if c.denominator != 1 else f"{c.numerator}.0"


def _is_call(fmt: str) -> bool:
    """Is an activation's format a single call ``name({z})`` (e.g. ``np.tanh({z})``)?"""
    head, _, tail = fmt.partition("({z})")
    return tail == "" and head.replace(".", "").replace("_", "").isalnum()


class NumpyPrinter:
    """Prints IR expressions. Activations print from the registry's ``numpy_kernel`` facets."""

    _default_settings: dict = {}

    def __init__(self, **settings):
        self.settings = {**self._default_settings, **settings}

    # -- entry points ---------------------------------------------------------------------
    def doprint(self, e: Expr) -> str:
        return self._print(e)[0]

    def _print(self, e: Expr) -> tuple[str, int]:
        method = getattr(self, f"_print_{type(e).__name__}", None)
        if method is None:
            raise TypeError(f"{type(self).__name__} cannot print {type(e).__name__}: {e!r}")
        return method(e)

    def operand(self, e: Expr, prec: int, right: bool = False) -> str:
        """The text of ``e`` as an operand of an operator of precedence ``prec`` (a right
        operand of a left-associative operator needs parentheses at equal precedence)."""
        text, p = self._print(e)
        return f"({text})" if p < prec or (right and p == prec) else text

    def into(self, e: Expr, out: str) -> list[str]:
        """Lines that compute ``e`` into the existing array ``out`` without a temporary for the
        result: ``f(z, out=out)`` for an activation that takes ``out``, ``np.multiply`` /
        ``np.add`` and in-place adds for products and sums, else a copy."""
        if isinstance(e, ActValue):
            act = ACTIVATIONS[e.fn]
            z = self.doprint(e.z) if _is_call(act.numpy_kernel) else self.operand(e.z, ATOM)
            return [act.numpy_kernel_out.format(z=z, out=out)]
        if isinstance(e, Dot) and e.rows is None:
            m = e.matrix if e.transposed else f"{e.matrix}.T"
            return [f"np.matmul({self.doprint(e.vec)}, {m}, out={out})"]
        if isinstance(e, Mul) and len(e.factors) >= 2:
            first = Mul(e.factors[:-1]) if len(e.factors) > 2 else e.factors[0]
            return [f"np.multiply({self.doprint(first)}, {self.doprint(e.factors[-1])}, "
                    f"out={out})"]
        if isinstance(e, Signed) and len(e.terms) >= 2 and e.terms[0][0] > 0:
            lines = self.into(e.terms[0][1], out)
            for sign, t in e.terms[1:]:
                lines.append(f"{out} {'+' if sign > 0 else '-'}= {self.doprint(t)}")
            return lines
        return [f"{out}[...] = {self.doprint(e)}"]

    # -- leaves ---------------------------------------------------------------------------
    def _print_Var(self, e: Var) -> tuple[str, int]:
        return e.ident, ATOM

    def _print_Const(self, e: Const) -> tuple[str, int]:
        text = number(e.value)
        return (text, ATOM) if e.value >= 0 else (f"({text})", ATOM)

    def _print_Cols(self, e: Cols) -> tuple[str, int]:
        t = f"{e.time}, " if e.time is not None else ""
        return f"{e.array}[{t}:, {e.lo}:{e.hi}]", ATOM

    def _print_At(self, e: At) -> tuple[str, int]:
        return f"{e.array}[{e.time}]", ATOM

    def _print_Matrix(self, e: Matrix) -> tuple[str, int]:
        return (f"{e.ident}.T" if e.transposed else e.ident), ATOM

    def _print_Column(self, e: Column) -> tuple[str, int]:
        return f"{self.operand(e.v, ATOM)}[..., None]", ATOM

    def _print_Row(self, e: Row) -> tuple[str, int]:
        return f"{self.operand(e.v, ATOM)}[..., None, :]", ATOM

    def _print_MatMul(self, e: MatMul) -> tuple[str, int]:
        return f"{self.operand(e.a, MUL)} @ {self.operand(e.b, MUL, right=True)}", MUL

    def _print_BatchOuter(self, e: BatchOuter) -> tuple[str, int]:
        if not e.v_batched:
            axis = "(0, 1)" if e.axes == 2 else "0"
            a = self.operand(e.a, ATOM)
            return f"np.outer({a}.sum(axis={axis}), {self.doprint(e.v)})", ATOM
        if e.axes == 2:
            return f"rt.flat({self.doprint(e.a)}).T @ rt.flat({self.doprint(e.v)})", MUL
        return f"{self.operand(e.a, ATOM)}.T @ {self.operand(e.v, MUL, right=True)}", MUL

    def _print_BatchSum(self, e: BatchSum) -> tuple[str, int]:
        axis = "(0, 1)" if e.axes == 2 else "0"
        return f"{self.operand(e.e, ATOM)}.sum(axis={axis})", ATOM

    # -- operators ------------------------------------------------------------------------
    def _print_Dot(self, e: Dot) -> tuple[str, int]:
        m = e.matrix if e.rows is None else f"{e.matrix}[{e.rows[0]}:{e.rows[1]}]"
        m = m if e.transposed else f"{m}.T"
        return f"{self.operand(e.vec, MUL)} @ {m}", MUL

    def _print_Mul(self, e: Mul) -> tuple[str, int]:
        first, *rest = e.factors
        return " * ".join([self.operand(first, MUL)] +
                          [self.operand(f, MUL, right=True) for f in rest]), MUL

    def _print_Scaled(self, e: Scaled) -> tuple[str, int]:
        c = Fraction(e.coef)
        if c == 1:
            return self._print(e.e)
        if c == -1:
            return f"-{self.operand(e.e, MUL, right=True)}", ADD
        return f"{number(c)} * {self.operand(e.e, MUL, right=True)}", MUL if c > 0 else ADD

    def _print_Signed(self, e: Signed) -> tuple[str, int]:
        if len(e.terms) == 1 and e.terms[0][0] > 0:
            return self._print(e.terms[0][1])
        out = ""
        for i, (sign, t) in enumerate(e.terms):
            body = self.operand(t, ADD, right=i > 0 or sign < 0)
            if i == 0:
                out = body if sign > 0 else f"-{self.operand(t, MUL, right=True)}"
            else:
                out += (" + " if sign > 0 else " - ") + body
        return out, ADD

    # -- activations ----------------------------------------------------------------------
    def _print_ActValue(self, e: ActValue) -> tuple[str, int]:
        fmt = ACTIVATIONS[e.fn].numpy_kernel
        if _is_call(fmt):  # f({z}): the argument needs no parentheses of its own
            return fmt.format(z=self.doprint(e.z)), ATOM
        return fmt.format(z=self.operand(e.z, ATOM)), ADD

    def _print_ActDeriv(self, e: ActDeriv) -> tuple[str, int]:
        act = ACTIVATIONS[e.fn]
        if e.from_output:
            return act.deriv_from_output.format(y=self.operand(e.arg, ATOM)), ADD
        return act.deriv.format(z=self.operand(e.arg, ATOM)), ADD
