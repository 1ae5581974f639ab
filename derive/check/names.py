"""The author's names written in subscripts (issue 16, item 3).

* ``\\delta_{z_{zt}}``, ``\\delta_{h_{t-1}}``, ``d_{W_h}``, ``d_{W_{h,t}}``, ``d_{W}``: a prefix
  of :data:`~derive.check.lexicon.ADJOINT_PREFIXES` whose subscript is itself a symbol with a
  script of its own, or a symbol the document writes bare, is the adjoint (the gradient) of
  that symbol;
* ``W_{h,t}``: a symbol the document also writes without a time (the parameter ``W_h``) with a
  step added to its subscript: its copy at that step (the step's part of its gradient);
* ``z_{zt}``, ``z_{z_t}``: a subscript that names a time-indexed symbol and its step is one name
  however the step is attached (``z_{\\tilde h_t}`` and ``z_{\\tilde{h}t}`` too);
* ``\\delta_t``, which the document does not define by an equation: where the cell has one
  output and it is a state (the error of h_t that the step receives), the adjoint of that state.

:func:`reader` returns the rewriting of a parsed side; it is applied to every side before the
cell is built and to every repair the judge re-reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from . import grammar as g
from . import lexicon as lx
from .cell import Cell, Key, time_of
from .tokens import strip_layout, tokenize


def reader(parsed: list, timed: set[Key]) -> Callable:
    """The rewriting of one parsed side, for a document parsed as ``parsed`` (per equation,
    the left-hand side and the right-hand sides) whose time-indexed symbols are ``timed``."""
    sides = [x for lhs, rhss in parsed for x in (lhs, *rhss) if isinstance(x, g.Node)]
    names = sorted({k.base for k in timed if k.name_sub is None}, key=len, reverse=True)
    plain = {(a.base, a.sub) for s in sides for a in g.walk(s) if isinstance(a, g.Atom)
             and a.sup is None and (a.sub is None or time_of(a.sub) is None)}
    def named(script: str) -> g.Atom | None:   # the symbol a prefix's subscript names
        inner = _symbol(script)
        if inner is not None and (inner.sub is not None or inner.sup is not None or (
                (inner.base, None) in plain and inner.base not in lx.ADJOINT_PREFIXES)):
            return inner
        return None

    # a prefix the document defines as a symbol of its own (d_t = ...) is that symbol
    own = {lhs.base for lhs, _ in parsed if isinstance(lhs, g.Atom) and lhs.sub is not None
           and named(lhs.sub) is None}
    prefixes = lx.ADJOINT_PREFIXES - own

    def atom(a: g.Atom) -> g.Node:
        if a.base in prefixes and a.sub is not None and a.sup is None and not a.primes:
            inner = named(a.sub)
            if inner is not None:
                inner = dataclasses.replace(_scripted(inner), span=a.span)
                return g.Adj(inner, span=a.span)
        return _scripted(a)

    def _scripted(a: g.Atom) -> g.Atom:
        if a.sub is None or a.sup is not None or time_of(a.sub) is not None:
            return a
        split = _split(a.sub, names)
        if split is None:
            return a
        name, step = split
        if (a.base, name) in plain:      # W_{h,t}: the parameter W_h at step t
            return dataclasses.replace(a, sub=name, sup=step)
        canon = name + "_" + (step if len(step) == 1 else "{" + step + "}")
        return a if canon == a.sub else dataclasses.replace(a, sub=canon)

    def rewrite(node):
        return _map(node, atom)

    return rewrite


def output_adjoint(parsed: list, cell: Cell) -> Callable:
    """The rewriting of ``\\delta_t`` as the adjoint of the cell's one output state, where no
    equation defines ``\\delta_t``; the identity otherwise."""
    defined = any(isinstance(lhs, g.Atom) and lhs.base == r"\delta" for lhs, _ in parsed)
    outs = [k for k in cell.outputs if k in cell.states]
    if defined or len(outs) != 1 or len(cell.outputs) != 1:
        return lambda node: node
    out = outs[0]

    def atom(a: g.Atom) -> g.Node:
        if a.base != r"\delta" or a.sup is not None or a.primes or a.sub is None:
            return a
        t = time_of(a.sub)
        if t is None or t[0] not in ("t", "T"):
            return a
        of = g.Atom(out.base, a.sub, span=a.span) if out.name_sub is None else \
            g.Atom(out.base, out.name_sub, a.sub, span=a.span)
        return g.Adj(of, span=a.span)

    return lambda node: _map(node, atom)


def _symbol(script: str) -> g.Atom | None:
    """A subscript read as one symbol (``z_{zt}``, ``W_{h,t}``), or None."""
    try:
        node = g.read_side(strip_layout(tokenize(script, 0)), script)
    except (g.SyntaxProblem, ValueError, IndexError):
        return None
    return node if isinstance(node, g.Atom) else None


def _split(sub: str, names: list[str]) -> tuple[str, str] | None:
    """``zt``, ``z_t``, ``z_{t}``, ``\\tilde{h}t``, ``h,t`` -> (the symbol's name, its step)."""
    s = sub.replace(" ", "")
    for name in names:
        if not s.startswith(name) or len(s) == len(name):
            continue
        rest = s[len(name):]
        if rest[0] in "_,":
            rest = rest[1:]
        if rest.startswith("{") and rest.endswith("}"):
            rest = rest[1:-1]
        t = time_of(rest)
        if rest and t is not None and t[0] in ("t", "T") and t[2] is None:
            return name, rest
    return None


def _map(node, fn):
    """The tree with every atom replaced by ``fn(atom)``."""
    if not isinstance(node, g.Node):
        return node
    if isinstance(node, g.Atom):
        return fn(node)
    changes = {}
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, g.Node):
            new = _map(v, fn)
            if new is not v:
                changes[f.name] = new
        elif isinstance(v, tuple) and v and all(isinstance(x, g.Node) for x in v):
            new_t = tuple(_map(x, fn) for x in v)
            if any(a is not b for a, b in zip(new_t, v, strict=True)):
                changes[f.name] = new_t
        elif isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and
                                                isinstance(x[1], g.Node) for x in v):
            new_p = tuple((a, _map(b, fn)) for a, b in v)
            if any(a[1] is not b[1] for a, b in zip(new_p, v, strict=True)):
                changes[f.name] = new_p
    return dataclasses.replace(node, **changes) if changes else node


__all__ = ["output_adjoint", "reader"]
