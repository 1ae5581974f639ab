"""The numba backend: a lowered :class:`~derive.codegen.lower.Program` as fused numba loops,
printed into ``templates/numba/kernel.py.j2``.

NumPy spends one library call (and one pass over memory) per elementwise operation; at small
batch sizes the ~40 calls per time step are Python overhead, at large ones the passes are
memory traffic. This backend runs every elementwise part of a step as *one* compiled loop over
(batch row b, unit j). The pipeline, one job per module: :mod:`~derive.codegen.lower` (the
statements, lowered with ``fold=False``) -> :mod:`~derive.codegen.numba_steps` (which loops and
products a step is and where each value lives, scheduled by
:mod:`~derive.codegen.numba_schedule`) -> :mod:`~derive.codegen.numba_loops` and
:class:`~derive.codegen.numba_printer.NumbaPrinter` (each statement as scalar code of one
element) -> this module (the compiled functions and the Python around them), with RTRL in
:mod:`~derive.codegen.numba_rtrl`. A step runs on one of two paths, chosen by the size of the
matrices (``SEQUENCE_MAX_BYTES``):

- **whole sequence** (small matrices): batch rows never interact within a step, so each thread
  takes a chunk of the batch and runs every time step of it in one compiled, GIL-free call: per
  step and pair of rows the products by the printed kernels of
  templates/numba/_products.py.j2 (no BLAS: OpenBLAS repacks the weights on every call, and its
  idle worker keeps spinning for ~0.1 s beside our threads), then the fused loops; the backward
  also adds each step's rows into the chunk's own partial weight and bias gradients. Where
  every recurrent product "+ W_h h" stands beside "+ W_x x" in the same columns (the LSTMs, the
  RNN) the input and recurrent products are one product of width n_in + n
  (:meth:`~derive.codegen.numba_steps._Planner.merged`);
- **per step** (large matrices, where BLAS is faster): per step the products by NumPy's BLAS
  around the compiled loops, the input projection of all steps and the weight gradients as one
  matmul each. (Matrix products inside numba go through SciPy's separate BLAS, whose thread
  pool fights NumPy's: measured 6x slower at c2.)

Memory: a gate computed from its own columns of the input projection A_x (read nowhere else) is
written back into those columns (the forward cache keeps no second array of gates), and the
backward reads it there and overwrites it with the gate's projection adjoint (no fresh buffer:
:meth:`~derive.codegen.numba_steps._Planner.gate_slots`). ``rtrl`` runs two compiled loops
around one BLAS product per state with a dense Jacobian block; ``rtrl_step``,
``state_jacobian`` and the readout are the NumPy module's. A construct the loops cannot express
raises :class:`~derive.codegen.numba_printer.Unsupported` while printing, and the cell gets a
module that re-exports its NumPy kernel and says why (``FUSED`` False): never a silently wrong
number.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from ..calculus.derivation import derive
from ..spec import CellSpec
from .ir import Cols, Expr, Var
from .lower import Program, Stack, lower, size_code
from .naming import NUMBA_TEMPLATE_NAMES, module_name
from .numba_loops import LoopPrinter, Record, block, indent, quote, rows_of
from .numba_printer import Place, Unsupported
from .numba_rtrl import rtrl_context
from .numba_schedule import Loop, Product
from .numba_steps import Carry, Steps, plan
from .numpy_backend import environment

# The whole-sequence kernels run where all the matrices of the products together take at most
# this many bytes (SEQUENCE_MAX_BYTES in the printed module).
SEQUENCE_MAX_BYTES = 1 << 20
_JIT = '@njit(cache=True, error_model="numpy", fastmath={"contract"})'
_JIT_SEQ = '@njit(cache=True, error_model="numpy", fastmath={"contract"}, nogil=True)'


def _minus(a: str, b: str) -> str:
    return a if b == "0" else f"({a}) - ({b})"


class NumbaKernel:
    """The template context of one cell's numba module: its :class:`Program` and planned
    :class:`~derive.codegen.numba_steps.Steps`, printed (:meth:`context`)."""

    def __init__(self, prog: Program, spec: CellSpec, steps: Steps):
        self.prog, self.spec, self.steps = prog, spec, steps
        self.names = prog.names
        self.lp = LoopPrinter(prog.names, self._axes())

    def _axes(self) -> dict[str, dict[str, int]]:
        """Array -> {size symbol: axis}: where a compiled function reads its sizes from."""
        prog, st = self.prog, self.steps
        axes: dict[str, dict[str, int]] = {"xs": {"steps": 0, "batch": 1, "n_in": 2},
                                           "dhs": {"steps": 0, "batch": 1, "n_hidden": 2}}
        axes |= {a: {"batch": 1, "n_hidden": 2} for a in st.S.values()}
        axes |= {st.C[v]: {"steps": 0, "batch": 1, size: 2}
                 for v, size in st.cached.items()}
        axes |= {k.product: {"steps": 0, "batch": 1} if k.vec.kind == "input" else
                 {"batch": 0} for k in prog.stacks}
        axes |= {b: {"steps": 0, "batch": 1} for b, _ in prog.buffers}
        axes |= {a: {"batch": 0, dim: 1} for a, dim in st.rows_fwd + st.rows_bwd}
        axes |= {a: {"batch": 0, "n_hidden": 1} for a in st.carry.values()}
        axes |= {c.rest: {"batch": 0, "n_hidden": 1} for c in st.carries if c.rest}
        axes |= {p: {st.shapes[p][0]: 0} for p in st.vec_params}
        if st.dxs_rest:
            axes[st.dxs_rest] = {"steps": 0, "batch": 1, "n_in": 2}
        for g in prog.grads:
            if g.kind == "acc":
                axes[g.acc] = {d: k for k, d in enumerate(st.shapes[prog.names.cell(g.param)])}
        return axes

    def _ranged(self, rec: Record) -> bool:
        """Does a function index columns (then it reads n_hidden: every row size is it)?"""
        return any(pl.lo is not None for pl in rec.places)

    def step_fn(self, name: str, loop: Loop, places: dict[str, Place], fallback: str,
                what: str) -> dict:
        """A compiled per-step loop: ``name(t, ...)``, one pass over (b, j) at step t."""
        rec = self.lp.record()
        views, body = self.lp.loop(loop, places, rec)
        args = self.lp.args(rec, ["t"])
        syms = ["batch", loop.dim] + (["n_hidden"] if self._ranged(rec) else [])
        size = self.lp.size_line(args, syms, fallback)
        lines = [size, "for b in range(batch):"] + indent(views, 4) + \
            [f"    for j in range({loop.dim}):"] + indent(block(body), 8)
        doc = (f"{what}, fused: one pass over (batch, unit), the unit loop over row views of "
               "batch row b (vectorised).")
        return {"decorator": _JIT, "name": name, "args": args, "lines": lines, "doc": doc}

    def _vec_place(self, e: Expr, places: dict[str, Place]) -> Place:
        """Where a product's or rank update's vector lives."""
        if isinstance(e, Var):
            return places[e.ident]
        if isinstance(e, Cols):
            return Place(e.array, e.time, e.lo, e.hi)
        return Place(e.array, e.time)  # At

    def _matrix(self, p: Product, path: str) -> str:
        """The name of the prepared matrix a product multiplies by: for BLAS (``path``
        'blas') the right operand R of ``vec @ R``, for ``_nt2`` ('nt2') the row-major W of
        out[c] = sum_k W[c, k] vec[k]."""
        m, nm = p.matrix, self.names
        if path == "blas":
            if not p.transposed:
                return nm.once(f"blas:{m}", f"{m}_T")
            return f"{m}[{p.rows[0]}:{p.rows[1]}]" if p.rows else m
        if not p.transposed:
            return m
        return nm.once(f"nt2:{m}:{p.rows}", f"WT_{m}")

    def _prepare(self, products: list[Product], path: str) -> list[str]:
        """Python lines that make the matrices of ``products`` for ``path``, once each."""
        lines, seen = [], set()
        for p in products:
            name = self._matrix(p, path)
            if name in seen or name == p.matrix or "[" in name:
                continue
            seen.add(name)
            src = f"{p.matrix}[{p.rows[0]}:{p.rows[1]}]" if p.rows else p.matrix
            lines.append(f"{name} = np.ascontiguousarray({src}.T)")
        return lines

    def blas(self, p: Product, places: dict[str, Place]) -> str:
        """The product for every batch row at once, by NumPy's BLAS (the per-step path)."""
        vec = self._vec_place(p.vec, places)
        out = rows_of(p.out)
        if not vec.batched:  # a parameter vector: the same product for every row
            return f"{out}[...] {'+' if p.add else ''}= {rows_of(vec)} @ {self._matrix(p, 'blas')}"
        if p.add:
            return f"{out} += {rows_of(vec)} @ {self._matrix(p, 'blas')}"
        return f"np.matmul({rows_of(vec)}, {self._matrix(p, 'blas')}, out={out})"

    def nt2(self, p: Product, places: dict[str, Place], rec: Record) -> str:
        """The product for the row pair b0, b1 by the printed ``_nt2`` (whole sequence)."""
        vec = self._vec_place(p.vec, places)
        w = self._matrix(p, "nt2")
        rec.use(vec.array, w, p.out.array)
        return (f"_nt2({vec.row('b0')}, {vec.row('b1')}, {w}, {p.out.row('b0')}, "
                f"{p.out.row('b1')}, nil, b1 > b0, {p.add})")

    def _pair_phases(self, phases: tuple, places: dict[str, Place], rec: Record) -> list[str]:
        """The phases of one step for the row pair b0, b1 (inside ``for b0``)."""
        lines: list[str] = []
        for ph in phases:
            if isinstance(ph, Loop):
                views, body = self.lp.loop(ph, places, rec)
                lines += ["for b in range(b0, b1 + 1):"] + indent(views, 4) + \
                    [f"    for j in range({ph.dim}):"] + indent(block(body), 8)
            else:
                lines += [self.nt2(p, places, rec) for p in ph]
        return lines

    def forward_seq_fn(self) -> dict:
        """_forward_seq(lo, hi, ...): every step for batch rows lo..hi-1, per pair of rows the
        input product (with the merged recurrent ones), then the step's phases."""
        rec, xs = self.lp.record(), self.steps.xstack
        pair: list[str] = []
        pre: list[str] = []
        syms = ["steps"]
        if xs is not None and self.steps.merged:
            rec.use("xs", "W_cat", *[self.steps.S[st.vec.name] for st in self.steps.merged],
                    xs.product)
            pre.append("U = np.empty((2, W_cat.shape[1]), xs.dtype)  # rows [x_t; "
                       + "; ".join(f"{st.vec.name}_(t-1)" for st in self.steps.merged)
                       + "] of a pair")
            pair += ["for q in range(2):", "    U[q, :n_in] = xs[t, b0 + q * (b1 - b0)]"]
            pair += [f"    U[q, n_in + {k} * n_hidden:n_in + {k + 1} * n_hidden] = "
                     f"{self.steps.S[st.vec.name]}[t, b0 + q * (b1 - b0)]"
                     for k, st in enumerate(self.steps.merged)]
            cat = " ".join([xs.ident] + [st.ident for st in self.steps.merged])
            pair += [f"# {xs.product}[t, b] = [{cat}] U: the input and recurrent products at once",
                     f"_nt2(U[0], U[1], W_cat, {xs.product}[t, b0], {xs.product}[t, b1], nil, "
                     "b1 > b0, False)"]
            syms += ["n_in", "n_hidden"]
        elif xs is not None:
            rec.use("xs", xs.ident, xs.product)
            pair.append(f"_nt2(xs[t, b0], xs[t, b1], {xs.ident}, {xs.product}[t, b0], "
                        f"{xs.product}[t, b1], nil, b1 > b0, False)")
        pair += self._pair_phases(self.steps.fwd_seq, self.steps.fwd_places, rec)
        rec.use("nil")
        args = self.lp.args(rec, ["lo", "hi"])
        syms += [ph.dim for ph in self.steps.fwd_seq if isinstance(ph, Loop)]
        syms += ["n_hidden"] if self._ranged(rec) else []
        lines = [self.lp.size_line(args, syms, self.steps.S[self.prog.states[0]])] + pre + \
            ["for t in range(steps):", "    for b0 in range(lo, hi, 2):",
             "        b1 = min(b0 + 1, hi - 1)"] + indent(pair, 8)
        doc = ("Forward over all steps for batch rows lo..hi-1 (one thread's chunk): per step "
               "and pair of rows the products (_nt2) and the fused loops of _forward_step.")
        return {"decorator": _JIT_SEQ, "name": "_forward_seq", "args": args, "lines": lines,
                "doc": doc}

    def _vec_params_in(self, used: set[str]) -> list[str]:
        """The 1-D parameters among ``used``, in the order of PARAMS."""
        idents = [self.names.cell(p) for p in self.prog.params]
        return [p for p in idents if p in self.steps.vec_params and p in used]

    def _products(self, phases: tuple) -> list[Product]:
        """Every product of the phases, in order."""
        return [p for ph in phases if not isinstance(ph, Loop) for p in ph]

    def _matrices(self, products: list[Product], path: str, depth: int) -> list[str]:
        """Python lines binding the matrices of ``products`` (from P) and their prepared
        forms for ``path``."""
        lines, seen = [], set()
        for p in products:
            if p.matrix in seen:
                continue
            seen.add(p.matrix)
            src = f"P[{quote(self.steps.keys[p.matrix])}]"
            lines.append(f"{p.matrix} = np.ascontiguousarray({src})" if path == "nt2" else
                         f"{p.matrix} = {src}")
        lines += self._prepare(products, path)
        return indent(lines, depth)

    def forward_context(self) -> dict:
        """forward()'s compiled functions and its Python lines on both paths, the cache."""
        prog, xs = self.prog, self.steps.xstack
        loops = [p for p in self.steps.fwd_step if isinstance(p, Loop)]
        steps = [self.step_fn("_forward_step" + (f"_{k}" if k else ""), ph,
                              self.steps.fwd_places, self.steps.S[prog.states[0]],
                              f"Forward step t, loop {k + 1} of {len(loops)}")
                 for k, ph in enumerate(loops)]
        seq = self.forward_seq_fn()
        used = set(seq["args"]).union(*[f["args"] for f in steps])
        consts = [c for c in self.lp.consts.values.values() if c in used]
        lines = []
        for s in prog.states:
            lines += [f"{self.steps.S[s]} = np.empty((steps + 1, batch, n_hidden), dtype)",
                      f"{self.steps.S[s]}[0] = state[{quote(s)}]"]
        lines += [f"{self.steps.C[v]} = np.empty((steps, batch, {size}), dtype)"
                  for v, size in self.steps.cached.items() if v not in self.steps.gates]
        lines += [f"{p} = np.ascontiguousarray(P[{quote(self.steps.keys[p])}])"
                  for p in self._vec_params_in(used)]
        lines += [f"{a} = np.empty((batch, {dim}), dtype)" for a, dim in self.steps.rows_fwd]
        lines += [f"{c} = dtype.type({self.lp.consts.literal(c)})  # in the arrays' dtype"
                  for c in consts]
        lines.append("if _sequence(P):")
        seq_lines = ["xs = np.ascontiguousarray(xs)"]
        if xs is not None:
            xkey = f"P[{quote(xs.key)}]"
            if self.steps.merged:
                cat = ", ".join(f"P[{quote(st.key)}]" for st in [xs, *self.steps.merged])
                seq_lines.append(f"W_cat = np.concatenate(({cat}), axis=1)")
            else:
                seq_lines.append(f"{xs.ident} = np.ascontiguousarray({xkey})")
            seq_lines.append(f"{xs.product} = np.empty((steps, batch, {xkey}.shape[0]), dtype)")
        made = {p.out.array for p in self._products(self.steps.fwd_seq)}
        for st in self.steps.sstacks:
            if st.product in made:
                seq_lines.append(f"{st.product} = np.empty((batch, P[{quote(st.key)}].shape[0]), "
                                 "dtype)")
        lines += indent(seq_lines, 4)
        lines += self._matrices(self._products(self.steps.fwd_seq), "nt2", 4)
        lines += ["    nil = dtype.type(0.0)",
                  f"    args = ({', '.join(seq['args'][2:])},)",
                  "    rt.run_chunks(_forward_seq, rt.row_chunks(batch, rt.num_threads()), "
                  "lambda chunk: args)", "else:"]
        if xs is not None:
            lines += ["    # input projections of all steps in one matmul: A_x[t] = Theta_x x_t "
                      "(the biases are",
                      "    # added in the fused loops, which read A_x anyway: no extra pass)",
                      f"    {xs.product} = (xs.reshape(steps * batch, n_in) @ "
                      f"P[{quote(xs.key)}].T).reshape(steps, batch, -1)"]
        made = {p.out.array for p in self._products(self.steps.fwd_step)}
        lines += [f"    {st.product} = np.empty((batch, P[{quote(st.key)}].shape[0]), dtype)"
                  for st in self.steps.sstacks if st.product in made]
        lines += self._matrices(self._products(self.steps.fwd_step), "blas", 4)
        lines.append("    for t in range(steps):")
        k = 0
        for ph in self.steps.fwd_step:
            if isinstance(ph, Loop):
                f = steps[k]
                k += 1
                lines.append(f"        {f['name']}({', '.join(f['args'])})")
            else:
                for p in ph:
                    lines += [f"        # {p.comment}"] if p.comment else []
                    lines.append("        " + self.blas(p, self.steps.fwd_places))
        cache = [f"cache[{quote(self.steps.S[s])}] = {self.steps.S[s]}" for s in prog.states]
        for v in self.steps.cached:
            if v in self.steps.gates:
                pl = self.steps.gates[v]
                cache.append(f"cache[{quote(self.steps.C[v])}] = "
                             f"{pl.array}[:, :, {pl.lo}:{pl.hi}]  # kept in A_x's columns")
            else:
                cache.append(f"cache[{quote(self.steps.C[v])}] = {self.steps.C[v]}")
        if self.steps.gates:
            cache.append(f"cache[{quote(xs.product)}] = {xs.product}")
        return {"functions": steps + [seq], "lines": lines, "cache": cache}

    def _stack_runs(self) -> list[tuple[int, Stack, int, tuple, str]]:
        """(stack index, stack, run index, run, G name) of every run of stored projection
        adjoints whose weight gradient is needed: dL/dTheta_v = sum_t \\bar a_{v,t} v_t^T."""
        out = []
        for i, st in enumerate(self.prog.stacks):
            for r, run in enumerate(st.runs()):
                if any(g.kind == "stack" and g.stack == i and g.slot in run[-1]
                       for g in self.prog.grads):
                    out.append((i, st, r, run,
                                self.names.once(f"G:{i}:{r}", f"G_{st.ident}_{r}")))
        return out

    def _colsums(self) -> dict[str, str]:
        """Buffer -> the name of its column sums over steps and batch (the bias gradients)."""
        return {g.stored.buffer: self.names.once(f"colsum:{g.stored.buffer}",
                                                 f"colsum_{g.stored.buffer}")
                for g in self.prog.grads if g.kind == "colsum"}

    def _stack_vec(self, st: Stack) -> str:
        """The array whose step t is the vector a stack acts on: xs or a state's sequence."""
        return "xs" if st.vec.kind == "input" else self.steps.S[st.vec.name]

    def _rank_args(self, e: Expr) -> tuple[str, str]:
        """(the (B, k) array at step t, its first column) of a rank update's vector."""
        pl = self._vec_place(e, self.steps.bwd_places)
        if pl.lo is not None:
            return (f"{pl.array}[{pl.time}]" if pl.time else pl.array), pl.lo
        return rows_of(pl), "0"

    def _carry_pair(self, c: Carry, rec: Record) -> list[str]:
        """delta s_{t-1} for the row pair b0, b1: the stacked products, then the rest."""
        lines = [f"# {c.eq}"] if c.eq else []
        lines += [self.nt2(p, self.steps.bwd_places, rec) for p in c.products]
        rec.use(c.ident)
        if c.rest:
            rec.use(c.rest)
            op = "+=" if c.products else "="
            lines += ["for b in range(b0, b1 + 1):", f"    {c.ident}[b] {op} {c.rest}[b]"]
        elif not c.products:
            lines += ["for b in range(b0, b1 + 1):", f"    {c.ident}[b, :] = nil"]
        return lines

    def backward_seq_fn(self) -> dict:
        """_backward_seq(lo, hi, ...): every step, last first, for batch rows lo..hi-1."""
        rec = self.lp.record()
        pair = self._pair_phases(self.steps.bwd, self.steps.bwd_places, rec)
        pair.append("# carried adjoints delta v_(t-1): the stacked products, then the rest")
        for c in self.steps.carries:
            pair += self._carry_pair(c, rec)
        step = ["# weight gradients: sum_t (bar a_t) v_t^T, this step's rows"]
        for _, st, _, (buf, c0, _, _, _, _), g in self._stack_runs():
            vec = self._stack_vec(st)
            rec.use(buf, vec, g)
            step.append(f"_rank_update({buf}[t], {c0}, {vec}[t], lo, hi, {g})")
        for buf, name in self._colsums().items():
            rec.use(buf, name)
            step.append(f"_colsum({buf}[t], lo, hi, {name})")
        for r in self.steps.ranks:
            (a, c0), (v, _) = self._rank_args(r.a), self._rank_args(r.v)
            rec.use(*(self._vec_place(e, self.steps.bwd_places).array for e in (r.a, r.v)), r.acc)
            step.append(f"_rank_update({a}, {c0}, {v}, lo, hi, {r.acc})")
        rec.use("nil")
        args = self.lp.args(rec, ["lo", "hi"])
        syms = ["steps"] + [ph.dim for ph in self.steps.bwd if isinstance(ph, Loop)]
        syms += ["n_hidden"] if self._ranged(rec) or self._stack_runs() else []
        lines = [self.lp.size_line(args, syms, "dhs"),
                 "for t in range(steps - 1, -1, -1):", "    for b0 in range(lo, hi, 2):",
                 "        b1 = min(b0 + 1, hi - 1)"] + indent(pair, 8) + \
            indent(step, 4)
        doc = ("BPTT over all steps for batch rows lo..hi-1 (one thread's chunk): per step and "
               "pair of rows the fused loops of _backward_step, the products between them and "
               "the carried adjoints (_nt2); per step this chunk's share of the weight and bias "
               "gradients (_rank_update, _colsum, into the chunk's own partial sums).")
        return {"decorator": _JIT_SEQ, "name": "_backward_seq", "args": args, "lines": lines,
                "doc": doc}

    def _per_chunk(self) -> list[tuple[str, str, str]]:
        """(array, its per-chunk partial sums, their allocation) of every gradient sum the
        whole-sequence backward splits by chunk."""
        out = []
        for _, st, _, run, g in self._stack_runs():
            rows = size_code(Counter(st.rows[k] for k in run[-1]))
            width = "n_in" if st.vec.kind == "input" else "n_hidden"
            out.append((g, f"np.zeros((len(chunks), {rows}, {width}), dtype)"))
        for buf, name in self._colsums().items():
            out.append((name, f"np.zeros((len(chunks), {buf}.shape[2]), dtype)"))
        for acc, p in self.steps.acc.items():
            out.append((acc, f"np.zeros((len(chunks),) + params[{quote(p)}].shape, dtype)"))
        return [(a, self.names.once(f"part:{a}", f"{a}_part"), alloc) for a, alloc in out]

    def backward_context(self) -> dict:
        """backward()'s compiled functions and its Python lines on both paths, the gradients
        assembled."""
        prog, xs = self.prog, self.steps.xstack
        loops = [p for p in self.steps.bwd if isinstance(p, Loop)]
        steps = [self.step_fn("_backward_step" + (f"_{k}" if k else ""), ph,
                              self.steps.bwd_places, "dhs",
                              f"Backward step t, loop {k + 1} of {len(loops)}")
                 for k, ph in enumerate(loops)]
        seq = self.backward_seq_fn()
        parts = self._per_chunk()
        runs = self._stack_runs()
        colsums = self._colsums()
        used = set(seq["args"]).union(*[f["args"] for f in steps])
        used |= {self._stack_vec(st) for _, st, _, _, _ in runs}
        used |= {prog.stacks[prog.x_stack].ident} if prog.x_stack >= 0 else set()
        used |= {p.matrix for c in self.steps.carries for p in c.products}
        used |= {run[0] for _, _, _, run, _ in runs} | set(colsums)
        used |= {b for b, *_ in prog.stacks[prog.x_stack].runs()} if prog.x_stack >= 0 else set()
        consts = [c for c in self.lp.consts.values.values() if c in used]
        xbuf = xs.slots[0].buffer if xs is not None else None
        written = {(pl.array, pl.lo, pl.hi) for ph in self.steps.bwd if isinstance(ph, Loop)
                   for a in ph.body for pl in a.stores}
        lines = [f"{self.steps.S[s]} = cache[{quote(self.steps.S[s])}]" for s in prog.states
                 if self.steps.S[s] in used]
        lines += [f"{self.steps.C[v]} = cache[{quote(self.steps.C[v])}]" for v in self.steps.cached
                  if self.steps.C[v] in used]
        lines += [f"{ident} = carry[{quote(s)}].copy()  # ours: written in place"
                  for s, ident in self.steps.carry.items()]
        for buf, cols in prog.buffers:
            if buf not in used:
                continue
            slots = [sl for st in prog.stacks for sl in st.slots if sl.buffer == buf]
            unwritten = sorted({(sl.lo, sl.hi) for sl in slots
                                if (buf, sl.lo, sl.hi) not in written})
            if buf == xbuf and self.steps.gates:
                lines += ["# the gates kept in A_x's columns become their adjoints; a copy "
                          "when the cache is kept",
                          f"{buf} = cache[{quote(xs.product)}].copy() if keep_cache else "
                          f"cache[{quote(xs.product)}]"]
                lines += [f"{buf}[:, :, {lo}:{hi}] = 0.0  # no adjoint" for lo, hi in unwritten]
            else:
                alloc = "zeros" if unwritten else "empty"
                lines.append(f"{buf} = np.{alloc}((steps, batch, {cols}), dtype)")
        lines += [f"{c.rest} = np.empty((batch, n_hidden), dtype)" for c in self.steps.carries
                  if c.rest]
        lines += [f"{a} = np.empty((batch, {dim}), dtype)" for a, dim in self.steps.rows_bwd]
        if self.steps.dxs_rest:
            lines.append(f"{self.steps.dxs_rest} = np.empty((steps, batch, n_in), dtype)")
        lines += [f"{p} = np.ascontiguousarray(P[{quote(self.steps.keys[p])}])"
                  for p in self._vec_params_in(used)]
        lines += [f"{c} = dtype.type({self.lp.consts.literal(c)})  # in the arrays' dtype"
                  for c in consts]
        stacks_needed = sorted({st.ident for st in prog.stacks} & used)
        lines += [f"{m} = P[{quote(self.steps.keys[m])}]" for m in stacks_needed]
        # whole sequence
        lines += ["if _sequence(P):", "    xs = np.ascontiguousarray(xs)",
                  "    chunks = rt.row_chunks(batch, rt.num_threads())",
                  "    # each chunk sums its own share of every gradient; the shares are "
                  "added at the end"]
        lines += [f"    {part} = {alloc}" for _, part, alloc in parts]
        bwd_products = self._products(self.steps.bwd) + \
            [p for c in self.steps.carries for p in c.products]
        lines += self._matrices([p for p in bwd_products if p.matrix not in stacks_needed],
                                "nt2", 4)
        lines += indent(self._prepare([p for p in bwd_products
                                             if p.matrix in stacks_needed], "nt2"), 4)
        part_of = {a: part for a, part, _ in parts}
        call = [f"{part_of[a]}[chunk]" if a in part_of else a for a in seq["args"][2:]]
        lines += ["    nil = dtype.type(0.0)",
                  f"    rt.run_chunks(_backward_seq, chunks, lambda chunk: ({', '.join(call)},))"]
        lines += [f"    {a} = {part}.sum(axis=0)" for a, part, _ in parts]
        # per step
        lines.append("else:")
        lines += [f"    {acc} = np.zeros(params[{quote(p)}].shape, dtype)"
                  for acc, p in self.steps.acc.items()]
        lines += self._matrices([p for p in bwd_products if p.matrix not in stacks_needed],
                                "blas", 4)
        lines += indent(self._prepare([p for p in bwd_products
                                             if p.matrix in stacks_needed], "blas"), 4)
        lines.append("    for t in range(steps - 1, -1, -1):")
        k = 0
        for ph in self.steps.bwd:
            if isinstance(ph, Loop):
                lines.append(f"        {steps[k]['name']}({', '.join(steps[k]['args'])})")
                k += 1
            else:
                lines += ["        " + self.blas(p, self.steps.bwd_places) for p in ph]
        for c in self.steps.carries:
            lines += [f"        # {c.eq}"] if c.eq else []
            for p in c.products:
                vec = rows_of(self._vec_place(p.vec, self.steps.bwd_places))
                lines.append(f"        {c.ident} {'+=' if p.add else '='} {vec} @ "
                             f"{self._matrix(p, 'blas')}")
            if c.rest and c.products:
                lines.append(f"        {c.ident} += {c.rest}")
            elif c.rest:
                lines.append(f"        {c.ident}, {c.rest} = {c.rest}, {c.ident}  # no copy")
            elif not c.products:
                lines.append(f"        {c.ident} = np.zeros((batch, n_hidden), dtype)")
        for r in self.steps.ranks:
            a = rows_of(self._vec_place(r.a, self.steps.bwd_places))
            v = rows_of(self._vec_place(r.v, self.steps.bwd_places))
            lines.append(f"        {r.acc} += {a}.T @ {v}")
        lines.append("    # weight gradients: dL/dTheta_v = sum_t \\bar a_{v,t} v_t^T, one "
                     "matmul over all steps")
        for _, st, _, (buf, c0, c1, _, _, _), g in runs:
            vec = "xs" if st.vec.kind == "input" else f"{self.steps.S[st.vec.name]}[:-1]"
            lines.append(f"    {g} = {buf}[:, :, {c0}:{c1}].reshape(steps * batch, -1).T @ "
                         f"{vec}.reshape(steps * batch, -1)")
        for buf, name in colsums.items():
            lines.append(f"    {name} = {buf}.reshape(steps * batch, -1).sum(axis=0)")
        if self.steps.gates:
            lines.append('cache["consumed"] = not keep_cache')
        # the gradients
        lines.append("grads = {}")
        for _, st, _, (_, _, _, _, _, ks), g in runs:
            base = st.row_range(ks[0])[0]
            for k in ks:
                if any(gr.kind == "stack" and gr.param == st.params[k] for gr in prog.grads):
                    lo, hi = st.row_range(k)
                    lines.append(f"grads[{quote(st.params[k])}] = "
                                 f"{g}[{_minus(lo, base)}:{_minus(hi, base)}]")
        for gr in prog.grads:
            if gr.kind == "colsum":
                lines.append(f"grads[{quote(gr.param)}] = {colsums[gr.stored.buffer]}"
                             f"[{gr.stored.lo}:{gr.stored.hi}]")
            elif gr.kind == "acc":
                lines.append(f"grads[{quote(gr.param)}] = {gr.acc}")
            elif gr.kind == "zero":
                lines.append(f"grads[{quote(gr.param)}] = "
                             f"np.zeros(params[{quote(gr.param)}].shape, dtype)")
        xin = None
        if prog.x_stack >= 0:
            st = prog.stacks[prog.x_stack]
            xin = " + ".join([f"{b}[:, :, {c0}:{c1}] @ {st.ident}[{r0}:{r1}]"
                              for b, c0, c1, r0, r1, _ in st.runs()]
                             + ([self.steps.dxs_rest] if self.steps.dxs_rest else []))
        elif self.steps.dxs_rest:
            xin = self.steps.dxs_rest
        return {"functions": steps + [seq], "lines": lines,
                "states": [(s, ident) for s, ident in self.steps.carry.items()],
                "xin": xin or "np.zeros((steps, batch, n_in), dtype)"}

    def context(self, template: str, numpy_module: str) -> dict:
        """The template context of the module (rtrl: the NumPy kernel's where the RTRL loops
        do not print the cell's terms)."""
        prog, spec = self.prog, self.spec
        fwd, bwd = self.forward_context(), self.backward_context()
        try:
            rtrl = rtrl_context(self.prog, self.steps, self.lp)
        except Unsupported:
            rtrl = None  # the module re-exports the NumPy kernel's rtrl
        products = self._products(self.steps.fwd_seq) + self._products(self.steps.bwd)
        seq_keys = [st.key for st in prog.stacks]
        seq_keys += [self.steps.keys[m] for m in dict.fromkeys(p.matrix for p in products)
                     if self.steps.keys[m] not in seq_keys]
        return {
            "template": template, "cell": spec.name, "title": spec.title,
            "numpy_module": numpy_module, "readout": bool(spec.readout_nodes),
            "stacks": [(st.key, st.ident, list(st.params)) for st in prog.stacks],
            "seq_keys": seq_keys, "max_bytes": SEQUENCE_MAX_BYTES,
            "functions": fwd["functions"] + bwd["functions"] + (rtrl["functions"] if rtrl
                                                                else []),
            "forward_lines": fwd["lines"], "cache_lines": fwd["cache"],
            "output": self.steps.S[prog.states[0]],
            "state_arrays": [(s, self.steps.S[s]) for s in prog.states],
            "backward_lines": bwd["lines"], "carries": bwd["states"], "xin": bwd["xin"],
            "consumes": bool(self.steps.gates),
            "rtrl": rtrl,
        }


