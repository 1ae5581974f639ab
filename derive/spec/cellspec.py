"""Declarative cell specs: the validated cell graph, and the rules of a symbol's LaTeX name.

A cell is data (see :mod:`derive.spec.cells` for the format). :class:`CellSpec` parses every node
expression (:mod:`derive.spec.parse`) into the AST of :mod:`derive.spec.expr`, resolves names,
infers and checks sizes, orders the nodes topologically and rejects bad specs with a
:class:`SpecError` that names the cell and the culprit.

Validation. Every field is checked when read (:class:`CellSpec`): names are identifiers starting
with a letter (:func:`name_problem`), ``x``, ``*_prev``, names containing ``__`` and activation
names are reserved; shapes use the dimension names of :data:`DIMS` (``output`` only in
``readout_params``); ``states`` is a list without repeats; a readout reads only the output state;
the ``latex`` names must print one-to-one. Limits keep every consumer inside Python's recursion
limit: :data:`MAX_DEPTH` levels of nesting per expression, :data:`MAX_TERMS` operands per sum or
product, :data:`MAX_CHAIN` expression levels along a chain of same-step nodes. Numbers are
decimal literals (``2``, ``0.5``, ``.5``, ``1.``, ``1e-3``), read exactly as fractions.

Gates. A node whose whole expression is ``act(z)`` is split into a pre-activation node
``\\hat{g} = z`` (name ``g__hat``) and ``g = act(\\hat g)``. Its derivative d(act'(\\hat g)) is the
seed-001 factor d(g'_t), and reverse mode exposes the pre-activation adjoint of seed 002.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .activations import ACTIVATIONS
from .expr import (
    HAT,
    INPUT,
    PREV,
    Add,
    Call,
    Const,
    Expr,
    MatVec,
    Mul,
    Ref,
    SpecError,
    children,
    params_in,
)
from .parse import MAX_CHAIN, parse_expr

DIMS = ("hidden", "input", "output")


# ----------------------------------------------------------------------------- cell spec


@dataclass(frozen=True)
class Param:
    """A parameter: ``shape`` in dimension names; 2-D acts by ``@``, 1-D is a vector."""

    name: str
    shape: tuple[str, ...]
    readout: bool = False

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) == 2


@dataclass(frozen=True)
class Node:
    """A named vector computed at time t. ``gate`` nodes are act(\\hat g); ``hat`` nodes are
    pre-activations; ``state`` nodes are carried to t+1; ``readout`` nodes feed no recursion."""

    name: str
    expr: Expr
    dim: str
    role: str = "node"  # node | gate | hat | state | readout
    source: str = ""  # the expression as written


def _timed_name(latex: str) -> str:
    """``g_1`` -> ``{g_1}``: a symbol with a top-level subscript as one group."""
    depth = 0
    for ch in latex:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "_" and depth == 0:
            return "{" + latex + "}"
    return latex


def _auto_latex(name: str) -> str:
    """``W_xi`` -> ``W_{xi}``, ``s_tilde`` -> ``\\tilde{s}``, ``b`` -> ``b``."""
    if name.endswith("_tilde"):
        return r"\tilde{" + _auto_latex(name[: -len("_tilde")]) + "}"
    if "_" in name:
        base, sub = name.split("_", 1)
        return f"{base}_{sub}" if len(sub) == 1 else f"{base}_{{{sub.replace('_', ',')}}}"
    return name


_IDENT = re.compile(r"[A-Za-z0-9_]+")
_CELL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _type(value: Any) -> str:
    """``int 5``, ``str 'h'``: what came, for an error message."""
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def name_problem(name: Any) -> str:
    """Why ``name`` cannot name a node or a parameter ('' when it can).

    A name is an identifier of the expression language, ``[A-Za-z][A-Za-z0-9_]*``: letters,
    digits and '_', starting with a letter. Decisions:

    * no leading '_' (the tokenizer would read ``_a``, but the automatic LaTeX name splits at the
      first '_', ``W_xi`` -> ``W_{xi}``, and would leave a subscript without a base) and no
      trailing '_' (an empty subscript: ``a_`` would print like ``a``);
    * no '__' anywhere: the engine derives internal names with it (``g__hat`` is the
      pre-activation of the gate g);
    * ``x`` (the input x_t) and ``<anything>_prev`` (the state at t-1) are reserved;
    * no activation name (``tanh``, ``sigmoid``, ...): ``tanh`` next to ``tanh(.)`` would read as
      the function in every printed form (tanh_t beside tanh(c_t));
    * Python keywords and names the kernel printer uses itself (``lambda``, ``np``, ``t``,
      ``xs``, ``U1``, ``d_h``) are valid: the printer renames what would clash.
    """
    if not isinstance(name, str):
        return f"expected a name string, got {_type(name)}"
    if not name:
        return "expected a non-empty name"
    if not _IDENT.fullmatch(name) or name[0].isdigit():
        return ("expected an identifier: letters, digits and '_', starting with a letter "
                "(as in W_xi or h_tilde)")
    if name.startswith("_"):
        return ("a name may not start with '_' (its automatic LaTeX name would be a subscript "
                "without a base)")
    if "__" in name:
        return (f"a name may not contain '__': derive derives internal names with it "
                f"(g{HAT} is the pre-activation of a gate g)")
    if name.endswith("_"):
        return "a name may not end with '_' (its LaTeX name would have an empty subscript)"
    if name == INPUT:
        return "'x' is reserved: it is the input x_t"
    if name.endswith(PREV):
        return f"names ending in {PREV!r} are reserved: <state>{PREV} is a state at t-1"
    if name in ACTIVATIONS:
        return (f"{name!r} is an activation; a node or parameter named like it would read as the "
                f"function (activations: {', '.join(sorted(ACTIVATIONS))})")
    return ""


def _depth(e: Expr, below: Mapping[str, int]) -> int:
    """Levels of the expression tree, a same-step node reference counting the levels below it."""
    if isinstance(e, Ref):
        return 1 + (below.get(e.name, 0) if e.kind == "node" and e.lag == 0 else 0)
    return 1 + max((_depth(c, below) for c in children(e)), default=0)


class CellSpec:
    """A validated cell: parameters, nodes in topological order, states, readout.

    Build with :meth:`from_dict`. Equation references: the node expressions are the cell's
    forward equations (e.g. seed 001 eqs (1)-(6) for ``sigmoid_lstm``).

    Every field is checked when read; a spec that is accepted derives and prints in every output,
    anything else raises a :class:`SpecError` naming the cell, the field and the culprit.
    """

    def __init__(
        self,
        name: str,
        params: Mapping[str, Sequence[str]],
        nodes: Sequence[tuple[str, str]] | Mapping[str, str],
        states: Sequence[str],
        *,
        title: str = "",
        readout: Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
        readout_params: Mapping[str, Sequence[str]] | None = None,
        latex: Mapping[str, str] | None = None,
    ):
        self._err_prefix = f"cell {name!r}" if isinstance(name, str) else f"cell {_type(name)}"
        if not isinstance(name, str) or not _CELL_NAME.fullmatch(name):
            raise self.error(
                f"name: expected a string of letters, digits, '_', '.' and '-' that starts with "
                f"a letter or digit (it names the cell's LaTeX labels and kernel), got "
                f"{_type(name)}")
        self.name = name
        if not isinstance(title, str):
            raise self.error(f"title: expected a string, got {_type(title)}")
        if not (title.isascii() and title.isprintable()) or "\\" in title or '"""' in title:
            raise self.error(
                f"title: expected one line of printable ASCII text without backslashes or "
                f"triple quotes (it is printed in the LaTeX article, which pdflatex reads, and "
                f"in the kernel's docstring), got {title!r}")
        self.title = title or self.name
        self.params: dict[str, Param] = {}
        for field_name, group, ro in (("params", params, False),
                                      ("readout_params", readout_params, True)):
            if group is None and ro:
                continue
            if not isinstance(group, Mapping):
                raise self.error(f"{field_name}: expected a mapping of parameter name -> shape "
                                 f"(a dimension name or a list of them), got {_type(group)}")
            for pname, shape in group.items():
                self._add_param(pname, shape, readout=ro)
        if isinstance(states, str) or not isinstance(states, (list, tuple)):
            raise self.error(f"states: expected a non-empty list of state names, output first "
                             f"(e.g. ['h', 'c']), got {_type(states)}")
        if not states:
            raise self.error("needs at least one state (the output h first)")
        for s in states:
            if not isinstance(s, str):
                raise self.error(f"states: expected state names (strings), got {_type(s)}")
        dup = sorted({s for s in states if list(states).count(s) > 1})
        if dup:
            raise self.error(f"states: {dup[0]!r} is listed more than once")
        self.states: tuple[str, ...] = tuple(states)
        node_items = self._items("nodes", nodes)
        readout_items = self._items("readout", readout) if readout is not None else []
        self._data: dict[str, Any] = {
            "name": name, "title": title,
            "params": {p.name: list(p.shape) for p in self.params.values() if not p.readout},
            "nodes": dict(node_items), "states": list(self.states),
            "readout": dict(readout_items),
            "readout_params": {p.name: list(p.shape) for p in self.params.values()
                               if p.readout},
            "latex": dict(latex) if isinstance(latex, Mapping) else {}}
        self.nodes: dict[str, Node] = {}
        self._build(node_items, readout_items)
        # a node is printed with _t attached: a subscript of its own name is kept in a group
        # ({g_1}_t, never the double subscript g_1_t); parameters keep theirs (W_{xi})
        self.latex_names = {n: _auto_latex(n) for n in [*self.params, INPUT]}
        self.latex_names.update({n: _timed_name(_auto_latex(n)) for n in self.nodes
                                 if not n.endswith(HAT)})
        self._check_latex(latex)
        if not any("hidden" in self.params[p].shape for p in self.cell_params):
            raise self.error(f"no parameter of the cell ({self.cell_params or 'none'}) has "
                             f"the hidden dimension, so nothing fixes the size of the states "
                             f"{list(self.states)}; declare at least one parameter of shape "
                             f"(hidden,), (hidden, hidden) or (hidden, input)")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellSpec:
        """Build a spec from the plain-data format of :mod:`derive.spec.cells`."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a cell spec must be a mapping, got {type(data).__name__}")
        known = ("name", "title", "params", "nodes", "states", "readout", "readout_params",
                 "latex")
        name = data.get("name", "unnamed")
        where = f"cell {name!r}" if isinstance(name, str) else f"cell {_type(name)}"
        unknown = [k for k in data if k not in known]
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {unknown}; expected some of "
                            f"{sorted(known)}")
        for key in ("params", "nodes", "states"):
            if key not in data:
                raise SpecError(f"{where}: missing key {key!r}")
        return cls(
            name,
            data["params"],
            data["nodes"],
            data["states"],
            title=data.get("title", ""),
            readout=data.get("readout"),
            readout_params=data.get("readout_params"),
            latex=data.get("latex"),
        )

    def error(self, msg: str) -> SpecError:
        return SpecError(f"{self._err_prefix}: {msg}")

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data in the format of :meth:`from_dict` (empty optional fields
        left out): ``CellSpec.from_dict(s.to_dict())`` is ``s`` again."""
        import copy

        return {k: copy.deepcopy(v) for k, v in self._data.items()
                if v or k in ("params", "nodes", "states")}

    @property
    def digest(self) -> str:
        """A hash of the spec's content (SHA-256 of its canonical JSON): two specs with one
        digest are the same cell, whatever their names say."""
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _items(self, field_name: str, value: Any) -> list[tuple[str, str]]:
        """The (name, expression) pairs of ``nodes`` or ``readout``: a mapping or a list of
        pairs, every name a valid name and every expression a string."""
        group = "node" if field_name == "nodes" else "readout"
        if isinstance(value, Mapping):
            items = list(value.items())
        elif isinstance(value, (list, tuple)):
            items = []
            for item in value:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise self.error(f"{field_name}: each {group} must be a (name, expression) "
                                     f"pair, got {_type(item)}")
                items.append((item[0], item[1]))
        else:
            raise self.error(f"{field_name}: expected a mapping of name -> expression or a list "
                             f"of (name, expression) pairs, got {_type(value)}")
        for nname, text in items:
            problem = name_problem(nname)
            if problem:
                raise self.error(f"{field_name}: bad {group} name {nname!r}: {problem}")
            if not isinstance(text, str):
                raise self.error(f"{field_name}: {group} {nname!r}: expected an expression "
                                 f"string, got {_type(text)}")
        return items

    def _add_param(self, pname: Any, shape: Any, readout: bool) -> None:
        field_name = "readout_params" if readout else "params"
        problem = name_problem(pname)
        if problem:
            raise self.error(f"{field_name}: bad parameter name {pname!r}: {problem}")
        if pname in self.params:
            raise self.error(f"duplicate parameter name {pname!r}")
        if isinstance(shape, str):
            shape = (shape,)
        if not isinstance(shape, (list, tuple)) or len(shape) not in (1, 2) or \
                any(not isinstance(d, str) or d not in DIMS for d in shape):
            raise self.error(
                f"parameter {pname!r} has shape {shape!r}; expected 1 or 2 of the dimension "
                f"names {DIMS} (a name or a list of them)"
            )
        shape = tuple(shape)
        if not readout and "output" in shape:
            raise self.error(
                f"parameter {pname!r} has shape {shape}: only readout parameters "
                f"(readout_params) may use the output dimension; the output size exists only "
                f"for the readout")
        self.params[pname] = Param(pname, shape, readout)

    def _check_latex(self, latex: Any) -> None:
        """``latex``: symbol name -> LaTeX; the names must print, and print apart."""
        if latex is None:
            latex = {}
        if not isinstance(latex, Mapping):
            raise self.error(f"latex: expected a mapping of symbol name -> LaTeX, got "
                             f"{_type(latex)}")
        known = list(self.latex_names)
        for sym, tex in latex.items():
            if sym not in self.latex_names:
                raise self.error(f"latex: unknown symbol {sym!r}; expected some of {known}")
            if not isinstance(tex, str):
                raise self.error(f"latex: {sym}: expected a LaTeX string, got {_type(tex)}")
            problem = latex_problem(tex)
            if problem:
                raise self.error(f"latex: {sym} = {tex!r}: {problem}")
        self.latex_names.update({k: v.strip() for k, v in latex.items()})
        # a name that derive prints itself (d, I, L, M_t, ...) is checked like a rename
        timed = {INPUT, *(n for n in self.nodes if not n.endswith(HAT))}
        clash = {s for s, v in self.latex_names.items()
                 if v in (_RESERVED_TIMED if s in timed else _RESERVED_PARAM)}
        try:
            check_symbols("native", self, self.latex_names, set(latex) | clash, SpecError)
        except SpecError as exc:
            detail = str(exc).split(": ", 1)[-1]
            raise self.error(f"the LaTeX names do not work: {detail} (give the symbol another "
                             f"name or a 'latex' entry)") from None

    def _build(self, node_items: list, readout_items: list) -> None:
        raw: dict[str, tuple[Expr, str, str]] = {}
        for group, items in (("node", node_items), ("readout", readout_items)):
            for nname, text in items:
                if nname in raw:
                    raise self.error(f"duplicate node name {nname!r}")
                if nname in self.params:
                    raise self.error(f"name {nname!r} is both a parameter and a node")
                try:
                    expr = parse_expr(text)
                except ValueError as exc:
                    shown = text if len(text) <= 80 else text[:77] + "..."
                    raise self.error(f"{group} {nname!r}: cannot parse {shown!r}: {exc}") \
                        from None
                raw[nname] = (expr, group, text)
        for s in self.states:
            if s not in raw or raw[s][1] != "node":
                raise self.error(f"state {s!r} is not defined as a node")
        readouts = {n for n, (_, g, _) in raw.items() if g == "readout"}
        # resolve names, collect same-time dependencies
        resolved: dict[str, Expr] = {}
        deps: dict[str, set[str]] = {}
        for nname, (expr, group, _) in raw.items():
            found: set[str] = set()
            resolved[nname] = self._resolve(expr, nname, raw, readouts, group, found)
            deps[nname] = found
        order = self._toposort(list(raw), deps)
        dims: dict[str, str] = {}
        depth: dict[str, int] = {}
        for nname in order:
            expr, group, text = raw[nname]
            e = resolved[nname]
            depth[nname] = _depth(e, depth)
            if depth[nname] > MAX_CHAIN:
                raise self.error(
                    f"node {nname!r}: the chain of same-step nodes it depends on is nested "
                    f"{depth[nname]} expression levels deep; expected at most {MAX_CHAIN}")
            dim = self._dim(e, nname, dims)
            if dim is None:  # a number alone: 1, 1e-3
                raise self.error(f"node {nname!r}: an expression of constants only has no size")
            if nname in self.states and dim != "hidden":
                raise self.error(f"state {nname!r} has size {dim}; states must have size hidden")
            dims[nname] = dim
            role = ("readout" if group == "readout"
                    else "state" if nname in self.states else "node")
            if isinstance(e, Call):
                hat = nname + HAT
                self.nodes[hat] = Node(hat, e.arg, dim, "readout" if role == "readout" else "hat",
                                       text)
                self.nodes[nname] = Node(nname, Call(e.fn, Ref(hat)), dim,
                                         "gate" if role == "node" else role, text)
            else:
                self.nodes[nname] = Node(nname, e, dim, role, text)
        used = set()
        for node in self.nodes.values():
            used |= params_in(node.expr)
        unused = sorted(set(self.params) - used)
        if unused:
            raise self.error(f"parameter(s) {unused} are declared but never used")

    def _resolve(self, e: Expr, where: str, raw: dict, readouts: set, group: str,
                 found: set[str]) -> Expr:
        def go(e: Expr) -> Expr:
            if isinstance(e, Ref):
                n = e.name
                if n == INPUT:
                    if group == "readout":
                        raise self.error(f"readout {where!r} may not use x")
                    return Ref(INPUT, 0, "input")
                if n.endswith(PREV):
                    base = n[: -len(PREV)]
                    if base not in self.states:
                        raise self.error(
                            f"node {where!r}: {n!r} refers to {base!r}, which is not a state "
                            f"(states: {list(self.states)})"
                        )
                    if group == "readout":
                        raise self.error(f"readout {where!r} may not use previous states")
                    return Ref(base, 1, "node")
                if n in self.params:
                    p = self.params[n]
                    if p.is_matrix:
                        raise self.error(
                            f"node {where!r}: matrix parameter {n!r} must be used as {n} @ v")
                    if p.readout != (group == "readout"):
                        raise self.error(f"node {where!r}: parameter {n!r} belongs to the "
                                         f"{'readout' if p.readout else 'cell'}")
                    return Ref(n, 0, "param")
                if n in raw:
                    if n in readouts and group != "readout":
                        raise self.error(f"node {where!r} may not use readout {n!r}")
                    if group == "readout" and n not in readouts and n != self.states[0]:
                        raise self.error(
                            f"readout {where!r} may not use {n!r}: a readout reads the output "
                            f"state {self.states[0]!r} at t (the loss reaches the cell through "
                            f"it), readout parameters, constants and other readout nodes")
                    found.add(n)
                    return Ref(n, 0, "node")
                raise self.error(
                    f"node {where!r}: undefined name {n!r}; known names: x, "
                    f"{', '.join(s + PREV for s in self.states)}, "
                    f"parameters {sorted(self.params)}, "
                    f"nodes {sorted(raw)}"
                )
            if isinstance(e, Const):
                return e
            if isinstance(e, Call):
                if e.fn not in ACTIVATIONS:
                    raise self.error(
                        f"node {where!r}: unknown activation {e.fn!r}; expected one of "
                        f"{sorted(ACTIVATIONS)}"
                    )
                return Call(e.fn, go(e.arg))
            if isinstance(e, MatVec):
                if e.param not in self.params:
                    raise self.error(f"node {where!r}: undefined matrix parameter {e.param!r} in "
                                     f"'{e.param} @ ...'; parameters: {sorted(self.params)}")
                p = self.params[e.param]
                if not p.is_matrix:
                    raise self.error(f"node {where!r}: {e.param!r} has shape {p.shape}, "
                                     f"'{e.param} @ v' needs a 2-D parameter")
                if p.readout != (group == "readout"):
                    raise self.error(f"node {where!r}: parameter {e.param!r} belongs to the "
                                     f"{'readout' if p.readout else 'cell'}")
                return MatVec(e.param, go(e.arg))
            if isinstance(e, Add):
                return Add(tuple((s, go(t)) for s, t in e.terms))
            if isinstance(e, Mul):
                return Mul(tuple(go(f) for f in e.factors))
            raise TypeError(e)  # pragma: no cover

        return go(e)

    def _toposort(self, names: list[str], deps: dict[str, set[str]]) -> list[str]:
        """Dependencies first, otherwise in spec order (a depth-first post-order, iterative so
        that a long chain of nodes cannot exhaust the recursion limit)."""
        order: list[str] = []
        state: dict[str, int] = {}
        index = {n: i for i, n in enumerate(names)}
        for root in names:
            if state.get(root) == 2:
                continue
            state[root] = 1
            path = [root]
            stack = [iter(sorted(deps[root], key=index.__getitem__))]
            while stack:
                d = next(stack[-1], None)
                if d is None:
                    stack.pop()
                    n = path.pop()
                    state[n] = 2
                    order.append(n)
                    continue
                if state.get(d) == 2:
                    continue
                if state.get(d) == 1:
                    cyc = path[path.index(d):] + [d]
                    raise self.error(
                        f"cycle within one time step: {' -> '.join(cyc)} "
                        f"(use <state>{PREV} for a value from t-1)"
                    )
                state[d] = 1
                path.append(d)
                stack.append(iter(sorted(deps[d], key=index.__getitem__)))
        return order

    def _dim(self, e: Expr, where: str, dims: dict[str, str]) -> str | None:
        """Infer the size of e; None for a constant (broadcasts)."""
        if isinstance(e, Ref):
            if e.kind == "input":
                return "input"
            if e.kind == "param":
                return self.params[e.name].shape[0]
            if e.lag:
                return "hidden"
            return dims[e.name]
        if isinstance(e, Const):
            return None
        if isinstance(e, Call):
            return self._dim(e.arg, where, dims)
        if isinstance(e, MatVec):
            rows, cols = self.params[e.param].shape
            d = self._dim(e.arg, where, dims)
            if d is not None and d != cols:
                raise self.error(
                    f"node {where!r}: shape mismatch in '{e.param} @ ...': {e.param} has "
                    f"shape ({rows}, {cols}) but its operand has size {d}"
                )
            return rows
        parts = [t for _, t in e.terms] if isinstance(e, Add) else list(e.factors)  # type: ignore[attr-defined]
        got = [self._dim(p, where, dims) for p in parts]
        sized = {d for d in got if d is not None}
        if len(sized) > 1:
            op = "+" if isinstance(e, Add) else "*"
            raise self.error(f"node {where!r}: shape mismatch in '{op}': operands of sizes "
                             f"{sorted(sized)}")
        if not sized:
            raise self.error(f"node {where!r}: an expression of constants only has no size")
        return sized.pop()

    # -- queries ---------------------------------------------------------------------------
    @property
    def cell_params(self) -> list[str]:
        """Parameters of the recurrence (readout parameters excluded), in spec order."""
        return [p for p, v in self.params.items() if not v.readout]

    @property
    def readout_params(self) -> list[str]:
        return [p for p, v in self.params.items() if v.readout]

    @property
    def order(self) -> list[str]:
        """All nodes (hat nodes included) in topological order."""
        return list(self.nodes)

    @property
    def readout_nodes(self) -> list[str]:
        return [n for n, v in self.nodes.items() if v.role == "readout" and not n.endswith(HAT)]

    def __repr__(self) -> str:
        return f"CellSpec({self.name!r}, states={self.states}, params={list(self.params)})"


