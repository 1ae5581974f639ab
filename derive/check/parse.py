"""The token names the reverse-mode reader (:mod:`derive.check.document`,
:mod:`derive.check.grammar`, :mod:`derive.check.reverse`) imports from here, under their former
names; they live in :mod:`derive.check.tokens`. The d(x) reader that this module held is
:mod:`derive.check.dx`."""

from __future__ import annotations

from .tokens import ACCENTS, Tok, tokenize
from .tokens import canon as _canon
from .tokens import match_brace as _match
from .tokens import strip_layout as _strip

__all__ = ["ACCENTS", "Tok", "_canon", "_match", "_strip", "tokenize"]
