"""The author's cell, read from the forward equations the document states (issue 16, item 1).

A *forward equation* is an equation whose left-hand side is one symbol at time t (``c^t``,
``\\hat{i}_t``, ``h^{(t)}``, ``y_t``) and whose right-hand side holds no derivative. The first
such equation of a symbol defines it; a chain ``a^t = \\tanh(\\hat{a}^t) = \\tanh(W_a x^t + U_a
h^{t-1})`` also defines ``\\hat{a}^t``. A symbol read at t-1 is a *state*; a time-indexed symbol
that no equation defines is an *input*; a symbol without a time index is a *parameter* (a
matrix where it multiplies a vector from the left, else a vector). Nodes that no state depends
on and that are computed through a matrix (``y_t = \\sigma_y(V h_t + b_y)``) are the cell's
*readout*; a readout may be written without its time index (``\\hat{y} = \\text{softmax}(W_y h_t
+ b_y)``: it reads h at t, so it is a node at t). The loss is a random linear function of the
readout (of the states without one); of a softmax readout written ``\\hat{y}``, the cross-entropy
against a target ``y`` that sums to 1, the pairing under which dL/dz = \\hat{y} - y.

Equations whose left-hand side is a symbol the cell does not define at time t (``p = q + v +
b_i``, ``\\delta_a^t = \\delta_h^t * \\phi'(a_t)``) are *aliases*: names the document introduces,
valid from where they are written until they are written again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import grammar as g
from . import lexicon as lx

_TIME = re.compile(r"^\(?\s*(?:<|\\langle\s*)?\s*(t|T|\\tau)\s*(?:([+-])\s*(\d+|k|\\ell|l|j))?"
                   r"\s*(?:>|\\rangle)?\s*\)?$")


# a step written in parentheses as a superscript with another letter (Goodfellow et al.'s
# h^{(k-1)}): the step of the line, where t is that of a per-step loss J^{(t)}
_PAREN_TIME = re.compile(r"^\(k(?:([+-])(\d+))?\)$")


def time_of(script: str | None) -> tuple[str, int, str | None] | None:
    """A time script read: ('t', offset, symbolic offset) for ``t``, ``t-1``, ``(t+1)``,
    ``<t>``, ``T``, ``\\tau``; ('k', offset, None) for ``(k)``, ``(k-1)``; ('n', value, None)
    for a digit; None otherwise."""
    if script is None:
        return None
    s = script.replace(" ", "")
    if s.isdigit():
        return ("n", int(s), None)
    pk = _PAREN_TIME.match(s)
    if pk:
        return ("k", int(pk.group(2) or 0) * (-1 if pk.group(1) == "-" else 1), None)
    m = _TIME.match(s)
    if not m:
        return _time_sum(s)
    var, sign, off = m.groups()
    if var == r"\tau":
        var = "T"
    if off is None:
        return (var, 0, None)
    if off.isdigit():
        return (var, int(off) * (1 if sign == "+" else -1), None)
    return (var, 0, ("-" if sign == "-" else "+") + off)


_TIME_SUM = re.compile(r"(T|t)((?:[+-](?:T|t|[a-z]|\d+))+)")


def _time_sum(s: str) -> tuple[str, int, str | None] | None:
    """``T+t-i``, ``t+T-k``: a time counted from T or t by further times and indices; the
    symbolic part (``+t-i``) is read at the line's own time and indices."""
    m = _TIME_SUM.fullmatch(s)
    if not m:
        return None
    var, rest = m.groups()
    terms = re.findall(r"([+-])(T|t|[a-z]|\d+)", rest)
    off = sum(int(b) * (1 if a == "+" else -1) for a, b in terms if b.isdigit())
    sym = "".join(a + b for a, b in terms if not b.isdigit())
    return (var, off, sym or None)


@dataclass(frozen=True)
class Key:
    """A symbol of the cell: its base and the script that is part of its name (W_{xf}: 'xf')."""

    base: str
    name_sub: str | None = None

    @property
    def latex(self) -> str:
        return self.base + ("" if self.name_sub is None else
                            "_" + (self.name_sub if len(self.name_sub) == 1
                                   else "{" + self.name_sub + "}"))


