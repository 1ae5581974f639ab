"""The NumPy backend: a lowered :class:`~derive.codegen.lower.Program` printed into
``templates/numpy/kernel.py.j2``.

This module turns statements into lines with :class:`~derive.codegen.numpy_printer.NumpyPrinter`
and hands the template lists to lay out; it decides nothing about the mathematics (the lowering
did) and the template decides nothing about the code (it loops over what is printed here).
"""

from __future__ import annotations

import functools
import json

import jinja2

from ..calculus.derivation import derive, get_spec
from ..resources import TEMPLATES
from ..spec import CellSpec
from .ir import Const, Stmt, idents
from .lower import Program, lower
from .naming import module_name
from .numpy_printer import NumpyPrinter


@functools.cache
def environment() -> jinja2.Environment:
    """The kernel templates' Jinja environment, made once (it caches compiled templates)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


class NumpyKernel:
    """The template context of one cell's NumPy module, printed from its :class:`Program`."""

    printer_settings: dict = {}

    def __init__(self, prog: Program):
        self.prog = prog
        self.p = NumpyPrinter(**self.printer_settings)
        self.names = prog.names

    def stmt(self, s: Stmt) -> list[str]:
        lines = [f"# {s.comment}"] if s.comment else []
        rhs = self.p.doprint(s.expr)
        if s.op == "[...]=":
            lines.append(f"{s.target}[...] = {rhs}")
        else:
            lines.append(f"{s.target} {s.op} {rhs}")
        return lines

    def lines(self, stmts) -> list[str]:
        return [line for s in stmts for line in self.stmt(s)]

    # ------------------------------------------------------------------ RTRL pieces
    def jacobian(self) -> tuple[list[str], list[tuple[str, str, str, str]]]:
        """J[u][v] = d u_t / d v_{t-1} as a diagonal part (vector or None) and a dense part."""
        nm, prog = self.names, self.prog
        lines, blocks = [], []
        for u, v, diag, dense in prog.jacobian:
            jd = nm.once(f"Jd:{u}:{v}", f"Jd_{nm.cell(u)}_{nm.cell(v)}")
            jm = nm.once(f"JM:{u}:{v}", f"JM_{nm.cell(u)}_{nm.cell(v)}")
            if diag:
                code = " + ".join(self.p.operand(e, 1) for _, e in diag)
                if not any(idents(e) for _, e in diag):  # a constant: as a batch of vectors
                    code = f"({code}) * ones"
                lines.append(f"{jd} = {code}")
            else:
                lines.append(f"{jd} = None")
            lines.append(f"{jm} = {' + '.join(self.p.operand(e, 1) for e in dense)}"
                         if dense else f"{jm} = None")
            blocks.append((u, v, jm, jd, bool(dense), bool(diag),
                           len(diag) == 1 and diag[0][1] == Const(1)))
        return lines, blocks

    def rtrl(self, blocks) -> list[str]:
        """S_u <- sum_v J[u][v] S_v + V_u^A for every parameter A at once."""
        nm, prog = self.names, self.prog
        out = {u: nm.once(f"out:{u}", f"out_{nm.cell(u)}") for u in prog.states}
        sens = {u: nm.once(f"S:{u}", f"S_{nm.cell(u)}") for u in prog.states}
        lines = [f"{sens[u]} = S[{u!r}]" for u in prog.states]
        lines += [f"{out[u]} = out[{u!r}]" for u in prog.states]
        lines.append("if dense is not None:")
        lines.append("    # a small state: S <- J S with the whole state Jacobian, one matmul")
        lines.append("    np.matmul(rt.dense_jacobian(STATE, J, dense[0]), dense[1], "
                     "out=dense[2])")
        lines.append("else:")
        for u in prog.states:
            first = True
            for (bu, bv, jm, jd, has_dense, has_diag, one) in blocks:
                if bu != u:
                    continue
                if has_dense:
                    lines.append(f"    np.matmul({jm}, {sens[bv]}, out={out[u]})" if first
                                 else f"    {out[u]} += {jm} @ {sens[bv]}")
                    first = False
                if has_diag:
                    if first:
                        lines.append(f"    {out[u]}[...] = {sens[bv]}" if one else
                                     f"    np.multiply({jd}[..., None], {sens[bv]}, "
                                     f"out={out[u]})")
                        first = False
                    else:
                        lines.append(f"    {out[u]} += " + (sens[bv] if one else
                                                           f"{jd}[..., None] * {sens[bv]}"))
            if first:
                lines.append(f"    {out[u]}[...] = 0.0")
        lines.append("# S_u += V_u^A, through the strided views of the diagonal structure")
        prefixes: dict[str, str] = {}
        for u, p, kind, last, pre, vec, key in prog.rtrl_v:
            if key not in prefixes:
                prefixes[key] = nm.fresh(f"u{len(prefixes)}")
                shape = "ones" if kind == "diag" else "ones[..., None]"
                lines.append(f"{prefixes[key]} = {self.p.operand(pre, 2)} * {shape}")
            pre_id = prefixes[key]
            sl = f"off[{p!r}]"
            if last == "d2":
                v = self.p.operand(vec, 3)
                if kind == "diag":
                    lines.append(f"V[{u!r}][{p!r}] += {pre_id}[..., None] * {v}[..., None, :]")
                else:
                    lines.append(f"{out[u]}[:, :, {sl}[0]:{sl}[1]] += ({pre_id}[..., None] * "
                                 f"{v}[..., None, None, :]).reshape(batch, n_hidden, -1)")
            else:
                scale = "" if last == "i" else self.p.operand(vec, 3)
                if kind == "diag":
                    lines.append(f"V[{u!r}][{p!r}] += {pre_id}" + (f" * {scale}" if scale
                                                                   else ""))
                else:
                    tail = f" * {scale}[..., None, :]" if scale else ""
                    lines.append(f"{out[u]}[:, :, {sl}[0]:{sl}[1]] += {pre_id}{tail}")
        return lines

    # ------------------------------------------------------------------ context
    def context(self, spec: CellSpec, template: str) -> dict:
        prog, nm = self.prog, self.names
        S = {s: nm.once(f"seq:{s}", f"S_{nm.cell(s)}") for s in prog.states}
        C = {v: nm.once(f"cache:{v}", f"C_{v}") for v, _ in prog.cached}
        # the sequence forward computes stored values straight into their slot of the cache
        stored = {prog.state_ident[s_]: f"{S[s_]}[t + 1]" for s_ in prog.states}
        stored.update({v: f"{C[v]}[t]" for v, _ in prog.cached})
        fwd_seq = []
        products = {st.product for st in prog.stacks if st.vec.kind == "node"}
        for st_ in prog.forward:
            if st_.target in products and st_.op == "=":  # preallocated before the loop
                fwd_seq += [f"# {st_.comment}"] if st_.comment else []
                fwd_seq += self.p.into(st_.expr, st_.target)
            elif st_.target in stored and st_.op == "=":
                if st_.comment:
                    fwd_seq.append(f"# {st_.comment}")
                fwd_seq.append(f"{st_.target} = {stored[st_.target]}")
                fwd_seq += self.p.into(st_.expr, st_.target)
            else:
                fwd_seq += self.stmt(st_)
        fwd = self.lines(prog.forward)
        bwd = self.lines(prog.backward)
        reads = set(prog.backward_reads)
        for _, _, e, _ in prog.carries:
            if e is not None:
                reads |= idents(e)
        jac_lines, blocks = self.jacobian()
        fwd_reads = set().union(*(st.reads() for st in prog.forward))
        local_reads = fwd_reads | set().union(
            *(idents(e) for _, _, diag, dense in prog.jacobian for _, e in diag),
            *(idents(e) for _, _, diag, dense in prog.jacobian for e in dense),
            *(idents(pre) | (idents(vec) if vec is not None else set())
              for *_, pre, vec, _ in [(r[0], r[1], r[2], r[3], r[4], r[5], r[6])
                                      for r in prog.rtrl_v]))
        bwd_reads = set(reads)
        for g in prog.grads:
            if g.terms is not None:
                bwd_reads |= idents(g.terms)
        if prog.x_rest is not None:
            bwd_reads |= idents(prog.x_rest)
        stack_ids = {st.ident for st in prog.stacks}
        x_ids = {st.ident for st in prog.stacks if st.vec.kind == "input"}
        fwd_used = fwd_reads | stack_ids
        local_used = local_reads | stack_ids
        bwd_used = bwd_reads | (x_ids if prog.x_stack >= 0 else set())
        unpack = [(p, nm.cell(p)) for p in prog.params] + \
            [(st.key, st.ident) for st in prog.stacks]
        stacks = []
        for st in prog.stacks:
            stacks.append({"key": st.key, "ident": st.ident, "params": list(st.params),
                           "product": st.product, "input": st.vec.kind == "input",
                           "prev": None if st.vec.kind == "input" else prog.prev_ident[st.vec.name],
                           "width": _width(st.rows)})
        grads, grad_lines = [], []
        for g in prog.grads:
            entry = {"name": g.param, "kind": g.kind, "acc": g.acc}
            if g.kind == "acc":
                entry["step"] = f"{g.acc} += {self.p.doprint(g.terms)}"
            grads.append(entry)
        for i, st in enumerate(prog.stacks):
            vec = "xs" if st.vec.kind == "input" else f"{S[st.vec.name]}[:-1]"
            runs = st.runs()
            for r, (buf, c0, c1, _, _, ks) in enumerate(runs):
                if not any(g.kind == "stack" and g.stack == i and g.slot in ks
                           for g in prog.grads):
                    continue
                gname = nm.once(f"G:{i}:{r}", f"G_{st.ident}_{r}")
                grad_lines.append(f"{gname} = {buf}[:, :, {c0}:{c1}].reshape(steps * batch, -1)"
                                  f".T @ {vec}.reshape(steps * batch, -1)")
                for k in ks:
                    lo, hi = st.row_range(k)
                    base = st.row_range(ks[0])[0]
                    grad_lines.append(f"grads[{st.params[k]!r}] = "
                                      f"{gname}[{_minus(lo, base)}:{_minus(hi, base)}]")
        colsums = {}
        for g in prog.grads:
            if g.kind == "colsum":
                buf, lo, hi = g.stored.buffer, g.stored.lo, g.stored.hi
                if buf not in colsums:
                    colsums[buf] = nm.once(f"colsum:{buf}", f"colsum_{buf}")
                    grad_lines.append(f"{colsums[buf]} = {buf}.reshape(steps * batch, -1)"
                                      f".sum(axis=0)")
                grad_lines.append(f"grads[{g.param!r}] = {colsums[buf]}[{lo}:{hi}]")
        xin = None
        dxs_rest = nm.once("dxs_rest", "dxs_rest") if prog.x_rest is not None else None
        if prog.x_stack >= 0:
            st = prog.stacks[prog.x_stack]
            parts = [f"{buf}[:, :, {c0}:{c1}] @ {st.ident}[{r0}:{r1}]"
                     for buf, c0, c1, r0, r1, _ in st.runs()]
            xin = " + ".join(parts + ([dxs_rest] if dxs_rest else []))
        elif dxs_rest:
            xin = dxs_rest
        bias_stack = []
        if prog.bias_fold:
            xs = next(st for st in prog.stacks if st.vec.kind == "input")
            for pk, biases in zip(xs.params, prog.bias_fold, strict=True):
                bias_stack.append(" + ".join(f"params[{_q(b)}]" for b in biases) or
                                  f"np.zeros(params[{_q(pk)}].shape[0], params[{_q(pk)}].dtype)")
        ro = prog.readout
        readout = None
        if ro is not None:
            ro_reads = set().union(*(st.reads() for st in ro.forward + ro.backward))
            for _, e in ro.grads:
                if e is not None:
                    ro_reads |= idents(e)
            if ro.output is not None:
                ro_reads |= idents(ro.output)
            readout = {
                "params": [(p, shape) for p, shape in ro.params],
                "unpack": [(p, nm.cell(p)) for p, _ in ro.params if nm.cell(p) in ro_reads],
                "nodes": list(ro.nodes), "dys": list(ro.dys),
                "forward": self.lines(ro.forward), "backward": self.lines(ro.backward),
                "output": self.p.doprint(ro.output) if ro.output is not None else None,
                "grads": [(p, self.p.doprint(e) if e is not None else None)
                          for p, e in ro.grads],
                "state": prog.state_ident[prog.states[0]],
                "seq": S[prog.states[0]],
            }
        # the keys of backward()'s results that are not parameters: "xs" and "<state>0", or
        # "_xs" / "_<state>0" where a parameter has that name (a spec name never starts "_")
        taken = set(spec.params)
        input_key = "xs" if "xs" not in taken else "_xs"
        state0_keys = {s_: (f"{s_}0" if f"{s_}0" not in taken else f"_{s_}0")
                       for s_ in prog.states}
        return {
            "input_key": input_key,
            "state0_keys": state0_keys,
            "readout": readout,
            "bias_stack": bias_stack,
            "cell": spec.name,
            "title": spec.title,
            "digest": spec.digest,
            "template": template,
            "equations": [f"{n} = {node.source}" for n, node in spec.nodes.items()
                          if node.role not in ("hat", "readout")],
            "params": [(p, shape) for p, shape in prog.param_shapes],
            "unpack_fwd": [(k, v) for k, v in unpack if v in fwd_used],
            "unpack_bwd": [(k, v) for k, v in unpack if v in bwd_used],
            "unpack_local": [(k, v) for k, v in unpack if v in local_used],
            "fwd_x": "x_t" in fwd_reads,
            "fwd_prev": [prog.prev_ident[s] for s in prog.states
                         if prog.prev_ident[s] in fwd_reads],
            "local_prev": [prog.prev_ident[s] for s in prog.states
                           if prog.prev_ident[s] in local_reads],
            "batch_free": [prog.state_ident[s] for s in prog.batch_free],
            "stacks": stacks,
            "states": [(s, S[s], prog.state_ident[s], prog.prev_ident[s]) for s in prog.states],
            "cached": [(v, C[v], size) for v, size in prog.cached],
            "buffers": list(prog.buffers),
            "forward_lines": fwd,
            "forward_seq_lines": fwd_seq,
            "backward_lines": bwd,
            "bwd_states": [(s, S[s], prog.state_ident[s], prog.prev_ident[s],
                            prog.state_ident[s] in reads, prog.prev_ident[s] in reads)
                           for s in prog.states],
            "bwd_cached": [(v, C[v]) for v, _ in prog.cached if v in reads],
            "bwd_x": "x_t" in reads,
            "carries": [(s, ident, self.p.doprint(e) if e is not None else None, eq)
                        for s, ident, e, eq in prog.carries],
            "grads": grads,
            "grad_lines": grad_lines,
            "x_rest": self.p.doprint(prog.x_rest) if prog.x_rest is not None else None,
            "dxs_rest": dxs_rest,
            "xin": xin,
            "jacobian_lines": jac_lines,
            "blocks": [(u, v, jm, jd) for u, v, jm, jd, *_ in blocks],
            "rtrl_lines": self.rtrl(blocks),
            "rtrl_dense_max": _dense_max(blocks, prog),
        }