# ----------------------------------------------------------------------------- LaTeX names
# The rules a cell's LaTeX names follow (the spec's own ``latex`` field, and every notation
# that renames symbols, derive.printing.notation): what the printers attach to a symbol decides what
# a name may contain, and a few symbols derive prints itself are reserved.

_FORBIDDEN_CHARS = "$&%#"
_FORBIDDEN_COMMANDS = ("input", "include", "write", "def", "edef", "gdef", "newcommand",
                       "renewcommand", "begin", "end", "catcode", "immediate", "openout", "read",
                       "usepackage", "documentclass", "par")
_RESERVED_PARAM = {"d", "d_2", "I", "L", "M_t", "N_t", r"\ell"}
_RESERVED_TIMED = {"d", "M", "N", "L", "I", r"\ell", r"\delta"}


def renameable(spec: CellSpec) -> list[str]:
    """Spec names a profile may rename: parameters, nodes (pre-activations excluded) and x."""
    return [*spec.params, *(n for n in spec.nodes if not n.endswith(HAT)), INPUT]


def latex_problem(v: str) -> str:
    """Why a LaTeX symbol name cannot be used ('' when it can)."""
    if not v.strip():
        return "expected a non-empty LaTeX symbol"
    if len(v) > 100 or "\n" in v or "\r" in v:
        return "expected a short one-line LaTeX symbol"
    bad = [c for c in _FORBIDDEN_CHARS if c in v]
    if bad or "\\\\" in v:
        return f"expected a math-mode symbol without {' '.join(_FORBIDDEN_CHARS)} or \\\\"
    cmds = set(re.findall(r"\\([A-Za-z]+)", v)) & set(_FORBIDDEN_COMMANDS)
    if cmds:
        return f"expected a math-mode symbol, got the command(s) {sorted(cmds)}"
    depth = 0
    for ch in re.sub(r"\\[{}]", "", v):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return "unbalanced braces"
    return "unbalanced braces" if depth else ""


