"""``derive check``: verify a hand derivation (LaTeX or Markdown) against the engine, line by line,
and name the wrong term.

::

    derive check FILE [--cell CELL] [--notation NAME|FILE] [--json]
    python -m derive.check FILE ...            (the same, standalone)

Python API: :func:`check_file`, :func:`check_text` return a :class:`Report` (``.results``: one
:class:`LineResult` per judged line; ``.skipped``: one :class:`SkippedLine` per line not judged;
``.exit_code``; ``.to_json()``; ``.format()``). Usage errors (no file, no equations, unknown cell
or notation, an ambiguous cell) raise :class:`CheckError`.

Reading the file is :mod:`derive.check.parse` (display math -> equation chains -> AST). This
module gives the AST its meaning, in the engine's middle layer (:mod:`derive.calculus.algebra`), and
compares. Decisions:

**What a line is.** Every right-hand side after an ``=`` of a chain ``lhs = r_1 = r_2 ...`` is a
line (1-based within its equation); each is compared with the engine's value of the *left-hand
side*, never with the previous line. The equation's ``tag`` is its ``\\tag{N}`` (or seed 001's
trailing ``\\quad (N)``) as a string, else its 1-based index among the file's equations (an
int).

**What is judged, what is skipped.** The checker judges one-step equalities of the d(x) calculus
(what seed 001 eqs 7-25 are). A line that is not one is *skipped* with a stated reason
(:func:`derive.check.parse.skip_reason`): a relation other than ``=`` (a bound ``\\le``, an
approximation ``\\approx``, ``<``, ``\\sim``, ...), a statement over several steps (``\\prod``,
a ``\\sum`` over an index other than the ``\\sum_t`` of a gradient, a time index other than t and
t-1 such as ``h_k``, ``f_j``, ``x_{t-k}``, a norm ``\\|.\\|``), or mathematics outside the
calculus (a total derivative ``\\mathrm{d}``, ``|_{\\mathrm{carousel}}``, the block state
Jacobian ``J_t``, a side condition ``\\text{when ...}``, an elision ``\\ldots``); what derive's
own export writes in its flow section is of these kinds, except the one-step Jacobian blocks,
which are judged. The reason depends on the text alone, never on the cell. Skipped lines are
listed in the report as ``skipped: <reason>`` and counted in its summary line; they are *not*
in ``--json`` (a list of verdict records, whose ``verdict`` is always correct, wrong, ill-typed
or unparsed) and never make the exit status 1. A file whose display math holds no line at all
is a usage error (no equations found); one whose lines are all skipped is not: exit 0, and the
summary says that nothing was judged.

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
* ``\\bar{u}_t``, ``\\delta v_{t-1}``: reverse-mode adjoints and carries (seed 002), both sides
  expanded down to the leaves ``\\frac{\\partial \\ell_t}{\\partial h_t}`` (a column here) and
  ``\\delta v_t``, so any grouping of the adjoint recursion is accepted.
* **A cell with a readout** (seed 004's y_t = sigma(V h_t + b_y)): the loss at t is a function of
  the readout (:func:`derive.printing.latex.readout_reverse`), so the leaves are
  ``\\frac{\\partial \\ell_t}{\\partial y_t}`` instead: ``\\bar{y}_t``, ``\\bar{\\hat{y}}_t`` are
  adjoints like the cell's, ``\\frac{\\partial \\ell_t}{\\partial h_t}`` (on the left, or ending a
  product on the right) is the column the readout passes to the cell (``V^\\top
  \\bar{\\hat{y}}_t``) wherever it stands, and ``\\frac{\\partial L}{\\partial V}``,
  ``\\frac{\\partial L}{\\partial b_y}`` are sums over t of the readout's step contributions. No
  state depends on a readout parameter (its recursion symbols are zero).
* ``M_t``, ``N_t``: the blocks of seed 001 eq 26 (dh_t/dh_{t-1}, dh_t/ds_{t-1}); on a right-hand
  side ``M_t``, ``N_t`` and ``V_t`` (the direct term of dh_t/dA for the left-hand side's A) mean
  the same, so eq (26) itself is checked.
* ``u_t = ...`` (a node of the cell): the cell's own equation, compared as vectors.

**Opaque derivatives on a right-hand side** are replaced by their engine value and the line is
expanded: ``\\frac{\\partial o_t}{\\partial W}`` (any node at t) by its total derivative (the t-1
recursion symbols stay opaque); ``\\frac{\\partial h_{t-1}}{\\partial A}`` *is* the recursion
symbol. For a denominator that is not a parameter the chain-rule meaning is used:
``\\frac{\\partial y}{\\partial z}`` with z a node at t or a written sub-expression
(``\\sigma(s_t)``, ``(W_g h_{t-1} + U_g x_t + b_g)``) is the partial derivative of y's own
equation w.r.t. z with every other symbol in it held (taken through the nodes between them only
when z does not occur in it, so ``\\frac{\\partial h_t}{\\partial f_t}`` goes through s_t); with z a
state at t-1 it is the total derivative when y is a single symbol (a Jacobian entry) and the
partial one when y is written out (``\\frac{\\partial f_t \\odot s_{t-1}}{\\partial s_{t-1}}`` =
d(f_t), seed 001 eq 7). ``\\frac{\\partial W_g}{\\partial W_g} h_{t-1}`` is d_2(h_{t-1}).

**Seed 001's missing \\partial** (``\\frac{\\tilde{s}_t}{\\partial W}`` 13 times and
``\\frac{h_{t-1}}{\\partial A}`` 4 times in the note) is a *tolerated typo*: it is read as
``\\frac{\\partial \\tilde{s}_t}{\\partial W}``, the verdict is unaffected, and the line's ``notes``
say so with the position.

**Generic lines** (seed 001 eqs 7-13): ``A`` is every parameter of the cell in turn, ``g_t``
every gate, ``W_g``/``U_g``/``b_g`` the parameter of g's equation with that LaTeX base letter; a
block that mentions ``A_{p \\neq g}`` (eq 10's heading) restricts A to parameters outside g's
equation. A line is correct when it is correct for every binding; otherwise its verdict and
detail are those of the first failing binding (recorded in ``binding``).

**Comparing.** Both sides are expanded into sums of products, vector arguments are normalised
(sums and Hadamard products sorted, a written-out equation replaced by its node:
``d(\\sigma'(W_o h_{t-1} + U_o x_t + b_o))`` is ``d(o'_t)``, ``d(a \\odot b) = d(a) d(b)``), runs of
d(.) factors are put in the engine's canonical order and like terms merged
(:func:`derive.calculus.algebra.make_sum`). Equal sums: *correct* (``method`` symbolic). Otherwise
both are evaluated at two random points (:class:`derive.calculus.numeric.Step`, random recursion
symbols and adjoints, n=3 hidden, m=2 inputs): equal there: *correct* (numeric). Otherwise *wrong*,
with the smallest set of differing terms: terms equal numerically are cancelled first, the rest is
paired by the fewest factor edits and named ``wrong factor`` (``d(s_t)`` where ``d(\\sigma(s_t))``
is due), ``factor order``, ``missing factor``, ``extra factor``, ``wrong coefficient``, ``wrong
term``, ``missing term``, ``extra term`` or ``missing '+'`` (``P \\frac{\\partial h_{t-1}}{\\partial
b} S`` where ``P \\frac{..}{..} + S`` is due), each with the corrected term in LaTeX; written
terms are shown as written, the engine's as it prints them.

**ill-typed**: a product whose shapes do not compose (n, m: hidden and input sizes; ``|A|`` the
size of a parameter), a term whose shape is not the left-hand side's, ``W_o x_t`` with W_o
n x n; a missing '+' between two recursion symbols usually shows up here.
**unparsed**: the line (or its left-hand side) cannot be read; ``detail`` gives the line and
column in the file and the offending token (also in ``position`` and ``token``).

**Cell and notation.** ``--cell``/``--notation`` fix them; otherwise every built-in cell under
every shipped notation is tried: the candidates under which the fewest symbols fail to resolve
are kept, then those with the most correct lines, then those with the fewest ill-typed lines
(the reading under which the shapes compose). A remaining tie whose verdicts differ is a usage
error (exit 2) that lists the choices; a tie that changes no verdict takes the first candidate
and the report names the others.

Exit status: 0 every judged line correct (skipped lines do not count); 1 a line is wrong,
ill-typed or unparsed; 2 usage error (no file, no equations found, unknown cell or notation,
ambiguous cell).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..calculus.algebra import (
    ZERO,
    Adj,
    Diag,
    Diag2,
    Factor,
    Ident,
    Mat,
    Outer,
    Rec,
    Sum,
    Term,
    make_sum,
    mul,
    single,
)
from ..calculus.derivation import Derivation, derive
from ..calculus.rules import partial, totals
from ..printing.latex import ReadoutReverse, readout_reverse
from ..printing.latex import factor as latex_factor
from ..printing.latex import vec as latex_vec
from ..spec import HAT, Add, Call, CellSpec, Const, DerivAt, Expr, MatVec, Mul, Ref, SpecError
from ..spec.activations import ACTIVATIONS
from .parse import (
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
    Lexicon,
    Loss,
    MProd,
    MSum,
    ParseError,
    Parser,
    Side,
    Tok,
    chains,
    find_blocks,
    skip_reason,
    unresolved,
)

PROG = "derive check"
VERDICTS = ("correct", "wrong", "ill-typed", "unparsed", "malformed")
_ALWAYS_COUNTED = VERDICTS[:4]  # "malformed" is counted where it occurs
SIZES = {"hidden": 3, "input": 2, "output": 2}
_DIM_LETTER = {"hidden": "n", "input": "m", "output": "k"}
_VAR = Ref("__var__", 0, "node")


class CheckError(ValueError):
    """A usage error of ``derive check`` (exit status 2); the message says expected vs got."""


class IllTyped(Exception):
    """Shapes do not compose; ``term`` and ``factor`` (LaTeX) name where, when known."""

    def __init__(self, message: str, term: str | None = None, factor: str | None = None):
        super().__init__(message)
        self.term = term
        self.factor = factor


class Unsupported(Exception):
    """Readable, but not a meaning derive can check (reported as unparsed)."""

    def __init__(self, message: str, tok: Tok | None = None):
        super().__init__(message)
        self.tok = tok


# ----------------------------------------------------------------------------- extra factors


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


# ----------------------------------------------------------------------------- normalising


class Normalizer:
    """Canonical vector expressions: sums and Hadamard products flattened and sorted, and any
    sub-expression equal to a node's equation replaced by the node."""

    def __init__(self, spec: CellSpec):
        self.defs: dict[Expr, str] = {}
        self.exprs: dict[str, Expr] = {}
        for name, node in spec.nodes.items():
            e = self.vec(node.expr, exclude=name)
            self.exprs[name] = e
            if not isinstance(e, Ref):
                self.defs.setdefault(e, name)

    def vec(self, e: Expr, exclude: str | None = None) -> Expr:
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


