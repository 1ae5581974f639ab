"""Gradient flow: why gradients vanish or explode, derived for any cell and measured.

Everything here is derived from the one-step state Jacobian of the derivation
(:attr:`derive.calculus.derivation.Derivation.jacobian`, J_t[u][v] = d u_t / d v_{t-1}); no cell is
known by name.

Symbolic (:func:`latex_rows`, printed with :mod:`derive.printing.latex` so it speaks the same
notation):

* the Jacobian blocks and their product over steps,
  d s_t / d s_k = prod_{j=k+1}^{t} J_j = J_t J_{t-1} ... J_{k+1};
* the *carousel* (:func:`carousel`): the terms of d v_t / d v_{t-1} that are products of d(.)
  factors only and pass through no activation derivative, i.e. the gated linear self-loop of a
  state: the constant error carousel of Hochreiter and Schmidhuber (1997). For the LSTMs it is
  d(f_t) in dc_t/dc_{t-1}, for the GRU d(z_t) in dh_t/dh_{t-1}; the RNN has none. Unrolled,
  d c_t / dA = (prod_{j=k+1}^{t} d(f_j)) d c_k / dA + (other paths), and inside dh_t/dA it is
  multiplied by the prefix d h_t / d c_t = d(o_t) d(tanh'(c_t)) (:func:`within`), a factor hand
  derivations often drop. Its spectral norm is max_i prod_j f_ji <= 1 (sqrt(n) is the
  Frobenius norm of the identity, not its spectral norm);
* norm bounds (:func:`term_bound`; Bengio, Simard and Frasconi 1994; Pascanu, Mikolov and
  Bengio 2013): ||J_uv||_2 <= sum over terms of prod ||factor||_2, with ||d(v)||_2 = max_i |v_i|
  bounded by interval arithmetic over the node expressions (sigma <= 1, |tanh| <= 1,
  sigma' <= 1/4, tanh' <= 1) and ||W||_2 measured. The output gate's single path is
  ||prod_j d(sigma(s_j)) d(o'_j) W_o||_2 <= (||W_o||_2 / 4)^{t-k} (Frobenius-style bounds carry
  sqrt(n) and sqrt(n)/2 for spectral norms that are 1 and 1/4); for the Elman RNN the same rule
  gives ||prod_j d(h'_j) U||_2 <= ||U||_2^{t-k};
* the sum over paths (:func:`path_sum`; Pascanu et al. 2013, eqs 3-5): unrolling
  ds_t/dA = J_t ds_{t-1}/dA + V_t^A from ds_0/dA = 0 gives
  ds_t/dA = sum_{k=0}^{t-1} (prod_{l=0}^{k-1} J_{t-l}) V_{t-k}^A; for the RNN and A = W that is
  dh_t/dW = sum_k (prod_{l<k} d(h'_{t-l}) U) d(h'_{t-k}) d_2(x_{t-k}) (in index notation the
  derivative is at step t-k, component gamma_k);
* the truncated gradient (:func:`truncated_terms`; Gers, Schmidhuber and Cummins 2000): with
  h_{t-1} = o_{t-1} * tanh(c_{t-1}) following c_{t-1}, the total
  dc_t/dc_{t-1} = d(f_t) + (dc_t/dh_{t-1}) (dh_{t-1}/dc_{t-1}); dc_t/dc_{t-1} ~ f_t drops the
  second term, so it is exact exactly when that product vanishes (e.g. W_hf = W_hi = W_hg = 0,
  or o_{t-1} * tanh'(c_{t-1}) = 0). Then
  dc_t/dW_f ~ sum_{i=1}^{t} (prod_{j=i+1}^{t} d(f_j)) d^+c_i/dW_f.

Numeric (:func:`measure`), from the cell's kernel (:func:`kernel`, by content: ``forward`` for
the trajectory, ``state_jacobian`` for J_j): ||ds_T/ds_k|| and ||dh_T/dh_k|| (spectral and
Frobenius) against the lag T-k, the carousel path prod d(f_j) beside them, and the derived bound
prod_j beta_j with beta_j >= ||J_j||_2 from the term-wise bounds above.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from types import ModuleType
from typing import Any

import numpy as np

from ..calculus.algebra import ZERO, Diag, Factor, Ident, Mat, Sum, Term, make_sum, single
from ..calculus.derivation import Derivation, derive
from ..calculus.numeric import Step
from ..calculus.rules import partial
from ..printing.latex import Names, bracket, factor, factored, names_for, node_symbol, product, vec
from ..spec import Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref, walk
from ..spec.activations import ACTIVATIONS, Activation, Interval

# ============================================================================ symbolic structure


def _has_deriv(e: Expr) -> bool:
    """True when the vector expression contains an activation derivative act'(.)."""
    if isinstance(e, DerivAt):
        return True
    if isinstance(e, Call):
        return _has_deriv(e.arg)
    if isinstance(e, MatVec):
        return _has_deriv(e.arg)
    if isinstance(e, Add):
        return any(_has_deriv(t) for _, t in e.terms)
    if isinstance(e, Mul):
        return any(_has_deriv(f) for f in e.factors)
    return False


def _is_carousel_term(t: Term) -> bool:
    """A product of d(.) factors (no matrix) none of which is an activation derivative."""
    return all(isinstance(f, Diag) and not _has_deriv(f.v) for f in t.factors)


def carousel(d: Derivation) -> dict[str, Sum]:
    """The carousel of every state that has one: the terms of J_t[v][v] = d v_t / d v_{t-1}
    that are purely diagonal and pass through no activation derivative (the constant error
    carousel: the LSTM's d(f_t); the GRU's d(z_t)). The carousel path over k steps is prod_j
    of it, a diagonal matrix."""
    out: dict[str, Sum] = {}
    for v in d.states:
        terms = [(t.coef, t.factors) for t in d.jacobian[v][v] if _is_carousel_term(t)]
        if terms:
            out[v] = make_sum(terms, d.order)
    return out


def carousel_gates(d: Derivation, state: str) -> list[str]:
    """Gate nodes g whose bare d(g_t) is a carousel term of ``state`` (the forget gate f of the
    LSTMs, z of the GRU)."""
    c = carousel(d).get(state)
    if c is None:
        return []
    out = []
    for t in c:
        if len(t.factors) == 1 and t.coef == 1:
            v = t.factors[0].v  # type: ignore[attr-defined]
            if isinstance(v, Ref) and v.kind == "node" and v.lag == 0 \
                    and d.spec.nodes[v.name].role == "gate":
                out.append(v.name)
    return out


def _gate_hat_terms(d: Derivation, gate: str) -> list[Expr]:
    e = d.spec.nodes[gate + "__hat"].expr if gate + "__hat" in d.spec.nodes else None
    if e is None:
        return []
    return [t for _, t in e.terms] if isinstance(e, Add) else [e]


def gate_biases(d: Derivation, gate: str) -> list[str]:
    """1-D parameters that are summands of the gate's pre-activation (b_f for f)."""
    return [t.name for t in _gate_hat_terms(d, gate) if isinstance(t, Ref) and t.kind == "param"]