@dataclass(frozen=True)
class Reading:
    """An atom read: a time-indexed symbol (``key`` at ``time``), with unit ``indices``."""

    key: Key
    time: tuple[str, int, str | None] | None
    indices: tuple[str, ...]
    transposed: bool = False


def read_atom(a: g.Atom, timed: set[Key]) -> Reading:
    """Split an atom's scripts into name, time and unit indices. ``timed``: the symbols known to
    carry a time index (digits are times only on them)."""
    sub, sup = a.sub, a.sup
    base = a.base
    if sub is not None and "[" in sub:
        named = _bracketed(sub)
        if named is not None:   # f_{[p]}, W_{f[i,j]}: the units in square brackets
            name, units = named
            tp = time_of(sup)
            if tp is not None and (tp[0] != "n" or Key(base, name) in timed or Key(base) in timed):
                return Reading(Key(base, name), tp, units)
            return Reading(Key(base, name), None, units + _indices(sup))
    ts, tp = time_of(sub), time_of(sup)
    if sup is not None and tp is None and sub is not None and not _is_index(sub) and \
            _PAREN_TIME.match("(" + sup.replace(" ", "") + ")") and Key(base, sub) in timed:
        # \delta_t^{k} where the document writes \delta_t^{(k)}: the step, its parentheses
        # left out
        tp = time_of("(" + sup.replace(" ", "") + ")")
        return Reading(Key(base, sub), tp, ())
    if tp is not None and tp[0] != "n" and sup is not None and sup.strip().startswith("(") and \
            sub is not None and not _is_index(sub):
        # \delta_t^{(k)}: the step in parentheses above, the subscript part of the name
        return Reading(Key(base, sub), tp, ())
    if ts is not None and (ts[0] != "n" or Key(base) in timed):
        rest = _indices(sup)
        return Reading(Key(base), ts, rest)
    if tp is not None and (tp[0] != "n" or Key(base) in timed or Key(base, sub) in timed):
        # an index letter is the symbol's name where the document times the two together
        # (W_{r,t}: W_r at step t)
        name_sub = None if sub is None or (_is_index(sub) and Key(base, sub) not in timed) \
            else sub
        idx = _indices(sub) if name_sub is None and sub is not None else ()
        return Reading(Key(base, name_sub), tp, idx)
    # no time: a parameter (W_{xf}) or an entry (w_{ij}, b^k_y) or a unit-indexed symbol
    if sub is not None and sup is not None and _is_index(sup):
        return Reading(Key(base, sub), None, _indices(sup))
    if sub is not None and _is_index_pair(sub):
        return Reading(Key(base), None, _indices(sub))
    return Reading(Key(base, sub), None, () if sup is None else _indices(sup))


_INDEX_LETTER = (r"(?:[ijkmnoqrsuv]|\\alpha|\\beta|\\gamma|\\ell|\\mu|\\nu|\\kappa|"
                 r"\\gamma_\{?\d\}?|\\gamma'_\{?\d\}?|\\gamma_\{?[k\\ell+-]+\}?)")


def _bracketed(sub: str) -> tuple[str | None, tuple[str, ...]] | None:
    """``[i]``, ``[i,j]``, ``f[i,j]``, ``a[i]``: (the name before the brackets, the unit
    indices in them); None when the brackets hold anything else."""
    m = re.fullmatch(r"\s*([^\[\]]*?)\s*\[\s*([^\[\]]+)\]\s*", sub)
    if not m:
        return None
    units = tuple(x.strip() for x in m.group(2).split(","))
    if not all(re.fullmatch(_INDEX_LETTER, u) or re.fullmatch(r"[a-z]", u) for u in units):
        return None
    return (m.group(1) or None), units


def _is_index(s: str | None) -> bool:
    return s is not None and re.fullmatch(_INDEX_LETTER, s.replace(" ", "")) is not None


def _is_index_pair(s: str) -> bool:
    s = s.replace(" ", "").replace(",", "")
    return re.fullmatch(f"(?:{_INDEX_LETTER}){{2}}", s) is not None


