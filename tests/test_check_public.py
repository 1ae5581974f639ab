"""``derive check`` against public derivations whose truth is computed without derive
(tests/derivation_truth.py), the project's source notes corrected, and planted slips (issue 16,
acceptance)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from derive.check import check_file, check_text
from derive.check.reverse import DocumentJudge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derivation_truth import TRUTH  # noqa: E402

FIX = Path(__file__).resolve().parent / "check_fixtures"
PUBLIC = FIX / "public"


def _rows(rep) -> dict[tuple[int, int], object]:
    """(source line of the equation's first row, row of the chain) -> result."""
    first: dict[int, int] = {}
    for x in rep.results + rep.skipped:
        first[x.equation] = min(first.get(x.equation, 10**9), x.position[0])
    return {(first[r.equation], r.line): r for r in rep.results}


# Fixtures the checker cannot read yet (issue 16); measured against the checker of commit 29e2e31
_READING_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=_READING_GAPS[n]))
    if n in _READING_GAPS else n for n in sorted(TRUTH)])
def test_public_fixture_agrees_with_autodiff(name: str) -> None:
    rep = check_file(PUBLIC / name)
    truth = TRUTH[name]()
    got = _rows(rep)
    false_alarms = [key for key, v in truth.items() if v == "correct" and key in got
                    and got[key].verdict != "correct"]
    missed = [key for key, v in truth.items() if v == "wrong" and
              (key not in got or got[key].verdict == "correct")]
    assert false_alarms == [] and missed == []
    # every judged line is in the truth table: nothing is judged that was not checked
    assert set(got) <= set(truth)


# The share of a fixture's mathematical lines that are judged (issue 16's acceptance: at least
# 90 %). Not counted: the premises, read into the cell (the author's forward equations, abstract
# forms, objective, distributions and the names the document defines), and statements that
# are no equation, which issue 16 keeps skipped with their reason (a bound on an index such as
# D2L's "t < T", an enumeration "t = 0, ..., T-1", an approximation with \\propto, an event
# "xi_t = 0" of a random variable, math inside a comment), and an equation of another model
# that the document quotes (Talwar's "(RNN Eq. 5.2)", labelled as a model's equation and reading
# symbols that neither the author's cell nor the document defines: that model's equations are
# in another post, so nothing in the document can judge it). Counted with the non-equations, as
# before, the shares are 17/18, 18/24 and 34/37.
_NOT_CLAIMS = ("read into the cell", "not an equation", "inside a comment",
               "an equation of another model, quoted")

# below 0.9 and left out, measured with this checker
_SHARE_GAPS: dict[str, str] = {}


def _judged_share(rep) -> tuple[int, int]:
    """(lines judged, mathematical lines less the premises and the statements that are no
    equation)."""
    left_out = [s for s in rep.skipped if any(w in s.reason for w in _NOT_CLAIMS)]
    lines = len(rep.results) + len(rep.skipped) - len(left_out)
    judged = sum(r.verdict in ("correct", "wrong", "ill-typed") for r in rep.results)
    return judged, lines


@pytest.mark.parametrize("name", [n for n in sorted(TRUTH) if n not in _SHARE_GAPS])
def test_public_fixture_judged_share(name: str) -> None:
    judged, lines = _judged_share(check_file(PUBLIC / name))
    # measured: lstm_jaketae 34/37 (its \\sum_a {dL/dX}_a, the chain rule through m_t = W_a X +
    # b_a, which its X = (x_t | h_{t-1}) does not make the gates' pre-activation, and the
    # un-concatenation of dL/dX are not judged), lstm_saikrishnaponnam 17/17, rnn_d2l_bptt 18/18,
    # gru_aiedu 39/39, lstm_talwar 23/23 (its cases and its copies s_a, s_b of s^{(k-1)} read;
    # the quoted RNN Eq. 5.2 left out)
    assert judged / lines >= 0.9, (judged, lines)