def gate_matrices(d: Derivation, gate: str) -> list[str]:
    """Matrix parameters of the gate's pre-activation, in spec order (W_xf, W_hf for f)."""
    return [t.param for t in _gate_hat_terms(d, gate) if isinstance(t, MatVec)]


def within(d: Derivation, u: str, v: str) -> Sum:
    """d u_t / d v_t inside one step: v a node at time t, previous states and x_t held fixed
    (e.g. dh_t/dc_t = d(o_t) d(tanh'(c_t)) for the LSTM). I when u == v, 0 when u does not
    depend on v."""
    order = d.order
    tot: dict[str, Sum] = {v: single(order, Ident())}

    def leaf(r: Ref) -> Sum:
        if r.kind == "node" and r.lag == 0:
            return tot.get(r.name, ZERO)
        return ZERO

    seen = False
    for name, node in d.spec.nodes.items():
        if name == v:
            seen = True
            continue
        if seen and node.role != "readout":
            tot[name] = partial(node.expr, leaf, None, order)
    return tot.get(u, ZERO)


@dataclass(frozen=True)
class Truncated:
    """The truncated gradient (Gers et al. 2000): dv_t/dv_{t-1} ~ d(g_t) for a carousel state v.

    ``exact`` = J[v][v] + sum_w J[v][w] (d w_{t-1}/d v_{t-1}), the total derivative when the
    other states of step t-1 follow v_{t-1} (h_{t-1} = o_{t-1} * tanh(c_{t-1})); ``carousel``
    is what the approximation keeps; ``rest`` the non-carousel terms of J[v][v] (dropped);
    ``through[w]`` = (J[v][w], d w_{t-1}/d v_{t-1} at step t-1) for the dropped paths through
    another state w.
    """

    state: str
    carousel: Sum
    rest: Sum
    through: dict[str, tuple[Sum, Sum]]


def truncated_terms(d: Derivation, state: str) -> Truncated | None:
    """The exact dv_t/dv_{t-1} split into the carousel and the terms the truncated gradient
    drops."""
    car = carousel(d).get(state)
    if car is None:
        return None
    keep = {t.factors for t in car}
    rest = make_sum(((t.coef, t.factors) for t in d.jacobian[state][state]
                     if t.factors not in keep), d.order)
    through: dict[str, tuple[Sum, Sum]] = {}
    for w in d.states:
        if w == state:
            continue
        dw = within(d, w, state)
        if d.jacobian[state][w] and dw:
            through[w] = (d.jacobian[state][w], dw)
    return Truncated(state, car, rest, through)


# ----------------------------------------------------------------------------- intervals

_UNBOUNDED: Interval = (None, None)


def _iadd(a: Interval, b: Interval, sign: int) -> Interval:
    lo_b, hi_b = (b if sign > 0 else (None if b[1] is None else -b[1],
                                      None if b[0] is None else -b[0]))
    lo = None if a[0] is None or lo_b is None else a[0] + lo_b
    hi = None if a[1] is None or hi_b is None else a[1] + hi_b
    return lo, hi


def _imul(a: Interval, b: Interval) -> Interval:
    if None in a or None in b:
        return _UNBOUNDED
    ps = [x * y for x in a for y in b]  # type: ignore[operator]
    return min(ps), max(ps)


def interval(d: Derivation, e: Expr) -> Interval:
    """An interval holding every entry of the vector expression, for all inputs and weights:
    activations and their derivatives by their records' ``range`` and ``deriv_range`` (sigma in
    [0, 1], tanh in [-1, 1], sigma' in [0, 1/4], tanh' in [0, 1]); sums and Hadamard products by
    interval arithmetic; gate nodes through their expressions. Inputs, parameters, matrix
    products and previous states are unbounded (None)."""
    if isinstance(e, Const):
        return e.value, e.value
    if isinstance(e, Call):
        return ACTIVATIONS[e.fn].range
    if isinstance(e, DerivAt):
        return ACTIVATIONS[e.fn].deriv_range
    if isinstance(e, Ref):
        if e.kind == "node" and e.lag == 0:
            return interval(d, d.spec.nodes[e.name].expr)
        return _UNBOUNDED
    if isinstance(e, Add):
        acc: Interval = (Fraction(0), Fraction(0))
        for s, t in e.terms:
            acc = _iadd(acc, interval(d, t), s)
        return acc
    if isinstance(e, Mul):
        acc = (Fraction(1), Fraction(1))
        for f in e.factors:
            acc = _imul(acc, interval(d, f))
        return acc
    return _UNBOUNDED


def diag_sup(d: Derivation, e: Expr) -> Fraction | None:
    """A constant bound on ||d(e)||_2 = max_i |e_i|, or None when e is unbounded."""
    lo, hi = interval(d, e)
    if lo is None or hi is None:
        return None
    return max(abs(lo), abs(hi))


# ----------------------------------------------------------------------------- term bounds


@dataclass(frozen=True)
class TermBound:
    """||coef * F_1 F_2 ...||_2 <= const * prod of the measured norms of ``measured`` factors
    (d(v) with v unbounded, and matrices W)."""

    const: Fraction
    measured: tuple[Factor, ...]


def term_bound(d: Derivation, t: Term) -> TermBound:
    """Submultiplicativity with the tight constants: ||d(v)||_2 = max |v_i| <= sup |v|."""
    const = abs(t.coef)
    meas: list[Factor] = []
    for f in t.factors:
        if isinstance(f, Ident):
            continue
        if isinstance(f, Diag):
            s = diag_sup(d, f.v)
            if s is not None:
                const *= s
                continue
        meas.append(f)
    return TermBound(const, tuple(meas))


def sum_bounds(d: Derivation, s: Sum) -> list[TermBound]:
    """Term bounds of a sum, terms with the same measured factors merged."""
    acc: dict[tuple[Factor, ...], Fraction] = {}
    for t in s:
        b = term_bound(d, t)
        acc[b.measured] = acc.get(b.measured, Fraction(0)) + b.const
    return [TermBound(c, m) for m, c in acc.items() if c != 0]


# ============================================================================ LaTeX

_SUB_TIME = re.compile(r"_\{t-(\d+)\}|_t(?![A-Za-z0-9])")


def _retime(text: str, time: str) -> str:
    """Replace the printer's time subscripts _t and _{t-n} by ``time`` and time-n
    (``time`` = 't-1' turns _{t-1} into _{t-2}; 't-k' turns it into _{t-k-1})."""
    m = re.fullmatch(r"(.*?)-(\d+)", time)
    base, off = (m.group(1), int(m.group(2))) if m else (time, 0)

    def sub(lag: int) -> str:
        at = base if off + lag == 0 else f"{base}-{off + lag}"
        return f"_{at}" if len(at) == 1 else f"_{{{at}}}"

    return _SUB_TIME.sub(lambda mm: sub(int(mm.group(1) or 0)), text)


