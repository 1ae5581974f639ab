"""What a document states as given besides its forward equations (issue 16, items 1 and 3).

Textbooks write the cell abstractly before they write it out, and state the loss and the
random variables of an estimator as definitions. Each of these is read into the model the lines
are judged against, and its line is reported as a premise ("read into the cell"):

* an *abstract form* ``h_t = f(x_t, h_{t-1}, w)``, ``o_t = g(h_t, w)`` (Dive into Deep Learning,
  "Backpropagation Through Time"): f is the document's own equation of h_t, written out where
  the document writes it (``\\mathbf{h}_t = \\mathbf{W}_{hx} \\mathbf{x}_t + \\mathbf{W}_{hh}
  \\mathbf{h}_{t-1}``); each argument stands for what the form puts there: the input at t, the
  state at t-1, and an argument the cell does not name (``w``) for the *parameter vector*, every
  parameter flattened. ``f(x_j, h_{j-1}, w)`` is the step evaluated at other arguments, and
  ``\\partial_h f(\\dots)`` the partial derivative in the argument written with h;
* an *objective* ``L = \\frac{1}{T} \\sum_{t=1}^T \\ell(\\mathbf{o}_t, y_t)``: ``\\ell`` is the
  loss's term at a step, of the output in its argument, scaled so that the objective is the
  world's loss (each definition names its own function: ``l`` and ``\\ell`` may differ by the
  factor 1/T);
* a *distribution* ``\\Pr(\\xi_t = 0) = 1 - \\pi``: a discrete random variable, one independent
  copy per step; a symbol its probabilities use and the cell does not know (``\\pi``) is a free
  number in (0, 1). ``\\mathbf{E}[\\dots]`` averages over the outcomes;
* a *function* defined by a formula of its variable: ``\\phi(x) = x``.

A document with an abstract form and no equation written out has nothing to instantiate f by:
its lines are skipped, with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import grammar as g
from . import lexicon as lx
from .cell import Cell, Key, read_atom


@dataclass(frozen=True)
class Slot:
    """What one argument of an abstract function stands for: ``value`` (a node or input, ``lag``
    steps back), ``params`` (the parameter vector) or ``label`` (a target, not evaluated)."""

    kind: str
    key: Key | None = None
    lag: int = 0


@dataclass(frozen=True)
class Abstract:
    """``h_t = f(x_t, h_{t-1}, w)``: f computes ``node`` from its arguments."""

    fn: str
    node: Key
    slots: tuple[Slot, ...]
    pos: int


@dataclass(frozen=True)
class LossTerm:
    """``L = c \\sum_t l(y_t, o_t)``: l's value is the world's loss term of ``output`` at the
    argument ``slot``, divided by c."""

    fn: str
    scale: float
    slot: int
    arity: int
    output: Key
    pos: int


@dataclass(frozen=True)
class Distribution:
    """``\\Pr(\\xi_t = v) = p``, one line per outcome: (value, probability) expressions."""

    key: Key
    outcomes: tuple[tuple[g.Node, g.Node], ...]


@dataclass(frozen=True)
class Function:
    """``\\phi(x) = x``: the body as an expression of the variable."""

    fn: str
    var: Key
    body: g.Node


@dataclass
class Premises:
    """Everything read from the document's premises (see the module docstring)."""

    abstract: dict[str, Abstract] = field(default_factory=dict)
    losses: dict[str, LossTerm] = field(default_factory=dict)
    dists: dict[Key, Distribution] = field(default_factory=dict)
    functions: dict[str, Function] = field(default_factory=dict)
    param_vector: set[Key] = field(default_factory=set)
    free: dict[Key, float] = field(default_factory=dict)
    at: dict[int, str] = field(default_factory=dict)   # offset of a premise's line -> reason
    unmatched: dict[int, str] = field(default_factory=dict)  # abstract forms without an instance


def read(eqs: list, parsed: list, cell: Cell | None, timed: set[Key], T: int) -> Premises:
    """The premises of a document: ``eqs`` its equations (:mod:`derive.check.document`),
    ``parsed`` their (lhs, [rhs]) trees, ``cell`` the cell of its forward equations."""
    out = Premises()
    dist_lines: dict[Key, list[tuple[g.Node, g.Node]]] = {}
    for e, (lhs, rhss) in zip(eqs, parsed, strict=True):
        if e.segment.comment or not e.rels or e.rels[0] != "=" or not rhss or \
                not isinstance(rhss[0], g.Node) or not isinstance(lhs, g.Node):
            continue
        rhs = rhss[0]
        if isinstance(lhs, g.Prob) and isinstance(lhs.var, g.Atom):
            key = Key(lhs.var.base)
            dist_lines.setdefault(key, []).append((lhs.value, rhs))
            out.at[e.pos] = f"the distribution of {lhs.var.text}, read into the cell"
            continue
        fn_def = _function(lhs, rhs)
        if fn_def is not None:
            out.functions[fn_def.fn] = fn_def
            out.at[e.pos] = (f"the author's definition of the function {fn_def.fn}, read into "
                             "the cell")
            continue
        if cell is None:
            continue
        if isinstance(lhs, g.Atom) and isinstance(rhs, g.Call) and isinstance(rhs.arg, g.Stack) \
                and rhs.fn not in lx.ACTIVATIONS:
            r = read_atom(lhs, timed | set(cell.nodes))
            if r.key in cell.nodes and r.time is not None and r.time[:2] == ("t", 0):
                slots = tuple(_slot(x, cell, timed, out) for x in rhs.arg.items)
                out.abstract[rhs.fn] = Abstract(rhs.fn, r.key, slots, e.pos)
                out.at[e.pos] = (f"the author's abstract form of {lhs.text}: {_fn(rhs.fn)} is the "
                                 f"cell's equation of {r.key.latex}, read into the cell")
                continue
        term = _objective(lhs, rhs, cell, timed, T)
        if term is not None:
            out.losses[term.fn] = term
            out.at[e.pos] = (f"the author's objective: {_fn(term.fn)} is the loss at a step, "
                             "read into the cell")
    for key, lines in dist_lines.items():
        out.dists[key] = Distribution(key, tuple(lines))
    rng = np.random.default_rng(7)
    for d in out.dists.values():
        for v, p in d.outcomes:
            for a in (*_atoms(v), *_atoms(p)):
                k = Key(a.base, a.sub)
                if a.base not in ("\\infty",) and k not in out.dists and k not in out.free and (
                        cell is None or (k not in cell.nodes and k not in cell.params)):
                    out.free[k] = float(rng.uniform(0.2, 0.8))
    return out