def test_local_partials_judged_against_the_forward_equation() -> None:
    """The section's own slip g_t = \\sigma(p) is reported, and the partials below it are
    judged against g_t = \\tanh(p) of the forward equation, not against the slip."""
    rep = check_file(FIX / "lstm_local_partials.md")
    rows = {(r.position[0], r.line): r for r in rep.results}
    assert rows[(61, 1)].verdict == "wrong" and "\\tanh" in rows[(61, 1)].detail
    for key in [(62, 1), (64, 1), (65, 1), (73, 1), (74, 1), (75, 1), (75, 2)]:
        assert rows[key].verdict == "correct", key
    assert "should be \\nabla_pg_t" not in rows[(73, 2)].detail
    assert "in the wrong order" in rows[(73, 2)].detail
    assert "differentiates q" in rows[(71, 1)].detail and "of v" in rows[(71, 1)].detail


def test_local_partials_corrected_all_correct() -> None:
    text = (FIX / "lstm_local_partials.md").read_text()
    text = text.replace("+b_i))$$", "+b_i)$$").replace(r"g_t = \sigma (p)", r"g_t = \tanh (p)")
    for g in "ifog":
        for old, new in [(rf"\nabla_{{W_{{h_{g}}}}}q", rf"\nabla_{{W_{{h_{g}}}}}v"),
                         (rf"\nabla_{{h_{{t-1}}}}q = W_{{h_{g}}}",
                          rf"\nabla_{{h_{{t-1}}}}v = W_{{h_{g}}}"),
                         (rf"x_t^T\nabla_p{g}_t$", rf"\nabla_p{g}_t x_t^T$"),
                         (rf"h_{{t-1}}^T\nabla_p{g}_t$", rf"\nabla_p{g}_t h_{{t-1}}^T$")]:
            assert old in text, old
            text = text.replace(old, new)
    rep = check_text(text, fmt="md")
    assert [(r.position, r.detail) for r in rep.results if r.verdict != "correct"] == []
    assert sum(r.verdict == "correct" for r in rep.results) >= 80


def test_error_flow_corrected_all_correct() -> None:
    text = (FIX / "rnn_error_flow.md").read_text()
    sy = r"\sigma_y'\left(\sum_{\alpha} v_{i\alpha}h^\alpha_%s + b^i_y\right) h^j_%s"
    for old, new in [(r"h_1^{\alpha} &= \sigma_y", r"h_1^{\alpha} &= \sigma_h"),
                     (r"\frac{\partial y_1^i}{\partial v_{ij}} = h^j_1",
                      r"\frac{\partial y_1^i}{\partial v_{ij}} = " + sy % (1, 1)),
                     (r"\frac{\partial y_2^i}{\partial v_{ij}} = h^j_2",
                      r"\frac{\partial y_2^i}{\partial v_{ij}} = " + sy % (2, 2)),
                     (r"\frac{\partial y_1^k}{\partial v_{ij}} = \frac{\partial y_1^k}",
                      r"\frac{\partial y_1^k}{\partial w_{ij}} = \frac{\partial y_1^k}"),
                     # read since sigma' without its argument is read: a w for a u, a dropped
                     # delta(alpha, i)
                     ("\\frac{\\partial y_2^k}{\\partial w_{ij}} = \n    \\sigma_y' \n    "
                      "\\cdot \\sum_{\\alpha=1}^{4}v_{k\\alpha}\\frac{\\partial h_2^{\\alpha}}"
                      "{\\partial u_{ij}}",
                      "\\frac{\\partial y_2^k}{\\partial u_{ij}} = \n    \\sigma_y' \n    "
                      "\\cdot \\sum_{\\alpha=1}^{4}v_{k\\alpha}\\frac{\\partial h_2^{\\alpha}}"
                      "{\\partial u_{ij}}"),
                     ("\n= \\sigma_h' \\cdot x^j_1\n",
                      "\n= \\sigma_h' \\cdot \\delta(\\alpha, i) x^j_1\n")]:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    rep = check_text(text, fmt="md")
    assert [(r.position, r.detail) for r in rep.results if r.verdict != "correct"] == []
    assert sum(r.verdict == "correct" for r in rep.results) >= 20   # measured 21