def _replace(e: Expr, old: Expr, new: Expr) -> Expr:
    if e == old:
        return new
    if isinstance(e, Call):
        return Call(e.fn, _replace(e.arg, old, new))
    if isinstance(e, DerivAt):
        return DerivAt(e.fn, _replace(e.arg, old, new))
    if isinstance(e, MatVec):
        return MatVec(e.param, _replace(e.arg, old, new))
    if isinstance(e, Add):
        return Add(tuple((s, _replace(t, old, new)) for s, t in e.terms))
    if isinstance(e, Mul):
        return Mul(tuple(_replace(f, old, new) for f in e.factors))
    return e


def _subst_factors(s: Sum, old: Expr, new: Expr) -> Sum:
    def fix(f: Factor) -> Factor:
        if isinstance(f, Diag):
            return Diag(_replace(f.v, old, new))
        if isinstance(f, Diag2):
            return Diag2(_replace(f.v, old, new))
        return f

    return make_sum(((t.coef, tuple(fix(f) for f in t.factors)) for t in s), s.order)


# ----------------------------------------------------------------------------- the cell context


Shape = tuple[tuple[str, ...], tuple[str, ...]]


class Context:
    """One cell under one notation: symbols, engine values, shapes and random points."""

    def __init__(self, d: Derivation, names: Mapping[str, str], notation: str):
        self.d = d
        self.spec = d.spec
        self.order = d.order
        self.names = dict(names)
        self.notation = notation
        self.lex = Lexicon(self.spec, self.names)
        self.norm = Normalizer(self.spec)
        self._tot: dict[tuple, dict[str, Sum]] = {}
        self._deriv: dict[tuple, Sum] = {}
        self._bar: dict[str, Sum] = {}
        self._readout: list[ReadoutReverse | None] = []  # computed on first use
        self._loss: Sum | None = None
        self._points: list[Point] | None = None
        self.aliases: list[str] = []  # notations that name every symbol of this cell alike

    @property
    def label(self) -> str:
        return f"{self.spec.name} ({self.notation})"

    @property
    def notation_label(self) -> str:
        return self.notation + "".join(f" = {a}" for a in self.aliases)

    # -- engine values -------------------------------------------------------------------
    def _leaf(self, var: tuple):
        kind = var[0]
        order = self.order

        readout = kind == "param" and self.spec.params[var[1]].readout

        def leaf(r: Ref) -> Sum:
            if kind == "param":
                if r.kind == "node" and r.lag == 1:  # (no state depends on a readout parameter)
                    return ZERO if readout else single(order, Rec(r.name, var[1], 1))
                if r.kind == "param" and r.name == var[1]:
                    return single(order, Ident())
                return ZERO
            if kind == "prev":
                return single(order, Ident()) if (r.kind == "node" and r.lag == 1
                                                  and r.name == var[1]) else ZERO
            return single(order, Ident()) if r.kind == "input" else ZERO

        return leaf, (var[1] if kind == "param" else None)

    def tot(self, var: tuple) -> dict[str, Sum]:
        """Total derivatives of every node at t w.r.t. a variable: ('param', P) | ('prev', v)
        | ('input',)."""
        if var not in self._tot:
            leaf, param = self._leaf(var)
            self._tot[var] = totals(self.spec, leaf, param, self.order, include_readout=True)
        return self._tot[var]

    def _var(self, den: Expr) -> tuple | None:
        if isinstance(den, Ref):
            if den.kind == "param":
                return ("param", den.name)
            if den.kind == "input":
                return ("input",)
            if den.kind == "node" and den.lag == 1:
                return ("prev", den.name)
        return None

    def deriv(self, num: Expr | Loss, den: Expr) -> Sum:
        """The value of \\frac{\\partial num}{\\partial den} (module docstring: 'Opaque
        derivatives')."""
        key = (num, den)
        if key in self._deriv:
            return self._deriv[key]
        order = self.order
        if isinstance(num, Loss):
            if num.total:
                raise Unsupported(r"\partial L (the loss summed over t) is only understood as "
                                  r"the left-hand side \frac{\partial L}{\partial A} = \sum_t ...")
            out = self.d.output
            dn = self.norm.vec(den)
            if isinstance(dn, Ref) and (
                    (dn.kind == "node" and dn.lag == 0 and
                     self.spec.nodes[dn.name].role == "readout")
                    or (dn.kind == "param" and self.spec.params[dn.name].readout)):
                # the loss at t is a function of the readout: through its nodes, the leaves
                # \frac{\partial \ell_t}{\partial y_t}
                parts = [mul(single(order, RowGrad(u)), inner, order) for u in self.loss_nodes()
                         if (inner := self.deriv(Ref(u, 0, "node"), den))]
                res = make_sum([(t.coef, t.factors) for p in parts for t in p], order)
            else:
                inner = self.deriv(Ref(out, 0, "node"), den)
                res = mul(single(order, RowGrad(out)), inner, order) if inner else ZERO
            self._deriv[key] = res
            return res
        n = self.norm.vec(num)
        dn = self.norm.vec(den)
        if n == dn:
            res = single(order, Ident())
        else:
            var = self._var(dn)
            if var is None:
                res = self._local(n, dn)
            elif var[0] == "prev" and not isinstance(n, Ref):
                def hold(r: Ref) -> Sum:
                    return single(order, Ident()) if r == dn else ZERO

                res = partial(n, hold, None, order)
            else:
                leaf, param = self._leaf(var)
                tot = self.tot(var)

                def lf(r: Ref) -> Sum:
                    if r.kind == "node" and r.lag == 0 and r.name in tot:
                        return tot[r.name]
                    return leaf(r)

                res = partial(n, lf, param, order)
        self._deriv[key] = res
        return res

    def _local(self, n: Expr, dn: Expr) -> Sum:
        order = self.order
        spec = self.spec
        one = single(order, Ident())
        is_node = isinstance(n, Ref) and n.kind == "node" and n.lag == 0 and n.name in spec.nodes
        e = self.norm.exprs[n.name] if is_node else n  # type: ignore[union-attr]
        e2 = _replace(e, dn, _VAR)

        def direct(r: Ref) -> Sum:
            return one if r == _VAR else ZERO

        out = partial(e2, direct, None, order)
        if not out:
            tot: dict[str, Sum] = {}

            def lf(r: Ref) -> Sum:
                if r == _VAR:
                    return one
                if r.kind == "node" and r.lag == 0:
                    return tot.get(r.name, ZERO)
                return ZERO

            for name in spec.nodes:
                if Ref(name, 0, "node") == dn:
                    tot[name] = one
                    continue
                tot[name] = partial(_replace(self.norm.exprs[name], dn, _VAR), lf, None, order)
            out = tot[n.name] if is_node else partial(e2, lf, None, order)  # type: ignore[union-attr]
        return _subst_factors(out, _VAR, dn)

    @property
    def readout(self) -> ReadoutReverse | None:
        """The readout's part of reverse mode (:func:`derive.printing.latex.readout_reverse`), None
        for a cell without a readout."""
        if not self._readout:
            self._readout.append(readout_reverse(self.d))
        return self._readout[0]

    def loss_nodes(self) -> list[str]:
        """The readout nodes the loss at t is a function of (each has its leaf
        \\frac{\\partial \\ell_t}{\\partial u_t}): the readout's nodes, pre-activations aside."""
        return [n for n, v in self.spec.nodes.items()
                if v.role == "readout" and not n.endswith(HAT)]

    def loss_column(self) -> Sum | None:
        """\\frac{\\partial \\ell_t}{\\partial h_t} as a column, for a cell with a readout: what the
        readout passes to the cell (V^T \\bar{\\hat y}_t), expanded down to the readout's leaves
        \\frac{\\partial \\ell_t}{\\partial y_t}; None without a readout (then it is a leaf)."""
        ro = self.readout
        if ro is None:
            return None
        if self._loss is None:
            self._loss = self.expand_adj(ro.output)
        return self._loss

    def full_bar(self, u: str) -> Sum:
        """\\bar{u}_t expanded down to the leaves (loss gradient, carried adjoints); readout nodes
        included (their adjoints end in \\frac{\\partial \\ell_t}{\\partial y_t})."""
        if u not in self._bar:
            assign = dict(self.d.reverse.assignments)
            if self.readout is not None:
                assign.update(self.readout.assignments)
            if u not in assign:
                raise Unsupported(rf"\bar{{{self.lex.latex(u)}}}_t: no adjoint of this node")
            self._bar[u] = make_sum([], self.order)  # guards against cycles
            self._bar[u] = self.expand_adj(assign[u])
        return self._bar[u]

    def expand_adj(self, s: Sum) -> Sum:
        """Adjoints \\bar{u}_t replaced by their expansion; in a cell with a readout the loss
        derivative \\frac{\\partial \\ell_t}{\\partial h_t} too (:meth:`loss_column`)."""
        items = []
        for t in s:
            k = next((i for i, f in enumerate(t.factors) if isinstance(f, Adj) and (
                f.kind == "bar" or self._via_readout(f))), None)
            if k is None:
                items.append((t.coef, t.factors))
                continue
            f = t.factors[k]
            assert isinstance(f, Adj)
            sub = self.full_bar(f.name) if f.kind == "bar" else self.loss_column()
            assert sub is not None
            for t2 in sub:
                items.append((t.coef * t2.coef, t.factors[:k] + t2.factors + t.factors[k + 1:]))
        return make_sum(items, self.order)

    def _via_readout(self, f: Adj) -> bool:
        """Is ``f`` the loss derivative at the output state of a cell with a readout?"""
        return f.kind == "loss" and f.name == self.d.output and self.readout is not None

    # -- shapes --------------------------------------------------------------------------
    def vdim(self, e: Expr) -> tuple[str, ...] | None:
        """Size of a vector expression (None: a constant, it broadcasts)."""
        spec = self.spec
        if isinstance(e, Ref):
            if e.kind == "input":
                return ("input",)
            if e.kind == "param":
                shape = spec.params[e.name].shape
                if len(shape) != 1:
                    raise IllTyped(f"{self.lex.latex(e.name)} is a matrix where a vector is due")
                return (shape[0],)
            if e.name == _VAR.name:
                return None
            return (spec.nodes[e.name].dim,)
        if isinstance(e, Const):
            return None
        if isinstance(e, (Call, DerivAt)):
            return self.vdim(e.arg)
        if isinstance(e, MatVec):
            rows, cols = spec.params[e.param].shape
            got = self.vdim(e.arg)
            if got is not None and got != (cols,):
                raise IllTyped(f"{self.lex.latex(e.param)} {latex_vec(e.arg, self.names)}: "
                               f"{self.lex.latex(e.param)} is {_dims((rows,))}x"
                               f"{_dims((cols,))} but {latex_vec(e.arg, self.names)} has size "
                               f"{_dims(got)}")
            return (rows,)
        parts = [t for _, t in e.terms] if isinstance(e, Add) else list(e.factors)  # type: ignore[attr-defined]
        sizes = [self.vdim(p) for p in parts]
        known = {s for s in sizes if s is not None}
        if len(known) > 1:
            op = "+" if isinstance(e, Add) else r"\odot"
            raise IllTyped(f"{latex_vec(e, self.names)}: '{op}' of vectors of sizes "
                           f"{', '.join(sorted(_dims(s) for s in known))}")
        return known.pop() if known else None

    def size(self, param: str) -> tuple[str, ...]:
        return tuple(sorted(self.spec.params[param].shape))

    def fshape(self, f: Factor, prev_cols: tuple[str, ...]) -> Shape | None:
        """Shape of a factor (None: an identity, it fits anywhere)."""
        spec = self.spec
        if isinstance(f, Ident):
            return None
        if isinstance(f, Diag):
            d = self.vdim(f.v)
            return None if d is None else (d, d)
        if isinstance(f, Diag2):
            v = self.vdim(f.v) or ()
            if len(prev_cols) != 1:
                return ("?",), ("?",)  # rows of one matrix: never the columns here
            return prev_cols, tuple(sorted(prev_cols + v))
        if isinstance(f, Mat):
            r, c = spec.params[f.name].shape
            return ((c,), (r,)) if f.transposed else ((r,), (c,))
        if isinstance(f, Rec):
            return (spec.nodes[f.state].dim,), self.size(f.wrt)
        if isinstance(f, Adj):
            return (spec.nodes[f.name].dim,), ()
        if isinstance(f, RowGrad):
            return (), (spec.nodes[f.name].dim,)
        if isinstance(f, Outer):
            return (), self.vdim(f.v) or ()
        if isinstance(f, VecCol):
            return self.vdim(f.v) or (), ()
        raise IllTyped(f"{self.flatex(f)} cannot stand here")

    def term_shape(self, factors: tuple[Factor, ...], lhs: Shape) -> Shape | None:
        cur: Shape | None = None
        for k, f in enumerate(factors):
            s = self.fshape(f, cur[1] if cur else lhs[0])
            if s is None:
                continue
            if cur is not None and cur[1] != s[0]:
                left = self.product_latex(factors[:k])
                hint = " (a '+' missing after it?)" if isinstance(factors[k - 1], Rec) else ""
                right = (f"needs the {_dims(s[0]) if s[0] != ('?',) else 'n'} rows of a "
                         "weight matrix" if isinstance(f, Diag2) else f"is {_shape(s)}")
                raise IllTyped(f"in {self.product_latex(factors)}: {left} is "
                               f"{_shape(cur)} but the next factor {self.flatex(f)} "
                               f"{right}{hint}", self.product_latex(factors), self.flatex(f))
            cur = s if cur is None else (cur[0], s[1])
        return cur

    # -- printing ------------------------------------------------------------------------
    def flatex(self, f: Factor) -> str:
        if isinstance(f, RowGrad):
            return rf"\frac{{\partial L_t}}{{\partial {latex_vec(Ref(f.name), self.names)}}}"
        if isinstance(f, VecCol):
            return latex_vec(f.v, self.names)
        if isinstance(f, SelfD):
            nm = self.lex.latex(f.name)
            return rf"\frac{{\partial {nm}}}{{\partial {nm}}}"
        return latex_factor(f, self.names)

    def product_latex(self, factors: Sequence[Factor]) -> str:
        fs = [f for f in factors if not isinstance(f, Ident)] or list(factors)
        return " ".join(self.flatex(f) for f in fs) if fs else "I"

    def term_latex(self, t: Term) -> str:
        body = self.product_latex(t.factors)
        c = t.coef
        if c == 1:
            return body
        if c == -1:
            return "-" + body
        mag = abs(c)
        num = str(mag.numerator) if mag.denominator == 1 else \
            rf"\frac{{{mag.numerator}}}{{{mag.denominator}}}"
        return ("-" if c < 0 else "") + num + " " + body

    def sum_latex(self, items: Sequence[Term]) -> str:
        out = ""
        for i, t in enumerate(items):
            s = self.term_latex(t)
            out += s if i == 0 else (" - " + s[1:] if s.startswith("-") else " + " + s)
        return out or "0"

    # -- numbers -------------------------------------------------------------------------
    @property
    def points(self) -> list[Point]:
        if self._points is None:
            self._points = [Point(self, seed) for seed in (20240611, 7)]
        return self._points