def _indices(s: str | None) -> tuple[str, ...]:
    if s is None:
        return ()
    s = s.replace(" ", "")
    out = re.findall(_INDEX_LETTER, s.replace(",", ""))
    return tuple(out)


@dataclass
class Definition:
    key: Key
    expr: g.Node
    pos: int                      # where it is written (offset)
    timed: bool                   # written at time t (a node) or not (an alias)
    index_form: bool = False


@dataclass
class Cell:
    """The author's cell: nodes in evaluation order, states, inputs, parameters, readout."""

    nodes: dict[Key, g.Node] = field(default_factory=dict)     # key -> expression at time t
    order: list[Key] = field(default_factory=list)
    states: list[Key] = field(default_factory=list)
    inputs: list[Key] = field(default_factory=list)
    params: dict[Key, str] = field(default_factory=dict)       # key -> matrix | vector
    readout: list[Key] = field(default_factory=list)
    outputs: list[Key] = field(default_factory=list)           # what the loss reads
    generic: dict[str, int] = field(default_factory=dict)      # generic activation -> function
    defined_at: dict[Key, int] = field(default_factory=dict)   # key -> offset of its definition
    source: str = ""
    untimed: set[Key] = field(default_factory=set)  # nodes written without their time index
    targets: dict[Key, Key] = field(default_factory=dict)      # target y -> the readout \hat{y}
    loss: str = "linear"                                        # linear | cross-entropy
    rows: bool = False   # row vectors times matrices (h_{t-1} W_z): the author's convention

    def describe(self) -> str:
        def names(keys):
            return ", ".join(k.latex for k in keys)
        return (f"the document's own cell (nodes {names(self.order)}; states {names(self.states)};"
                f" inputs {names(self.inputs)}; parameters {names(self.params)})")


class CellError(Exception):
    pass


def atoms_of(node: g.Node) -> list[g.Atom]:
    return [n for n in g.walk(node) if isinstance(n, g.Atom)]


def has_derivative(node: g.Node) -> bool:
    """Whether an expression holds a derivative or a notation no forward equation uses; a
    stacked input ``W_f [h_{t-1}, x_t]`` (a matrix times a stack) is a forward notation."""
    stacks_ok = {id(m.factors[i + 1]) for m in g.walk(node) if isinstance(m, g.Mul)
                 for i, f in enumerate(m.factors[:-1]) if isinstance(f, g.Atom)
                 and isinstance(m.factors[i + 1], g.Stack)}
    return any(isinstance(n, (g.Deriv, g.Adj, g.Big, g.Elided, g.Kron, g.Diag))
               or (isinstance(n, g.Stack) and id(n) not in stacks_ok) for n in g.walk(node))