def _top_level(v: str) -> str:
    """The characters of v outside every {...} group (escaped braces dropped)."""
    out, depth = [], 0
    for ch in re.sub(r"\\[{}]", "", v):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def check_symbols(profile: str, spec: CellSpec, names: dict[str, str], renamed: set[str],
                  error: type[ValueError] = ValueError) -> None:
    """Renamed symbols must print (no clash with the decorations the printers add) and the
    whole cell's notation must stay one-to-one."""
    where = f"notation {profile!r}, cell {spec.name!r}"
    timed = {INPUT, *(n for n in spec.nodes if not n.endswith(HAT))}
    shown: dict[str, str] = {}
    for sym in renameable(spec):
        v = names.get(sym, sym)
        top = _top_level(v)
        if sym in renamed:
            if sym in timed:
                if any(c in top for c in "_^'"):
                    raise error(
                        f"{where}: {sym} = {v!r}: a node or input is printed with _t, '_t and "
                        f"\\bar{{}} attached, so its name may not have a top-level subscript, "
                        f"superscript or prime; wrap it in braces, e.g. '{{{v}}}'")
                if v in _RESERVED_TIMED:
                    raise error(f"{where}: {sym} = {v!r} clashes with a symbol derive "
                                        f"prints itself; reserved: {sorted(_RESERVED_TIMED)}")
            else:
                if spec.params[sym].is_matrix and any(c in top for c in "^'"):
                    raise error(
                        f"{where}: {sym} = {v!r}: a matrix is printed with ^\\top attached, so "
                        f"its name may not have a top-level superscript or prime; wrap it in "
                        f"braces, e.g. '{{{v}}}'")
                if v in _RESERVED_PARAM:
                    raise error(f"{where}: {sym} = {v!r} clashes with a symbol derive "
                                        f"prints itself; reserved: {sorted(_RESERVED_PARAM)}")
        printed = (v + "_t") if sym in timed else v
        key = re.sub(r"\s+", "", printed)
        if key in shown:
            raise error(f"{where}: {shown[key]} and {sym} would both print as "
                                f"{printed!r}; a notation must keep symbols apart")
        shown[key] = sym
