"""The README's Python examples run as written (so they stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import require

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(blocks()) >= 3


def test_readme_python_blocks_run_in_order():
    require("torch", "the README's interop example imports torch")
    require("matplotlib", "the README's flow example may plot")
    scope: dict = {}
    for i, code in enumerate(blocks()):
        try:
            exec(compile(code, f"README.md python block {i + 1}", "exec"), scope)
        except Exception as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"README python block {i + 1} failed: {exc!r}\n{code}")


# ----------------------------------------------------------------------------- "Your own cell"
# The walkthrough runs as a user runs it: the wheel built from this checkout, installed with its
# dependencies into a fresh virtual environment (nothing of the repository on the path), in an
# empty folder outside the repository.

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = README.parent


def walkthrough() -> tuple[str, str]:
    text = README.read_text(encoding="utf-8")
    sh = re.findall(r"```bash walkthrough\n(.*?)```", text, flags=re.S)
    py = re.findall(r"```python walkthrough\n(.*?)```", text, flags=re.S)
    assert len(sh) == 1 and len(py) == 1, "README: one bash and one python walkthrough block"
    return sh[0], py[0]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """A fresh venv with only the wheel of this checkout and its dependencies."""
    base = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(base / "dist"), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    wheels = list((base / "dist").glob("derive_rnn-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    r = subprocess.run([str(bindir / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", str(wheels[0])],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(venv)
    return bindir, env, wheels[0]


def test_the_wheel_holds_the_templates_notations_and_kernels(wheel_env):
    import zipfile

    names = zipfile.ZipFile(wheel_env[2]).namelist()
    for want in ("derive/templates/numpy/kernel.py.j2", "derive/templates/latex/standalone.tex.j2",
                 "derive/notations/goodfellow.toml", "derive/kernels/lstm.py",
                 "derive/kernels/_runtime.py", "derive/cli/commands.py"):
        assert want in names, want
    assert not any(n.startswith(("generated/", "templates/", "tests/")) for n in names)


def test_readme_walkthrough_runs_from_the_wheel(wheel_env, tmp_path):
    bindir, env, _ = wheel_env
    sh, py = walkthrough()
    work = tmp_path / "work"
    work.mkdir()
    (work / "generated").mkdir()  # a folder of the user's own with a common name shadows nothing
    (work / "generated" / "__init__.py").write_text("raise ImportError('the wrong generated')\n")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", sh], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert "ok, all" in r.stdout and "Traceback" not in r.stderr
    assert (work / "ligru.tex").read_text().lstrip().startswith("%")
    r = subprocess.run([str(bindir / "python"), "-c", py], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # the kernels import with nothing of derive (nor of the repository) loaded
    code = ("import sys, mykernels.ligru, mykernels.ligru_numba as n; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('derive', 'sympy', 'jinja2')]; "
            "assert not bad, bad; assert 'site-packages' not in mykernels.ligru.__file__")
    r = subprocess.run([str(bindir / "python"), "-c", code.replace(", mykernels.ligru_numba as n",
                                                                  "")],
                       cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_installed_commands_find_their_data(wheel_env, tmp_path):
    """From the wheel: standalone LaTeX (templates), every shipped notation by name, the
    built-in kernels under derive.kernels, and `derive check` on derive's own export in every
    notation: every line correct."""
    bindir, env, _ = wheel_env

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["derive", *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)

    r = run("--version")
    assert r.returncode == 0 and "derive-rnn" in r.stdout
    r = run("latex", "lstm", "--standalone", "-o", "lstm.tex")
    assert r.returncode == 0, r.stderr
    r = run("verify", "gru")
    assert r.returncode == 0 and "gru: ok" in r.stdout, r.stdout + r.stderr
    r = run("generate", "--check")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    r = run("generate")
    assert r.returncode == 2 and "--out DIR" in r.stderr
    notations = ("native", "goodfellow", "standard", "seed001")
    for n in notations:
        out = f"lstm_{n}.tex"
        r = run("latex", "lstm", "--mode", "forward", "--notation", n, "-o", out)
        assert r.returncode == 0, r.stderr
        r = run("check", out)
        assert r.returncode == 0, f"{n}:\n{r.stdout[-2000:]}"
        m = re.search(r"(\d+) lines in \d+ equations: (\d+) correct, 0 wrong, 0 ill-typed, "
                      r"0 unparsed, 0 skipped", r.stdout)
        assert m and m.group(1) == m.group(2) and int(m.group(1)) > 10, (n, r.stdout[-500:])