class _Printer:
    """derive.printing.latex's printer with the time index replaced: names are swapped for opaque
    tokens while printing so that only the printer's own subscripts _t, _{t-1} move."""

    def __init__(self, d: Derivation, names: Names | None):
        self.d = d
        self.nm = names_for(d, names)
        self._tok = {k: f"\x00{i}\x00" for i, k in enumerate(self.nm)}
        self._back = {f"\x00{i}\x00": v for i, v in enumerate(self.nm.values())}

    def _at(self, fn: Any, obj: Any, time: str) -> str:
        if time == "t":
            return fn(obj, self.nm)
        text = _retime(fn(obj, self._tok), time)
        return re.sub("\x00\\d+\x00", lambda m: self._back[m.group(0)], text)

    def sum(self, s: Sum, time: str = "t") -> str:
        return self._at(factored, s, time)

    def bracket(self, s: Sum, time: str = "t") -> str:
        return self._at(bracket, s, time)

    def product(self, fs: tuple[Factor, ...], time: str = "t") -> str:
        return self._at(product, fs, time)

    def factor(self, f: Factor, time: str = "t") -> str:
        return self._at(factor, f, time)

    def vec(self, e: Expr, time: str = "t") -> str:
        return self._at(vec, e, time)

    def node(self, name: str, time: str = "t", lag: int = 0) -> str:
        return self._at(lambda n, nm: node_symbol(nm, n, lag), name, time)

    def name(self, n: str) -> str:
        return self.nm.get(n, n)

    def norm(self, f: Factor, time: str = "t") -> str:
        return rf"\|{self.factor(f, time)}\|_2"

    def bound(self, b: TermBound, time: str = "t") -> str:
        """const ||F_1||_2 ||F_2||_2 ..."""
        body = " ".join(self.norm(f, time) for f in b.measured)
        if not body:
            return _frac(b.const)
        return body if b.const == 1 else f"{_frac(b.const)} {body}"

    def bounds(self, bs: list[TermBound], time: str = "t") -> str:
        return " + ".join(self.bound(b, time) for b in bs) if bs else "0"


def _frac(c: Fraction) -> str:
    if c.denominator == 1:
        return str(c.numerator)
    return rf"\tfrac{{{c.numerator}}}{{{c.denominator}}}"


def _pvec(p: _Printer, states: Sequence[str], time: str, lag: int = 0) -> str:
    syms = [p.node(s, time, lag) for s in states]
    return syms[0] if len(syms) == 1 else "(" + ", ".join(syms) + ")"


def _dfrac(num: str, den: str, total: bool = False) -> str:
    op = r"\mathrm{d}" if total else r"\partial"
    return rf"\frac{{{op} {num}}}{{{op} {den}}}"


def _time_dependent(b: TermBound) -> bool:
    return any(not isinstance(f, Mat) for f in b.measured)


def _short_frac(c: Fraction) -> str:
    """\\tfrac14 where numerator and denominator are single digits, else as :func:`_frac`."""
    if 0 < c.numerator < 10 and 1 < c.denominator < 10:
        return rf"\tfrac{c.numerator}{c.denominator}"
    return _frac(c)


def _deriv_constant(act: Activation) -> str:
    """$\\|d(act')\\|_2 \\le sup |act'|$, from the activation's record."""
    norm = rf"\|d({act.latex}')\|_2"
    bound = act.deriv_bound
    return f"${norm}$ unbounded" if bound is None else rf"${norm} \le {_short_frac(bound)}$"


def _norm_constants(d: Derivation) -> str:
    """The constants of the bounds, read from the activation records: the classic
    (sigma, sigma' and tanh', quoted for every cell), then those of the cell's other
    activations."""
    sigma, tanh = ACTIVATIONS["sigmoid"], ACTIVATIONS["tanh"]  # the classic constants, by name
    hi = sigma.range[1]
    assert hi is not None
    text = (rf"$\|d({sigma.latex}(\cdot))\|_2 \le {_short_frac(hi)}$, "
            f"{_deriv_constant(sigma)}, {_deriv_constant(tanh)} (bounds with the Frobenius norm "
            "carry $\\sqrt{n}$ and $\\sqrt{n}/2$ instead)")
    used = {e.fn for node in d.spec.nodes.values() for e in walk(node.expr)
            if isinstance(e, (Call, DerivAt))}
    other = [_deriv_constant(a) for a in ACTIVATIONS.values()
             if a.name in used and a not in (sigma, tanh)]
    return text + ("; this cell's other activations: " + ", ".join(other) if other else "")


def _path_bound(p: _Printer, b: TermBound) -> str:
    """Bound on ||prod_{j=k+1}^{t} (term at j)||_2 for one term repeated over the steps."""
    if _time_dependent(b):
        return rf"\prod_{{j=k+1}}^{{t}} {p.bound(b, 'j')}"
    if not b.measured and b.const == 1:
        return "1"
    return rf"\left({p.bound(b)}\right)^{{t-k}}"


@dataclass(frozen=True)
class LatexBlock:
    """A titled group of (lhs, rhs) rows with a sentence of text (for the document printer)."""

    key: str
    title: str
    text: str
    rows: tuple[tuple[str, str], ...]


