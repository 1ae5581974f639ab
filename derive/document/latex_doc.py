"""LaTeX documents for papers: fragments to \\input, standalone articles, and generated/latex/.

A document is built in three layers:

1. **Model** (:class:`Item`, :class:`Row`, :class:`Block`, :class:`Section`): the equations of each
   mode, printer-independent. Right-hand sides are signed sums whose summands may hold a
   bracketed sub-sum (seed 001's factored form), so a long equation can break inside brackets.
   ``forward``: the shared blocks M_t, N_t (seed 001 eq 26) then dh_t/dA and every other state's
   recursion ds_t/dA; with ``steps`` each is first written as the chain rule (eqs 7-8, gates kept
   whole), then with the gate derivatives substituted (eqs 10-13) and only then collected, as
   seed 001 eqs (14)-(25) do. ``reverse``: :func:`derive.printing.latex.reverse_entries` (seed 002).
   ``flow``: the state Jacobian blocks, :func:`derive.printing.latex.jacobian_entries`, then the
   gradient flow results of :func:`derive.tools.flow.latex_blocks` (products, carousel, bounds, path
   sums, seed 000), their LaTeX read back into items (:func:`math_items`) with relations =, \\le,
   \\approx.
2. **Layout** (:func:`layout`): greedy line breaking at the '+' and '-' between summands, by an
   estimate of the rendered width (Computer Modern glyph widths measured with pdflatex and the
   TeXbook's inter-atom spacing, :func:`tex_width`), breaking inside a bracket only when the
   bracket cannot fit on a line of its own. Brackets get explicit sizes (\\bigl ... \\Biggl) so a
   bracket may open on one line and close on another.
3. **Rendering** through the Jinja templates of ``templates/latex/`` (shared macros in
   ``_macros.tex.j2``): numbered, labelled ``align`` environments (labels such as
   ``eq:lstm:dh-dWxf``, independent of the notation), needing only amsmath.

The terminal printer :mod:`derive.document.text` lays out the same model with a Unicode style.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING

from ..calculus.algebra import ZERO, Ident, Rec, Sum, single
from ..calculus.rules import partial, totals
from ..printing.latex import (
    Piece,
    adjoint_symbol,
    factored_pieces,
    loss_symbol,
    node_symbol,
    partial_symbol,
    product,
    readout_reverse,
    recursion_blocks,
    vec,
)
from ..spec import HAT, Ref
from ..spec.activations import ACTIVATIONS

if TYPE_CHECKING:
    from ..calculus.derivation import Derivation
    from ..printing.notation import Notation

MODES = ("forward", "reverse", "flow")
MODE_TITLES = {
    "forward": "Forward mode (RTRL)",
    "reverse": "Reverse mode (BPTT)",
    "flow": "Gradient flow",
}
TEXTWIDTH = 345.0
"""\\textwidth of the standard article class at 10pt (letter or A4 paper), in pt."""
TAG_ROOM = 32.0
"""Room kept free on every line for an equation number such as (123) and its separation."""
QUAD = 10.0
SAFETY = 0.97
"""The width estimate is within about 1% of pdflatex; lines are filled to 97% of the room."""

# ----------------------------------------------------------------------------- width estimate

# Widths in pt of Computer Modern at 10pt (display/text style, script style), measured with
# pdflatex as \wd of $\displaystyle c$ and $\scriptstyle c$ (italic correction included).
_LOWER = ("5.29 4.29 4.33 5.2 4.66 5.97 5.13 5.76 3.45 4.69 5.52 3.18 8.78 6.0 4.85 5.03 4.82 "
          "4.79 4.69 3.61 5.72 5.21 7.43 5.72 5.26 5.09")
_LOWER_S = ("4.34 3.52 3.57 4.16 3.79 4.68 4.15 4.68 2.83 3.71 4.42 2.57 7.1 4.94 3.95 4.12 3.92 "
            "3.93 3.77 3.02 4.73 4.25 5.97 4.53 4.31 4.11")
_UPPER = ("7.5 8.09 7.86 8.56 7.96 7.82 7.86 9.12 5.18 6.51 9.21 6.81 10.79 9.12 7.91 7.81 7.91 "
          "7.67 6.71 7.23 7.92 8.06 10.83 9.07 8.03 7.54")
_UPPER_S = ("6.01 6.38 6.23 6.75 6.26 6.15 6.23 7.08 4.09 5.08 7.21 5.49 8.38 7.08 6.3 6.17 6.3 "
            "6.06 5.29 5.8 6.2 6.44 8.6 7.1 6.42 5.94")
_GLYPHS: dict[str, tuple[float, float]] = {
    "(": (3.89, 3.13), ")": (3.89, 3.13), "[": (2.78, 2.26), "]": (2.78, 2.26),
    "|": (2.78, 2.38), "+": (7.78, 6.25), "-": (7.78, 6.25), "=": (7.78, 6.25),
    ",": (2.78, 2.38), ".": (2.78, 2.38), "/": (5.0, 4.1), ";": (2.78, 2.38),
    **{c: (5.0, 3.99) for c in "0123456789"},
}
for _chars, _d, _s in (("abcdefghijklmnopqrstuvwxyz", _LOWER, _LOWER_S),
                       ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", _UPPER, _UPPER_S)):
    _GLYPHS.update({c: (float(a), float(b))
                    for c, a, b in zip(_chars, _d.split(), _s.split(), strict=True)})
_SYMBOLS = {
    r"\sigma": 6.07, r"\partial": 5.86, r"\ell": 4.17, r"\delta": 4.82, r"\top": 7.78,
    r"\odot": 7.78, r"\alpha": 6.43, r"\beta": 6.18, r"\gamma": 5.73, r"\theta": 4.97,
    r"\Theta": 7.78, r"\eta": 5.32, r"\lambda": 5.83, r"\mu": 6.03, r"\nu": 5.58, r"\phi": 5.96,
    r"\psi": 6.87, r"\omega": 6.58, r"\epsilon": 4.06, r"\rho": 5.17, r"\tau": 5.5, r"\xi": 4.84,
    r"\zeta": 5.11, r"\kappa": 5.76, r"\chi": 6.26, r"\pi": 6.06, r"\Sigma": 7.22,
    r"\Delta": 8.33, r"\Gamma": 6.25, r"\Phi": 7.22, r"\Psi": 7.78, r"\Omega": 7.22,
    r"\Lambda": 6.94, r"\prime": 2.75, r"\cdot": 2.78, r"\times": 7.78, r"\ast": 5.0,
    r"\nabla": 8.33, r"\infty": 10.0, r"\ldots": 11.67, r"\cdots": 13.33, r"\varphi": 6.0,
    r"\varepsilon": 4.66, r"\|": 5.0,
}
_OPERATORS = {r"\tanh": 20.0, r"\exp": 15.28, r"\log": 12.92, r"\sum": 14.44, r"\prod": 13.89,
              r"\max": 18.61, r"\min": 16.67}
_LIMITS = {r"\sum", r"\prod", r"\max", r"\min"}  # scripts go below/above in display style
_RELATIONS = {"=", r"\le", r"\leq", r"\ge", r"\geq", r"\approx", r"\ne", r"\neq", r"\sim",
              r"\equiv"}
_BINARY = {"+", "-", r"\odot", r"\times", r"\cdot", r"\ast", r"\pm", r"\circ"}
_DELIMS = {r"\bigl": 4.58, r"\bigr": 4.58, r"\Bigl": 5.97, r"\Bigr": 5.97, r"\biggl": 7.36,
           r"\biggr": 7.36, r"\Biggl": 7.92, r"\Biggr": 7.92, r"\left": 7.36, r"\right": 7.36}
_SPACES = {r"\quad": 10.0, r"\qquad": 20.0, r"\,": 1.67, r"\:": 2.22, r"\;": 2.78,
           r"\!": -1.67, r"\ ": 3.33}
_ACCENTS = {r"\tilde", r"\hat", r"\bar", r"\vec", r"\dot", r"\ddot", r"\check", r"\breve",
            r"\widetilde", r"\widehat", r"\overline", r"\mathbf", r"\mathit", r"\boldsymbol",
            r"\mathcal", r"\mathsf", r"\mathtt", r"\bm", r"\underline"}
_ROMAN = {r"\mathrm", r"\text", r"\textrm", r"\operatorname"}
# cmr10 (upright text and \mathrm): lower-case letters and the space; other characters 5.2pt
_ROMAN_WIDTHS = dict(zip("abcdefghijklmnopqrstuvwxyz~", map(float, (
    "5.0 5.56 4.44 5.56 4.44 3.06 5.0 5.56 2.78 3.06 5.28 2.78 8.33 5.56 5.0 5.56 5.28 3.92 3.94 "
    "3.89 5.56 5.28 7.22 5.28 5.28 4.44 3.33").split()), strict=True))
# a \left or \right delimiter by the height of what it encloses: plain, a fraction or matrix, a
# \sum or \prod with limits (measured with pdflatex; unknown delimiters count as parentheses)
_DELIM_GLYPHS = {".": (1.2, 1.2, 1.2), "(": (3.89, 5.97, 8.75), ")": (3.89, 5.97, 8.75),
                 "[": (2.78, 4.72, 7.0), "]": (2.78, 4.72, 7.0), "|": (2.78, 3.33, 3.33),
                 r"\|": (5.0, 5.56, 5.56)}
_THIN, _MED, _THICK = 1.67, 2.22, 2.78
_KINDS = ("ord", "op", "bin", "rel", "open", "close", "punct", "inner")
# TeXbook ch. 18 inter-atom spacing; a negative entry applies in display and text style only
_SPACING = {
    "ord": (0, _THIN, -_MED, -_THICK, 0, 0, 0, -_THIN),
    "op": (_THIN, _THIN, 0, -_THICK, 0, 0, 0, -_THIN),
    "bin": (-_MED, -_MED, 0, 0, -_MED, 0, 0, -_MED),
    "rel": (-_THICK, -_THICK, 0, 0, -_THICK, 0, 0, -_THICK),
    "open": (0, 0, 0, 0, 0, 0, 0, 0),
    "close": (0, _THIN, -_MED, -_THICK, 0, 0, 0, -_THIN),
    "punct": (-_THIN, -_THIN, 0, -_THIN, -_THIN, -_THIN, -_THIN, -_THIN),
    "inner": (-_THIN, _THIN, -_MED, -_THICK, -_THIN, 0, -_THIN, -_THIN),
}
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}_^']|\S")


_TEXT_ARG = re.compile(r"(\\(?:text|textrm)\{)([^{}]*)\}")


class _Tokens:
    def __init__(self, toks: list[str]):
        self.toks, self.i = toks, 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        self.i += 1
        return self.toks[self.i - 1]

    def arg(self) -> list[str]:
        """The next argument: the tokens of a {...} group, or one token."""
        if self.peek() != "{":
            return [self.take()] if self.peek() is not None else []
        self.take()
        depth, out = 1, []
        while self.peek() is not None:
            tok = self.take()
            depth += {"{": 1, "}": -1}.get(tok, 0)
            if depth == 0:
                break
            out.append(tok)
        return out


def tex_width(s: str | list[str], script: int = 0) -> float:
    """Estimated width in pt of the math-mode LaTeX ``s`` set in display style (``script``: 1
    script, 2 scriptscript), Computer Modern at 10pt. Within about -1%..+5% of pdflatex on
    derive's output (more generous for \\sum_t); unknown commands count as 8pt."""
    if isinstance(s, str):  # spaces count inside \text{...} only
        s = _TEXT_ARG.sub(lambda m: m.group(1) + m.group(2).replace(" ", "~") + "}", s)
    p = _Tokens(_TOKEN.findall(s) if isinstance(s, str) else list(s))
    scale = (1.0, 0.78, 0.62)[script]
    atoms: list[list] = []  # [kind, width, sub, sup, limits]
    sizes: list[int] = []  # the size class of every open \left

    def glyph(c: str) -> float:
        if c in _GLYPHS:
            return _GLYPHS[c][min(script, 1)] * (0.8 if script > 1 else 1.0)
        return 8.0 * scale

    def add(kind: str, w: float, limits: bool = False) -> None:
        atoms.append([kind, w, 0.0, 0.0, limits])

    while p.peek() is not None:
        tok = p.take()
        if tok in ("_", "^", "'"):
            w = (tex_width(p.arg(), min(script + 1, 2)) + 0.5) if tok != "'" else 2.8 * scale
            if not atoms:
                add("ord", 0.0)
            slot = 2 if tok == "_" else 3
            atoms[-1][slot] = max(atoms[-1][slot], w)
        elif tok == "{":
            p.i -= 1
            add("ord", tex_width(p.arg(), script))
        elif tok == "}":
            continue
        elif tok in (r"\frac", r"\dfrac", r"\tfrac"):
            a, b = p.arg(), p.arg()
            sub = min(script + 1, 2) if script or tok == r"\tfrac" else 0
            w = max(tex_width(a, sub), tex_width(b, sub))
            add("inner", w * (1.06 if tok == r"\tfrac" else 1.0) + 2.4)
        elif tok == r"\begin":
            add("inner", _matrix_width(p, script))
        elif tok in (r"\left", r"\right"):
            if tok == r"\left":
                sizes.append(_enclosed_size(p.toks, p.i + 1))
            size = (sizes.pop() if tok == r"\right" else sizes[-1]) if sizes else 0
            d = p.take() if p.peek() is not None else ""
            glyph_w = _DELIM_GLYPHS.get(d, _DELIM_GLYPHS["("])[size]
            add("open" if tok == r"\left" else "close", glyph_w)
        elif tok in _DELIMS:
            d = p.take() if p.peek() is not None else ""
            kind = "open" if tok.endswith("l") else "close"
            add(kind, 0.0 if d == "." else _DELIMS[tok])
        elif tok in _SPACES:
            add("space", _SPACES[tok] * scale)
        elif tok == r"\vphantom":
            p.arg()
        elif tok in _ACCENTS or tok == r"\phantom":
            add("ord", tex_width(p.arg(), script))
        elif tok in _ROMAN:
            w = sum(_ROMAN_WIDTHS.get(c, 5.2) for c in "".join(p.arg()))
            add("op" if tok == r"\operatorname" else "ord", w * (1.0, 0.8, 0.64)[script])
        elif tok in _OPERATORS:
            w = (8.4 if script == 1 else 7.0) if (tok in _LIMITS and script) else \
                _OPERATORS[tok] * scale
            add("op", w, limits=tok in _LIMITS and script == 0)
        elif tok in _BINARY:
            add("bin", (_SYMBOLS.get(tok) or _GLYPHS[tok][0]) * scale)
        elif tok in _RELATIONS:
            add("rel", 7.78 * scale)
        elif tok in "([":
            add("open", glyph(tok))
        elif tok in ")]":
            add("close", glyph(tok))
        elif tok in ",;":
            add("punct", glyph(","))
        elif tok.startswith("\\"):
            add("ord", _SYMBOLS.get(tok, 8.0) * scale)
        else:
            add("ord", glyph(tok))
    # a binary operator with nothing binary about its place is an ordinary atom (TeXbook 5, 6)
    prev = None
    for a in atoms:
        if a[0] == "space":
            continue
        if a[0] == "bin" and (prev is None or prev[0] in ("bin", "op", "rel", "open", "punct")):
            a[0] = "ord"
        if prev is not None and prev[0] == "bin" and a[0] in ("rel", "close", "punct"):
            prev[0] = "ord"
        prev = a
    if prev is not None and prev[0] == "bin":
        prev[0] = "ord"
    total, prev = 0.0, None
    for a in atoms:
        scripts = max(a[2], a[3])
        total += max(a[1], scripts) if a[4] else a[1] + scripts
        if a[0] == "space":
            continue
        if prev is not None:
            sp = _SPACING[prev[0]][_KINDS.index(a[0])]
            if sp > 0 or (sp < 0 and script == 0):
                total += abs(sp)
        prev = a
    return total