def fused(d) -> NumbaKernel:
    """The fused kernel of a derivation (raises :class:`Unsupported` for a construct the
    loops do not print)."""
    prog = lower(d, fold=False, reserved=NUMBA_TEMPLATE_NAMES)
    return NumbaKernel(prog, d.spec, plan(prog))


def fused_refusal(d) -> str | None:
    """Why the fused printer does not print this cell (None: it does). The module printed
    instead re-exports the NumPy kernel, so every cell has a numba module with the same API."""
    try:
        fused(d).context("numba/kernel.py.j2", "_")
    except Unsupported as exc:
        return str(exc)
    return None


def render_numba_runtime() -> str:
    """The text of a kernel package's ``_numba_runtime.py``: the compiled helpers every numba
    kernel of the package imports (templates/numba/runtime.py.j2)."""
    template = "numba/runtime.py.j2"
    return environment().get_template(template).render(template=template)


def numba_runtime_digest() -> str:
    """SHA-256 of :func:`render_numba_runtime`'s text (each numba kernel prints it)."""
    return hashlib.sha256(render_numba_runtime().encode()).hexdigest()


def render_numba_kernel(cell, numpy_module: str | None = None) -> str:
    """The text of a cell's numba module (``<module>_numba.py`` of a kernel package); it imports
    its NumPy sibling ``numpy_module`` of the same package relatively (default: the cell's
    module name, :func:`derive.codegen.naming.module_name`). A cell the fused printer does not
    print gets a module that re-exports the NumPy kernel, saying why."""
    d = derive(cell)
    numpy_module = numpy_module or module_name(d.spec.name)
    template = "numba/kernel.py.j2"
    try:
        ctx = fused(d).context(template, numpy_module)
        ctx["runtime_digest"] = numba_runtime_digest()
    except Unsupported as exc:
        template = "numba/fallback.py.j2"
        return environment().get_template(template).render(
            template=template, cell=d.spec.name, title=d.spec.title, why=str(exc),
            numpy_module=numpy_module, readout=bool(d.spec.readout_nodes))
    return environment().get_template(template).render(**ctx)


def kernel_files(cell) -> dict[str, str]:
    """The files of one cell's numba kernel in a kernel package: ``<module>_numba.py``."""
    return {f"{module_name(derive(cell).spec.name)}_numba.py": render_numba_kernel(cell)}


__all__ = ["NumbaKernel", "SEQUENCE_MAX_BYTES", "Unsupported", "fused", "fused_refusal",
           "kernel_files", "numba_runtime_digest", "render_numba_kernel", "render_numba_runtime"]