def latex_blocks(d: Derivation, names: Names | None = None) -> list[LatexBlock]:
    """The symbolic gradient-flow results of one cell, grouped (see :func:`latex_rows`)."""
    p = _Printer(d, names)
    h = d.output
    S = list(d.states)
    multi = len(S) > 1
    blocks: list[LatexBlock] = []

    # -- one-step Jacobian and its product ---------------------------------------------------
    rows: list[tuple[str, str]] = []
    for u in S:
        for v in S:
            rows.append((_dfrac(p.node(u), p.node(v, lag=1)), p.sum(d.jacobian[u][v])))
    if multi:
        # display-style fractions: in a matrix \frac would be set small and crowded
        cells = r" \\ ".join(" & ".join(_dfrac(p.node(u), p.node(v, lag=1)).replace(
            r"\frac", r"\dfrac", 1) for v in S) for u in S)
        rows.append(("J_t", rf"{_dfrac(_pvec(p, S, 't'), _pvec(p, S, 't', 1))} = "
                            rf"\begin{{pmatrix}} {cells} \end{{pmatrix}}"))
        rows.append((_dfrac(_pvec(p, S, "t"), _pvec(p, S, "k")),
                     r"\prod_{j=k+1}^{t} J_j = J_t J_{t-1} \cdots J_{k+1}"))
        rows.append((_dfrac(p.node(h), p.node(h, "k")),
                     rf"\left[\prod_{{j=k+1}}^{{t}} J_j\right]_{{{p.name(h)}{p.name(h)}}}"))
    else:
        M = d.jacobian[h][h]
        rows.append(("J_t", _dfrac(p.node(h), p.node(h, lag=1))))
        body = p.sum(M, "j") if len(M) == 1 else "J_j"
        rows.append((_dfrac(p.node(h), p.node(h, "k")),
                     rf"\prod_{{j=k+1}}^{{t}} {body} = J_t J_{{t-1}} \cdots J_{{k+1}}"))
    blocks.append(LatexBlock(
        "jacobian", "One-step state Jacobian and its products",
        "Gradients flow from step $t$ back to step $k$ through the ordered product of the "
        "one-step Jacobians (the later step on the left).", tuple(rows)))

    # -- carousel ----------------------------------------------------------------------------
    car = carousel(d)
    rows = []
    for v, cs in car.items():
        vt, vk = p.node(v), p.node(v, "k")
        rows.append((rf"\left.{_dfrac(vt, p.node(v, lag=1))}\right|_{{\mathrm{{carousel}}}}",
                     p.sum(cs)))
        prod_ = rf"\left(\prod_{{j=k+1}}^{{t}} {p.bracket(cs, 'j')}\right)"
        rows.append((_dfrac(vt, "A"), rf"{prod_} {_dfrac(vk, 'A')} + \ldots"))
        if v != h:
            pre = within(d, h, v)
            rows.append((_dfrac(p.node(h), "A"),
                         rf"{p.bracket(pre)} {prod_} {_dfrac(vk, 'A')} + \ldots"))
        lo = interval(d, _carousel_vec(cs))[0]
        entry = _carousel_entry(p, cs)
        absl, absr = (("", "") if lo is not None and lo >= 0 else (r"\left|", r"\right|"))
        rhs = rf"\max_i {absl}\prod_{{j=k+1}}^{{t}} {entry}{absr}"
        sup = diag_sup(d, _carousel_vec(cs))
        if sup is not None and sup <= 1:
            rhs += r" \le 1"
        rows.append((rf"\left\|\prod_{{j=k+1}}^{{t}} {p.bracket(cs, 'j')}\right\|_2", rhs))
    if car:
        # the prefix d h_t / d v_t of a carousel state v other than the output, in the notation
        prefix = "".join(
            f" Inside the output's gradient it is multiplied by the prefix "
            f"$\\partial {p.node(h)} / \\partial {p.node(v)}$ of the step."
            for v in car if v != h)
        blocks.append(LatexBlock(
            "carousel", "Constant error carousel (Hochreiter and Schmidhuber 1997)",
            "The purely diagonal part of a state's self-Jacobian that passes through no "
            "activation derivative is the constant error carousel; unrolled, it multiplies "
            "the gradient by a product of gates, which neither mixes units nor exceeds 1."
            f"{prefix} The dots $\\ldots$ stand for the other paths.",
            tuple(rows)))

    # -- bounds ------------------------------------------------------------------------------
    rows = []
    for u in S:
        for v in S:
            blk = d.jacobian[u][v]
            lhs = rf"\left\|{_dfrac(p.node(u), p.node(v, lag=1))}\right\|_2"
            rows.append((lhs, r"\le " + p.bounds(sum_bounds(d, blk))))
    for t in d.jacobian[h][h]:
        b = term_bound(d, t)
        lhs = rf"\left\|\prod_{{j=k+1}}^{{t}} {p.product(t.factors, 'j')}\right\|_2"
        if len(S) == 1 and len(d.jacobian[h][h]) == 1:
            lhs = rf"\left\|{_dfrac(p.node(h), p.node(h, 'k'))}\right\|_2"
        rows.append((lhs, r"\le " + _path_bound(p, b)))
    if multi:
        beta = r" \\ ".join(" & ".join(rf"\beta^{{{p.name(u)}{p.name(v)}}}_j" for v in S)
                             for u in S)
        rows.append((rf"\left\|{_dfrac(_pvec(p, S, 't'), _pvec(p, S, 'k'))}\right\|_2",
                     rf"\le \prod_{{j=k+1}}^{{t}} \|J_j\|_2 \le \prod_{{j=k+1}}^{{t}} "
                     rf"\left\|\begin{{pmatrix}} {beta} \end{{pmatrix}}\right\|_2"))
    else:
        rows.append((rf"\left\|{_dfrac(p.node(h), p.node(h, 'k'))}\right\|_2",
                     r"\le \prod_{j=k+1}^{t} \|J_j\|_2 \le \prod_{j=k+1}^{t} \beta_j"))
    blocks.append(LatexBlock(
        "bounds", "Norm bounds (Bengio et al. 1994; Pascanu et al. 2013)",
        f"Spectral norms, with $\\|d(v)\\|_2 = \\max_i |v_i|$: {_norm_constants(d)}. One path "
        "repeats one term of the output's self-Jacobian; $\\beta^{uv}_j$ is the bound on block "
        "$uv$ at step $j$, and a block matrix's norm is at most the norm of the matrix of its "
        "blocks' norms.",
        tuple(rows)))

    # -- sum over paths -----------------------------------------------------------
    rows = []
    M = d.jacobian[h][h]
    if len(S) == 1:
        inner = p.sum(M, "t-l") if len(M) == 1 else "J_{t-l}"
        for a in d.params:
            V = d.forward[a].V
            if not V:
                continue
            rows.append((_dfrac(p.node(h), p.name(a)),
                         rf"\sum_{{k=0}}^{{t-1}} \left(\prod_{{l=0}}^{{k-1}} {inner}\right) "
                         rf"{p.bracket(V, 't-k')}"))
    else:
        rows.append((_dfrac(_pvec(p, S, "t"), "A"),
                     r"\sum_{k=0}^{t-1} \left(\prod_{l=0}^{k-1} J_{t-l}\right) V^A_{t-k}"))
    blocks.append(LatexBlock(
        "paths", "Sum over paths (Pascanu et al. 2013, eqs 3-5)",
        "Unrolling the forward recursion from $\\partial s_0 / \\partial A = 0$; each product "
        "is ordered with $l = 0$ on the left, and $V^A_t$ is the direct term of the step.",
        tuple(rows)))

    # -- the truncated gradient ------------------------------------------------------------
    for v in car:
        rows = _truncated_rows(d, p, v)
        if rows:
            blocks.append(LatexBlock(
                f"truncated_{v}", "The truncated gradient (Gers et al. 2000)",
                "With the other states of step $t-1$ following "
                f"${p.node(v, lag=1)}$, the total derivative keeps the carousel and adds the "
                "paths through them; the truncated gradient, which Gers et al. (2000) use to train "
                "the forget gate, drops those paths.",
                tuple(rows)))
    return blocks


def _carousel_vec(cs: Sum) -> Expr:
    """The vector D with d(D) = the carousel sum (a sum of Hadamard products)."""
    terms = []
    for t in cs:
        vs = [f.v for f in t.factors if isinstance(f, Diag)]
        e: Expr = vs[0] if len(vs) == 1 else Mul(tuple(vs))
        terms.append((1 if t.coef > 0 else -1, e if abs(t.coef) == 1 else
                      Mul((Const(abs(t.coef)), e))))
    return terms[0][1] if len(terms) == 1 and terms[0][0] == 1 else Add(tuple(terms))


def _carousel_entry(p: _Printer, cs: Sum) -> str:
    return f"({p.vec(_carousel_vec(cs), 'j')})_i"


