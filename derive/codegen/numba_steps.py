"""What the numba kernels hold and do per step: a :class:`~derive.codegen.lower.Program`
planned for fused loops (:func:`plan`), as one frozen :class:`Steps` value.

From the Program's statements (lowered without folding biases into A_x, so that every
pre-activation reads its own columns of the input and state projections):

* the forward step as items (:meth:`_Planner.forward_items`): the state stacks' products, then
  every value of the step; matrix products inside a value hoisted
  (:func:`~derive.codegen.numba_schedule.hoist`), values nothing needs dropped, then scheduled
  into loops and products twice: as the per-step path runs it and as the whole-sequence path
  runs it, with the recurrent products that can be made together with the input product
  merged into it (:meth:`_Planner.merged`);
* the backward step likewise (:meth:`_Planner.backward_items`): the adjoints, the projection
  adjoints into their slots, the gradient sums, the rest of dL/dx_t and of the carried
  adjoints; the carried adjoints' stacked products and the rank updates of matrices outside the
  stacks run after the step's loops;
* where every value lives (:class:`~derive.codegen.numba_printer.Place`): a state in its
  sequence S, a value backward reads in the cache C (or, a gate, in its own columns of A_x:
  :meth:`_Planner.gate_slots`), a value another loop or a product reads in a (B, n) array, every
  other value a scalar of its loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .ir import BatchOuter, BatchSum, Cols, Dot, Expr, Signed, Var
from .lower import SIZE, Program, Stack, size_code
from .numba_printer import Place, Unsupported
from .numba_schedule import (
    Assign,
    Loop,
    Phase,
    Product,
    Rank,
    Sizes,
    array_needs,
    elementwise,
    hoist,
    leaves,
    rebuild,
    schedule,
    subexprs,
)


@dataclass(frozen=True)
class Carry:
    """delta s_{t-1}: the stacked products into ``ident`` (the state's carried adjoint), then
    plus the rest ``rest`` the loops wrote (an array, or None: no rest), or the rest alone."""

    state: str
    ident: str
    products: tuple[Product, ...]
    rest: str | None
    eq: str


def cols_in(e: Expr) -> list[Cols]:
    """Every Cols leaf of ``e``, in reading order."""
    out: list[Cols] = []

    def walk(x: Expr) -> None:
        if isinstance(x, Cols):
            out.append(x)
        for sub in subexprs(x):
            walk(sub)

    walk(e)
    return out


@dataclass(frozen=True)
class Steps:
    """One cell's forward and backward steps as the numba kernels run them."""

    S: Mapping[str, str]  # state -> its sequence array (T + 1, B, n)
    C: Mapping[str, str]  # cached value -> its cache array (T, B, size)
    cached: Mapping[str, str]  # cached value -> its size
    xstack: Stack | None
    sstacks: tuple[Stack, ...]
    vec_params: frozenset[str]  # identifiers of the 1-D parameters
    keys: Mapping[str, str]  # parameter or stack identifier -> its key in _unpack's dict
    shapes: Mapping[str, tuple[str, ...]]  # parameter identifier -> shape in sizes
    carry: Mapping[str, str]  # state -> identifier of its carried adjoint (B, n)
    dxs_rest: str | None  # the part of dL/dx_t outside the input stack, (T, B, n_in)
    acc: Mapping[str, str]  # gradient accumulator -> its parameter
    sizes: Sizes
    fwd_items: tuple  # the forward step's live items (hoisted), in program order
    fwd_step: tuple[Phase, ...]  # as the per-step path runs it
    fwd_seq: tuple[Phase, ...]  # as the whole-sequence path runs it (merged stacks dropped)
    merged: tuple[Stack, ...]  # state stacks made with the input product (whole sequence)
    bwd: tuple[Phase, ...]
    carries: tuple[Carry, ...]
    ranks: tuple[Rank, ...]
    gates: Mapping[str, Place]  # cached value -> its columns of A_x
    fwd_places: Mapping[str, Place]
    bwd_places: Mapping[str, Place]
    rows_fwd: tuple[tuple[str, str], ...]  # (B, size) arrays of the forward: (array, size)
    rows_bwd: tuple[tuple[str, str], ...]

    def common_places(self, prog: Program) -> dict[str, Place]:
        """Where a step's values are read from the forward's results (RTRL reads them so)."""
        return _common_places(prog, self.S, self.C, self.vec_params)


def _common_places(prog: Program, S, C, vec_params) -> dict[str, Place]:
    places = {prog.prev_ident[s]: Place(S[s], "t") for s in prog.states}
    places |= {prog.state_ident[s]: Place(S[s], "t + 1") for s in prog.states}
    places["x_t"] = Place("xs", "t")
    places |= {p: Place(p, batched=False) for p in vec_params}
    places |= {v: Place(C[v], "t") for v in C}
    return places


class _Planner:
    """Builds :class:`Steps`; used once, by :func:`plan`."""

    def __init__(self, prog: Program):
        self.prog = prog
        nm = self.names = prog.names
        self.S = {s: nm.once(f"seq:{s}", f"S_{nm.cell(s)}") for s in prog.states}
        self.C = {v: nm.once(f"cache:{v}", f"C_{v}") for v, _ in prog.cached}
        self.cached_size = dict(prog.cached)
        self.xstack = next((st for st in prog.stacks if st.vec.kind == "input"), None)
        self.sstacks = [st for st in prog.stacks if st.vec.kind == "node"]
        for st in prog.stacks:
            if any(r != "hidden" for r in st.rows):
                raise Unsupported("a stacked matrix whose rows are not of the hidden size")
        self.shapes = {nm.cell(p): shape for p, shape in prog.param_shapes}
        self.vec_params = {nm.cell(p) for p, shape in prog.param_shapes if len(shape) == 1}
        self.keys = {nm.cell(p): p for p in prog.params} | {st.ident: st.key
                                                           for st in prog.stacks}
        self.buffers = dict(prog.buffers)
        self.carry_ident = {s: ident for s, ident, _, _ in prog.carries}
        self.dxs_rest = nm.once("dxs_rest", "dxs_rest") if prog.x_rest is not None else None
        self.sizes = self._sizes()
        self.states_at = {prog.state_ident[s]: s for s in prog.states}
        self.prevs = {prog.prev_ident[s]: s for s in prog.states}

    def build(self) -> Steps:
        fwd = self._live(hoist(self.forward_items(), self.names, self.sizes, self._held))
        merged = self.merged(fwd)
        fwd_step, fwd_seq = schedule(fwd), schedule(self._merge(fwd, merged))
        bwd_items, carries, ranks = self.backward_items()
        bwd = schedule(bwd_items)
        for ph in fwd_step + fwd_seq + bwd:
            for a in (ph.body if isinstance(ph, Loop) else ()):
                if not elementwise(a.expr):
                    raise Unsupported(f"a statement the loops cannot compute elementwise "
                                      f"({type(a.expr).__name__})")
        post = [p.vec for c in carries for p in c.products] + \
            [e for r in ranks for e in (r.a, r.v)]
        gates = self.gate_slots(fwd, bwd, post)
        fwd_places, rows_fwd = self._forward_places(fwd, fwd_step, fwd_seq, gates)
        bwd_places, rows_bwd = self._backward_places(bwd, array_needs(bwd, post), gates)
        kept = {*self.S.values(), *self.C.values(), *(p.array for p in gates.values()),
                *(a for a, _ in rows_fwd)}
        return Steps(
            S=self.S, C=self.C, cached=self.cached_size, xstack=self.xstack,
            sstacks=tuple(self.sstacks), vec_params=frozenset(self.vec_params), keys=self.keys,
            shapes=self.shapes, carry=self.carry_ident, dxs_rest=self.dxs_rest,
            acc={g.acc: g.param for g in self.prog.grads if g.kind == "acc"}, sizes=self.sizes,
            fwd_items=tuple(fwd), fwd_step=_with_stores(fwd_step, fwd_places, kept),
            fwd_seq=_with_stores(fwd_seq, fwd_places, kept), merged=tuple(merged),
            bwd=_with_stores(bwd, bwd_places, {a for a, _ in rows_bwd}),
            carries=tuple(carries), ranks=tuple(ranks), gates=gates, fwd_places=fwd_places,
            bwd_places=bwd_places, rows_fwd=tuple(rows_fwd), rows_bwd=tuple(rows_bwd))


    def _sizes(self) -> Sizes:
        """The sizes of the step's leaves: states, x_t, parameters, cached values, carried
        adjoints, the columns of every product and buffer, every matrix."""
        prog, nm = self.prog, self.names
        known = {prog.prev_ident[s]: "n_hidden" for s in prog.states}
        known |= {prog.state_ident[s]: "n_hidden" for s in prog.states}
        known |= {"x_t": "n_in", "dhs": "n_hidden"}
        known |= {nm.cell(p): shape[0] for p, shape in prog.param_shapes if len(shape) == 1}
        known |= dict(prog.cached)
        known |= {ident: "n_hidden" for _, ident, _, _ in prog.carries}
        cols: dict[tuple[str, str, str], str] = {}
        matrices = {nm.cell(p): shape for p, shape in prog.param_shapes if len(shape) == 2}
        for st in prog.stacks:
            for k, sl in enumerate(st.slots):
                lo, hi = st.row_range(k)
                cols[(st.product, lo, hi)] = SIZE[st.rows[k]]
                cols[(sl.buffer, sl.lo, sl.hi)] = SIZE[st.rows[k]]
            matrices[st.ident] = (size_code(Counter(st.rows)),
                                  "n_in" if st.vec.kind == "input" else "n_hidden")
        return Sizes(known, cols, matrices)

    def _held(self, ident: str) -> bool:
        """Is ``ident`` kept in an array whatever the schedule (a cached value, a state)?"""
        return ident in self.cached_size or ident in self.states_at or ident in self.prevs

    def forward_items(self) -> list:
        """The forward step: the state stacks' products, then every value of the step."""
        prog = self.prog
        products = {st.product: st for st in self.sstacks}
        items: list = []
        for s in prog.forward:
            if s.target in products and s.op == "=":
                st = products[s.target]
                items.append(Product(Place(st.product), Var(prog.prev_ident[st.vec.name]),
                                     st.ident, comment=s.comment))
            elif s.op == "=" and s.place is None:
                items.append(Assign(s.target, s.expr, self.sizes.bind(s.target, s.expr),
                                    comment=s.comment))
            else:
                raise Unsupported(f"a forward statement '{s.target} {s.op} ...'")
        return items

    def _live(self, items: list) -> list:
        """The forward items something needs: the states, the cached values, and what they
        read (a node nobody reads is not computed)."""
        need = set(self.states_at) | set(self.cached_size)
        keep: list = []
        for it in reversed(items):
            if it.writes() & need:
                keep.append(it)
                need |= it.reads()
        return keep[::-1]

    def merged(self, items: list) -> list[Stack]:
        """The state stacks whose product the whole-sequence forward makes together with the
        input's, as one product of [Theta_x Theta_v] with [x_t; v_{t-1}] written into A_x:
        those whose every slot's columns A_v[:, k] are read only as "+ A_v[:, k]" in a sum that
        also holds "+ A_x[t, :, k]" (the same columns of the input product) as often, which in
        turn is read only in such sums. The LSTM's h qualifies; the GRU's does not (its W_hn h is
        scaled by r). One product of width n_in + n instead of two: measured 16.7 vs 8.7 +
        12.6 us per row pair at the c2 LSTM (64 + 128)."""
        xs = self.xstack
        if xs is None:
            return []
        uses: list[tuple[Cols, Signed | None, int]] = []  # every Cols, its sum and its sign
        other: set[str] = set()  # arrays read other than as Cols (a product's vector)

        def walk(e: Expr, parent: Signed | None, sign: int) -> None:
            if isinstance(e, Cols):
                uses.append((e, parent, sign))
                return
            if isinstance(e, Var):
                other.add(e.ident)
            if isinstance(e, Signed):
                for s, t in e.terms:
                    walk(t, e, s)
                return
            for sub in subexprs(e):
                walk(sub, None, 0)

        for it in items:
            if isinstance(it, Assign):
                walk(it.expr, None, 0)
            else:
                walk(it.vec, None, 0)
                if isinstance(it.vec, Cols):
                    other.add(it.vec.array)
        out = []
        for st in self.sstacks:
            if len(st.params) != len(xs.params) or st.product in other or any(
                    st.row_range(k) != xs.row_range(k) for k in range(len(st.params))):
                continue
            ranges = {st.row_range(k) for k in range(len(st.params))}
            # in every sum, as many "+ A_v[:, k]" as "+ A_x[t, :, k]": "W_x x + W_h h + W_x x"
            # reads the merged columns twice and would count W_h h twice
            per_sum = Counter((id(parent), c.array, c.lo, c.hi) for c, parent, _ in uses
                              if c.array in (st.product, xs.product))
            ok = all(n == per_sum[(p, st.product if a == xs.product else xs.product, lo, hi)]
                     for (p, a, lo, hi), n in per_sum.items())
            for c, parent, sign in uses:
                if c.array not in (st.product, xs.product):
                    continue
                if (c.lo, c.hi) not in ranges or sign != 1 or parent is None:
                    ok = False
                    break
                twin = Cols(xs.product, c.lo, c.hi, "t") if c.array == st.product else \
                    Cols(st.product, c.lo, c.hi, None)
                if (1, twin) not in parent.terms:
                    ok = False
                    break
            if ok:
                out.append(st)
        return out

    def _merge(self, items: list, merged: list[Stack]) -> list:
        """The forward items with the merged stacks' products and their columns dropped (the
        input product then holds them)."""
        if not merged:
            return list(items)
        gone = {st.product for st in merged}

        def drop(e: Expr) -> Expr:
            e = rebuild(e, drop)
            if isinstance(e, Signed):
                return Signed(tuple((s, t) for s, t in e.terms
                                    if not (isinstance(t, Cols) and t.array in gone)))
            return e

        return [replace(it, expr=drop(it.expr)) if isinstance(it, Assign) else it
                for it in items if not (isinstance(it, Product) and it.out.array in gone)]

    def backward_items(self) -> tuple[list, list[Carry], list[Rank]]:
        """The backward step as items (adjoints, projection adjoints into their slots,
        gradient sums, dL/dx_t's rest, the carried adjoints' rest), the carried adjoints'
        stacked products and the rank updates of the matrices outside the stacks."""
        prog, nm = self.prog, self.names
        items: list = []
        home: dict[str, tuple[Place, str]] = {}
        for s in prog.backward:
            if s.place is not None and isinstance(s.place, Cols):
                pl = Place(s.place.array, s.place.time, s.place.lo, s.place.hi)
                dim = self.sizes.cols[(pl.array, pl.lo, pl.hi)]
                items.append(Assign(None, s.expr, dim, (pl,), comment=s.comment))
            elif s.op == "=" and isinstance(s.expr, Cols) and s.expr.array in self.buffers:
                c = s.expr
                home[s.target] = (Place(c.array, c.time, c.lo, c.hi), s.comment)
            elif s.op == "[...]=" and s.target in home:
                pl, comment = home.pop(s.target)
                items.append(Assign(s.target, s.expr, self.sizes.bind(s.target, s.expr),
                                    (pl,), comment=comment))
            elif s.op == "=" and s.place is None:
                items.append(Assign(s.target, s.expr, self.sizes.bind(s.target, s.expr),
                                    comment=s.comment))
            else:
                raise Unsupported(f"a backward statement '{s.target} {s.op} ...'")
        ranks: list[tuple[str, Expr, Expr]] = []
        for g in prog.grads:
            if g.kind != "acc":
                continue
            for sign, term in g.terms.terms:
                if isinstance(term, BatchSum) and term.axes == 1:
                    e = term.e if sign > 0 else Signed(((-1, term.e),))
                    items.append(Assign(None, e, self.sizes.of(e) or "n_hidden",
                                        (Place(g.acc, batched=False),), op="+="))
                elif isinstance(term, BatchOuter) and term.axes == 1 and term.v_batched:
                    a = term.a if sign > 0 else Signed(((-1, term.a),))
                    ranks.append((g.acc, a, term.v))
                else:
                    raise Unsupported(f"the gradient of {g.param!r} sums an outer product "
                                      "with a parameter vector")
        if prog.x_rest is not None:
            items.append(Assign(None, prog.x_rest, "n_in", (Place(self.dxs_rest, "t"),)))
        stacks = {st.ident for st in self.sstacks}
        carries: list[Carry] = []
        for s, ident, expr, eq in prog.carries:
            prods, rest = [], []
            for sign, term in (expr.terms if isinstance(expr, Signed) else
                               (((1, expr),) if expr is not None else ())):
                if sign > 0 and isinstance(term, Dot) and term.transposed and \
                        isinstance(term.vec, Cols) and term.matrix in stacks:
                    prods.append(Product(Place(ident), term.vec, term.matrix, True, term.rows,
                                         add=bool(prods)))
                else:
                    rest.append((sign, term))
            r = nm.once(f"rest:{s}", f"R_{nm.cell(s)}") if rest else None
            if rest:
                items.append(Assign(None, Signed(tuple(rest)), "n_hidden", (Place(r),),
                                    comment=eq))
            carries.append(Carry(s, ident, tuple(prods), r, eq))
        items = hoist(items, nm, self.sizes, self._held)
        out_ranks = [Rank(acc, self._vector(a, items), self._vector(v, items))
                     for acc, a, v in ranks]
        return self._live_bwd(items, carries, out_ranks), carries, out_ranks

    def _vector(self, e: Expr, items: list) -> Expr:
        """``e`` as a vector the step holds in an array (a value of the step, columns of a
        buffer), computed first by items of its own where it is a compound expression."""
        ident = self.names.fresh("v")
        *pre, last = hoist([Assign(ident, e, self.sizes.bind(ident, e))], self.names,
                           self.sizes, self._held)
        items += pre
        if isinstance(last.expr, Cols) or (isinstance(last.expr, Var) and
                                          last.expr.ident not in self.vec_params):
            return last.expr
        items.append(last)
        return Var(ident)

    def _live_bwd(self, items: list, carries: list[Carry], ranks: list[Rank]) -> list:
        """The backward items something needs: those that write an array (a slot, a gradient
        sum, a carried adjoint's rest) and what they, the carries and the rank updates
        read."""
        need = set().union(*[leaves(p.vec) for c in carries for p in c.products],
                           *[leaves(r.a) | leaves(r.v) for r in ranks])
        keep: list = []
        for it in reversed(items):
            if (isinstance(it, Assign) and it.stores) or it.writes() & need:
                keep.append(it)
                need |= it.reads()
        return keep[::-1]

    def gate_slots(self, fwd: list, bwd: tuple, post: list[Expr]) -> dict[str, Place]:
        """Cached values kept in their own columns of A_x (ident -> columns): a value whose
        statement is the only reader of its columns A_x[t, :, k] (the projection W_k x_t), where
        the backward's buffer of the input stack has A_x's layout, so that the backward reads
        the value there (in a loop no later than the one that writes the slot's adjoint over
        it, and nowhere after)."""
        xs = self.xstack
        if xs is None:
            return {}
        buf = xs.slots[0].buffer
        if any((sl.buffer, sl.lo, sl.hi) != (buf, *xs.row_range(k))
               for k, sl in enumerate(xs.slots)):
            return {}
        count: Counter = Counter()
        for it in fwd:
            for c in cols_in(it.expr if isinstance(it, Assign) else it.vec):
                if c.array == xs.product:
                    count[(c.lo, c.hi)] += 1
        writes: dict[tuple[str, str], int] = {}
        for i, ph in enumerate(bwd):
            for it in (ph.body if isinstance(ph, Loop) else ph):
                for pl in getattr(it, "stores", ()):
                    if pl.array == buf:
                        writes[(pl.lo, pl.hi)] = i
        after = set().union(*[leaves(e) for e in post])
        out: dict[str, Place] = {}
        for it in fwd:
            if not isinstance(it, Assign) or it.ident not in self.cached_size or \
                    self.cached_size[it.ident] != "n_hidden":
                continue
            mine = [c for c in cols_in(it.expr) if c.array == xs.product]
            if len(mine) != 1:
                continue
            lo, hi = mine[0].lo, mine[0].hi
            if count[(lo, hi)] != 1 or (lo, hi) not in writes or it.ident in after or \
                    any(p.lo == lo for p in out.values()):
                continue
            q = writes[(lo, hi)]
            if all(isinstance(ph, Loop) and i <= q for i, ph in enumerate(bwd)
                   if any(it.ident in x.reads() for x in (ph.body if isinstance(ph, Loop)
                                                         else ph))):
                out[it.ident] = Place(xs.product, "t", lo, hi)
        return out

    def _step_array(self, ident: str) -> str:
        """The (B, size) array that keeps ``ident`` between the phases of a step."""
        return self.names.once(f"row:{ident}", f"T_{ident}")

    def _forward_places(self, fwd: list, fwd_step: tuple, fwd_seq: tuple,
                        gates: dict[str, Place]) -> tuple[dict[str, Place], list]:
        """Where the forward's values live, and the (B, size) arrays it needs."""
        places = _common_places(self.prog, self.S, self.C, self.vec_params) | gates
        needs = array_needs(fwd_step) | array_needs(fwd_seq)
        rows = []
        for it in fwd:
            if isinstance(it, Product):
                places[it.out.array] = it.out
                if it.out.array not in {st.product for st in self.sstacks}:
                    rows.append((it.out.array, self.sizes.known[it.out.array]))
            elif it.ident in needs and it.ident not in places:
                arr = self._step_array(it.ident)
                places[it.ident] = Place(arr)
                rows.append((arr, it.dim))
        return places, rows

    def _backward_places(self, bwd: tuple, needs: set[str],
                         gates: dict[str, Place]) -> tuple[dict[str, Place], list]:
        """Where the backward's values live (an adjoint in its slot, a gate in its columns of
        the aliased A_x, ...), and the (B, size) arrays it needs."""
        buf = self.xstack.slots[0].buffer if self.xstack else None
        places = _common_places(self.prog, self.S, self.C, self.vec_params)
        places |= {v: Place(buf, "t", pl.lo, pl.hi) for v, pl in gates.items()}
        places |= {ident: Place(ident) for ident in self.carry_ident.values()}
        rows = []
        for ph in bwd:
            for it in (ph.body if isinstance(ph, Loop) else ph):
                if isinstance(it, Product):
                    places[it.out.array] = it.out
                    rows.append((it.out.array, self.sizes.known[it.out.array]))
                elif it.ident and it.stores and it.ident not in places:
                    places[it.ident] = it.stores[0]  # an adjoint kept in its slot
        for ph in bwd:
            for it in (ph.body if isinstance(ph, Loop) else ph):
                if isinstance(it, Assign) and it.ident in needs and \
                        it.ident not in places:
                    arr = self._step_array(it.ident)
                    places[it.ident] = Place(arr)
                    rows.append((arr, it.dim))
        return places, rows


def _with_stores(phases: tuple, places: Mapping[str, Place], arrays: set[str]) -> tuple:
    """The phases with every Assign also writing its value where it is kept, when that is one
    of ``arrays`` (a state, a cached value, a value another phase reads)."""
    out = []
    for ph in phases:
        if not isinstance(ph, Loop):
            out.append(ph)
            continue
        body = []
        for a in ph.body:
            pl = places.get(a.ident) if a.ident else None
            if pl is not None and pl.array in arrays and pl not in a.stores:
                a = replace(a, stores=a.stores + (pl,))
            body.append(a)
        out.append(Loop(ph.dim, tuple(body)))
    return tuple(out)


def plan(prog: Program) -> Steps:
    """The numba kernels' steps of a lowered cell (see the module docstring); raises
    :class:`~derive.codegen.numba_printer.Unsupported` for a construct the loops do not
    print."""
    return _Planner(prog).build()


__all__ = ["Carry", "Steps", "cols_in", "plan"]
