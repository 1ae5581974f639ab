"""The forward rules of matrix calculus over the cell graph, and the three derivations.

Rules (a Jacobian is a :class:`~derive.calculus.algebra.Sum`; ``D`` is the derivative w.r.t. the
chosen variable, seed 001 eqs (7)-(13) are instances):

* affine:    D(P v) = P D(v) + [P is the variable] d_2(v)          (eqs 11, 12)
* bias:      D(b) = [b is the variable] I                            (eq 13)
* activation D(act(z)) = d(act'(z)) D(z)                             (eq 10)
* Hadamard:  D(a * b) = d(b) D(a) + d(a) D(b)                        (eq 7)
* sum:       D(a + b) = D(a) + D(b);  constants have D = 0.

The chain rule is the plain matrix product of :func:`~derive.calculus.algebra.mul`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..spec import Add, Call, CellSpec, Const, DerivAt, Expr, MatVec, Mul, Ref
from .algebra import (
    ZERO,
    Adj,
    Diag,
    Diag2,
    Factor,
    FactorOrder,
    Ident,
    Mat,
    Outer,
    Rec,
    Sum,
    add,
    hadamard_others,
    make_sum,
    mul,
    single,
    transpose,
)

Leaf = Callable[[Ref], Sum]


def partial(e: Expr, leaf: Leaf, param: str | None, order: FactorOrder) -> Sum:
    """D(e) by the forward rules; ``leaf`` gives D of every vector reference, ``param`` names the
    matrix parameter being differentiated (for the d_2 rule) or None."""
    if isinstance(e, Ref):
        return leaf(e)
    if isinstance(e, Const):
        return ZERO
    if isinstance(e, Call):
        inner = partial(e.arg, leaf, param, order)
        return mul(single(order, Diag(DerivAt(e.fn, e.arg))), inner, order) if inner else ZERO
    if isinstance(e, MatVec):
        inner = partial(e.arg, leaf, param, order)
        out = mul(single(order, Mat(e.param)), inner, order) if inner else ZERO
        if e.param == param:
            out = add([out, single(order, Diag2(e.arg))], order)
        return out
    if isinstance(e, Add):
        return add([partial(t, leaf, param, order).scale(s) for s, t in e.terms], order)
    if isinstance(e, Mul):
        parts = []
        for i, f in enumerate(e.factors):
            df = partial(f, leaf, param, order)
            if not df:
                continue
            coef, others = hadamard_others(e.factors, i)
            left = single(order, Diag(others), coef=coef) if others is not None else \
                single(order, Ident(), coef=coef)
            parts.append(mul(left, df, order))
        return add(parts, order)
    raise TypeError(f"no rule for {e!r}")


def totals(spec: CellSpec, leaf: Leaf, param: str | None, order: FactorOrder,
           include_readout: bool = False) -> dict[str, Sum]:
    """Total derivatives of every node at time t (through the whole within-step graph)."""
    tot: dict[str, Sum] = {}

    def lf(r: Ref) -> Sum:
        if r.kind == "node" and r.lag == 0 and r.name in tot:
            return tot[r.name]
        return leaf(r)

    for name, node in spec.nodes.items():
        if node.role == "readout" and not include_readout:
            continue
        tot[name] = partial(node.expr, lf, param, order)
    return tot


# ----------------------------------------------------------------------------- forward (RTRL)


@dataclass(frozen=True)
class Forward:
    """Forward mode for one parameter A (seed 001 eq 26 and its twins).

    ``total[u]`` is d u_t / d A expanded, with opaque d v_{t-1}/dA symbols; ``blocks[u][v]`` its
    coefficient of d v_{t-1}/dA (equal to the state Jacobian block J_t[u][v], shared by all A);
    ``V[u]`` the direct term V_t^A. For the output h and a second state s:
    dh_t/dA = M_t dh_{t-1}/dA + N_t ds_{t-1}/dA + V_t^A with M_t = blocks[h][h], N_t = blocks[h][s].
    """

    param: str
    total: dict[str, Sum]
    blocks: dict[str, dict[str, Sum]]
    V: dict[str, Sum]
    readout: dict[str, Sum]


def derive_forward(spec: CellSpec, param: str, order: FactorOrder) -> Forward:
    def leaf(r: Ref) -> Sum:
        if r.kind == "node" and r.lag == 1:
            return single(order, Rec(r.name, param, 1))
        if r.kind == "param" and r.name == param:
            return single(order, Ident())
        return ZERO

    tot = totals(spec, leaf, param, order)
    total = {u: tot[u] for u in spec.states}
    blocks: dict[str, dict[str, Sum]] = {}
    V: dict[str, Sum] = {}
    for u in spec.states:
        rest = total[u]
        blocks[u] = {}
        for v in spec.states:
            hit, rest = rest.split_last(lambda f, v=v: isinstance(f, Rec) and f.state == v)
            blocks[u][v] = hit
        V[u] = rest
    readout: dict[str, Sum] = {}
    if spec.readout_nodes:
        def rleaf(r: Ref) -> Sum:
            if r.kind == "node" and r.lag == 0 and r.name in spec.states:
                return single(order, Rec(r.name, param, 0))
            return leaf(r)

        rt: dict[str, Sum] = {}

        def lf(r: Ref) -> Sum:
            if r.kind == "node" and r.lag == 0 and r.name in rt:
                return rt[r.name]
            return rleaf(r)

        for n in spec.readout_nodes:
            hat = n + "__hat"
            if hat in spec.nodes:
                rt[hat] = partial(spec.nodes[hat].expr, lf, param, order)
            rt[n] = partial(spec.nodes[n].expr, lf, param, order)
            readout[n] = rt[n]
    return Forward(param, total, blocks, V, readout)


def derive_jacobian(spec: CellSpec, order: FactorOrder) -> dict[str, dict[str, Sum]]:
    """One-step state Jacobian J_t[u][v] = d u_t / d v_{t-1} for all states u, v."""
    J: dict[str, dict[str, Sum]] = {u: {} for u in spec.states}
    for v in spec.states:
        def leaf(r: Ref, v=v) -> Sum:
            return single(order, Ident()) if (r.kind == "node" and r.lag == 1 and r.name == v) \
                else ZERO

        tot = totals(spec, leaf, None, order)
        for u in spec.states:
            J[u][v] = tot[u]
    return J


# ----------------------------------------------------------------------------- reverse (BPTT)


@dataclass(frozen=True)
class Reverse:
    """Reverse mode (BPTT, seed 002) for one time step t.

    ``assignments``: ordered (node, Sum) pairs; \\bar u_t is a sum of adjoint terms, each a
    product ending in an :class:`Adj` vector. The output state gets d l_t / d h_t, every
    state its carried adjoint delta u_t from step t+1. ``carries[v]``: delta v_{t-1}.
    ``grads[A]``: the step-t contribution to dL/dA (dL/dA = sum_t of it); a matrix
    parameter's ends in an :class:`Outer` factor (a v^T). ``inputs``: the adjoint of x_t (to
    stack layers). ``stacks``: the stacked form of seed 002, one per input vector v:
    Theta_v = [P_1; P_2; ...] (all matrices acting on v), \\bar a_v = [projection adjoints],
    dL/dTheta_v = sum_t \\bar a_v v^T.
    """

    assignments: list[tuple[str, Sum]]
    carries: dict[str, Sum]
    grads: dict[str, Sum]
    inputs: Sum
    stacks: list[tuple[Ref, list[tuple[str, Sum]]]]


def _local(spec: CellSpec, e: Expr, target: Ref | None, param: str | None,
           order: FactorOrder) -> Sum:
    """Local partial of an expression w.r.t. one direct reference (other nodes held fixed)."""

    def leaf(r: Ref) -> Sum:
        return single(order, Ident()) if (target is not None and r == target) or \
            (param is not None and r.kind == "param" and r.name == param) else ZERO

    return partial(e, leaf, param, order)


def _apply_T(local: Sum, adj: Adj, order: FactorOrder) -> Sum:
    """(local)^T adj: transpose the product, the d_2(v)^T factor becomes a trailing v^T."""
    items = []
    for t in local:
        fs = list(t.factors)
        outer: list[Factor] = []
        if isinstance(fs[-1], Diag2):
            outer = [Outer(fs[-1].v)]
            fs = fs[:-1]
        tf = tuple(transpose(f) for f in reversed(fs))
        items.append((t.coef, tf + (adj,) + tuple(outer)))
    return make_sum(items, order)


def derive_reverse(spec: CellSpec, order: FactorOrder) -> Reverse:
    nodes = [n for n, v in spec.nodes.items() if v.role != "readout"]
    out = spec.states[0]
    assignments: list[tuple[str, Sum]] = []
    for u in reversed(nodes):
        parts: list[Sum] = []
        if u == out:
            parts.append(single(order, Adj(u, "loss")))
        if u in spec.states:
            parts.append(single(order, Adj(u, "carry")))
        for w in nodes:
            loc = _local(spec, spec.nodes[w].expr, Ref(u, 0, "node"), None, order)
            if loc:
                parts.append(_apply_T(loc, Adj(w, "bar"), order))
        assignments.append((u, add(parts, order)))
    carries = {}
    for v in spec.states:
        parts = []
        for w in nodes:
            loc = _local(spec, spec.nodes[w].expr, Ref(v, 1, "node"), None, order)
            if loc:
                parts.append(_apply_T(loc, Adj(w, "bar"), order))
        carries[v] = add(parts, order)
    grads = {}
    for p in spec.cell_params:
        parts = []
        for w in nodes:
            loc = _local(spec, spec.nodes[w].expr, None, p, order)
            if loc:
                parts.append(_apply_T(loc, Adj(w, "bar"), order))
        grads[p] = add(parts, order)
    xin = add([_apply_T(_local(spec, spec.nodes[w].expr, Ref("x", 0, "input"), None, order),
                        Adj(w, "bar"), order) for w in nodes], order)
    # stacked projections: every matrix parameter acting on the same vector
    stacks: dict[Ref, list[tuple[str, Sum]]] = {}
    for p in spec.cell_params:
        if not spec.params[p].is_matrix:
            continue
        g = grads[p]
        vecs = {t.last.v for t in g if isinstance(t.last, Outer)}
        if len(vecs) != 1:
            continue  # a matrix used on several vectors is not stackable as one block
        v = vecs.pop()
        if not isinstance(v, Ref):
            continue
        proj = make_sum(((t.coef, t.factors[:-1]) for t in g), order)
        stacks.setdefault(v, []).append((p, proj))
    return Reverse(assignments, carries, grads, xin, list(stacks.items()))