def _truncated_rows(d: Derivation, p: _Printer, v: str) -> list[tuple[str, str]]:
    s0 = truncated_terms(d, v)
    if s0 is None:
        return []
    vt, vp = p.node(v), p.node(v, lag=1)
    total = _dfrac(vt, vp, total=True)
    exact = p.sum(s0.carousel)
    dropped: list[str] = []
    if s0.rest:
        dropped.append(p.sum(s0.rest))
    for _w, (Jvw, dw) in s0.through.items():
        dropped.append(rf"{p.bracket(Jvw)} {p.bracket(dw, 't-1')}")
    rows = [(total, exact + "".join(f" - {x[1:]}" if x.startswith("-") else f" + {x}"
                                    for x in dropped)),
            (total, r"\approx " + exact)]
    # when is it exact: every dropped term has a parameter factor, or the paths' last factor
    # d w_{t-1}/d v_{t-1} vanishes
    conds: list[str] = []
    params: list[str] = []
    ok = True
    dropped_terms = list(s0.rest) + [t for Jvw, _ in s0.through.values() for t in Jvw]
    for t in dropped_terms:
        ps = [f.name for f in t.factors if isinstance(f, Mat)] + \
             [f.v.name for f in t.factors if isinstance(f, Diag) and isinstance(f.v, Ref)
              and f.v.kind == "param"]
        if not ps:
            ok = False
            break
        if ps[0] not in params:
            params.append(ps[0])
    if ok and params:
        conds.append(" = ".join(p.name(a) for a in params) + " = 0")
    if not s0.rest and len(s0.through) == 1:
        (w, (_, dw)), = s0.through.items()
        if len(dw) == 1 and all(isinstance(f, Diag) for f in dw.terms[0].factors):
            had = r" \odot ".join(p.vec(f.v, "t-1") for f in dw.terms[0].factors)  # type: ignore
            conds.append(had + " = 0")
    if conds:  # sufficient conditions for the dropped terms to vanish
        rows.append((total, exact + r" \quad \text{when } " + r" \text{ or } ".join(conds)))
    gates = carousel_gates(d, v)
    if gates:
        mats = gate_matrices(d, gates[0])
        if mats:
            a = mats[0]
            V = d.forward[a].raw.V[v]
            lhs = _dfrac(vt, p.name(a))
            car_j = p.bracket(s0.carousel, "j")
            rows.append((lhs, rf"\approx \sum_{{i=1}}^{{t}} \left(\prod_{{j=i+1}}^{{t}} {car_j}"
                              rf"\right) {p.bracket(V, 'i')}"))
            rows.append((lhs, rf"\left[\sum_{{i=1}}^{{t}} \left(\prod_{{j=i+1}}^{{t}} J_j\right) "
                              rf"V^{{{p.name(a)}}}_i\right]_{{{p.name(v)}}}"))
    return rows


def latex_rows(d: Derivation, names: Names | None = None) -> list[tuple[str, str]]:
    """(lhs, rhs) LaTeX of the gradient-flow results of ``d``: the Jacobian blocks and their
    product over steps, the carousel path (Hochreiter and Schmidhuber 1997) with its prefix,
    the norm bounds (Bengio et al. 1994; Pascanu et al. 2013), the sum over paths and the
    truncated gradient of Gers et al. (2000).

    The relation is '=' unless the rhs starts with ``\\le `` or ``\\approx `` (see
    :func:`split_relation`). ``names`` renames symbols as in
    :func:`derive.printing.latex.names_for`.
    """
    return [r for b in latex_blocks(d, names) for r in b.rows]


def split_relation(rhs: str) -> tuple[str, str]:
    """('=', rhs) or the leading relation of a row's rhs and the rest: ('\\le', '...')."""
    for rel in (r"\le", r"\approx"):
        if rhs.startswith(rel + " "):
            return rel, rhs[len(rel) + 1:]
    return "=", rhs


# ============================================================================ numeric


def kernel(d: Derivation) -> ModuleType | None:
    """The NumPy kernel of exactly this cell, found by the spec's content
    (:attr:`derive.spec.CellSpec.digest`), never by its name: the built-in kernel when its
    ``SPEC_DIGEST`` matches, else the kernel printed for the spec
    (:func:`derive.codegen.load_kernel`); None when neither can be had (the spec is then
    evaluated directly)."""
    from ..codegen.naming import module_name
    from ..resources import KERNELS_PACKAGE

    try:
        mod = importlib.import_module(f"{KERNELS_PACKAGE}.{module_name(d.name)}")
        if getattr(mod, "SPEC_DIGEST", None) == d.spec.digest:
            return mod
    except ImportError:
        pass
    try:
        from ..codegen.load import load_kernel

        return load_kernel(d.spec)
    except ImportError:  # printing needs jinja2; without it, the spec is evaluated
        return None


def init_params(d: Derivation, n_in: int, n_hidden: int, seed: int = 0,
                forget_bias: float = 0.0) -> dict[str, np.ndarray]:
    """Weights uniform(-1/sqrt(n), 1/sqrt(n)) (torch's init) for every parameter of the cell,
    plus ``forget_bias`` on the biases of every carousel gate (b_f of the LSTMs, b_z of the
    GRU; nothing for a cell without a carousel)."""
    rng = np.random.default_rng(seed)
    k = 1.0 / math.sqrt(n_hidden)
    sizes = {"hidden": n_hidden, "input": n_in}
    P = {a: rng.uniform(-k, k, size=tuple(sizes[s] for s in d.spec.params[a].shape))
         for a in d.params}
    for b in forget_biases(d):
        P[b] = P[b] + forget_bias
    return P


def forget_biases(d: Derivation) -> list[str]:
    """The biases of the carousel gates (the parameters ``--forget-bias`` shifts)."""
    out: list[str] = []
    for v in carousel(d):
        for g in carousel_gates(d, v):
            out += [b for b in gate_biases(d, g) if b not in out]
    return out


@dataclass
class Trajectory:
    """States s_0..s_T of one sequence (batch of 1), the one-step Jacobians J_1..J_T
    (J[j-1] = d s_j / d s_{j-1}, states concatenated in ``d.states`` order) and the node values
    of every step (:class:`derive.calculus.numeric.Step`, steps[j-1] is step j)."""

    d: Derivation
    params: dict[str, np.ndarray]
    xs: np.ndarray  # (T, n_in)
    states: list[dict[str, np.ndarray]]  # s_0 .. s_T
    J: np.ndarray  # (T, S, S)
    steps: list[Step]
    source: str  # "kernel" or "spec"

    @property
    def T(self) -> int:
        return len(self.xs)

    @property
    def n(self) -> int:
        return len(self.states[0][self.d.output])


