"""LaTeX printer for derived expressions, in seed 001's notation.

d(o_t), d(\\sigma'(s_t)), d_2(h_{t-1}), W_o, \\frac{\\partial h_{t-1}}{\\partial W_f}, and gate
derivatives as o'_t (the derivative of the gate's activation at its pre-activation). Symbols are
named through a ``names`` mapping (spec name -> LaTeX), so notation profiles only rename.

Printing never reorders: products are already canonical (:mod:`derive.calculus.algebra`); sums print
in the derivation's order. :func:`factored` regroups a sum by greedy common left factors, which
gives seed 001's form (d(\\sigma(s_t)) d(o'_t) W_o + d(o_t) d(\\sigma'(s_t)) (\\ldots)).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..calculus.algebra import Adj, Diag, Diag2, Factor, Ident, Mat, Outer, Rec, Sum, Term
from ..spec import HAT, Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref
from ..spec.activations import ACTIVATIONS

if TYPE_CHECKING:
    from ..calculus.derivation import Derivation

Names = Mapping[str, str]


def _name(names: Names, n: str) -> str:
    return names.get(n, n)


def _timed(base: str, lag: int) -> str:
    """x -> x_t, s_{t-1}; a base that already has a subscript gets the time merged into it:
    n_x -> n_{x,t}, W_{xi} -> W_{xi,t-1} (never a double subscript)."""
    t = "t" if lag == 0 else f"t-{lag}"
    depth, cut = 0, -1
    for i, ch in enumerate(base):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "_" and depth == 0:
            cut = i
    if cut >= 0:
        head, sub = base[:cut], base[cut + 1:]
        sub = sub[1:-1] if sub.startswith("{") and sub.endswith("}") else sub
        return f"{head}_{{{sub},{t}}}"
    return f"{base}_{{{t}}}" if lag else f"{base}_t"


def node_symbol(names: Names, name: str, lag: int = 0) -> str:
    """o_t, s_{t-1}, \\tilde{s}_t, \\hat{o}_t (pre-activation)."""
    if name.endswith(HAT):
        return _timed(r"\hat{" + _name(names, name[: -len(HAT)]) + "}", lag)
    return _timed(_name(names, name), lag)


def vec(e: Expr, names: Names) -> str:
    """LaTeX of a vector expression."""
    if isinstance(e, Ref):
        if e.kind == "input":
            return _timed(_name(names, "x"), 0)
        if e.kind == "param":
            return _name(names, e.name)
        return node_symbol(names, e.name, e.lag)
    if isinstance(e, Const):
        return _num(e.value)
    if isinstance(e, Call):
        return f"{ACTIVATIONS[e.fn].latex}({vec(e.arg, names)})"
    if isinstance(e, DerivAt):
        if isinstance(e.arg, Ref) and e.arg.name.endswith(HAT):
            # o'_t; a name with a subscript of its own keeps one: g'_{1,t}
            return _name(names, e.arg.name[: -len(HAT)]) + "'_t"
        return f"{ACTIVATIONS[e.fn].latex}'({vec(e.arg, names)})"
    if isinstance(e, MatVec):
        arg = vec(e.arg, names)
        if isinstance(e.arg, (Add, Mul)):
            arg = f"({arg})"
        return f"{_name(names, e.param)} {arg}"
    if isinstance(e, Add):
        out = ""
        for i, (s, t) in enumerate(e.terms):
            txt = vec(t, names)
            if isinstance(t, Add):
                txt = f"({txt})"
            out += ("-" if s < 0 else "") + txt if i == 0 else (" - " if s < 0 else " + ") + txt
        return out
    if isinstance(e, Mul):
        return r" \odot ".join(f"({vec(f, names)})" if isinstance(f, Add) else vec(f, names)
                               for f in e.factors)
    raise TypeError(e)


def _num(c: Fraction) -> str:
    return str(c.numerator) if c.denominator == 1 else rf"\frac{{{c.numerator}}}{{{c.denominator}}}"


def partial_symbol(names: Names, state: str, lag: int, wrt: str) -> str:
    return rf"\frac{{\partial {node_symbol(names, state, lag)}}}{{\partial {_name(names, wrt)}}}"


def factor(f: Factor, names: Names) -> str:
    """LaTeX of one matrix factor."""
    if isinstance(f, Diag):
        return f"d({vec(f.v, names)})"
    if isinstance(f, Diag2):
        return f"d_2({vec(f.v, names)})"
    if isinstance(f, Mat):
        return _name(names, f.name) + (r"^\top" if f.transposed else "")
    if isinstance(f, Ident):
        return "I"
    if isinstance(f, Rec):
        return partial_symbol(names, f.state, f.lag, f.wrt)
    if isinstance(f, Adj):
        sym = node_symbol(names, f.name)
        if f.kind == "bar":
            base = node_symbol(names, f.name).rsplit("_", 1)
            return rf"\bar{{{base[0]}}}_{base[1]}"
        if f.kind == "carry":
            return rf"\delta {sym}"
        return rf"\frac{{\partial \ell_t}}{{\partial {sym}}}"
    if isinstance(f, Outer):
        v = vec(f.v, names)
        return f"{v}^\\top" if isinstance(f.v, Ref) else f"({v})^\\top"
    raise TypeError(f)


def product(factors: tuple[Factor, ...], names: Names) -> str:
    fs = [x for x in factors if not isinstance(x, Ident)] or list(factors)
    return " ".join(factor(f, names) for f in fs)


def _signed(coef: Fraction, body: str, first: bool) -> str:
    mag = abs(coef)
    lead = "" if mag == 1 else _num(mag) + " "
    if first:
        return ("-" if coef < 0 else "") + lead + body
    return (" - " if coef < 0 else " + ") + lead + body


def expanded(s: Sum, names: Names) -> str:
    """The sum as written, one product per term."""
    if not s:
        return "0"
    return "".join(_signed(t.coef, product(t.factors, names), i == 0) for i, t in enumerate(s))


def factored(s: Sum | list[Term], names: Names) -> str:
    """Greedy left factoring: terms sharing a leading factor are grouped, recursively.

    ``A B + A C D + E`` prints as ``A (B + C D) + E``; the leading groups keep the order of their
    first term, so the output is deterministic.
    """
    terms = list(s)
    if not terms:
        return "0"
    return "".join(_signed(c, body, i == 0) for i, (c, body) in enumerate(_groups(terms, names)))


def _groups(terms: list[Term], names: Names) -> list[tuple[Fraction, str]]:
    groups: dict[Factor, list[Term]] = {}
    for t in terms:
        groups.setdefault(t.factors[0], []).append(t)
    out: list[tuple[Fraction, str]] = []
    for ts in groups.values():
        if len(ts) == 1:
            t = ts[0]
            out.append((t.coef, product(t.factors, names)))
            continue
        # longest common prefix of the group
        k = 1
        while all(len(t.factors) > k for t in ts) and len({t.factors[k] for t in ts}) == 1:
            k += 1
        prefix = product(ts[0].factors[:k], names)
        # a term that is the prefix itself leaves I (as in _piece_groups)
        rest = [Term(t.coef, t.factors[k:] or (Ident(),)) for t in ts]
        # pull a common sign out so the bracket starts positive
        sign = Fraction(-1) if all(t.coef < 0 for t in rest) else Fraction(1)
        rest = [Term(t.coef * sign, t.factors) for t in rest]
        inner = "".join(_signed(c, b, i == 0) for i, (c, b) in enumerate(_groups(rest, names)))
        out.append((sign, rf"{prefix} \left({inner}\right)"))
    return out


@dataclass(frozen=True)
class Piece:
    """One signed summand of a factored sum, as :func:`factored` prints it.

    ``coef * head`` when ``inner`` is empty, else ``coef * head (inner[0] + inner[1] + ...)``:
    the structured form of seed 001's grouping, for printers that break long equations inside
    the brackets (:mod:`derive.document.latex_doc`). ``pieces_latex(factored_pieces(s, nm))`` equals
    ``factored(s, nm)``.
    """

    coef: Fraction
    head: str
    inner: tuple[Piece, ...] = ()


def factored_pieces(s: Sum | list[Term], names: Names) -> list[Piece]:
    """The greedy left factoring of :func:`factored`, as a tree of :class:`Piece` s."""
    terms = list(s)
    return _piece_groups(terms, names) if terms else []


def _piece_groups(terms: list[Term], names: Names) -> list[Piece]:
    groups: dict[Factor, list[Term]] = {}
    for t in terms:
        groups.setdefault(t.factors[0], []).append(t)
    out: list[Piece] = []
    for ts in groups.values():
        if len(ts) == 1:
            out.append(Piece(ts[0].coef, product(ts[0].factors, names)))
            continue
        k = 1
        while all(len(t.factors) > k for t in ts) and len({t.factors[k] for t in ts}) == 1:
            k += 1
        prefix = product(ts[0].factors[:k], names)
        rest = [Term(t.coef, t.factors[k:]) for t in ts]
        sign = Fraction(-1) if all(t.coef < 0 for t in rest) else Fraction(1)
        rest = [Term(t.coef * sign, t.factors or (Ident(),)) for t in rest]
        out.append(Piece(sign, prefix, tuple(_piece_groups(rest, names))))
    return out


def pieces_latex(pieces: list[Piece] | tuple[Piece, ...]) -> str:
    """Flat LaTeX of a piece list, identical to :func:`factored` of the same sum."""
    if not pieces:
        return "0"
    out = ""
    for i, p in enumerate(pieces):
        body = rf"{p.head} \left({pieces_latex(p.inner)}\right)" if p.inner else p.head
        out += _signed(p.coef, body, i == 0)
    return out


def bracket(s: Sum, names: Names) -> str:
    """A factored sum in brackets when it has more than one term."""
    txt = factored(s, names)
    return rf"\left({txt}\right)" if len(s) > 1 else txt


# ----------------------------------------------------------------------------- equations


def names_for(d: Derivation, names: Names | None = None) -> dict[str, str]:
    out = dict(d.spec.latex_names)
    out.update(names or {})
    return out


def recursion_blocks(d: Derivation, param: str, state: str, nm: Names,
                     shared: bool) -> list[tuple[Sum | str, str]]:
    """(coefficient, d v_{t-1}/dA symbol) of every non-empty recursion block of d state_t/dA, in
    state order; with ``shared`` the output state's blocks are the symbols 'M_t' and 'N_t'
    (seed 001 eq 26)."""
    fp = d.forward[param].raw
    out: list[tuple[Sum | str, str]] = []
    for v in d.states:
        blk = fp.blocks[state][v]
        if not blk:
            continue
        rec = partial_symbol(nm, v, 1, param)
        if shared and state == d.output and v in (d.output, d.second_state):
            out.append(("M_t" if v == d.output else "N_t", rec))
        else:
            out.append((blk, rec))
    return out


def collected(d: Derivation, param: str, state: str, names: Names | None = None,
              shared: bool = False) -> str:
    """Right-hand side of d state_t / dA in seed 001's final form (eq 14's last line):
    (M_t) dh_{t-1}/dA + (N_t) ds_{t-1}/dA + V_t^A; with ``shared`` the blocks of the output
    state's row print as M_t and N_t."""
    nm = names_for(d, names)
    parts: list[str] = []
    for blk, rec in recursion_blocks(d, param, state, nm, shared):
        if isinstance(blk, str):
            parts.append(f"{blk} {rec}")
        elif len(blk) == 1 and blk.terms[0].coef == 1:
            parts.append(f"{product(blk.terms[0].factors, nm)} {rec}")
        else:
            parts.append(f"{bracket(blk, nm)} {rec}")
    V = d.forward[param].raw.V[state]
    if V:
        parts.append(factored(V, nm))
    if not parts:
        return "0"
    out = parts[0]
    for p in parts[1:]:
        out += " - " + p[1:] if p.startswith("-") else " + " + p
    return out


