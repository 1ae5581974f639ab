"""The statement layer between a derivation and printed code.

Expressions are the spec's vector AST (:mod:`derive.spec`: ``Ref``, ``Const``, ``Call``,
``MatVec``, ``Add``, ``Mul``) plus the few array forms a kernel needs beyond it, all frozen
values that a printer visits (``_print_<Class>``). A :class:`Stmt` assigns one expression to one
place and knows what it reads and writes; lowering (:mod:`derive.codegen.lower`) makes them,
printers only print them, templates only lay them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..spec import Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref


@dataclass(frozen=True)
class Var(Expr):
    """A value the kernel holds under an identifier (a node at t, a parameter, an adjoint)."""

    ident: str


@dataclass(frozen=True)
class Cols(Expr):
    """Columns ``lo:hi`` of a stacked array, at time ``time`` when the array has a time axis:
    ``array[time, :, lo:hi]`` or ``array[:, lo:hi]``. ``lo``/``hi`` are printed sizes."""

    array: str
    lo: str
    hi: str
    time: str | None = None


@dataclass(frozen=True)
class Dot(Expr):
    """The batch-leading matrix product of row vectors ``vec`` with a matrix: ``vec @ M.T``
    (``transposed`` False: the column vector M v) or ``vec @ M`` (True: M^T v)."""

    vec: Expr
    matrix: str
    transposed: bool = False
    rows: tuple[str, str] | None = None  # only rows lo:hi of the matrix


@dataclass(frozen=True)
class ActValue(Expr):
    """act(z), printed from the activation registry."""

    fn: str
    z: Expr


@dataclass(frozen=True)
class ActDeriv(Expr):
    """act'(z) written with the activation's output ``y`` = act(z) (``from_output``) or with its
    argument z."""

    fn: str
    arg: Expr
    from_output: bool


@dataclass(frozen=True)
class Scaled(Expr):
    """A rational constant times an expression."""

    coef: object  # fractions.Fraction
    e: Expr


@dataclass(frozen=True)
class Signed(Expr):
    """A signed sum of expressions, (sign, expr) pairs."""

    terms: tuple[tuple[int, Expr], ...]


@dataclass(frozen=True)
class At(Expr):
    """``array[time]``: one step of an array with a leading time axis."""

    array: str
    time: str


@dataclass(frozen=True)
class Matrix(Expr):
    """A matrix parameter, or its transpose, as a factor of a matrix product."""

    ident: str
    transposed: bool = False


@dataclass(frozen=True)
class Column(Expr):
    """``v[..., None]``: a vector as a column, scaling the rows of a matrix (d(v) M)."""

    v: Expr


@dataclass(frozen=True)
class Row(Expr):
    """``v[..., None, :]``: a vector as a row, scaling the columns of a matrix (M d(v))."""

    v: Expr


@dataclass(frozen=True)
class MatMul(Expr):
    """The matrix product ``a @ b`` of two matrices (or stacks of them)."""

    a: Expr
    b: Expr


@dataclass(frozen=True)
class BatchOuter(Expr):
    """sum over the batch of a_b v_b^T, ``a.T @ v``: a step's contribution to dL/dW; with
    ``axes`` 2 over steps and batch at once (the readout, all steps together)."""

    a: Expr
    v: Expr
    axes: int = 1
    v_batched: bool = True  # False: v is the same for every row (a parameter): outer(sum a, v)


@dataclass(frozen=True)
class BatchSum(Expr):
    """The sum over the batch (axis 0; with ``axes`` 2 over steps and batch) of vectors."""

    e: Expr
    axes: int = 1


@dataclass(frozen=True)
class Stmt:
    """``target op expr``: one assignment of the kernel, op '=' (bind or overwrite a place),
    '[...]=' (write into an existing array) or '+=' (accumulate). ``scope`` says where it runs:
    'once' (before the time loop), 'step' (inside it) or 'all' (after it, over all steps)."""

    target: str
    expr: Expr
    op: str = "="
    scope: str = "step"
    comment: str = ""
    # the place ``target`` names, as a value, where it is part of an array: Cols (columns of a
    # buffer or of a product) or Var (the whole array). Printers that cannot write in place (the
    # functional torch and JAX kernels) read it instead of the target's text.
    place: Expr | None = None

    def reads(self) -> frozenset[str]:
        """The identifiers and arrays the expression reads."""
        return frozenset(idents(self.expr)) | (frozenset({self.target}) if self.op == "+=" else
                                               frozenset())

    def writes(self) -> frozenset[str]:
        return frozenset({self.target})


def parts(e: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of an IR or spec expression."""
    if isinstance(e, (Call, DerivAt, MatVec)):
        return (e.arg,)
    if isinstance(e, (ActValue,)):
        return (e.z,)
    if isinstance(e, ActDeriv):
        return (e.arg,)
    if isinstance(e, Dot):
        return (e.vec,)
    if isinstance(e, Scaled):
        return (e.e,)
    if isinstance(e, (Add, Signed)):
        return tuple(t for _, t in e.terms)
    if isinstance(e, Mul):
        return e.factors
    if isinstance(e, (Column, Row)):
        return (e.v,)
    if isinstance(e, (MatMul, BatchOuter)):
        return (e.a, e.b) if isinstance(e, MatMul) else (e.a, e.v)
    if isinstance(e, BatchSum):
        return (e.e,)
    return ()


def idents(e: Expr) -> set[str]:
    """Identifiers an expression reads (variables, arrays and matrices)."""
    out: set[str] = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Var):
            out.add(x.ident)
        elif isinstance(x, (Cols, At)):
            out.add(x.array)
        elif isinstance(x, Matrix):
            out.add(x.ident)
        elif isinstance(x, Dot):
            out.add(x.matrix)
        stack.extend(parts(x))
    return out


__all__ = ["ActDeriv", "ActValue", "Add", "At", "BatchOuter", "BatchSum", "Call", "Cols",
           "Column", "Const", "Dot", "Expr", "MatMul", "MatVec", "Matrix", "Mul", "Ref", "Row",
           "Scaled", "Signed", "Stmt", "Var", "idents", "parts"]