def unmatched_abstract(eqs: list, parsed: list, timed: set[Key]) -> dict[int, str]:
    """Abstract forms (``h_t = f(x_t, h_{t-1}, w)``) of a document that writes no cell out."""
    out = {}
    for e, (lhs, rhss) in zip(eqs, parsed, strict=True):
        if rhss and isinstance(lhs, g.Atom) and isinstance(rhss[0], g.Call) and \
                isinstance(rhss[0].arg, g.Stack) and rhss[0].fn not in lx.ACTIVATIONS:
            r = read_atom(lhs, timed)
            if r.time is not None:
                out[e.pos] = (f"{_fn(rhss[0].fn)} is an abstract function the document never "
                              "writes out: no equation of the cell to instantiate it by")
    return out


def _fn(fn: str) -> str:
    return fn if fn.startswith("\\") or len(fn) == 1 else "\\" + fn


def _atoms(node: g.Node) -> list[g.Atom]:
    return [a for a in g.walk(node) if isinstance(a, g.Atom)]


def _slot(x: g.Node, cell: Cell, timed: set[Key], out: Premises) -> Slot:
    if isinstance(x, g.Atom):
        r = read_atom(x, timed | set(cell.nodes) | set(cell.inputs))
        if (r.key in cell.nodes or r.key in cell.inputs) and r.time is not None and \
                r.time[0] == "t" and r.time[2] is None:
            return Slot("value", r.key, -r.time[1])
        if r.time is None and r.key not in cell.params and r.key not in cell.nodes and \
                r.key not in cell.inputs and not r.indices:
            out.param_vector.add(r.key)
            return Slot("params")
    return Slot("label")


def _function(lhs: g.Node, rhs: g.Node) -> Function | None:
    """``\\phi(x) = x``: a generic function's formula in its one variable."""
    if not (isinstance(lhs, g.Call) and isinstance(lhs.arg, g.Atom) and lhs.primes == 0
            and lhs.fn not in lx.ACTIVATIONS and lhs.arg.sub is None and lhs.arg.sup is None):
        return None
    var = Key(lhs.arg.base)
    if any(Key(a.base, a.sub) != var for a in _atoms(rhs)) or any(
            isinstance(n, (g.Deriv, g.Adj, g.Big, g.Stack)) for n in g.walk(rhs)):
        return None
    return Function(lhs.fn, var, rhs)


def _objective(lhs: g.Node, rhs: g.Node, cell: Cell, timed: set[Key], T: int) -> LossTerm | None:
    """``L = \\sum_{t=1}^T l(y_t, o_t)``, ``L(x, y, w) = \\frac{1}{T} \\sum_t \\ell(o_t, y_t)``."""
    name = lhs.base if isinstance(lhs, g.Atom) and lhs.sub is None and lhs.sup is None else \
        lhs.fn if isinstance(lhs, g.Call) else None
    if name not in lx.LOSSES:
        return None
    scale = 1.0
    body = rhs
    if isinstance(rhs, g.Mul) and len(rhs.factors) == 2:
        c = _scalar(rhs.factors[0], T)
        if c is None:
            return None
        scale, body = c, rhs.factors[1]
    if not (isinstance(body, g.Big) and body.op == "sum" and body.var == "t" and
            isinstance(body.body, g.Call) and isinstance(body.body.arg, g.Stack)):
        return None
    call = body.body
    assert isinstance(call.arg, g.Stack)
    for k, x in enumerate(call.arg.items):
        if isinstance(x, g.Atom):
            r = read_atom(x, timed | set(cell.nodes))
            if r.key in cell.outputs and r.time is not None and r.time[:2] == ("t", 0):
                return LossTerm(call.fn, scale, k, len(call.arg.items), r.key, 0)
    return None


def _scalar(node: g.Node, T: int) -> float | None:
    """A number written with the number of steps T: ``\\frac{1}{T}``, ``2``, ``1/T``."""
    if isinstance(node, g.Num):
        return float(node.value)
    if isinstance(node, g.Atom) and node.base == "T" and node.sub is None:
        return float(T)
    if isinstance(node, g.Div):
        a, b = _scalar(node.a, T), _scalar(node.b, T)
        return None if a is None or b is None or b == 0 else a / b
    return None


__all__ = ["Abstract", "Distribution", "Function", "LossTerm", "Premises", "Slot",
           "read", "unmatched_abstract"]
