"""NumPy kernel printer: the derivation, printed as code through ``templates/numpy/``.

One :class:`KernelPlan` describes what to generate for a cell (SymForce style); the Jinja
template only lays out the module, and this printer prints every expression. Nothing here knows a
cell by name: the forward step is the spec's node expressions, the backward step is
``Derivation.reverse`` (one line per adjoint assignment), RTRL and the state Jacobian are
``Derivation.jacobian`` and ``forward[A].V``.

Structure the printer exploits (never materialising d(x) or d_2(x)):

* d(v) Y  ->  ``v * Y`` (vectors) or ``v[:, :, None] * Y`` (matrices);
* matrices that act on the same vector are stacked, Theta_v = [P_1; P_2; ...] (seed 002): one
  matmul per step for h_{t-1}, one matmul over all steps for x_t, and weight gradients
  dL/dTheta_v = sum_t \\bar a_{v,t} v_t^T as one matmul over all steps;
* P d_2(v) and d(u) d_2(v) become outer products written straight into the RTRL sensitivities.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from fractions import Fraction

from ..calculus.algebra import Adj, Diag, Diag2, Factor, Ident, Mat, Outer, Sum, Term
from ..calculus.derivation import Derivation, derive
from ..printing.latex import expanded, names_for, node_symbol
from ..spec import HAT, Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref, children, walk
from ..spec.activations import ACTIVATIONS
from .numpy_backend import environment  # noqa: F401  (the numba printer's templates)

RESERVED = {"np", "t", "xs", "params", "cache", "state", "state0", "dhs", "grads", "x_t",
            "steps", "batch", "n_hidden", "n_in", "dtype", "sens", "dstate", "values", "rows",
            "cols", "out"}
SIZE = {"hidden": "n_hidden", "input": "n_in", "output": "n_out"}


@dataclass(frozen=True)
class Code(Expr):
    """Already-printed NumPy code standing in for a subexpression (used by rewrites)."""

    text: str


def _ident(name: str) -> str:
    return name + "_" if name in RESERVED or keyword.iskeyword(name) else name


def join_signed(parts: list[tuple[int, str]]) -> str:
    """'a - b + c' from [(+1, 'a'), (-1, 'b'), (+1, 'c')]."""
    out = ""
    for i, (sign, txt) in enumerate(parts):
        out += (("-" if sign < 0 else "") + txt) if i == 0 else \
            ((" - " if sign < 0 else " + ") + txt)
    return out


def _from_output(fn: str) -> str:
    """act'(z) as a NumPy format of {y} = act(z): the kernels keep the outputs, not z."""
    text = ACTIVATIONS[fn].deriv_from_output
    if text is None:
        raise ValueError(f"activation {fn!r}: the kernels need its derivative from its output "
                         "(its record's deriv_from_output is None)")
    return text


def _num(c: Fraction) -> str:
    return repr(c.numerator / c.denominator) if c.denominator != 1 else f"{c.numerator}.0"


@dataclass
class Stack:
    """Matrices acting on one vector, stacked: Theta_v = [P_1; P_2; ...]."""

    vec: Ref
    params: list[str]
    name: str  # W_stack_x, W_stack_h ...
    adj: dict[str, Sum] = field(default_factory=dict)  # P -> projection adjoint \bar a_P
    buffer: str = ""  # dA_x ...
    # slot k of the stack -> (buffer, position) holding \bar a_{P_k} for all steps: a slot whose
    # adjoint equals the input stack's slot k is read from the input stack's buffer
    slots: dict[int, tuple[str, int]] = field(default_factory=dict)
    own: int = 0  # slots stored in this stack's own buffer


@dataclass
class _Stmt:
    """One statement of the backward step, with what the schedule needs to know about it."""

    lines: list[str]
    provides: set[str] = field(default_factory=set)  # adjoints it defines
    needs: set[str] = field(default_factory=set)  # adjoints it reads
    reads: set[str] = field(default_factory=set)  # forward node values at t it reads
    clobbers: str | None = None  # the gate whose cached value its slot write overwrites
    writes_slot: bool = False  # writes a projection-adjoint slot of the step
    reads_slots: bool = False  # reads every slot of the step (the carried matmul)