def trajectory(d: Derivation, params: Mapping[str, np.ndarray], xs: np.ndarray,
               state0: Mapping[str, np.ndarray] | None = None) -> Trajectory:
    """Run the generated kernel (``forward``, then ``state_jacobian`` at every step); a cell
    without a kernel is run by evaluating its spec and derived Jacobian
    (:mod:`derive.calculus.numeric`)."""
    missing = [a for a in d.params if a not in params]
    if missing:
        raise ValueError(f"params of cell {d.name!r}: missing {missing}; expected {d.params}")
    P = {a: np.asarray(params[a], dtype=np.float64) for a in d.params}
    xs = np.asarray(xs, dtype=np.float64)
    if xs.ndim != 2 or len(xs) < 1:
        raise ValueError(f"xs must have shape (T, n_in) with T >= 1, got {xs.shape}")
    n = P[next(a for a in d.params if d.spec.params[a].shape[0] == "hidden")].shape[0]
    sizes = {"hidden": n, "input": xs.shape[1]}
    for a in d.params:
        want = tuple(sizes[dim] for dim in d.spec.params[a].shape)
        if P[a].shape != want:
            raise ValueError(f"params[{a!r}] has shape {P[a].shape}; expected {want} for "
                             f"n_hidden={n} and n_in={xs.shape[1]} (from xs)")
    if state0 is not None and set(state0) != set(d.states):
        raise ValueError(f"state0 must map exactly the states {list(d.states)}, got "
                         f"{sorted(state0)}")
    s0 = {s: np.zeros(n) if state0 is None else np.asarray(state0[s], dtype=np.float64)
          for s in d.states}
    for s, v in s0.items():
        if v.shape != (n,):
            raise ValueError(f"state0[{s!r}] has shape {v.shape}; expected ({n},)")
    mod = kernel(d)
    states: list[dict[str, np.ndarray]] = [s0]
    Js: list[np.ndarray] = []
    steps: list[Step] = []
    if mod is not None:
        _, cache = mod.forward(P, xs[:, None, :], {s: s0[s][None] for s in d.states})
        for j in range(1, len(xs) + 1):
            states.append({s: cache[f"S_{s}"][j, 0] for s in d.states})
        for j in range(len(xs)):
            prev = states[j]
            Js.append(mod.state_jacobian(P, xs[j][None], {s: prev[s][None] for s in d.states})[0])
            steps.append(Step(d.spec, P, xs[j], prev))
        source = "kernel"
    else:
        for j in range(len(xs)):
            st = Step(d.spec, P, xs[j], states[j])
            steps.append(st)
            states.append(st.states)
            Js.append(np.block([[st.evaluate(d.jacobian[u][v], shape=(n, n)) for v in d.states]
                                for u in d.states]))
        source = "spec"
    return Trajectory(d, P, xs, states, np.array(Js), steps, source)


def jacobian_product(tr: Trajectory, t: int, k: int) -> np.ndarray:
    """d s_t / d s_k = J_t J_{t-1} ... J_{k+1} (identity when t == k)."""
    S = tr.J.shape[1]
    out = np.eye(S)
    for j in range(t, k, -1):
        out = out @ tr.J[j - 1]
    return out


def _diag_vec(st: Step, s: Sum, n: int) -> np.ndarray:
    """The diagonal of a purely diagonal sum evaluated at a step."""
    return np.diag(st.evaluate(s, shape=(n, n))).copy()


def step_bounds(tr: Trajectory, at_values: bool = False) -> np.ndarray:
    """beta_j >= ||J_j||_2 for every step: the spectral norm of the S x S matrix of block
    bounds beta^{uv}_j = sum over terms of |coef| prod ||factor||_2 (a block matrix's spectral norm
    is at most that of the matrix of its blocks' norms).

    By default every bounded d(v) takes its derived constant (sigma' <= 1/4, gates <= 1; see
    :func:`term_bound`) and only unbounded d(v) and the matrices are measured; with
    ``at_values`` every d(v) is measured at the step (max_i |v_i|), the tightest term-wise bound.
    """
    d, n = tr.d, tr.n
    wnorm = {a: float(np.linalg.norm(tr.params[a], 2)) for a in d.params
             if d.spec.params[a].is_matrix}
    blocks: dict[tuple[str, str], list[TermBound]] = {}
    for u in d.states:
        for v in d.states:
            blk = d.jacobian[u][v]
            blocks[(u, v)] = ([TermBound(abs(t.coef), tuple(f for f in t.factors
                                                            if not isinstance(f, Ident)))
                               for t in blk] if at_values else sum_bounds(d, blk))
    out = np.empty(tr.T)
    for j, st in enumerate(tr.steps):
        B = np.zeros((len(d.states), len(d.states)))
        for a, u in enumerate(d.states):
            for b, v in enumerate(d.states):
                tot = 0.0
                for tb in blocks[(u, v)]:
                    val = float(tb.const)
                    for f in tb.measured:
                        if isinstance(f, Mat):
                            val *= wnorm[f.name]
                        elif isinstance(f, Diag):
                            val *= float(np.max(np.abs(np.broadcast_to(st.vec(f.v), (n,)))))
                        else:  # pragma: no cover - no other factor occurs in a state Jacobian
                            raise TypeError(f)
                    tot += val
                B[a, b] = tot
        out[j] = float(np.linalg.norm(B, 2))
    return out


def _check_param(d: Derivation, param: str) -> None:
    if param not in d.params:
        raise ValueError(f"unknown parameter {param!r} of cell {d.name!r}; expected one of "
                         f"{d.params}")


def _check_t(tr: Trajectory, t: int | None) -> int:
    if t is None:
        return tr.T
    if not 0 <= t <= tr.T:
        raise ValueError(f"t={t} is outside the trajectory; expected 0 <= t <= {tr.T}")
    return t


def path_sum(tr: Trajectory, param: str, t: int | None = None) -> dict[str, np.ndarray]:
    """ds_t/dA = sum_{k=0}^{t-1} (prod_{l=0}^{k-1} J_{t-l}) V^A_{t-k} (the sum over paths
    in matrix form; ds_0/dA = 0). Returns state -> (n, |A|), A flattened row-major."""
    d, n = tr.d, tr.n
    _check_param(d, param)
    t = _check_t(tr, t)
    size = tr.params[param].size
    raw = d.forward[param].raw
    total = np.zeros((len(d.states) * n, size))
    prod_ = np.eye(len(d.states) * n)
    for k in range(t):
        st = tr.steps[t - k - 1]
        V = np.concatenate([st.evaluate(raw.V[u], shape=(n, size)) for u in d.states])
        total += prod_ @ V
        prod_ = prod_ @ tr.J[t - k - 1]
    return {u: total[i * n:(i + 1) * n] for i, u in enumerate(d.states)}


def carousel_path_sum(tr: Trajectory, state: str, param: str,
                      t: int | None = None) -> np.ndarray:
    """The truncated gradient: d v_t/dA ~ sum_{i=1}^{t} (prod_{j=i+1}^{t} D_j) V^{A,v}_i with
    D_j the carousel of ``state`` (d(f_j) for the LSTM's c)."""
    d, n = tr.d, tr.n
    _check_param(d, param)
    car = carousel(d).get(state)
    if car is None:
        raise ValueError(f"cell {d.name!r}: state {state!r} has no carousel; states with one: "
                         f"{list(carousel(d)) or 'none'}")
    t = _check_t(tr, t)
    raw = d.forward[param].raw
    size = tr.params[param].size
    total = np.zeros((n, size))
    D = np.ones(n)
    for i in range(t, 0, -1):
        st = tr.steps[i - 1]
        total += D[:, None] * st.evaluate(raw.V[state], shape=(n, size))
        D = D * _diag_vec(st, car, n)
    return total


def truncated_onestep(tr: Trajectory, state: str) -> np.ndarray:
    """Relative size of what the truncated gradient drops at every step j = 2..T:
    ||dv_j/dv_{j-1} - D_j||_2 / ||dv_j/dv_{j-1}||_2 with the exact total derivative."""
    d, n = tr.d, tr.n
    s0 = truncated_terms(d, state)
    if s0 is None:
        raise ValueError(f"cell {d.name!r}: state {state!r} has no carousel")
    out = []
    for j in range(2, tr.T + 1):
        st, prev = tr.steps[j - 1], tr.steps[j - 2]
        D = st.evaluate(s0.carousel, shape=(n, n))
        exact = st.evaluate(d.jacobian[state][state], shape=(n, n))
        for _w, (Jvw, dw) in s0.through.items():
            exact = exact + st.evaluate(Jvw, shape=(n, n)) @ prev.evaluate(dw, shape=(n, n))
        out.append(np.linalg.norm(exact - D, 2) / max(np.linalg.norm(exact, 2), 1e-300))
    return np.array(out)


