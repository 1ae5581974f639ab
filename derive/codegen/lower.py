"""Lowering: a :class:`~derive.calculus.derivation.Derivation` as the statements of a kernel.

Nothing here prints code or knows a cell by name. The result, :class:`Program`, is a frozen
value: the forward step (node values at t, in topological order), what the backward step reads
from the forward's cache, the backward step (the adjoint recursions of ``Derivation.reverse``,
one statement per adjoint), the weight gradients, and the parts of the one-step state Jacobian
and of RTRL's direct terms V_t^A. Printers and templates take it from there.

Structure used (never materialising d(x) or d_2(x)):

* matrices that act on x_t or on one previous state are stacked, Theta_v = [P_1; P_2; ...]
  (reverse-mode stacking): one product over all steps for x, one per step for a state; their
  projection adjoints \\bar a_P are stored per step in a buffer, so that dL/dTheta_v =
  sum_t \\bar a_{v,t} v_t^T is one matrix product over all steps and the carried adjoint
  sum_P P^T \\bar a_P one product per step (taken only where the derivation's terms are exactly
  these, which is checked, never assumed);
* an adjoint that is zero by structure (a node nothing downstream reads) is dropped, and every
  term it would have fed with it, before anything is printed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from ..calculus.algebra import Adj, Diag, Diag2, Ident, Mat, Outer, Sum, Term
from ..calculus.derivation import Derivation
from ..printing.latex import adjoint_symbol, expanded, names_for, node_symbol
from ..printing.latex import vec as latex_vec
from ..spec import HAT, INPUT, Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref, children, walk
from ..spec.activations import ACTIVATIONS
from .ir import (
    ActDeriv,
    ActValue,
    At,
    BatchOuter,
    BatchSum,
    Cols,
    Column,
    Dot,
    MatMul,
    Matrix,
    Row,
    Scaled,
    Signed,
    Stmt,
    Var,
    idents,
)
from .naming import Namer

SIZE = {"hidden": "n_hidden", "input": "n_in", "output": "n_out"}


def size_code(counts: Counter) -> str:
    """A sum of sizes, e.g. Counter(hidden=2, input=1) -> '2 * n_hidden + n_in', '0' if empty."""
    parts = []
    for dim in ("hidden", "input", "output"):
        k = counts.get(dim, 0)
        if k:
            parts.append(SIZE[dim] if k == 1 else f"{k} * {SIZE[dim]}")
    return " + ".join(parts) or "0"


@dataclass(frozen=True)
class Slot:
    """Where a stacked matrix's projection adjoint lives: columns lo:hi of ``buffer``."""

    buffer: str
    lo: str
    hi: str
    index: int  # position among the buffer's slots


@dataclass(frozen=True)
class Stack:
    """Theta_v = [P_1; ...; P_k]: the matrices acting on one vector v (x_t or a state at t-1)."""

    vec: Ref
    key: str  # the key of the stacked block in _unpack's dict
    ident: str
    params: tuple[str, ...]
    rows: tuple[str, ...]  # each parameter's row dimension
    slots: tuple[Slot, ...]
    product: str  # identifier of the forward product (A_x over all steps, A_<s> per step)

    def row_range(self, k: int) -> tuple[str, str]:
        return (size_code(Counter(self.rows[:k])), size_code(Counter(self.rows[:k + 1])))

    def runs(self) -> list[tuple[str, str, str, str, str, list[int]]]:
        """Maximal runs of consecutive slots stored consecutively in one buffer:
        (buffer, first column, end column, first row, end row, slot indices)."""
        runs: list[list] = []
        for k, sl in enumerate(self.slots):
            if runs and runs[-1][0] == sl.buffer and runs[-1][-1][-1] == k - 1 and \
                    runs[-1][2] == sl.lo:
                runs[-1][2] = sl.hi
                runs[-1][4] = self.row_range(k)[1]
                runs[-1][-1].append(k)
            else:
                lo, hi = self.row_range(k)
                runs.append([sl.buffer, sl.lo, sl.hi, lo, hi, [k]])
        return [tuple(r) for r in runs]  # type: ignore[misc]


@dataclass(frozen=True)
class Grad:
    """How dL/dA is assembled: 'stack' (rows of the stacked product over all steps), 'colsum'
    (columns of a buffer summed over steps and batch: a bias), 'acc' (accumulated per step
    from ``terms``) or 'zero'."""

    param: str
    kind: str
    stack: int = -1
    slot: int = -1
    acc: str = ""  # the accumulator's identifier ('acc')
    terms: Expr | None = None
    stored: Slot | None = None  # the buffer columns summed ('colsum')


@dataclass(frozen=True)
class ReadoutProgram:
    """The readout's statements, over all steps at once (arrays (T, B, size))."""

    params: tuple  # (name, shape in sizes)
    nodes: tuple  # (readout output name, identifier)
    dys: tuple  # (readout output name, identifier of dL/dy)
    forward: tuple  # Stmt: the readout's nodes from the output state
    backward: tuple  # Stmt: the readout's adjoints
    output: Expr | None  # dL/dh_t that the readout passes to the cell
    grads: tuple  # (param, Expr | None): dL/dA summed over steps and batch


