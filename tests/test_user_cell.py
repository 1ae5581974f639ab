"""A user's own cell through every command, and the files derive writes.

Each test answers one failure of the packaging issue: spec files wherever a cell name goes,
errors that name the file and the line or field, kernel packages that import on their own,
kernels matched by content, words a reader understands, and files written like a careful tool.
(The wheel itself is exercised by tests/test_readme.py.)
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

import derive
from derive import cli
from derive.spec import CellSpec
from derive.spec.cells import BUILTIN
from derive.spec.files import SpecFileError, load_spec_file, starter_toml

ROOT = Path(__file__).resolve().parents[1]

MGU_TOML = """\
name = "mgu_relu"
title = "Minimal gated unit with a ReLU candidate"
states = ["h"]

[params]
W_xf = ["hidden", "input"]
W_hf = ["hidden", "hidden"]
b_f = "hidden"
W_xn = ["hidden", "input"]
W_hn = ["hidden", "hidden"]
b_n = "hidden"

[nodes]
f = "sigmoid(W_xf @ x + W_hf @ h_prev + b_f)"
n = "relu(W_xn @ x + W_hn @ (f * h_prev) + b_n)"
h = "(1 - f) * h_prev + f * n"
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    p = tmp_path / "mgu_relu.toml"
    p.write_text(MGU_TOML)
    return p


def derive_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "derive.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


# ----------------------------------------------------------------------------- spec files


def test_every_command_takes_a_spec_file(spec_file, tmp_path, capsys):
    assert cli.main(["list", str(spec_file)]) == 0
    assert "mgu_relu: Minimal gated unit" in capsys.readouterr().out
    assert cli.main(["show", str(spec_file), "--mode", "reverse"]) == 0
    assert "W_hn" in capsys.readouterr().out
    out = tmp_path / "mgu.tex"
    assert cli.main(["latex", str(spec_file), "--mode", "forward", "-o", str(out)]) == 0
    assert r"\label{eq:mgu_relu:" in out.read_text()
    kernels = tmp_path / "k"
    assert cli.main(["generate", str(spec_file), "--out", str(kernels)]) == 0
    assert sorted(p.name for p in kernels.iterdir()) == [
        "__init__.py", "_numba_runtime.py", "_runtime.py", "mgu_relu.py", "mgu_relu_numba.py"]
    assert cli.main(["generate", str(spec_file), "--out", str(kernels), "--check"]) == 0
    assert cli.main(["verify", str(spec_file), "--kernels", str(kernels)]) == 0
    assert "mgu_relu: ok" in capsys.readouterr().out
    assert cli.main(["flow", str(spec_file), "--steps", "8"]) == 0
    assert "mgu_relu" in capsys.readouterr().out
    (tmp_path / "d.md").write_text(
        "$$\\frac{\\partial h_t}{\\partial b_f} = d(1 - f_t) \\frac{\\partial h_{t-1}}"
        "{\\partial b_f} $$\n")
    r = derive_cli("check", str(tmp_path / "d.md"), "--cell", str(spec_file))
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr


def test_json_spec_files_work_too(tmp_path, capsys):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(BUILTIN["mgu"] | {"name": "mine"}))
    assert cli.main(["list", str(p)]) == 0
    assert capsys.readouterr().out.startswith("mine: ")


@pytest.mark.parametrize("text, where", [
    ('name = "x"\nstates = = ["h"]\n', "line 2"),                   # TOML syntax
    (MGU_TOML.replace('"hidden", "input"]', '"hiden", "input"]', 1), "parameter 'W_xf'"),
    (MGU_TOML.replace("h_prev + b_f", "hprev + b_f"), "hprev"),
    (MGU_TOML.replace("[nodes]", "[nodez]"), "unknown key"),
])
def test_a_bad_spec_file_names_the_file_and_the_line_or_field(tmp_path, text, where):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(SpecFileError) as e:
        load_spec_file(p)
    assert str(p) in str(e.value) and where in str(e.value)
    r = derive_cli("show", str(p))
    assert r.returncode == 2 and str(p) in r.stderr and "Traceback" not in r.stderr


def test_a_bad_json_file_names_the_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"name": "x",\n "states": ["h"],,\n}')
    with pytest.raises(SpecFileError, match=r"bad.json: line 2, column"):
        load_spec_file(p)