def test_error_flow_activation_named_in_the_documents_symbols() -> None:
    rep = check_file(FIX / "rnn_error_flow.md")
    row = next(r for r in rep.results if r.position[0] == 104)
    assert "\\sigma_y (should be \\sigma_{h})" in row.detail


# -- planted slips ----------------------------------------------------------------------------
# (kind, pattern, replacement) applied to the right-hand side of a correct row; the kind the
# checker must name (derive.check.slips)
_MUTATIONS = [
    ("gate", r"(?<![\\\w{])f_t(?![\w])", "i_t"),
    ("gate", r"(?<![\\\w{])o_t(?![\w])", "f_t"),
    ("time", r"C_\{t\+1\}", "C_t"),
    ("time", r"C_\{t-1\}", "C_t"),
    ("time", r"\(x_t\)", "(x_{t-1})"),
    ("point", r"f_t \(1 - f_t\)", r"\\sigma'(f_t)"),
    ("point", r"o_t \(1 - o_t\)", r"\\sigma'(o_t)"),
    ("missing", r" \+ \\frac\{\\partial L\}\{\\partial C_\{t\+1\}\} \\cdot f_\{t\+1\}", ""),
    ("missing", r" \+ \\frac\{\\partial L\}\{\\partial o_t\} \\cdot o_t \(1 - o_t\) \\cdot "
     r"W_\{xo\}", ""),
    ("activation", r"\\tanh\(C_t\)", r"\\sigma(C_t)"),
]


def _mutants(text: str, dj: DocumentJudge, mutations=None):
    """Each mutation applied to the first correct row it changes: (kind, new text, row start)."""
    lines = {(ln.pos): ln for ln in dj.lines() if ln.verdict == "correct"}
    for kind, pat, rep in (mutations or _MUTATIONS):
        for e in dj.eqs:
            done = False
            for toks in e.rhs:
                if not toks or toks[0].pos not in lines:
                    continue
                a, b = toks[0].pos, toks[-1].end
                src = text[a:b]
                new = re.sub(pat, rep, src, count=1)
                if new != src:
                    yield kind, text[:a] + new + text[b:], a
                    done = True
                    break
            if done:
                break


_D2L_MUTATIONS = [
    ("transpose", r"\\mathbf\{W\}_\{hh\}\^\\top", r"\\mathbf{W}_{hh}"),
    ("transpose", r"\\mathbf\{W\}_\{qh\}\^\\top", r"\\mathbf{W}_{qh}"),
    ("time", r"\\mathbf\{h\}_\{t\+1\}", r"\\mathbf{h}_t"),
    ("time", r"\\mathbf\{h\}_\{t-1\}", r"\\mathbf{h}_t"),
    ("time", r"\\mathbf\{W\}_\{qh\}\^\\top \\frac\{\\partial L\}\{\\partial "
     r"\\mathbf\{o\}_t\}", r"\\mathbf{W}_{qh}^\\top \\frac{\\partial L}{\\partial "
     r"\\mathbf{o}_{t+1}}"),
    ("transpose", r"\\left\(\\mathbf\{W\}_\{hh\}\^\\top\\right\)",
     r"\\left(\\mathbf{W}_{hh}\\right)"),
    ("time", r"\\mathbf\{h\}_t\^\\top", r"\\mathbf{h}_{t-1}^\\top"),
    ("missing", r" \+ \\mathbf\{W\}_\{qh\}\^\\top \\frac\{\\partial L\}"
     r"\{\\partial \\mathbf\{o\}_t\}", ""),
    ("gate", r"\\mathbf\{x\}_t\^\\top", r"\\mathbf{h}_t^\\top"),
    ("missing", r"\\mathbf\{W\}_\{qh\}\^\\top \\frac\{\\partial L\}\{\\partial "
     r"\\mathbf\{o\}_T\}", r"\\frac{\\partial L}{\\partial \\mathbf{o}_T}"),
]