def forward_equation(d: Derivation, param: str, state: str, names: Names | None = None,
                     shared: bool = False) -> str:
    nm = names_for(d, names)
    lhs = partial_symbol(nm, state, 0, param)
    return f"{lhs} = {collected(d, param, state, names, shared)}"


def shared_blocks(d: Derivation, names: Names | None = None) -> list[tuple[str, str]]:
    """(symbol, LaTeX) of M_t and N_t (seed 001 eq 26)."""
    nm = names_for(d, names)
    out = [("M_t", factored(d.M, nm))]
    if d.N is not None:
        out.append(("N_t", factored(d.N, nm)))
    return out


def jacobian_entries(d: Derivation, names: Names | None = None) -> list[tuple[str, str]]:
    """(lhs, rhs) for every block d u_t / d v_{t-1} of the state Jacobian."""
    nm = names_for(d, names)
    out = []
    for u in d.states:
        for v in d.states:
            lhs = rf"\frac{{\partial {node_symbol(nm, u)}}}{{\partial {node_symbol(nm, v, 1)}}}"
            out.append((lhs, factored(d.jacobian[u][v], nm)))
    return out


def adjoint_symbol(nm: Names, name: str) -> str:
    return factor(Adj(name, "bar"), nm)


@dataclass(frozen=True)
class ReadoutReverse:
    """BPTT through the readout of one step (a cell with ``readout`` nodes, seed 004's
    y_t = sigma_y(V h_t + b_y)): the loss at t is a function of the readout, so
    \\bar y_t = \\partial l_t / \\partial y_t, the pre-activation adjoint follows, and the loss
    reaches the cell through ``output`` = \\partial l_t / \\partial h_t (V^T \\bar{\\hat y}_t), the
    derivative the cell's own recursion starts from. ``grads[A]`` is the step-t contribution to
    dL/dA of every readout parameter (dL/dV = sum_t \\bar{\\hat y}_t h_t^T)."""

    assignments: list[tuple[str, Sum]]
    output: Sum
    grads: dict[str, Sum]


