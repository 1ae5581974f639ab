"""LaTeX export (derive.document.latex_doc): every document derive emits compiles with pdflatex.

The judge of "compiles" and "fits" is pdflatex itself: a run must end without error, with no
overfull box wider than 1pt (horizontal) or at all (vertical), and with no multiply-defined label.
Without pdflatex these tests skip locally and fail in CI (tests/conftest.py).

The layout is also checked without TeX: its one-line form must be the string that the printer of
derive.printing.latex produces, line breaking must neither drop nor repeat a symbol, and the
chain-rule steps of --steps must multiply out to the engine's expanded derivative.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import require_executable

import derive
from derive.document import latex_doc as D
from derive.document import text as T
from derive.printing import latex as L
from derive.printing.notation import load
from derive.tools import flow as F

CELLS = derive.cells()
NOTATIONS = ("native", "goodfellow", "standard")
SHIPPED = ("goodfellow", "standard")


# ----------------------------------------------------------------------------- pdflatex


@pytest.fixture(scope="session")
def pdflatex() -> str:
    return require_executable("pdflatex", "compiling the LaTeX documents derive emits")


def compile_tex(pdflatex: str, workdir: Path, name: str, text: str) -> list[str]:
    """Compile ``text`` as ``workdir/name.tex``; the problems found in the run and its log."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.tex").write_text(text, encoding="utf-8")
    run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error",
                          "-file-line-error", f"{name}.tex"], cwd=workdir,
                         capture_output=True, text=True, timeout=300)
    log_path = workdir / f"{name}.log"
    log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    problems = []
    if run.returncode != 0:
        problems.append(f"pdflatex exited {run.returncode}")
    problems += [ln for ln in log.splitlines() if ln.startswith("!") or ": error:" in ln
                 or re.match(r"^\S+\.tex:\d+: ", ln)]
    for m in re.finditer(r"Overfull \\hbox \(([\d.]+)pt too wide\)[^\n]*", log):
        if float(m.group(1)) > 1.0:
            problems.append(m.group(0))
    problems += re.findall(r"Overfull \\vbox[^\n]*", log)
    problems += re.findall(r"LaTeX Warning: (?:Label .* multiply defined|There were "
                           r"(?:multiply-defined labels|undefined references))[^\n]*", log)
    if not (workdir / f"{name}.pdf").exists():
        problems.append("no PDF written")
    return [f"{name}: {p}" for p in problems]