def _dims(d: tuple[str, ...]) -> str:
    """('hidden', 'input') -> 'nm', ('hidden', 'hidden') -> 'n^2', () -> '1'."""
    out = ""
    for x in sorted(set(d), key=d.index):
        k = d.count(x)
        out += _DIM_LETTER.get(x, x) + (f"^{k}" if k > 1 else "")
    return out or "1"


def _shape(s: Shape) -> str:
    return f"{_dims(s[0])}x{_dims(s[1])}"


class Point:
    """Random values of everything a line can contain: parameters, x_t, the states at t-1,
    the recursion symbols, the adjoint leaves and the row vector dL_t/du_t."""

    def __init__(self, ctx: Context, seed: int):
        from ..calculus.numeric import Step

        rng = np.random.default_rng(seed)
        spec = ctx.spec
        self.ctx = ctx
        params = {p: rng.normal(0.0, 0.6, size=[SIZES[d] for d in v.shape])
                  for p, v in spec.params.items()}
        x = rng.normal(size=SIZES["input"])
        prev = {s: rng.normal(size=SIZES[spec.nodes[s].dim]) for s in spec.states}
        self.step = Step(spec, params, x, prev)
        self.rec = {(s, p, 1): rng.normal(size=(SIZES[spec.nodes[s].dim],
                                                int(np.prod([SIZES[d] for d in v.shape]))))
                    for s in spec.states for p, v in spec.params.items()}
        self.adj = {(s, k): rng.normal(size=(SIZES[spec.nodes[s].dim], 1))
                    for s in spec.states for k in ("loss", "carry")}
        self.row = {s: rng.normal(size=(1, SIZES[spec.nodes[s].dim])) for s in spec.states}
        for u in ctx.loss_nodes():  # the readout's leaves \frac{\partial \ell_t}{\partial y_t}
            self.adj[(u, "loss")] = rng.normal(size=(SIZES[spec.nodes[u].dim], 1))
            self.row[u] = rng.normal(size=(1, SIZES[spec.nodes[u].dim]))

    def vec(self, e: Expr) -> np.ndarray:
        return np.asarray(self.step.vec(e), dtype=float)

    def mat(self, f: Factor, rows: int) -> np.ndarray:
        if isinstance(f, Diag):
            v = self.vec(f.v)
            return np.diag(np.broadcast_to(v, (rows,)) if v.ndim == 0 else v)
        if isinstance(f, Diag2):
            return np.kron(np.eye(rows), self.vec(f.v)[None, :])
        if isinstance(f, Mat):
            m = self.step.params[f.name]
            return m.T if f.transposed else m
        if isinstance(f, Rec):
            return self.rec[(f.state, f.wrt, f.lag)]
        if isinstance(f, Adj):
            return self.adj[(f.name, f.kind)]
        if isinstance(f, RowGrad):
            return self.row[f.name]
        if isinstance(f, Outer):
            return self.vec(f.v)[None, :]
        if isinstance(f, VecCol):
            return self.vec(f.v)[:, None]
        raise TypeError(f)  # pragma: no cover

    def term(self, t: Term, shape: tuple[int, int]) -> np.ndarray:
        acc: np.ndarray | None = None
        for f in t.factors:
            if isinstance(f, Ident):
                continue
            m = self.mat(f, acc.shape[1] if acc is not None else shape[0])
            acc = m if acc is None else acc @ m
        if acc is None:
            acc = np.eye(shape[0], shape[1])
        return float(t.coef) * acc

    def value(self, terms: Sequence[Term], shape: tuple[int, int]) -> np.ndarray:
        out = np.zeros(shape)
        for t in terms:
            out = out + self.term(t, shape)
        return out