def readout_reverse(d: Derivation) -> ReadoutReverse | None:
    """The readout's part of reverse mode, or None for a cell without a readout. A readout reads
    only the output state (:class:`derive.spec.CellSpec` checks it), so the loss enters the cell
    through \\partial l_t / \\partial h_t alone, as :func:`derive.calculus.rules.derive_reverse`
    assumes."""
    from ..calculus.algebra import add, single
    from ..calculus.rules import _apply_T, _local

    spec, order = d.spec, d.order
    nodes = [n for n, v in spec.nodes.items() if v.role == "readout"]
    if not nodes:
        return None
    assignments: list[tuple[str, Sum]] = []
    for u in reversed(nodes):
        parts = [single(order, Adj(u, "loss"))] if not u.endswith(HAT) else []
        for w in nodes:
            loc = _local(spec, spec.nodes[w].expr, Ref(u, 0, "node"), None, order)
            if loc:
                parts.append(_apply_T(loc, Adj(w, "bar"), order))
        assignments.append((u, add(parts, order)))
    h = spec.states[0]
    output = add([_apply_T(loc, Adj(w, "bar"), order) for w in nodes
                  if (loc := _local(spec, spec.nodes[w].expr, Ref(h, 0, "node"), None, order))],
                 order)
    grads = {}
    for p in spec.readout_params:
        grads[p] = add([_apply_T(loc, Adj(w, "bar"), order) for w in nodes
                        if (loc := _local(spec, spec.nodes[w].expr, None, p, order))], order)
    return ReadoutReverse(assignments, output, grads)


