"""One cell under one notation, and the engine's value of what a line can name (a derivative,
an adjoint, the loss column). Values are computed once, on first use.

**Opaque derivatives** on a right-hand side are replaced by their engine value
(:meth:`Context.deriv`) and the line is expanded: ``\\frac{\\partial o_t}{\\partial W}`` (any node
at t) by its total derivative (the t-1 recursion symbols stay opaque);
``\\frac{\\partial h_{t-1}}{\\partial A}`` *is* the recursion symbol. For a denominator that is
not a parameter the chain-rule meaning is used: ``\\frac{\\partial y}{\\partial z}`` with z a node
at t or a written sub-expression (``\\sigma(s_t)``, ``(W_g h_{t-1} + U_g x_t + b_g)``) is the
partial derivative of y's own equation w.r.t. z with every other symbol in it held (taken
through the nodes between them only when z does not occur in it, so
``\\frac{\\partial h_t}{\\partial f_t}`` goes through s_t); with z a state at t-1 it is the total
derivative when y is a single symbol (a Jacobian entry) and the partial one when y is written
out (``\\frac{\\partial f_t \\odot s_{t-1}}{\\partial s_{t-1}}`` = d(f_t), seed 001 eq 7).

**Adjoints** (seed 002): ``\\bar{u}_t`` and ``\\delta v_{t-1}`` are expanded down to the leaves
``\\frac{\\partial \\ell_t}{\\partial h_t}`` (a column) and ``\\delta v_t``
(:meth:`Context.full_bar`), so any grouping of the adjoint recursion is accepted. In **a cell
with a readout** (seed 004's y_t = sigma(V h_t + b_y)) the loss at t is a function of the readout
(:func:`derive.printing.latex.readout_reverse`), so the leaves are
``\\frac{\\partial \\ell_t}{\\partial y_t}`` instead, and
``\\frac{\\partial \\ell_t}{\\partial h_t}`` is the column the readout passes to the cell
(:meth:`Context.loss_column`). No state depends on a readout parameter (its recursion symbols
are zero).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from ...calculus.algebra import ZERO, Adj, Ident, Rec, Sum, make_sum, mul, single
from ...calculus.derivation import Derivation
from ...calculus.rules import partial, totals
from ...printing.latex import ReadoutReverse, readout_reverse
from ...spec import HAT, Expr, Ref
from .errors import Unsupported
from .factors import RowGrad
from .normal import Normalizer, replace, subst_factors
from .points import SEEDS, Point
from .symbols import Lexicon
from .syntax import Loss

VAR = Ref("__var__", 0, "node")  # the denominator of a local derivative, while it is taken


class Context:
    """One cell (a :class:`~derive.calculus.derivation.Derivation`) under one notation; the
    notations in ``aliases`` name every symbol of the cell alike."""

    def __init__(self, d: Derivation, names: Mapping[str, str], notation: str,
                 aliases: Sequence[str] = ()):
        self.d = d
        self.spec = d.spec
        self.order = d.order
        self.names = dict(names)
        self.notation = notation
        self.aliases = tuple(aliases)
        self.lex = Lexicon(self.spec, self.names)
        self.norm = Normalizer(self.spec)
        self._tot: dict[tuple, dict[str, Sum]] = {}
        self._deriv: dict[tuple, Sum] = {}
        self._bar: dict[str, Sum] = {}

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

    @staticmethod
    def _var(den: Expr) -> tuple | None:
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
        e2 = replace(e, dn, VAR)

        def direct(r: Ref) -> Sum:
            return one if r == VAR else ZERO

        out = partial(e2, direct, None, order)
        if not out:
            tot: dict[str, Sum] = {}

            def lf(r: Ref) -> Sum:
                if r == VAR:
                    return one
                if r.kind == "node" and r.lag == 0:
                    return tot.get(r.name, ZERO)
                return ZERO

            for name in spec.nodes:
                if Ref(name, 0, "node") == dn:
                    tot[name] = one
                    continue
                tot[name] = partial(replace(self.norm.exprs[name], dn, VAR), lf, None, order)
            out = tot[n.name] if is_node else partial(e2, lf, None, order)  # type: ignore[union-attr]
        return subst_factors(out, VAR, dn)

    @functools.cached_property
    def readout(self) -> ReadoutReverse | None:
        """The readout's part of reverse mode (:func:`derive.printing.latex.readout_reverse`), None
        for a cell without a readout."""
        return readout_reverse(self.d)

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
        return self._loss_column

    @functools.cached_property
    def _loss_column(self) -> Sum:
        assert self.readout is not None
        return self.expand_adj(self.readout.output)

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

    # -- numbers -------------------------------------------------------------------------
    @functools.cached_property
    def points(self) -> list[Point]:
        """The two random points a line is evaluated at."""
        return [Point(self.spec, self.loss_nodes(), seed) for seed in SEEDS]