# ----------------------------------------------------------------------------- results


@dataclass
class LineResult:
    """The verdict on one line (one right-hand side) of one equation."""

    equation: int
    tag: str | int
    line: int
    verdict: str
    detail: str
    lhs: str = ""
    rhs: str = ""
    position: tuple[int, int] = (0, 0)
    label: str | None = None
    method: str = ""
    binding: dict[str, str] | None = None
    differences: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag, "line": self.line, "verdict": self.verdict, "detail": self.detail,
            "equation": self.equation, "lhs": self.lhs, "rhs": self.rhs,
            "position": {"line": self.position[0], "column": self.position[1]},
        }
        if self.label:
            out["label"] = self.label
        if self.method:
            out["method"] = self.method
        if self.binding:
            out["binding"] = self.binding
        if self.differences:
            out["differences"] = self.differences
        if self.notes:
            out["notes"] = self.notes
        if self.token is not None:
            out["token"] = self.token
        return out


@dataclass
class SkippedLine:
    """A line that is not judged (not a one-step equality of the d(x) calculus) and why."""

    equation: int
    tag: str | int
    line: int
    reason: str
    lhs: str = ""
    rhs: str = ""
    position: tuple[int, int] = (0, 0)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": self.tag, "line": self.line, "reason": self.reason,
            "equation": self.equation, "lhs": self.lhs, "rhs": self.rhs,
            "position": {"line": self.position[0], "column": self.position[1]},
        }
        if self.label:
            out["label"] = self.label
        return out


@dataclass
class Report:
    """All verdicts on one file; ``skipped``: the lines not judged (not in ``to_json``)."""

    source: str
    cell: str
    notation: str
    inferred: bool
    results: list[LineResult]
    equations: int
    skipped_rows: int = 0
    also_fits: list[str] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every judged line is correct (skipped lines do not count), else 1."""
        return 0 if all(r.verdict == "correct" for r in self.results) else 1

    def counts(self) -> dict[str, int]:
        return {v: sum(r.verdict == v for r in self.results) for v in VERDICTS}

    def to_json(self) -> str:
        """The verdict records, one per judged line; skipped lines are omitted."""
        return json.dumps([r.to_dict() for r in self.results], indent=2, ensure_ascii=False)

    def format(self) -> str:
        """Human-readable report: one block per equation, one row per line."""
        how = "inferred from the symbols" if self.inferred else "given"
        out = [f"{self.source}: cell {self.cell}, notation {self.notation} ({how})"]
        if self.also_fits:
            more = len(self.also_fits) - 3
            out.append(f"  (the verdicts are the same under {', '.join(self.also_fits[:3])}" +
                       (f" and {more} more" if more > 0 else "") + ")")
        last = None
        rows: list[LineResult | SkippedLine] = [*self.results, *self.skipped]
        rows.sort(key=lambda r: (r.equation, r.line))  # stable: the results keep their order
        for r in rows:
            if r.equation != last:
                last = r.equation
                tag = f"({r.tag})" if isinstance(r.tag, str) else f"#{r.tag}"
                out.append(f"{tag} {r.lhs}   [line {r.position[0]}]")
            if isinstance(r, SkippedLine):
                out.append(f"  line {r.line}: skipped: {r.reason}")
                continue
            extra = f" [{r.method}]" if r.method and r.verdict == "correct" else ""
            out.append(f"  line {r.line}: {r.verdict}{extra}" +
                       (f": {r.detail}" if r.detail else ""))
            out.extend(f"      note: {n}" for n in r.notes)
        c = self.counts()
        n = len(self.results) + len(self.skipped)
        out.append(f"{n} lines in {self.equations} equations: " +
                   ", ".join(f"{c[v]} {v}" for v in VERDICTS if v in _ALWAYS_COUNTED or c[v])
                   + f", {len(self.skipped)} skipped")
        bad = [r for r in self.results if r.verdict != "correct"]
        if bad and self.cell == OWN_CELL:
            out.append("not correct: " + ", ".join(f"line {r.position[0]} ({r.verdict})"
                                                   for r in bad))
        if self.skipped and not self.results:
            out.append("nothing judged: every line is skipped (not a one-step equation of the "
                       "d(x) calculus)")
        return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- judging


class _Positions:
    def __init__(self, text: str):
        self.starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self.text = text

    def __call__(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_right(self.starts, pos) - 1
        return k + 1, pos - self.starts[k] + 1

    def where(self, pos: int) -> str:
        line, col = self(pos)
        return f"line {line}, column {col}"

    def span(self, toks: Sequence[Tok]) -> str:
        """The tokens as LaTeX: the file's own spacing, row breaks and alignment dropped."""
        out = ""
        for k, t in enumerate(toks):
            if k and (t.pos > toks[k - 1].end):
                out += " "
            out += t.text
        return out


@dataclass
class _Verdict:
    verdict: str
    detail: str
    method: str = ""
    differences: list[dict[str, Any]] = field(default_factory=list)
    token: Tok | None = None


