"""The smallest set of differing terms between a wrong line and the engine's value, each named,
with the corrected term.

Terms equal numerically are cancelled first; a '+' dropped after a recursion symbol is found
next (``P \\frac{\\partial h_{t-1}}{\\partial b} S`` where ``P \\frac{..}{..} + S`` is due); the
rest is paired by the fewest factor edits and named ``wrong factor`` (``d(s_t)`` where
``d(\\sigma(s_t))`` is due), ``factor order``, ``missing factor``, ``extra factor``, ``wrong
coefficient``, ``wrong term``, ``missing term`` or ``extra term``. Written terms are shown as
written, the engine's as it prints them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from ...calculus.algebra import Factor, Rec, Sum, Term
from .context import Context
from .latex import flatex, term_latex
from .points import close
from .verdict import Difference, Expected, Product, Written


def differences(ctx: Context, got: Written, want: Expected, nshape: tuple[int, int]
                ) -> list[Difference]:
    """The named differences of a wrong line (module docstring)."""
    return _Namer(ctx, got, want).differences(got.value, want.value, nshape)


@dataclass(frozen=True)
class _Namer:
    """Names differences, quoting written terms as written and the engine's as printed."""

    ctx: Context
    got: Written
    want: Expected

    def differences(self, got: Sum, want: Sum, nshape: tuple[int, int]) -> list[Difference]:
        p = self.ctx.points[0]
        gmap = {t.factors: t for t in got}
        wmap = {t.factors: t for t in want}
        out: list[Difference] = []
        for fs in gmap.keys() & wmap.keys():
            if gmap[fs].coef != wmap[fs].coef:
                out.append(self.diff("wrong coefficient", gmap[fs], wmap[fs]))
        xs = [t for fs, t in gmap.items() if fs not in wmap]
        ys = [t for fs, t in wmap.items() if fs not in gmap]
        # terms written differently but equal in value cancel
        vals_y = [p.term(y, nshape) for y in ys]
        keep_x = []
        for x in xs:
            vx = p.term(x, nshape)
            hit = next((k for k, vy in enumerate(vals_y)
                        if vy is not None and close(vx, vy)), None)
            if hit is None:
                keep_x.append(x)
            else:
                vals_y[hit] = None  # type: ignore[call-overload]
        ys = [y for y, v in zip(ys, vals_y, strict=True) if v is not None]
        plus, xs, ys = self.missing_plus(keep_x, ys)
        out.extend(plus)
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
            out.append(self.pair(x, y))
        for i, x in enumerate(xs):
            if i not in used_x:
                out.append(self.diff("extra term", x, None))
        for j, y in enumerate(ys):
            if j not in used_y:
                out.append(self.diff("missing term", None, y))
        if not out:  # differences that only show numerically (e.g. d(a + b) vs d(a) + d(b))
            due = " + ".join(self.due(t) for t in want) or "0"
            out.append(Difference("value", " + ".join(self.written(t) for t in got), due,
                                  text=f"the line evaluates differently from the engine's {due}"))
        return out

    def missing_plus(self, xs: list[Term], ys: list[Term]
                     ) -> tuple[list[Difference], list[Term], list[Term]]:
        """``P dv_{t-1}/dA S`` where the engine has ``P dv_{t-1}/dA + S``: a '+' dropped after a
        recursion symbol, with shapes that compose (A a bias). The differences, and the written
        and due terms they leave unexplained: every written P_i S whose P_i is due, the due P_i,
        and the due terms ending in S are explained."""
        order = self.ctx.order
        xs, ys = list(xs), list(ys)
        groups: dict[Product, list[tuple[Term, Term]]] = {}
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
            after = flatex(self.ctx.names, members[0][0].factors[len(members[0][1].factors) - 1])
            written = " + ".join(self.written(x) for x, _ in members)
            fixed = " + ".join(self.due(t) for t in [*heads, *tails])
            out.append(Difference("missing '+'", written, fixed, factor=after,
                                  text=f"a '+' is missing after {after}: {written} should be "
                                       f"{fixed}"))
        return out, xs, ys

    def pair(self, x: Term, y: Term) -> Difference:
        """Name the difference between a written term and the engine's term it stands for.
        Runs of d(.) factors commute, so factors are compared as multisets first."""
        order = self.ctx.order
        fx, fy = x.factors, y.factors
        if fx == fy:
            return self.diff("wrong coefficient", x, y)
        cx, cy = Counter(fx), Counter(fy)
        only_x, only_y = list((cx - cy).elements()), list((cy - cx).elements())

        def canon(fs: Sequence[Factor]) -> Product:
            return Term(Fraction(1), tuple(fs)).canonical(order).factors

        if len(only_x) == 1 and len(only_y) == 1:
            a, b = only_x[0], only_y[0]
            if canon([b if f == a else f for f in fx]) == fy:
                fa = self.as_written(a, self.got.written.get(fx))
                fb = self.as_written(b, self.want.printed.get(fy))
                return dataclasses.replace(
                    self.diff("wrong factor", x, y), factor=fa, should_be=fb,
                    text=(f"wrong factor {fa} (should be {fb}) in {self.written(x)}; "
                          f"corrected: {self.due(y)}"))
        if not only_x and not only_y:
            return dataclasses.replace(
                self.diff("factor order", x, y),
                text=(f"factors in the wrong order in {self.written(x)} (matrices do not "
                      f"commute); corrected: {self.due(y)}"))
        if only_y and not only_x:
            rest = list(fy)
            for f in only_y:
                rest.remove(f)
            if canon(rest) == fx:
                return self.factors("missing", only_y, x, y)
        if only_x and not only_y:
            rest = list(fx)
            for f in only_x:
                rest.remove(f)
            if canon(rest) == fy:
                return self.factors("extra", only_x, x, y)
        return self.diff("wrong term", x, y)

    def factors(self, what: str, fs: Sequence[Factor], x: Term, y: Term) -> Difference:
        """Factors ``what`` (missing | extra) in the written term ``x``."""
        named = " ".join(flatex(self.ctx.names, f) for f in fs)
        return dataclasses.replace(
            self.diff(f"{what} factor", x, y), factor=named,
            text=(f"{what} factor{'s' if len(fs) > 1 else ''} {named} in {self.written(x)}; "
                  f"corrected: {self.due(y)}"))

    def written(self, t: Term) -> str:
        """A term of the line as it was written (its factor order, its vectors)."""
        fs = self.got.written.get(t.factors, t.factors)
        return term_latex(self.ctx.names, Term(t.coef, fs))

    def as_written(self, f: Factor, fs: Sequence[Factor] | None) -> str:
        """A normalised factor as it appears in ``fs`` (the written or engine product)."""
        for g in fs or ():
            if self.ctx.norm.factor(g)[1] == [f]:
                return flatex(self.ctx.names, g)
        return flatex(self.ctx.names, f)

    def due(self, t: Term) -> str:
        """A term of the engine's value as the engine prints it."""
        fs = self.want.printed.get(t.factors, t.factors)
        return term_latex(self.ctx.names, Term(t.coef, fs))

    def diff(self, kind: str, x: Term | None, y: Term | None) -> Difference:
        tx = self.written(x) if x is not None else None
        ty = self.due(y) if y is not None else None
        if kind == "extra term":
            text = f"extra term {tx}"
            rec = [i for i, f in enumerate(x.factors[:-1])  # type: ignore[union-attr]
                   if isinstance(f, Rec)]
            if rec:
                text += (f" (a '+' missing after "
                         f"{flatex(self.ctx.names, x.factors[rec[0]])}?)")  # type: ignore[union-attr]
        elif kind == "missing term":
            text = f"missing term {ty}"
        elif kind == "wrong coefficient":
            text = f"wrong coefficient: {tx} should be {ty}"
        else:
            text = f"{kind}: {tx} should be {ty}"
        return Difference(kind, tx, ty, text=text)


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