def build(defs: list[tuple[g.Atom, list[g.Node], int]], timed_bases: set[Key]) -> Cell:
    """The cell of a document's forward equations: ``defs`` holds, per equation whose left-hand
    side is one atom, that atom, its parsed right-hand sides and its offset; ``timed_bases``:
    the symbols the document writes with a time index t (on them a digit is a time too)."""
    cell = Cell()
    timed: set[Key] = set(timed_bases)
    for lhs, _, _ in defs:
        r = read_atom(lhs, set())
        if r.time is not None and r.time[0] == "t" and r.time[1] == 0 and r.time[2] is None:
            timed.add(r.key)
    # a symbol the document defines as a derivative (\delta_t^{(k)} = dJ/ds^{(k)}) names an
    # adjoint, not a node, wherever else it is written
    adjoints = {read_atom(lhs, timed).key for lhs, rhss, _ in defs
                if any(isinstance(n, (g.Deriv, g.Adj)) for x in rhss for n in g.walk(x))}
    at_t = {read_atom(lhs, timed).key for lhs, _, _ in defs
            if (read_atom(lhs, timed).time or ("",))[:2] == ("t", 0)}
    for lhs, rhss, pos in defs:
        r = read_atom(lhs, timed)
        if r.key in adjoints:
            continue
        if r.time is None and not r.indices and lhs.sub is None and lhs.sup is None and \
                r.key not in cell.nodes:
            e = _untimed_node(cell, r.key, rhss, timed)
            if e is None and r.key not in at_t:
                e = _untimed_state(r.key, rhss, timed)
            if e is not None:   # \hat{y} = softmax(W_y h_t + b_y): a node at t, unwritten t
                cell.nodes[r.key] = e
                cell.defined_at[r.key] = pos
                cell.untimed.add(r.key)
                timed.add(r.key)
            continue
        if r.key not in timed or r.time is None or r.time[:2] != ("t", 0) or r.indices:
            continue
        if r.key in cell.nodes:
            continue
        # a value stated for a symbol (xi_t = 0) is no forward equation
        rhs = [x for x in rhss if not has_derivative(x) and atoms_of(x)]
        # an expression of no time-indexed symbol (m_t = W_a X + b_a, a generic gate's
        # pre-activation over an alias X) is no step of the cell
        rhs = [x for x in rhs if any(read_atom(a, timed).time is not None
                                     for a in atoms_of(x))]
        if not rhs:
            continue
        cell.nodes[r.key] = rhs[0]
        cell.defined_at[r.key] = pos
        # a = act(z) = act(E): z is defined by E
        if len(rhs) >= 2 and isinstance(rhs[0], g.Call) and isinstance(rhs[0].arg, g.Atom) \
                and isinstance(rhs[-1], g.Call) and rhs[-1].fn == rhs[0].fn:
            z = read_atom(rhs[0].arg, timed | {read_atom(rhs[0].arg, set()).key})
            if z.time is not None and z.time[:2] == ("t", 0) and z.key not in cell.nodes:
                timed.add(z.key)
                cell.nodes[z.key] = rhs[-1].arg  # type: ignore[assignment]
                cell.defined_at[z.key] = pos
    if not cell.nodes:
        raise CellError("no forward equations (a symbol at time t defined without derivatives)")
    # references
    refs: dict[Key, set[tuple[Key, int]]] = {}
    params: dict[Key, str] = {}
    inputs: list[Key] = []
    states: set[Key] = set()
    left: set[Key] = set()     # matrices written before what they multiply (W x)
    right: set[Key] = set()    # and after it (h_{t-1} W_z: row vectors)
    for k, e in cell.nodes.items():
        refs[k] = set()
        for a in atoms_of(e):
            ra = read_atom(a, timed | set(cell.nodes))
            if ra.time is not None:
                lag = ra.time[1] if ra.time[0] == "t" else None
                if lag is None or lag > 0 or ra.time[2] is not None:
                    raise CellError(f"{a.text} in the equation of {k.latex}")
                if ra.key in cell.nodes:
                    if lag < 0:
                        states.add(ra.key)
                    refs[k].add((ra.key, -lag))
                elif ra.key not in inputs:
                    inputs.append(ra.key)
            else:
                if ra.key not in params:
                    params[ra.key] = "vector"
        for m in g.walk(e):
            if isinstance(m, g.Mul):
                for f, nxt in zip(m.factors, m.factors[1:], strict=False):
                    if isinstance(f, g.Atom):
                        rf = read_atom(f, timed | set(cell.nodes))
                        if rf.time is None and not isinstance(nxt, g.Num):
                            params[rf.key] = "matrix"
                            left.add(rf.key)
                right |= _right_matrices(m, timed | set(cell.nodes))
            if isinstance(m, g.Call) and m.fn not in lx.ACTIVATIONS:
                cell.generic.setdefault(m.fn, len(cell.generic) % len(lx.GENERIC_ACTIVATIONS))
    # evaluation order within a step: a node after what it reads at lag 0
    order: list[Key] = []
    seen: set[Key] = set()

    def visit(k: Key, stack: tuple[Key, ...] = ()) -> None:
        if k in seen:
            return
        if k in stack:
            raise CellError(f"{k.latex} depends on itself within a step")
        for r2, lag in refs[k]:
            if lag == 0:
                visit(r2, (*stack, k))
        seen.add(k)
        order.append(k)

    for k in cell.nodes:
        visit(k)
    cell.order = order
    cell.states = [k for k in order if k in states]
    cell.inputs = inputs
    cell.rows = bool(right) and not left
    for p in right if cell.rows else ():
        params[p] = "matrix"
    cell.params = params
    needed: set[Key] = set()
    for s in cell.states:
        needed |= _upstream(s, refs)
    cell.readout = [k for k in order if k not in needed and
                    any(params.get(p) == "matrix" for p in _params_in(cell.nodes[k], timed))]
    consumed = {r2 for k in order for r2, lag in refs[k] if lag == 0}
    if cell.readout:
        cell.outputs = [k for k in cell.readout if k not in consumed]
    else:
        cell.outputs = [k for k in cell.states if k not in consumed] or cell.states[-1:]
    if not cell.outputs:
        cell.outputs = [order[-1]]
    for k in cell.outputs:
        hat = re.fullmatch(r"\\(?:hat|widehat)\{(.+)\}", k.base)
        e = cell.nodes[k]
        if hat and k.name_sub is None and isinstance(e, g.Call) and e.fn == "softmax":
            cell.targets[Key(hat.group(1))] = k
            cell.loss = "cross-entropy"
    return cell