class Judge:
    """Judges the equation chains of one file under one cell context."""

    def __init__(self, ctx: Context, pos: _Positions):
        self.ctx = ctx
        self.pos = pos

    # -- expansion -----------------------------------------------------------------------
    def expand(self, node: Any, lhs: Any) -> list[tuple[Fraction, tuple[Factor, ...]]]:
        ctx = self.ctx
        if isinstance(node, MSum):
            out = []
            for sign, prod in node.items:
                out.extend((c * sign, fs) for c, fs in self.expand(prod, lhs))
            return out
        if isinstance(node, MProd):
            acc: list[tuple[Fraction, tuple[Factor, ...]]] = [(Fraction(1), ())]
            for f in node.factors:
                part = self.expand(f, lhs)
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
            return [(t.coef, t.factors) for t in self.block(node, lhs)]
        raise TypeError(node)  # pragma: no cover

    def block(self, node: FBlock, lhs: Any) -> Sum:
        d = self.ctx.d
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

    def finish_term(self, coef: Fraction, fs: tuple[Factor, ...], lhs_shape: Shape
                    ) -> tuple[Fraction, tuple[Factor, ...], tuple[Factor, ...]]:
        """dP/dP v -> d_2(v); a trailing dL/du is a column (the loss adjoint); normalise
        vectors; check shapes."""
        ctx = self.ctx
        out: list[Factor] = []
        k = 0
        while k < len(fs):
            f = fs[k]
            if isinstance(f, SelfD):
                nxt = fs[k + 1] if k + 1 < len(fs) else None
                if not isinstance(nxt, VecCol):
                    raise IllTyped(f"{ctx.flatex(f)} must be followed by the vector the matrix "
                                   "multiplies")
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
        got = ctx.term_shape(tuple(norm), lhs_shape)
        if got is not None and got != lhs_shape:
            raise IllTyped(f"the term {ctx.product_latex(out)} is {_shape(got)} but the "
                           f"left-hand side is {_shape(lhs_shape)}", ctx.product_latex(out))
        return coef, tuple(norm), tuple(out)

    def canonical(self, items: Sequence[tuple[Fraction, tuple[Factor, ...]]], lhs_shape: Shape
                  ) -> Sum:
        """The user's line as a canonical sum; ``self.raw`` keeps each product as written (its
        factor order) for the report."""
        loss = self.ctx.loss_column()
        if loss is not None:  # a trailing dl_t/dh_t: the readout's column (as on the engine side)
            tail = RowGrad(self.ctx.d.output)
            through: list[tuple[Fraction, tuple[Factor, ...]]] = []
            for c, fs in items:
                if fs and fs[-1] == tail:
                    through.extend((c * t.coef, fs[:-1] + t.factors) for t in loss)
                else:
                    through.append((c, fs))
            items = through
        done = [self.finish_term(c, fs, lhs_shape) for c, fs in items]
        self.raw = {}
        for c, fs, written in done:
            self.raw.setdefault(Term(c, fs).canonical(self.ctx.order).factors, written)
        return make_sum([(c, fs) for c, fs, _ in done], self.ctx.order)

    # -- left-hand sides -----------------------------------------------------------------
    def expected(self, lhs: Any) -> tuple[Sum, Shape, bool]:
        """(engine value, shape, must the line be under \\sum_t)."""
        ctx = self.ctx
        d = ctx.d
        spec = ctx.spec
        if isinstance(lhs, LDeriv):
            den = lhs.den
            if isinstance(den, Ref) and den.kind == "param":
                cols = ctx.size(den.name)
            else:
                cols = ctx.vdim(den) or ()
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
                return self._norm_sum(ctx.expand_adj(grads[den.name]), sh), sh, True
            loss = ctx.loss_column()
            if isinstance(lhs.num, Loss) and loss is not None and den == Ref(d.output, 0, "node"):
                # a cell with a readout: what the readout passes to the cell, a column
                sh = ((spec.nodes[d.output].dim,), ())
                return self._norm_sum(loss, sh), sh, False
            rows = () if isinstance(lhs.num, Loss) else (ctx.vdim(lhs.num) or ())
            sh = (rows, cols)
            return self._norm_sum(ctx.deriv(lhs.num, den), sh), sh, False
        if isinstance(lhs, LBlock):
            if lhs.which == "M":
                h = (spec.nodes[d.output].dim,)
                return self._norm_sum(d.M, (h, h)), (h, h), False
            if d.N is None:
                raise Unsupported(f"N_t: cell {d.name!r} has one state")
            assert d.second_state is not None
            sh = ((spec.nodes[d.output].dim,), (spec.nodes[d.second_state].dim,))
            return self._norm_sum(d.N, sh), sh, False
        if isinstance(lhs, LAdj):
            sh = ((spec.nodes[lhs.name].dim,), ())
            if lhs.kind == "bar":
                return self._norm_sum(ctx.full_bar(lhs.name), sh), sh, False
            if lhs.lag != 1:
                raise Unsupported(rf"\delta {ctx.lex.latex(lhs.name)}_t comes from step t+1; "
                                  r"the recursion defines \delta u_{t-1}")
            return self._norm_sum(ctx.expand_adj(d.reverse.carries[lhs.name]), sh), sh, False
        raise TypeError(lhs)  # pragma: no cover

    def _norm_sum(self, s: Sum, sh: Shape) -> Sum:
        """An engine sum with normalised vectors; ``self.orig`` keeps each product as the
        engine prints it."""
        items = []
        self.orig: dict[tuple[Factor, ...], tuple[Factor, ...]] = {}
        for t in s:
            coef = t.coef
            fs: list[Factor] = []
            for f in t.factors:
                c, nf = self.ctx.norm.factor(f)
                coef *= c
                fs.extend(nf)
            items.append((coef, tuple(fs)))
            key = Term(coef, tuple(fs)).canonical(self.ctx.order).factors
            self.orig.setdefault(key, t.factors)
        return make_sum(items, self.ctx.order)

    # -- one line ------------------------------------------------------------------------
    def line(self, lhs: Any, side: Side) -> _Verdict:
        try:
            if isinstance(lhs, LDef):
                return self.definition(lhs.node, side)
            if side.summed and not (isinstance(lhs, LDeriv) and isinstance(lhs.num, Loss)
                                    and lhs.num.total):
                raise Unsupported(r"\sum_t is only understood on the right of "
                                  r"\frac{\partial L}{\partial A}")
            want, shape, summed = self.expected(lhs)
            items = self.expand(side.body, lhs)
            got = self.canonical(items, shape)
        except IllTyped as exc:
            diff = {"kind": "ill-typed", "term": exc.term, "expected": None}
            if exc.factor:
                diff["factor"] = exc.factor
            return _Verdict("ill-typed", str(exc), differences=[diff] if exc.term else [])
        except Unsupported as exc:
            where = f"{self.pos.where(exc.tok.pos)}, at {exc.tok.text!r}: " \
                if exc.tok is not None else ""
            return _Verdict("unparsed", where + str(exc), token=exc.tok)
        if summed and not side.summed:
            return _Verdict("wrong", r"the gradient of L = \sum_t \ell_t is a sum over t: write "
                            r"\sum_t (...)",
                            differences=[{"kind": "missing sum", "term": None,
                                          "expected": r"\sum_t"}])
        return self.compare(got, want, shape)

    def definition(self, node: str, side: Side) -> _Verdict:
        ctx = self.ctx
        body = side.body
        assert not isinstance(body, MSum)
        spec_node = ctx.spec.nodes[node]
        want_dim = (spec_node.dim,)
        got_dim = ctx.vdim(body)
        if got_dim is not None and got_dim != want_dim:
            raise IllTyped(f"the right-hand side has size {_dims(got_dim)}, "
                           f"{ctx.lex.latex(node)}_t has size {_dims(want_dim)}")
        if ctx.norm.vec(body) == Ref(node, 0, "node"):
            return _Verdict("correct", "", "symbolic")
        if all(np.allclose(p.vec(body) * np.ones(SIZES[spec_node.dim]),
                           p.step.values[node], rtol=1e-9, atol=1e-12) for p in ctx.points):
            return _Verdict("correct", "", "numeric")
        if node + HAT in ctx.spec.nodes:
            fn = ACTIVATIONS[spec_node.expr.fn].latex  # type: ignore[attr-defined]
            rhs = f"{fn}({latex_vec(ctx.spec.nodes[node + HAT].expr, ctx.names)})"
        else:
            rhs = latex_vec(spec_node.expr, ctx.names)
        sym = latex_vec(Ref(node, 0, "node"), ctx.names)
        return _Verdict("wrong", f"differs from the cell's equation {sym} = {rhs}",
                        differences=[{"kind": "wrong equation", "term": None,
                                      "expected": f"{sym} = {rhs}"}])

    # -- comparing -----------------------------------------------------------------------
    def compare(self, got: Sum, want: Sum, shape: Shape) -> _Verdict:
        ctx = self.ctx
        if got.key() == want.key():
            return _Verdict("correct", "", "symbolic")
        nshape = (_size(shape[0]), _size(shape[1]))
        pts = ctx.points
        if all(_close(p.value(list(got), nshape), p.value(list(want), nshape)) for p in pts):
            return _Verdict("correct", "", "numeric")
        diffs = self.differences(got, want, nshape)
        return _Verdict("wrong", "; ".join(d["text"] for d in diffs), "", diffs)

    def differences(self, got: Sum, want: Sum, nshape: tuple[int, int]) -> list[dict[str, Any]]:
        """The smallest set of differing terms, each named, with the corrected term."""
        ctx = self.ctx
        p = ctx.points[0]
        gmap = {t.factors: t for t in got}
        wmap = {t.factors: t for t in want}
        out: list[dict[str, Any]] = []
        for fs in gmap.keys() & wmap.keys():
            if gmap[fs].coef != wmap[fs].coef:
                out.append(self._diff("wrong coefficient", gmap[fs], wmap[fs]))
        xs = [t for fs, t in gmap.items() if fs not in wmap]
        ys = [t for fs, t in wmap.items() if fs not in gmap]
        # terms written differently but equal in value cancel
        vals_y = [p.term(y, nshape) for y in ys]
        keep_x = []
        for x in xs:
            vx = p.term(x, nshape)
            hit = next((k for k, vy in enumerate(vals_y)
                        if vy is not None and _close(vx, vy)), None)
            if hit is None:
                keep_x.append(x)
            else:
                vals_y[hit] = None  # type: ignore[call-overload]
        ys = [y for y, v in zip(ys, vals_y, strict=True) if v is not None]
        xs = keep_x
        out.extend(self._missing_plus(xs, ys))
        # pair the rest by the fewest factor edits
        pairs = sorted(((_edits(x.factors, y.factors), i, j) for i, x in enumerate(xs)
                        for j, y in enumerate(ys)), key=lambda e: e[0])
        used_x: set[int] = set()
        used_y: set[int] = set()
        for _, i, j in pairs:
            if i in used_x or j in used_y:
                continue
            x, y = xs[i], ys[j]
            shared = sum((Counter(x.factors) & Counter(y.factors)).values())
            if not shared and not _same_tail(x, y) and not (len(xs) == len(ys) == 1):
                continue
            used_x.add(i)
            used_y.add(j)
            out.append(self._pair(x, y))
        for i, x in enumerate(xs):
            if i not in used_x:
                out.append(self._diff("extra term", x, None))
        for j, y in enumerate(ys):
            if j not in used_y:
                out.append(self._diff("missing term", None, y))
        if not out:  # differences that only show numerically (e.g. d(a + b) vs d(a) + d(b))
            due = " + ".join(self._due(t) for t in want) or "0"
            out.append({"kind": "value", "term": " + ".join(self._written(t) for t in got),
                        "expected": due,
                        "text": f"the line evaluates differently from the engine's {due}"})
        return out

    def _missing_plus(self, xs: list[Term], ys: list[Term]) -> list[dict[str, Any]]:
        """``P dv_{t-1}/dA S`` where the engine has ``P dv_{t-1}/dA + S``: a '+' dropped after a
        recursion symbol, with shapes that compose (A a bias). Consumes the terms it explains:
        every written P_i S whose P_i is due, the due P_i, and the due terms ending in S."""
        ctx = self.ctx
        order = ctx.order
        groups: dict[tuple[Factor, ...], list[tuple[Term, Term]]] = {}
        for x in xs:
            k = next((i for i, f in enumerate(x.factors[:-1]) if isinstance(f, Rec)), None)
            if k is None:
                continue
            head = Term(x.coef, x.factors[:k + 1]).canonical(order)
            groups.setdefault(x.factors[k + 1:], []).append((x, head))
        out = []
        for tail, members in groups.items():
            due = {y.factors: y for y in ys}
            heads = [h for _, h in members]
            tails = [y for y in ys if y.factors[-len(tail):] == tail and y.factors not in
                     {h.factors for h in heads}]
            if not tails or not all(h.factors in due and due[h.factors].coef == h.coef
                                    for h in heads):
                continue
            for x, h in members:
                xs.remove(x)
                ys.remove(due[h.factors])
            for y in tails:
                ys.remove(y)
            after = ctx.flatex(members[0][0].factors[len(members[0][1].factors) - 1])
            written = " + ".join(self._written(x) for x, _ in members)
            fixed = " + ".join(self._due(t) for t in [*heads, *tails])
            out.append({"kind": "missing '+'", "term": written, "expected": fixed,
                        "factor": after,
                        "text": f"a '+' is missing after {after}: {written} should be {fixed}"})
        return out

    def _pair(self, x: Term, y: Term) -> dict[str, Any]:
        """Name the difference between a written term and the engine's term it stands for.
        Runs of d(.) factors commute, so factors are compared as multisets first."""
        ctx = self.ctx
        order = ctx.order
        fx, fy = x.factors, y.factors
        if fx == fy:
            return self._diff("wrong coefficient", x, y)
        cx, cy = Counter(fx), Counter(fy)
        only_x, only_y = list((cx - cy).elements()), list((cy - cx).elements())

        def canon(fs: Sequence[Factor]) -> tuple[Factor, ...]:
            return Term(Fraction(1), tuple(fs)).canonical(order).factors

        if len(only_x) == 1 and len(only_y) == 1:
            a, b = only_x[0], only_y[0]
            if canon([b if f == a else f for f in fx]) == fy:
                d = self._diff("wrong factor", x, y)
                fa = self._as_written(a, getattr(self, "raw", {}).get(fx))
                fb = self._as_written(b, getattr(self, "orig", {}).get(fy))
                d["factor"], d["should_be"] = fa, fb
                d["text"] = (f"wrong factor {fa} (should be {fb}) in {self._written(x)}; "
                             f"corrected: {self._due(y)}")
                return d
        if not only_x and not only_y:
            d = self._diff("factor order", x, y)
            d["text"] = (f"factors in the wrong order in {self._written(x)} (matrices do not "
                         f"commute); corrected: {self._due(y)}")
            return d
        if only_y and not only_x:
            rest = list(fy)
            for f in only_y:
                rest.remove(f)
            if canon(rest) == fx:
                names = " ".join(ctx.flatex(f) for f in only_y)
                d = self._diff("missing factor", x, y)
                d["factor"] = names
                d["text"] = (f"missing factor{'s' if len(only_y) > 1 else ''} {names} in "
                             f"{self._written(x)}; corrected: {self._due(y)}")
                return d
        if only_x and not only_y:
            rest = list(fx)
            for f in only_x:
                rest.remove(f)
            if canon(rest) == fy:
                names = " ".join(ctx.flatex(f) for f in only_x)
                d = self._diff("extra factor", x, y)
                d["factor"] = names
                d["text"] = (f"extra factor{'s' if len(only_x) > 1 else ''} {names} in "
                             f"{self._written(x)}; corrected: {self._due(y)}")
                return d
        return self._diff("wrong term", x, y)

    def _written(self, t: Term) -> str:
        """A term of the line as it was written (its factor order, its vectors)."""
        fs = getattr(self, "raw", {}).get(t.factors, t.factors)
        return self.ctx.term_latex(Term(t.coef, fs))

    def _as_written(self, f: Factor, fs: Sequence[Factor] | None) -> str:
        """A normalised factor as it appears in ``fs`` (the written or engine product)."""
        for g in fs or ():
            if self.ctx.norm.factor(g)[1] == [f]:
                return self.ctx.flatex(g)
        return self.ctx.flatex(f)

    def _due(self, t: Term) -> str:
        """A term of the engine's value as the engine prints it."""
        fs = getattr(self, "orig", {}).get(t.factors, t.factors)
        return self.ctx.term_latex(Term(t.coef, fs))

    def _diff(self, kind: str, x: Term | None, y: Term | None) -> dict[str, Any]:
        ctx = self.ctx
        tx = self._written(x) if x is not None else None
        ty = self._due(y) if y is not None else None
        if kind == "extra term":
            text = f"extra term {tx}"
            rec = [i for i, f in enumerate(x.factors[:-1])  # type: ignore[union-attr]
                   if isinstance(f, Rec)]
            if rec:
                text += (f" (a '+' missing after "
                         f"{ctx.flatex(x.factors[rec[0]])}?)")  # type: ignore[union-attr]
        elif kind == "missing term":
            text = f"missing term {ty}"
        elif kind == "wrong coefficient":
            text = f"wrong coefficient: {tx} should be {ty}"
        else:
            text = f"{kind}: {tx} should be {ty}"
        return {"kind": kind, "term": tx, "expected": ty, "text": text}


