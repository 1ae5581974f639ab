"""Shared test setup.

Tests that need an optional tool (torch, pdflatex, matplotlib) skip with a stated reason when it
is missing on a developer's machine; in CI (CI=true) a missing tool is a failure instead, so a
skipped check can never be reported as passing there.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def require(module: str, why: str):
    """Import an optional module, or skip (locally) / fail (CI) with the reason."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)  # an ImportError here fails the test in CI
    return pytest.importorskip(module, reason=why)


def require_executable(name: str, why: str) -> str:
    """Path of an external program (pdflatex, the derive console script), or skip (locally) /
    fail (CI) with the reason."""
    import shutil

    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required in CI ({why}) but is not installed")
    pytest.skip(f"{name} is not installed: {why}")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "gpu: needs a CUDA device (torch.cuda.is_available()); skipped without one, "
                   "run whenever one is present")
