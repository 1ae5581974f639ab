"""``derive check`` never answers with a traceback: the public fixtures and the project's own
notes, damaged at random (a span deleted, a token doubled or swapped for another the documents
use, a brace dropped), each give a report or a usage error (``CheckError``), and every line of a
report that is not judged carries its reason (issue 16: "never refuse silently", and the
standard's "bad input gets a clear error")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require

from derive.check import CheckError, check_text

FIX = Path(__file__).resolve().parent / "check_fixtures"
TEXTS = sorted((FIX / "public").glob("*.md")) + sorted(FIX.glob("*.md"))
# tokens the derivations are written with, for insertions and swaps
TOKENS = [r"\frac{\partial L}{\partial h_t}", r"\odot", r"\circ", "^T", r"^{\top}", "_{t-1}",
          "^{(k)}", r"\sigma'", r"\tanh", "(", ")", "{", "}", "=", "+", "-", r"\cdot", "&", r"\\",
          "$$", r"\sum_{t=1}^T", r"\begin{cases}", r"\end{align}", "W_h", "x_t", "h_{t+1}"]


def _damage(text: str, draws) -> str:
    """One to three random edits inside the text's math."""
    spans = [m.span() for m in re.finditer(r"\$\$.*?\$\$|\\\[.*?\\\]", text, flags=re.S)]
    if not spans:
        return text
    for _ in range(draws.draw(_st().integers(1, 3))):
        a, b = spans[draws.draw(_st().integers(0, len(spans) - 1))]
        i = draws.draw(_st().integers(a, max(a, b - 1)))
        kind = draws.draw(_st().sampled_from(["delete", "insert", "swap", "brace"]))
        if kind == "delete":
            text = text[:i] + text[i + draws.draw(_st().integers(1, 12)):]
        elif kind == "insert":
            text = text[:i] + draws.draw(_st().sampled_from(TOKENS)) + text[i:]
        elif kind == "swap":
            tok = draws.draw(_st().sampled_from(TOKENS))
            j = text.find(tok, i)
            if j >= 0:
                other = draws.draw(_st().sampled_from(TOKENS))
                text = text[:j] + other + text[j + len(tok):]
        else:
            j = text.find("{", i)
            if j >= 0:
                text = text[:j] + text[j + 1:]
    return text


def _st():
    import hypothesis.strategies as st

    return st


@pytest.mark.parametrize("path", TEXTS, ids=[p.name for p in TEXTS])
def test_damaged_derivations_get_a_report_not_a_traceback(path: Path) -> None:
    hyp = require("hypothesis", "property-based tests")
    text = path.read_text()

    @hyp.settings(max_examples=6, deadline=None, derandomize=True,
                  suppress_health_check=list(hyp.HealthCheck))
    @hyp.given(_st().data())
    def check(data):
        damaged = _damage(text, data)
        try:
            rep = check_text(damaged, fmt="md")
        except CheckError as exc:   # a usage error: said, not raised from deep inside
            assert str(exc)
            return
        for s in rep.skipped:
            assert s.reason, s
        for r in rep.results:
            assert r.verdict, r

    check()
