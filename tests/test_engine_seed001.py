"""The engine against seed 001, eqs (14)-(25): the final line of each, term by term.

The final lines below are transcribed by hand from ../shared/seeds/001_*.txt (section 4), with
two normalisations only: ``d(\\tilde{s}_t')`` is written ``d(\\tilde{s}'_t)`` (the note uses both
for the same factor), and a missing ``\\partial`` in the numerator (none occurs in final lines).
All twelve final lines state the same M_t bracket and the same N_t term, and differ in V_t.

Each line is expanded into its products by a small independent expander (below), every run of
d(.) factors is put in the engine's canonical order (diagonal factors commute), and the set of
products is compared with the engine's dh_t/dA. Where the seed is wrong the test names the
equation and the term, and proves the engine right numerically: the direct term V_t^A is
d h_t / d A with h_{t-1}, s_{t-1} held fixed, which central differences of an independent NumPy
step (tests/reference.py) measure.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import reference

import derive
from derive.calculus.algebra import Diag, Ident, Mat, Rec, Sum, make_sum
from derive.calculus.numeric import Step
from derive.printing import latex as L
from derive.spec import Call, Ref

M_SEED = (r"\left(d(\sigma(s_t)) d(o'_t) W_o + d(o_t) d(\sigma'(s_t)) \left(d(s_{t-1}) d(f'_t) W_f"
          r" + d(i_t) d(\tilde{s}'_t) W + d(\tilde{s}_t) d(i'_t) W_i\right)\right)")
N_SEED = r"d(o_t) d(\sigma'(s_t)) d(f_t)"

# eq -> (parameter, V_t as the seed's final line writes it)
SEED_V = {
    14: ("W", r"d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t) d_2(h_{t-1})"),
    15: ("W_i", r"d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t) d_2(h_{t-1})"),
    16: ("W_f", r"d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) d_2(h_{t-1})"),
    17: ("W_o", r"d(s_t) d(o'_t) d_2(h_{t-1})"),
    18: ("U", r"d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t) d_2(x_t)"),
    19: ("U_i", r"d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t) d_2(x_t)"),
    20: ("U_f", r"d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) d_2(x_t)"),
    21: ("U_o", r"d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) d_2(x_t)"),
    22: ("b", r"d(o_t) d(\sigma'(s_t)) d(i_t) d(\tilde{s}'_t)"),
    23: ("b_i", r"d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t)"),
    24: ("b_f", r"d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t)"),
    25: ("b_o", r"d(s_t) d(o'_t)"),
}


def seed_final_line(eq: int) -> str:
    a, v = SEED_V[eq]
    return (rf"{M_SEED} \frac{{\partial h_{{t-1}}}}{{\partial {a}}} + {N_SEED} "
            rf"\frac{{\partial s_{{t-1}}}}{{\partial {a}}} + {v}")


# The seed's slips, found by this comparison: eq -> (seed's V term, the right V term).
SLIPS = {
    17: (r"d(s_t) d(o'_t) d_2(h_{t-1})", r"d(\sigma(s_t)) d(o'_t) d_2(h_{t-1})"),
    21: (r"d(o_t) d(\sigma'(s_t)) d(s_{t-1}) d(f'_t) d_2(x_t)",
         r"d(\sigma(s_t)) d(o'_t) d_2(x_t)"),
    25: (r"d(s_t) d(o'_t)", r"d(\sigma(s_t)) d(o'_t)"),
}


# ----------------------------------------------------------------------------- expander

_TOK = re.compile(r"\s*(\\left\(|\\right\)|\(|\)|\+|d_2\(|d\(|"
                  r"\\frac\{\\partial [a-z]_\{t-1\}\}\{\\partial [^}]*\}|[A-Za-z](?:_[A-Za-z])?)")


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    while pos < len(s.rstrip()):
        m = _TOK.match(s, pos)
        assert m, f"cannot read {s[pos:pos + 20]!r}"
        tok = m.group(1)
        if tok in ("d(", "d_2("):  # a whole factor with balanced parentheses
            depth, j = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(s[j], 0)
                j += 1
            out.append(s[m.start(1):j])
            pos = j
        else:
            out.append({r"\left(": "(", r"\right)": ")"}.get(tok, tok))
            pos = m.end()
    return out


def expand(s: str) -> list[tuple[str, ...]]:
    """Distribute a sum of products with parentheses into a list of products (factor strings)."""
    toks = _tokens(s)
    i = 0

    def expr() -> list[tuple[str, ...]]:
        nonlocal i
        terms = term()
        while i < len(toks) and toks[i] == "+":
            i += 1
            terms += term()
        return terms

    def term() -> list[tuple[str, ...]]:
        nonlocal i
        acc: list[tuple[str, ...]] = [()]
        while i < len(toks) and toks[i] not in ("+", ")"):
            if toks[i] == "(":
                i += 1
                inner = expr()
                assert toks[i] == ")"
                i += 1
            else:
                inner = [(toks[i],)]
                i += 1
            acc = [a + b for a in acc for b in inner]
        return acc

    out = expr()
    assert i == len(toks)
    return out


# ----------------------------------------------------------------------------- comparison

D = derive.derive("sigmoid_lstm")
NAMES = L.names_for(D)


def atoms() -> dict[str, object]:
    """LaTeX of a factor -> the engine factor, for every factor the comparison can meet."""
    table: dict[str, object] = {}
    for p in D.params:
        for u in D.states:
            for t in D.forward[p].state(u):
                for f in t.factors:
                    table[L.factor(f, NAMES)] = f
    for n in D.spec.nodes:
        for lag in (0, 1):
            f = Diag(Ref(n, lag, "node"))
            table.setdefault(L.factor(f, NAMES), f)
    for p in D.params:
        table.setdefault(L.factor(Mat(p), NAMES), Mat(p))
    sig_s = Diag(Call("sigmoid", Ref("s")))
    table.setdefault(L.factor(sig_s, NAMES), sig_s)
    return table


ATOMS = atoms()


def to_sum(products: list[tuple[str, ...]], param: str) -> Sum:
    """Seed products -> an engine Sum (canonical order applied by make_sum)."""
    items = []
    for prod in products:
        fs = []
        for tok in prod:
            if tok.startswith(r"\frac"):
                state = "h" if "h_{t-1}" in tok else "s"
                fs.append(Rec(state, param, 1))
            else:
                assert tok in ATOMS, f"unknown factor {tok}"
                fs.append(ATOMS[tok])
        items.append((1, tuple(fs) or (Ident(),)))
    return make_sum(items, D.order)


def printed(s: Sum) -> set[str]:
    return {L.term_latex(t, NAMES) for t in s}


@pytest.mark.parametrize("eq", sorted(SEED_V))
def test_seed_final_line_term_by_term(eq: int) -> None:
    param = SEED_V[eq][0]
    seed = to_sum(expand(seed_final_line(eq)), param)
    engine = D.forward[param].state("h")
    missing = printed(engine) - printed(seed)  # in the engine, not in the seed
    extra = printed(seed) - printed(engine)  # in the seed, not in the engine
    if eq in SLIPS:
        # compare after canonical ordering, like everything else
        wrong, right = (printed(to_sum(expand(x), param)).pop() for x in SLIPS[eq])
        assert extra == {wrong}, f"eq ({eq}): expected the seed's slip {wrong}, found {extra}"
        assert missing == {right}, f"eq ({eq}): expected the engine's {right}, found {missing}"
    else:
        assert seed.key() == engine.key(), \
            f"eq ({eq}) disagrees: seed has {extra}, engine {missing}"


def _direct_fd(param: str, rng: np.random.Generator, n: int = 3, m: int = 2):
    """Central differences of h_t w.r.t. a parameter with h_{t-1}, s_{t-1} held fixed."""
    P = reference.random_params("sigmoid_lstm", n, m, rng)
    x = rng.normal(size=m)
    prev = reference.random_state("sigmoid_lstm", n, rng)
    A = P[param]
    fd = np.zeros((n, A.size))
    eps = 1e-6
    for k in range(A.size):
        hi, lo = dict(P), dict(P)
        a = A.reshape(-1).copy()
        a[k] += eps
        hi[param] = a.reshape(A.shape).copy()
        a[k] -= 2 * eps
        lo[param] = a.reshape(A.shape).copy()
        fd[:, k] = (reference.numpy_step("sigmoid_lstm", hi, x, prev)["h"]
                    - reference.numpy_step("sigmoid_lstm", lo, x, prev)["h"]) / (2 * eps)
    return Step(D.spec, P, x, prev), fd


@pytest.mark.parametrize("eq", sorted(SLIPS))
def test_seed_slip_is_wrong_and_engine_right_numerically(eq: int) -> None:
    param = SEED_V[eq][0]
    step, fd = _direct_fd(param, np.random.default_rng(eq))
    engine_v = step.evaluate(D.forward[param].V)
    seed_v = step.evaluate(to_sum(expand(SEED_V[eq][1]), param))
    scale = np.abs(fd).max()
    assert np.abs(engine_v - fd).max() <= 1e-7 * scale, f"engine V_t of eq ({eq}) is off"
    assert np.abs(seed_v - fd).max() > 1e-2 * scale, f"seed eq ({eq}) V_t unexpectedly right"


@pytest.mark.parametrize("eq", sorted(set(SEED_V) - set(SLIPS)))
def test_seed_agreeing_lines_are_right_numerically(eq: int) -> None:
    param = SEED_V[eq][0]
    step, fd = _direct_fd(param, np.random.default_rng(eq))
    seed_v = step.evaluate(to_sum(expand(SEED_V[eq][1]), param))
    assert np.abs(seed_v - fd).max() <= 1e-7 * np.abs(fd).max()


def test_m_and_n_are_shared_by_all_twelve_parameters() -> None:
    seed_m = to_sum(expand(M_SEED), "W")
    for p in D.params:
        assert D.forward[p].M.key() == D.M.key() == seed_m.key()
        assert D.forward[p].N.key() == D.N.key() == to_sum(expand(N_SEED), "W").key()


def test_v_terms_of_eq_14_are_in_the_seeds_order() -> None:
    # the canonical order of diagonal factors reproduces the order the note writes them in
    assert L.factored(D.forward["W"].V, NAMES) == SEED_V[14][1]
    assert L.factored(D.M, NAMES) == M_SEED[len(r"\left("):-len(r"\right)")].replace(
        r"d(i_t) d(\tilde{s}'_t) W + d(\tilde{s}_t) d(i'_t) W_i",
        r"d(\tilde{s}_t) d(i'_t) W_i + d(i_t) d(\tilde{s}'_t) W")