def _enclosed_size(toks: list[str], i: int) -> int:
    """Size class of what a \\left encloses (tokens from ``i`` to its \\right): 2 with a \\sum,
    \\prod, \\max or \\min in display style, 1 with a fraction or matrix, else 0."""
    depth, size = 1, 0
    for tok in toks[i:]:
        depth += {r"\left": 1, r"\right": -1}.get(tok, 0)
        if depth == 0:
            break
        if tok in _LIMITS:
            return 2
        if tok in (r"\frac", r"\dfrac", r"\begin"):
            size = 1
    return size


def _matrix_width(p: _Tokens, script: int) -> float:
    """Width of a ``\\begin{..matrix} ... \\end{..matrix}`` (after \\begin): the widest cell of
    every column in text style, 2\\arraycolsep between columns, parentheses or brackets around
    (p, b, v, V) sized by the number of rows."""
    env = "".join(p.arg())
    body: list[str] = []
    depth = 1
    while p.peek() is not None:
        tok = p.take()
        depth += {r"\begin": 1, r"\end": -1}.get(tok, 0)
        if depth == 0:
            p.arg()
            break
        body.append(tok)
    rows: list[list[list[str]]] = [[[]]]
    for tok in body:
        if tok == r"\\":
            rows.append([[]])
        elif tok == "&":
            rows[-1].append([])
        else:
            rows[-1][-1].append(r"\tfrac" if tok == r"\frac" else tok)  # text style
    cols: list[float] = []
    for row in rows:
        for k, cell in enumerate(row):
            w = tex_width(cell, script)
            cols += [0.0] * (k + 1 - len(cols))
            cols[k] = max(cols[k], w)
    total = sum(cols) + 10.0 * (len(cols) - 1)
    if env[:1] in "pbvV" and env.endswith("matrix"):
        cells = [tok for row in rows for cell in row for tok in cell]
        sizes = (7.36, 8.75, 8.75) if r"\dfrac" in cells else \
            (5.98, 7.92, 8.75) if r"\tfrac" in cells else (5.98, 7.36, 8.75)
        total += 2 * sizes[min(len(rows), 3) - 1]
    return total * (1.0, 0.78, 0.62)[script] if script else total


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Item:
    """One summand of a right-hand side: ``sign coef head (inner) tail then``.

    ``coef`` is the LaTeX of a coefficient's magnitude ('' for 1); without ``inner`` the summand
    is ``coef head`` (``tail`` appended when given); with it, ``head`` multiplies the bracketed
    signed sum ``inner`` and ``tail`` follows the bracket (e.g. the \\partial h_{t-1}/\\partial A
    that a block of seed 001's collected form multiplies). ``then`` is a further bracketed factor
    of the product, ``head (inner) tail (then.inner) then.tail ...`` (its sign is +1).
    """

    sign: int
    head: str
    inner: tuple[Item, ...] = ()
    tail: str = ""
    coef: str = ""
    then: Item | None = None