class KernelPlan:
    """Everything the NumPy template needs for one cell, printed as lines of code."""

    def __init__(self, d: Derivation):
        self.d = d
        self.spec = d.spec
        self.names = names_for(d)
        self.params = d.params
        self.states = list(d.states)
        self.var = {n: _ident(n) for n in self.spec.nodes}
        rev = d.reverse
        # --- stacks: matrices acting directly on x or on a previous state
        self.stacks: list[Stack] = []
        for v, plist in rev.stacks:
            if v.kind == "input" or (v.kind == "node" and v.lag == 1):
                tag = "x" if v.kind == "input" else v.name
                st = Stack(v, [p for p, _ in plist], f"W_stack_{tag}")
                st.adj = dict(plist)
                st.buffer = f"dA_{tag}"
                self.stacks.append(st)
        self.stacked = {p: st for st in self.stacks for p in st.params}
        # a stack slot whose projection adjoint equals the first stack's (the input's) slot k is
        # not stored twice: LSTM's h stack shares every slot with x, GRU's all but n's
        # the input stack comes first: its buffer is the one the others share and the one that
        # reuses the cache's A_x memory
        self.stacks.sort(key=lambda st: st.vec.kind != "input")
        first = self.stacks[0] if self.stacks else None
        for st in self.stacks:
            for k, p in enumerate(st.params):
                if first is not None and st is not first and k < len(first.params) and \
                        st.adj[p].key() == first.adj[first.params[k]].key():
                    st.slots[k] = (first.buffer, k)
                else:
                    st.slots[k] = (st.buffer, st.own)
                    st.own += 1
        # --- vectors the backward pass needs
        self.needed: list[Expr] = []
        sums = [s for _, s in rev.assignments] + list(rev.carries.values()) + \
            list(rev.grads.values()) + [rev.inputs]
        for s in sums:
            for t in s:
                for f in t.factors:
                    if isinstance(f, (Diag, Outer, Diag2)):
                        self._need(f.v)
        for u in self.states:
            for v in self.states:
                for t in d.jacobian[u][v]:
                    for f in t.factors:
                        if isinstance(f, (Diag, Diag2)):
                            self._need(f.v)
        for p in self.params:
            for u in self.states:
                for t in d.forward[p].raw.V[u]:
                    for f in t.factors:
                        if isinstance(f, (Diag, Diag2)):
                            self._need(f.v)
        self.temps: dict[Expr, str] = {}
        for e in self.needed:
            if isinstance(e, (Call, Add, Mul, MatVec)) and self._in_forward(e):
                self.temps[e] = self._temp_name(e)
        self.cached_nodes = [n for n in self.spec.nodes if self.spec.nodes[n].role
                             not in ("hat", "readout") and n not in self.states
                             and self._node_needed(n)]
        self._plan_projections()
        self._seq = False

    def _plan_projections(self) -> None:
        """Fold biases into the all-steps input projection and find gate slots whose x and h
        projections are plain summands of one pre-activation (added once, in place).

        A bias b that is a summand next to P_x x in a pre-activation joins slot P_x of
        A_x = X Theta_x^T + b_stack (one add over all steps instead of one per step); when the
        same pre-activation also holds P_h h_{t-1} of the same slot of Theta_h, the step adds
        A_x[t] into A_h once for all such slots (LSTM: all four gates at once)."""
        xs = self._x_stack()
        hs = next((st for st in self.stacks if st.vec == Ref(self.states[0], 1, "node")), None)
        uses: dict[Expr, int] = {}

        def count(e: Expr) -> None:
            if isinstance(e, MatVec):
                uses[e] = uses.get(e, 0) + 1
            for sub in children(e):
                count(sub)

        for node in self.spec.nodes.values():
            if node.role != "readout":
                count(node.expr)
        self.h_stack = hs
        self.fold: dict[int, list[str]] = {}
        self.aligned: list[int] = []
        self.rewrite: dict[str, Expr] = {}
        self.folded_in: dict[str, list[str]] = {}  # pre-activation -> biases inside A_x
        # gate -> slot of A_x that stores its value once its projection has been used: the input
        # projection of all steps becomes the gate cache (no second T x B x K n array)
        self.gate_slot: dict[str, int] = {}
        if xs is None:
            return
        for name, node in self.spec.nodes.items():
            if node.role != "hat" or not isinstance(node.expr, Add):
                continue
            terms = list(node.expr.terms)
            kx = next((xs.params.index(t.param) for sg, t in terms if sg > 0 and
                       isinstance(t, MatVec) and t.arg == xs.vec and t.param in xs.params
                       and uses.get(t) == 1), None)
            if kx is None:
                continue
            biases = [t for sg, t in terms if sg > 0 and isinstance(t, Ref) and t.kind == "param"
                      and self.spec.params[t.name].shape == ("hidden",)]
            self.fold.setdefault(kx, []).extend(b.name for b in biases)
            self.folded_in[name] = [b.name for b in biases]
            gate = name[: -len(HAT)]
            if self.spec.nodes[gate].role == "gate" and gate in self.cached_nodes:
                self.gate_slot[gate] = kx
            keep = [(sg, t) for sg, t in terms if not (sg > 0 and t in biases)]
            kh = None
            if hs is not None and kx < len(hs.params):
                pair = MatVec(hs.params[kx], hs.vec)
                if (1, pair) in keep and uses.get(pair) == 1:
                    kh = kx
            if kh is not None:
                self.aligned.append(kx)
                both = (MatVec(xs.params[kx], xs.vec), MatVec(hs.params[kx], hs.vec))
                keep = [(sg, t) for sg, t in keep if t not in both]
                sl = f"A_{hs.vec.name}[:, {kx} * n_hidden:{kx + 1} * n_hidden]"
                keep.insert(0, (1, Code(sl)))
            single = len(keep) == 1 and keep[0][0] > 0
            self.rewrite[name] = keep[0][1] if single else Add(tuple(keep))
        self.aligned.sort()

    # ------------------------------------------------------------------ analysis helpers
    def _need(self, e: Expr) -> None:
        if isinstance(e, DerivAt):
            if isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
                self._need(Ref(e.arg.name[: -len(HAT)]))
            else:
                self._need(Call(e.fn, e.arg))
            return
        if e not in self.needed:
            self.needed.append(e)
        if isinstance(e, (Add, Mul)) and not self._in_forward(e):
            for part in ([t for _, t in e.terms] if isinstance(e, Add) else e.factors):
                self._need(part)

    def _in_forward(self, e: Expr) -> bool:
        """Is e a subexpression of the forward step (so the forward can keep its value)?"""
        return any(e in walk(n.expr) for n in self.spec.nodes.values() if n.role != "readout")

    def _temp_name(self, e: Expr) -> str:
        if isinstance(e, Call) and isinstance(e.arg, Ref):
            return _ident(f"{e.fn}_{e.arg.name}" + ("_prev" if e.arg.lag else ""))
        return f"s{len(self.temps)}"

    def _node_needed(self, n: str) -> bool:
        """Does the backward pass read node n's value at t?"""
        target = Ref(n)
        return any(target in walk(e) for e in self.needed)

    # ------------------------------------------------------------------ expression printing
    def vec(self, e: Expr, ctx: str, lines: list[str] | None = None) -> str:
        """NumPy code of a vector expression, batch-leading (B, size).

        ``ctx`` is 'fwd' (inside the forward step: stacked projections are slices of
        A_x / A_<state>, needed subexpressions are assigned to temps) or 'bwd' (cached values).
        """
        if isinstance(e, Code):
            return e.text
        if ctx == "fwd" and e in self.temps and lines is not None:
            name = self.temps[e]
            if not any(line.startswith(f"{name} = ") for line in lines):
                if self._seq:
                    lines.append(f"{name} = C_{name}[t]")
                    self.emit_into(e, name, lines, inner=True)
                else:
                    lines.append(f"{name} = {self.vec(e, 'fwd-inner', lines)}")
            return name
        if ctx == "bwd" and e in self.temps:
            return self.temps[e]
        sub = "fwd" if ctx.startswith("fwd") else ctx
        if isinstance(e, Ref) and sub == "fwd" and e.kind == "node" and e.name.endswith(HAT):
            # pre-activations are never stored: inline them (after the projection rewrites)
            inner = self.rewrite.get(e.name, self.spec.nodes[e.name].expr)
            return self.vec(inner, sub, lines)
        if isinstance(e, Ref):
            if e.kind == "input":
                return "x_t"
            if e.kind == "param":
                return _ident(e.name)
            if e.lag == 1:
                return f"{e.name}_prev"
            return self.var[e.name]
        if isinstance(e, Const):
            return _num(e.value)
        if isinstance(e, Call):
            return ACTIVATIONS[e.fn].numpy_kernel.format(z=self.vec(e.arg, sub, lines))
        if isinstance(e, DerivAt):
            if isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
                y = self.var[e.arg.name[: -len(HAT)]]
            else:
                y = self.vec(Call(e.fn, e.arg), sub, lines)
            return "(" + _from_output(e.fn).format(y=y) + ")"
        if isinstance(e, MatVec):
            st = self.stacked.get(e.param)
            if sub == "fwd" and st is not None and e.arg == st.vec:
                k = st.params.index(e.param)
                src = "A_x[t]" if st.vec.kind == "input" else f"A_{st.vec.name}"
                return f"{src}[:, {k} * n_hidden:{k + 1} * n_hidden]"
            arg = self.vec(e.arg, sub, lines)
            return f"({arg}) @ {_ident(e.param)}.T"
        if isinstance(e, Add):
            return join_signed([(s, self._paren(t, self.vec(t, sub, lines))) for s, t in e.terms])
        if isinstance(e, Mul):
            parts = []
            for f in e.factors:
                txt = self.vec(f, sub, lines)
                parts.append(f"({txt})" if isinstance(f, Add) else txt)
            return " * ".join(parts)
        raise TypeError(e)

    def comment(self, lhs: str, s: Sum | Expr) -> str:
        rhs = expanded(s, self.names) if isinstance(s, Sum) else _latex_vec(s, self.names)
        return f"# {lhs} = {rhs}"

    # ------------------------------------------------------------------ forward step
    def forward_lines(self, seq: bool = True) -> list[str]:
        """One forward step: every node in topological order. Gates are computed from their
        pre-activation, which is never stored. With ``seq`` (the sequence loop of forward())
        every stored value is computed straight into its slot of the cache (``out=``)."""
        self._seq = seq
        lines: list[str] = []
        for st in self.stacks:
            if st.vec.kind == "node":
                lines.append(f"# A_{st.vec.name} = [{'; '.join(st.params)}] "
                             f"{node_symbol(self.names, st.vec.name, 1)}: one matmul")
                if seq:
                    lines.append(f"np.matmul({st.vec.name}_prev, {st.name}_T, out=A_{st.vec.name})")
                else:
                    lines.append(f"A_{st.vec.name} = {st.vec.name}_prev @ {st.name}.T")
        if self.aligned:
            hs = self.h_stack
            assert hs is not None
            lines.append("# pre-activations of the gates whose x and h projections share a slot")
            for a, b in _runs(self.aligned):
                sl = "" if (a, b) == (0, len(hs.params)) and \
                    len(self._x_stack().params) == len(hs.params) else \
                    f"[:, {a} * n_hidden:{b} * n_hidden]"
                lines.append(f"A_{hs.vec.name}{sl or '[...]'} += A_x[t]{sl}")
        for name, node in self.spec.nodes.items():
            if node.role in ("hat", "readout"):
                continue
            e = node.expr
            if isinstance(e, Call) and isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
                shown = Call(e.fn, self.spec.nodes[e.arg.name].expr)
            else:
                shown = e
            lines.append(f"# {node_symbol(self.names, name)} = {_latex_vec(shown, self.names)}")
            var = self.var[name]
            if seq and (name in self.states or name in self.cached_nodes):
                k = self.gate_slot.get(name)
                slot = f"S_{name}[t + 1]" if name in self.states else \
                    f"A_x[t, :, {k} * n_hidden:{k + 1} * n_hidden]" if k is not None else \
                    f"C_{var}[t]"
                lines.append(f"{var} = {slot}")
                self.emit_into(e, var, lines)
            else:
                lines.append(f"{var} = {self.vec(e, 'fwd-inner', lines)}")
        self._seq = False
        return lines

    def emit_into(self, e: Expr, out: str, lines: list[str], inner: bool = False) -> None:
        """Compute e into the existing array ``out`` with NumPy's out= (no extra copy)."""
        ctx = "fwd"
        if isinstance(e, Ref) and e.kind == "node" and e.name in self.rewrite:
            e = self.rewrite[e.name]
        if isinstance(e, Call):
            arg = self.vec(e.arg, ctx, lines)
            lines.append(ACTIVATIONS[e.fn].numpy_kernel_out.format(z=arg, out=out))
        elif isinstance(e, Mul):
            codes = [self._paren(f, self.vec(f, ctx, lines)) for f in e.factors]
            lines.append(f"np.multiply({' * '.join(codes[:-1])}, {codes[-1]}, out={out})")
        elif isinstance(e, Add) and e.terms[0][0] > 0:
            self.emit_into(e.terms[0][1], out, lines)
            for sg, t in e.terms[1:]:
                lines.append(f"{out} {'+' if sg > 0 else '-'}= {self.vec(t, ctx, lines)}")
        else:
            lines.append(f"{out}[...] = {self.vec(e, ctx, lines)}")

    def _paren(self, e: Expr, code: str) -> str:
        return f"({code})" if isinstance(e, Add) else code

    # ------------------------------------------------------------------ backward step
    def bwd_term(self, t: Term) -> str:
        """Apply a product of factors (right to left) to the adjoint vector that ends it."""
        fs = list(t.factors)
        last = fs.pop()
        assert isinstance(last, Adj)
        y = self.adj_var(last)
        scal: list[str] = []
        for f in reversed(fs):
            if isinstance(f, Diag):
                scal.append(self._wrap(self.vec(f.v, "bwd")))
            elif isinstance(f, Mat):
                y = " * ".join([*reversed(scal), y]) if scal else y
                scal = []
                y = f"({y}) @ {_ident(f.name)}" + ("" if f.transposed else ".T")
            elif isinstance(f, Ident):
                continue
            else:
                raise TypeError(f)
        body = " * ".join([*reversed(scal), y]) if scal else y
        return body

    def _wrap(self, code: str) -> str:
        return code if code.replace("_", "").replace(".", "").isalnum() or code.startswith("(") \
            else f"({code})"

    def adj_var(self, a: Adj) -> str:
        if a.kind == "loss":
            return "dhs[t]"
        if a.kind == "carry":
            return f"d_{a.name}_next"
        base = a.name[: -len(HAT)] + "_hat" if a.name.endswith(HAT) else a.name
        return f"d_{base}"

    def emit_sum_into(self, s: Sum, out: str, lines: list[str]) -> None:
        """out[...] = s with NumPy's out= for the first product and in-place adds after it."""
        t0 = s.terms[0]
        if t0.coef == 1 and not any(isinstance(f, Mat) for f in t0.factors):
            codes = [self._wrap(self.vec(f.v, "bwd")) for f in t0.factors[:-1]
                     if isinstance(f, Diag)] + [self.adj_var(t0.factors[-1])]
            if len(codes) >= 2:
                lines.append(f"np.multiply({' * '.join(codes[:-1])}, {codes[-1]}, out={out})")
            else:
                lines.append(f"{out}[...] = {codes[0]}")
            for t in s.terms[1:]:
                body = self.bwd_term(t)
                mag = "" if abs(t.coef) == 1 else _num(abs(t.coef)) + " * "
                lines.append(f"{out} {'-' if t.coef < 0 else '+'}= {mag}{body}")
        else:
            lines.append(f"{out}[...] = {self.bwd_sum(s)}")

    def bwd_sum(self, s: Sum) -> str:
        out = ""
        for i, t in enumerate(s):
            body = self.bwd_term(t)
            c = t.coef
            mag = "" if abs(c) == 1 else _num(abs(c)) + " * "
            if i == 0:
                out = ("-" if c < 0 else "") + mag + body
            else:
                out += (" - " if c < 0 else " + ") + mag + body
        return out or "0.0"

    def _reads(self, s: Sum) -> set[str]:
        """Names of the forward nodes whose values at t a sum of products reads."""
        out: set[str] = set()
        for t in s:
            for f in t.factors:
                if isinstance(f, (Diag, Diag2, Outer)):
                    for e in walk(f.v):
                        if isinstance(e, Ref) and e.kind == "node" and not e.lag:
                            out.add(e.name[: -len(HAT)] if e.name.endswith(HAT) else e.name)
        return out

    @staticmethod
    def _adjs(s: Sum) -> set[str]:
        return {f.name for t in s for f in t.factors if isinstance(f, Adj) and f.kind == "bar"}

    def backward_lines(self) -> list[str]:
        """One backward step. Statements are scheduled so that a projection adjoint is written
        into its slot of the x buffer (which, without keep_cache, is the cache's A_x and holds a
        gate's value at t) only after the step's last read of that gate; ``self.bwd_copies``
        lists the gates that still need a copy (peephole LSTM: f and o, whose adjoints feed
        terms that read them; none for lstm, gru, rnn, sigmoid_lstm)."""
        rev = self.d.reverse
        x_st = self._x_stack()
        slot_gate = {k: g for g, k in self.gate_slot.items()}
        # a pre-activation adjoint that *is* a stacked projection adjoint is computed straight
        # into its slot of the per-step buffer (no copy)
        into: dict[str, tuple[str, tuple[str, int]]] = {}
        done: set[tuple[str, int]] = set()
        for st in self.stacks:
            for k, p in enumerate(st.params):
                a = st.adj[p]
                if st.slots[k] in done:
                    continue
                if len(a) == 1 and a.terms[0].coef == 1 and len(a.terms[0].factors) == 1:
                    w = a.terms[0].factors[0]
                    if isinstance(w, Adj) and w.name not in into:
                        into[w.name] = (self.slot_ref(st, k), st.slots[k])
                        done.add(st.slots[k])

        def clobbers(slot: tuple[str, int] | None) -> str | None:
            if slot is None or x_st is None or slot[0] != x_st.buffer:
                return None
            return slot_gate.get(slot[1])

        stmts: list[_Stmt] = []
        for u, s in rev.assignments:
            lines = [self.comment(_latex_adj(self.names, u), s)]
            var = self.adj_var(Adj(u, "bar"))
            slot = None
            if u in into:
                ref, slot = into[u]
                lines.append(f"{var} = {ref}")
                self.emit_sum_into(s, var, lines)
            else:
                lines.append(f"{var} = {self.bwd_sum(s)}")
            stmts.append(_Stmt(lines, {u}, self._adjs(s), self._reads(s), clobbers(slot),
                               slot is not None))
        # the other projection adjoints of the stacked matrices, into the per-step buffers
        for st in self.stacks:
            for k, p in enumerate(st.params):
                if st.slots[k] in done:
                    continue
                done.add(st.slots[k])
                lines = [f"# \\bar{{a}}_{{{p}}} (projection adjoint; dL/d{p} = "
                         f"sum_t of it times {_latex_vec(st.vec, self.names)}^T)",
                         f"{self.slot_ref(st, k)} = {self.bwd_sum(st.adj[p])}"]
                stmts.append(_Stmt(lines, set(), self._adjs(st.adj[p]), self._reads(st.adj[p]),
                                   clobbers(st.slots[k]), True))
        # carried adjoints delta v_{t-1}: stacked part as one matmul, the rest term by term
        new_carry: list[str] = []
        for v, s in rev.carries.items():
            stack = next((st for st in self.stacks if st.vec == Ref(v, 1, "node")), None)
            rest = self._unstacked(s, stack)
            head = [self.comment(rf"\delta {node_symbol(self.names, v, 1)}", s)]
            if stack and rest:
                # the terms outside the matmul first (they may read a gate whose slot the
                # matmul needs written), then the matmul over the step's slots
                mine = f"delta {v}"
                stmts.append(_Stmt(head + [f"d_{v}_new = {self.bwd_sum(rest)}"], {mine},
                                   self._adjs(rest), self._reads(rest)))
                stmts.append(_Stmt([f"d_{v}_new += {self.carry_matmul(stack)}"], set(), {mine},
                                   reads_slots=True))
            elif stack:
                stmts.append(_Stmt(head + [f"d_{v}_new = {self.carry_matmul(stack)}"],
                                   reads_slots=True))
            else:
                stmts.append(_Stmt(head + [f"d_{v}_new = {self.bwd_sum(rest) if rest else '0.0'}"],
                                   set(), self._adjs(s), self._reads(s)))
            new_carry.append(v)
        # per-step accumulations of gradients that are not stacked projections
        for p in self.params:
            kind, code = self.grad_plan(p)
            if kind == "acc":
                lhs = rf"\partial L / \partial {p} \mathrel{{+}}="
                g = rev.grads[p]
                stmts.append(_Stmt([self.comment(lhs, g), f"g_{p} += {code}"], set(),
                                   self._adjs(g), self._reads(g)))
        x_rest = self._unstacked(rev.inputs, x_st)
        if x_rest:
            stmts.append(_Stmt([f"dxs_rest[t] = {self.bwd_sum(x_rest)}"], set(),
                               self._adjs(x_rest), self._reads(x_rest)))
        lines = []
        for st_ in self._schedule(stmts):
            lines.extend(st_.lines)
        for v in new_carry:
            lines.append(f"d_{v}_next = d_{v}_new")
        return lines

    def _schedule(self, stmts: list[_Stmt]) -> list[_Stmt]:
        """An order of the statements: each after the adjoints it needs, the carried matmul
        after every slot write, and a write over gate g's cached value after every other
        statement that reads g; otherwise the original order (the derivation's). Where no
        statement can go without clobbering a gate still to be read, that gate is copied at
        the top of the step (``self.bwd_copies``)."""
        self.bwd_copies: list[str] = []
        copied: set[str] = set()
        order: list[_Stmt] = []
        left = list(stmts)

        def ready(x: _Stmt, strict: bool) -> bool:
            if any(y is not x and (y.provides & x.needs or (x.reads_slots and y.writes_slot))
                   for y in left):
                return False
            if strict and x.clobbers is not None and x.clobbers not in copied:
                return not any(y is not x and x.clobbers in y.reads for y in left)
            return True

        while left:
            x = next((x for x in left if ready(x, True)), None)
            if x is None:
                x = next(x for x in left if ready(x, False))
                assert x.clobbers is not None
                copied.add(x.clobbers)
                self.bwd_copies.append(self.var[x.clobbers])
            order.append(x)
            left.remove(x)
        return order

    def slot_ref(self, st: Stack, k: int, t: str = "t") -> str:
        """The buffer slice holding slot k's projection adjoint at step t (t='' for all steps)."""
        buf, j = st.slots[k]
        return f"{buf}[{t or ':'}, :, {j} * n_hidden:{j + 1} * n_hidden]"

    def slot_runs(self, st: Stack) -> list[tuple[str, int, int, int]]:
        """Maximal runs (buffer, first buffer position, first slot, end slot) of consecutive slots
        stored consecutively in one buffer."""
        runs: list[tuple[str, int, int, int]] = []
        for k in range(len(st.params)):
            buf, j = st.slots[k]
            if runs and runs[-1][0] == buf and runs[-1][1] + (k - runs[-1][2]) == j \
                    and runs[-1][3] == k:
                runs[-1] = (buf, runs[-1][1], runs[-1][2], k + 1)
            else:
                runs.append((buf, j, k, k + 1))
        return runs

    def carry_matmul(self, st: Stack, t: str = "t") -> str:
        """sum_k P_k^T \\bar a_{P_k} at step t as one matmul per run of stored slots."""
        runs = self.slot_runs(st)
        if len(runs) == 1 and runs[0][1] == 0 and runs[0][2] == 0:
            return f"{runs[0][0]}[{t}] @ {st.name}"
        return " + ".join(
            f"{buf}[{t}, :, {j} * n_hidden:{j + k1 - k0} * n_hidden] @ "
            f"{st.name}[{k0} * n_hidden:{k1} * n_hidden]" for buf, j, k0, k1 in runs)

    def stack_grad_lines(self) -> list[str]:
        """dL/dTheta_v = sum_t \\bar a_{v,t} v_t^T, one matmul over all steps per run of slots."""
        lines = []
        for st in self.stacks:
            vec = "xs" if st.vec.kind == "input" else f"S_{st.vec.name}[:-1]"
            for i, (buf, j, k0, k1) in enumerate(self.slot_runs(st)):
                g = f"G_{st.name}_{i}"
                lines.append(f"{g} = {buf}[:, :, {j} * n_hidden:{j + k1 - k0} * n_hidden]"
                             f".reshape(steps * batch, -1).T @ {vec}.reshape(steps * batch, -1)")
                for k in range(k0, k1):
                    r = k - k0
                    lines.append(f'grads["{st.params[k]}"] = '
                                 f"{g}[{r} * n_hidden:{r + 1} * n_hidden]")
        return lines

    def bias_sum_lines(self) -> list[str]:
        """dL/db = sum_t \\bar a_t for the biases whose step adjoint is a stored projection
        adjoint: every column of the buffer summed once, as one contiguous reduction (summing
        each bias's strided slice separately was 8x slower at c3)."""
        return [f"colsum_{b} = {b}.reshape(steps * batch, -1).sum(axis=0)"
                for b in self.bias_buffers()]

    def bias_buffers(self) -> list[str]:
        """The projection-adjoint buffers whose column sums give bias gradients."""
        bufs: list[str] = []
        for p in self.params:
            slot = self._bias_slot(p)
            if slot is not None and slot[0] not in bufs:
                bufs.append(slot[0])
        return bufs

    def _x_stack(self) -> Stack | None:
        return next((st for st in self.stacks if st.vec.kind == "input"), None)

    def _unstacked(self, s: Sum, stack: Stack | None) -> Sum:
        """The terms of a carry / input adjoint not covered by the stack's one matmul; checks
        that the covered terms are exactly P^T \\bar a_P for every stacked P."""
        if stack is None:
            return s
        covered, rest = [], []
        for t in s:
            f0 = t.factors[0]
            if isinstance(f0, Mat) and f0.transposed and f0.name in stack.params:
                covered.append((f0.name, Term(t.coef, t.factors[1:])))
            else:
                rest.append(t)
        for p in stack.params:
            mine = [t for q, t in covered if q == p]
            want = stack.adj[p]
            got = Sum(tuple(mine), s.order)
            if got.key() != want.key():
                raise AssertionError(f"{self.spec.name}: stacked adjoint of {p} does not match")
        return Sum(tuple(rest), s.order)

    def _bias_slot(self, p: str) -> tuple[str, int] | None:
        """(buffer, position) of the stored projection adjoint equal to dL/dp's step term, for
        an unstacked parameter whose gradient is that adjoint summed (a bias); else None."""
        if p in self.stacked:
            return None
        g = self.d.reverse.grads[p]
        for st in self.stacks:
            for k, q in enumerate(st.params):
                if st.adj[q].key() == g.key():
                    return st.slots[k]
        return None

    def grad_plan(self, p: str) -> tuple[str, str]:
        """How dL/dP is assembled: 'stack' (rows of one matmul), 'sum' (a buffer slice summed
        over steps and batch) or 'acc' (accumulated per step)."""
        g = self.d.reverse.grads[p]
        if p in self.stacked:
            return "stack", ""
        # a bias whose step term equals a stacked projection adjoint: its rows of the buffer's
        # column sums over all steps and the batch (bias_sum_lines)
        slot = self._bias_slot(p)
        if slot is not None:
            buf, j = slot
            return "sum", f"colsum_{buf}[{j} * n_hidden:{j + 1} * n_hidden]"
        if all(not isinstance(t.last, Outer) for t in g):
            return "acc", f"({self.bwd_sum(g)}).sum(axis=0)"
        # an unstacked matrix: sum_t (\bar a) v^T
        terms = []
        for t in g:
            inner = Term(t.coef, t.factors[:-1])
            v = self.vec(t.last.v, "bwd")
            terms.append(f"({self.bwd_sum(Sum((inner,), g.order))}).T @ ({v})")
        return "acc", " + ".join(terms)

    # ------------------------------------------------------------------ Jacobian / RTRL
    def matrix_code(self, t: Term) -> tuple[str, str]:
        """A product of d(.) and W factors as ('diag', vector code) or ('dense', (B|1, n, n)).

        Runs of d(.) factors merge into one vector first (d(a) d(b) = d(a * b)), so a term
        costs one broadcast per matrix factor, never a materialised diag."""
        kind, code = "ident", ""
        pending: list[str] = []

        def flush() -> None:
            nonlocal kind, code
            if not pending:
                return
            u = " * ".join(reversed(pending))
            pending.clear()
            if kind == "ident":
                kind, code = "diag", u
            elif kind == "diag":
                code = f"{u} * {code}"
            else:
                code = f"({u})[..., None] * {code}"

        for f in reversed(t.factors):
            if isinstance(f, Ident):
                continue
            if isinstance(f, Diag):
                pending.append(self._wrap(self.vec(f.v, "bwd")))
            elif isinstance(f, Mat):
                flush()
                m = _ident(f.name) + (".T" if f.transposed else "")
                if kind == "ident":
                    kind, code = "dense", m
                elif kind == "diag":
                    kind, code = "dense", f"{m} * ({code})[..., None, :]"
                else:
                    code = f"{m} @ ({code})"
            else:
                raise TypeError(f)
        flush()
        if kind == "ident":
            kind, code = "diag", "1.0"
        c = t.coef
        if c != 1:
            code = f"{_num(c)} * ({code})"
        return kind, code

    def jacobian_lines(self) -> list[str]:
        """J[u][v] = d u_t / d v_{t-1} as a diagonal part (vector) plus a dense part."""
        lines: list[str] = []
        self.jac_parts: dict[tuple[str, str], tuple[bool, bool, bool]] = {}
        for u in self.states:
            for v in self.states:
                s = self.d.jacobian[u][v]
                lhs = rf"\partial {node_symbol(self.names, u)} / \partial " \
                      rf"{node_symbol(self.names, v, 1)}"
                lines.append(f"# {lhs} = {expanded(s, self.names)}")
                diag, dense = [], []
                for t in s:
                    kind, code = self.matrix_code(t)
                    (diag if kind == "diag" else dense).append(code)
                lines.append(f"Jd_{u}_{v} = {' + '.join(diag) if diag else 'None'}")
                lines.append(f"JM_{u}_{v} = {' + '.join(dense) if dense else 'None'}")
                self.jac_parts[(u, v)] = (bool(dense), diag == ["1.0"], bool(diag))
        return lines

    def rtrl_lines(self) -> list[str]:
        """S_u <- sum_v J[u][v] S_v + V_u^A for every parameter A at once (S stacks all A),
        accumulated in place into the preallocated ``out[u]``; the diagonal structure of V goes
        through the precomputed strided views ``V[u][A]``."""
        if not hasattr(self, "jac_parts"):
            self.jacobian_lines()
        lines: list[str] = [f'out_{u} = out["{u}"]' for u in self.states]
        lines.append("if dense is not None:")
        lines.append("    # small state: S <- J S with the whole state Jacobian, one matmul "
                     "(rt.use_dense_product)")
        lines.append("    np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], "
                     "out=dense[2])")
        lines.append("else:")
        for u in self.states:
            lines.append(f"    # S_{u} <- sum_v (d {u}_t / d v_(t-1)) S_v")
            first = True
            for v in self.states:
                dense, one, has_diag = self.jac_parts[(u, v)]
                if dense:
                    lines.append(f"    np.matmul(JM_{u}_{v}, S_{v}, out=out_{u})" if first
                                 else f"    out_{u} += JM_{u}_{v} @ S_{v}")
                    first = False
                if has_diag:
                    term = f"S_{v}" if one else f"Jd_{u}_{v}[..., None] * S_{v}"
                    if first:
                        lines.append(f"    np.multiply(Jd_{u}_{v}[..., None], S_{v}, "
                                     f"out=out_{u})" if not one else f"    out_{u}[...] = S_{v}")
                        first = False
                    else:
                        lines.append(f"    out_{u} += {term}")
            if first:
                lines.append(f"    out_{u}[...] = 0.0")
        lines.append("# S_u += V_u^A, through the strided views of the diagonal structure")
        self._vpre: dict[str, str] = {}
        for u in self.states:
            for p in self.params:
                V = self.d.forward[p].raw.V[u]
                if not V:
                    continue
                lines.append(f"# V_{u}^{p} = {expanded(V, self.names)}")
                for t in V:
                    lines.extend(self._v_term(u, p, t))
        return lines

    def rtrl_dense_max(self) -> int:
        """Largest total state size (states x n_hidden) at which RTRL multiplies S by the whole
        state Jacobian as one dense matrix instead of block by block.

        A cell with one state and a dense block: always (building J = JM + d(Jd) costs
        O(B n^2), the diagonal pass it saves O(B n P) with P >= n^2). Several states: the
        zero and diagonal blocks become dense FLOPs, worth it only while the step is memory
        passes over S rather than FLOPs; measured for the LSTM (float64, B=1): S = 32 (r16)
        dense 75 µs vs blocks 143 µs per product, S = 64 (r32) dense 981 µs vs blocks 804 µs.
        A cell whose Jacobian has no dense block never does (d(.) stays a broadcast)."""
        if not hasattr(self, "jac_parts"):
            self.jacobian_lines()
        if not any(dense for dense, _, _ in self.jac_parts.values()):
            return 0
        return 1 << 30 if len(self.states) == 1 else 32

    def _v_term(self, u: str, p: str, t: Term) -> list[str]:
        last = t.factors[-1]
        prefix = Term(t.coef, t.factors[:-1] or (Ident(),))
        kind, pre = self.matrix_code(prefix)
        out: list[str] = []
        # a prefix shared by several parameters (every parameter of one gate has the same one)
        # is computed once per step and broadcast to the batch shape there
        if pre not in self._vpre:
            name = f"u{len(self._vpre)}"
            self._vpre[pre] = name
            shape = "ones" if kind == "diag" else "ones[..., None]"
            out.append(f"{name} = ({pre}) * {shape}")
        pre = self._vpre[pre]
        return out + self._v_update(u, p, last, kind, pre)

    def _v_update(self, u: str, p: str, last: Factor, kind: str, pre: str) -> list[str]:
        sl = f"off['{p}']"
        tgt = f"out_{u}"
        if isinstance(last, Diag2):
            v = self._wrap(self.vec(last.v, "bwd"))
            if kind == "diag":
                return [f"V['{u}']['{p}'] += {pre}[..., None] * {v}[..., None, :]"]
            return [f"{tgt}[:, :, {sl}[0]:{sl}[1]] += ({pre}[..., None] * "
                    f"{v}[..., None, None, :]).reshape(batch, n_hidden, -1)"]
        vec = "1.0"
        if isinstance(last, Diag):  # an elementwise parameter: P d(v)
            vec = self._wrap(self.vec(last.v, "bwd"))
        elif not isinstance(last, Ident):
            raise TypeError(f"unexpected last factor {last!r} of V")
        if kind == "diag":
            return [f"V['{u}']['{p}'] += {pre}" + (f" * {vec}" if vec != "1.0" else "")]
        scale = f" * {vec}[..., None, :]" if vec != "1.0" else ""
        return [f"{tgt}[:, :, {sl}[0]:{sl}[1]] += {pre}{scale}"]

    # ------------------------------------------------------------------ template context
    def context(self, template: str) -> dict:
        spec = self.spec
        rev = self.d.reverse
        x_stack = self._x_stack()
        backward_lines = self.backward_lines()  # sets self.bwd_copies
        grads = []
        for p in self.params:
            kind, code = self.grad_plan(p)
            entry = {"name": p, "kind": kind, "code": code}
            if kind == "stack":
                st = self.stacked[p]
                entry["stack"] = st.name
                entry["row"] = st.params.index(p)
                entry["buffer"] = st.buffer
                entry["vec"] = ("xs" if st.vec.kind == "input" else f"S_{st.vec.name}[:-1]")
            grads.append(entry)
        return {
            "cell": spec.name,
            "title": spec.title,
            "template": template,
            "params": [(p, tuple(SIZE[s] for s in spec.params[p].shape)) for p in self.params],
            "unpack": [(p, _ident(p)) for p in self.params] +
                      [(st.name, st.name) for st in self.stacks],
            "vector_params": [p for p in self.params if not spec.params[p].is_matrix],
            "matrix_params": [p for p in self.params if spec.params[p].is_matrix
                              and p not in self.stacked],
            "states": self.states,
            "stacks": [{"name": st.name, "params": st.params, "buffer": st.buffer,
                        "vec": st.vec.name if st.vec.kind == "node" else "x",
                        "input": st.vec.kind == "input"} for st in self.stacks],
            "state_stacks": [(st.vec.name, len(st.params)) for st in self.stacks
                             if st.vec.kind == "node"],
            "buffers": sorted({(st.buffer, st.own) for st in self.stacks if st.own}),
            "stack_grad_lines": self.stack_grad_lines(),
            "bias_sum_lines": self.bias_sum_lines(),
            "x_stack": x_stack.name if x_stack else None,
            "x_buffer": x_stack.buffer if x_stack else None,
            "x_rest": bool(self._unstacked(rev.inputs, x_stack)),
            "forward_lines": self.forward_lines(seq=True),
            "step_lines": self.forward_lines(seq=False),
            "bias_zero": any(not self.fold.get(k) for k in range(len(x_stack.params)))
            if x_stack else False,
            "bias_stack": [" + ".join(f'params["{b}"]' for b in self.fold.get(k, [])) or "zero"
                           for k in range(len(x_stack.params))] if x_stack and self.fold else [],
            "cached_nodes": [self.var[n] for n in self.cached_nodes],
            "slot_nodes": [(self.var[n], k) for n, k in self.gate_slot.items()],
            "heap_nodes": [self.var[n] for n in self.cached_nodes if n not in self.gate_slot],
            "temps": list(self.temps.values()),
            "backward_lines": backward_lines,
            "bwd_copies": self.bwd_copies,
            "grads": grads,
            "jacobian_lines": self.jacobian_lines(),
            "rtrl_lines": self.rtrl_lines(),
            "rtrl_dense_max": self.rtrl_dense_max(),
            "equations": self.equations(),
        }

    def equations(self) -> list[str]:
        out = []
        for name, node in self.spec.nodes.items():
            if node.role in ("hat", "readout"):
                continue
            out.append(f"{name} = {node.source}")
        return out


