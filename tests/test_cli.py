"""The ``derive`` command line, run as a user runs it: the installed console script in a
subprocess, for every command and for bad input (exit status 2, a message listing the valid
choices, no traceback, no file written). ``derive verify`` gets a stand-in ``derive.tools.verify``
(injected with a sitecustomize module) so that its table and exit status are tested on their
own; the real checks are tests/test_verify.py's."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_executable

import derive
from derive import cli, get_spec
from derive.document import latex_doc
from derive.spec.cells import BUILTIN
from derive.tools.generate import package_outputs

CELLS = list(BUILTIN)


@pytest.fixture(scope="session")
def exe() -> str:
    """The installed console script of this interpreter (where pip puts scripts), else PATH's."""
    import sysconfig

    dirs = [Path(sys.executable).parent, sysconfig.get_path("scripts"),
            sysconfig.get_path("scripts", f"{os.name}_user")]
    for d in dirs:
        if d and (Path(d) / "derive").is_file():
            return str(Path(d) / "derive")
    return require_executable("derive", "the console script that `pip install -e .` installs")


def run(exe: str, *args: str, cwd: Path | None = None, env: dict | None = None):
    full = {**os.environ, "COLUMNS": "100", "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run([exe, *args], cwd=cwd, env=full, capture_output=True, text=True,
                          encoding="utf-8", timeout=300)


# ----------------------------------------------------------------------------- list and show


def test_list_names_every_cell_with_its_states_and_parameters(exe):
    r = run(exe, "list")
    assert r.returncode == 0, r.stderr
    for name, spec in BUILTIN.items():
        assert f"{name}: {spec['title']}" in r.stdout
        assert f"  states  {', '.join(spec['states'])}" in r.stdout
        assert f"  params  {' '.join(spec['params'])}" in r.stdout
    assert "readout V b_y (y)" in r.stdout
    assert "notations: native, goodfellow, standard" in r.stdout


def test_show_prints_readable_unicode_for_each_mode(exe):
    # expected lines written by hand: seed 001 eq (26) and its N_t, seed 002's
    # dE/dc^{t-1} = delta c^t * f^t, seed 000's dc_t/dc_{t-1} = f_t
    r = run(exe, "show", "sigmoid_lstm", "--param", "W_f", "--width", "120")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Nₜ = d(oₜ) d(σ′(sₜ)) d(fₜ)" in out
    assert "∂hₜ/∂W_f = Mₜ ∂hₜ₋₁/∂W_f + Nₜ ∂sₜ₋₁/∂W_f + d(oₜ) d(σ′(sₜ)) d(sₜ₋₁) d(f′ₜ) d₂(hₜ₋₁)" \
        in out
    assert "δsₜ₋₁ = d(fₜ) s̄ₜ" in out
    assert "∂sₜ/∂sₜ₋₁ = d(fₜ)" in out
    assert "\\" not in out and "{" not in out


@pytest.mark.parametrize("cell", CELLS)
def test_show_fits_the_width(exe, cell):
    r = run(exe, "show", cell, "--steps", "--notation", "goodfellow", "--width", "72")
    assert r.returncode == 0, r.stderr
    from derive.document.text import display_width

    assert max(display_width(ln) for ln in r.stdout.splitlines()) <= 72


def test_show_uses_the_terminal_width(exe):
    wide = run(exe, "show", "peephole_lstm", "--mode", "forward", env={"COLUMNS": "200"})
    narrow = run(exe, "show", "peephole_lstm", "--mode", "forward", env={"COLUMNS": "70"})
    assert wide.returncode == narrow.returncode == 0
    assert len(narrow.stdout.splitlines()) > len(wide.stdout.splitlines())


# ----------------------------------------------------------------------------- latex


def test_latex_fragment_to_stdout_and_file(exe, tmp_path):
    args = ["latex", "lstm", "--mode", "forward", "--param", "W_hf", "--notation", "goodfellow"]
    r = run(exe, *args)
    assert r.returncode == 0, r.stderr
    assert r.stdout == latex_doc.document("lstm", modes=["forward"], params=["W_hf"],
                                          notation="goodfellow")
    assert "\\label{eq:lstm:dh-dWhf}" in r.stdout and "\\documentclass" not in r.stdout
    out = tmp_path / "fwd.tex"
    r2 = run(exe, *args, "-o", str(out))
    assert r2.returncode == 0 and r2.stdout == ""
    assert out.read_text(encoding="utf-8") == r.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["fwd.tex"]  # no temporary file left