def _size(d: tuple[str, ...]) -> int:
    return int(np.prod([SIZES[x] for x in d])) if d else 1


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.abs(a).max(initial=0.0)), float(np.abs(b).max(initial=0.0)))
    return bool(np.allclose(a, b, rtol=1e-8, atol=1e-10 * scale))


def _edits(a: tuple, b: tuple) -> int:
    """Levenshtein distance between two factor sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _same_tail(x: Term, y: Term) -> bool:
    return bool(x.factors and y.factors and x.factors[-1] == y.factors[-1])


# ----------------------------------------------------------------------------- a whole file


@dataclass
class _Doc:
    text: str
    fmt: str
    source: str
    pos: _Positions
    chains: list
    skipped: int
    problems: list[tuple[int, str]]
    skips: dict[tuple[int, int], str] = field(default_factory=dict)  # (equation, line): reason


def _read(text: str, fmt: str, source: str) -> _Doc:
    blocks, problems = find_blocks(text, fmt)
    cs, skipped, more = chains(blocks)
    skips = {}
    for idx, ch in enumerate(cs, 1):
        for k in range(1, len(ch.rhs) + 1):
            why = skip_reason(ch, k)
            if why is not None:
                skips[(idx, k)] = why
    return _Doc(text, fmt, source, _Positions(text), cs, skipped, sorted(problems + more), skips)


def _skipped_lines(doc: _Doc) -> list[SkippedLine]:
    pos = doc.pos
    out = []
    for (idx, k), why in sorted(doc.skips.items()):
        ch = doc.chains[idx - 1]
        rhs = ch.rhs[k - 1]
        anchor = rhs[0].pos if rhs else (ch.lhs[0].pos if ch.lhs else 0)
        out.append(SkippedLine(idx, ch.tag if ch.tag is not None else idx, k, why,
                               pos.span(ch.lhs), pos.span(rhs), pos(anchor), ch.label))
    return out


def _bindings(lex: Lexicon, generic: set[str], restricted: bool) -> list[dict[str, str]]:
    gates: list[str | None] = list(lex.gates) if "g" in generic else [None]
    out = []
    for g in gates:
        params: list[str | None] = list(lex.spec.cell_params) if "A" in generic else [None]
        if restricted and g is not None and "A" in generic:
            own = set(lex.gate_params(g))
            params = [p for p in params if p not in own]
        for p in params:
            b = {}
            if g is not None:
                b["g"] = g
            if p is not None:
                b["A"] = p
            out.append(b)
    return out


def _judge_doc(doc: _Doc, ctx: Context) -> tuple[list[LineResult], int]:
    """All line results, and how many symbols did not resolve (for cell inference)."""
    judge = Judge(ctx, doc.pos)
    results: list[LineResult] = []
    unknown = 0
    pos = doc.pos
    judged = {idx: [k for k in range(1, len(ch.rhs) + 1) if (idx, k) not in doc.skips]
              for idx, ch in enumerate(doc.chains, 1)}
    for idx, ch in enumerate(doc.chains, 1):  # symbols of the judged lines only
        if judged[idx]:
            unknown += unresolved(ch.lhs, ctx.lex) + sum(unresolved(ch.rhs[k - 1], ctx.lex)
                                                         for k in judged[idx])
    for idx, ch in enumerate(doc.chains, 1):
        if ch.rhs and not judged[idx]:
            continue  # every line skipped: the left-hand side is not read either
        tag: str | int = ch.tag if ch.tag is not None else idx
        lhs_text = pos.span(ch.lhs)

        def rec(k: int, v: _Verdict, rhs_toks: list[Tok], binding: dict | None = None,
                notes: Sequence[tuple[int, str]] = (), *, _tag=tag, _lhs=lhs_text, _ch=ch,
                _idx=idx) -> LineResult:
            anchor = rhs_toks[0].pos if rhs_toks else (_ch.lhs[0].pos if _ch.lhs else 0)
            tok = v.token
            detail = v.detail
            return LineResult(
                equation=_idx, tag=_tag, line=k, verdict=v.verdict, detail=detail, lhs=_lhs,
                rhs=pos.span(rhs_toks), position=pos(tok.pos if tok is not None else anchor),
                label=_ch.label, method=v.method, binding=_pretty_binding(ctx, binding),
                differences=[{kk: vv for kk, vv in dd.items() if kk != "text"}
                             for dd in v.differences],
                notes=[f"{pos.where(p)}: {m}" for p, m in dict(notes).items()],
                token=tok.text if tok is not None else None)

        # scan: syntax and symbols, and which generic symbols the chain uses
        scan = Parser(ch.lhs, ctx.lex)
        try:
            lhs0 = scan.lhs()
        except ParseError as exc:
            v = _unparsed(pos, exc, "" if exc.message.startswith("left-hand side")
                          else "left-hand side: ", ch.anchor)
            results.extend(rec(k, v, r) for k, r in enumerate(ch.rhs or [[]], 1)
                           if (idx, k) not in doc.skips)
            continue
        readings = [(lhs0, set(scan.generic), False)]
        if isinstance(lhs0, LAdj):  # \bar{u}_t may name a node too (minLSTM's \bar{f}_t)
            alt_scan = Parser(ch.lhs, ctx.lex)
            try:
                alt = alt_scan.lhs(as_node=True)
            except ParseError:
                alt = None
            if isinstance(alt, LDef):
                readings.append((alt, set(alt_scan.generic), True))
        best: list[LineResult] | None = None
        for lhs_r, generic, as_node in readings:
            got = _judge_chain(doc, idx, ch, ctx, judge, rec, lhs_r, generic, as_node)
            # the adjoint reading stands unless the node's equation reads and judges better
            if best is None or _reading_score(got) > _reading_score(best):
                best = got
        assert best is not None
        results.extend(best)
    return results, unknown


def _reading_score(results: list[LineResult]) -> tuple[int, int, int]:
    """How well a reading of a left-hand side fits its lines: more correct, fewer unparsed,
    fewer ill-typed."""
    return (sum(r.verdict == "correct" for r in results),
            -sum(r.verdict == "unparsed" for r in results),
            -sum(r.verdict == "ill-typed" for r in results))


def _judge_chain(doc: _Doc, idx: int, ch: Any, ctx: Context, judge: Judge, rec: Any, lhs0: Any,
                 generic: set[str], as_node: bool) -> list[LineResult]:
    """The results of the lines of one chain, its left-hand side read as ``lhs0`` (``as_node``:
    \\bar{u}_t as the node named so, :meth:`Parser.lhs`)."""
    pos = doc.pos
    results: list[LineResult] = []
    sides = _read_sides(doc, idx, ch, ctx, lhs0, generic)
    binds = _bindings(ctx.lex, generic, ch.restricted)
    for k, (r, s0) in enumerate(zip(ch.rhs, sides, strict=True), 1):
        if s0 is None:  # skipped
            continue
        if isinstance(s0, ParseError):
            results.append(rec(k, _unparsed(pos, s0, anchor=ch.anchor), r))
            continue
        verdict: _Verdict | None = None
        used: dict | None = None
        notes: list[tuple[int, str]] = list(s0.notes)
        for b in binds:
            try:
                lhs = Parser(ch.lhs, ctx.lex, b).lhs(as_node) if b else lhs0
                side = Parser(r, ctx.lex, b).side(vector=isinstance(lhs0, LDef)) if b \
                    else s0
            except ParseError as exc:
                verdict, used = _unparsed(pos, exc, anchor=ch.anchor), b
                break
            try:
                v = judge.line(lhs, side)
            except Exception as exc:  # noqa: BLE001 - a report, never a traceback
                v = _Verdict("unparsed", f"derive could not judge this line "
                             f"({type(exc).__name__}: {exc}); please report it",
                             token=r[0] if r else None)
            if v.verdict != "correct":
                verdict, used = v, b
                break
            if verdict is None or (v.method == "numeric"):
                verdict = v
        assert verdict is not None
        if used is None and len(binds) > 1:
            verdict.detail = _all_bindings(ctx, generic, len(binds))
        results.append(rec(k, verdict, r, used if len(binds) > 1 or used else None, notes))
    return results


def _read_sides(doc: _Doc, idx: int, ch: Any, ctx: Context, lhs: Any,
                generic: set[str]) -> list[Side | ParseError | None]:
    """The right-hand sides of a chain read for its left-hand side (a cell equation's as
    vectors), None for a skipped line; adds the generic symbols they use to ``generic``."""
    sides: list[Side | ParseError | None] = []
    for k, r in enumerate(ch.rhs, 1):
        if (idx, k) in doc.skips:
            sides.append(None)
            continue
        p = Parser(r, ctx.lex)
        try:
            sides.append(p.side(vector=isinstance(lhs, LDef)))
            generic |= p.generic
        except ParseError as exc:
            sides.append(exc)
    return sides


def _pretty_binding(ctx: Context, b: dict | None) -> dict[str, str] | None:
    if not b:
        return None
    out = {}
    if "g" in b:
        out["g"] = ctx.lex.latex(b["g"])
    if "A" in b:
        out["A"] = ctx.lex.latex(b["A"])
    return out


def _all_bindings(ctx: Context, generic: set[str], n: int) -> str:
    parts = []
    if "A" in generic:
        parts.append("every parameter A")
    if "g" in generic:
        parts.append("every gate g (" + ", ".join(ctx.lex.latex(g) + "_t"
                                                  for g in ctx.lex.gates) + ")")
    return f"for {' and '.join(parts)} ({n} cases)"


def _unparsed(pos: _Positions, exc: ParseError, prefix: str = "",
              anchor: Tok | None = None) -> _Verdict:
    tok = exc.tok if exc.tok is not None else anchor
    where = ""
    if tok is not None:
        where = f"{pos.where(tok.pos)}" + (f", at {tok.text!r}" if exc.tok is not None else "")
        where += ": "
    return _Verdict("unparsed", where + prefix + exc.message, token=tok)


def _first_failure(results: list[LineResult]) -> None:
    """Prefix a failing generic line's detail with its binding."""
    for r in results:
        if r.verdict != "correct" and r.binding:
            b = ", ".join(f"{k} = {v}" for k, v in r.binding.items())
            r.detail = f"with {b}: {r.detail}"


