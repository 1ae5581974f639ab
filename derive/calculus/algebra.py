"""The inspectable middle layer: Jacobians as sums of signed products of matrix factors.

Every derivative derive prints is a :class:`Sum` of :class:`Term` s; a term is a coefficient and
a product of factors, read left to right as a matrix product. Factor atoms:

=====================  ==============================================================  ==========
factor                 meaning                                                         shape
=====================  ==============================================================  ==========
``Diag(v)``            d(v) = diag(v) (seed 001 notation)                              n x n
``Diag2(v)``           d_2(v) = dW v / dW, (d_2(v))_{ijk} = delta_ij v_k; with the     n x n*len(v)
                       parameter flattened row-major this is I_n kron v^T
``Mat(P)``             the weight matrix P (``transposed`` for P^T)                   rows x cols
``Ident()``            I                                                               n x n
``Rec(u, A, lag)``     the opaque recursion symbol d u_{t-lag} / d A                   n x |A|
``Adj(u, kind)``       an adjoint vector (reverse mode): ``bar`` = \\bar u_t,           n x 1
                       ``carry`` = delta u_t (from step t+1), ``loss`` = d l_t / d u_t
``Outer(v)``           right factor v^T of a weight gradient (d_2(v)^T applied)        1 x len(v)
=====================  ==============================================================  ==========

Products are kept *expanded* (a sum of products) so that collecting M_t, N_t, V_t is sorting terms
by their last factor; printers factor them back for display. Diagonal factors commute, so every
run of consecutive ``Diag`` factors is sorted by a per-cell rank (:class:`FactorOrder`): the order
in which the product rule meets them walking the cell from its output, which is the order a hand
derivation writes them in (d(o_t) d(sigma'(s_t)) d(s_{t-1}) d(f'_t)).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction

from ..spec import Add, Call, CellSpec, Const, DerivAt, Expr, MatVec, Mul, Ref

# ----------------------------------------------------------------------------- factors


@dataclass(frozen=True)
class Factor:
    """Base class of matrix factors."""


@dataclass(frozen=True)
class Diag(Factor):
    v: Expr


@dataclass(frozen=True)
class Diag2(Factor):
    v: Expr


@dataclass(frozen=True)
class Mat(Factor):
    name: str
    transposed: bool = False


@dataclass(frozen=True)
class Ident(Factor):
    pass


@dataclass(frozen=True)
class Rec(Factor):
    state: str
    wrt: str
    lag: int = 1


@dataclass(frozen=True)
class Adj(Factor):
    name: str
    kind: str  # bar | carry | loss


@dataclass(frozen=True)
class Outer(Factor):
    v: Expr


def transpose(f: Factor) -> Factor:
    """Transpose of one factor (d(v) and I are symmetric)."""
    if isinstance(f, Mat):
        return Mat(f.name, not f.transposed)
    if isinstance(f, (Diag, Ident)):
        return f
    raise ValueError(f"cannot transpose {f!r} on its own")


# ----------------------------------------------------------------------------- ordering


class FactorOrder:
    """Canonical rank of d(.) factors for one cell.

    Walks the cell from its states (output first) through every node expression, in the order the
    forward rules emit factors: for a Hadamard product a * b the rule gives d(b) da + d(a) db, for
    act(z) it gives d(act'(z)) dz. The rank of a d(v) is the index of its first appearance.
    Factors never met (e.g. from user-built expressions) sort after all of these, by text.
    """

    def __init__(self, spec: CellSpec):
        self.rank: dict[Expr, int] = {}
        seen: set[str] = set()

        def reg(v: Expr) -> None:
            self.rank.setdefault(v, len(self.rank))

        def visit_node(name: str) -> None:
            if name in seen:
                return
            seen.add(name)
            visit(spec.nodes[name].expr)

        def visit(e: Expr) -> None:
            if isinstance(e, Ref):
                if e.kind == "node" and e.lag == 0:
                    visit_node(e.name)
            elif isinstance(e, Call):
                reg(DerivAt(e.fn, e.arg))
                visit(e.arg)
            elif isinstance(e, MatVec):
                visit(e.arg)
            elif isinstance(e, Add):
                for _, t in e.terms:
                    visit(t)
            elif isinstance(e, Mul):
                # the product rule's d(others) factors of this node come before anything met
                # inside its factors (so d(o_t) d(tanh'(c_t)) stays together when o sees c)
                for i in range(len(e.factors)):
                    others = hadamard_others(e.factors, i)[1]
                    if others is not None:
                        reg(others)
                for f in e.factors:
                    visit(f)

        for s in spec.states:
            visit_node(s)
        for n in spec.readout_nodes:
            visit_node(n)
        for n in spec.nodes:
            visit_node(n)
        # previous-state values d(s_{t-1}) that never appear as "others" still get a stable rank
        for s in spec.states:
            reg(Ref(s, 1, "node"))

    def key(self, v: Expr) -> tuple[int, str]:
        r = self.rank.get(v)
        return (r, "") if r is not None else (len(self.rank), repr(v))


def hadamard_others(factors: tuple[Expr, ...], i: int) -> tuple[Fraction, Expr | None]:
    """For the product rule on factors[i]: the constant coefficient and the vector product of the
    other non-constant factors (None when they are all constants)."""
    coef = Fraction(1)
    rest: list[Expr] = []
    for j, f in enumerate(factors):
        if j == i:
            continue
        if isinstance(f, Const):
            coef *= f.value
        else:
            rest.append(f)
    if not rest:
        return coef, None
    return coef, rest[0] if len(rest) == 1 else Mul(tuple(rest))


# ----------------------------------------------------------------------------- terms and sums


@dataclass(frozen=True)
class Term:
    """coef * factors[0] factors[1] ... (a matrix product)."""

    coef: Fraction
    factors: tuple[Factor, ...]

    def canonical(self, order: FactorOrder | None) -> Term:
        """Drop identities inside products and sort runs of d(.) factors by rank."""
        fs = [f for f in self.factors if not isinstance(f, Ident)]
        if not fs:
            fs = [Ident()]
        if order is not None:
            out: list[Factor] = []
            run: list[Diag] = []
            for f in fs + [None]:  # type: ignore[list-item]
                if isinstance(f, Diag):
                    run.append(f)
                    continue
                out.extend(sorted(run, key=lambda d: order.key(d.v)))
                run = []
                if f is not None:
                    out.append(f)
            fs = out
        return Term(self.coef, tuple(fs))

    @property
    def last(self) -> Factor:
        return self.factors[-1]


@dataclass(frozen=True)
class Sum:
    """A sum of terms, in a deterministic order (the order the derivation emitted them)."""

    terms: tuple[Term, ...] = ()
    order: FactorOrder | None = field(default=None, compare=False, repr=False)

    def __iter__(self) -> Iterator[Term]:
        return iter(self.terms)

    def __len__(self) -> int:
        return len(self.terms)

    def __bool__(self) -> bool:
        return bool(self.terms)

    @property
    def is_zero(self) -> bool:
        return not self.terms

    def key(self) -> frozenset:
        """Order-free identity of the sum (for comparing with hand derivations)."""
        return frozenset((t.factors, t.coef) for t in self.terms)

    def __add__(self, other: Sum) -> Sum:
        return add([self, other], self.order or other.order)

    def __matmul__(self, other: Sum) -> Sum:
        return mul(self, other, self.order or other.order)

    def scale(self, c: Fraction | int) -> Sum:
        return make_sum(((t.coef * c, t.factors) for t in self.terms), self.order)

    def split_last(self, pred) -> tuple[Sum, Sum]:
        """(terms whose last factor satisfies pred, with it stripped; the other terms)."""
        hit, rest = [], []
        for t in self.terms:
            if pred(t.last):
                hit.append((t.coef, t.factors[:-1] or (Ident(),)))
            else:
                rest.append((t.coef, t.factors))
        return make_sum(hit, self.order), make_sum(rest, self.order)

    def transpose(self) -> Sum:
        """Transpose of a sum of products of transposable factors."""
        return make_sum(
            ((t.coef, tuple(transpose(f) for f in reversed(t.factors))) for t in self.terms),
            self.order,
        )

    def then(self, *factors: Factor) -> Sum:
        """Right-multiply every term by fixed factors."""
        return make_sum(((t.coef, t.factors + factors) for t in self.terms), self.order)


def make_sum(items: Iterable[tuple[Fraction | int, tuple[Factor, ...]]],
             order: FactorOrder | None) -> Sum:
    """Canonicalise each product, merge like terms (first appearance keeps its place), drop 0."""
    acc: dict[tuple[Factor, ...], Fraction] = {}
    for coef, factors in items:
        t = Term(Fraction(coef), tuple(factors)).canonical(order)
        acc[t.factors] = acc.get(t.factors, Fraction(0)) + t.coef
    return Sum(tuple(Term(c, f) for f, c in acc.items() if c != 0), order)


def single(order: FactorOrder | None, *factors: Factor, coef: Fraction | int = 1) -> Sum:
    return make_sum([(coef, tuple(factors))], order)


def add(sums: Iterable[Sum], order: FactorOrder | None) -> Sum:
    return make_sum(((t.coef, t.factors) for s in sums for t in s.terms), order)


def mul(a: Sum, b: Sum, order: FactorOrder | None) -> Sum:
    """Distribute the matrix product (a)(b) over both sums."""
    return make_sum(
        ((ta.coef * tb.coef, ta.factors + tb.factors) for ta in a.terms for tb in b.terms), order
    )


ZERO = Sum(())
