"""One line judged: the engine's value of its left-hand side (:func:`expected`), the line
expanded in the engine's middle layer (:func:`written`), and the two compared
(:func:`compare`); :func:`judge_line` runs the three and turns a failure into a verdict.

**Left-hand sides** and the value they are compared with:

* ``\\frac{\\partial u_t}{\\partial A}`` (u a state, gate, node or pre-activation; A a parameter):
  the engine's total derivative, in terms of the opaque recursion symbols
  ``\\frac{\\partial v_{t-1}}{\\partial A}`` of the states (``Derivation.forward[A]``, and
  :func:`derive.calculus.rules.totals` for nodes that are not states).
* ``\\frac{\\partial u_t}{\\partial v_{t-1}}``: the state Jacobian block ``Derivation.jacobian``.
* ``\\frac{\\partial L_t}{\\partial A}``: ``\\frac{\\partial L_t}{\\partial h_t}`` is a row-vector
  factor (a 1 x n Jacobian, numerator layout, random when evaluated) times dh_t/dA.
* ``\\frac{\\partial L}{\\partial A} = \\sum_t (...)``: the step-t contribution of reverse mode
  (``Derivation.reverse.grads``); the line must be written under ``\\sum_t``.
* ``\\bar{u}_t``, ``\\delta v_{t-1}``: reverse-mode adjoints and carries (seed 002), expanded as
  :mod:`derive.check.dx.context` says. In a cell with a readout, ``\\bar{y}_t``,
  ``\\bar{\\hat{y}}_t`` are adjoints like the cell's, ``\\frac{\\partial \\ell_t}{\\partial h_t}``
  (on the left, or ending a product on the right) is the column the readout passes to the cell
  (``V^\\top \\bar{\\hat{y}}_t``) wherever it stands, and ``\\frac{\\partial L}{\\partial V}``,
  ``\\frac{\\partial L}{\\partial b_y}`` are sums over t of the readout's step contributions.
* ``M_t``, ``N_t``: the blocks of seed 001 eq 26 (dh_t/dh_{t-1}, dh_t/ds_{t-1}); on a right-hand
  side ``M_t``, ``N_t`` and ``V_t`` (the direct term of dh_t/dA for the left-hand side's A) mean
  the same, so eq (26) itself is checked.
* ``u_t = ...`` (a node of the cell): the cell's own equation, compared as vectors.

``\\frac{\\partial W_g}{\\partial W_g} h_{t-1}`` is d_2(h_{t-1}).

**Comparing.** Both sides are expanded into sums of products, vector arguments normalised
(:mod:`derive.check.dx.normal`), runs of d(.) factors put in the engine's canonical order and
like terms merged (:func:`derive.calculus.algebra.make_sum`). Equal sums: *correct* (``method``
symbolic). Otherwise both are evaluated at two random points (:mod:`derive.check.dx.points`):
equal there: *correct* (numeric). Otherwise *wrong*, with the differing terms named
(:mod:`derive.check.dx.differences`). Shapes that do not compose: *ill-typed*
(:mod:`derive.check.dx.shapes`).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ...calculus.algebra import Adj, Diag, Diag2, Factor, Ident, Mat, Outer, Sum, Term, make_sum
from ...printing.latex import vec as latex_vec
from ...spec import HAT, Ref
from ...spec.activations import ACTIVATIONS
from ..source import Positions
from .context import Context
from .differences import differences
from .errors import IllTyped, Unsupported
from .factors import RowGrad, SelfD, VecCol
from .latex import flatex, product_latex
from .points import SIZES, close, size
from .shapes import dims, param_size, shape_text, term_shape, vdim
from .syntax import (
    FAdj,
    FBlock,
    FCoef,
    FDeriv,
    FDiag,
    FIdent,
    FMat,
    FVec,
    LAdj,
    LBlock,
    LDef,
    LDeriv,
    Lhs,
    Loss,
    MProd,
    MSum,
    Side,
)
from .verdict import Difference, Expected, Product, Shape, Verdict, Written

Items = list[tuple[Fraction, Product]]


def judge_line(ctx: Context, pos: Positions, lhs: Lhs, side: Side) -> Verdict:
    """The verdict on one right-hand side of ``lhs`` (module docstring)."""
    try:
        if isinstance(lhs, LDef):
            return definition(ctx, lhs.node, side)
        if side.summed and not (isinstance(lhs, LDeriv) and isinstance(lhs.num, Loss)
                                and lhs.num.total):
            raise Unsupported(r"\sum_t is only understood on the right of "
                              r"\frac{\partial L}{\partial A}")
        want = expected(ctx, lhs)
        got = written(ctx, side.body, lhs, want.shape)
    except IllTyped as exc:
        diff = Difference("ill-typed", exc.term, None, factor=exc.factor or None)
        return Verdict("ill-typed", str(exc), differences=(diff,) if exc.term else ())
    except Unsupported as exc:
        where = f"{pos.where(exc.tok.pos)}, at {exc.tok.text!r}: " \
            if exc.tok is not None else ""
        return Verdict("unparsed", where + str(exc), token=exc.tok)
    if want.summed and not side.summed:
        return Verdict("wrong", r"the gradient of L = \sum_t \ell_t is a sum over t: write "
                       r"\sum_t (...)",
                       differences=(Difference("missing sum", None, r"\sum_t"),))
    return compare(ctx, got, want)


# ----------------------------------------------------------------------------- the engine's side


def expected(ctx: Context, lhs: Lhs) -> Expected:
    """The engine's value of a left-hand side, its shape, and whether the line must be under
    \\sum_t."""
    d = ctx.d
    spec = ctx.spec
    if isinstance(lhs, LDeriv):
        den = lhs.den
        if isinstance(den, Ref) and den.kind == "param":
            cols = param_size(ctx, den.name)
        else:
            cols = vdim(ctx, den) or ()
        if isinstance(lhs.num, Loss) and lhs.num.total:
            if not (isinstance(den, Ref) and den.kind == "param"):
                raise Unsupported(r"\frac{\partial L}{\partial ...} is checked for a "
                                  "parameter only")
            shape = spec.params[den.name].shape
            sh: Shape = ((shape[0],), (shape[1],) if len(shape) == 2 else ())
            grads = dict(d.reverse.grads)
            if ctx.readout is not None:  # dL/dV = sum_t \bar{\hat y}_t h_t^T, ...
                grads.update(ctx.readout.grads)
            if den.name not in grads:
                raise Unsupported(f"{ctx.lex.latex(den.name)} has no gradient in reverse "
                                  "mode (a readout parameter?)")
            return _normalised(ctx, ctx.expand_adj(grads[den.name]), sh, True)
        loss = ctx.loss_column()
        if isinstance(lhs.num, Loss) and loss is not None and den == Ref(d.output, 0, "node"):
            # a cell with a readout: what the readout passes to the cell, a column
            return _normalised(ctx, loss, ((spec.nodes[d.output].dim,), ()))
        rows = () if isinstance(lhs.num, Loss) else (vdim(ctx, lhs.num) or ())
        return _normalised(ctx, ctx.deriv(lhs.num, den), (rows, cols))
    if isinstance(lhs, LBlock):
        if lhs.which == "M":
            h = (spec.nodes[d.output].dim,)
            return _normalised(ctx, d.M, (h, h))
        if d.N is None:
            raise Unsupported(f"N_t: cell {d.name!r} has one state")
        assert d.second_state is not None
        return _normalised(ctx, d.N, ((spec.nodes[d.output].dim,),
                                      (spec.nodes[d.second_state].dim,)))
    if isinstance(lhs, LAdj):
        sh = ((spec.nodes[lhs.name].dim,), ())
        if lhs.kind == "bar":
            return _normalised(ctx, ctx.full_bar(lhs.name), sh)
        if lhs.lag != 1:
            raise Unsupported(rf"\delta {ctx.lex.latex(lhs.name)}_t comes from step t+1; "
                              r"the recursion defines \delta u_{t-1}")
        return _normalised(ctx, ctx.expand_adj(d.reverse.carries[lhs.name]), sh)
    raise TypeError(lhs)  # pragma: no cover


def _normalised(ctx: Context, s: Sum, sh: Shape, summed: bool = False) -> Expected:
    """An engine sum with normalised vectors, each product kept as the engine prints it."""
    items = []
    printed: dict[Product, Product] = {}
    for t in s:
        coef = t.coef
        fs: list[Factor] = []
        for f in t.factors:
            c, nf = ctx.norm.factor(f)
            coef *= c
            fs.extend(nf)
        items.append((coef, tuple(fs)))
        key = Term(coef, tuple(fs)).canonical(ctx.order).factors
        printed.setdefault(key, t.factors)
    return Expected(make_sum(items, ctx.order), sh, summed, printed)


def block(ctx: Context, node: FBlock, lhs: Lhs) -> Sum:
    """M_t, N_t, or V_t (the direct term of the left-hand side's dh_t/dA)."""
    d = ctx.d
    if node.which == "M":
        return d.M
    if node.which == "N":
        if d.N is None:
            raise Unsupported(f"N_t: cell {d.name!r} has one state, there is no N_t",
                              node.tok)
        return d.N
    if (isinstance(lhs, LDeriv) and isinstance(lhs.den, Ref) and lhs.den.kind == "param"
            and (lhs.num == Ref(d.output, 0, "node") or lhs.num == Loss(False))):
        return d.forward[lhs.den.name].V
    raise Unsupported(r"V_t is the direct term of \frac{\partial h_t}{\partial A} (seed 001 "
                      r"eq 26); it needs a left-hand side \frac{\partial h_t}{\partial A} or "
                      r"\frac{\partial L_t}{\partial A}", node.tok)


# ----------------------------------------------------------------------------- the written side


def expand(ctx: Context, node: Any, lhs: Lhs) -> Items:
    """A syntax tree as a list of (coefficient, product) in the middle layer, opaque
    derivatives and adjoints replaced by their engine values."""
    if isinstance(node, MSum):
        out = []
        for sign, prod in node.items:
            out.extend((c * sign, fs) for c, fs in expand(ctx, prod, lhs))
        return out
    if isinstance(node, MProd):
        acc: Items = [(Fraction(1), ())]
        for f in node.factors:
            part = expand(ctx, f, lhs)
            acc = [(c1 * c2, f1 + f2) for c1, f1 in acc for c2, f2 in part]
        return acc
    if isinstance(node, FCoef):
        return [(node.value, ())]
    if isinstance(node, FDiag):
        return [(Fraction(1), (Diag2(node.v) if node.two else Diag(node.v),))]
    if isinstance(node, FMat):
        return [(Fraction(1), (Mat(node.name, node.transposed),))]
    if isinstance(node, FIdent):
        return [(Fraction(1), (Ident(),))]
    if isinstance(node, FVec):
        return [(Fraction(1), (Outer(node.v) if node.transposed else VecCol(node.v),))]
    if isinstance(node, FDeriv):
        if node.self_param is not None:
            return [(Fraction(1), (SelfD(node.self_param),))]
        try:
            s = ctx.deriv(node.num, node.den)
        except Unsupported as exc:
            raise Unsupported(str(exc), node.tok) from None
        return [(t.coef, t.factors) for t in s]
    if isinstance(node, FAdj):
        if node.kind == "bar":
            return [(t.coef, t.factors) for t in ctx.full_bar(node.name)]
        if node.lag == 0:
            return [(Fraction(1), (Adj(node.name, "carry"),))]
        return [(t.coef, t.factors)
                for t in ctx.expand_adj(ctx.d.reverse.carries[node.name])]
    if isinstance(node, FBlock):
        return [(t.coef, t.factors) for t in block(ctx, node, lhs)]
    raise TypeError(node)  # pragma: no cover


def written(ctx: Context, body: Any, lhs: Lhs, lhs_shape: Shape) -> Written:
    """The line as a canonical sum, each product kept as written (its factor order)."""
    items = expand(ctx, body, lhs)
    loss = ctx.loss_column()
    if loss is not None:  # a trailing dl_t/dh_t: the readout's column (as on the engine side)
        tail = RowGrad(ctx.d.output)
        through: Items = []
        for c, fs in items:
            if fs and fs[-1] == tail:
                through.extend((c * t.coef, fs[:-1] + t.factors) for t in loss)
            else:
                through.append((c, fs))
        items = through
    done = [_finish_term(ctx, c, fs, lhs_shape) for c, fs in items]
    as_written: dict[Product, Product] = {}
    for c, fs, w in done:
        as_written.setdefault(Term(c, fs).canonical(ctx.order).factors, w)
    return Written(make_sum([(c, fs) for c, fs, _ in done], ctx.order), as_written)


def _finish_term(ctx: Context, coef: Fraction, fs: Product, lhs_shape: Shape
                 ) -> tuple[Fraction, Product, Product]:
    """dP/dP v -> d_2(v); a trailing dL/du is a column (the loss adjoint); normalise vectors;
    check shapes. Returns the coefficient, the normalised product and the product as written."""
    out: list[Factor] = []
    k = 0
    while k < len(fs):
        f = fs[k]
        if isinstance(f, SelfD):
            nxt = fs[k + 1] if k + 1 < len(fs) else None
            if not isinstance(nxt, VecCol):
                raise IllTyped(f"{flatex(ctx.names, f)} must be followed by the vector the "
                               "matrix multiplies")
            out.append(Diag2(nxt.v))
            k += 2
            continue
        out.append(f)
        k += 1
    if out and isinstance(out[-1], RowGrad):
        out[-1] = Adj(out[-1].name, "loss")
    norm: list[Factor] = []
    for f in out:
        c, nf = ctx.norm.factor(f)
        coef *= c
        norm.extend(nf)
    got = term_shape(ctx, tuple(norm), lhs_shape)
    if got is not None and got != lhs_shape:
        raise IllTyped(f"the term {product_latex(ctx.names, out)} is {shape_text(got)} but the "
                       f"left-hand side is {shape_text(lhs_shape)}",
                       product_latex(ctx.names, out))
    return coef, tuple(norm), tuple(out)


# ----------------------------------------------------------------------------- comparing


def compare(ctx: Context, got: Written, want: Expected) -> Verdict:
    """Correct when the sums are equal, symbolically or at the two points; else wrong, with the
    differences named."""
    if got.value.key() == want.value.key():
        return Verdict("correct", "", "symbolic")
    nshape = (size(want.shape[0]), size(want.shape[1]))
    if all(close(p.value(list(got.value), nshape), p.value(list(want.value), nshape))
           for p in ctx.points):
        return Verdict("correct", "", "numeric")
    diffs = differences(ctx, got, want, nshape)
    return Verdict("wrong", "; ".join(d.text for d in diffs), "", tuple(diffs))


def definition(ctx: Context, node: str, side: Side) -> Verdict:
    """A cell equation ``u_t = ...``: compared with the cell's own, as vectors."""
    body = side.body
    assert not isinstance(body, MSum)
    spec_node = ctx.spec.nodes[node]
    want_dim = (spec_node.dim,)
    got_dim = vdim(ctx, body)
    if got_dim is not None and got_dim != want_dim:
        raise IllTyped(f"the right-hand side has size {dims(got_dim)}, "
                       f"{ctx.lex.latex(node)}_t has size {dims(want_dim)}")
    if ctx.norm.vec(body) == Ref(node, 0, "node"):
        return Verdict("correct", "", "symbolic")
    if all(np.allclose(p.vec(body) * np.ones(SIZES[spec_node.dim]),
                       p.step.values[node], rtol=1e-9, atol=1e-12) for p in ctx.points):
        return Verdict("correct", "", "numeric")
    if node + HAT in ctx.spec.nodes:
        fn = ACTIVATIONS[spec_node.expr.fn].latex  # type: ignore[attr-defined]
        rhs = f"{fn}({latex_vec(ctx.spec.nodes[node + HAT].expr, ctx.names)})"
    else:
        rhs = latex_vec(spec_node.expr, ctx.names)
    sym = latex_vec(Ref(node, 0, "node"), ctx.names)
    return Verdict("wrong", f"differs from the cell's equation {sym} = {rhs}",
                   differences=(Difference("wrong equation", None, f"{sym} = {rhs}"),))


__all__ = ["block", "compare", "definition", "expand", "expected", "judge_line", "written"]
