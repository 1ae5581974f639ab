"""The LaTeX printer, compared as exact strings with seed 001's notation (the expected strings
are written by hand from the seed, not produced by the printer)."""

from __future__ import annotations

import derive
from derive.calculus.algebra import Diag, Diag2, Mat, Rec
from derive.printing import latex as L
from derive.spec import Call, DerivAt, Ref

D = derive.derive("sigmoid_lstm")
NM = L.names_for(D)


def test_factor_atoms_in_seed_notation() -> None:
    assert L.factor(Diag(Ref("o")), NM) == "d(o_t)"
    assert L.factor(Diag(DerivAt("sigmoid", Ref("s"))), NM) == r"d(\sigma'(s_t))"
    assert L.factor(Diag(Call("sigmoid", Ref("s"))), NM) == r"d(\sigma(s_t))"
    assert L.factor(Diag2(Ref("h", 1)), NM) == "d_2(h_{t-1})"
    assert L.factor(Diag2(Ref("x", 0, "input")), NM) == "d_2(x_t)"
    assert L.factor(Mat("W_o"), NM) == "W_o"
    assert L.factor(Mat("W_o", True), NM) == r"W_o^\top"
    assert L.factor(Rec("h", "W_f"), NM) == r"\frac{\partial h_{t-1}}{\partial W_f}"
    assert L.factor(Diag(DerivAt("sigmoid", Ref("o__hat"))), NM) == "d(o'_t)"
    assert L.factor(Diag(DerivAt("sigmoid", Ref("s_tilde__hat"))), NM) == r"d(\tilde{s}'_t)"


def test_eq_16_final_line() -> None:
    # seed 001 eq (16), final line (its M_t bracket lists the i-path before the s~-path; the
    # engine's canonical order of terms lists them as the product rule meets them)
    assert L.forward_equation(D, "W_f", "h") == (
        r"\frac{\partial h_t}{\partial W_f} = \left(d(\sigma(s_t)) d(o'_t) W_o + d(o_t) "
        r"d(\sigma'(s_t)) \left(d(s_{t-1}) d(f'_t) W_f + d(\tilde{s}_t) d(i'_t) W_i + d(i_t) "
        r"d(\tilde{s}'_t) W\right)\right) \frac{\partial h_{t-1}}{\partial W_f} + d(o_t) "
        r"d(\sigma'(s_t)) d(f_t) \frac{\partial s_{t-1}}{\partial W_f} + d(o_t) d(\sigma'(s_t)) "
        r"d(s_{t-1}) d(f'_t) d_2(h_{t-1})")


def test_shared_form_uses_m_and_n() -> None:
    assert L.forward_equation(D, "b_i", "h", shared=True) == (
        r"\frac{\partial h_t}{\partial b_i} = M_t \frac{\partial h_{t-1}}{\partial b_i} + N_t "
        r"\frac{\partial s_{t-1}}{\partial b_i} + d(o_t) d(\sigma'(s_t)) d(\tilde{s}_t) d(i'_t)")


def test_reverse_lines_of_the_standard_lstm() -> None:
    rows = dict(L.reverse_entries(derive.derive("lstm")))
    assert rows[r"\bar{c}_t"] == r"\delta c_t + d(o_t) d(\tanh'(c_t)) \bar{h}_t"
    assert rows[r"\bar{\hat{f}}_t"] == r"d(f'_t) \bar{f}_t"
    assert rows[r"\delta c_{t-1}"] == r"d(f_t) \bar{c}_t"
    assert rows[r"\frac{\partial L}{\partial W_{hf}}"] == r"\sum_t \bar{\hat{f}}_t h_{t-1}^\top"


def test_gru_reset_gate_inside_the_candidate() -> None:
    rows = dict(L.reverse_entries(derive.derive("gru")))
    assert rows[r"\bar{r}_t"] == r"d(W_{hn} h_{t-1} + b_{hn}) \bar{\hat{n}}_t"
    assert rows[r"\frac{\partial L}{\partial W_{hn}}"] == \
        r"\sum_t d(r_t) \bar{\hat{n}}_t h_{t-1}^\top"