def total_derivative(tr: Trajectory, state: str, j: int) -> np.ndarray:
    """The exact dv_j/dv_{j-1} (the other states of step j-1 following v_{j-1})."""
    d, n = tr.d, tr.n
    s0 = truncated_terms(d, state)
    if s0 is None:
        raise ValueError(f"cell {d.name!r}: state {state!r} has no carousel")
    st, prev = tr.steps[j - 1], tr.steps[j - 2]
    exact = st.evaluate(d.jacobian[state][state], shape=(n, n))
    for _w, (Jvw, dw) in s0.through.items():
        exact = exact + st.evaluate(Jvw, shape=(n, n)) @ prev.evaluate(dw, shape=(n, n))
    return exact


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


def _norms(m: np.ndarray) -> tuple[float, float]:
    return float(np.linalg.norm(m, 2)), float(np.linalg.norm(m))


def decay_rate(lags: np.ndarray, values: np.ndarray) -> float:
    """Geometric factor per step: exp of the least-squares slope of log(value) against lag
    (NaN with fewer than two positive finite values)."""
    ok = np.isfinite(values) & (values > 0)
    if ok.sum() < 2:
        return float("nan")
    slope = np.polyfit(lags[ok], np.log(values[ok]), 1)[0]
    return float(np.exp(slope))


@dataclass
class Flow:
    """Measured gradient flow of one cell along one trajectory, against the lag L = T - k,
    L = 1..T-1 (t = T fixed; k >= 1 so that s_k came out of the cell).

    ``norms[path][kind]``: path in ``h`` (dh_T/dh_k, the output block of the product),
    ``state`` (ds_T/ds_k, all states), ``carousel`` (prod d(f_j), when the cell has one) and
    ``block`` (d v_T/d v_k, the carousel state's block of the full product); kind in
    ``spectral``, ``frobenius``. Upper bounds on ||ds_T/ds_k||_2 (hence on ||dh_T/dh_k||_2), from
    loosest to tightest: ``bound`` = prod_j beta_j with the derived constants,
    ``bound_at_values`` = the same term-wise bound with every d(v) measured, ``submult`` =
    prod_j ||J_j||_2. ``rho``: spectral radius of J_j per step.
    """

    cell: str
    states: tuple[str, ...]
    lags: np.ndarray
    norms: dict[str, dict[str, np.ndarray]]
    bound: np.ndarray
    bound_at_values: np.ndarray
    submult: np.ndarray
    rho: np.ndarray
    carousel_state: str | None
    carousel_gates: list[str]
    truncated: dict[str, Any] | None
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "kernel"

    def rate(self, path: str, kind: str = "spectral") -> float:
        return decay_rate(self.lags, self.norms[path][kind])

    @property
    def paths(self) -> list[str]:
        return list(self.norms)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        def lst(a: np.ndarray) -> list[float | None]:
            return [float(x) if np.isfinite(x) else None for x in np.asarray(a, dtype=float)]

        return {
            "cell": self.cell,
            "states": list(self.states),
            "source": self.source,
            "settings": self.settings,
            "lags": [int(x) for x in self.lags],
            "norms": {p: {k: lst(v) for k, v in kinds.items()} for p, kinds in self.norms.items()},
            "rates": {p: _none(self.rate(p)) for p in self.norms},
            "bound": lst(self.bound),
            "bound_at_values": lst(self.bound_at_values),
            "submultiplicative": lst(self.submult),
            "spectral_radius_per_step": lst(self.rho),
            "carousel": ({"state": self.carousel_state, "gates": self.carousel_gates}
                         if self.carousel_state else None),
            "truncated": self.truncated,
        }


def _none(x: float) -> float | None:
    return x if np.isfinite(x) else None


def measure(d: Derivation | str, params: Mapping[str, np.ndarray], xs: np.ndarray,
            state0: Mapping[str, np.ndarray] | None = None,
            settings: Mapping[str, Any] | None = None) -> Flow:
    """Measure the gradient flow of one trajectory (see :class:`Flow`)."""
    d = derive(d) if isinstance(d, str) else d
    tr = trajectory(d, params, xs, state0)
    T, n = tr.T, tr.n
    if T < 2:
        raise ValueError(f"need at least 2 steps to measure a lag, got T={T}")
    lags = np.arange(1, T)
    S = len(d.states) * n
    car = carousel(d)
    cstate = next(iter(car), None)
    norms: dict[str, dict[str, list[float]]] = {"h": {"spectral": [], "frobenius": []}}
    if len(d.states) > 1:
        norms["state"] = {"spectral": [], "frobenius": []}
    if cstate is not None:
        norms["carousel"] = {"spectral": [], "frobenius": []}
        if len(d.states) > 1:
            norms["block"] = {"spectral": [], "frobenius": []}
        ci = d.states.index(cstate)
        Dj = [_diag_vec(st, car[cstate], n) for st in tr.steps]
    beta = step_bounds(tr)
    beta_v = step_bounds(tr, at_values=True)
    jn = np.array([np.linalg.norm(J, 2) for J in tr.J])
    rho = np.array([np.max(np.abs(np.linalg.eigvals(J))) for J in tr.J])
    prod_ = np.eye(S)
    Dprod = np.ones(n)
    bound, bound_v, sub = [], [], []
    lb, lv, ls = 0.0, 0.0, 0.0
    for L in lags:
        j = T - L + 1  # the step whose Jacobian joins the product: ds_T/ds_{T-L}
        prod_ = prod_ @ tr.J[j - 1]
        lb += _log(beta[j - 1])
        lv += _log(beta_v[j - 1])
        ls += _log(jn[j - 1])
        bound.append(_exp(lb))
        bound_v.append(_exp(lv))
        sub.append(_exp(ls))
        for path, m in (("h", prod_[:n, :n]), ("state", prod_)):
            if path in norms:
                a, b = _norms(m)
                norms[path]["spectral"].append(a)
                norms[path]["frobenius"].append(b)
        if cstate is not None:
            Dprod = Dprod * Dj[j - 1]
            norms["carousel"]["spectral"].append(float(np.max(np.abs(Dprod))))
            norms["carousel"]["frobenius"].append(float(np.linalg.norm(Dprod)))
            if "block" in norms:
                a, b = _norms(prod_[ci * n:(ci + 1) * n, ci * n:(ci + 1) * n])
                norms["block"]["spectral"].append(a)
                norms["block"]["frobenius"].append(b)
    s000 = None
    if cstate is not None:
        gates = carousel_gates(d, cstate)
        s000 = {"state": cstate}
        one = truncated_onestep(tr, cstate)
        s000["onestep_rel_error_median"] = float(np.median(one)) if len(one) else None
        s000["onestep_rel_error_max"] = float(np.max(one)) if len(one) else None
        if gates and gate_matrices(d, gates[0]):
            a = gate_matrices(d, gates[0])[0]
            exact = path_sum(tr, a)[cstate]
            approx = carousel_path_sum(tr, cstate, a)
            s000["param"] = a
            s000["sum_rel_error"] = float(np.linalg.norm(approx - exact) /
                                          max(np.linalg.norm(exact), 1e-300))
    return Flow(
        cell=d.name, states=tuple(d.states), lags=lags,
        norms={p: {k: np.array(v) for k, v in kinds.items()} for p, kinds in norms.items()},
        bound=np.array(bound), bound_at_values=np.array(bound_v), submult=np.array(sub),
        rho=rho,
        carousel_state=cstate, carousel_gates=carousel_gates(d, cstate) if cstate else [],
        truncated=s000, settings=dict(settings or {}), source=tr.source,
    )