def _runs(ks: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted integers as half-open ranges."""
    out: list[tuple[int, int]] = []
    for k in ks:
        if out and out[-1][1] == k:
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
    return out


def _latex_vec(e: Expr, names) -> str:
    from ..printing.latex import vec

    return vec(e, names)


def _latex_adj(names, u: str) -> str:
    from ..printing.latex import adjoint_symbol

    return adjoint_symbol(names, u)


# ----------------------------------------------------------------------------- rendering


def render_kernel(cell: str) -> str:
    """The text of ``generated/<cell>.py``."""
    template = "numpy/kernel.py.j2"
    plan = KernelPlan(derive(cell))
    return environment().get_template(template).render(**plan.context(template))


def kernel_files(cell: str) -> dict[str, str]:
    """Files of generated/ for one cell's NumPy kernel."""
    return {f"{cell}.py": render_kernel(cell)}


def package_files(cells: list[str]) -> dict[str, str]:
    """generated/__init__.py (listing the kernels) and generated/_runtime.py (the
    cell-independent checks and RTRL drivers every kernel module uses)."""
    env = environment()
    init, runtime = "numpy/package_init.py.j2", "numpy/runtime.py.j2"
    return {"__init__.py": env.get_template(init).render(cells=list(cells), template=init),
            "_runtime.py": env.get_template(runtime).render(template=runtime)}
