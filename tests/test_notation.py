"""Notation profiles (derive.printing.notation): the math is one, the names are the paper's.

The central check renames by hand: a document in a shipped notation must be the native document
with the profile's symbols substituted token by token (a substitution written here, independent
of the printers' ``names`` mechanism). The expected renames are written from the issue's
description of the two styles, not read back from the profile files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import derive
from derive.document import latex_doc as D
from derive.printing.notation import NATIVE, NotationError, available, load, parse

CELLS = derive.cells()

# The two shipped styles, written from their definitions: seed 001 puts W on h_{t-1}, U on x_t,
# calls the cell state s_t and the candidate \tilde{s}_t; the standard style puts W_{x*} on x_t,
# W_{h*} on h_{t-1} and calls them c_t and g_t.
EXPECTED = {
    "goodfellow": {
        "lstm": {"W_{hi}": "W_i", "W_{hf}": "W_f", "W_{hg}": "W", "W_{ho}": "W_o",
                 "W_{xi}": "U_i", "W_{xf}": "U_f", "W_{xg}": "U", "W_{xo}": "U_o", "b_g": "b",
                 "c": "s", "g": r"\tilde{s}"},
        "rnn": {"W": "U", "U": "W", "b_h": "b"},
        "sigmoid_lstm": {},
    },
    "standard": {
        "sigmoid_lstm": {"W": "W_{hg}", "W_i": "W_{hi}", "W_f": "W_{hf}", "W_o": "W_{ho}",
                         "U": "W_{xg}", "U_i": "W_{xi}", "U_f": "W_{xf}", "U_o": "W_{xo}",
                         "b": "b_g", "s": "c", r"\tilde{s}": "g"},
        "rnn": {"W": "W_{xh}", "U": "W_{hh}", "V": "W_{hy}"},
        "lstm": {}, "gru": {}, "peephole_lstm": {},
    },
}

# upright text (\mathrm{carousel}, \text{when }) is one token: its letters are no symbols
_TOK = re.compile(r"\\(?:mathrm|text)\{[^{}]*\}|\\[A-Za-z]+|\\.|\s+|.")


def _tokens(tex: str) -> list[str]:
    return [t for t in _TOK.findall(tex) if not t.isspace()]


def substitute(tex: str, native_names: list[str], renames: dict[str, str]) -> str:
    """Rename symbols in LaTeX token by token, all at once, longest symbol first (so that W_i
    is never read as W followed by _i); the result is compared without whitespace."""
    toks = _tokens(tex)
    pats = sorted(((tuple(_tokens(n)), renames.get(n, n)) for n in native_names),
                  key=lambda p: -len(p[0]))
    out, i = [], 0
    while i < len(toks):
        for pat, new in pats:
            if tuple(toks[i:i + len(pat)]) == pat:
                out.append(new)
                i += len(pat)
                break
        else:
            out.append(toks[i])
            i += 1
    return "".join("".join(_tokens(x)) for x in out)


def _flat_rows(cell: str, notation: str) -> list[tuple[str, str]]:
    d = derive.derive(cell)
    nm = load(notation).names(d.spec)
    secs = [D.cell_section(d, nm), *D.sections(d, names=nm, steps=True)]
    return [(r.lhs, D.render_steps(r, D.LATEX_FLAT)) for s in secs for b in s.blocks
            for r in b.rows]


def test_shipped_profiles():
    assert available() == ["native", "goodfellow", "standard"]
    for name in available():
        assert load(name).name == name


@pytest.mark.parametrize("notation", ["goodfellow", "standard"])
@pytest.mark.parametrize("cell", CELLS)
def test_a_notation_only_renames(cell, notation):
    spec = derive.derive(cell).spec
    native = [spec.latex_names[n] for n in spec.latex_names if "__hat" not in n]
    renames = EXPECTED[notation].get(cell)
    if renames is None:  # cells the expectations above do not spell out: use the profile's
        nm = load(notation).names(spec)
        renames = {spec.latex_names[k]: nm[k] for k in load(notation).renames(spec)}
    want = [(substitute(a, native, renames), substitute(b, native, renames))
            for a, b in _flat_rows(cell, NATIVE)]
    got = [("".join(_tokens(a)), "".join(_tokens(b))) for a, b in _flat_rows(cell, notation)]
    assert got == want


def test_seed001_lstm_reads_like_seed_001():
    """The standard LSTM printed in seed 001's notation is seed 001's eq (16) with tanh for the
    sigmoids of the candidate and of h_t (seed 001 eqs (4), (6) use sigma there)."""
    d = derive.derive("lstm")
    nm = load("goodfellow").names(d.spec)
    text = D.render_flat(D._collected(d, "W_hf", "h", nm, shared=False), D.LATEX_FLAT)
    assert text.startswith(r"\left(d(\tanh(s_t)) d(o'_t) W_o + d(o_t) d(\tanh'(s_t)) ")
    assert r"d(s_{t-1}) d(f'_t) W_f" in text and r"d(i_t) d(\tilde{s}'_t) W" in text
    assert text.endswith(r"d(o_t) d(\tanh'(s_t)) d(s_{t-1}) d(f'_t) d_2(h_{t-1})")


def test_unknown_notation_lists_the_choices():
    with pytest.raises(NotationError, match="expected one of native, goodfellow, standard"):
        load("fancy")
    with pytest.raises(NotationError, match="not found"):
        load("no/such/file.toml")


def _write(tmp_path: Path, text: str, name: str = "mine.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_user_file_renames_and_extends(tmp_path):
    p = _write(tmp_path, 'extends = "goodfellow"\n[symbols]\nx = "u"\n'
                         "[cells.lstm]\nW_hi = '\\mathbf{W}_i'\n")
    note = load(p)
    assert note.name == "mine"
    doc = D.document("lstm", modes=["forward"], params=["W_hi"], notation=note)
    assert r"\frac{\partial h_t}{\partial \mathbf{W}_i}" in doc
    assert r"\mathbf{W}_i" in doc and "W_{hi}" not in doc
    assert "d(s_{t-1})" in doc  # the rest of seed001 still applies
    gru = D.document("gru", modes=["forward"], notation=note)
    assert "d_2(u_t)" in gru and "x_t" not in gru  # [symbols] applies to every cell


def test_user_file_extends_a_relative_file(tmp_path):
    _write(tmp_path, "[cells.rnn]\nW = 'A'\n", "base.toml")
    p = _write(tmp_path, 'extends = "base.toml"\n[cells.rnn]\nU = "B"\n')
    assert load(p).renames(derive.derive("rnn").spec) == {"W": "A", "U": "B"}


@pytest.mark.parametrize("text, message", [
    ("[cells.lstm\n", "invalid TOML"),
    ("colour = 'red'\n", r"unknown key\(s\) \['colour'\]; expected some of"),
    ("[cells.lsmt]\nW = 'A'\n", "unknown cell 'lsmt'; expected one of lstm, sigmoid_lstm"),
    ("[cells.lstm]\nW_f = 'A'\n", r"cell 'lstm' has no symbol\(s\) \['W_f'\]; expected .*'W_xi'"),
    ("[symbols]\nQ = 'A'\n", r"\[symbols\] renames unknown symbol\(s\) \['Q'\]"),
    ("[cells.lstm]\nW_hf = 3\n", "must be a LaTeX string, got int"),
    ("[cells.lstm]\nW_hf = '{W'\n", "unbalanced braces"),
    ("[cells.lstm]\nW_hf = '$W$'\n", "math-mode symbol"),
    ("[cells.lstm]\nW_hf = '\\input{x}'\n", r"command\(s\) \['input'\]"),
    ("[cells.lstm]\nc = 'c_x'\n", "top-level subscript.*wrap it in braces, e.g. '{c_x}'"),
    ("[cells.lstm]\nW_hf = 'W^{(f)}'\n", r"\^\\top attached"),
    ("[cells.lstm]\nW_hf = 'W_{hi}'\n", "W_hi and W_hf would both print as 'W_\\{hi\\}'"),
    ("[cells.lstm]\nc = 'h'\n", "would both print as 'h_t'"),
    ("[cells.lstm]\ng = 'M'\n", "clashes with a symbol derive prints itself"),
    ("[cells.lstm]\nb_i = 'I'\n", "clashes with a symbol derive prints itself"),
    ("extends = 'nothing'\n", "extends: unknown notation 'nothing'"),
])
def test_bad_user_files_say_what_was_expected(tmp_path, text, message):
    with pytest.raises(NotationError, match=message) as info:
        load(_write(tmp_path, text))
    assert "mine.toml" in str(info.value)


def test_braces_make_a_decorated_name_usable(tmp_path):
    note = load(_write(tmp_path, "[cells.lstm]\nc = '{c^{(1)}}'\nW_hf = '{W^{f}}'\n"))
    doc = D.document("lstm", modes=["reverse"], notation=note)
    assert r"\delta {c^{(1)}}_{t-1}" in doc and r"{W^{f}}^\top" in doc


def test_extends_cycle_is_an_error(tmp_path):
    _write(tmp_path, 'extends = "b.toml"\n', "a.toml")
    _write(tmp_path, 'extends = "a.toml"\n', "b.toml")
    with pytest.raises(NotationError, match="cycle"):
        load(tmp_path / "a.toml")


def test_parse_from_text():
    note = parse("name = 'x'\n[cells.gru]\nW_hn = 'V_n'\n")
    assert note.names(derive.derive("gru").spec)["W_hn"] == "V_n"


def test_the_former_name_seed001_is_an_alias_of_goodfellow():
    """The shipped profile was renamed for its source (Goodfellow et al. 2016); old command
    lines keep working, and the alias is not listed twice."""
    spec = derive.derive("lstm").spec
    assert load("seed001").names(spec) == load("goodfellow").names(spec)
    assert "seed001" not in available()