def test_missing_and_odd_files_are_usage_errors(tmp_path):
    r = derive_cli("show", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and "no such cell spec file" in r.stderr
    (tmp_path / "x.yaml").write_text("a: 1")
    r = derive_cli("show", str(tmp_path / "x.yaml"))
    assert r.returncode == 2 and "ending in .toml or .json" in r.stderr


@pytest.mark.parametrize("like", [None, *BUILTIN])
def test_new_writes_a_starter_that_reads_back(like):
    text = starter_toml("mine", derive.get_spec(like) if like else None)
    spec = CellSpec.from_dict(tomllib.loads(text))
    assert spec.name == "mine" and text.startswith("# A derive cell spec")
    if like:
        want = derive.get_spec(like).to_dict()
        got = spec.to_dict()
        assert {k: v for k, v in got.items() if k not in ("name", "title")} == \
            {k: v for k, v in want.items() if k not in ("name", "title")}


def test_new_refuses_to_overwrite_without_force(tmp_path):
    r = derive_cli("new", "mine", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "mine.toml").is_file()
    r = derive_cli("new", "mine", cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr
    assert derive_cli("new", "mine", "--force", "--like", "lstm", cwd=tmp_path).returncode == 0
    assert "W_hi" in (tmp_path / "mine.toml").read_text()
    r = derive_cli("new", "bad name", cwd=tmp_path)
    assert r.returncode == 2 and "NAME" in r.stderr


def test_version():
    r = derive_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"derive {derive.__version__}")


# ----------------------------------------------------------------------------- kernel packages


def test_a_kernel_package_imports_on_its_own_with_the_builtin_api(spec_file, tmp_path):
    out = tmp_path / "pkg" / "cells"
    assert cli.main(["generate", str(spec_file), "lstm", "--out", str(out)]) == 0
    code = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); "
            "import cells.mgu_relu as k, cells.lstm as l; "
            "P = k.init_params(3, 4); hs, c = k.forward(P, np.ones((5, 2, 3))); "
            "g = k.backward(P, c, np.ones_like(hs)); assert set(P) <= set(g); "
            "assert k.SPEC_DIGEST and l.STATE == ('h', 'c'); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('derive', 'sympy', 'jinja2')]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-I", "-c", code, str(out.parent)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_kernel_files_are_named_after_the_cell_not_the_dict():
    from derive.codegen import kernel_files

    assert list(kernel_files(BUILTIN["mgu"] | {"name": "my-cell.v2"})) == ["my_cell_v2.py"]


def test_two_cells_on_one_module_name_are_refused(tmp_path, spec_file):
    other = tmp_path / "other.toml"
    other.write_text(MGU_TOML.replace('name = "mgu_relu"', 'name = "mgu-relu"'))
    r = derive_cli("generate", str(spec_file), str(other), "--out", str(tmp_path / "k"))
    assert r.returncode == 2 and "would both be the kernel module 'mgu_relu'" in r.stderr


