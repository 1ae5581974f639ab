"""The torch backend: a lowered :class:`~derive.codegen.lower.Program` printed as a functional
torch module (``templates/torch/kernel.py.j2``): forward, BPTT and forward mode over a whole
sequence, with an optional mask for variable lengths.

**Printed on demand, not checked in.** Any cell must work (a user's spec dict or file as much as
a built-in name), so printing at run time is needed in any case; the text depends only on the
spec and derive's version, is printed in milliseconds after the derivation (which
``derive.derive`` caches) and imported once per process (:func:`load_torch_kernel`). Checking
in 24 more golden files under ``generated/`` would add a second, redundant path for the
built-in cells and one more staleness check to maintain, for a module nobody imports from
there (``derive.torch`` and ``derive.jax`` load it). :func:`render_torch_kernel` gives the
text to read.

The kernels are functional (no writes into preallocated arrays, no ``out=``) so that
``torch.func`` transforms run through them (``vmap`` of a write into an unbatched buffer
fails). The NumPy kernels' in-place statements are printed from their ``place``: a projection
adjoint written into columns of a buffer becomes a local, and the buffer's row at t is the
concatenation of its columns (:meth:`FunctionalKernel.backward_step`); the JAX backend reuses
this class with its own printer and template (``lax.scan`` bodies instead of Python loops).

Variable lengths (mask m_t, (T, B, 1) booleans, true while t < length): every state is frozen
after its sequence ends, s_t = m_t ? s_t' : s_{t-1}, the output is zero there (as torch's
packed sequences pad), and the backward step lets the carried adjoint pass such a step
unchanged with no contribution to any gradient: delta s_{t-1} = m_t ? (derived carry) :
delta s_t.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ..calculus.derivation import derive, get_spec
from ..spec import CellSpec
from .ir import Cols, Stmt, idents
from .lower import Program, TangentStep, lower, lower_tangent, size_code
from .numpy_backend import environment
from .torch_printer import TorchPrinter


class FunctionalKernel:
    """The template context of one cell's functional (torch or JAX) module."""

    printer_class = TorchPrinter
    template = "torch/kernel.py.j2"

    def __init__(self, prog: Program):
        self.prog = prog
        self.names = nm = prog.names
        self.buffers = [b for b, _ in prog.buffers]
        self.step_local = {b: nm.once(f"step:{b}", f"{b}_t") for b in self.buffers}
        xs = [st for st in prog.stacks if st.vec.kind == "input"]
        for st in xs:
            self.step_local[st.product] = nm.once(f"step:{st.product}", f"{st.product}_t")
        self.step_local["dhs"] = nm.once("step:dhs", "dhs_t")
        self.p = self.printer_class(steps=self.step_local)

    # ------------------------------------------------------------------ statements
    def stmt(self, s: Stmt) -> list[str]:
        lines = [f"# {s.comment}"] if s.comment else []
        if s.op == "+=":
            if s.place is None:
                lines.append(f"{s.target} = {s.target} + {self.p.doprint(s.expr)}")
            else:
                lines.append(self.p.add_into(s.place, self.p.doprint(s.expr)))
        else:
            lines.append(f"{s.target} = {self.p.doprint(s.expr)}")
        return lines

    def forward_step(self) -> list[str]:
        return [line for s in self.prog.forward for line in self.stmt(s)]

    def backward_step(self) -> tuple[list[str], list[tuple[str, str]]]:
        """The backward step's lines with every write into a buffer of projection adjoints
        made a local, then one line per buffer binding its row at t; returns (lines, [(buffer,
        its row's local)])."""
        prog, nm = self.prog, self.names
        slot_of: dict[tuple[str, str, str], str] = {}
        lines: list[str] = []
        alias: set[str] = set()
        for s in prog.backward:
            e = s.expr
            if s.op == "=" and isinstance(e, Cols) and e.array in self.buffers and e.time == "t":
                slot_of[(e.array, e.lo, e.hi)] = s.target  # the view; its value comes next
                alias.add(s.target)
                if s.comment:
                    lines.append(f"# {s.comment}")
                continue
            if s.op == "[...]=" and s.target in alias:
                lines += [f"{s.target} = {self.p.doprint(e)}"]
                continue
            if s.op == "[...]=":
                place = s.place
                assert isinstance(place, Cols), s
                local = nm.fresh(f"{place.array}_{len(slot_of)}")
                slot_of[(place.array, place.lo, place.hi)] = local
                lines += ([f"# {s.comment}"] if s.comment else []) + \
                    [f"{local} = {self.p.doprint(e)}"]
                continue
            lines += self.stmt(s)
        rows = []
        for buf in self.buffers:
            parts = []
            for lo, hi in self.columns(buf):
                parts.append(slot_of.get((buf, lo, hi)) or
                             self.p.zeros(f"(batch, ({hi}) - ({lo}))", "dhs_t"))
            lines.append(f"{self.step_local[buf]} = {self.p.concat(parts)}")
            rows.append((buf, self.step_local[buf]))
        return lines, rows

    def columns(self, buf: str) -> list[tuple[str, str]]:
        """The distinct slots of a buffer, in column order (they tile it)."""
        out: list[tuple[str, str]] = []
        for st in self.prog.stacks:
            for sl in st.slots:
                if sl.buffer == buf and (sl.lo, sl.hi) not in out:
                    out.append((sl.lo, sl.hi))
        return out  # made in increasing column order (lower.py's slot counter)

    def tangent_step(self, ts: TangentStep) -> list[str]:
        return [line for s in ts.stmts for line in self.stmt(s)]

    # ------------------------------------------------------------------ batch axes
    def batched(self) -> set[str]:
        """The forward's locals that have a batch axis: x_t, previous states, the products
        over them and everything computed from one of them (statements know what they read)."""
        prog = self.prog
        out = {"x_t", *prog.prev_ident.values(), *(st.product for st in prog.stacks)}
        out |= set(self.step_local.values())
        for s in prog.forward:
            if s.reads() & out:
                out.add(s.target)
        return out

    # ------------------------------------------------------------------ context
    def context(self, spec: CellSpec) -> dict:
        prog, nm = self.prog, self.names
        batched = self.batched()
        fwd = self.forward_step()
        bwd, rows = self.backward_step()
        ts = lower_tangent(prog)
        tan = self.tangent_step(ts)
        fwd_reads = set().union(*(s.reads() for s in prog.forward)) if prog.forward else set()
        bwd_reads = set(prog.backward_reads)
        for g in prog.grads:
            if g.terms is not None:
                bwd_reads |= idents(g.terms)
        tan_reads = set().union(*(s.reads() for s in ts.stmts))
        stack_ids = {st.ident for st in prog.stacks}
        x_ids = {st.ident for st in prog.stacks if st.vec.kind == "input"}
        unpack = [(p, nm.cell(p)) for p in prog.params] + \
            [(st.key, st.ident) for st in prog.stacks]
        state_ids = [(s, prog.state_ident[s], prog.prev_ident[s]) for s in prog.states]
        cached = [(v, nm.once(f"cache:{v}", f"C_{v}"), nm.once(f"list:{v}", f"L_{v}"),
                   v not in batched, size) for v, size in prog.cached]
        seq = {s: nm.once(f"seq:{s}", f"S_{nm.cell(s)}") for s in prog.states}
        lists = {s: nm.once(f"list:{s}", f"L_{nm.cell(s)}") for s in prog.states}
        keep = {s: nm.once(f"keep:{s}", f"keep_{nm.cell(s)}") for s in prog.states}
        tlists = {s: nm.once(f"tlist:{s}", f"L_t_{nm.cell(s)}") for s in prog.states}
        # weight gradients from the buffers, over all steps at once (as the NumPy kernel)
        grad_lines = []
        for i, st in enumerate(prog.stacks):
            vec = "xs" if st.vec.kind == "input" else f"{seq[st.vec.name]}[:-1]"
            for r, (buf, c0, c1, _, _, ks) in enumerate(st.runs()):
                if not any(g.kind == "stack" and g.stack == i and g.slot in ks
                           for g in prog.grads):
                    continue
                gname = nm.once(f"G:{i}:{r}", f"G_{st.ident}_{r}")
                grad_lines.append(f"{gname} = {buf}[:, :, {c0}:{c1}].reshape(steps * batch, -1)"
                                  f".T @ {vec}.reshape(steps * batch, -1)")
                base = st.row_range(ks[0])[0]
                for k in ks:
                    lo, hi = st.row_range(k)
                    grad_lines.append(f"grads[{st.params[k]!r}] = "
                                      f"{gname}[{_minus(lo, base)}:{_minus(hi, base)}]")
        colsums: dict[str, str] = {}
        for g in prog.grads:
            if g.kind == "colsum":
                buf, lo, hi = g.stored.buffer, g.stored.lo, g.stored.hi
                if buf not in colsums:
                    colsums[buf] = nm.once(f"colsum:{buf}", f"colsum_{buf}")
                    grad_lines.append(f"{colsums[buf]} = {buf}.reshape(steps * batch, -1)"
                                      f".sum(axis=0)")
                grad_lines.append(f"grads[{g.param!r}] = {colsums[buf]}[{lo}:{hi}]")
        dxs_rest = nm.once("dxs_rest", "dxs_rest") if prog.x_rest is not None else None
        xin = None
        if prog.x_stack >= 0:
            st = prog.stacks[prog.x_stack]
            xin = " + ".join([f"{buf}[:, :, {c0}:{c1}] @ {st.ident}[{r0}:{r1}]"
                              for buf, c0, c1, r0, r1, _ in st.runs()] +
                             ([dxs_rest] if dxs_rest else []))
        elif dxs_rest:
            xin = dxs_rest
        bias_stack = []
        if prog.bias_fold:
            xst = next(st for st in prog.stacks if st.vec.kind == "input")
            for pk, biases in zip(xst.params, prog.bias_fold, strict=True):
                bias_stack.append(" + ".join(f"params[{b!r}]" for b in biases) or
                                  self.p.zeros(f"params[{pk!r}].shape[0]", f"params[{pk!r}]"))
        taken = set(spec.params)
        return {
            "cell": spec.name,
            "title": spec.title,
            "template": self.template,
            "equations": [f"{n} = {node.source}" for n, node in spec.nodes.items()
                          if node.role not in ("hat", "readout")],
            "params": list(prog.param_shapes),
            "input_key": "xs" if "xs" not in taken else "_xs",
            "state0_keys": {s: (f"{s}0" if f"{s}0" not in taken else f"_{s}0")
                            for s in prog.states},
            "bias_stack": bias_stack,
            "stacks": [{"key": st.key, "ident": st.ident, "params": list(st.params),
                        "product": st.product, "input": st.vec.kind == "input",
                        "local": self.step_local.get(st.product)} for st in prog.stacks],
            "unpack_fwd": [(k, v) for k, v in unpack if v in fwd_reads | stack_ids],
            "unpack_bwd": [(k, v) for k, v in unpack if v in bwd_reads or
                           (v in x_ids and prog.x_stack >= 0)],
            "unpack_tan": [(k, v) for k, v in unpack if v in fwd_reads | stack_ids | tan_reads],
            "states": state_ids,
            "batch_free": [prog.state_ident[s] for s in prog.batch_free],
            "seq": seq, "lists": lists, "keep": keep, "tlists": tlists,
            "cached": cached,
            "fwd_x": "x_t" in fwd_reads,
            "forward_lines": fwd,
            "backward_lines": bwd,
            "rows": rows,
            "buffers": [(b, cols) for b, cols in prog.buffers],
            "bwd_x": "x_t" in bwd_reads,
            "bwd_states": [(s, seq[s], prog.state_ident[s], prog.prev_ident[s],
                            prog.state_ident[s] in bwd_reads, prog.prev_ident[s] in bwd_reads)
                           for s in prog.states],
            "bwd_cached": [(v, C) for v, C, *_ in cached if v in bwd_reads],
            "carries": [(s, ident, self.p.doprint(e) if e is not None else None, eq)
                        for s, ident, e, eq in prog.carries],
            "accs": [(g.param, g.acc, self.p.doprint(g.terms)) for g in prog.grads
                     if g.kind == "acc"],
            "zero_grads": [g.param for g in prog.grads if g.kind == "zero"],
            "grad_lines": grad_lines,
            "x_rest": self.p.doprint(prog.x_rest) if prog.x_rest is not None else None,
            "dxs_rest": dxs_rest,
            "xin": xin,
            "tangent": {"state": [(s, ts.tangent[s], ts.prev[s]) for s in prog.states],
                        "params": [(p, ts.params[p]) for p in prog.params
                                   if ts.params[p] in tan_reads],
                        "x": ts.x, "reads_x": ts.x in tan_reads, "lines": tan,
                        "batched": {ts.tangent[s]: bool(s_reads & (batched | {ts.x} |
                                                                   set(ts.prev.values())))
                                    for s, s_reads in zip(prog.states,
                                                          [st.reads() for st in ts.stmts],
                                                          strict=True)}},
            "tan_x": "x_t" in tan_reads | fwd_reads,
            "dhs_t": self.step_local["dhs"],
            "blists": {**{b: nm.once(f"list:{b}", f"L_{b}") for b in self.buffers},
                       "dxs_rest": nm.once("list:dxs_rest", "L_dxs_rest")},
        }