def test_latex_standalone_with_steps_and_notation_file(exe, tmp_path):
    note = tmp_path / "paper.toml"
    note.write_text("extends = 'standard'\n[cells.sigmoid_lstm]\nW_f = '\\mathbf{W}_f'\n")
    r = run(exe, "latex", "sigmoid_lstm", "--standalone", "--steps", "--notation", str(note),
            "--mode", "forward", "--param", "W_f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.lstrip("%").find("\\documentclass{article}") >= 0
    assert "\\end{document}" in r.stdout
    assert r"\frac{\partial h_t}{\partial \mathbf{W}_f}" in r.stdout
    assert "c_{t-1}" in r.stdout  # standard's cell state


# ----------------------------------------------------------------------------- bad input

BAD = [
    (["show", "lsmt"], "unknown cell 'lsmt'; expected a built-in cell (lstm, sigmoid_lstm, "
                       "rnn, gru, peephole_lstm"),
    (["latex", "lsmt"], "unknown cell 'lsmt'; expected a built-in cell (lstm,"),
    (["verify", "lsmt"], "unknown cell 'lsmt'; expected a built-in cell (lstm,"),
    (["generate", "--check", "lstm", "lsmt"],
     "unknown cell 'lsmt'; expected a built-in cell (lstm,"),
    (["latex", "lstm", "--param", "W_f"],
     "unknown parameter 'W_f' for cell 'lstm'; valid parameters: W_xi, W_xf,"),
    (["show", "rnn", "-p", "V"], "unknown parameter 'V' for cell 'rnn'; valid parameters: W, U, "
                                 "b_h"),
    (["show", "lstm", "--mode", "sideways"],
     "invalid choice: 'sideways' (choose from 'forward', 'reverse', 'flow')"),
    (["latex", "lstm", "-m", "jacobian"], "(choose from 'forward', 'reverse', 'flow')"),
    (["latex", "lstm", "--notation", "fancy"],
     "unknown notation 'fancy'; expected one of native, goodfellow, standard or a path"),
    (["show", "lstm", "--notation", "nowhere/paper.toml"], "notation file 'nowhere/paper.toml' "
                                                           "not found"),
    (["latex", "lstm", "--width", "50"], "--width 50: expected a text width in pt between"),
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) or "none" for a, _ in BAD])
def test_bad_input_exits_2_listing_the_choices(exe, args, message):
    r = run(exe, *args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_bad_notation_file_exits_2_with_its_problem(exe, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[cells.lstm]\nW_f = 'A'\n")
    r = run(exe, "latex", "lstm", "--notation", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cell 'lstm' has no symbol(s) ['W_f']; expected some of" in r.stderr


def test_unwritable_output_path_is_refused_before_writing(exe, tmp_path):
    (tmp_path / "afile").write_text("x")
    cases = {
        str(tmp_path / "missing" / "out.tex"): "does not exist",
        str(tmp_path): "it is a directory",
        str(tmp_path / "afile" / "out.tex"): "is not a directory",
    }
    for path, why in cases.items():
        r = run(exe, "latex", "rnn", "-o", path)
        assert r.returncode == 2, path
        assert f"cannot write '{path}'" in r.stderr and why in r.stderr
        assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_failed_run_leaves_the_old_file_whole(exe, tmp_path):
    out = tmp_path / "paper.tex"
    out.write_text("old")
    r = run(exe, "latex", "lstm", "--notation", "fancy", "-o", str(out))
    assert r.returncode == 2 and out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["paper.tex"]


def test_a_write_that_fails_midway_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "paper.tex"
    out.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(SystemExit) as info:
        cli.main(["latex", "rnn", "-o", str(out)])
    assert info.value.code == 2
    assert "cannot write" in capsys.readouterr().err
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["paper.tex"]


# ----------------------------------------------------------------------------- generate


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_generate_writes_then_check_finds_stale_files(exe, tmp_path):
    """``--out DIR`` writes a kernel package of the given cells; ``--check`` compares with it,
    writing nothing; a second run rewrites exactly the stale files."""
    out = tmp_path / "gen"
    r = run(exe, "generate", "rnn", "--out", str(out))
    assert r.returncode == 0, r.stderr
    want = package_outputs([get_spec("rnn")])
    assert _snapshot(out) == {k: v.encode() for k, v in want.items()}
    assert set(want) == {"__init__.py", "_numba_runtime.py", "_runtime.py", "rnn.py",
                         "rnn_numba.py"}

    r = run(exe, "generate", "rnn", "--check", "--out", str(out))
    assert r.returncode == 0 and "up to date" in r.stdout

    (out / "rnn_numba.py").write_text(want["rnn_numba.py"].replace("import", "# import", 1))
    (out / "rnn.py").unlink()
    before = _snapshot(out)
    r = run(exe, "generate", "rnn", "--check", "--out", str(out))
    assert r.returncode == 1
    assert f"2 of {len(want)} files differ" in r.stdout
    assert "  rnn_numba.py: +" in r.stdout and "  rnn.py: missing" in r.stdout
    assert f"run `derive generate rnn --out {out}`" in r.stdout
    assert _snapshot(out) == before  # --check writes nothing

    r = run(exe, "generate", "rnn", "--out", str(out))
    assert r.returncode == 0 and "2 of" in r.stdout
    assert run(exe, "generate", "rnn", "--check", "--out", str(out)).returncode == 0


def test_generate_out_must_be_a_directory(exe, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run(exe, "generate", "--out", str(f))
    assert r.returncode == 2 and "is not a directory" in r.stderr


# ----------------------------------------------------------------------------- verify

SITECUSTOMIZE = '''
import json, os, sys, types
_rows = os.environ.get("DERIVE_TEST_VERIFY_ROWS")
if _rows is not None:
    _m = types.ModuleType("derive.tools.verify")
    _m.run = lambda cell, **kw: json.loads(_rows)
    _m.KernelError = ValueError
    sys.modules["derive.tools.verify"] = _m
'''


def _rows(rel: float) -> list[dict]:
    return [{"mode": "forward", "param": "h", "max_abs_err": 1e-16, "max_rel_err": 2e-16},
            {"mode": "backward", "param": "W_xi", "max_abs_err": 3.5e-9, "max_rel_err": rel},
            {"mode": "state_jacobian", "param": "c", "max_abs_err": 0.0, "max_rel_err": 0.0}]


@pytest.mark.parametrize("rel, code", [(4e-10, 0), (1e-6, 0), (2e-6, 1), (math.nan, 1)])
def test_verify_prints_a_table_and_exits_on_the_tolerance(exe, tmp_path, rel, code):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    # sitecustomize first; then the caller's path (the derive under test, not only the installed)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": path, "DERIVE_TEST_VERIFY_ROWS": json.dumps(_rows(rel))}
    r = run(exe, "verify", "lstm", env=env)
    assert r.returncode == code, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["mode", "param", "max_abs_err", "max_rel_err", "status"]
    assert lines[2].split() == ["forward", "h", "1.00e-16", "2.00e-16", "ok"]
    assert lines[3].split()[:2] == ["backward", "W_xi"]
    assert lines[3].split()[-1] == ("ok" if code == 0 else "FAIL")
    # columns aligned: every number column ends at the same place
    import re

    ends = {tuple(m.end() for m in re.finditer(r"\S+", ln))[2:4] for ln in lines[2:5]}
    assert len(ends) == 1
    assert lines[-1].startswith("lstm: ok" if code == 0 else "lstm: FAIL, 1 of 3 checks")


def test_verify_with_no_rows_fails(monkeypatch, capsys):
    import types

    fake = types.ModuleType("derive.tools.verify")
    fake.run = lambda cell, **kw: []
    fake.KernelError = ValueError
    monkeypatch.setitem(sys.modules, "derive.tools.verify", fake)
    assert cli.main(["verify", "gru"]) == 1
    assert "no checks ran" in capsys.readouterr().out


def test_verify_passes_the_cell_through(monkeypatch, capsys):
    import types

    seen = []
    fake = types.ModuleType("derive.tools.verify")
    fake.run = lambda cell, **kw: seen.append((cell.name, kw)) or _rows(0.0)
    fake.KernelError = ValueError
    monkeypatch.setitem(sys.modules, "derive.tools.verify", fake)
    assert cli.main(["verify", "peephole_lstm"]) == 0
    assert seen == [("peephole_lstm", {"backend": "numpy", "kernels": None})]


# ----------------------------------------------------------------------------- the rest


@pytest.mark.parametrize("command", ["list", "show", "latex", "generate", "verify"])
def test_help(exe, command):
    r = run(exe, command, "--help")
    assert r.returncode == 0 and "usage: derive " + command in r.stdout


def test_the_command_line_starts_without_sympy():
    code = ("import sys; from derive.cli import main; main(['list']); "
            "main(['show', 'gru', '--steps']); main(['latex', 'lstm', '--standalone']); "
            "assert 'sympy' not in sys.modules, 'sympy imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr


def test_derive_package_still_lists_the_same_cells():
    assert derive.cells() == CELLS


@pytest.mark.parametrize("notation", ["native", "goodfellow", "standard"])
def test_show_output_is_plain_unicode_for_every_cell(notation):
    from derive.document.text import show

    for cell in CELLS:
        out = show(cell, notation=notation, steps=True, width=100)
        assert not set("\\{}$") & set(out), cell
        # the derivative of the output state (h_t, or the paper's own name: Greff's y_t)
        assert re.search(r"∂\w+ₜ/∂", out) and re.search(r"\wₜ₋₁", out), cell
