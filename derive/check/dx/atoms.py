"""What a run of tokens names: an activation (:func:`match_activation`) or a symbol, read as a
LaTeX atom (:func:`read_atom`: base, subscript, superscript, primes), so ``W_o`` and ``W_{o}``,
``\\tilde{s}'_t`` and ``\\tilde{s}_t'`` are the same; and the time a subscript names
(:func:`time_lag`)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ...spec.activations import ACTIVATIONS
from ..tokens import ACCENTS, Tok, canon, match_brace, strip_layout, tokenize
from .tables import OPERATOR_CMDS, PRIMES, TIME_LAG, TIME_NOW


@functools.lru_cache(maxsize=16)
def _activation_index(registry: tuple[tuple[str, str], ...]
                      ) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First token of a LaTeX activation name -> (its tokens, the activation), longest first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for name, latex in registry:
        texts = tuple(t.text for t in strip_layout(tokenize(latex)))  # as a row is read
        if texts:
            index.setdefault(texts[0], []).append((texts, name))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))
    return index


def match_activation(toks: Sequence[Tok], i: int) -> tuple[str, int] | None:
    """The activation whose LaTeX name starts at ``toks[i]`` and the index after the name, or
    None. Names come from :data:`derive.spec.activations.ACTIVATIONS` at the time of the call (an
    activation registered at run time is read too), in any number of tokens
    (``\\operatorname{ReLU}``, ``\\mathrm{swish}``); a name that starts with a plain letter is an
    activation only where its argument or a prime follows."""
    if i >= len(toks) or toks[i].kind not in ("cmd", "letter"):
        return None
    index = _activation_index(tuple((n, a.latex) for n, a in ACTIVATIONS.items()))
    for texts, name in index.get(toks[i].text, ()):
        end = i + len(texts)
        if end > len(toks) or any(toks[i + k].text != x for k, x in enumerate(texts)):
            continue
        if toks[i].kind == "letter" and (end >= len(toks) or
                                         toks[end].text not in ("(", "[", "'", "^")):
            continue
        return name, end
    return None


@dataclass(frozen=True)
class Atom:
    """A LaTeX symbol: base, subscript, superscript (canonical texts) and primes."""

    base: str
    sub: str | None
    sup: str | None
    primes: int
    tok: Tok
    end: int  # index after the atom

    @property
    def text(self) -> str:
        s = self.base + (f"_{{{self.sub}}}" if self.sub is not None else "")
        s += "'" * self.primes
        return s + (f"^{{{self.sup}}}" if self.sup is not None else "")


def read_atom(toks: Sequence[Tok], i: int) -> Atom | None:
    """The atom starting at toks[i], or None when toks[i] cannot start one."""
    if i >= len(toks):
        return None
    t = toks[i]
    if match_activation(toks, i) is not None:
        return None  # a function, not a symbol
    if t.kind == "letter":
        base, j = t.text, i + 1
    elif t.kind == "cmd" and t.text in ACCENTS:
        if i + 1 >= len(toks):
            return None
        j = match_brace(toks, i + 1) + 1 if toks[i + 1].text == "{" else i + 2
        base = canon(toks[i:j])
    elif t.kind == "cmd" and t.text not in OPERATOR_CMDS and len(t.text) > 2:
        base, j = t.text, i + 1
    elif t.text == "{":
        j = match_brace(toks, i) + 1
        base = canon(toks[i:j])
    else:
        return None
    sub = sup = None
    primes = 0
    while j < len(toks):
        s = toks[j]
        if s.text == "'":
            primes += 1
            j += 1
        elif s.text in ("_", "^") and j + 1 < len(toks):
            if toks[j + 1].text == "{":
                k = match_brace(toks, j + 1)
                arg = canon(toks[j + 2:k])
                j = k + 1
            else:
                arg = canon([toks[j + 1]])
                j += 2
            if s.text == "_":
                if sub is not None:
                    break
                sub = arg
            elif arg in PRIMES:
                primes += 1
            else:
                if sup is not None:
                    break
                sup = arg
        else:
            break
    return Atom(base, sub, sup, primes, t, j)


def time_lag(sub: str | None) -> int | None:
    """Lag of a time subscript: t -> 0, t-1 -> 1; None otherwise."""
    if sub is None:
        return None
    s = sub.replace(" ", "")
    if s == TIME_NOW:
        return 0
    m = re.fullmatch(TIME_LAG, s)
    return int(m.group(1)) if m else None


def strip_accent(base: str, accent: str) -> str | None:
    """The symbol under an accent (``\\bar{f}`` -> ``f``), None when ``base`` is not
    ``accent{...}``."""
    pre = accent + "{"
    if base.startswith(pre) and base.endswith("}"):
        inner = base[len(pre):-1]
        depth = 0
        for ch in inner:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth < 0:
                return None
        return inner if depth == 0 else None
    return None