def _q(name: str) -> str:
    """A cell name as a string literal of the printed code."""
    return json.dumps(name)


def _width(rows) -> str:
    from collections import Counter

    from .lower import size_code

    return size_code(Counter(rows))


def _minus(a: str, b: str) -> str:
    return a if b == "0" else f"({a}) - ({b})"


def _dense_max(blocks, prog: Program) -> int:
    """Largest total state size at which RTRL multiplies S by the whole state Jacobian as one
    dense matrix instead of block by block (measured for the LSTM, float64, B=1: S = 32 dense
    75 us vs blocks 143 us per product, S = 64 dense 981 us vs blocks 804 us); a cell whose
    Jacobian has no dense block never does."""
    if not any(b[4] for b in blocks):
        return 0
    return 1 << 30 if len(prog.states) == 1 else 32


def render_kernel(cell: str | CellSpec) -> str:
    """The text of a cell's NumPy kernel module (``<module>.py`` of a kernel package: it imports
    the package's ``_runtime`` relatively)."""
    template = "numpy/kernel.py.j2"
    d = derive(cell)
    ctx = NumpyKernel(lower(d)).context(d.spec, template)
    return environment().get_template(template).render(**ctx)


def kernel_files(cell: str | CellSpec) -> dict[str, str]:
    """The files of one cell's NumPy kernel in a kernel package: ``<module>.py``
    (:func:`derive.codegen.naming.module_name`)."""
    return {f"{module_name(get_spec(cell).name)}.py": render_kernel(cell)}


def package_files(cells: list[str]) -> dict[str, str]:
    """A kernel package's ``__init__.py`` (listing the kernel modules) and ``_runtime.py``."""
    env = environment()
    init, runtime = "numpy/package_init.py.j2", "numpy/runtime.py.j2"
    return {"__init__.py": env.get_template(init).render(cells=list(cells), template=init),
            "_runtime.py": env.get_template(runtime).render(template=runtime)}