@dataclass(frozen=True)
class Row:
    """One numbered equation ``lhs = rhs[0] = rhs[1] ...``: the last right-hand side is the
    final form, earlier ones are derivation steps. ``label`` does not depend on the notation.

    ``rels`` are the relations before the right-hand sides ('=' for all when empty; flow's
    bounds use \\le and \\approx); with ``inline`` a later right-hand side stays on the line of
    the one before when it fits (a chain such as ``a \\le b \\le c``), otherwise every one starts
    a line of its own (the steps of a derivation)."""

    label: str
    lhs: str
    rhs: tuple[tuple[Item, ...], ...]
    rels: tuple[str, ...] = ()
    inline: bool = False

    @property
    def relations(self) -> tuple[str, ...]:
        """The relation before every right-hand side."""
        return self.rels or ("=",) * len(self.rhs)


@dataclass(frozen=True)
class Block:
    """Equations typeset together in one ``align``; ``text`` is LaTeX prose for the standalone
    document, ``title`` a plain-text heading (a comment in fragments, a heading in the terminal;
    with ``heading`` also a run-in heading before the text of the standalone document).
    """

    title: str
    rows: tuple[Row, ...]
    text: str = ""
    param: str = ""
    heading: bool = False


@dataclass(frozen=True)
class Section:
    mode: str
    title: str
    blocks: tuple[Block, ...]
    text: str = ""


def _coef(c: Fraction) -> str:
    m = abs(c)
    if m == 1:
        return ""
    return str(m.numerator) if m.denominator == 1 else rf"\frac{{{m.numerator}}}{{{m.denominator}}}"


def _sign(c: Fraction) -> int:
    return -1 if c < 0 else 1


def items_from_pieces(pieces: Iterable[Piece]) -> tuple[Item, ...]:
    """The layout items of a :func:`derive.printing.latex.factored_pieces` tree."""
    return tuple(Item(_sign(p.coef), p.head, items_from_pieces(p.inner), coef=_coef(p.coef))
                 for p in pieces)


def sum_items(s: Sum, nm: dict[str, str]) -> tuple[Item, ...]:
    """A sum in seed 001's factored form; ``0`` for the empty sum."""
    return items_from_pieces(factored_pieces(s, nm)) if s else (Item(1, "0"),)


def slug(name: str) -> str:
    """Label part of a spec name: ``W_xf`` -> ``Wxf``, ``i__hat`` -> ``i-hat``."""
    if name.endswith(HAT):
        return slug(name[: -len(HAT)]) + "-hat"
    return re.sub(r"[^A-Za-z0-9]", "", name) or "x"


# ----------------------------------------------------------------------------- LaTeX as items

_WORD = re.compile(r"\\[A-Za-z]+|\\.|\s+|.")
_OPEN = {"{", "(", "[", r"\left", r"\begin"}
_CLOSE = {"}", ")", "]", r"\right", r"\end"}


def _words(text: str) -> list[str]:
    """``text`` split at the spaces outside every group: braces, parentheses, brackets,
    \\left ... \\right and \\begin ... \\end (a break there would leave a group open)."""
    out: list[str] = []
    cur, depth = "", 0
    for tok in _WORD.findall(text):
        if tok.isspace() and depth == 0:
            if cur:
                out.append(cur)
            cur = ""
            continue
        depth += (tok in _OPEN) - (tok in _CLOSE)
        cur += tok
    return [*out, cur] if cur else out


