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