@dataclass(frozen=True)
class Program:
    """Everything a kernel printer needs for one cell, as values and statements."""

    names: Namer
    params: tuple[str, ...]
    param_shapes: tuple[tuple[str, tuple[str, ...]], ...]
    states: tuple[str, ...]
    state_ident: dict
    prev_ident: dict
    stacks: tuple[Stack, ...]
    buffers: tuple[tuple[str, str], ...]  # (identifier, columns)
    forward: tuple[Stmt, ...]  # one step, values at t into locals
    cached: tuple[tuple[str, str], ...]  # (identifier, size) of the step values backward reads
    backward: tuple[Stmt, ...]  # one step
    backward_reads: tuple[str, ...]
    carries: tuple  # (state, next-adjoint ident, carry expr or None, its equation)
    grads: tuple[Grad, ...]
    x_rest: Expr | None  # the part of dL/dx_t not covered by the x stack's product
    x_stack: int  # index of the x stack or -1
    jacobian: tuple[tuple[str, str, tuple[tuple[str, Expr], ...], tuple[Expr, ...]], ...]
    rtrl_v: tuple[tuple[str, str, str, str, Expr, Expr | None, str], ...]
    bias_fold: tuple  # per slot of the x stack: the biases folded into its columns of A_x
    batch_free: frozenset  # states whose value at t reads neither x nor any state
    readout: ReadoutProgram | None
    # d u_t / d x_t for every state u: (u, ((kind, matrix), ...)) in the form of ``jacobian``'s
    # parts ('diag': a vector, 'dense': a (B|1, n, n_in) matrix expression); forward mode
    # through a stack of layers reads it (the tangent of x_t is the layer below's output's)
    input_jacobian: tuple = ()


