"""``derive check`` on derivations written in the author's own notation (issue 16): the cell
read from the document's forward equations, reverse-mode lines, inline math, every line at its
own place. The fixtures are copies of the project's source notes as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from derive.check import check_file, check_text, main

FIX = Path(__file__).resolve().parent / "check_fixtures"


@pytest.fixture(scope="module")
def bptt():
    return check_file(FIX / "lstm_bptt_notes.md")


def _by_line(rep):
    return {r.position[0]: r for r in rep.results}


def test_bptt_notes_cell_and_no_unparsed_line(bptt) -> None:
    assert bptt.cell == "the document's own"
    assert "nodes \\hat{a}, a" in bptt.notation and "states c, h" in bptt.notation
    assert all(r.verdict != "unparsed" for r in bptt.results)
    assert all("not read" not in s.reason for s in bptt.skipped if s.position[0] != 76)


def test_bptt_notes_wrong_lines_are_named(bptt) -> None:
    rows = _by_line(bptt)
    wrong = sorted(n for n, r in rows.items() if r.verdict != "correct")
    assert wrong == [23, 54, 56, 58, 60]
    assert "\\tanh^2" in rows[54].detail
    assert "\\hat{a}^t (should be i^{t})" in rows[56].detail
    assert "\\hat{f}^t (should be f^{t})" in rows[58].detail
    assert "\\delta^t" in rows[60].detail and "o^{t}" in rows[60].detail


def test_bptt_notes_node_value_named_from_its_own_equation(bptt) -> None:
    # c^{t+1} = c^t: no slip explains it; the author's equation of c (line 17), retimed to
    # step t+1 in the author's superscripts, names what the written side lacks
    detail = _by_line(bptt)[23].detail
    assert "own equation of c (line 17) at step t+1" in detail
    assert "missing term a^{t+1} \\odot i^{t+1}" in detail
    assert "missing factor f^{t+1} in c^t" in detail
    assert detail.endswith("corrected: a^{t+1} \\odot i^{t+1} + c^{t} \\odot f^{t+1}")


def test_bptt_notes_corrected_are_correct() -> None:
    text = (FIX / "lstm_bptt_notes.md").read_text()
    for old, new in [(r"[1 - \tanh(\hat{a}^t)]", r"[1 - \tanh^2(\hat{a}^t)]"),
                     (r"\hat{a}^t \odot (1 - \hat{a}^t)", r"i^t \odot (1 - i^t)"),
                     (r"\hat{f}^t \odot (1 - \hat{f}^t)", r"f^t \odot (1 - f^t)"),
                     (r"\delta^t \odot (1 - \delta^t)", r"o^t \odot (1 - o^t)"),
                     (r"$c^{t+1} = c^t$", r"$c^{t+1} = f^{t+1} \odot c^t + a^{t+1} "
                      r"\odot i^{t+1}$")]:
        assert old in text
        text = text.replace(old, new)
    rep = check_text(text, fmt="md")
    assert [r for r in rep.results if r.verdict != "correct"] == []


def test_local_partials_wrong_kinds() -> None:
    rep = check_file(FIX / "lstm_local_partials.md")
    rows = _by_line(rep)
    assert rows[4].verdict == "malformed" and "unbalanced" in rows[4].detail
    assert rows[61].verdict == "wrong" and "should be \\tanh(p)" in rows[61].detail
    assert rows[17].verdict == "wrong"      # \nabla_{h_{t-1}} q where v is due
    assert rows[16].verdict == "wrong"
    assert all(r.verdict != "unparsed" for r in rep.results)


def test_error_flow_index_notation() -> None:
    rep = check_file(FIX / "rnn_error_flow.md")
    rows = _by_line(rep)
    assert rows[104].verdict == "wrong"     # h_1^alpha = sigma_y(...): sigma_h is due
    assert all(r.verdict != "unparsed" for r in rep.results)
    assert all(s.reason for s in rep.skipped)


def test_error_flow_slips_in_the_left_hand_side_named() -> None:
    """Seed 004's wrong lines 118/119 and 197 differentiate by the wrong weight: the slip is
    named in the left-hand side, with the corrected line in the author's index notation."""
    rows = _by_line(check_file(FIX / "rnn_error_flow.md"))
    for line, y, wrong, due in [(118, "y_1^k", "v_{ij}", "w_{ij}"),
                                (119, "y_1^k", "v_{ij}", "w_{ij}"),
                                (197, "y_2^k", "w_{ij}", "u_{ij}")]:
        r = rows[line]
        assert r.verdict == "wrong" and r.differences[0]["kind"] == "lhs", line
        assert f"differentiates by {wrong}" in r.detail and f"derivative by {due}" in r.detail
        assert r.differences[0]["corrected"].startswith(
            f"\\frac{{\\partial {y}}}{{\\partial {due}}} = "), line
    # 345 drops the factor delta(alpha, i) on its right (A(alpha, 1) at t = 1): named so
    assert rows[345].differences[0]["kind"] == "missing"
    assert "\\delta(\\alpha, i)" in rows[345].detail


def test_left_hand_side_differentiated_by_the_wrong_step_or_input() -> None:
    text = ("$$h_t = \\tanh(W x_t + U h_{t-1} + b)$$\n\n"
            "$$\\frac{\\partial h_t}{\\partial h_t} = \\mathrm{diag}(1 - h_t^2) U$$\n\n"
            "$$\\frac{\\partial h_t}{\\partial h_{t-1}} = \\mathrm{diag}(1 - h_t^2) W$$\n")
    rep = check_text(text, fmt="md")
    got = [(r.verdict, r.differences[0]["kind"], r.differences[0]["corrected"])
           for r in rep.results]
    assert got == [
        ("wrong", "lhs", "\\frac{\\partial h_t}{\\partial h_{t-1}} = \\mathrm{diag}(1 - h_t^2) U"),
        ("wrong", "lhs", "\\frac{\\partial h_t}{\\partial x_{t}} = \\mathrm{diag}(1 - h_t^2) W")]


def test_inline_math_several_equations_and_json_positions(tmp_path: Path, capsys) -> None:
    text = ("# notes\n\nThe cell: $h_t = \\tanh(W h_{t-1} + U x_t)$.\n\n"
            "- the adjoint: $\\frac{\\partial E}{\\partial \\hat{h}_t} = 1$, \\quad "
            "$a = b$\n\n"
            "$$\\begin{aligned}\n\\frac{\\partial E}{\\partial W} &= \\sum_t "
            "\\left(\\frac{\\partial E}{\\partial h_t} \\odot (1 - h_t^2)\\right) h_{t-1}^T \\\\\n"
            "&= \\sum_t \\left(\\frac{\\partial E}{\\partial h_t} \\odot (1 - h_t)\\right) "
            "h_{t-1}^T\n\\end{aligned}$$\n"
            "<!-- $$ h_t = 0 $$ -->\n")
    f = tmp_path / "n.md"
    f.write_text(text)
    assert main([str(f), "--json"]) == 1
    recs = json.loads(capsys.readouterr().out)
    where = {(r["position"]["line"], r["verdict"]) for r in recs}
    assert (8, "correct") in where and (9, "wrong") in where
    rep = check_file(f)
    assert any(s.reason == "inside a comment" and s.position[0] == 11 for s in rep.skipped)
