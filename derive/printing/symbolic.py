"""SymPy view of derived expressions: d(x) and d_2(x) as SymPy matrix expressions.

``to_sympy(derivation, sum)`` turns a :class:`~derive.calculus.algebra.Sum` into a SymPy
``MatrixExpr`` over symbolic sizes n (hidden), m (input), k (output): vectors are ``MatrixSymbol`` s
(n x 1), d(v) is :class:`DiagOf` (n x n), d_2(v) is :class:`Diag2Of` (n x n*len(v), parameters
flattened row-major, so (d_2(v))_{i, j*len(v)+k} = delta_ij v_k), activations are
:class:`Elementwise`. Substitute concrete sizes and call ``.as_explicit()`` to get entries.

SymPy's own matrix calculus cannot differentiate through a cell (NOTES.md), so derive derives
with its own rules (:mod:`derive.calculus.rules`) and uses SymPy as the exact, explicit backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.matrices.expressions import MatrixExpr

from ..calculus.algebra import Adj, Diag, Diag2, Ident, Mat, Outer, Rec, Sum
from ..spec import HAT, Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref

if TYPE_CHECKING:
    from ..calculus.derivation import Derivation

SIZES = {"hidden": sp.Symbol("n", integer=True, positive=True),
         "input": sp.Symbol("m", integer=True, positive=True),
         "output": sp.Symbol("k", integer=True, positive=True)}


class DiagOf(MatrixExpr):
    """d(v) = diag(v) for a column vector expression v."""

    def __new__(cls, v: MatrixExpr):
        return MatrixExpr.__new__(cls, v)

    @property
    def v(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self):
        return (self.v.shape[0], self.v.shape[0])

    def _entry(self, i, j, **kw):
        return sp.KroneckerDelta(i, j) * self.v._entry(i, 0)

    def _latex(self, printer) -> str:
        return f"d({printer._print(self.v)})"


class Diag2Of(MatrixExpr):
    """d_2(v): (d_2(v))_{i, j*len(v)+k} = delta_ij v_k, the Jacobian of W v w.r.t. vec(W)."""

    def __new__(cls, v: MatrixExpr, rows):
        return MatrixExpr.__new__(cls, v, sp.sympify(rows))

    @property
    def v(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self):
        return (self.args[1], self.args[1] * self.v.shape[0])

    def _entry(self, i, jk, **kw):
        m = self.v.shape[0]
        return sp.KroneckerDelta(i, jk // m) * self.v._entry(jk % m, 0)

    def _latex(self, printer) -> str:
        return f"d_2({printer._print(self.v)})"


class Elementwise(MatrixExpr):
    """act(v) or act'(v) applied entrywise (``fn``: a registered activation's name, primed for
    its derivative: 'tanh', "tanh'")."""

    def __new__(cls, fn: str | sp.Symbol, v: MatrixExpr):
        return MatrixExpr.__new__(cls, sp.Symbol(str(fn)), v)

    @property
    def fn(self) -> str:
        return str(self.args[0])

    @property
    def v(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self):
        return self.v.shape

    def _entry(self, i, j, **kw):
        from ..spec.activations import ACTIVATIONS

        act = ACTIVATIONS[self.fn.rstrip("'")]
        z = self.v._entry(i, j)
        return act.sympy_deriv(z) if self.fn.endswith("'") else act.sympy(z)

    def _latex(self, printer) -> str:
        from ..spec.activations import ACTIVATIONS

        base = self.fn.rstrip("'")
        prime = "'" if self.fn.endswith("'") else ""
        return f"{ACTIVATIONS[base].latex}{prime}({printer._print(self.v)})"


def _vec_symbol(name: str, lag: int, dim) -> sp.MatrixSymbol:
    t = "t" if lag == 0 else f"t-{lag}"
    base = name[: -len(HAT)] + "_hat" if name.endswith(HAT) else name
    return sp.MatrixSymbol(f"{base}_{{{t}}}", dim, 1)


def vector(d: Derivation, e: Expr) -> MatrixExpr:
    """SymPy column-vector expression of a spec vector expression."""
    spec = d.spec
    n = SIZES["hidden"]
    if isinstance(e, Ref):
        if e.kind == "input":
            return sp.MatrixSymbol("x_{t}", SIZES["input"], 1)
        if e.kind == "param":
            return sp.MatrixSymbol(e.name, SIZES[spec.params[e.name].shape[0]], 1)
        dim = SIZES[spec.nodes[e.name].dim] if e.lag == 0 else n
        return _vec_symbol(e.name, e.lag, dim)
    if isinstance(e, Const):
        return sp.Rational(e.value.numerator, e.value.denominator) * sp.OneMatrix(n, 1)
    if isinstance(e, Call):
        return Elementwise(e.fn, vector(d, e.arg))
    if isinstance(e, DerivAt):
        return Elementwise(e.fn + "'", vector(d, e.arg))
    if isinstance(e, MatVec):
        return sp.MatMul(matrix(d, e.param), vector(d, e.arg))
    if isinstance(e, Add):
        return sp.MatAdd(*[s * vector(d, t) for s, t in e.terms])
    if isinstance(e, Mul):
        return sp.HadamardProduct(*[vector(d, f) for f in e.factors])
    raise TypeError(e)


def matrix(d: Derivation, name: str) -> sp.MatrixSymbol:
    rows, cols = (SIZES[s] for s in d.spec.params[name].shape)
    return sp.MatrixSymbol(name, rows, cols)


def param_size(d: Derivation, name: str):
    out = sp.Integer(1)
    for s in d.spec.params[name].shape:
        out *= SIZES[s]
    return out


def to_sympy(d: Derivation, s: Sum | None, wrt: str | None = None) -> Any:
    """The SymPy matrix expression of a derived sum (``None``/empty -> ``ZeroMatrix``)."""
    n = SIZES["hidden"]
    cols = param_size(d, wrt) if wrt else n

    def fac(f) -> Any:
        if isinstance(f, Diag):
            return DiagOf(vector(d, f.v))
        if isinstance(f, Diag2):
            return Diag2Of(vector(d, f.v), n)
        if isinstance(f, Mat):
            m = matrix(d, f.name)
            return m.T if f.transposed else m
        if isinstance(f, Ident):
            return sp.Identity(n)
        if isinstance(f, Rec):
            t = "t" if f.lag == 0 else f"t-{f.lag}"
            return sp.MatrixSymbol(f"d{f.state}_{{{t}}}/d{f.wrt}", n, param_size(d, f.wrt))
        if isinstance(f, Adj):
            return sp.MatrixSymbol(f"{f.kind}_{f.name}_t", n, 1)
        if isinstance(f, Outer):
            return vector(d, f.v).T
        raise TypeError(f)

    if not s:
        return sp.ZeroMatrix(n, cols)
    terms = []
    for t in s:
        prod = sp.MatMul(*[fac(f) for f in t.factors]) if len(t.factors) > 1 else fac(t.factors[0])
        c = sp.Rational(t.coef.numerator, t.coef.denominator)
        terms.append(prod if c == 1 else c * prod)
    return sp.MatAdd(*terms) if len(terms) > 1 else terms[0]
