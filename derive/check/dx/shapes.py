"""Shapes: a line is *ill-typed* when a product's shapes do not compose, a term's shape is not
the left-hand side's, or a matrix multiplies a vector of the wrong size (``W_o x_t`` with W_o
n x n); a missing '+' between two recursion symbols usually shows up here. Sizes are symbolic
(n hidden, m input, k output; ``|A|`` the size of a parameter, as the tuple of its dimensions)
and every :class:`~derive.check.dx.errors.IllTyped` names the term and the factor."""

from __future__ import annotations

from ...calculus.algebra import Adj, Diag, Diag2, Factor, Ident, Mat, Outer, Rec
from ...printing.latex import vec as latex_vec
from ...spec import Add, Call, Const, DerivAt, Expr, MatVec, Ref
from .context import VAR, Context
from .errors import IllTyped
from .factors import RowGrad, VecCol
from .latex import flatex, product_latex

Shape = tuple[tuple[str, ...], tuple[str, ...]]
_DIM_LETTER = {"hidden": "n", "input": "m", "output": "k"}


def dims(d: tuple[str, ...]) -> str:
    """('hidden', 'input') -> 'nm', ('hidden', 'hidden') -> 'n^2', () -> '1'."""
    out = ""
    for x in sorted(set(d), key=d.index):
        k = d.count(x)
        out += _DIM_LETTER.get(x, x) + (f"^{k}" if k > 1 else "")
    return out or "1"


def shape_text(s: Shape) -> str:
    """A shape as ``rows x columns`` (``nxnm``)."""
    return f"{dims(s[0])}x{dims(s[1])}"


def vdim(ctx: Context, e: Expr) -> tuple[str, ...] | None:
    """Size of a vector expression (None: a constant, it broadcasts)."""
    spec = ctx.spec
    if isinstance(e, Ref):
        if e.kind == "input":
            return ("input",)
        if e.kind == "param":
            shape = spec.params[e.name].shape
            if len(shape) != 1:
                raise IllTyped(f"{ctx.lex.latex(e.name)} is a matrix where a vector is due")
            return (shape[0],)
        if e.name == VAR.name:
            return None
        return (spec.nodes[e.name].dim,)
    if isinstance(e, Const):
        return None
    if isinstance(e, (Call, DerivAt)):
        return vdim(ctx, e.arg)
    if isinstance(e, MatVec):
        rows, cols = spec.params[e.param].shape
        got = vdim(ctx, e.arg)
        if got is not None and got != (cols,):
            raise IllTyped(f"{ctx.lex.latex(e.param)} {latex_vec(e.arg, ctx.names)}: "
                           f"{ctx.lex.latex(e.param)} is {dims((rows,))}x"
                           f"{dims((cols,))} but {latex_vec(e.arg, ctx.names)} has size "
                           f"{dims(got)}")
        return (rows,)
    parts = [t for _, t in e.terms] if isinstance(e, Add) else list(e.factors)  # type: ignore[attr-defined]
    sizes = [vdim(ctx, p) for p in parts]
    known = {s for s in sizes if s is not None}
    if len(known) > 1:
        op = "+" if isinstance(e, Add) else r"\odot"
        raise IllTyped(f"{latex_vec(e, ctx.names)}: '{op}' of vectors of sizes "
                       f"{', '.join(sorted(dims(s) for s in known))}")
    return known.pop() if known else None


def param_size(ctx: Context, param: str) -> tuple[str, ...]:
    """The dimensions of a parameter, as the columns of a derivative by it."""
    return tuple(sorted(ctx.spec.params[param].shape))


def fshape(ctx: Context, f: Factor, prev_cols: tuple[str, ...]) -> Shape | None:
    """Shape of a factor (None: an identity, it fits anywhere)."""
    spec = ctx.spec
    if isinstance(f, Ident):
        return None
    if isinstance(f, Diag):
        d = vdim(ctx, f.v)
        return None if d is None else (d, d)
    if isinstance(f, Diag2):
        v = vdim(ctx, f.v) or ()
        if len(prev_cols) != 1:
            return ("?",), ("?",)  # rows of one matrix: never the columns here
        return prev_cols, tuple(sorted(prev_cols + v))
    if isinstance(f, Mat):
        r, c = spec.params[f.name].shape
        return ((c,), (r,)) if f.transposed else ((r,), (c,))
    if isinstance(f, Rec):
        return (spec.nodes[f.state].dim,), param_size(ctx, f.wrt)
    if isinstance(f, Adj):
        return (spec.nodes[f.name].dim,), ()
    if isinstance(f, RowGrad):
        return (), (spec.nodes[f.name].dim,)
    if isinstance(f, Outer):
        return (), vdim(ctx, f.v) or ()
    if isinstance(f, VecCol):
        return vdim(ctx, f.v) or (), ()
    raise IllTyped(f"{flatex(ctx.names, f)} cannot stand here")


def term_shape(ctx: Context, factors: tuple[Factor, ...], lhs: Shape) -> Shape | None:
    """The shape of a product (None: identities only), or IllTyped where two factors do not
    compose."""
    cur: Shape | None = None
    for k, f in enumerate(factors):
        s = fshape(ctx, f, cur[1] if cur else lhs[0])
        if s is None:
            continue
        if cur is not None and cur[1] != s[0]:
            left = product_latex(ctx.names, factors[:k])
            hint = " (a '+' missing after it?)" if isinstance(factors[k - 1], Rec) else ""
            right = (f"needs the {dims(s[0]) if s[0] != ('?',) else 'n'} rows of a "
                     "weight matrix" if isinstance(f, Diag2) else f"is {shape_text(s)}")
            raise IllTyped(f"in {product_latex(ctx.names, factors)}: {left} is "
                           f"{shape_text(cur)} but the next factor {flatex(ctx.names, f)} "
                           f"{right}{hint}", product_latex(ctx.names, factors),
                           flatex(ctx.names, f))
        cur = s if cur is None else (cur[0], s[1])
    return cur
