"""The values passed between the steps of judging one line: the engine's value of the
left-hand side (:class:`Expected`), the line as written (:class:`Written`), a named difference
between them (:class:`Difference`) and the verdict (:class:`Verdict`). All frozen."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...calculus.algebra import Factor, Sum
from ..tokens import Tok

Shape = tuple[tuple[str, ...], tuple[str, ...]]
Product = tuple[Factor, ...]


@dataclass(frozen=True)
class Expected:
    """The engine's value of a left-hand side, its vectors normalised; ``summed``: the line must
    be written under ``\\sum_t``; ``printed``: each normalised product as the engine prints it."""

    value: Sum
    shape: Shape
    summed: bool
    printed: Mapping[Product, Product]


@dataclass(frozen=True)
class Written:
    """A right-hand side as a canonical sum; ``written``: each canonical product in the order
    and with the vectors it was written with (what a verdict quotes)."""

    value: Sum
    written: Mapping[Product, Product]


@dataclass(frozen=True)
class Difference:
    """One differing term: its ``kind`` (wrong factor, missing term, ...), the ``term`` as
    written, the ``expected`` term, the ``factor`` it is about and what it ``should_be``; ``text``
    says it in a sentence (the verdict's detail)."""

    kind: str
    term: str | None
    expected: str | None
    factor: str | None = None
    should_be: str | None = None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``differences`` record of ``--json`` (the sentence is the detail, not here)."""
        out: dict[str, Any] = {"kind": self.kind, "term": self.term, "expected": self.expected}
        if self.factor is not None:
            out["factor"] = self.factor
        if self.should_be is not None:
            out["should_be"] = self.should_be
        return out


@dataclass(frozen=True)
class Verdict:
    """The verdict on one line under one binding of the generic symbols."""

    verdict: str
    detail: str
    method: str = ""
    differences: tuple[Difference, ...] = ()
    token: Tok | None = None