def _bracketed_sum(word: str) -> str | None:
    """The signed sum inside a word ``\\left(...\\right)`` that is one bracket, else None."""
    if not (word.startswith(r"\left(") and word.endswith(r"\right)")):
        return None
    inner = word[len(r"\left("):-len(r"\right)")]
    depth = 0
    for tok in _WORD.findall(inner):
        depth += (tok in _OPEN) - (tok in _CLOSE)
        if depth < 0:  # \left(a\right) b \left(c\right)
            return None
    return inner if depth == 0 and any(w in ("+", "-") for w in _words(inner)[1:]) else None


def _product(sign: int, words: list[str]) -> Item:
    """One summand: its bracketed sums become ``inner`` (the first) and ``then`` (the others)."""
    ks = [k for k, w in enumerate(words) if _bracketed_sum(w) is not None]
    if not ks:
        return Item(sign, " ".join(words))
    item: Item | None = None
    for n in reversed(range(len(ks))):
        k = ks[n]
        end = ks[n + 1] if n + 1 < len(ks) else len(words)
        inner = _summands(_words(_bracketed_sum(words[k]) or ""))
        item = Item(sign if n == 0 else 1, " ".join(words[:k]) if n == 0 else "", inner,
                    " ".join(words[k + 1:end]), then=item)
    assert item is not None
    return item


def _summands(words: list[str]) -> tuple[Item, ...]:
    """A signed sum split at its top-level '+' and '-' (a leading '-' is the sign)."""
    items: list[Item] = []
    cur: list[str] = []
    sign = 1
    for w in words:
        if w in ("+", "-"):
            if cur:
                items.append(_product(sign, cur))
                cur, sign = [], 1
            sign *= -1 if w == "-" else 1
            continue
        if not cur and w.startswith("-") and len(w) > 1:
            sign, w = -sign, w[1:]
        cur.append(w)
    if cur:
        items.append(_product(sign, cur))
    return tuple(items)


def _with_tail(it: Item, text: str) -> Item:
    if it.then is not None:
        return replace(it, then=_with_tail(it.then, text))
    return replace(it, tail=f"{it.tail} {text}".strip())


def math_items(text: str) -> tuple[tuple[str, tuple[Item, ...]], ...]:
    """A right-hand side written as LaTeX (such as those of :func:`derive.tools.flow.latex_rows`) as
    ``(relation, items)`` steps for the layout: split at its top-level relations (=, \\le,
    \\approx, ...; the first is '=' unless the text starts with one), every step at its top-level
    '+' and '-', and a summand's bracketed sums ``\\left(a + b\\right)`` into nested items that
    the layout can break inside. A remark from a top-level \\quad on (``\\quad \\text{when }
    ...``) stays with the last summand. :func:`render_steps` with :data:`LATEX_FLAT` gives the
    text back."""
    words = _words(text)
    remark: list[str] = []
    for k, w in enumerate(words):
        if w in (r"\quad", r"\qquad"):
            words, remark = words[:k], words[k:]
            break
    steps: list[tuple[str, list[str]]] = []
    rel, cur = "=", []
    for w in words:
        if w in _RELATIONS:
            if cur:
                steps.append((rel, cur))
            rel, cur = w, []
        else:
            cur.append(w)
    steps.append((rel, cur))
    out = [(r, _summands(ws) or (Item(1, ""),)) for r, ws in steps]
    if remark:
        r, items = out[-1]
        out[-1] = (r, (*items[:-1], _with_tail(items[-1], " ".join(remark))))
    return tuple(out)


def _label(d: Derivation, *parts: str) -> str:
    return "eq:" + d.name + ":" + "-".join(parts)


def _collected(d: Derivation, param: str, state: str, nm: dict[str, str],
               shared: bool) -> tuple[Item, ...]:
    """Seed 001's final form of d state_t/dA (:func:`derive.printing.latex.collected`, as items)."""
    items: list[Item] = []
    for blk, rec in recursion_blocks(d, param, state, nm, shared):
        if isinstance(blk, str):
            items.append(Item(1, blk + " " + rec))
        elif len(blk) == 1:
            t = blk.terms[0]
            items.append(Item(_sign(t.coef), product(t.factors, nm) + " " + rec,
                              coef=_coef(t.coef)))
        else:
            items.append(Item(1, "", items_from_pieces(factored_pieces(blk, nm)), rec))
    V = d.forward[param].raw.V[state]
    if V:
        items.extend(items_from_pieces(factored_pieces(V, nm)))
    return tuple(items) or (Item(1, "0"),)


def _attach(coef: Fraction, head: str, inner: tuple[Item, ...]) -> list[Item]:
    """coef * head * (inner), simplified: a lone summand merges into the product."""
    sg, cf = _sign(coef), _coef(coef)
    if not inner:
        return []
    if not head and not cf:
        return [replace(it, sign=it.sign * sg) for it in inner]
    if len(inner) == 1 and not inner[0].coef and not (cf and not head):
        it = inner[0]
        merged = (head + " " + it.head).strip() if it.head else head
        return [replace(it, sign=it.sign * sg, head=merged, coef=cf)]
    return [Item(sg, head, inner, coef=cf)]


def chain_items(d: Derivation, param: str, root: str, nm: dict[str, str],
                opaque: Iterable[str] = ()) -> tuple[Item, ...]:
    """d root_t / dA by the chain rule, *not* collected: every node the root uses is expanded in
    place (its derivative in brackets, seed 001 eqs (8) and (14)-(25)), except the ``opaque``
    nodes, which stay as the symbols \\partial g_t/\\partial A. Pre-activations are always
    expanded (a gate prints as d(g'_t) (W_g \\partial h_{t-1}/\\partial A + ...), eqs 10-13)."""
    spec, order = d.spec, d.order
    keep = set(opaque)

    def fwd(r: Ref) -> Sum:
        if r.kind == "node" and r.lag == 1:
            return single(order, Rec(r.name, param, 1))
        if r.kind == "param" and r.name == param:
            return single(order, Ident())
        return ZERO

    nonzero = {n for n, s in totals(spec, fwd, param, order).items() if s}

    def leaf(r: Ref) -> Sum:
        if r.kind == "node" and r.lag == 0:
            return single(order, Rec(r.name, param, 0)) if r.name in nonzero else ZERO
        return fwd(r)

    def expand(name: str) -> tuple[Item, ...]:
        out: list[Item] = []
        for t in partial(spec.nodes[name].expr, leaf, param, order):
            last = t.factors[-1]
            if isinstance(last, Rec) and last.lag == 0 and (
                    last.state.endswith(HAT) or last.state not in keep):
                head = product(t.factors[:-1], nm) if t.factors[:-1] else ""
                out.extend(_attach(t.coef, head, expand(last.state)))
            else:
                out.append(Item(_sign(t.coef), product(t.factors, nm), coef=_coef(t.coef)))
        return tuple(out)

    return expand(root) or (Item(1, "0"),)


def _flat_key(items: tuple[Item, ...]) -> str:
    return render_flat(items, LATEX_FLAT)


# ----------------------------------------------------------------------------- the modes