# ----------------------------------------------------------------------------- candidates


def _load_cell(cell: str | Mapping[str, Any] | CellSpec | Derivation) -> Derivation:
    """A built-in cell's name, a spec file (.toml/.json, read as every command reads one:
    :func:`derive.spec.files.resolve_cell`), a spec dict or a CellSpec, derived."""
    if isinstance(cell, Derivation):
        return cell
    try:
        if isinstance(cell, str):
            from ..spec.files import resolve_cell

            cell = resolve_cell(cell)
        return derive(cell)  # type: ignore[arg-type]
    except SpecError as exc:
        raise CheckError(str(exc)) from None


def candidates(cell: Any = None, notation: Any = None) -> list[Context]:
    """The (cell, notation) contexts to try: the given ones, or every built-in cell under every
    shipped notation (contexts naming every symbol alike are merged)."""
    from ..printing.notation import NotationError, available, load
    from ..spec.cells import BUILTIN

    cells = [_load_cell(cell)] if cell is not None else [derive(c) for c in BUILTIN]
    if notation is not None:
        try:
            notes = [load(notation)]
        except NotationError as exc:
            raise CheckError(str(exc)) from None
    else:
        notes = [load(n) for n in available()]
    out: list[Context] = []
    seen: dict[tuple, Context] = {}
    for d in cells:
        for note in notes:
            try:
                names = note.names(d.spec)
            except NotationError as exc:
                if notation is not None:
                    raise CheckError(str(exc)) from None
                continue
            key = (d.name, tuple(sorted(names.items())))
            if key in seen:
                seen[key].aliases.append(note.name)
                continue
            seen[key] = Context(d, names, note.name)
            out.append(seen[key])
    return out