class _Lowering:
    """Builds a :class:`Program`; used once, by :func:`lower`."""

    def __init__(self, d: Derivation, fold: bool = True, reserved: frozenset | None = None):
        self.d = d
        self.spec = spec = d.spec
        self.rev = d.reverse
        self.fold = fold
        cell_names = [*spec.params, *[n for n in spec.nodes if not n.endswith(HAT)]]
        self.names = names = Namer(cell_names, *(() if reserved is None else (reserved,)))
        self.params = tuple(spec.cell_params)
        self.states = tuple(spec.states)
        self.dims = {n: node.dim for n, node in spec.nodes.items()}
        self.local = {}  # node name (hats included) -> identifier of its value at t
        for n in spec.nodes:
            self.local[n] = names.cell(n) if not n.endswith(HAT) else \
                names.once(f"hat:{n}", names.cell(n[: -len(HAT)]) + "_hat")
        self.prev = {s: names.once(f"prev:{s}", f"{names.cell(s)}_prev") for s in self.states}
        self.x = "x_t"  # the template's name of x at t (naming.TEMPLATE_NAMES)
        self.param_ident = {p: names.cell(p) for p in spec.params}
        self.tex = names_for(d)  # the LaTeX names of the equations in comments
        self._stacks()
        self.temps: dict[Expr, str] = {}
        self.adj_override = None

    # ------------------------------------------------------------------ stacks
    def _stacks(self) -> None:
        stacks: list[tuple[Ref, list[tuple[str, Sum]]]] = []
        for v, plist in self.rev.stacks:
            if v.kind == "input" or (v.kind == "node" and v.lag == 1):
                stacks.append((v, plist))
        stacks.sort(key=lambda s: s[0].kind != "input")
        self.proj: dict[str, Sum] = {}
        self.rev_vec: dict[str, Ref] = {}
        self.stacked: dict[str, int] = {}
        self._stack_specs = []
        for i, (v, plist) in enumerate(stacks):
            tag = "x" if v.kind == "input" else v.name
            for p, s in plist:
                self.proj[p] = s
                self.stacked[p] = i
                self.rev_vec[p] = v
            self._stack_specs.append((v, tag, [p for p, _ in plist]))

    # ------------------------------------------------------------------ values at t
    def value(self, e: Expr, ctx: str) -> Expr:
        """The IR of a vector expression over the step's values. ``ctx`` 'fwd' reads the
        stacked products for matrices on x / previous states and inlines pre-activations that
        are not stored; 'val' reads only stored step values."""
        if e in self.temps:
            return Var(self.temps[e])
        if isinstance(e, Ref):
            if e.kind == "input":
                return Var(self.x)
            if e.kind == "param":
                return Var(self.param_ident[e.name])
            if e.lag:
                return Var(self.prev[e.name])
            if e.name.endswith(HAT) and e.name not in self.stored_hats:
                return self.hat_value(e.name, ctx)
            return Var(self.local[e.name])
        if isinstance(e, Const):
            return e
        if isinstance(e, Call):
            return ActValue(e.fn, self.value(e.arg, ctx))
        if isinstance(e, DerivAt):
            return self.deriv(e, ctx)
        if isinstance(e, MatVec):
            i = self.stacked.get(e.param)
            if ctx == "fwd" and i is not None and e.arg == self._stack_specs[i][0]:
                st = self.stack_objs[i]
                k = st.params.index(e.param)
                lo, hi = st.row_range(k)
                return Cols(st.product, lo, hi, "t" if st.vec.kind == "input" else None)
            return Dot(self.value(e.arg, ctx), self.param_ident[e.param], False)
        if isinstance(e, Add):
            return Signed(tuple((s, self.value(t, ctx)) for s, t in e.terms))
        if isinstance(e, Mul):
            return Mul(tuple(self.value(f, ctx) for f in e.factors))
        raise TypeError(f"cannot lower {e!r}")

    def node_equation(self, name: str) -> str:
        """The forward equation a node's statement implements, in LaTeX (a gate with its
        pre-activation written out); '' for a pre-activation (its gate shows it)."""
        if name.endswith(HAT):
            return ""
        e = self.spec.nodes[name].expr
        if isinstance(e, Call) and isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
            e = Call(e.fn, self.spec.nodes[e.arg.name].expr)
        return f"{node_symbol(self.tex, name)} = {latex_vec(e, self.tex)}"

    def adjoint_equation(self, u: str, s: Sum) -> str:
        """\bar u_t = (its sum of products), in LaTeX."""
        return f"{adjoint_symbol(self.tex, u)} = {expanded(s, self.tex)}" if s else ""

    def hat_value(self, name: str, ctx: str) -> Expr:
        """A pre-activation's value: its folded form in the forward (see plan_projections)."""
        if ctx == "fwd" and name in self.hat_rewrite:
            return self.hat_rewrite[name]
        return self.value(self.spec.nodes[name].expr, ctx)

    def plan_projections(self) -> None:
        """Fold biases into the all-steps input projection and add it into the per-step state
        projection once, where a pre-activation is a plain sum of them.

        A bias b that is a + summand of a pre-activation next to + P x_t joins slot P of
        A_x = X Theta_x^T + b_stack (one add over all steps instead of one per step); where the
        same pre-activation also holds + Q h_{t-1} in the same columns of the state stack, the
        step adds A_x[t] into A_h once for all such slots, and the pre-activation is read as
        columns of A_h (the LSTM: four gates, one add). Only matrix products used nowhere else
        are folded (their columns then hold a sum), and none that backward reads."""
        self.hat_rewrite: dict[str, Expr] = {}
        self.bias_fold: dict[int, list[str]] = {}
        self.aligned: list[tuple[str, str]] = []
        xs = next((st for st in self.stack_objs if st.vec.kind == "input"), None)
        if xs is None:
            return
        hs = next((st for st in self.stack_objs if st.vec.kind == "node"), None)
        uses: Counter = Counter()
        for node in self.spec.nodes.values():
            if node.role != "readout":
                for e in walk(node.expr):
                    if isinstance(e, MatVec):
                        uses[e] += 1
        for name, node in self.spec.nodes.items():
            if node.role != "hat" or not isinstance(node.expr, Add):
                continue
            terms = list(node.expr.terms)
            mx = next((t for sg, t in terms if sg > 0 and isinstance(t, MatVec) and
                       t.arg == xs.vec and t.param in xs.params and uses[t] == 1 and
                       t not in self.temps), None)
            if mx is None:
                continue
            kx = xs.params.index(mx.param)
            rows = xs.rows[kx]
            biases = [t for sg, t in terms if sg > 0 and isinstance(t, Ref) and
                      t.kind == "param" and self.spec.params[t.name].shape == (rows,)]
            keep = [(sg, t) for sg, t in terms if not (sg > 0 and (t is mx or t in biases))]
            if len(keep) + 1 + len(biases) != len(terms):
                continue  # the same term twice: keep it simple
            self.bias_fold.setdefault(kx, []).extend(b.name for b in biases)
            lo, hi = xs.row_range(kx)
            head: Expr = Cols(xs.product, lo, hi, "t")
            if hs is not None:
                mh = next((t for sg, t in keep if sg > 0 and isinstance(t, MatVec) and
                           t.arg == hs.vec and t.param in hs.params and uses[t] == 1 and
                           t not in self.temps and
                           hs.row_range(hs.params.index(t.param)) == (lo, hi)), None)
                if mh is not None:
                    keep = [(sg, t) for sg, t in keep if t is not mh]
                    self.aligned.append((lo, hi))
                    head = Cols(hs.product, lo, hi, None)
            self.hat_rewrite[name] = Signed(((1, head),) + tuple(
                (sg, self.value(t, "fwd")) for sg, t in keep)) if keep else head

    def deriv_source(self, e: DerivAt) -> tuple[Expr, bool]:
        """What act'(z) is computed from: the activation's output where the registry has the
        derivative in terms of it and the output is a value of the step, else z."""
        act = ACTIVATIONS[e.fn]
        if act.deriv_from_output is not None:
            if isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
                gate = e.arg.name[: -len(HAT)]
                node = self.spec.nodes.get(gate)
                if node is not None and node.expr == Call(e.fn, e.arg):
                    return Ref(gate), True
            call = Call(e.fn, e.arg)
            if self._in_forward(call):
                return call, True
        return e.arg, False

    def deriv(self, e: DerivAt, ctx: str) -> Expr:
        src, from_output = self.deriv_source(e)
        return ActDeriv(e.fn, self.value(src, ctx), from_output)

    def _in_forward(self, e: Expr) -> bool:
        return any(e in walk(n.expr) for n in self.spec.nodes.values() if n.role != "readout")

    # ------------------------------------------------------------------ what backward reads
    def needed_vectors(self) -> list[Expr]:
        """The vector expressions the backward step, the Jacobian and V read (in first-use
        order): every d(.), d_2(.) and outer-product vector of the derivation."""
        out: list[Expr] = []

        def need(v: Expr) -> None:
            if isinstance(v, DerivAt):
                src, _ = self.deriv_source(v)
                need(src)
                return
            if v not in out:
                out.append(v)

        sums = [s for _, s in self.rev.assignments] + list(self.rev.carries.values()) + \
            list(self.rev.grads.values()) + [self.rev.inputs]
        sums += [self.d.jacobian[u][v] for u in self.states for v in self.states]
        sums += [self.d.forward[p].raw.V[u] for p in self.params for u in self.states]
        for s in sums:
            for t in s:
                for f in t.factors:
                    if isinstance(f, (Diag, Diag2, Outer)):
                        need(f.v)
        return out

    def plan_values(self) -> None:
        """Temps (subexpressions of the forward that backward reads whole) and stored
        pre-activations (read where the derivative cannot come from the gate's output)."""
        self.stored_hats: set[str] = set()
        needed = self.needed_vectors()
        for v in needed:
            for e in walk(v):
                if isinstance(e, Ref) and e.kind == "node" and not e.lag and \
                        e.name.endswith(HAT):
                    self.stored_hats.add(e.name)
        k = 0
        for v in needed:
            if isinstance(v, (Call, Add, Mul, MatVec)) and self._in_forward(v):
                base = f"{v.fn}_{v.arg.name}" if isinstance(v, Call) and \
                    isinstance(v.arg, Ref) else f"tmp{k}"
                k += 1
                self.temps[v] = self.names.fresh(base)

    # ------------------------------------------------------------------ forward step
    def forward_stmts(self) -> list[Stmt]:
        stmts: list[Stmt] = []
        done: set[Expr] = set()
        temps = dict(self.temps)

        def emit_temps(e: Expr) -> None:
            if isinstance(e, Ref) and e.kind == "node" and not e.lag and \
                    e.name.endswith(HAT) and e.name not in self.stored_hats:
                emit_temps(self.spec.nodes[e.name].expr)  # inlined: its temps come first
                return
            for sub in children(e):
                emit_temps(sub)
            if e in temps and e not in done:
                done.add(e)
                del self.temps[e]  # print the temp's own expression, not its name
                stmts.append(Stmt(temps[e], self.value(e, "fwd")))
                self.temps[e] = temps[e]

        for st in self.stack_objs:
            if st.vec.kind == "node":
                eq = (f"A_{{{st.vec.name}}} = [{'; '.join(st.params)}] "
                      f"{node_symbol(self.tex, st.vec.name, 1)}")
                stmts.append(Stmt(st.product, Dot(Var(self.prev[st.vec.name]), st.ident + "_T",
                                                  True), comment=eq))
                if st is next(x for x in self.stack_objs if x.vec.kind == "node"):
                    for lo, hi in _merge(sorted(self.aligned, key=_order)):
                        xs = next(x for x in self.stack_objs if x.vec.kind == "input")
                        whole = (lo, hi) == ("0", _width(st.rows)) == ("0", _width(xs.rows))
                        stmts.append(Stmt(f"{st.product}[...]" if whole else
                                          f"{st.product}[:, {lo}:{hi}]",
                                          At(xs.product, "t") if whole else
                                          Cols(xs.product, lo, hi, "t"), op="+=",
                                          comment="pre-activations whose x and state "
                                                  "projections share columns",
                                          place=Var(st.product) if whole else
                                          Cols(st.product, lo, hi)))
        for name, node in self.spec.nodes.items():
            if node.role == "readout":
                continue
            if name.endswith(HAT) and name not in self.stored_hats:
                continue
            emit_temps(node.expr)
            value = self.hat_value(name, "fwd") if name.endswith(HAT) else \
                self.value(node.expr, "fwd")
            stmts.append(Stmt(self.local[name], value, comment=self.node_equation(name)))
        return stmts

    # ------------------------------------------------------------------ backward step
    def zero_bars(self) -> set[str]:
        """Adjoints that are zero by structure, found by propagation to a fixed point."""
        zero: set[str] = set()
        changed = True
        while changed:
            changed = False
            for u, s in self.rev.assignments:
                if u not in zero and not self.prune(s, zero):
                    zero.add(u)
                    changed = True
        return zero

    @staticmethod
    def prune(s: Sum, zero: set[str]) -> Sum:
        keep = tuple(t for t in s if not any(isinstance(f, Adj) and f.kind == "bar" and
                                             f.name in zero for f in t.factors))
        return Sum(keep, s.order)

    def adj_var(self, a: Adj) -> Expr:
        if self.adj_override is not None:
            return self.adj_override(a)
        if a.kind == "loss":
            return At("dhs", "t")
        if a.kind == "carry":
            return Var(self.carry_ident[a.name])
        return Var(self.bar_ident[a.name])

    def term(self, t: Term) -> Expr:
        """A product of factors applied right to left to the adjoint vector that ends it."""
        fs = list(t.factors)
        last = fs.pop()
        assert isinstance(last, Adj)
        y = self.adj_var(last)
        for f in reversed(fs):
            if isinstance(f, Diag):
                y = Mul((self.value(f.v, "val"), y))
            elif isinstance(f, Mat):
                y = Dot(y, self.param_ident[f.name], f.transposed)
            elif isinstance(f, Ident):
                continue
            else:
                raise TypeError(f"unexpected factor {f!r} in an adjoint term")
        return Scaled(t.coef, y) if t.coef != 1 else y

    def sum_expr(self, s: Sum) -> Expr:
        items = []
        for t in s:
            e = self.term(Term(abs(t.coef), t.factors))
            items.append((1 if t.coef > 0 else -1, e))
        return Signed(tuple(items))

    def grad_step(self, s: Sum, axes: int = 1) -> Expr:
        """The step contribution to dL/dA: sum_b a_b v_b^T for the terms that end in an outer
        product v^T (a matrix parameter), the sum over the batch of the others."""
        outer, vector = [], []
        for t in s:
            sign = 1 if t.coef > 0 else -1
            if isinstance(t.last, Outer):
                inner = self.term(Term(abs(t.coef), t.factors[:-1]))
                v = self.value(t.last.v, "val")
                # every value of the step is stored per batch row; parameters are not
                batched = bool(idents(v) - set(self.param_ident.values()))
                outer.append((sign, BatchOuter(inner, v, axes, batched)))
            else:
                vector.append((sign, self.term(Term(abs(t.coef), t.factors))))
        if vector:
            outer.append((1, BatchSum(Signed(tuple(vector)), axes)))
        return Signed(tuple(outer))

    def build(self) -> Program:
        spec, names, rev = self.spec, self.names, self.rev
        zero = self.zero_bars()
        self.bar_ident = {u: names.once(f"bar:{u}", f"d_{self.local[u]}") for u, _ in
                          rev.assignments if u not in zero}
        self.carry_ident = {s: names.once(f"carry:{s}", f"d_{names.cell(s)}_next")
                            for s in self.states}
        # stacks, their slots and buffers (a slot equal to an earlier one is stored once)
        stack_objs: list[Stack] = []
        buffers: list[tuple[str, Counter]] = []
        stored: dict[frozenset, Slot] = {}
        for v, tag, plist in self._stack_specs:
            buf = names.once(f"buf:{tag}", f"dA_{tag if tag == 'x' else names.cell(tag)}")
            cols: Counter = Counter()
            slots = []
            for p in plist:
                s = self.prune(self.proj[p], zero)
                key = s.key()
                rows = spec.params[p].shape[0]
                if key in stored and s:
                    slots.append(stored[key])
                    continue
                lo = size_code(cols)
                cols[rows] += 1
                slot = Slot(buf, lo, size_code(cols), len(slots))
                slots.append(slot)
                if s:
                    stored[key] = slot
            if sum(cols.values()):
                buffers.append((buf, cols))
            product = names.once(f"A:{tag}", "A_x" if v.kind == "input" else
                                 f"A_{names.cell(tag)}")
            key = f"stack:{tag}"  # not an identifier: never a parameter's name
            ident = names.once(key, "W_stack_x" if v.kind == "input" else
                               f"W_stack_{names.cell(tag)}")
            stack_objs.append(Stack(v, key, ident, tuple(plist),
                                    tuple(spec.params[p].shape[0] for p in plist),
                                    tuple(slots), product))
        self.stack_objs = stack_objs
        self.plan_values()
        if self.fold:
            self.plan_projections()
        else:  # the numba printer adds biases in its fused loops and reads A_x as it is
            self.hat_rewrite, self.bias_fold, self.aligned = {}, {}, []
        forward = self.forward_stmts()
        # backward step
        bwd: list[Stmt] = []
        into: dict[str, Slot] = {}
        written: set[Slot] = set()
        for _, s, sl in self._slot_adjoints(zero, written):
            if len(s) == 1 and s.terms[0].coef == 1 and len(s.terms[0].factors) == 1:
                w = s.terms[0].factors[0]
                if isinstance(w, Adj) and w.kind == "bar" and w.name not in into:
                    into[w.name] = sl
                    written.add(sl)
        for u, s in rev.assignments:
            if u in zero:
                continue
            s = self.prune(s, zero)
            var = self.bar_ident[u]
            if u in into:
                sl = into[u]
                bwd.append(Stmt(var, Cols(sl.buffer, sl.lo, sl.hi, "t"),
                                comment=self.adjoint_equation(u, s)))
                bwd.append(Stmt(var, self.sum_expr(s), op="[...]="))
            else:
                bwd.append(Stmt(var, self.sum_expr(s), comment=self.adjoint_equation(u, s)))
        for p, s, sl in self._slot_adjoints(zero, written):
            written.add(sl)
            bwd.append(Stmt(f"{sl.buffer}[t, :, {sl.lo}:{sl.hi}]", self.sum_expr(s),
                            op="[...]=", place=Cols(sl.buffer, sl.lo, sl.hi, "t"),
                            comment=f"\\bar a_{{{p}}} = {expanded(s, self.tex)}: the projection "
                                    f"adjoint, dL/d{p} = sum_t of it times "
                                    f"{latex_vec(self.rev_vec[p], self.tex)}^T"))
        # carried adjoints: the stacked part as one product per run of stored slots
        carries = []
        for v in self.states:
            s = self.prune(rev.carries[v], zero)
            st = next((x for x in stack_objs if x.vec == Ref(v, 1, "node")), None)
            rest = self.unstacked(s, st, zero) if st is not None else None
            parts_: list[tuple[int, Expr]] = []
            if rest is not None:
                parts_ += [(1, Dot(Cols(b, c0, c1, "t"), st.ident, True, (r0, r1)))
                           for b, c0, c1, r0, r1, _ in st.runs()
                           if any(self.prune(self.proj[st.params[k]], zero)
                                  for k in _run_slots(st, b, c0, c1))]
                s = rest
            if s:
                parts_.append((1, self.sum_expr(s)))
            expr = Signed(tuple(parts_)) if parts_ else None
            eq = rev.carries[v]
            carries.append((v, self.carry_ident[v], expr,
                            f"\\delta {node_symbol(self.tex, v, 1)} = {expanded(eq, self.tex)}"
                            if eq else ""))
        # gradients
        grads: list[Grad] = []
        colsum: dict[frozenset, Slot] = {}
        for st in stack_objs:
            for k, p in enumerate(st.params):
                s = self.prune(self.proj[p], zero)
                if s:
                    colsum.setdefault(s.key(), st.slots[k])
        for p in self.params:
            g = self.prune(rev.grads[p], zero)
            if not g:
                grads.append(Grad(p, "zero"))
            elif p in self.stacked:
                i = self.stacked[p]
                grads.append(Grad(p, "stack", stack=i, slot=stack_objs[i].params.index(p)))
            elif g.key() in colsum and all(not isinstance(t.last, Outer) for t in g):
                sl = colsum[g.key()]
                grads.append(Grad(p, "colsum", stored=sl))
            else:
                acc = names.once(f"grad:{p}", f"g_{self.param_ident[p]}")
                grads.append(Grad(p, "acc", acc=acc,
                                  terms=self.grad_step(g)))
        x_idx = next((i for i, st in enumerate(stack_objs) if st.vec.kind == "input"), -1)
        xin = self.prune(rev.inputs, zero)
        if x_idx >= 0:
            rest = self.unstacked(xin, stack_objs[x_idx], zero)
            x_rest = None if rest is None else rest
            self.x_fused = rest is not None
        else:
            x_rest, self.x_fused = xin, False
        if not self.x_fused:
            x_rest = xin
        x_rest_expr = self.sum_expr(x_rest) if x_rest else None
        # the Jacobian and V
        jac = []
        for u in self.states:
            for v in self.states:
                diag, dense = [], []
                for t in self.d.jacobian[u][v]:
                    kind, e = self.matrix(t)
                    (diag if kind == "diag" else dense).append((kind, e))
                jac.append((u, v, tuple(("diag", e) for _, e in diag),
                            tuple(e for _, e in dense)))
        rtrl_v = []
        for u in self.states:
            for p in self.params:
                for t in self.d.forward[p].raw.V[u]:
                    last = t.factors[-1]
                    prefix = Term(t.coef, t.factors[:-1] or (Ident(),))
                    if not isinstance(last, (Diag2, Diag, Ident)):
                        # a vector parameter seen through a matrix (W (b + ...)): the whole
                        # term is the block of dA, applied to the identity
                        last, prefix = Ident(), t
                    kind, pre = self.matrix(prefix)
                    if isinstance(last, Diag2):
                        lastkind, vec = "d2", self.value(last.v, "val")
                    elif isinstance(last, Diag):
                        lastkind, vec = "d", self.value(last.v, "val")
                    elif isinstance(last, Ident):
                        lastkind, vec = "i", None
                    else:
                        raise TypeError(f"unexpected last factor {last!r} of V")
                    rtrl_v.append((u, p, kind, lastkind, pre, vec, repr((prefix.coef,
                                                                          prefix.factors))))
        cached: list[tuple[str, str]] = []
        reads: set[str] = set()
        for stmt in bwd:
            reads |= stmt.reads()
        for _, _, e, _ in carries:
            if e is not None:
                reads |= Stmt("_", e).reads()
        for g in grads:
            if g.terms is not None:
                reads |= Stmt("_", g.terms).reads()
        if x_rest_expr is not None:
            reads |= Stmt("_", x_rest_expr).reads()
        for name, node in spec.nodes.items():
            if node.role == "readout" or name in self.states:
                continue
            if self.local[name] in reads:
                cached.append((self.local[name], SIZE[node.dim]))
        for e, ident in self.temps.items():
            if ident in reads:
                cached.append((ident, SIZE[self._dim(e)]))
        return Program(
            names=names, params=self.params,
            param_shapes=tuple((p, tuple(SIZE[s] for s in spec.params[p].shape))
                               for p in self.params),
            states=self.states,
            state_ident={s: self.local[s] for s in self.states},
            prev_ident=dict(self.prev),
            stacks=tuple(stack_objs),
            buffers=tuple((b, size_code(c)) for b, c in buffers),
            forward=tuple(forward), cached=tuple(cached), backward=tuple(bwd),
            backward_reads=tuple(sorted(reads)), carries=tuple(carries), grads=tuple(grads),
            x_rest=x_rest_expr, x_stack=x_idx if self.x_fused else -1,
            jacobian=tuple(jac), rtrl_v=tuple(rtrl_v),
            bias_fold=tuple(tuple(self.bias_fold.get(k, ())) for k in
                            range(len(stack_objs[x_idx].params))) if x_idx >= 0 and
            self.bias_fold else (),
            batch_free=frozenset(s for s in self.states if not self._batched(s)),
            readout=self.readout(), input_jacobian=self.input_jacobian())

    def input_jacobian(self) -> tuple:
        """d u_t / d x_t for every state u, by the forward rules with x_t as the variable
        (the leaf D(x_t) = I, every other leaf 0), each term as :meth:`matrix` writes it."""
        from ..calculus.algebra import ZERO, single
        from ..calculus.rules import totals

        order = self.d.order

        def leaf(r: Ref) -> Sum:
            return single(order, Ident()) if r.kind == "input" else ZERO

        tot = totals(self.spec, leaf, None, order)
        return tuple((u, tuple(self.matrix(t) for t in tot[u])) for u in self.states)

    def readout(self) -> ReadoutProgram | None:
        """The readout y_t (nodes that read the output state at t and the readout's own
        parameters, never fed back), over all steps at once: its values, and the reverse mode
        through it (dL/dh_t it passes to the cell, dL/dA of its parameters)."""
        from ..printing.latex import readout_reverse

        ro = readout_reverse(self.d)
        if ro is None:
            return None
        spec, names = self.spec, self.names
        nodes = [n for n, v in spec.nodes.items() if v.role == "readout"]
        self.stored_hats |= {n for n in nodes if n.endswith(HAT)}
        temps, self.temps = self.temps, {}
        fwd = [Stmt(self.local[n], self.value(spec.nodes[n].expr, "val"),
                    comment=self.node_equation(n))
               for n in nodes]
        self.temps = temps
        zero: set[str] = set()
        changed = True
        while changed:
            changed = False
            for u, s in ro.assignments:
                if u not in zero and not self.prune(s, zero):
                    zero.add(u)
                    changed = True
        bar = {u: names.once(f"rbar:{u}", f"d_{self.local[u]}") for u, _ in ro.assignments
               if u not in zero}
        dy = {n: names.once(f"dy:{n}", f"dy_{names.cell(n)}") for n in spec.readout_nodes}

        def adj(a: Adj) -> Expr:
            if a.kind == "loss":
                return Var(dy[a.name])
            return Var(bar[a.name])

        self.adj_override = adj
        temps, self.temps = self.temps, {}  # the readout computes everything from h itself
        try:
            bwd = [Stmt(bar[u], self.sum_expr(self.prune(s, zero)),
                        comment=self.adjoint_equation(u, s))
                   for u, s in ro.assignments if u not in zero]
            out = self.prune(ro.output, zero)
            output = self.sum_expr(out) if out else None
            grads = []
            for p in spec.readout_params:
                g = self.prune(ro.grads[p], zero)
                grads.append((p, self.grad_step(g, axes=2) if g else None))
        finally:
            self.adj_override = None
            self.temps = temps
        return ReadoutProgram(
            params=tuple((p, tuple(SIZE[d] for d in spec.params[p].shape))
                         for p in spec.readout_params),
            nodes=tuple((n, self.local[n]) for n in spec.readout_nodes),
            dys=tuple((n, dy[n]) for n in spec.readout_nodes),
            forward=tuple(fwd), backward=tuple(bwd), output=output, grads=tuple(grads))

    def _batched(self, name: str) -> bool:
        """Does node ``name``'s value at t have a batch axis (it reads x or a state)?"""
        for e in walk(self.spec.nodes[name].expr):
            if isinstance(e, Ref) and (e.kind == "input" or e.lag or
                                       (e.kind == "node" and self._batched(e.name))):
                return True
        return False

    def _slot_adjoints(self, zero: set[str], written: set[Slot]):
        """(parameter, its projection adjoint, its slot) for every stored slot not yet written
        whose adjoint is not zero, in stack order."""
        for st in self.stack_objs:
            for k, p in enumerate(st.params):
                s = self.prune(self.proj[p], zero)
                if s and st.slots[k] not in written:
                    yield p, s, st.slots[k]

    def _dim(self, e: Expr) -> str:
        if isinstance(e, Ref):
            if e.kind == "input":
                return "input"
            if e.kind == "param":
                return self.spec.params[e.name].shape[0]
            return "hidden" if e.lag else self.dims[e.name]
        if isinstance(e, MatVec):
            return self.spec.params[e.param].shape[0]
        for sub in children(e):
            if not isinstance(sub, Const):
                return self._dim(sub)
        return "hidden"

    def unstacked(self, s: Sum, st: Stack, zero: set[str]) -> Sum | None:
        """The terms of s outside sum_P P^T \\bar a_P over the stack, when s holds exactly
        those terms for every stacked P (else None: no fused product)."""
        covered: dict[str, list] = {p: [] for p in st.params}
        rest = []
        for t in s:
            f0 = t.factors[0]
            if isinstance(f0, Mat) and f0.transposed and f0.name in covered:
                covered[f0.name].append((t.coef, t.factors[1:]))
            else:
                rest.append(t)
        for p in st.params:
            got = Sum(tuple(Term(c, f) for c, f in covered[p]), s.order)
            if got.key() != self.prune(self.proj[p], zero).key():
                return None
        return Sum(tuple(rest), s.order)

    def matrix(self, t: Term) -> tuple[str, Expr]:
        """A product of d(.) and W factors as ('diag', vector) or ('dense', (B|1, n, m))."""
        kind, code = "ident", None
        pending: list[Expr] = []

        def flush() -> None:
            nonlocal kind, code
            if not pending:
                return
            u = pending[0] if len(pending) == 1 else Mul(tuple(reversed(pending)))
            pending.clear()
            if kind == "ident":
                kind, code = "diag", u
            elif kind == "diag":
                code = Mul((u, code))
            else:
                code = Mul((Column(u), code))

        for f in reversed(t.factors):
            if isinstance(f, Ident):
                continue
            if isinstance(f, Diag):
                pending.append(self.value(f.v, "val"))
            elif isinstance(f, Mat):
                flush()
                m = Matrix(self.param_ident[f.name], f.transposed)
                if kind == "ident":
                    kind, code = "dense", m
                elif kind == "diag":
                    kind, code = "dense", Mul((m, Row(code)))
                else:
                    code = MatMul(m, code)
            else:
                raise TypeError(f)
        flush()
        if kind == "ident":
            kind, code = "diag", Const(Fraction(1))
        if t.coef != 1:
            code = Scaled(t.coef, code)
        return kind, code


