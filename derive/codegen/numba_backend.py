"""numba backend printer: the same derivation as :mod:`derive.codegen`, printed as fused loops.

NumPy spends one library call (and one pass over memory) per elementwise operation; at small
batch sizes the ~40 calls per time step are pure Python overhead, at large ones the passes are
memory traffic. This backend prints every elementwise part of a step as *one* loop over
(batch, unit), compiled by numba, and runs it on one of two paths, chosen by the size of the
stacked matrices (SEQUENCE_MAX_BYTES):

- **whole sequence** (small matrices, :meth:`NumbaPlan.seq_parts`): batch rows never interact
  within a step, so each thread takes a chunk of the batch and runs every time step of it in
  one compiled, GIL-free call: per step and pair of rows the products by the printed kernels of
  templates/numba/_products.py.j2 (no BLAS: OpenBLAS repacks the weights on every call, and its
  idle worker keeps spinning for ~0.1 s beside our threads), then the fused loop; the backward
  also adds each step's rows into the chunk's own partial weight and bias gradients. The
  LSTM-like cells make the input and recurrent products as one (:meth:`merged_stacks`).
- **per step** (large matrices, where BLAS is faster): per step one BLAS recurrent projection
  (forward) or one carried-adjoint product (backward) and one compiled call, and, as in the
  NumPy backend, the input projection of all steps and the weight gradients as one matmul each.
  (Matrix products inside numba's own BLAS binding go through SciPy's separate BLAS, whose
  thread pool fights NumPy's: measured 6x slower at c2. numba's parallel loops are worse still:
  with OpenBLAS's threads spinning beside OpenMP's, the c2 LSTM forward went from 10 to 860 ms.)

The unit loop is written so that LLVM vectorises it (tests/test_kernels.py checks the compiled
code): activations print as their records' ``numba`` scalar forms (:mod:`derive.spec.activations`;
sigma and tanh are the branch-free functions of templates/numba/_activations.py.j2), in the
arrays' dtype; element accesses go through row views (:func:`row_views`); float literals become
names bound in the arrays' dtype (:func:`typed_literals`); a value the loop overwrites is read
through the same view; biases are added in the loop rather than folded into A_x.

It is an optional backend, chosen explicitly: ``import generated.lstm_numba`` has the API of
``generated.lstm`` (and reuses its rtrl_step, state_jacobian and input checks; rtrl runs as two
fused loops around BLAS products per step, see :meth:`NumbaPlan.rtrl_parts`). It
supports cells whose within-step graph multiplies matrices only with x_t or previous states
(all built-in cells); :class:`Unsupported` names the culprit otherwise.
"""

from __future__ import annotations

import re

from ..calculus.algebra import Adj, Diag, Diag2, Ident, Mat, Sum, Term
from ..calculus.derivation import derive
from ..printing.latex import expanded, node_symbol
from ..spec import HAT, Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref, walk
from ..spec.activations import ACTIVATIONS
from .naming import module_name
from .plan import KernelPlan, Stack, _ident, _latex_adj, _num, environment, join_signed


class Unsupported(ValueError):
    """The cell needs a construct the numba backend does not print."""


# Names the numba module and its loops bind (loop indices, row locals, typed literals, imports):
# a parameter of the same name (the sigmoid LSTM's bias b) is printed with a trailing "_".
_LOOP_NAMES = {"b", "j", "m", "l", "p", "u", "o", "s", "one", "zero", "two", "half", "math",
               "ir", "types", "njit", "intrinsic", "overload", "rt", "width", "OFF", "S", "lo",
               "hi", "b0", "b1", "nil", "steps", "chunks", "args", "i"}

# The whole-sequence kernels run where all stacked matrices together take at most this many
# bytes (SEQUENCE_MAX_BYTES in the printed module; see NumbaPlan.seq_parts).
SEQUENCE_MAX_BYTES = 1 << 20


def _pid(name: str) -> str:
    """The identifier of parameter ``name`` in the numba module."""
    ident = _ident(name)
    return ident + "_" if ident in _LOOP_NAMES else ident


# An element access of the fused loops: NAME[t, b, k * n_hidden + j], NAME[t + 1, b, j],
# NAME[b, k * n_hidden + j] or NAME[b, j] (groups: name, time index, slot).
_ELEMENT = re.compile(r"\b([A-Za-z_]\w*)\[(?:(t(?: \+ 1)?), )?b, (?:(\d+) \* n_hidden \+ )?j\]")


_LITERAL = re.compile(r"(?<![\w.])(?:\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)(?![\w.])")
_LITERAL_NAMES = {0.0: "zero", 1.0: "one", 2.0: "two", 0.5: "half"}