def _untimed_node(cell: Cell, key: Key, rhss: list[g.Node], timed: set[Key]) -> g.Node | None:
    """The equation of a node written without its time index: one that reads a node of the
    cell at t through a matrix, and is no part of a node's equation already read (``z = W_y
    h_t + b_y`` beside ``\\hat{y} = softmax(W_y h_t + b_y)`` names a part: an alias)."""
    for e in rhss:
        if has_derivative(e) or not atoms_of(e):
            continue
        if any(m == e for n in cell.nodes.values() for m in g.walk(n)):
            return None
        reads = [read_atom(a, timed | set(cell.nodes)) for a in atoms_of(e)]
        at_t = [r for r in reads if r.key in cell.nodes and r.time is not None
                and r.time[:2] == ("t", 0)]
        through = [m for m in g.walk(e) if isinstance(m, g.Mul) and isinstance(m.factors[0], g.Atom)
                   and read_atom(m.factors[0], timed).time is None
                   and read_atom(m.factors[0], timed).key not in cell.nodes]
        if at_t and through and key not in {r.key for r in reads}:
            return e
        return None
    return None


def _untimed_state(key: Key, rhss: list[g.Node], timed: set[Key]) -> g.Node | None:
    """``h = (1 - z_t) \\circ h_{t-1} + z_t \\circ \\tilde{h}_t``: a symbol the document times,
    written without its time, whose equation reads the symbol itself at t-1, is the state's
    equation at t (the author's time index dropped)."""
    if key not in timed:
        return None
    for e in rhss:
        if has_derivative(e):
            continue
        reads = [read_atom(a, timed) for a in atoms_of(e)]
        if any(r.key == key and r.time is not None and r.time[0] == "t" and r.time[1] == -1
               and r.time[2] is None for r in reads):
            return e
    return None


def _right_matrices(m: g.Mul, timed: set[Key]) -> set[Key]:
    """The symbols without a time that a product applies from the right, in a generic product
    after a factor that is no number (``h_{t-1} \\cdot W_z``, ``(r_t \\circ h_{t-1}) W_h``)."""
    out: set[Key] = set()
    for prev, op, f in zip(m.factors, m.ops, m.factors[1:], strict=False):
        if op != "generic" or isinstance(prev, g.Num) or not isinstance(f, g.Atom):
            continue
        rf = read_atom(f, timed)
        if rf.time is None and not rf.indices:
            out.add(rf.key)
    return out


def _params_in(e: g.Node, timed: set[Key]) -> list[Key]:
    out = []
    for a in atoms_of(e):
        r = read_atom(a, timed)
        if r.time is None:
            out.append(r.key)
    return out


def _upstream(k: Key, refs: dict[Key, set[tuple[Key, int]]]) -> set[Key]:
    out = {k}
    todo = [k]
    while todo:
        x = todo.pop()
        for r2, lag in refs.get(x, ()):
            if lag == 0 and r2 not in out:
                out.add(r2)
                todo.append(r2)
    return out