def loss_symbol(nm: Names, name: str) -> str:
    """\\frac{\\partial \\ell_t}{\\partial h_t}: the derivative of the loss at t."""
    return factor(Adj(name, "loss"), nm)


def reverse_entries(d: Derivation, names: Names | None = None) -> list[tuple[str, str]]:
    """(lhs, rhs) of the BPTT recursions of one step: the readout's adjoints and the derivative
    of the loss it passes to the cell (a cell with a readout, :func:`readout_reverse`), node
    adjoints, carried state adjoints, and the step contribution to every parameter gradient
    (dL/dA = sum_t of it), the readout's parameters last."""
    nm = names_for(d, names)
    r = d.reverse
    ro = readout_reverse(d)
    out = []
    if ro is not None:
        out += [(adjoint_symbol(nm, u), factored(s, nm)) for u, s in ro.assignments]
        out.append((loss_symbol(nm, d.output), factored(ro.output, nm)))
    out += [(adjoint_symbol(nm, u), factored(s, nm)) for u, s in r.assignments]
    for v, s in r.carries.items():
        out.append((rf"\delta {node_symbol(nm, v, 1)}", factored(s, nm) if s else "0"))
    grads = {**r.grads, **(ro.grads if ro is not None else {})}
    for p, s in grads.items():
        out.append((rf"\frac{{\partial L}}{{\partial {_name(nm, p)}}}",
                    rf"\sum_t {bracket_sum(s, nm)}"))
    return out


def bracket_sum(s: Sum, nm: Names) -> str:
    return rf"\left({factored(s, nm)}\right)" if len(s) > 1 else factored(s, nm)


def render_mode(d: Derivation, mode: str = "forward", names: Names | None = None) -> str:
    """A plain ``align*`` block of one mode (forward, reverse, jacobian)."""
    rows: list[tuple[str, str]]
    if mode == "forward":
        rows = shared_blocks(d, names)
        for p in d.params:
            nm = names_for(d, names)
            rows.append((partial_symbol(nm, d.output, 0, p),
                         collected(d, p, d.output, names, shared=True)))
    elif mode == "reverse":
        rows = reverse_entries(d, names)
    elif mode in ("jacobian", "flow"):
        rows = jacobian_entries(d, names)
    else:
        raise ValueError(f"unknown mode {mode!r}; expected forward, reverse or jacobian")
    body = " \\\\\n".join(f"{lhs} &= {rhs}" for lhs, rhs in rows)
    return "\\begin{align*}\n" + body + "\n\\end{align*}"


def notebook_summary(d: Derivation) -> str:
    """_repr_latex_: the shared blocks and dh_t/dA for the first parameter."""
    nm = names_for(d)
    rows = shared_blocks(d)
    p = d.params[0]
    rows.append((partial_symbol(nm, d.output, 0, p), collected(d, p, d.output, shared=True)))
    return "$$\\begin{aligned}" + r" \\ ".join(f"{a} &= {b}" for a, b in rows) + \
        "\\end{aligned}$$"


def term_latex(t: Term, names: Names) -> str:
    return _signed(t.coef, product(t.factors, names), True)


def any_latex(obj: Any, names: Names) -> str:  # pragma: no cover - convenience
    return expanded(obj, names) if isinstance(obj, Sum) else vec(obj, names)