def cell_section(d: Derivation, nm: dict[str, str]) -> Section:
    """The cell's own equations (its forward pass; for ``sigmoid_lstm`` seed 001 eqs (1)-(6)),
    one row per node; gates are written whole as act(pre-activation)."""
    spec = d.spec
    rows = []
    for name, node in spec.nodes.items():
        if name.endswith(HAT):
            continue
        if name + HAT in spec.nodes:
            act = ACTIVATIONS[node.expr.fn].latex  # type: ignore[attr-defined]
            rhs = rf"{act}({vec(spec.nodes[name + HAT].expr, nm)})"
        else:
            rhs = vec(node.expr, nm)
        rows.append(Row(_label(d, "def", slug(name)), node_symbol(nm, name), ((Item(1, rhs),),)))
    return Section("cell", "The cell", (Block("cell", tuple(rows), "At every step $t$ the cell "
                                              "computes"),))


def forward_section(d: Derivation, nm: dict[str, str], params: Sequence[str],
                    steps: bool = False) -> Section:
    """Forward mode: M_t, N_t once (seed 001 eq 26; a third state m and beyond add their block
    dh_t/dm_{t-1}), then per parameter dh_t/dA in the form M_t dh_{t-1}/dA + N_t ds_{t-1}/dA
    (+ ...) + V_t^A and each other state's recursion ds_t/dA; with ``steps`` the chain-rule
    lines come first (seed 001 eqs 14-25). Readout parameters act on no state and are left to
    the reverse mode."""
    h, s = d.output, d.second_state
    hs = node_symbol(nm, h)
    shared = [Row(_label(d, "M"), "M_t", (sum_items(d.M, nm),))]
    if d.N is not None:
        shared.append(Row(_label(d, "N"), "N_t", (sum_items(d.N, nm),)))
    gates = [n for n, v in d.spec.nodes.items() if v.role == "gate"]
    recursion = rf"\partial {hs}/\partial A = M_t\, \partial {node_symbol(nm, h, 1)}/\partial A"
    if s is not None:
        recursion += rf" + N_t\, \partial {node_symbol(nm, s, 1)}/\partial A"
    text = (rf"For every parameter $A$, ${recursion} + V^A_t$, where the blocks shared by all "
            rf"parameters are")
    if len(d.states) > 2:  # a third state and beyond: their blocks under their Jacobian names
        for v in d.states[2:]:
            if d.jacobian[h][v]:
                vp = node_symbol(nm, v, 1)
                shared.append(Row(_label(d, "N", slug(v)),
                                  rf"\frac{{\partial {hs}}}{{\partial {vp}}}",
                                  (sum_items(d.jacobian[h][v], nm),)))
        names = [f"${node_symbol(nm, v, 1)}$" for v in d.states]
        listed = ", ".join(names[:-1]) + " and " + names[-1]
        text = (rf"For every parameter $A$, $\partial {hs}/\partial A = \sum_v "
                rf"(\partial {hs}/\partial v)\, \partial v/\partial A + V^A_t$, the sum over "
                rf"the previous states $v$: {listed}; "
                rf"$M_t = \partial {hs}/\partial {node_symbol(nm, h, 1)}$ and "
                rf"$N_t = \partial {hs}/\partial {node_symbol(nm, s, 1)}$"
                rf". The blocks shared by all parameters are")
    blocks = [Block("shared blocks", tuple(shared), text)]
    for p in params:
        if d.spec.params[p].readout:  # acts on no state: its gradient is in the reverse mode
            continue
        rows = []
        for u in d.states:
            final = _collected(d, p, u, nm, shared=True)
            rhs: list[tuple[Item, ...]] = []
            if steps:
                for opaque in (gates, ()):
                    line = chain_items(d, p, u, nm, opaque)
                    if not rhs or _flat_key(rhs[-1]) != _flat_key(line):
                        rhs.append(line)
            if not rhs or _flat_key(rhs[-1]) != _flat_key(final):
                rhs.append(final)
            rows.append(Row(_label(d, "d" + slug(u), "d" + slug(p)),
                            partial_symbol(nm, u, 0, p), tuple(rhs)))
        title = f"parameter {p}"
        if steps:  # one align per equation: a page may break between them
            blocks.extend(Block(title, (r,), param=p) for r in rows)
        else:
            blocks.append(Block(title, tuple(rows), param=p))
    intro = ""
    if steps:
        intro = ("Each derivative is first written by the chain rule through the cell with the "
                 "gate derivatives kept whole, then with them substituted, and finally collected.")
    return Section("forward", MODE_TITLES["forward"], tuple(blocks), intro)


def reverse_section(d: Derivation, nm: dict[str, str], params: Sequence[str]) -> Section:
    """Reverse mode of one step (seed 002), the rows of
    :func:`derive.printing.latex.reverse_entries`: for a cell with a readout first the readout's
    adjoints and the derivative of the loss it passes to the cell, then node adjoints, carried state
    adjoints, and dL/dA for the chosen parameters (the readout's among them: dL/dV, dL/db_y)."""
    r = d.reverse
    ro = readout_reverse(d)
    adj = tuple(Row(_label(d, "bar", slug(u)), adjoint_symbol(nm, u), (sum_items(s, nm),))
                for u, s in r.assignments)
    carry = tuple(Row(_label(d, "delta", slug(v)), rf"\delta {node_symbol(nm, v, 1)}",
                      (sum_items(s, nm),)) for v, s in r.carries.items())
    grads = []
    all_grads = {**r.grads, **(ro.grads if ro is not None else {})}
    for p in params:
        if p not in all_grads:
            continue
        s = all_grads[p]
        its = sum_items(s, nm)
        rhs = (Item(1, r"\sum_t", its),) if len(s) > 1 else \
            (Item(1, r"\sum_t " + render_flat(its, LATEX_FLAT)),)
        grads.append(Row(_label(d, "dL", "d" + slug(p)),
                         rf"\frac{{\partial L}}{{\partial {nm.get(p, p)}}}", (rhs,)))
    hs = node_symbol(nm, d.output)
    blocks = []
    if ro is not None:
        outs = ", ".join(f"${node_symbol(nm, n)}$" for n in d.spec.readout_nodes)
        rows = [Row(_label(d, "bar", slug(u)), adjoint_symbol(nm, u), (sum_items(s, nm),))
                for u, s in ro.assignments]
        rows.append(Row(_label(d, "dl", "d" + slug(d.output)), loss_symbol(nm, d.output),
                        (sum_items(ro.output, nm),)))
        blocks.append(Block(
            "readout", tuple(rows),
            rf"One step of backpropagation through time. The loss at step $t$, $\ell_t$, is a "
            rf"function of the readout {outs} (and $L = \sum_t \ell_t$); backpropagating "
            rf"through the readout gives $\partial \ell_t/\partial {hs}$, the derivative the "
            rf"cell's recursion starts from:"))
        text_adj = (r"Then $\delta u_t$ is the adjoint of a state carried back from step $t+1$ "
                    r"and $\bar v_t$ the adjoint of a node, pre-activations $\hat v_t$ "
                    r"included:")
    else:
        text_adj = (rf"One step of backpropagation through time: $\partial \ell_t/"
                    rf"\partial {hs}$ is the derivative of the loss at step "
                    rf"$t$, $\delta u_t$ the adjoint of a state carried back from step $t+1$ and "
                    rf"$\bar v_t$ the adjoint of a node, pre-activations $\hat v_t$ included"
                    rf" (the loss is $L = \sum_t \ell_t$ of the outputs "
                    rf"${nm.get(d.output, d.output)}_t$).")
    blocks += [Block("adjoints", adj, text_adj),
               Block("carried to step t-1", carry, "The adjoints carried to step $t-1$ are")]
    if grads:
        blocks.append(Block("parameter gradients", tuple(grads),
                            "and the gradients sum the contributions of every step:"))
    return Section("reverse", MODE_TITLES["reverse"], tuple(blocks))