def _mutation_results(name: str, mutations) -> list[tuple[str, str, str | None]]:
    text = (PUBLIC / name).read_text()
    dj = DocumentJudge(text, "md")
    results = []
    for kind, new_text, pos in _mutants(text, dj, mutations):
        mj = DocumentJudge(new_text, "md")
        row = next(ln for ln in mj.lines() if ln.pos == pos)
        named = row.differences[0]["kind"] if row.differences else None
        results.append((kind, row.verdict, named))
    return results


# Jake Tae, "Dissecting LSTMs": the stacked input W_o [h_{t-1}, x_t], names for parts of the
# cell's equations (a_C = tanh(C_t), a_o), an adjoint accumulated with "=" (dL/dC_t on both sides)
_JAKETAE_MUTATIONS = [
    ("gate", r"\\cdot o_t$", r"\\cdot f_t"),
    ("gate", r"\\cdot f_t$", r"\\cdot i_t"),
    ("time", r"\\text\{tanh\}\(C_t\)$", r"\\text{tanh}(C_{t-1})"),
    ("time", r"\\frac\{dL\}\{d C_t\} \\cdot f_t", r"\\frac{dL}{d C_{t-1}} \\cdot f_t"),
    ("time", r"h_\{t - 1\}", r"h_t"),
    ("activation", r"\\text\{tanh\}\(C_t\)$", r"\\sigma(C_t)"),
    ("activation", r"\\sigma\(W_o", r"\\text{tanh}(W_o"),
    ("missing", r" \+ \\frac\{dL\}\{d C_t\}$", ""),
    ("gate", r"^o_t \\odot", r"i_t \\odot"),
    ("missing", r" \+ b_o", ""),
]


def test_jaketae_judged_share_and_its_slip() -> None:
    rep = check_file(PUBLIC / "lstm_jaketae.md")
    judged, lines = _judged_share(rep)
    assert judged >= 34 and judged / lines >= 0.9   # measured 34/37
    # sigma(o_t)(1 - sigma(o_t)): sigma' at the gate's output, the post's own slip (169); the
    # others are written in row vectors (z = h W_y) against the post's own z = W_y h_t + b_y:
    # h_t^T (y^ - y), (y^ - y) W_y^T, X^T dL/da_o, ... W_a^T do not compose
    wrong = {r.position[0]: r for r in rep.results if r.verdict != "correct"}
    assert sorted(wrong) == [85, 109, 169, 189, 216]
    assert wrong[169].verdict == "wrong"
    assert all(wrong[n].verdict == "ill-typed" for n in (85, 109, 189, 216))
    assert "(\\hat{y} - y) {h_t}^\\top" in wrong[85].detail      # the order named
    # the readout and its cross-entropy: dL/dz = y^ - y, the sigmoid's and tanh's derivatives
    rows = _rows(rep)
    for key in [(74, 1), (84, 1), (94, 1), (94, 2), (108, 1), (40, 4), (56, 3), (233, 1)]:
        assert rows[key].verdict == "correct", key


