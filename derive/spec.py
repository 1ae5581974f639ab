"""Declarative cell specs: a small expression language, its parser and the validated cell graph.

A cell is data (see :mod:`derive.cells` for the format). :class:`CellSpec` parses every node
expression into the AST below, resolves names, infers and checks sizes, orders the nodes
topologically and rejects bad specs with a :class:`SpecError` that names the cell and the culprit.

The AST is also the vector-expression language of the derivation: the arguments of d(.) and
d_2(.) are AST expressions (``d(s_{t-1})`` is ``Diag(Ref("s", lag=1))``).

Gates. A node whose whole expression is ``act(z)`` is split into a pre-activation node
``\\hat{g} = z`` (name ``g__hat``) and ``g = act(\\hat g)``. Its derivative d(act'(\\hat g)) is the
seed-001 factor d(g'_t), and reverse mode exposes the pre-activation adjoint of seed 002.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .activations import ACTIVATIONS

HAT = "__hat"
PREV = "_prev"
INPUT = "x"
DIMS = ("hidden", "input", "output")


class SpecError(ValueError):
    """A cell spec is malformed; the message names the cell and the culprit."""


# ----------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Expr:
    """Base of the vector-expression AST."""


@dataclass(frozen=True)
class Ref(Expr):
    """A named vector: input ``x``, node/state value, previous state (lag=1) or 1-D parameter."""

    name: str
    lag: int = 0
    kind: str = "node"  # node | input | param


@dataclass(frozen=True)
class Const(Expr):
    """A constant vector c * 1 (the all-ones vector times a number)."""

    value: Fraction


@dataclass(frozen=True)
class Call(Expr):
    """Elementwise activation act(arg)."""

    fn: str
    arg: Expr


@dataclass(frozen=True)
class DerivAt(Expr):
    """The elementwise derivative act'(arg). ``DerivAt(f, Ref('g__hat'))`` prints as g'_t."""

    fn: str
    arg: Expr


@dataclass(frozen=True)
class MatVec(Expr):
    """Matrix-vector product ``P @ arg`` with a 2-D parameter P."""

    param: str
    arg: Expr


@dataclass(frozen=True)
class Add(Expr):
    """Signed sum: ``terms`` is a tuple of (sign, expr), sign in {+1, -1}."""

    terms: tuple[tuple[int, Expr], ...]


@dataclass(frozen=True)
class Mul(Expr):
    """Hadamard product of two or more vectors."""

    factors: tuple[Expr, ...]


# ----------------------------------------------------------------------------- parser

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*@()]))"
)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            col = len(text) - len(text[pos:].lstrip())
            raise ValueError(f"unexpected character {bad!r} at column {col + 1}")
        kind = m.lastgroup or "op"
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent: expr := term (('+'|'-') term)*; term := mv ('*' mv)*;
    mv := primary ('@' mv)?; primary := NUM | NAME | NAME '(' expr ')' | '(' expr ')'."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            found = tok[1] or "end of expression"
            raise ValueError(f"expected {value!r} at column {tok[2] + 1}, found {found!r}")
        self.i += 1
        return tok

    def parse(self) -> Expr:
        e = self.expr()
        if self.peek()[0] != "end":
            tok = self.peek()
            raise ValueError(f"unexpected {tok[1]!r} at column {tok[2] + 1}")
        return e

    def expr(self) -> Expr:
        terms: list[tuple[int, Expr]] = []
        sign = 1
        if self.peek()[1] == "-":
            self.take()
            sign = -1
        terms.append((sign, self.term()))
        while self.peek()[1] in "+-" and self.peek()[0] == "op":
            sign = 1 if self.take()[1] == "+" else -1
            terms.append((sign, self.term()))
        if len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return Add(tuple(terms))

    def term(self) -> Expr:
        factors = [self.matvec()]
        while self.peek()[1] == "*":
            self.take()
            factors.append(self.matvec())
        return factors[0] if len(factors) == 1 else Mul(tuple(factors))

    def matvec(self) -> Expr:
        left = self.primary()
        if self.peek()[1] == "@":
            tok = self.take()
            if not isinstance(left, Ref):
                raise ValueError(f"left of '@' at column {tok[2] + 1} must be a matrix parameter")
            return MatVec(left.name, self.matvec())
        return left

    def primary(self) -> Expr:
        kind, value, col = self.take()
        if kind == "num":
            return Const(Fraction(value))
        if kind == "name":
            if self.peek()[1] == "(":
                self.take("(")
                arg = self.expr()
                self.take(")")
                return Call(value, arg)
            return Ref(value)
        if value == "(":
            e = self.expr()
            self.take(")")
            return e
        raise ValueError(f"unexpected {value or 'end of expression'!r} at column {col + 1}")


def parse_expr(text: str) -> Expr:
    """Parse one node expression into the (unresolved) AST."""
    return _Parser(text).parse()


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


def _auto_latex(name: str) -> str:
    """``W_xi`` -> ``W_{xi}``, ``s_tilde`` -> ``\\tilde{s}``, ``b`` -> ``b``."""
    if name.endswith("_tilde"):
        return r"\tilde{" + _auto_latex(name[: -len("_tilde")]) + "}"
    if "_" in name:
        base, sub = name.split("_", 1)
        return f"{base}_{sub}" if len(sub) == 1 else f"{base}_{{{sub.replace('_', ',')}}}"
    return name


class CellSpec:
    """A validated cell: parameters, nodes in topological order, states, readout.

    Build with :meth:`from_dict`. Equation references: the node expressions are the cell's
    forward equations (e.g. seed 001 eqs (1)-(6) for ``sigmoid_lstm``).
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
        self.name = str(name)
        self.title = title or self.name
        self._err_prefix = f"cell {self.name!r}"
        self.params: dict[str, Param] = {}
        for pname, shape in dict(params).items():
            self._add_param(pname, shape, readout=False)
        for pname, shape in dict(readout_params or {}).items():
            self._add_param(pname, shape, readout=True)
        self.states: tuple[str, ...] = tuple(states)
        if not self.states:
            raise self.error("needs at least one state (the output h first)")
        node_items = list(nodes.items()) if isinstance(nodes, Mapping) else list(nodes)
        readout_items = (list(readout.items()) if isinstance(readout, Mapping)
                         else list(readout or []))
        self.nodes: dict[str, Node] = {}
        self._build(node_items, readout_items)
        self.latex_names = {n: _auto_latex(n) for n in [*self.params, *self.nodes, INPUT]
                            if not n.endswith(HAT)}
        self.latex_names.update(dict(latex or {}))

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellSpec:
        """Build a spec from the plain-data format of :mod:`derive.cells`."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a cell spec must be a mapping, got {type(data).__name__}")
        known = {"name", "title", "params", "nodes", "states", "readout", "readout_params", "latex"}
        unknown = sorted(set(data) - known)
        name = data.get("name", "<unnamed>")
        if unknown:
            raise SpecError(f"cell {name!r}: unknown key(s) {unknown}; "
                            f"expected some of {sorted(known)}")
        for key in ("params", "nodes", "states"):
            if key not in data:
                raise SpecError(f"cell {name!r}: missing key {key!r}")
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

    def _add_param(self, pname: str, shape: Sequence[str], readout: bool) -> None:
        if pname in self.params:
            raise self.error(f"duplicate parameter name {pname!r}")
        bad = not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", pname)
        if bad or pname.endswith(PREV) or HAT in pname:
            raise self.error(f"bad parameter name {pname!r}")
        shape = tuple(shape) if not isinstance(shape, str) else (shape,)
        if len(shape) not in (1, 2) or any(d not in DIMS for d in shape):
            raise self.error(
                f"parameter {pname!r} has shape {shape}; expected 1 or 2 of the dimension "
                f"names {DIMS}"
            )
        self.params[pname] = Param(pname, shape, readout)

    def _build(self, node_items: list, readout_items: list) -> None:
        raw: dict[str, tuple[Expr, str, str]] = {}
        for group, items in (("node", node_items), ("readout", readout_items)):
            for item in items:
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise self.error(
                        f"each {group} must be a (name, expression) pair, got {item!r}")
                nname, text = item
                if nname in raw:
                    raise self.error(f"duplicate node name {nname!r}")
                if nname in self.params:
                    raise self.error(f"name {nname!r} is both a parameter and a node")
                if nname == INPUT or nname.endswith(PREV) or HAT in nname:
                    raise self.error(f"node name {nname!r} is reserved")
                try:
                    expr = parse_expr(str(text))
                except ValueError as exc:
                    raise self.error(f"node {nname!r}: cannot parse {text!r}: {exc}") from None
                raw[nname] = (expr, group, str(text))
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
        for nname in order:
            expr, group, text = raw[nname]
            e = resolved[nname]
            dim = self._dim(e, nname, dims)
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
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(n: str, path: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                cyc = path[path.index(n):] + [n]
                raise self.error(
                    f"cycle within one time step: {' -> '.join(cyc)} "
                    f"(use <state>{PREV} for a value from t-1)"
                )
            state[n] = 1
            for d in sorted(deps[n], key=names.index):
                visit(d, path + [n])
            state[n] = 2
            order.append(n)

        for n in names:
            visit(n, [])
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


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct subexpressions of e."""
    if isinstance(e, (Call, DerivAt, MatVec)):
        return (e.arg,)
    if isinstance(e, Add):
        return tuple(t for _, t in e.terms)
    if isinstance(e, Mul):
        return e.factors
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """e and all its subexpressions, pre-order."""
    yield e
    for c in children(e):
        yield from walk(c)


def params_in(e: Expr) -> set[str]:
    """Names of the parameters an expression uses."""
    return {x.name for x in walk(e) if isinstance(x, Ref) and x.kind == "param"} | \
        {x.param for x in walk(e) if isinstance(x, MatVec)}


def refs_in(e: Expr) -> set[Ref]:
    """The vector references an expression uses (nodes, x, previous states, 1-D params)."""
    return {x for x in walk(e) if isinstance(x, Ref)}