def _fmt(path: str | None, text: str) -> str:
    if path is not None and Path(path).suffix.lower() in (".tex", ".ltx", ".sty", ".latex"):
        return "tex"
    if path is not None and Path(path).suffix.lower() in (".md", ".markdown", ".txt", ".mdx"):
        return "md"
    return "tex" if r"\begin{document}" in text or r"\documentclass" in text else "md"


def check_text(text: str, *, cell: Any = None, notation: Any = None, fmt: str | None = None,
               source: str = "<string>") -> Report:
    """Check the display equations of a LaTeX (``fmt='tex'``) or Markdown (``'md'``) text.

    ``cell``: a built-in name, a spec dict / :class:`~derive.spec.CellSpec` /
    :class:`~derive.calculus.derivation.Derivation`, a ``.json``/``.toml`` spec path, or None to
    infer; ``notation``: a shipped profile name, a ``.toml`` path or None to infer. Raises
    :class:`CheckError` for usage errors (no equations, unknown or ambiguous cell)."""
    fmt = fmt or _fmt(None, text)
    if fmt not in ("tex", "md"):
        raise CheckError(f"unknown format {fmt!r}; expected 'tex' or 'md'")
    doc = _read(text, fmt, source)
    if cell is not None or notation is not None:
        return _check_dx(doc, text, fmt, source, cell, notation)
    try:
        old = _check_dx(doc, text, fmt, source, cell, notation)
    except CheckError:
        old = None
    if old is not None and _reads_well(old):
        return old
    own = check_own(text, fmt=fmt, source=source, need_cell=old is not None)
    if own is not None:
        return own
    if old is not None:
        return old
    return _check_dx(doc, text, fmt, source, cell, notation)


OWN_CELL = "the document's own"


def _reads_well(rep: Report) -> bool:
    """The d(x) reading stands where it judges most of the lines it does not skip."""
    c = rep.counts()
    judged = c["correct"] + c["wrong"] + c["ill-typed"]
    return judged >= c["unparsed"] and (judged > 0 or c["unparsed"] == 0)


def check_own(text: str, *, fmt: str = "md", source: str = "<string>",
              need_cell: bool = False) -> Report | None:
    """The derivation judged against the cell its own forward equations define
    (:mod:`derive.check.reverse`): every mathematical line, inline math included, at its own
    line; None when the document holds no mathematical line at all."""
    from .reverse import DocumentJudge

    dj = DocumentJudge(text, fmt)
    if need_cell and dj.cell is None:
        return None
    lines = dj.lines()
    problems = dj.problems
    if not lines and not problems:
        return None
    pos = _Positions(text)
    results: list[LineResult] = []
    skipped: list[SkippedLine] = []
    for ln in lines:
        where = pos(ln.pos)
        if ln.verdict == "skipped":
            skipped.append(SkippedLine(ln.eq_index, ln.eq_index, ln.k, ln.detail, ln.lhs, ln.rhs,
                                       where))
            continue
        results.append(LineResult(ln.eq_index, ln.eq_index, ln.k, ln.verdict, ln.detail,
                                  ln.lhs, ln.rhs, where, method="numeric",
                                  differences=ln.differences))
    n = len(dj.eqs)
    for k, (p, m) in enumerate(problems, n + 1):
        results.append(LineResult(k, k, 1, "malformed", f"{pos.where(p)}: {m}",
                                  position=pos(p), token=text[p:p + 2].strip() or None))
    how = dj.cell.describe() if dj.cell is not None else f"no cell ({dj.cell_error})"
    return Report(source, OWN_CELL, how, True, results, n, 0, [], skipped)


def _check_dx(doc: _Doc, text: str, fmt: str, source: str, cell: Any,
              notation: Any) -> Report:
    """The d(x) reading: display equations against derive's own cells."""
    if not doc.chains and not doc.problems:
        what = "display math ($$...$$, \\[...\\], equation or align)" if fmt == "md" else \
            "display math (equation, align, \\[...\\], $$...$$)"
        extra = ""
        if doc.skipped:
            extra = (f" ({doc.skipped} display row{'s' if doc.skipped > 1 else ''} without an "
                     "'=' or another relation outside braces)")
        raise CheckError(f"{source}: no equations found: expected {what} holding an "
                         f"equation 'lhs = rhs'{extra}")
    ctxs = candidates(cell, notation)
    if not ctxs:
        raise CheckError("no cell and notation to check against")
    inferred = len(ctxs) > 1
    scored = []
    for ctx in ctxs:
        scored.append((ctx, *_judge_doc(doc, ctx)))
    if inferred:
        fewest = min(u for _, _, u in scored)
        scored = [s for s in scored if s[2] == fewest]
        for verdict, sign in (("correct", 1), ("ill-typed", -1)):
            if len(scored) > 1:  # most correct lines, then fewest whose shapes clash
                best = max(sign * sum(r.verdict == verdict for r in res) for _, res, _ in scored)
                scored = [s for s in scored
                          if sign * sum(r.verdict == verdict for r in s[1]) == best]
        verdicts = {tuple((r.verdict, r.detail) for r in res) for _, res, _ in scored}
        if len(scored) > 1 and len(verdicts) > 1:
            choices = ", ".join(f"--cell {c.spec.name} --notation {c.notation}"
                                for c, _, _ in scored)
            raise CheckError(f"{source}: the equations fit several cells equally well and the "
                             f"verdicts depend on which; choose one: {choices}")
        also = [c.label for c, _, _ in scored[1:]]
    else:
        also = []
    ctx, results, _ = scored[0]
    for k, (p, m) in enumerate(doc.problems, len(doc.chains) + 1):
        results.append(LineResult(k, k, 1, "unparsed", f"{doc.pos.where(p)}: {m}",
                                  position=doc.pos(p), token=doc.text[p:p + 2].strip() or None))
    _first_failure(results)
    return Report(source, ctx.spec.name, ctx.notation_label, inferred, results,
                  len(doc.chains), doc.skipped, also, _skipped_lines(doc))


def check_file(path: str | Path, *, cell: Any = None, notation: Any = None) -> Report:
    """Check a ``.tex`` or Markdown file (see :func:`check_text`)."""
    p = Path(path)
    if not p.exists():
        raise CheckError(f"file {str(path)!r} not found")
    if p.is_dir():
        raise CheckError(f"{str(path)!r} is a directory; expected a .tex or Markdown file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CheckError(f"{str(path)!r} is not UTF-8 text; expected a .tex or Markdown "
                         "file") from None
    except OSError as exc:
        raise CheckError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    return check_text(text, cell=cell, notation=notation, fmt=_fmt(str(p), text),
                      source=str(path))


# ----------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``derive check``."""
    p.add_argument("file", metavar="FILE", help="a .tex file or Markdown with $$...$$ math")
    p.add_argument("--cell", "-c", metavar="CELL",
                   help="the cell (derive list) or a .json/.toml spec; default: inferred")
    p.add_argument("--notation", "-n", metavar="NAME|FILE",
                   help="native, goodfellow, standard or a notation .toml; default: inferred")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list, one record per judged line (skipped lines: none)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand to ``derive``'s subparsers (``args.func`` is :func:`run`)."""
    p = subparsers.add_parser(
        "check", help="verify a hand derivation (.tex or Markdown) line by line",
        description="Verify every line of a hand derivation in the d(x) notation against the "
                    "engine; exit 0 when all are correct, 1 otherwise, 2 on bad input.")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Run ``derive check``; returns the exit status."""
    try:
        report = check_file(args.file, cell=args.cell, notation=args.notation)
    except CheckError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        sys.stdout.write(report.format())
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m derive.check FILE [--cell CELL] [--notation N] [--json]``."""

    class _P(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            self.exit(2, f"{PROG}: error: {message}\n(see `{PROG} --help`)\n")

    p = _P(prog=PROG, description="Verify a hand derivation against the engine.")
    add_arguments(p)
    return run(p.parse_args(argv), p)


__all__ = ["CheckError", "LineResult", "Report", "SkippedLine", "add_arguments", "candidates",
           "check_file", "check_text", "main", "register", "run"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