def flow_section(d: Derivation, nm: dict[str, str]) -> Section:
    """Gradient flow: the one-step state Jacobian blocks d u_t / d v_{t-1}
    (:func:`derive.printing.latex.jacobian_entries`), then the results of
    :func:`derive.tools.flow.latex_blocks` in its groups (the product of the Jacobians, the
    carousel, the norm bounds, the sum over paths, seed 000's approximation) with their titles and
    sentences, less the Jacobian blocks shown already. Labels are ``eq:<cell>:flow-<group>``, then
    ``-2``, ``-3``, ... in the group; a row's right-hand side is read into layout items by
    :func:`math_items`."""
    from ..tools import flow

    rows = tuple(Row(_label(d, "J", slug(u), slug(v)),
                     rf"\frac{{\partial {node_symbol(nm, u)}}}{{\partial {node_symbol(nm, v, 1)}}}",
                     (sum_items(d.jacobian[u][v], nm),))
                 for u in d.states for v in d.states)
    text = ("Gradients flow from step $t$ back to step $t-1$ through the one-step Jacobian of the "
            "states; its products over time are what vanish or explode.")
    blocks = [Block("state Jacobian", rows, text)]
    shown = {(r.lhs, render_flat(r.rhs[0], LATEX_FLAT)) for r in rows}
    for group in flow.latex_blocks(d, nm):
        key = re.sub(r"[^A-Za-z0-9]+", "-", group.key).strip("-")
        out: list[Row] = []
        for lhs, rhs in group.rows:
            if (lhs, rhs) in shown:
                continue
            steps = math_items(rhs)
            label = _label(d, "flow", key) + (f"-{len(out) + 1}" if out else "")
            out.append(Row(label, lhs, tuple(items for _, items in steps),
                           tuple(rel for rel, _ in steps), inline=True))
        if out:
            blocks.append(Block(group.title, tuple(out), group.text, heading=True))
    return Section("flow", MODE_TITLES["flow"], tuple(blocks))


def sections(d: Derivation, modes: Sequence[str] = MODES, params: Sequence[str] | None = None,
             names: dict[str, str] | None = None, steps: bool = False) -> list[Section]:
    """The model of the requested modes, in the order given. ``params`` (default: all of the
    cell's) selects the forward equations and the reverse gradients; ``names`` is the notation's
    ``names`` mapping (default: the cell's own)."""
    nm = dict(names) if names is not None else dict(d.spec.latex_names)
    ps = check_params(d, params)
    out = []
    for m in check_modes(modes):
        if m == "forward":
            out.append(forward_section(d, nm, ps, steps))
        elif m == "reverse":
            out.append(reverse_section(d, nm, ps))
        else:
            out.append(flow_section(d, nm))
    return out


def check_modes(modes: Sequence[str]) -> list[str]:
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown mode {bad[0] if bad else '(none)'!r}; expected one of "
                         f"{', '.join(MODES)}")
    return list(dict.fromkeys(modes))


def check_params(d: Derivation, params: Sequence[str] | None) -> list[str]:
    """The parameters to print (default: all, the readout's last); the readout's appear in the
    reverse mode only (they do not act on the states)."""
    valid = [*d.params, *d.spec.readout_params]
    if params is None:
        return valid
    bad = [p for p in params if p not in valid]
    if bad:
        raise ValueError(f"unknown parameter {bad[0]!r} for cell {d.name!r}; expected one of "
                         f"{', '.join(valid)}")
    return list(dict.fromkeys(params))


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Style:
    """How a layout prints: text conversion, widths, operators and bracket glyphs."""

    measure: Callable[[str], float]
    convert: Callable[[str], str] = field(default=lambda s: s)
    opener: Callable[[int, bool], str] = field(default=lambda h, f: "(")
    closer: Callable[[int, bool], str] = field(default=lambda h, f: ")")
    plus: str = " + "
    minus: str = " - "


_SIZES = (r"\bigl", r"\Bigl", r"\biggl", r"\Biggl")


def _latex_open(height: int, frac: bool) -> str:
    return _SIZES[min(3, height - 1 + (2 if frac else 0))] + "("


def _latex_close(height: int, frac: bool) -> str:
    return _SIZES[min(3, height - 1 + (2 if frac else 0))][:-1] + "r)"


LATEX = Style(tex_width, opener=_latex_open, closer=_latex_close)
"""Paper style: brackets sized by nesting (\\bigl ... \\Biggl), larger around fractions."""
LATEX_FLAT = Style(tex_width, opener=lambda h, f: r"\left(", closer=lambda h, f: r"\right)")
"""The style of :mod:`derive.printing.latex` (\\left( ... \\right)), for one-line output and
checks."""


def _chain(it: Item) -> list[Item]:
    """A summand and its further bracketed factors (``then``)."""
    out = [it]
    while out[-1].then is not None:
        out.append(out[-1].then)  # type: ignore[arg-type]
    return out


_TALL = (r"\frac", r"\prod", r"\sum")


def _shape(items: tuple[Item, ...]) -> tuple[int, bool]:
    """(nesting height, holds something tall: a fraction, a \\sum or \\prod) of a bracketed
    sum."""
    height, frac = 1, False
    for top in items:
        for it in _chain(top):
            frac = frac or any(t in it.head or t in it.tail for t in _TALL)
            if it.inner:
                h, f = _shape(it.inner)
                height, frac = max(height, h + 1), frac or f
    return height, frac


def _op(it: Item, first: bool, st: Style) -> str:
    if first:
        return "-" if it.sign < 0 else ""
    return st.minus if it.sign < 0 else st.plus


def _lead(it: Item, st: Style) -> str:
    """Coefficient and head of a summand, as printed before its bracket."""
    parts = [st.convert(x) for x in (it.coef, it.head) if x]
    return " ".join(parts)


def _body(it: Item, st: Style) -> str:
    lead = _lead(it, st)
    if not it.inner:
        out = lead + (" " + st.convert(it.tail) if it.tail else "")
    else:
        h, f = _shape(it.inner)
        out = (lead + " " if lead else "") + st.opener(h, f) + render_flat(it.inner, st) + \
            st.closer(h, f) + (" " + st.convert(it.tail) if it.tail else "")
    return out + (" " + _body(it.then, st) if it.then is not None else "")


def render_flat(items: tuple[Item, ...], st: Style) -> str:
    """One-line text of a signed sum."""
    return "".join(_op(it, k == 0, st) + _body(it, st) for k, it in enumerate(items)) or \
        st.convert("0")


def render_steps(row: Row, st: Style) -> str:
    """One-line text of a row's right-hand sides with their relations: ``a = b``, ``\\le a``,
    ``a \\le b`` (the first relation is left out when it is '=')."""
    out = []
    for j, (rel, rhs) in enumerate(zip(row.relations, row.rhs, strict=True)):
        body = render_flat(rhs, st)
        out.append(body if j == 0 and rel == "=" else f"{st.convert(rel)} {body}")
    return " ".join(out)