def run_cell(cell: str | Derivation, steps: int = 50, seed: int = 0, forget_bias: float = 0.0,
             n_hidden: int = 16, n_in: int = 8) -> Flow:
    """Measure a cell at torch-initialised weights (plus ``forget_bias`` on the carousel gates'
    biases) and inputs x_t ~ N(0, 1), zero initial state."""
    d = derive(cell) if isinstance(cell, str) else cell
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    P = init_params(d, n_in, n_hidden, seed, forget_bias)
    xs = np.random.default_rng(seed + 1).standard_normal((steps, n_in))
    settings = {"steps": steps, "seed": seed, "forget_bias": forget_bias,
                "n_hidden": n_hidden, "n_in": n_in, "forget_bias_on": forget_biases(d)}
    return measure(d, P, xs, settings=settings)


# ============================================================================ reporting

def path_label(f: Flow, path: str) -> str:
    """Terminal label of a path: dh_T/dh_k, ds_T/ds_k, prod d(f), dc_T/dc_k."""
    if path == "carousel":
        g = f.carousel_gates
        return f"prod d({g[0]})" if len(g) == 1 else "carousel"
    if path == "block":
        v = f.carousel_state
        return f"d{v}_T/d{v}_k"
    if path == "state":
        st = ",".join(f.states)
        return f"d({st})_T/d({st})_k"
    h = f.states[0]  # the path "h" is the output state's, whatever its name
    return f"d{h}_T/d{h}_k"


def summary_table(flows: Sequence[Flow]) -> str:
    """cell | path | ||.||_2 at lag 1, 10, T-1 | decay per step | bound at T-1."""
    rows = []
    for f in flows:
        T1 = int(f.lags[-1])
        picks = [L for L in (1, 10, T1) if L <= T1]
        picks = list(dict.fromkeys(picks))
        for p in f.paths:
            spec = f.norms[p]["spectral"]
            vals = [f"{spec[L - 1]:.3e}" for L in picks]
            vals += [""] * (3 - len(vals))
            bnd = f"{f.bound[-1]:.3e}" if p in ("h", "state") else ""
            rows.append([f.cell, path_label(f, p), *vals, f"{f.rate(p):.4f}", bnd])
    T1 = int(flows[0].lags[-1]) if flows else 0
    head = ["cell", "path", "lag 1", "lag 10", f"lag {T1}", "rate/step", f"bound@{T1}"]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    notes = []
    for f in flows:
        s = f.truncated
        if not s:
            continue
        g = f.carousel_gates[0] if f.carousel_gates else "carousel"
        v = s["state"]
        txt = (f"{f.cell}: d{v}_t/d{v}_(t-1) ~ d({g}_t) drops terms of relative size "
               f"{s['onestep_rel_error_median']:.2%} (median over steps, max "
               f"{s['onestep_rel_error_max']:.2%})")
        if "sum_rel_error" in s:
            txt += (f"; d{v}_T/d{s['param']} ~ sum_i prod d({g}) d+{v}_i is off by "
                    f"{s['sum_rel_error']:.2%}")
        notes.append(txt)
    if notes:
        out += ["", "the truncated gradient (Gers, Schmidhuber and Cummins 2000):",
                *("  " + n for n in notes)]
    return "\n".join(out)


def plot(flows: Sequence[Flow], path: str) -> None:
    """Log-scale spectral norm against the lag, one line per cell and path, with the derived
    bound dotted; PNG or PDF by the file's suffix. Needs matplotlib (the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style = {"h": "-", "state": "--", "carousel": "-.", "block": (0, (1, 1))}
    fig, (ax, axb) = plt.subplots(1, 2, figsize=(12, 4.8), sharey=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, f in enumerate(flows):
        col = colors[i % len(colors)]
        for p in f.paths:
            if p == "block":
                continue
            y = np.where(f.norms[p]["spectral"] > 0, f.norms[p]["spectral"], np.nan)
            mark = {"marker": "o", "markevery": (i, 4), "ms": 4, "mfc": "white"} \
                if p == "carousel" else {}
            ax.plot(f.lags, y, linestyle=style[p], color=col, lw=1.8,
                    label=f"{f.cell}: {_tex_label(f, p)}", **mark)
        top = "state" if "state" in f.norms else "h"
        y = np.where(f.norms[top]["spectral"] > 0, f.norms[top]["spectral"], np.nan)
        axb.plot(f.lags, y, color=col, lw=1.8, label=f"{f.cell}: {_tex_label(f, top)}")
        axb.plot(f.lags, f.bound, color=col, lw=1.2, linestyle=":",
                 label=f"{f.cell}: derived bound")
    st = flows[0].settings if flows else {}
    for a, title in ((ax, "measured spectral norms"), (axb, "measured vs derived bound")):
        a.set_yscale("log")
        a.set_xlabel("lag $T-k$ (steps)")
        a.set_ylabel(r"spectral norm $\|\cdot\|_2$")
        a.set_title(title)
        a.grid(True, which="major", alpha=0.3)
        a.legend(fontsize=8, loc="best")
    if st:
        fig.suptitle(f"gradient flow: T={st.get('steps')}, n_hidden={st.get('n_hidden')}, "
                     f"seed={st.get('seed')}, forget bias={st.get('forget_bias')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _mathtext(name: str) -> str:
    """A spec name in matplotlib's mathtext: ``h``, ``\\mathrm{h\\_tilde}`` (no double
    subscript when a time index is attached)."""
    return name if name.isalnum() else r"\mathrm{" + name.replace("_", r"\_") + "}"


def _tex_label(f: Flow, p: str) -> str:
    if p == "h":
        h = _mathtext(f.states[0])
        return rf"$\|\partial {h}_T/\partial {h}_k\|$"
    if p == "state":
        st = ",".join(map(_mathtext, f.states))
        return rf"$\|\partial ({st})_T/\partial ({st})_k\|$"
    if p == "carousel":
        g = f.carousel_gates
        return rf"carousel $\|\prod\, d({_mathtext(g[0])}_j)\|$" if len(g) == 1 else "carousel"
    return p


__all__ = [
    "Flow", "LatexBlock", "Truncated", "TermBound", "Trajectory", "carousel", "carousel_gates",
    "carousel_path_sum", "decay_rate", "diag_sup", "forget_biases", "gate_biases",
    "gate_matrices", "init_params", "interval", "jacobian_product", "kernel", "latex_blocks",
    "latex_rows", "measure", "path_sum", "plot", "run_cell", "truncated_onestep", "truncated_terms",
    "split_relation", "step_bounds", "sum_bounds", "summary_table", "term_bound",
    "total_derivative", "trajectory", "within",
]
