"""Where derive's data lives: the Jinja templates, the shipped notations and the checked-in
output folder. Every module that reads one of them asks here (one place to move them)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
NOTATIONS = ROOT / "notations"
GENERATED = ROOT / "generated"