def test_a_generated_folder_in_the_working_directory_shadows_nothing(tmp_path):
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / "__init__.py").write_text("raise ImportError('shadowed')\n")
    r = subprocess.run([sys.executable, "-c", "import derive.kernels.lstm as k; print(k.STATE)"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "('h', 'c')" in r.stdout, r.stderr
    r = derive_cli("verify", "rnn", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_verify_refuses_a_kernel_printed_from_another_spec(spec_file, tmp_path, capsys):
    out = tmp_path / "k"
    assert cli.main(["generate", str(spec_file), "--out", str(out)]) == 0
    spec_file.write_text(MGU_TOML.replace("relu(", "tanh("))
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", str(spec_file), "--kernels", str(out)])
    assert e.value.code == 2
    assert "printed from another spec" in capsys.readouterr().err
    assert cli.main(["generate", str(spec_file), "--out", str(out), "--check"]) == 1


def test_user_specs_need_out_and_an_installed_package_keeps_its_kernels(spec_file, monkeypatch,
                                                                       capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", str(spec_file)])
    assert e.value.code == 2 and "--out DIR is needed" in capsys.readouterr().err
    from derive.tools import generate

    monkeypatch.setattr(generate, "CHECKOUT", False)
    with pytest.raises(SystemExit):
        cli.main(["generate", "lstm"])
    assert "inside the installed package" in capsys.readouterr().err


# ----------------------------------------------------------------------------- by content


def test_flow_finds_a_kernel_by_content_not_by_name():
    from derive.tools import flow

    stock = derive.derive("lstm")
    assert flow.kernel(stock).__name__ == "derive.kernels.lstm"
    changed = derive.derive(BUILTIN["lstm"] | {"nodes": {**BUILTIN["lstm"]["nodes"],
                                                         "h": "o * sigmoid(c)"}})
    assert changed.name == "lstm" and changed.spec.digest != stock.spec.digest
    k = flow.kernel(changed)
    assert k.__name__ != "derive.kernels.lstm" and k.SPEC_DIGEST == changed.spec.digest
    a = flow.run_cell(stock, steps=6)
    b = flow.run_cell(changed, steps=6)
    assert not np.allclose(a.norms["h"]["spectral"], b.norms["h"]["spectral"])


# ----------------------------------------------------------------------------- words


def _user_outputs() -> dict[str, str]:
    from derive.document.latex_doc import document
    from derive.document.text import show
    from derive.tools import flow

    out = {}
    for c in BUILTIN:
        d = derive.derive(c)
        out[f"latex {c}"] = document(d, standalone=True)
        out[f"show {c}"] = show(d, width=100)
    out["flow"] = flow.summary_table([flow.run_cell(c, steps=4) for c in ("lstm", "gru")])
    for cmd in ("", "list", "show", "latex", "generate", "verify", "flow", "check", "new"):
        r = derive_cli(*([cmd] if cmd else []), "--help")
        out[f"help {cmd}"] = r.stdout
    out["list"] = derive_cli("list").stdout
    return out


def test_user_output_never_speaks_of_the_seeds():
    for what, text in _user_outputs().items():
        low = text.lower()
        assert "seed 00" not in low and "seed00" not in low, what
    for p in (ROOT / "generated").rglob("*"):
        if p.is_file() and p.suffix in (".py", ".tex"):
            assert "seed 00" not in p.read_text().lower(), p


def test_flow_sections_cite_the_literature():
    text = derive.derive("lstm")
    from derive.document.latex_doc import document

    doc = document(text, modes=["flow"], standalone=True)
    for cite in ("Hochreiter and Schmidhuber 1997", "Pascanu et al. 2013", "Bengio et al. 1994",
                 "Gers et al. 2000"):
        assert cite in doc, cite


# ----------------------------------------------------------------------------- files


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_written_files_get_the_umask_mode(tmp_path, spec_file):
    old = os.umask(0o022)
    try:
        out = tmp_path / "k"
        assert cli.main(["generate", str(spec_file), "--out", str(out)]) == 0
        assert {_mode(p) for p in out.iterdir()} == {0o644} and _mode(out) == 0o755
        tex = tmp_path / "a.tex"
        assert cli.main(["latex", "rnn", "--mode", "flow", "-o", str(tex)]) == 0
        assert _mode(tex) == 0o644
        os.umask(0o027)
        spec_file.write_text(MGU_TOML.replace("relu(", "softplus("))
        assert cli.main(["generate", str(spec_file), "--out", str(out)]) == 0
        assert _mode(out / "mgu_relu.py") == 0o640
    finally:
        os.umask(old)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_failed_generate_leaves_the_old_folder_whole(tmp_path, spec_file, monkeypatch):

    out = tmp_path / "k"
    assert cli.main(["generate", str(spec_file), "--out", str(out)]) == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    spec_file.write_text(MGU_TOML.replace("relu(", "softplus("))
    real_open = open
    calls = []

    def failing_open(path, *a, **k):
        if str(path).endswith("_numba.py") and "w" in (a[0] if a else k.get("mode", "r")):
            calls.append(path)
            raise OSError(28, "No space left on device")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(SystemExit) as e:
        cli.main(["generate", str(spec_file), "--out", str(out)])
    monkeypatch.undo()
    assert e.value.code == 2 and calls
    assert {p.name: p.read_text() for p in out.iterdir()} == before  # no mix of old and new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "mgu_relu.toml"]  # no leftovers


def test_write_tree_keeps_other_files_and_swaps_in_whole(tmp_path):
    from derive.tools.files import write_tree

    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert write_tree({"a.py": "1", "sub/b.py": "2"}, out) == ["a.py", "sub/b.py"]
    assert write_tree({"a.py": "1", "sub/b.py": "3"}, out) == ["sub/b.py"]
    assert (out / "mine.txt").read_text() == "keep" and (out / "sub/b.py").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("args", [["latex", "lstm", "-o", ""], ["generate", "--out", ""],
                                  ["verify", "lstm", "--kernels", ""],
                                  ["flow", "lstm", "--json", ""]])
def test_an_empty_path_is_a_usage_error(args):
    r = derive_cli(*args)
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr


def test_output_to_a_symlink_writes_its_target(tmp_path):
    target = tmp_path / "real.tex"
    target.write_text("old")
    link = tmp_path / "link.tex"
    link.symlink_to(target)
    assert cli.main(["latex", "rnn", "--mode", "reverse", "-o", str(link)]) == 0
    assert link.is_symlink() and target.read_text().startswith("%")


def test_packages_in_pyproject_are_derives_folders():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(data["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(ROOT).parent.parts)
             for p in (ROOT / "derive").rglob("__init__.py")}
    mapped = set(data["tool"]["setuptools"]["package-dir"])
    assert listed == found | mapped, (listed ^ (found | mapped))
    assert data["project"]["name"] == "derive-rnn"