def compile_all(pdflatex: str, workdir: Path, docs: dict[str, str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        runs = pool.map(lambda kv: compile_tex(pdflatex, workdir / kv[0], kv[0], kv[1]),
                        docs.items())
        return [p for problems in runs for p in problems]


@pytest.mark.parametrize("notation", NOTATIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_every_standalone_document_compiles_clean(cell, notation, pdflatex, tmp_path):
    docs = {mode: D.document(cell, modes=[mode], notation=notation, standalone=True)
            for mode in D.MODES}
    docs["steps"] = D.document(cell, modes=["forward"], notation=notation, steps=True,
                               standalone=True)
    docs["all"] = D.document(cell, notation=notation, steps=True, standalone=True)
    assert compile_all(pdflatex, tmp_path, docs) == []


def test_generated_latex_compiles_clean(pdflatex, tmp_path):
    docs = {Path(rel).stem: text for c in CELLS for rel, text in D.generated_files(c).items()}
    assert sorted(docs) == sorted(CELLS)
    assert compile_all(pdflatex, tmp_path, docs) == []


MINIMAL = ("\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
           "Some text of the paper, then the derivation.\n%s\n\\end{document}\n")


@pytest.mark.parametrize("notation", NOTATIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_fragments_input_into_a_minimal_article_compile_clean(cell, notation, pdflatex,
                                                              tmp_path):
    docs = {}
    for name, kw in (("modes", {}), ("steps", {"modes": ["forward"], "steps": True})):
        work = tmp_path / name
        work.mkdir()
        inputs = []
        for mode in kw.get("modes", D.MODES):
            frag = D.document(cell, modes=[mode], notation=notation, steps=kw.get("steps", False))
            code = "\n".join(ln for ln in frag.splitlines() if not ln.startswith("%"))
            assert "\\documentclass" not in code and "\\usepackage" not in code
            (work / f"{mode}.tex").write_text(frag, encoding="utf-8")
            inputs.append(f"\\input{{{mode}}}")
        docs[name] = MINIMAL % "\n".join(inputs)
    problems = []
    for name, text in docs.items():
        problems += compile_tex(pdflatex, tmp_path / name, name, text)
    assert problems == []


def test_fragments_fit_a_two_column_paper_with_width(pdflatex, tmp_path):
    # \columnwidth of a two-column article at 10pt is 229.5pt
    inputs = []
    for c in CELLS:
        frag = D.document(c, notation="goodfellow", steps=True, width=229.5)
        (tmp_path / f"{c}.tex").write_text(frag, encoding="utf-8")
        inputs.append(f"\\input{{{c}}}")
    text = MINIMAL.replace("{article}", "[twocolumn]{article}") % "\n".join(inputs)
    assert compile_tex(pdflatex, tmp_path, "twocol", text) == []


def test_notebook_repr_compiles_in_an_article(pdflatex, tmp_path):
    body = "\n\n".join(derive.derive(c)._repr_latex_() for c in CELLS)
    text = ("\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n" + body +
            "\n\\end{document}\n")
    problems = compile_tex(pdflatex, tmp_path, "repr", text)
    # a notebook cell has no page width: only errors count here, not overfull lines
    assert [p for p in problems if "Overfull" not in p] == []


# LaTeX commands that MathJax 3 supports (TeX input, base + ams packages), as far as derive uses
# commands at all; from MathJax's documented command list.
MATHJAX = {"begin", "end", "frac", "partial", "left", "right", "sigma", "tanh", "odot", "tilde",
           "hat", "bar", "top", "sum", "ell", "delta", "quad", "qquad", "bigl", "bigr", "Bigl",
           "Bigr", "biggl", "biggr", "Biggl", "Biggr", "cdot", "otimes", "operatorname"}


@pytest.mark.parametrize("cell", CELLS)
def test_notebook_repr_is_mathjax_latex(cell):
    text = derive.derive(cell)._repr_latex_()
    assert text.startswith("$$") and text.endswith("$$") and text.count("$$") == 2
    assert set(re.findall(r"\\([A-Za-z]+)", text)) <= MATHJAX
    assert "\\begin{aligned}" in text and text.count("\\left") == text.count("\\right")


def test_width_estimate_agrees_with_pdflatex(pdflatex, tmp_path):
    snippets = set()
    for c in CELLS:
        for notation in NOTATIONS:
            nm = load(notation).names(derive.derive(c).spec)
            for sec in D.sections(derive.derive(c), names=nm, steps=True):
                for block in sec.blocks:
                    for row in block.rows:
                        snippets.add(row.lhs)
                        for rhs in row.rhs:
                            snippets.add(D.render_flat(rhs, D.LATEX))
                            snippets.update(D.render_flat((it,), D.LATEX) for it in rhs)
    snippets = sorted(snippets)
    body = "\n".join(rf"\setbox0\hbox{{$\displaystyle {s}$}}\typeout{{W{i}=\the\wd0}}"
                     for i, s in enumerate(snippets))
    (tmp_path / "w.tex").write_text(MINIMAL % body, encoding="utf-8")
    subprocess.run([pdflatex, "-interaction=nonstopmode", "w.tex"], cwd=tmp_path,
                   capture_output=True, timeout=300, check=True)
    log = (tmp_path / "w.log").read_text(errors="replace")
    real = {int(i): float(w) for i, w in re.findall(r"W(\d+)=([\d.]+)pt", log)}
    assert len(real) == len(snippets) > 500
    off = [(s, D.tex_width(s), real[i]) for i, s in enumerate(snippets)
           if real[i] > 5 and not 0.985 <= D.tex_width(s) / real[i] <= 1.25]
    assert off == []


# ----------------------------------------------------------------------------- layout, no TeX


def _names(cell, notation="native"):
    return load(notation).names(derive.derive(cell).spec)


@pytest.mark.parametrize("cell", CELLS)
def test_one_line_form_is_the_latex_printer_form(cell):
    d = derive.derive(cell)
    nm = _names(cell)
    fwd, rev, flow = D.sections(d, names=nm)
    flat = {r.label: D.render_flat(r.rhs[-1], D.LATEX_FLAT)
            for s in (fwd, rev, flow) for b in s.blocks for r in b.rows}
    assert flat[f"eq:{cell}:M"] == dict(L.shared_blocks(d))["M_t"]
    for p in d.params:
        for u in d.states:
            want = L.collected(d, p, u, shared=True)
            assert flat[f"eq:{cell}:d{D.slug(u)}-d{D.slug(p)}"] == want
    rows = [r for b in rev.blocks for r in b.rows]
    assert [(r.lhs, D.render_flat(r.rhs[-1], D.LATEX_FLAT)) for r in rows] == \
        L.reverse_entries(d)
    jac, *results = flow.blocks
    assert [(r.lhs, D.render_flat(r.rhs[-1], D.LATEX_FLAT)) for r in jac.rows] == \
        L.jacobian_entries(d)
    # then derive.tools.flow's results, read back into the very strings derive.tools.flow printed
    want = [r for r in F.latex_rows(d, nm) if r not in L.jacobian_entries(d, nm)]
    assert [(r.lhs, D.render_steps(r, D.LATEX_FLAT)) for b in results for r in b.rows] == want


def _strip_command(tex: str, command: str) -> str:
    """``tex`` without every ``command{...}`` (balanced braces)."""
    out, i = [], 0
    while (j := tex.find(command + "{", i)) >= 0:
        out.append(tex[i:j])
        k, depth = j + len(command) + 1, 1
        while depth:
            depth += {"{": 1, "}": -1}.get(tex[k], 0)
            k += 1
        i = k
    return "".join(out) + tex[i:]


def _norm(tex: str) -> str:
    """What a reader sees: sized brackets as \\left/\\right, without alignment, spacing, the
    \\vphantom and the \\left. ... \\right. that join the pieces of a broken left-hand side."""
    tex = _strip_command(_strip_command(tex, r"\vphantom"), r"\hspace")
    tex = re.sub(r"\\(?:big|Big|bigg|Bigg)([lr])", lambda m: r"\left" if m.group(1) == "l"
                 else r"\right", tex)
    tex = re.sub(r"\\notag|\\displaybreak\[\d\]|\\q?quad|&|\\left\.|\\right\.", "", tex)
    return re.sub(r"\s+", "", tex)


@pytest.mark.parametrize("width", [345.0, 229.5])
@pytest.mark.parametrize("notation", NOTATIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_line_breaking_keeps_every_symbol_once(cell, notation, width):
    d = derive.derive(cell)
    for sec in D.sections(d, names=_names(cell, notation), steps=True):
        for block in sec.blocks:
            laid = dict(D.latex_block_lines(block, width))
            for row in block.rows:
                want = row.lhs + "".join(rel + D.render_flat(rhs, D.LATEX_FLAT)
                                         for rel, rhs in zip(row.relations, row.rhs, strict=True))
                assert _norm("".join(laid[row.label])) == _norm(want), row.label


@pytest.mark.parametrize("cell", CELLS)
def test_labels_are_unique_stable_and_complete(cell):
    labels = {}
    for notation in NOTATIONS:
        doc = D.document(cell, notation=notation, steps=True, standalone=True)
        found = re.findall(r"\\label\{(eq:[^}]*)\}", doc)
        assert len(found) == len(set(found))
        labels[notation] = found
    assert labels["native"] == labels["goodfellow"] == labels["standard"]
    d = derive.derive(cell)
    out = D.slug(d.output)  # the output state's name (h, or y for cifg_lstm)
    for p in d.params:
        slug = re.sub(r"[^A-Za-z0-9]", "", p)
        assert f"eq:{cell}:d{out}-d{slug}" in labels["native"]
        assert f"eq:{cell}:dL-d{slug}" in labels["native"]
    assert f"eq:{cell}:M" in labels["native"]
    assert (f"eq:{cell}:N" in labels["native"]) == (len(d.states) > 1)


# ----------------------------------------------------------------------------- the flow section

# the gate of each cell's carousel: seed 001 eq (27)'s forget gate for the LSTMs, the update gate
# of the GRU (h_t = (1 - z_t) n_t + z_t h_{t-1}); the vanilla RNN has none (seed 004)
# the carousel d(state_t)/d(state_{t-1}) along the additive path, read off each cell's equations
# by hand: (what multiplies the gate, the gate), None where the state has no additive path
CAROUSEL_GATE = {"lstm": ("", "f"), "sigmoid_lstm": ("", "f"), "peephole_lstm": ("", "f"),
                 "gru": ("", "z"), "rnn": None,
                 "mgu": ("1 - ", "f"),            # h = (1 - f) h_prev + f h~
                 "gru_cho": ("", "z"),            # h = z h_prev + (1 - z) h~
                 "cifg_lstm": ("", "f"),          # c = z i + c_prev f, f = 1 - i
                 "indrnn": None,                  # h = relu(W x + u * h_prev + b): no sum
                 "mingru": ("1 - ", "z"),         # h = (1 - z) h_prev + z h~
                 "minlstm": ("", "f_prime"),      # h = f' h_prev + i' h~
                 "ugrnn": ("", "g")}              # h = g h_prev + (1 - g) c


def _equations(doc: str) -> dict[str, str]:
    """Every numbered equation of a document by its label, in order, normalised (:func:`_norm`)."""
    out = {}
    for body in re.findall(r"\\begin\{align\}(.*?)\\end\{align\}", doc, re.S):
        parts = re.split(r"\\label\{([^}]*)\}", body)
        for text, label in zip(parts[0::2], parts[1::2], strict=False):
            text = re.sub(r"\\notag\\\\|\\displaybreak\[\d\]", "", text).strip()
            out[label] = _norm(text.removeprefix("\\\\"))
    return out


@pytest.mark.parametrize("notation", NOTATIONS)
@pytest.mark.parametrize("cell", CELLS)
def test_flow_section_has_the_gradient_flow_results(cell, notation):
    """Issue 5: the flow mode renders derive.tools.flow's results like the rest. Every row of
    flow.latex_rows is a numbered equation of the flow document with its relation (=, \\le,
    \\approx), in order and labelled eq:<cell>:flow-...; the one-step Jacobian blocks it repeats
    are the eq:<cell>:J-... equations. The fragment holds the same equations."""
    d = derive.derive(cell)
    nm = _names(cell, notation)
    doc = D.document(cell, modes=["flow"], notation=notation, standalone=True)
    eqs = _equations(doc)
    assert _equations(D.document(cell, modes=["flow"], notation=notation)) == \
        {lab: tex for lab, tex in eqs.items() if not lab.startswith(f"eq:{cell}:def-")}
    flow_eqs = {lab: tex for lab, tex in eqs.items() if lab.startswith(f"eq:{cell}:flow-")}
    jac = {tex for lab, tex in eqs.items() if lab.startswith(f"eq:{cell}:J-")}
    assert len(jac) == len(d.states) ** 2
    want = []
    for lhs, rhs in F.latex_rows(d, nm):
        rel, _ = F.split_relation(rhs)
        text = _norm(lhs + ("=" if rel == "=" else "") + rhs)
        if (lhs, rhs) in L.jacobian_entries(d, nm):
            assert text in jac
        else:
            want.append(text)
    assert list(flow_eqs.values()) == want

    h = nm[d.output]
    gate = CAROUSEL_GATE[cell]
    assert (f"eq:{cell}:flow-carousel" in flow_eqs) == (gate is not None) == bool(F.carousel(d))
    assert any(lab.startswith(f"eq:{cell}:flow-truncated") for lab in flow_eqs) == \
        (gate is not None)
    if gate is not None:  # the bare gate, d(f_t) (seed 001 eq 27), d(z_t), or d(1 - f_t)
        prefix, name = gate
        assert flow_eqs[f"eq:{cell}:flow-carousel"].endswith(_norm(f"=d({prefix}{nm[name]}_t)"))
    # the norm bound of the one-step Jacobian, and seed 004's sum over paths: for the RNN one per
    # parameter, written out; for several states one for the stacked state
    assert r"\le" in flow_eqs[f"eq:{cell}:flow-bounds"]
    paths = [tex for lab, tex in flow_eqs.items() if lab.startswith(f"eq:{cell}:flow-paths")]
    if len(d.states) == 1:
        for p in d.params:
            head = _norm(rf"\frac{{\partial {h}_t}}{{\partial {nm[p]}}}=\sum_{{k=0}}^{{t-1}}")
            assert sum(tex.startswith(head) for tex in paths) == 1, p
    else:
        assert len(paths) == 1 and r"\sum_{k=0}^{t-1}" in paths[0]


@pytest.mark.parametrize("cell", CELLS)
def test_flow_results_in_the_terminal(cell):
    from derive.document.text import show, to_unicode

    out = show(cell, modes=["flow"], width=100)
    for b in F.latex_blocks(derive.derive(cell)):
        assert f"[{b.title}]" in out
    car = [b for b in F.latex_blocks(derive.derive(cell)) if b.key == "carousel"]
    if car:
        lhs, rhs = car[0].rows[0]
        assert f"{to_unicode(lhs)} = {to_unicode(rhs)}" in out
    assert "≤" in out


def test_the_issue_example_label():
    assert "\\label{eq:sigmoid_lstm:dh-dWf}" in D.document("sigmoid_lstm", modes=["forward"])
    assert "\\label{eq:lstm:dh-dWhf}" in D.document("lstm", modes=["forward"])


def test_m_and_n_are_defined_once_and_reused():
    doc = D.document("lstm", modes=["forward"])
    assert doc.count("M_t &=") == 1 and doc.count("N_t &=") == 1
    assert doc.count("M_t \\frac{\\partial h_{t-1}}") == len(derive.derive("lstm").params)


def _split(product: str) -> list[str]:
    out, cur, depth = [], "", 0
    for ch in product.strip():
        depth += (ch in "{(") - (ch in "})")
        if ch == " " and depth == 0:
            out, cur = (out + [cur], "") if cur else (out, cur)
        else:
            cur += ch
    return out + [cur] if cur else out


def _canon(factors: list[str]) -> tuple[str, ...]:
    """Drop identities and sort each run of commuting diagonal factors d(.)."""
    out, run = [], []
    for f in [f for f in factors if f != "I"] + [None]:
        if f is not None and f.startswith("d("):
            run.append(f)
            continue
        out += sorted(run)
        run = []
        if f is not None:
            out.append(f)
    return tuple(out)


def _coef(text: str) -> Fraction:
    m = re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", text)
    return Fraction(int(m.group(1)), int(m.group(2))) if m else Fraction(text or 1)


def _multiply_out(items) -> Counter:
    """A signed sum of Items, distributed into products of factors (written for this test)."""
    total: Counter = Counter()
    for it in items:
        c = it.sign * _coef(it.coef)
        head = _split(it.head)
        tail = _split(it.tail) if it.tail else []
        inner = _multiply_out(it.inner) if it.inner else Counter({(): Fraction(1)})
        for factors, k in inner.items():
            total[_canon(head + list(factors) + tail)] += c * k
    return Counter({f: k for f, k in total.items() if k})


@pytest.mark.parametrize("cell", CELLS)
def test_steps_multiply_out_to_the_derivative(cell):
    """The substituted chain-rule line of --steps (seed 001 eqs 14-25, second line) is the
    engine's derivative d u_t/dA, term for term."""
    d = derive.derive(cell)
    nm = _names(cell)
    (fwd,) = D.sections(d, modes=["forward"], names=nm, steps=True)
    rows = {r.label: r for b in fwd.blocks for r in b.rows}
    for p in d.params:
        for u in d.states:
            row = rows[f"eq:{cell}:d{D.slug(u)}-d{D.slug(p)}"]
            assert len(row.rhs) >= 2
            want = Counter()
            for t in d.forward[p].state(u):
                want[_canon(_split(L.product(t.factors, nm)))] += t.coef
            assert _multiply_out(row.rhs[-2]) == want, row.label


def test_seed_001_eq_16_steps():
    """Seed 001 eq (16), written by hand from the seed (its slip in the second line, a missing
    '+' between W_f dh_{t-1}/dW_f and d_2(h_{t-1}), corrected)."""
    d = derive.derive("sigmoid_lstm")
    (fwd,) = D.sections(d, modes=["forward"], params=["W_f"], steps=True)
    row = next(r for b in fwd.blocks for r in b.rows if r.label == "eq:sigmoid_lstm:dh-dWf")
    chain = D.render_flat(row.rhs[0], D.LATEX_FLAT)
    assert chain == (
        r"d(\sigma(s_t)) \frac{\partial o_t}{\partial W_f} + d(o_t) d(\sigma'(s_t)) \left("
        r"d(s_{t-1}) \frac{\partial f_t}{\partial W_f} + d(f_t) \frac{\partial s_{t-1}}"
        r"{\partial W_f} + d(\tilde{s}_t) \frac{\partial i_t}{\partial W_f} + d(i_t) "
        r"\frac{\partial \tilde{s}_t}{\partial W_f}\right)")
    subst = D.render_flat(row.rhs[1], D.LATEX_FLAT)
    assert subst == (
        r"d(\sigma(s_t)) d(o'_t) W_o \frac{\partial h_{t-1}}{\partial W_f} + d(o_t) "
        r"d(\sigma'(s_t)) \left(d(s_{t-1}) d(f'_t) \left(W_f \frac{\partial h_{t-1}}"
        r"{\partial W_f} + d_2(h_{t-1})\right) + d(f_t) \frac{\partial s_{t-1}}{\partial W_f} + "
        r"d(\tilde{s}_t) d(i'_t) W_i \frac{\partial h_{t-1}}{\partial W_f} + d(i_t) "
        r"d(\tilde{s}'_t) W \frac{\partial h_{t-1}}{\partial W_f}\right)")


def test_fragment_header_names_its_packages_and_command():
    frag = D.document("gru", modes=["reverse"], params=["W_hz"], notation="goodfellow")
    head = "\n".join(frag.splitlines()[:6])
    assert "\\usepackage{amsmath}" in head
    assert "derive latex gru --mode reverse --param W_hz --notation goodfellow" in head
    assert "generated from" in head and "do not edit" in head
    assert "\\documentclass" not in frag and "\\newcommand" not in frag


def test_documents_are_deterministic():
    a = D.document("peephole_lstm", standalone=True, steps=True, notation="standard")
    b = D.document("peephole_lstm", standalone=True, steps=True, notation="standard")
    assert a == b and "\\today" not in a


def test_generated_files_are_one_standalone_article_per_cell():
    for c in CELLS:
        files = D.generated_files(c)
        assert list(files) == [f"latex/{c}.tex"]
        text = files[f"latex/{c}.tex"]
        assert "\\documentclass{article}" in text and "\\end{document}" in text
        for mode in D.MODES:
            assert f"\\label{{sec:{c}:{mode}}}" in text


def test_bad_mode_and_parameter_name_the_valid_choices():
    with pytest.raises(ValueError, match="expected one of forward, reverse, flow"):
        D.document("lstm", modes=["sideways"])
    with pytest.raises(ValueError, match=r"unknown parameter 'W_f' for cell 'lstm'.*W_xi"):
        D.document("lstm", params=["W_f"])


def test_width_estimate_basics():
    # independent values: TeX's own font metrics (cmmi10: W 9.44pt + italic correction,
    # cmr10 '(' 3.89pt) and the spacing of a binary operator (2 x 4mu at 10pt = 4.44pt)
    assert D.tex_width("W") == pytest.approx(10.83, abs=0.01)
    assert D.tex_width("(") == pytest.approx(3.89, abs=0.01)
    assert D.tex_width("a+b") - D.tex_width("a") - D.tex_width("b") == \
        pytest.approx(7.78 + 4.44, abs=0.01)
    assert D.tex_width("-a") == pytest.approx(7.78 + 5.29, abs=0.01)  # unary: no spacing


# ----------------------------------------------------------------------------- any number of states

_H, _X = "hidden", "input"
THREE_STATES = {
    # an LSTM with a third state m: a leaky average of the output, gated by f, that feeds back
    # into the output (m_t = f_t m_{t-1} + (1 - f_t) h_{t-1}, h_t = o_t tanh(c_t) + m_t)
    "name": "lstm3",
    "title": "LSTM with a third state m",
    "params": {**{f"W_x{g}": (_H, _X) for g in "ifgo"}, **{f"W_h{g}": (_H, _H) for g in "ifgo"},
               **{f"b_{g}": (_H,) for g in "ifgo"}},
    "nodes": {
        "i": "sigmoid(W_xi @ x + W_hi @ h_prev + b_i)",
        "f": "sigmoid(W_xf @ x + W_hf @ h_prev + b_f)",
        "g": "tanh(W_xg @ x + W_hg @ h_prev + b_g)",
        "o": "sigmoid(W_xo @ x + W_ho @ h_prev + b_o)",
        "c": "f * c_prev + i * g",
        "m": "f * m_prev + (1 - f) * h_prev",
        "h": "o * tanh(c) + m",
    },
    "states": ("h", "c", "m"),
}
ONE_STATE_NAMED_Y = {  # one state whose name is not h, and a readout read from it
    "name": "leaky_y",
    "title": '"Leaky" y (every character a title may hold: & % $ # _ {x} ~ ^ <> |)',
    "params": {"W": (_H, _X), "U": (_H, _H), "a": (_H,), "V": ("output", _H),
               "b_o": ("output",)},
    "nodes": {"k": "sigmoid(a)", "y": "k * y_prev + tanh(W @ x + U @ y_prev)"},
    "states": ("y",),
}
ONE_STATE_NAMED_Y = {**ONE_STATE_NAMED_Y,
                     "params": {k: v for k, v in ONE_STATE_NAMED_Y["params"].items()
                                if k not in ("V", "b_o")},
                     "readout_params": {"V": ("output", _H), "b_o": ("output",)},
                     "readout": {"out": "tanh(V @ y + b_o)"}}


def test_three_states_every_term_in_every_output():
    """A third state is a third recursion everywhere: dh_t/dA has a term in dm_{t-1}/dA and
    every state has its own recursion (forward), adjoint and carry (reverse) and row and column
    of the state Jacobian (flow); the terminal text prints the same terms."""
    d = derive.derive(THREE_STATES)
    nm = L.names_for(d)
    doc = D.document(d, standalone=True, steps=True)
    eqs = _equations(doc)
    for p in d.params:
        slug = re.sub(r"[^A-Za-z0-9]", "", p)
        for u in d.states:
            assert f"eq:lstm3:d{u}-d{slug}" in eqs, (u, p)
        dh = eqs[f"eq:lstm3:dh-d{slug}"]
        for v, sym in (("h", "M_t"), ("c", "N_t"), ("m", "d(f_t)")):
            rec = _norm(L.partial_symbol(nm, v, 1, p))
            assert _norm(sym) + rec in dh, (p, v)
    # the blocks of dh_t/d(h, c, m)_{t-1} shared by all parameters, and the sentence naming them
    assert _norm(r"\frac{\partial h_t}{\partial m_{t-1}} &= d(f_t)") in eqs["eq:lstm3:N-m"]
    assert "the previous states $v$: $h_{t-1}$, $c_{t-1}$ and $m_{t-1}$" in doc
    for u in d.states:
        assert f"eq:lstm3:bar-{u}" in eqs and f"eq:lstm3:delta-{u}" in eqs
        for v in d.states:
            assert f"eq:lstm3:J-{u}-{v}" in eqs
    assert eqs["eq:lstm3:delta-m"] == _norm(r"\delta m_{t-1} &= d(f_t) \bar{m}_t")
    assert eqs["eq:lstm3:bar-m"] == _norm(r"\bar{m}_t &= \delta m_t + \bar{h}_t")
    text = T.show(d, width=100)
    for p in d.params:
        for u in d.states:
            assert f"∂{u}ₜ/∂{p} =" in text, (u, p)
        assert f"∂mₜ₋₁/∂{p}" in text and f"∂cₜ₋₁/∂{p}" in text
    for u in d.states:
        assert f"δ{u}ₜ₋₁ =" in text and f"{u}̄ₜ =" in text
    assert "∂hₜ/∂mₜ₋₁ = d(fₜ)" in text
    # gradient flow: the 3 x 3 block Jacobian, its product, the bound on its norm
    rows = dict(F.latex_rows(d))
    lhs = r"\frac{\partial (h_t, c_t, m_t)}{\partial (h_{t-1}, c_{t-1}, m_{t-1})}"
    assert any(r.startswith(lhs) for r in rows.values())
    f = F.run_cell(d, steps=5, n_hidden=3, n_in=2)
    assert f.norms["state"]["spectral"].shape == (4,)
    assert "d(h,c,m)_T/d(h,c,m)_k" in F.summary_table([f])


def test_one_state_not_named_h_and_its_readout():
    """The output state's name comes from the spec, not a fixed 'h': in the text, the flow
    labels and the reverse mode, which with a readout starts from it (dl_t/dy_t -> dl_t/dh_t)."""
    d = derive.derive(ONE_STATE_NAMED_Y)
    text = T.show(d, modes=["reverse"])
    assert "∂ℓₜ/∂yₜ = Vᵀ" in text and "out̄ₜ = ∂ℓₜ/∂outₜ" in text
    assert "∂L/∂V = Σₜ " in text and "∂L/∂b_o = Σₜ " in text
    f = F.run_cell(d, steps=4, n_hidden=3, n_in=2)
    assert F.path_label(f, "h") == "dy_T/dy_k"
    assert "dh_T" not in F.summary_table([f])
    assert "M_t" in D.document(d, modes=["forward"])


def test_readout_in_the_reverse_mode():
    """seed 004's readout y_t = sigma(V h_t + b_y): the loss reaches the cell through
    dl_t/dh_t = V^T \\bar{\\hat y}_t, and dL/dV, dL/db_y sum the readout's contributions."""
    d = derive.derive("rnn")
    eqs = _equations(D.document("rnn", modes=["reverse"]))
    assert eqs["eq:rnn:bar-y"] == _norm(r"\bar{y}_t &= \frac{\partial \ell_t}{\partial y_t}")
    assert eqs["eq:rnn:bar-y-hat"] == _norm(r"\bar{\hat{y}}_t &= d(y'_t) \bar{y}_t")
    assert eqs["eq:rnn:dl-dh"] == _norm(
        r"\frac{\partial \ell_t}{\partial h_t} &= V^\top \bar{\hat{y}}_t")
    assert eqs["eq:rnn:dL-dV"] == _norm(
        r"\frac{\partial L}{\partial V} &= \sum_t \bar{\hat{y}}_t h_t^\top")
    assert eqs["eq:rnn:dL-dby"] == _norm(
        r"\frac{\partial L}{\partial b_y} &= \sum_t \bar{\hat{y}}_t")
    labels = list(eqs)
    assert labels.index("eq:rnn:dl-dh") < labels.index("eq:rnn:bar-h")  # the readout first
    # the readout's parameters can be chosen like the cell's; they act on no state
    only = _equations(D.document("rnn", params=["V"]))
    assert "eq:rnn:dL-dV" in only and "eq:rnn:dL-dW" not in only
    assert not [lab for lab in only if lab.startswith("eq:rnn:dh-")]
    assert [lhs for lhs, _ in L.reverse_entries(d)][-2:] == [
        r"\frac{\partial L}{\partial V}", r"\frac{\partial L}{\partial b_y}"]


def test_any_number_of_states_compiles_clean(pdflatex, tmp_path):
    docs = {}
    for spec in (THREE_STATES, ONE_STATE_NAMED_Y):
        for mode in D.MODES:
            docs[f"{spec['name']}-{mode}"] = D.document(spec, modes=[mode], standalone=True)
        docs[f"{spec['name']}-all"] = D.document(spec, standalone=True, steps=True)
        docs[f"{spec['name']}-standard"] = D.document(spec, standalone=True, notation="standard")
        docs[f"{spec['name']}-fragment"] = MINIMAL % D.document(spec, steps=True)
    assert compile_all(pdflatex, tmp_path, docs) == []