_GLUE_BEFORE = {"+", "-", "=", r"\odot", r"\times", r"\cdot", r"\quad", r"\qquad", "⊙", "×",
                "·", "−", "≤", "≈", *_RELATIONS}
_GLUE_AFTER = {"+", "-", "=", r"\odot", r"\times", r"\cdot", "⊙", "×", "·", "−", "≤", "≈",
               *_RELATIONS}


def _split_top(text: str) -> list[str]:
    """Split a product at the spaces between its factors (outside every group, see
    :func:`_words`). An operator or relation stays with the words on both sides, \\quad with the
    word before it; \\text{...}, a \\sum or \\prod and a numeric coefficient with the word after
    it, so that a remark such as ``\\quad \\text{when } W = 0 \\text{ or } v = 0`` breaks only
    before its \\text and no line ends in a \\prod or a \\tfrac{1}{4}."""
    out: list[str] = []
    glue = False
    for w in _words(text):
        if out and (glue or w in _GLUE_BEFORE):
            out[-1] += " " + w
        else:
            out.append(w)
        glue = w in _GLUE_AFTER or w.startswith((r"\text", *_LIMITS)) or \
            re.fullmatch(r"\d+|\\tfrac\{\d+\}\{\d+\}", w) is not None
    return out


def layout(items: tuple[Item, ...], st: Style, first: float,
           cont: Callable[[int], float]) -> list[tuple[int, str]]:
    """Break a signed sum into lines ``(depth, text)``: the first line at most ``first`` wide, a
    continuation line that starts inside ``depth`` brackets at most ``cont(depth)``.

    Greedy, breaking before a '+' or '-': a summand that does not fit moves to the next line
    whole; a bracketed summand too wide for a line of its own opens its bracket and breaks
    inside it (the closing bracket and what follows are kept on the last line; a further
    bracketed factor, :attr:`Item.then`, may break in its turn). A single product wider than a
    line breaks between its factors.
    """
    lines: list[list] = [[0, "", 0.0, False]]  # depth, text, width, ends in an open bracket

    def room() -> float:
        return first if len(lines) == 1 else cont(lines[-1][0])

    def used() -> float:
        return lines[-1][2]

    def put(text: str, opens: bool = False) -> None:
        lines[-1][1] += text
        lines[-1][2] += st.measure(text)
        lines[-1][3] = opens

    def blank() -> bool:
        """Nothing gained by a new line: the line is empty or just opened a bracket."""
        return not lines[-1][1].strip() or lines[-1][3]

    def newline(depth: int) -> None:
        lines.append([depth, "", 0.0, False])

    def first_chunk(seq: tuple[Item, ...]) -> float:
        """Width of the least that must follow an opening bracket on its line."""
        it = seq[0]
        if not it.inner:
            return st.measure(_op(it, True, st) + _body(it, st))
        lead = _lead(it, st)
        h, f = _shape(it.inner)
        return st.measure(_op(it, True, st) + (lead + " " if lead else "") + st.opener(h, f)) \
            + first_chunk(it.inner)

    def words_of(body: str, depth: int) -> list[str]:
        """The factors of a product; a group of them (see :func:`_split_top`) that a line
        cannot hold falls apart into its words."""
        out: list[str] = []
        for chunk in _split_top(body):
            out += [chunk] if st.measure(chunk) <= cont(depth) else _words(chunk)
        return out

    def place(seq: tuple[Item, ...], depth: int, reserve: float, glue: str = "") -> None:
        for k, it in enumerate(seq):
            res = reserve if k == len(seq) - 1 else 0.0
            op, body = (glue if k == 0 else "") + _op(it, k == 0, st), _body(it, st)
            w = st.measure(op + body)
            if used() + w + res <= room():
                put(op + body)
                continue
            if not it.inner:
                if not blank():
                    newline(depth)
                    op = op.lstrip()
                if used() + st.measure(op + body) + res <= room():
                    put(op + body)
                    continue
                # wider than a line: break the product between its factors
                words = words_of(body, depth)
                put(op + words[0])
                for word in words[1:]:
                    if used() + st.measure(" " + word) + res > room():
                        newline(depth)
                        put(word)
                    else:
                        put(" " + word)
                continue
            if not blank() and w + res <= cont(depth):
                newline(depth)
                put(op.lstrip() + body)
                continue
            h, f = _shape(it.inner)
            lead = _lead(it, st)
            opening = op + (lead + " " if lead else "") + st.opener(h, f)
            closing = st.closer(h, f) + (" " + st.convert(it.tail) if it.tail else "")
            need = st.measure(opening) + first_chunk(it.inner)
            if not blank() and used() + need > room():
                newline(depth)
                opening = opening.lstrip()
                need = st.measure(opening) + first_chunk(it.inner)
            # when even a fresh line cannot hold the bracket's first summand, the bracket may
            # end the line
            put(opening, opens=used() + need <= room())
            # a further bracketed factor may break in its turn: only the closing is reserved
            place(it.inner, depth + 1, st.measure(closing) + (res if it.then is None else 0.0))
            put(closing)
            if it.then is not None:
                place((it.then,), depth, res, glue=" ")

    place(items, 0, 0.0)
    return [(dep, text.strip()) for dep, text, _, _ in lines if text.strip()]