def _width(rows) -> str:
    return size_code(Counter(rows))


def _order(r: tuple[str, str]) -> tuple:
    return (len(r[0]), r[0])


def _merge(ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Adjacent column ranges (a, b), (b, c) merged into (a, c)."""
    out: list[tuple[str, str]] = []
    for lo, hi in ranges:
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _run_slots(st: Stack, buf: str, c0: str, c1: str) -> list[int]:
    for b, a0, a1, _, _, ks in st.runs():
        if (b, a0, a1) == (buf, c0, c1):
            return ks
    return []


def lower(d: Derivation, *, fold: bool = True, reserved: frozenset | None = None) -> Program:
    """The statements of a cell's kernels (see the module docstring). ``fold`` False keeps the
    biases out of A_x and the input and state projections apart (each pre-activation reads its
    own columns of A_x and A_<state>: the numba printer fuses the adds into its loops);
    ``reserved`` is the printing template's vocabulary (default :data:`naming.TEMPLATE_NAMES`)."""
    return _Lowering(d, fold, reserved).build()


__all__ = ["Grad", "Program", "Slot", "Stack", "lower", "size_code", "INPUT"]


# ---------------------------------------------------------------------------------- forward mode
# One step of forward mode for one tangent direction (a Jacobian-vector product), read from the
# same Program: ds_u,t = sum_v J_t[u][v] ds_v,t-1 + sum_A V_t^{u,A}[dA] + (du_t/dx_t) dx_t
# (the RTRL recursion with every dA at once, contracted with the tangent instead of materialised).


def apply_matrix(kind: str, m: Expr, v: Expr) -> Expr:
    """The batch of vectors m v, for a matrix in the form :meth:`_Lowering.matrix` writes it
    ('diag': the vector of d(m); 'dense': Matrix, Column-, Row-scaled, MatMul, Scaled), without
    materialising m: d(u) v = u * v, P v = v P^T, (P d(u)) v = P (u * v), d(u) P v, ..."""
    if kind == "diag":
        if isinstance(m, Const) and m.value == 1:
            return v
        if isinstance(m, Scaled):
            return Scaled(m.coef, apply_matrix("diag", m.e, v))
        return Mul((m, v))
    if isinstance(m, Matrix):
        return Dot(v, m.ident, m.transposed)
    if isinstance(m, Scaled):
        return Scaled(m.coef, apply_matrix("dense", m.e, v))
    if isinstance(m, MatMul):
        return apply_matrix("dense", m.a, apply_matrix("dense", m.b, v))
    if isinstance(m, Mul) and len(m.factors) == 2:
        a, b = m.factors
        if isinstance(a, Column):  # d(u) B
            return Mul((a.v, apply_matrix("dense", b, v)))
        if isinstance(b, Row):  # A d(u)
            return apply_matrix("dense", a, Mul((b.v, v)))
    raise TypeError(f"not a matrix of the lowering: {m!r}")


@dataclass(frozen=True)
class TangentStep:
    """Forward mode's step: ``tangent[s]`` the identifier of ds_t for state s, ``prev[s]`` of
    ds_{t-1}, ``params[A]`` of dA, ``x`` of dx_t, and one statement per state (the tangents'
    sums; ``None`` where a state's tangent is identically zero)."""

    tangent: dict
    prev: dict
    params: dict
    x: str
    stmts: tuple


def lower_tangent(prog: Program) -> TangentStep:
    """The tangent step of ``prog`` (see :func:`apply_matrix`), over the forward's values at t.

    The terms: for every state block J_t[u][v] (diagonal and dense parts) applied to ds_v,t-1;
    for every parameter A the direct term V_t^{u,A} applied to dA (its last factor d_2(v): dA v;
    d(v): v * dA; I: dA); the input Jacobian applied to dx_t."""
    nm = prog.names
    tan = {s: nm.once(f"tan:{s}", f"t_{prog.state_ident[s]}") for s in prog.states}
    tprev = {s: nm.once(f"tanprev:{s}", f"t_{prog.prev_ident[s]}") for s in prog.states}
    tpar = {p: nm.once(f"tanparam:{p}", f"t_{nm.cell(p)}") for p in prog.params}
    tx = nm.once("tan:x", "dx_t")
    stmts = []
    for u in prog.states:
        terms: list[Expr] = []
        for bu, bv, diag, dense in prog.jacobian:
            if bu != u:
                continue
            terms += [apply_matrix("diag", e, Var(tprev[bv])) for _, e in diag]
            terms += [apply_matrix("dense", e, Var(tprev[bv])) for e in dense]
        for ru, p, kind, last, pre, vec, _ in prog.rtrl_v:
            if ru != u:
                continue
            dA = Var(tpar[p])
            w = Dot(vec, tpar[p]) if last == "d2" else Mul((vec, dA)) if last == "d" else dA
            terms.append(apply_matrix(kind, pre, w))
        for xu, parts_ in prog.input_jacobian:
            if xu == u:
                terms += [apply_matrix(kind, e, Var(tx)) for kind, e in parts_]
        stmts.append(Stmt(tan[u], Signed(tuple((1, t) for t in terms)),
                          comment=f"d{u}_t = sum_v J_t[{u}][v] d v_(t-1) + sum_A V_t^A[dA] "
                                  f"+ (d{u}_t/dx_t) dx_t") if terms else
                     Stmt(tan[u], Const(Fraction(0))))
    return TangentStep(tan, tprev, tpar, tx, tuple(stmts))