def _minus(a: str, b: str) -> str:
    return a if b == "0" else f"({a}) - ({b})"


def render(cell: str | CellSpec, kernel: type[FunctionalKernel]) -> str:
    d = derive(cell)
    k = kernel(lower(d))
    return environment().get_template(k.template).render(**k.context(d.spec))


def render_torch_kernel(cell: str | CellSpec) -> str:
    """The text of a cell's torch module (see the module docstring)."""
    return render(cell, FunctionalKernel)


_FOLDER: list[Path] = []


def import_text(text: str, stem: str) -> ModuleType:
    """Import a printed module once per process, named after its text's hash, from a private
    folder of the process."""
    name = f"_derive_{stem}_{hashlib.sha1(text.encode()).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    if not _FOLDER:
        _FOLDER.append(Path(tempfile.mkdtemp(prefix="derive-kernels-")))
        sys.path.insert(0, str(_FOLDER[0]))
    path = _FOLDER[0] / f"{name}.py"
    if not path.exists():
        path.write_text(text)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def load_torch_kernel(cell: str | Mapping[str, Any] | CellSpec) -> ModuleType:
    """A cell's torch module (a built-in name, a spec dict or a CellSpec), printed and
    imported once per process."""
    return import_text(render_torch_kernel(get_spec(cell)), "torch")


__all__ = ["FunctionalKernel", "load_torch_kernel", "render_torch_kernel", "size_code"]