def _quads(depth: int) -> str:
    n = depth + 1
    return r"\qquad" * (n // 2) + r"\quad" * (n % 2)


WIDE_LHS = 0.25
"""A left-hand side wider than this share of the line (flow's norms of long products) may be set
on a line of its own, starting where the column of left-hand sides starts, with its relation on
the next line at the alignment point; :func:`latex_block_lines` decides which by the fewest
lines."""
MIN_INDENT = 20.0
"""At least this much (2em) between the start of a left-hand side set on its own line and its
relation, and between that start and a continuation of the left-hand side."""


def _lhs_lines(lhs: str, first: float, cont: float) -> list[str]:
    """A left-hand side set on lines of its own: whole when it fits ``first`` pt, else a norm
    ``\\left\\|...\\right\\|_2`` of a product broken between its factors, every piece in
    ``\\left\\| ... \\right.`` / ``\\left. ... \\right\\|_2`` with a \\vphantom of the whole
    product so that the bars of all pieces have one size (continuations at most ``cont`` pt)."""
    if tex_width(lhs) <= first:
        return [lhs]
    m = re.fullmatch(r"\\left\\\|(.*)\\right\\\|(_\{[^{}]*\}|_\w)?", lhs, re.S)
    depth = 0
    for tok in _WORD.findall(m.group(1) if m else ""):
        depth += (tok in _OPEN) - (tok in _CLOSE)
        if depth < 0:
            break
    if m is None or depth != 0:
        return [lhs]
    body, script = m.group(1), m.group(2) or ""
    pieces: list[list[str]] = [[]]
    for w in _split_top(body):
        trial = " ".join([*pieces[-1], w])
        if pieces[-1] and tex_width(rf"\left\|{trial}\right\|{script}") > \
                (first if len(pieces) == 1 else cont):
            pieces.append([w])
        else:
            pieces[-1].append(w)
    out = []
    for i, piece in enumerate(pieces):
        left = r"\left\|" if i == 0 else r"\left."
        right = r"\right\|" + script if i == len(pieces) - 1 else r"\right."
        out.append(rf"{left}\vphantom{{{body}}} {' '.join(piece)}{right}")
    return out


def _row_lines(row: Row, col: float, big: bool, budget: float) -> list[str]:
    """The align lines of one row with the column of left-hand sides ``col`` pt wide; ``big``:
    the left-hand side on lines of its own (see :func:`latex_block_lines`)."""
    room = budget - col

    def cont(dep: int) -> float:
        return room - QUAD * (dep + 1) - 4.0

    lines: list[str] = []
    if big:
        back = f"{col - MIN_INDENT:.2f}pt"
        for i, piece in enumerate(_lhs_lines(row.lhs, budget, budget - MIN_INDENT)):
            lines.append(rf"\hspace{{{col:.2f}pt}} &\hspace{{-{col:.2f}pt}} {piece}" if i == 0
                         else rf"\hspace{{{col:.2f}pt}} &\hspace{{-{back}}} {piece}")
    last: tuple[str, float] | None = None  # text and room of the last line of the rhs
    for j, (rel, rhs) in enumerate(zip(row.relations, row.rhs, strict=True)):
        rel_w = tex_width("{}" + rel + "{}")
        if j and row.inline and last is not None:
            more = f"{last[0]} {rel} {render_flat(rhs, LATEX)}"
            if tex_width(more) <= last[1]:
                lines[-1] = lines[-1][:len(lines[-1]) - len(last[0])] + more
                last = (more, last[1])
                continue
        broken = layout(rhs, LATEX, room - rel_w, cont)
        if j:  # a page may break between the steps of a derivation
            lines[-1] += r" \displaybreak[0]"
        for i, (dep, text) in enumerate(broken):
            if i == 0:
                lines.append((row.lhs + " " if j == 0 and not big else "") + f"&{rel} {text}")
                last = (text, room - rel_w)
            else:
                lines.append("&" + _quads(dep) + " " + text)
                last = (text, cont(dep))
    return lines


def latex_block_lines(block: Block, width: float = TEXTWIDTH) -> list[tuple[str, list[str]]]:
    """(label, align lines) of every row of a block, broken to fit ``width`` pt with room for
    the equation number. The first line is ``lhs &= ...`` (or its relation: ``&\\le ...``), a
    further step ``&= ...`` (with :attr:`Row.inline`, on the same line when it fits) and a
    continuation ``&\\quad + ...`` (deeper inside brackets: \\qquad, ...).

    A left-hand side wider than :data:`WIDE_LHS` of the line may be set on a line of its own
    (broken, if need be, by :func:`_lhs_lines`; a continuation 2em in), moved left to where the
    column of left-hand sides starts as mathtools' \\MoveEqLeft does (\\hspace in the first
    column keeps that column at least as wide as the move), its relation on the next line. Which
    ones: the choice that takes the fewest lines, the fewest left-hand sides moved on a tie."""
    budget = (width - TAG_ROOM) * SAFETY
    widths = [tex_width(r.lhs) for r in block.rows]
    best: tuple[int, int] | None = None
    lines: list[list[str]] = []
    for limit in sorted({w for w in widths if w > WIDE_LHS * budget} | {math.inf}, reverse=True):
        wide = [w > limit for w in widths]
        col = max((w for w, big in zip(widths, wide, strict=True) if not big), default=0.0)
        if any(wide):
            col = max(col, MIN_INDENT)
        cand = [_row_lines(r, col, big, budget) for r, big in zip(block.rows, wide, strict=True)]
        cost = (sum(map(len, cand)), sum(wide))
        if best is None or cost < best:
            best, lines = cost, cand
    return [(r.label, ls) for r, ls in zip(block.rows, lines, strict=True)]


# ----------------------------------------------------------------------------- rendering


def _tex_text(s: str) -> str:
    """Escape plain text for LaTeX."""
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
           "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
           "^": r"\textasciicircum{}"}
    return "".join(rep.get(c, c) for c in s)


_ENV = None


def _env():
    global _ENV
    if _ENV is None:
        import jinja2

        from ..resources import TEMPLATES

        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES / "latex")),
            block_start_string="<%", block_end_string="%>",
            variable_start_string="<<", variable_end_string=">>",
            comment_start_string="<#", comment_end_string="#>",
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined, autoescape=False)
    return _ENV


def command_line(cell: str, modes: Sequence[str], params: Sequence[str] | None,
                 notation: str, steps: bool, standalone: bool, width: float) -> str:
    """The ``derive latex`` command that reproduces a document."""
    parts = ["derive", "latex", cell]
    if list(modes) != list(MODES):
        parts += [f"--mode {m}" for m in modes]
    parts += [f"--param {p}" for p in params or ()]
    if notation != "native":
        parts.append(f"--notation {notation}")
    if steps:
        parts.append("--steps")
    if standalone:
        parts.append("--standalone")
    if width != TEXTWIDTH:
        parts.append(f"--width {width:g}")
    return " ".join(parts)


def document(cell: str | Derivation, *, modes: Sequence[str] = MODES,
             params: Sequence[str] | None = None, notation: str | Notation | None = None,
             steps: bool = False, standalone: bool = False, width: float = TEXTWIDTH) -> str:
    """The LaTeX of a cell's derivation: by default a fragment of numbered ``align``
    environments to \\input into a paper (needs amsmath), with ``standalone`` a complete article.

    ``modes`` in {forward, reverse, flow}; ``params`` restricts the forward equations and the
    reverse gradients; ``notation`` is a profile name, a TOML path or a
    :class:`~derive.printing.notation.Notation` (default ``native``); ``steps`` writes the
    chain-rule lines before the collected form (seed 001 eqs 14-25); ``width`` is the text width in
    pt the equations are broken for (345 = article at 10pt). Raises ``ValueError`` naming the valid
    choices for an unknown mode or parameter, :class:`~derive.printing.notation.NotationError` for a
    bad notation."""
    from ..calculus.derivation import Derivation, derive
    from ..printing import notation as notation_mod

    d = cell if isinstance(cell, Derivation) else derive(cell)
    note = notation_mod.load(notation)
    nm = note.names(d.spec)
    modes = check_modes(modes)
    ps = check_params(d, params)
    secs = sections(d, modes, ps, nm, steps)
    if standalone:
        secs = [cell_section(d, nm), *secs]
    ctx = {
        "cell": d.name,
        "title": _tex_text(d.spec.title),
        "cell_tex": _tex_text(d.name),
        "notation": note.name,
        "notation_tex": _tex_text(note.name),
        "command": command_line(d.name, modes, params, note.name, steps, standalone, width),
        "modes": modes,
        "sections": [_section_ctx(d.name, s, width) for s in secs],
    }
    template = "standalone.tex.j2" if standalone else "fragment.tex.j2"
    return _env().get_template(template).render(**ctx)


def _section_ctx(cell: str, s: Section, width: float) -> dict:
    return {
        "cell": cell, "mode": s.mode, "title": s.title, "text": s.text,
        "blocks": [{"title": b.title, "text": b.text,
                    "heading": re.sub(r"(\d)-(\d)", r"\1--\2", _tex_text(b.title))
                    if b.heading else "",
                    "rows": [{"label": lab, "lines": lines}
                             for lab, lines in latex_block_lines(b, width)]}
                   for b in s.blocks],
    }


def generated_files(cell: str) -> dict[str, str]:
    """The LaTeX files ``derive generate`` checks in for a cell (paths relative to
    ``generated/``): one standalone article with the forward, reverse and flow sections in the
    cell's own notation."""
    return {f"latex/{cell}.tex": document(cell, standalone=True)}