# Microsoft AI-EDU, "20.3 GRU基本原理与实现": row vectors times matrices, \circ, diag[.], the
# adjoints of the pre-activations named \delta_{z_{zt}}, no biases
_GRU_AIEDU_MUTATIONS = [
    ("gate", r"z_t \\circ \(1-z_t\)$", r"r_t \\circ (1-r_t)"),
    ("time", r"\(\\tilde h_t - h_\{t-1\}\)", r"(\\tilde h_t - h_t)"),
    ("point", r"z_t \\circ \(1-z_t\)$", r"\\sigma'(z_t)"),
    ("point", r"r_t \\circ \(1-r_t\)$", r"\\sigma'(r_t)"),
    ("activation", r"\(1-\(\\tilde h_t\)\^2\)$", r"\\tilde h_t \\circ (1-\\tilde h_t)"),
    ("transpose", r"W_h\^T \\circ", r"W_h \\circ"),
    ("transpose", r"W_r\^\{\\top\}", r"W_r"),
    ("missing", r" \+ \\delta_\{z_\{zt\}\} \\cdot W_z\^\{\\top\}", ""),
    ("gate", r"\\delta_\{z_\{rt\}\} \\cdot U_r", r"\\delta_{z_{zt}} \\cdot U_r"),
    ("time", r"x_t\^\{\\top\} \\cdot \\delta_\{z_\{\\tilde\{h\}t\}\}$",
     r"x_{t-1}^{\\top} \\cdot \\delta_{z_{\\tilde{h}t}}"),
]

# Abhimanyu Talwar, "Build an LSTM from scratch in Python": superscript time (k), \circ, ^{Tr},
# \bbox, the author's cell (gates g, f, q; state s; e through a sigmoid), per-step losses J^{(t)}
_TALWAR_MUTATIONS = [
    ("gate", r"\\delta_\{t\}\^\{\(k\)\} \\circ f\^\{\(k\)\}", r"\\delta_{t}^{(k)} \\circ g^{(k)}"),
    ("time", r"\\circ f\^\{\(k\)\}", r"\\circ f^{(k-1)}"),
    ("point", r"\\sigma'\(z_\{f\}\^\{\(k\)\}\)", r"\\sigma'(f^{(k)})"),
    ("activation", r"tanh'\(s\^\{\(k-1\)\}\)", r"\\sigma'(s^{(k-1)})"),
    ("transpose", r"\(W_\{f\}\^\{\(k\)\}\)\^\{Tr\}", r"(W_{f}^{(k)})"),
    ("transpose", r"\(W_\{q\}\^\{\(k\)\}\)\^\{Tr\}", r"(W_{q}^{(k)})"),
    ("missing", r" \+  \\delta_\{t\}\^\{\(k\)\} \\circ f\^\{\(k\)\}", ""),
    ("gate", r"\\delta_\{t\}\^\{\(k\)\} \\circ g\^\{\(k\)\}", r"\\delta_{t}^{(k)} \\circ e^{(k)}"),
    ("time", r"\\circ s\^\{\(k-1\)\} \\circ \\sigma'", r"\\circ s^{(k)} \\circ \\sigma'"),
    ("activation", r"\\circ tanh\(s\^\{\(k\)\}\)", r"\\circ \\sigma(s^{(k)})"),
]


# every public fixture's planted slips (kind, pattern, replacement), ten each
MUTATIONS = {"lstm_saikrishnaponnam.md": _MUTATIONS, "rnn_d2l_bptt.md": _D2L_MUTATIONS,
             "lstm_jaketae.md": _JAKETAE_MUTATIONS, "gru_aiedu.md": _GRU_AIEDU_MUTATIONS,
             "lstm_talwar.md": _TALWAR_MUTATIONS}


def test_every_public_fixture_has_ten_planted_slips() -> None:
    assert set(MUTATIONS) == set(TRUTH)
    assert all(len(m) == 10 for m in MUTATIONS.values())


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_planted_slips_reported_wrong_with_the_slip_named(name: str) -> None:
    """Each slip planted in a correct row (a dropped term, sigma' at the gate's output, a swapped
    gate, a missing transpose, t for t-1, ...) is reported wrong, at least 95% with the right
    kind named (measured: 10 of 10 on every fixture). Every slip must apply to a row judged
    correct (the count below), so a list cannot go stale silently."""
    results = _mutation_results(name, MUTATIONS[name])
    assert len(results) == len(MUTATIONS[name]), results
    assert all(r[1] in ("wrong", "ill-typed") for r in results), results
    named = [r for r in results if r[2] == r[0]]
    assert len(named) >= 0.95 * len(results), results