def typed_literals(lines: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Replace the float literals of loop code (outside comments) by names the kernel binds to
    the arrays' dtype: numba types a literal 1.0 as float64, and one such literal turns a float32
    loop into float64 arithmetic with a conversion per value (LLVM then vectorises at half the
    width, or not at all). Returns ([(name, literal)], lines)."""
    names: dict[str, str] = {}

    def name(m: re.Match) -> str:
        lit = m.group(0)
        if lit not in names:
            generic = sum(n not in _LITERAL_NAMES.values() for n in names.values())
            names[lit] = _LITERAL_NAMES.get(float(lit), f"c{generic}")
        return names[lit]

    out = []
    for line in lines:
        code, hash_, comment = line.partition("#")
        out.append(_LITERAL.sub(name, code) + hash_ + comment)
    return [(n, lit) for lit, n in names.items()], out


def row_views(lines: list[str]) -> dict[str, list[str]]:
    """Rewrite a fused (b, j) loop body so that LLVM vectorises its j loop.

    Every element access NAME[t, b, k * n_hidden + j] becomes ROW[j] on a row view
    ROW = NAME[t, b, k * n_hidden:(k + 1) * n_hidden] taken once per batch row b: indexed by the
    loop counter alone, the accesses are unit-stride without numba's negative-index select, so
    the loop vectorises (measured: the LSTM forward step 4.5x faster in float32). LLVM still
    checks at run time that the rows it writes overlap no row it reads, and runs the scalar loop
    where they do: a value must be read and overwritten through the same view (the backward reads
    each gate from the slot its adjoint replaces, see NumbaPlan.bwd_loop_lines). Returns the
    lines before the j loop ("views") and the loop body ("body")."""
    views: dict[str, str] = {}

    def row(m: re.Match) -> str:
        name, time, slot = m.group(1), m.group(2), m.group(3)
        tag = {None: "_b", "t": "_t", "t + 1": "_t1"}[time]
        view = name + tag + ("" if slot is None else f"_{slot}")
        if view not in views:
            idx = ", ".join(([time] if time else []) + ["b"])
            if slot is not None:
                k = int(slot)
                idx += f", {k} * n_hidden:{k + 1} * n_hidden"
            views[view] = f"{name}[{idx}]"
        return f"{view}[j]"

    literals, body = typed_literals([_ELEMENT.sub(row, line) for line in lines])
    return {"views": [f"{v} = {e}" for v, e in views.items()], "body": body,
            "literals": literals}


class NumbaPlan(KernelPlan):
    """A :class:`KernelPlan` printing scalar (per batch row b, unit j) code."""

    def __init__(self, d):
        super().__init__(d)
        # the fused forward loop adds each bias where it reads the gate's projection (one load
        # per element) instead of a separate pass over A_x, so nothing is folded into A_x
        self.folded_in = {}
        # params whose products the whole-sequence forward folds into the input product (see
        # merged_stacks); empty while printing the per-step loops
        self._merged: set[str] = set()
        if self._x_stack() is None:
            raise Unsupported(f"cell {self.spec.name!r}: the numba backend needs x_t to enter "
                              "through matrix parameters")

    # ------------------------------------------------------------------ scalar printing
    def sc(self, e: Expr, ctx: str, lines: list[str] | None = None) -> str:
        """Scalar code of entry (b, j) of a vector expression."""
        if ctx == "fwd" and e in self.temps and lines is not None:
            name = self.temps[e]
            if not any(line.startswith(f"{name} = ") for line in lines):
                lines.append(f"{name} = {self.sc_raw(e, ctx, lines)}")
                lines.append(f"C_{name}[t, b, j] = {name}")
            return name
        if ctx == "bwd" and e in self.temps:
            return self.temps[e]
        return self.sc_raw(e, ctx, lines)

    def sc_raw(self, e: Expr, ctx: str, lines: list[str] | None) -> str:
        if isinstance(e, Ref):
            if e.kind == "input":
                raise Unsupported(f"cell {self.spec.name!r}: x_t used elementwise")
            if e.kind == "param":
                return f"{_pid(e.name)}[j]"
            if e.lag == 1:
                return f"S_{e.name}[t, b, j]"
            if e.name.endswith(HAT):
                if ctx != "fwd":
                    raise Unsupported(f"pre-activation {e.name} needed outside the forward step")
                folded = set(self.folded_in.get(e.name, []))
                inner = self.spec.nodes[e.name].expr
                if folded and isinstance(inner, Add):
                    keep = tuple((sg, t) for sg, t in inner.terms
                                 if not (isinstance(t, Ref) and t.kind == "param"
                                         and t.name in folded))
                    inner = keep[0][1] if len(keep) == 1 and keep[0][0] > 0 else Add(keep)
                return f"({self.sc(inner, ctx, lines)})"
            if ctx == "bwd" and e.name in self.states:
                return f"S_{e.name}[t + 1, b, j]"
            return self.var[e.name]
        if isinstance(e, Const):
            return _num(e.value)
        if isinstance(e, Call):
            return ACTIVATIONS[e.fn].numba.format(z=self.sc(e.arg, ctx, lines))
        if isinstance(e, DerivAt):
            fmt = ACTIVATIONS[e.fn].numba_deriv_from_output
            if fmt is None:
                raise Unsupported(f"activation {e.fn!r}: no derivative from its output "
                                  "(numba_deriv_from_output)")
            if isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
                y = self.sc(Ref(e.arg.name[: -len(HAT)]), ctx, lines)
            else:
                y = self.sc(Call(e.fn, e.arg), ctx, lines)
            return "(" + fmt.format(y=y) + ")"
        if isinstance(e, MatVec):
            st = self.stacked.get(e.param)
            if st is None or e.arg != st.vec:
                raise Unsupported(f"cell {self.spec.name!r}: {e.param} @ (...) multiplies a "
                                  "value computed inside the step")
            k = st.params.index(e.param)
            if st.vec.kind == "input":
                return f"A_x[t, b, {k} * n_hidden + j]"
            return f"A_{st.vec.name}[b, {k} * n_hidden + j]"
        if isinstance(e, Add):
            terms = [(s, t) for s, t in e.terms
                     if not (isinstance(t, MatVec) and t.param in self._merged)]
            return join_signed([(s, self._paren(t, self.sc(t, ctx, lines))) for s, t in terms])
        if isinstance(e, Mul):
            return " * ".join(f"({self.sc(f, ctx, lines)})" if isinstance(f, Add)
                              else self.sc(f, ctx, lines) for f in e.factors)
        raise TypeError(e)

    def sc_adj(self, a: Adj) -> str:
        if a.kind == "loss":
            return "dhs[t, b, j]"
        if a.kind == "carry":
            return f"d_{a.name}_next[b, j]"
        return self.adj_var(a)

    def sc_term(self, t: Term) -> str:
        parts = []
        for f in t.factors[:-1]:
            if isinstance(f, Diag):
                parts.append(f"({self.sc(f.v, 'bwd')})")
            elif isinstance(f, Ident):
                continue
            else:
                raise Unsupported(f"cell {self.spec.name!r}: a matrix product between nodes "
                                  "in the backward step")
        parts.append(self.sc_adj(t.factors[-1]))
        return " * ".join(parts)

    def sc_sum(self, s: Sum) -> str:
        out = ""
        for i, t in enumerate(s):
            mag = "" if abs(t.coef) == 1 else _num(abs(t.coef)) + " * "
            body = mag + self.sc_term(t)
            out = (("-" if t.coef < 0 else "") + body) if i == 0 else \
                out + (" - " if t.coef < 0 else " + ") + body
        return out or "0.0"

    # ------------------------------------------------------------------ loop bodies
    def fwd_loop_lines(self) -> list[str]:
        lines: list[str] = []
        for name, node in self.spec.nodes.items():
            if node.role in ("hat", "readout"):
                continue
            lines.append(f"# {node_symbol(self.names, name)} = {node.source}")
            var = self.var[name]
            lines.append(f"{var} = {self.sc(node.expr, 'fwd', lines)}")
            if name in self.states:
                lines.append(f"S_{name}[t + 1, b, j] = {var}")
            elif name in self.gate_slot:  # its projection is used: A_x keeps the gate
                lines.append(f"A_x[t, b, {self.gate_slot[name]} * n_hidden + j] = {var}")
            elif name in self.cached_nodes:
                lines.append(f"C_{var}[t, b, j] = {var}")
        return lines

    def carry_rest(self, v: str) -> Sum | None:
        """The part of the carried adjoint delta v_(t-1) that the fused loop writes to R_v: the
        terms the stacked matmul does not cover, or None where that matmul covers all of it
        (the LSTM's h: no R_h array, no addition)."""
        stack = next((st for st in self.stacks if st.vec == Ref(v, 1, "node")), None)
        rest = self._unstacked(self.d.reverse.carries[v], stack)
        return None if stack is not None and not rest else rest

    def cached_vars(self) -> list[str]:
        """Names of the forward values the backward and RTRL loops read from the cache."""
        return [self.var[n] for n in self.cached_nodes] + list(self.temps.values())

    def bwd_loop_lines(self) -> list[str]:
        rev = self.d.reverse
        # a gate kept in its slot of the input projection is read from the x buffer, whose slot
        # the loop then overwrites with the gate's adjoint: one view for both, so LLVM's overlap
        # check passes (backward() hands the loop a copy of A_x when the cache must be kept)
        xbuf = self._x_stack().buffer
        slot = {self.var[n]: k for n, k in self.gate_slot.items()}
        lines = [f"{v} = {xbuf}[t, b, {slot[v]} * n_hidden + j]" if v in slot
                 else f"{v} = C_{v}[t, b, j]" for v in self.cached_vars()]
        for u, s in rev.assignments:
            lhs = _plain(_latex_adj(self.names, u))
            lines.append(f"# {lhs} = {_plain(expanded(s, self.names))}")
            lines.append(f"{self.adj_var(Adj(u, 'bar'))} = {self.sc_sum(s)}")
        done: set[tuple[str, int]] = set()
        for st in self.stacks:
            for k, p in enumerate(st.params):
                if st.slots[k] in done:
                    continue
                done.add(st.slots[k])
                buf, pos = st.slots[k]
                lines.append(f"{buf}[t, b, {pos} * n_hidden + j] = {self.sc_sum(st.adj[p])}")
        for v in rev.carries:
            rest = self.carry_rest(v)
            if rest is not None:
                lines.append(f"R_{v}[b, j] = {self.sc_sum(rest) if rest else '0.0'}")
        for p in self.params:
            kind, _ = self.grad_plan(p)
            if kind == "acc":
                g = self.d.reverse.grads[p]
                if self.spec.params[p].is_matrix:
                    raise Unsupported(f"cell {self.spec.name!r}: unstacked matrix {p}")
                lines.append(f"g_{p}[j] += {self.sc_sum(g)}")
        if self._unstacked(rev.inputs, self._x_stack()):
            raise Unsupported(f"cell {self.spec.name!r}: x_t adjoint outside the stacked matmul")
        return lines

    # ------------------------------------------------------------------ RTRL
    def _diag_coef(self, t: Term, upto: int | None = None) -> str:
        """Scalar code of coef * (product of the d(.) factors t.factors[:upto]) at (b, j)."""
        parts = []
        for f in t.factors[:upto]:
            if isinstance(f, Diag):
                parts.append(f"({self.sc(f.v, 'bwd')})")
            elif not isinstance(f, Ident):
                raise Unsupported(f"cell {self.spec.name!r}: RTRL term {f!r} is not a d(.)")
        code = " * ".join(parts) or "1.0"
        return code if t.coef == 1 else f"{_num(t.coef)} * {code}"

    def _zvec(self, v: Expr) -> str:
        """The array whose [t, b, l] is entry l of the vector v of a d_2(v) at step t: x_t or a
        previous state (a matrix acting on a value computed inside the step makes the whole
        numba backend Unsupported already)."""
        if isinstance(v, Ref) and v.kind == "input":
            return "xs"
        if isinstance(v, Ref) and v.lag == 1 and v.name in self.states:
            return f"S_{v.name}"
        raise Unsupported(f"cell {self.spec.name!r}: d_2 of {v!r} in V")

    def _rtrl_jacobian(self, scalar) -> tuple[list[str], dict, dict]:
        """Loop lines for the state Jacobian J_t: row j of each dense column block J[:, v]
        (terms d(.)...d(.) W, rows scaled; a diagonal block of the same column folded in) and
        the other diagonal blocks D_u_v. Returns (lines, dense columns, remaining diagonals)."""
        row = {u: k for k, u in enumerate(self.states)}
        dense: dict[str, dict[str, list[tuple[str, Mat]]]] = {}
        diag: dict[tuple[str, str], list[str]] = {}
        for u in self.states:
            for v in self.states:
                for t in self.d.jacobian[u][v]:
                    fs = [f for f in t.factors if not isinstance(f, Ident)]
                    if not (fs and isinstance(fs[-1], Mat)):
                        diag.setdefault((u, v), []).append(scalar(self._diag_coef(t)))
                    elif all(isinstance(f, Diag) for f in fs[:-1]):
                        coef = scalar(self._diag_coef(Term(t.coef, tuple(fs[:-1]))))
                        dense.setdefault(v, {}).setdefault(u, []).append((coef, fs[-1]))
                    else:
                        raise Unsupported(f"cell {self.spec.name!r}: J term {t!r}")
        lines: list[str] = []
        for v, cols in dense.items():
            for u, ts in cols.items():
                rhs = " + ".join(f"{k} * {_pid(m.name)}"
                                 + ("[m, j]" if m.transposed else "[j, m]") for k, m in ts)
                lines += [f"# d {u}_t / d {v}_(t-1), row j: the dense part",
                          "for m in range(n_hidden):",
                          f"    J_{v}[b, {row[u]} * n_hidden + j, m] = {rhs}"]
        left: dict[str, list[tuple[str, str]]] = {}
        for (u, v), ks in diag.items():
            if v in dense:  # folded into the dense column block's diagonal
                op = "+=" if u in dense[v] else "="
                lines.append(f"J_{v}[b, {row[u]} * n_hidden + j, j] {op} {' + '.join(ks)}")
            else:
                left.setdefault(v, []).append((u, f"D_{u}_{v}"))
                lines.append(f"D_{u}_{v}[b, j] = {' + '.join(ks)}")
        return lines, dense, left

    def _rtrl_v(self, scalar) -> tuple[dict[str, str], list[str], list[str]]:
        """V_t of every parameter and state: one coefficient array U per distinct d(.) product
        (shared by the parameters and states that have it), and the post-loop lines adding
        U_j z_l at out[u_j, OFF[A] + j k + l] (A d_2(z)) or U_j at out[u_j, OFF[A] + j] (a
        vector parameter A). Returns ({coefficient code: U name}, lines, the z arrays read)."""
        row = {u: k for k, u in enumerate(self.states)}
        ubuf: dict[str, str] = {}
        lines: list[str] = []
        zargs: list[str] = []
        for u in self.states:
            for i, p in enumerate(self.params):
                V = self.d.forward[p].raw.V[u]
                if not V:
                    continue
                by_z: dict[Expr | None, list[str]] = {}
                for t in V:
                    last = t.factors[-1]
                    if isinstance(last, Diag2):
                        by_z.setdefault(last.v, []).append(self._diag_coef(t, -1))
                    elif isinstance(last, (Diag, Ident)):
                        by_z.setdefault(None, []).append(self._diag_coef(t))
                    else:
                        raise Unsupported(f"cell {self.spec.name!r}: V term {t!r}")
                lines.append(f"# V_{u}^{p} = {_plain(expanded(V, self.names))}")
                r = f"out[b, {row[u]} * n_hidden + j"
                for z, codes in by_z.items():
                    U = ubuf.setdefault(" + ".join(scalar(c) for c in codes), f"U{len(ubuf)}")
                    if z is None:  # a vector parameter: its entry (j, j)
                        lines.append(f"{r}, OFF[{i}] + j] += {U}[b, j]")
                        continue
                    zarr = self._zvec(z)  # A d_2(z): the entries (j, j k + l), l < k = len(z)
                    zargs += [] if zarr in zargs else [zarr]
                    lines += [f"u = {U}[b, j]",
                              f"o = OFF[{i}] + j * {zarr}.shape[-1]",
                              f"for l in range({zarr}.shape[-1]):",
                              f"    {r}, o + l] += u * {zarr}[t, b, l]"]
        return ubuf, lines, zargs

    def rtrl_parts(self) -> dict:
        """The RTRL step S_t = J_t S_(t-1) + V_t as two fused loops around BLAS products.

        ``coef_loop`` (one pass over (b, j)) writes row j of J_t's dense column blocks, its
        other diagonal blocks and V_t's coefficients (:meth:`_rtrl_jacobian`, :meth:`_rtrl_v`);
        then one matmul per state column v with a dense block, ``out = J[:, v] S_v``; then
        ``post_loop`` adds the remaining diagonal blocks (one pass over S) and V_t on its
        diagonal structure. Supports J terms d(.)...d(.) W and V terms d(.)...d(.) d_2(z) or
        d(.)...d(.) (all built-in cells); Unsupported otherwise."""
        coefs: dict[str, str] = {}  # scalar code -> local name, shared by J and V

        def scalar(code: str) -> str:
            return coefs.setdefault(code, f"k{len(coefs)}")

        jac_lines, dense, left = self._rtrl_jacobian(scalar)
        ubuf, v_lines, zargs = self._rtrl_v(scalar)
        row = {u: k for k, u in enumerate(self.states)}
        post: list[str] = []
        for v, blocks in left.items():
            post.append(f"# out_u += d(D_u{v}) S_{v}: the diagonal blocks, one pass over S_{v}")
            post += [f"d{k} = {d}[b, j]" for k, (_, d) in enumerate(blocks)]
            post.append(f"s = S[b, {row[v]} * n_hidden + j]")  # rows as 1-d views: SIMD loop
            post += [f"r{k} = out[b, {row[u]} * n_hidden + j]" for k, (u, _) in enumerate(blocks)]
            post.append("for p in range(width):")
            post += [f"    r{k}[p] += d{k} * s[p]" for k in range(len(blocks))]
        post += ["# V_t on its diagonal structure"] + v_lines
        arrays = [d for bl in left.values() for _, d in bl] + list(ubuf.values())
        mats = sorted({m.name for cols in dense.values() for ts in cols.values() for _, m in ts},
                      key=self.params.index)
        return {
            "dense_cols": [(v, row[v]) for v in dense],
            "mats": [(p, _pid(p)) for p in mats],
            "arrays": arrays,
            "coef_args": ["t"] + [f"S_{s}" for s in self.states]
            + [f"C_{v}" for v in self.cached_vars()]
            + [_pid(p) for p in self.params if not self.spec.params[p].is_matrix]
            + [_pid(p) for p in mats] + [f"J_{v}" for v in dense] + arrays,
            "post_args": ["t", "out", "S", "OFF"] + zargs + arrays,
            "coef_loop": [f"{v} = C_{v}[t, b, j]" for v in self.cached_vars()]
            + [f"{name} = {code}" for code, name in coefs.items()] + jac_lines
            + [f"{name}[b, j] = {code}" for code, name in ubuf.items()],
            "post_loop": post,
            "post_width": bool(left),  # the diagonal blocks' pass runs over the columns
        }

    def merged_stacks(self) -> list[Stack]:
        """The state stacks whose product the whole-sequence forward makes together with the
        input's, as one product of [Theta_x Theta_v] with [x_t; v_(t-1)] written into A_x: those
        whose every slot P_k enters the forward step only as "+ P_k v" in a sum that also holds
        "+ X_k x" (X_k the input stack's slot k), where X_k x in turn appears only in such sums
        (so A_x's slot k is read nowhere without P_k v). The LSTM's h qualifies; the GRU's does
        not (its W_hn h is scaled by r). One product of width n_in + n instead of two: measured
        16.7 vs 8.7 + 12.6 us per row pair at the c2 LSTM (64 + 128)."""
        x = self._x_stack()
        # every occurrence of a matrix product: (param, sign, the params of the + products
        # beside it in its sum); a product outside any sum has sign 0
        uses: list[tuple[str, int, set[str]]] = []

        def walk(e: Expr) -> None:
            if isinstance(e, Add):
                plus = {t.param for sg, t in e.terms if sg > 0 and isinstance(t, MatVec)}
                for sg, t in e.terms:
                    if isinstance(t, MatVec):
                        uses.append((t.param, sg, plus))
                        walk(t.arg)
                    else:
                        walk(t)
            elif isinstance(e, MatVec):
                uses.append((e.param, 0, set()))
                walk(e.arg)
            elif isinstance(e, Mul):
                for f in e.factors:
                    walk(f)
            elif isinstance(e, (Call, DerivAt)):
                walk(e.arg)

        for node in self.spec.nodes.values():
            walk(node.expr)

        def always_beside(p: str, q: str) -> bool:
            mine = [(sg, plus) for r, sg, plus in uses if r == p]
            return bool(mine) and all(sg > 0 and q in plus for sg, plus in mine)

        return [st for st in self.stacks if st.vec.kind == "node"
                and len(st.params) == len(x.params)
                and all(always_beside(p, q) and always_beside(q, p)
                        for p, q in zip(st.params, x.params, strict=True))]

    def seq_fwd_loop(self) -> dict:
        """The fused forward body of _forward_seq: the per-step body without the merged
        stacks' terms (the input product already holds them)."""
        self._merged = {p for st in self.merged_stacks() for p in st.params}
        try:
            return row_views(self.fwd_loop_lines())
        finally:
            self._merged = set()

    def seq_parts(self, fwd_args: list[str], bwd_args: list[str], carries: list[dict],
                  acc: list[str]) -> dict:
        """What the whole-sequence kernels (_forward_seq, _backward_seq) need beyond the loop
        bodies they share with the per-step loops: their arguments, the carried-adjoint
        products as runs of stored slots times the stacked matrices' transposes (the runs of
        :meth:`carry_matmul`), the weight-gradient rank updates (the runs of
        :meth:`stack_grad_lines`), the bias column sums, and the Python lines that allocate
        and add up each chunk's partial sums.

        A weight gradient G = sum_t (bar a_t) v_t^T is the same sum either way; here each
        thread adds its rows of every step into its own partial G (no two threads write one
        array), and the partials are added once at the end."""
        x_stack = self._x_stack()
        state_stacks = [st for st in self.stacks if st.vec.kind == "node"]
        setup: list[str] = []
        finish: list[str] = []
        per_chunk: list[str] = []
        wts: list[str] = []
        carry_parts = []
        for c in carries:
            st = next((s for s in state_stacks if s.vec.name == c["state"]), None)
            runs = []
            for i, (buf, j, k0, k1) in enumerate(self.slot_runs(st) if st else []):
                wt = f"WT_{st.name}_{i}"
                wts.append(wt)
                setup.append(f"{wt} = np.ascontiguousarray({st.name}[{k0} * n_hidden:{k1} * "
                             f"n_hidden].T)")
                runs.append({"buf": buf, "wt": wt,
                             "cols": f"{j} * n_hidden:{j + k1 - k0} * n_hidden"})
            carry_parts.append({"state": c["state"], "runs": runs, "rest": c["rest"]})
        wgrads = []
        for st in self.stacks:
            vec = "xs" if st.vec.kind == "input" else f"S_{st.vec.name}"
            width = "n_in" if st.vec.kind == "input" else "n_hidden"
            for i, (buf, j, k0, k1) in enumerate(self.slot_runs(st)):
                g = f"G_{st.name}_{i}"
                wgrads.append({"buf": buf, "c0": f"{j} * n_hidden", "vec": vec, "name": g})
                setup.append(f"{g}_part = np.zeros((len(chunks), {k1 - k0} * n_hidden, "
                             f"{width}), dtype)")
                finish.append(f"{g} = {g}_part.sum(axis=0)")
                per_chunk.append(g)
        colsums = self.bias_buffers()
        for b in colsums:
            setup.append(f"colsum_{b}_part = np.zeros((len(chunks), {b}.shape[2]), dtype)")
            finish.append(f"colsum_{b} = colsum_{b}_part.sum(axis=0)")
            per_chunk.append(f"colsum_{b}")
        for p in acc:
            setup.append(f'g_{p}_part = np.zeros((len(chunks),) + params["{p}"].shape, dtype)')
            finish.append(f"g_{p} = g_{p}_part.sum(axis=0)")
            per_chunk.append(f"g_{p}")

        def unique(names: list[str]) -> list[str]:
            return list(dict.fromkeys(names))

        merged = self.merged_stacks()
        fwd_loop = self.seq_fwd_loop()
        text = "\n".join(fwd_loop["views"] + fwd_loop["body"])
        fwd_used = [a for a in fwd_args if a != "t" and re.search(rf"\b{a}\b", text)]
        apart = [st for st in state_stacks if st not in merged]
        fwd = unique(["lo", "hi", "xs", "W_cat" if merged else x_stack.name]
                     + [f"S_{st.vec.name}" for st in merged]
                     + [st.name for st in apart] + [f"A_{st.vec.name}" for st in apart]
                     + ["A_x", f"S_{self.states[0]}"] + fwd_used + ["nil"])
        bwd = unique(["lo", "hi", "dhs"] + [a for a in bwd_args if a != "t"]
                     + [f"d_{s}_next" for s in self.states]
                     + [f"R_{c['state']}" for c in carries if c["rest"]]
                     + [g["vec"] for g in wgrads] + [r["buf"] for c in carry_parts
                                                     for r in c["runs"]]
                     + wts + [g["name"] for g in wgrads] + [f"colsum_{b}" for b in colsums]
                     + [f"g_{p}" for p in acc] + ["nil"])
        products, rows = [], []
        for line in self.stack_grad_lines():
            (rows if line.startswith("grads[") else products).append(line)
        return {
            "max_bytes": SEQUENCE_MAX_BYTES,
            "fwd_loop": fwd_loop,
            "merged": [st.vec.name for st in merged],
            "cat": [x_stack.name] + [st.name for st in merged],
            "apart": [(st.vec.name, st.name) for st in apart],
            "fwd_args": fwd,
            "bwd_args": bwd,
            "bwd_call": [f"{a}_part[i]" if a in per_chunk else a for a in bwd],
            "carries": carry_parts,
            "wgrads": wgrads,
            "colsums": colsums,
            "bwd_setup": setup,
            "bwd_finish": finish,
            "grad_products": products,
            "grad_rows": rows,
        }

    def context(self, template: str) -> dict:
        ctx = super().context(template)
        try:
            rtrl = self.rtrl_parts()
        except Unsupported:
            rtrl = None  # the module re-exports the NumPy backend's rtrl
        state_stacks = {st.vec.name: st for st in self.stacks if st.vec.kind == "node"}
        vec_params = [p for p in self.params if not self.spec.params[p].is_matrix]
        cached = ctx["cached_nodes"] + ctx["temps"]
        heap = ctx["heap_nodes"] + ctx["temps"]
        acc = [p for p in self.params if self.grad_plan(p)[0] == "acc"]
        buffers = [b for b, _ in ctx["buffers"]]
        carries = []
        for v in self.states:
            st = state_stacks.get(v)
            carries.append({"state": v, "stack": st.name if st else None,
                            "matmul": self.carry_matmul(st) if st else None,
                            "rest": self.carry_rest(v) is not None})
        fwd_loop = row_views(self.fwd_loop_lines())
        bwd_loop = row_views(self.bwd_loop_lines())
        ctx.update({
            "fwd_args": ["t", "A_x"] + [f"A_{v}" for v in state_stacks]
            + [f"S_{s}" for s in self.states] + [f"C_{v}" for v in heap]
            + [_pid(p) for p in vec_params] + [n for n, _ in fwd_loop["literals"]],
            "bwd_args": ["t", "dhs"] + [f"S_{s}" for s in self.states]
            + [f"C_{v}" for v in cached] + [_pid(p) for p in vec_params] + buffers
            + [f"d_{s}_next" for s in self.states]
            + [f"R_{c['state']}" for c in carries if c["rest"]]
            + [f"g_{p}" for p in acc] + [n for n, _ in bwd_loop["literals"]],
            "numba_state_stacks": [(v, st.name) for v, st in state_stacks.items()],
            "vec_params": [(p, _pid(p)) for p in vec_params],
            "acc": acc,
            "carries": carries,
            "fwd_loop": fwd_loop,
            "bwd_loop": bwd_loop,
            "rtrl": rtrl,
        })
        # pass a loop only the arrays it reads or writes: numba's dispatcher checks the type of
        # every argument on every call (~0.2 us each, per time step)
        for args, loop in (("fwd_args", fwd_loop), ("bwd_args", bwd_loop)):
            text = "\n".join(loop["views"] + loop["body"])
            ctx[args] = [a for a in ctx[args] if a == "t" or re.search(rf"\b{a}\b", text)]
        ctx["seq"] = self.seq_parts(ctx["fwd_args"], ctx["bwd_args"], carries, acc)
        # what backward() and rtrl() hand their loops: only those arrays are loaded
        ctx["bwd_used"] = set(ctx["bwd_args"]) | set(ctx["seq"]["bwd_args"])
        ctx["rtrl_used"] = set(rtrl["coef_args"]) | set(rtrl["post_args"]) if rtrl else set()
        return ctx


def _plain(latex: str) -> str:
    return latex.replace("\\", "")


# Names the fused printer (this module and derive.codegen.plan) introduces, or patterns of
# them: a cell that uses one of these as its own name is printed as the re-export module
# (fallback.py.j2) instead, since this printer does not draw its names from
# derive.codegen.naming yet.
_PRINTER_PREFIXES = ("d_", "g_", "C_", "G_", "Jd_", "JM_", "dA_", "out_", "colsum_", "W_stack",
                     "b_stack", "W_cat", "dxs")
_STATE_PREFIXES = ("S_", "A_", "R_")  # followed by a state's name (or x): S_h, A_x, R_c
# locals of templates/numba/kernel.py.j2's functions (forward, backward, rtrl)
_TEMPLATE_LOCALS = {"OFF", "P", "S", "args", "b1", "batch", "cache", "carry", "chunks",
                    "dh_readout", "dhs", "dtype", "dys", "n_hidden", "n_in", "nil", "off", "out",
                    "readout_grads", "rows", "state", "steps", "whole", "width", "xs", "zero"}
_PRINTER_SUFFIXES = ("_prev", "_hat", "_next", "_new", "_T", "_")


def _unsafe_name(name: str, node: bool = False, states: tuple = ()) -> bool:
    import builtins
    import keyword

    from ..spec.activations import ACTIVATIONS
    from .naming import TEMPLATE_NAMES
    from .plan import RESERVED

    # RESERVED names are renamed with a trailing "_" by _ident, and a parameter among the loop
    # names by _pid (hence the suffix rule); a node keeps its name inside the fused loops, so
    # a loop name is unsafe for a node (i, o and s, nodes of the classic cells, are proven on
    # both paths by tests/test_kernels.py; the others, e.g. a node 'hi', the chunk bound,
    # were found by bench/fuzz.py)
    node_unsafe = _LOOP_NAMES - {"i", "o", "s"} if node else set()
    return (name in TEMPLATE_NAMES - RESERVED - _LOOP_NAMES or name in node_unsafe
            or name in _TEMPLATE_LOCALS - RESERVED
            or keyword.iskeyword(name) or name in dir(builtins)
            or name.startswith(_PRINTER_PREFIXES) or name.endswith(_PRINTER_SUFFIXES)
            or any(name == p + v for p in _STATE_PREFIXES for v in (*states, "x"))
            or re.fullmatch(r"[a-zA-Z]\d+", name) is not None
            or any(name.startswith(fn + "_") for fn in ACTIVATIONS))


def fused_refusal(d) -> str | None:
    """Why the fused printer does not print this cell (None: it does). The module printed
    instead re-exports the NumPy kernel, so every cell has a numba module with the same API."""
    spec = d.spec
    nodes = [n for n, v in spec.nodes.items() if v.role not in ("hat", "readout")]
    # U is the pair-of-rows buffer of _forward_seq, which reads nodes and vector parameters
    # by name (matrices only through the stacks)
    in_loops = {*nodes, *(p for p in spec.cell_params if not spec.params[p].is_matrix)}
    bad = sorted({n for n in spec.cell_params if _unsafe_name(n, states=spec.states)} |
                 {n for n in nodes if _unsafe_name(n, node=True, states=spec.states)} |
                 ({"U"} & in_loops))
    if bad:
        return f"its names {bad} are among the fused printer's own"
    products = [e for n in nodes + [h for h in spec.nodes if h.endswith(HAT)]
                for e in walk(spec.nodes[n].expr) if isinstance(e, MatVec)]
    twice = sorted({f"{e.param} @ ..." for e in products if products.count(e) > 1})
    if twice:  # its plan folds each product into one slot (found by bench/fuzz.py)
        return f"the same matrix product appears more than once ({', '.join(twice)})"
    try:
        NumbaPlan(d).context("numba/kernel.py.j2")
    except Unsupported as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001  the old plan's limits, found by bench/fuzz.py
        # The fused printer still builds on derive.codegen.plan, which was written around the
        # classic cells; where it fails on a valid cell, the NumPy kernel serves (correct by
        # the statement layer) until the fused loops are printed from statements too.
        return f"its plan does not cover this cell ({type(exc).__name__}: {exc})"
    return None


def render_numba_kernel(cell, numpy_module: str | None = None) -> str:
    """The text of a cell's numba module (``<module>_numba.py`` of a kernel package); it imports
    its NumPy sibling ``numpy_module`` of the same package relatively (default: the cell's
    module name, :func:`derive.codegen.naming.module_name`). A cell the fused printer does not print
    (:func:`fused_refusal`) gets a module that re-exports the NumPy kernel, saying why."""
    d = derive(cell)
    numpy_module = numpy_module or module_name(d.spec.name)
    why = fused_refusal(d)
    if why is not None:
        template = "numba/fallback.py.j2"
        return environment().get_template(template).render(
            template=template, cell=d.spec.name, title=d.spec.title, why=why,
            numpy_module=numpy_module, readout=bool(d.spec.readout_nodes))
    template = "numba/kernel.py.j2"
    plan = NumbaPlan(d)
    ctx = plan.context(template)
    ctx["numpy_module"] = numpy_module
    ctx["readout"] = bool(d.spec.readout_nodes)
    return environment().get_template(template).render(**ctx)


def kernel_files(cell) -> dict[str, str]:
    """The files of one cell's numba kernel in a kernel package: ``<module>_numba.py``."""
    return {f"{module_name(derive(cell).spec.name)}_numba.py": render_numba_kernel(cell)}


__all__ = ["NumbaPlan", "Unsupported", "kernel_files", "render_numba_kernel", "Mat", "Term"]
