"""The package's shape: imports point down the pipeline (derive's folders in the order of
:data:`PIPELINE`, no cycles among its modules), and the printed kernels carry no dead code (ruff's
F rules, F841 included, pass on generated/)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_executable

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = path.with_suffix("").relative_to(ROOT).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST):
    """Import statements that run (module level or inside functions), not those under
    ``if TYPE_CHECKING:`` (annotations only)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
            and id(n) not in skip]


def import_graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in (ROOT / "derive").rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [target] + [f"{target}.{a.name}" for a in node.names]
            else:
                names = [a.name for a in node.names]
            # a module's own packages are initialised before it: no edge to them
            graph[m] |= {n for n in names if n in mods and n != m
                         and not m.startswith(n + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_derives_modules():
    found = cycles(import_graph())
    assert not found, f"import cycles: {found}"


# The folders of derive in pipeline order; a module may import only from its own folder or one
# above it (``resources`` is where the data lives, below everything).
PIPELINE = ("resources", "spec", "calculus", "printing", "document", "codegen", "tools", "torch",
            "jax", "check", "cli")

# Imports that still point up, each inside the one function that needs it (so no cycle):
# a Derivation's notebook conveniences (.latex(), .sympy(), _repr_latex_) call the printers, and
# the LaTeX document's flow section prints flow's symbolic results (derive.tools.flow holds both
# the symbolic results and the measurements). A new upward import fails the test below.
UPWARD = {
    ("derive.calculus.derivation", "derive.printing"),
    ("derive.calculus.derivation", "derive.printing.latex"),
    ("derive.calculus.derivation", "derive.printing.symbolic"),
    ("derive.document.latex_doc", "derive.tools"),
    ("derive.document.latex_doc", "derive.tools.flow"),
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return PIPELINE.index(parts[1]) if len(parts) > 1 else None


def test_every_module_lives_in_a_pipeline_folder():
    assert {m.split(".")[1] for m in import_graph() if "." in m} == set(PIPELINE)


def test_imports_point_down_the_pipeline():
    up = {(m, n) for m, targets in import_graph().items() for n in targets
          if _layer(m) is not None and _layer(n) is not None and _layer(n) > _layer(m)}
    assert up <= UPWARD, f"imports pointing up the pipeline: {sorted(up - UPWARD)}"
    assert UPWARD <= up, f"listed but gone (drop them from UPWARD): {sorted(UPWARD - up)}"


def test_generated_code_has_no_unused_names():
    exe = shutil.which("ruff") or require_executable("ruff", "ruff checks the printed kernels")
    files = sorted(str(p) for p in (ROOT / "generated").glob("*.py"))
    assert files
    r = subprocess.run([exe, "check", "--isolated", "--select", "F", *files],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("module", ["derive", "derive.spec", "derive.calculus.derivation",
                                    "derive.printing.latex", "derive.document.text",
                                    "derive.codegen", "derive.codegen.lower", "derive.tools.flow",
                                    "derive.check", "derive.cli"])
def test_modules_import_on_their_own(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
