"""Reading hand derivations for ``derive check``: display math, equation chains, and the d(x)
notation of seed 001 eqs (7)-(25) parsed into an AST whose symbols are resolved against one cell
and one notation.

Layers (:mod:`derive.check` judges what this module reads):

1. :func:`find_blocks`: the display math of a ``.tex`` file (``equation``, ``align``, ``gather``,
   ``multline``, ``eqnarray`` and their starred forms, ``\\[ \\]``, ``$$ $$``) or of Markdown
   (``$$ $$`` and ``\\[ \\]`` outside code fences). Inline ``$...$`` is prose and is ignored.
2. :func:`chains`: every block is tokenised (each token keeps its offset in the file), spacing
   and sizing commands are dropped (``\\quad``, ``\\left``/``\\right``, ``\\bigl``, ``&``,
   ``\\notag``; ``\\left.``/``\\right.`` vanish, so a bracket may open on one row and close on
   another), and the rows (``\\\\``) are grouped into equation *chains*
   ``lhs = rhs_1 = rhs_2 ...``: a row with something before its first top-level ``=`` starts a
   chain, a row starting with ``=`` adds a right-hand side, a row without ``=`` continues the last
   right-hand side (a row without ``=`` before any chain is a heading, e.g. seed 001's
   ``\\mathbf{3.4} ...``, and is skipped). The other relations (``\\le``, ``\\approx``, ``<``,
   ``\\sim``, ...) split rows like ``=`` and are recorded per right-hand side
   (:attr:`Chain.rels`); after a row that ends a numbered equation (``\\label``/``\\tag``), a
   row without a relation is the left-hand side of the next row (a long left-hand side set on
   its own row); a top-level ``\\text{when ...}`` (``if``, ``where``, ``for``, ...) starts a
   side condition whose ``=`` are prose. ``\\hspace{..}``, ``\\phantom{..}`` and the like are
   dropped with their argument, and a matrix environment (``pmatrix``, ...) is not split into
   rows. Equation numbers: ``\\tag{N}``, and seed 001's trailing ``\\quad (N)``;
   ``\\label{..}`` is kept.
2b. :func:`skip_reason`: why a line is not a one-step equality of the d(x) calculus and is not
   judged (a bound, an approximation, a statement over several steps, ...), or None.
3. :class:`Parser`: recursive descent over the tokens of one side. Matrix level: signed sums of
   products of ``d(v)``, ``d_2(v)``, weight matrices (``^\\top``), ``I``,
   ``\\frac{\\partial u}{\\partial A}`` (any numerator: a symbol, ``(f_t \\odot s_{t-1} + ...)``,
   ``W_g h_{t-1}``, ``L_t``, ``\\ell_t``), brackets, coefficients, adjoints ``\\bar{u}_t``,
   ``\\delta u_t``, the blocks ``M_t``, ``N_t``, ``V_t`` and ``\\sum_t``. Vector level (inside
   ``d(.)``, ``\\sigma(.)``, in numerators and in a cell's own equations): sums, ``\\odot`` (or
   juxtaposition of two vectors), ``P v`` matrix-vector products, activations (``\\sigma``,
   ``\\tanh``, ``\\operatorname{ReLU}``, ...: every LaTeX name of
   :data:`derive.spec.activations.ACTIVATIONS` when the line is read, whatever its number of tokens,
   :func:`match_activation`), their primes ``\\sigma'(z)`` and gate primes ``o'_t`` /
   ``\\tilde{s}_t'``, pre-activations ``\\hat{o}_t``, numbers.

Symbols are read as LaTeX atoms (base, subscript, superscript, primes), so ``W_o`` and ``W_{o}``,
``\\tilde{s}'_t`` and ``\\tilde{s}_t'``, ``\\tilde s`` and ``\\tilde{s}`` are the same. A
:class:`Lexicon` inverts a notation's ``names`` map (spec name -> LaTeX). Seed 001's generic
symbols resolve through a *binding*: ``A`` (and ``A_{p \\neq g}``) is any parameter, ``g_t`` any
gate (where the cell has no symbol ``g``), and ``X_g`` the unique parameter of gate g's equation
whose LaTeX base letter is X (``W_g``, ``U_g``, ``b_g``); :mod:`derive.check` enumerates the
bindings. Every error is a :class:`ParseError` holding the offending token and its offset.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..spec import (
    HAT,
    INPUT,
    Add,
    Call,
    CellSpec,
    Const,
    DerivAt,
    Expr,
    MatVec,
    Mul,
    Ref,
    params_in,
)
from ..spec.activations import ACTIVATIONS

# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Tok:
    """One token: ``kind`` in cmd | letter | num | char | row; ``pos`` is its offset in the file."""

    kind: str
    text: str
    pos: int

    @property
    def end(self) -> int:
        return self.pos + len(self.text)


_TOKEN = re.compile(r"(?P<ws>\s+)|(?P<row>\\\\)|(?P<cmd>\\[A-Za-z]+)|(?P<esc>\\[^A-Za-z\s])"
                    r"|(?P<space>\\\s)|(?P<num>\d+(?:\.\d+)?)|(?P<letter>[A-Za-z])|(?P<char>.)",
                    re.S)
_SPACING = {r"\quad", r"\qquad", r"\displaystyle", r"\textstyle", r"\notag", r"\nonumber",
            r"\medspace", r"\thinspace", r"\thickspace", r"\negthinspace", r"\hfill",
            r"\displaybreak", r"\allowdisplaybreaks", r"\pagebreak", r"\nopagebreak",
            r"\linebreak", r"\nolinebreak", r"\strut", r"\mathstrut"}
_ESC_SPACING = {r"\,", r"\;", r"\:", r"\!", r"\>"}
# spacing commands dropped together with their {argument} (\hspace{-117.45pt}, \phantom{=})
_SPACING_ARG = {r"\hspace", r"\hskip", r"\vspace", r"\kern", r"\mkern", r"\mskip",
                r"\phantom", r"\hphantom", r"\vphantom"}
_SIZERS = {r"\left", r"\right", r"\middle", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl",
           r"\bigr", r"\Bigl", r"\Bigr", r"\biggl", r"\biggr", r"\Biggl", r"\Biggr", r"\bigm",
           r"\Bigm"}
ACCENTS = {r"\tilde", r"\hat", r"\bar", r"\vec", r"\dot", r"\ddot", r"\check", r"\breve",
           r"\widetilde", r"\widehat", r"\overline", r"\mathbf", r"\mathit", r"\boldsymbol",
           r"\mathcal", r"\mathsf", r"\mathtt", r"\bm", r"\mathrm", r"\underline", r"\mathbb"}
_OPERATOR_CMDS = {r"\frac", r"\dfrac", r"\tfrac", r"\partial", r"\odot", r"\circ", r"\cdot",
                  r"\times", r"\sum", r"\delta", r"\top", r"\prime"}
_TRANSPOSE = {r"\top", "T", r"\intercal", r"\mathsf{T}", r"\mathrm{T}", r"\mathsf T"}


def tokenize(text: str, offset: int = 0) -> list[Tok]:
    """Tokens of a LaTeX math string, whitespace dropped; ``offset`` is added to positions."""
    out: list[Tok] = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "char"
        if kind in ("ws", "space"):
            continue
        if kind == "esc":
            kind = "cmd"
        out.append(Tok(kind, m.group(), m.start() + offset))
    return out


def _canon(toks: list[Tok]) -> str:
    """Canonical text of a token run: single-token groups unwrapped, accents braced, no spaces
    (``W_{o}`` -> ``W_o``, ``\\tilde s`` -> ``\\tilde{s}``)."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "{":
            j = _match(toks, i)
            inner = _canon(toks[i + 1:j])
            out.append(inner if _single(toks[i + 1:j]) else "{" + inner + "}")
            i = j + 1
            continue
        if t.kind == "cmd" and t.text in ACCENTS and i + 1 < len(toks):
            if toks[i + 1].text == "{":
                j = _match(toks, i + 1)
                arg = toks[i + 2:j]
                i = j + 1
            else:
                arg = [toks[i + 1]]
                i += 2
            out.append(t.text + "{" + _canon(arg) + "}")
            continue
        out.append(t.text)
        if t.kind == "cmd" and i + 1 < len(toks) and toks[i + 1].kind == "letter":
            out.append(" ")
        i += 1
    return "".join(out)


def _single(toks: list[Tok]) -> bool:
    return len(toks) == 1 or (len(toks) >= 2 and toks[0].kind == "cmd" and toks[0].text in ACCENTS
                              and (len(toks) == 2 or (toks[1].text == "{"
                                                      and _match(toks, 1) == len(toks) - 1)))


def _match(toks: list[Tok], i: int) -> int:
    """Index of the '}' closing the '{' at i (len(toks)-1 when unbalanced)."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "{":
            depth += 1
        elif toks[j].text == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


# ----------------------------------------------------------------------------- activations


@functools.lru_cache(maxsize=16)
def _activation_index(registry: tuple[tuple[str, str], ...]
                      ) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First token of a LaTeX activation name -> (its tokens, the activation), longest first."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for name, latex in registry:
        texts = tuple(t.text for t in _strip(tokenize(latex)))  # as a row is read: no spacing
        if texts:
            index.setdefault(texts[0], []).append((texts, name))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))
    return index


def match_activation(toks: list[Tok], i: int) -> tuple[str, int] | None:
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


# ----------------------------------------------------------------------------- errors


class ParseError(Exception):
    """A side of an equation cannot be read. ``kind``: syntax | symbol | unsupported."""

    def __init__(self, message: str, tok: Tok | None, kind: str = "syntax"):
        super().__init__(message)
        self.message = message
        self.tok = tok
        self.kind = kind


# ----------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """One display-math block: its content and the content's offset in the file."""

    text: str
    start: int
    env: str


_ENVS = ("equation", "align", "gather", "multline", "eqnarray", "flalign", "displaymath",
         "alignat")
_OPEN = re.compile(r"\$\$|\\\[|\\begin\{(?P<env>(?:" + "|".join(_ENVS) + r")\*?)\}")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_COMMENT = re.compile(r"(?<!\\)%[^\n]*")


def _blank(text: str, spans: Iterator[re.Match] | list[re.Match]) -> str:
    chars = list(text)
    for m in spans:
        for k in range(m.start(), m.end()):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)


def find_blocks(text: str, fmt: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """Display-math blocks of a file (``fmt``: tex | md) and problems found while scanning them
    ((offset, message), e.g. an unclosed ``$$``). Offsets are preserved: comments and code
    fences are blanked, not removed."""
    scan = _blank(text, _FENCE.finditer(text)) if fmt == "md" else text
    if fmt == "tex":
        scan = _blank(scan, _COMMENT.finditer(scan))
    blocks: list[Block] = []
    problems: list[tuple[int, str]] = []
    pos = 0
    while True:
        m = _OPEN.search(scan, pos)
        if not m:
            break
        if m.group() == "$$":
            close, env = "$$", "$$"
        elif m.group() == r"\[":
            close, env = r"\]", r"\[ \]"
        else:
            env = m.group("env")
            close = r"\end{" + env + "}"
        end = scan.find(close, m.end())
        if end < 0:
            problems.append((m.start(), f"{m.group()!s} is never closed (expected {close})"))
            break
        blocks.append(Block(scan[m.end():end], m.end(), env))
        pos = end + len(close)
    return blocks, problems


# ----------------------------------------------------------------------------- chains


@dataclass
class Chain:
    """One equation: ``lhs = rhs[0] = rhs[1] ...`` as token lists."""

    lhs: list[Tok]
    rhs: list[list[Tok]]
    block: int
    tag: str | None = None
    label: str | None = None
    restricted: bool = False  # the block mentions A_{p \neq g}: A ranges over other gates' params
    anchor: Tok | None = None  # the first '=' (where an empty side is reported)
    rels: list[str] = field(default_factory=list)  # the relation before each rhs: '=', '\le', ...

    @property
    def pos(self) -> int:
        return self.lhs[0].pos if self.lhs else (self.rhs[0][0].pos if self.rhs and self.rhs[0]
                                                 else 0)


_TAG = re.compile(r"\\tag\*?\{(?P<v>[^{}]*)\}")
_LABEL = re.compile(r"\\label\{(?P<v>[^{}]*)\}")
_INNER_ENV = re.compile(r"\\(?:begin|end)\{(?:aligned|split|gathered|alignedat|multlined)\*?\}"
                        r"(?:\{[^{}]*\})?")


def chains(blocks: list[Block]) -> tuple[list[Chain], int, list[tuple[int, str]]]:
    """The equation chains of the blocks, how many rows were skipped as headings, and blocks
    that cannot be split ((offset, message): unbalanced braces)."""
    out: list[Chain] = []
    skipped = 0
    problems: list[tuple[int, str]] = []
    for bi, b in enumerate(blocks):
        tags = [(m.start() + b.start, m.group("v").strip()) for m in _TAG.finditer(b.text)]
        labels = [(m.start() + b.start, m.group("v").strip()) for m in _LABEL.finditer(b.text)]
        clean = _blank(b.text, [*_TAG.finditer(b.text), *_LABEL.finditer(b.text),
                                *_INNER_ENV.finditer(b.text)])
        toks = tokenize(clean, b.start)
        restricted = r"\neq" in b.text or r"\ne " in b.text
        bad = _unbalanced(toks)
        if bad is not None:
            problems.append((bad.pos, f"unbalanced {bad.text!r} in display math"))
            continue
        toks, qtags = _quad_tags(toks)
        tags.extend(qtags)
        ends = sorted(p for p, _ in [*tags, *labels])  # where numbered equations end
        block_chains: list[tuple[Chain, int, int]] = []  # chain, first pos, last pos
        cur: Chain | None = None
        pending: list[Tok] | None = None  # a left-hand side on a row of its own
        ended = False  # the previous row ended a numbered equation
        prev_sep = -1
        for row, sep in _rows(_strip(toks)):
            was_ended, ended = ended, any(prev_sep < p < sep for p in ends) or (
                ended and not row)
            prev_sep = sep
            if not row:
                continue
            cond = _condition(row)
            limit = len(row) if cond is None else cond
            eqs = [k for k in range(limit)
                   if row[k].text in RELATIONS and _depth(row, k) == 0]
            if not eqs:
                if cur is None or not cur.rhs or was_ended:
                    if pending is not None:
                        skipped += 1
                    pending = row
                    continue
                cur.rhs[-1].extend(row)
                block_chains[-1] = (cur, block_chains[-1][1], row[-1].pos)
                continue
            lhs = row[:eqs[0]]
            first = row[0].pos
            if pending is not None:
                if not lhs:
                    lhs, first = pending, pending[0].pos
                else:
                    skipped += 1
                pending = None
            parts = [row[a + 1:b] for a, b in zip(eqs, [*eqs[1:], len(row)], strict=True)]
            if lhs or cur is None:
                cur = Chain(lhs, [], bi, restricted=restricted, anchor=row[eqs[0]])
                block_chains.append((cur, first, row[-1].pos))
            else:
                block_chains[-1] = (cur, block_chains[-1][1], row[-1].pos)
            cur.rhs.extend(parts)
            cur.rels.extend(row[k].text for k in eqs)
        if pending is not None:
            skipped += 1
        for pos, v in tags:
            c = _owner(block_chains, pos)
            if c is not None and c.tag is None:
                c.tag = v
        for pos, v in labels:
            c = _owner(block_chains, pos)
            if c is not None and c.label is None:
                c.label = v
        for c, _, _ in block_chains:
            for part in c.rhs:  # trailing punctuation ends a sentence, not the math
                while part and part[-1].text in (",", ".", ";"):
                    part.pop()
        out.extend(c for c, _, _ in block_chains)
    return out, skipped, problems


RELATIONS = {"=", r"\le", r"\leq", r"\leqslant", r"\ge", r"\geq", r"\geqslant", "<", ">",
             r"\lt", r"\gt", r"\lesssim", r"\gtrsim", r"\ll", r"\gg", r"\approx", r"\sim",
             r"\simeq", r"\eqsim", r"\propto", r"\neq", r"\ne"}
_BOUNDS = {r"\le", r"\leq", r"\leqslant", r"\ge", r"\geq", r"\geqslant", "<", ">", r"\lt",
           r"\gt", r"\lesssim", r"\gtrsim"}
_APPROX = {r"\approx", r"\sim", r"\simeq", r"\eqsim"}
_TEXT = {r"\text", r"\textrm", r"\textnormal", r"\textit", r"\textup", r"\mbox"}
_CONDITION_WORDS = {"when", "whenever", "if", "iff", "where", "for", "provided", "unless", "with",
                    "assuming", "given"}


def _words(toks: list[Tok]) -> str:
    """The text of a token run with the file's word breaks (``\\text{when }`` -> 'when')."""
    out = ""
    for k, t in enumerate(toks):
        if k and t.pos > toks[k - 1].end:
            out += " "
        out += t.text
    return out


def _condition(row: list[Tok]) -> int | None:
    """Index of a top-level ``\\text{when ...}`` (``if``, ``where``, ...): a side condition,
    whose own '=' are prose, not relations of the row."""
    for k, t in enumerate(row):
        if t.text in _TEXT and k + 1 < len(row) and row[k + 1].text == "{" and \
                _depth(row, k) == 0 and match_activation(row, k) is None:
            words = _words(row[k + 2:_match(row, k + 1)]).split()
            if words and words[0].lower() in _CONDITION_WORDS:
                return k
    return None


def _unbalanced(toks: list[Tok]) -> Tok | None:
    """The first brace without its partner, if any."""
    stack: list[Tok] = []
    for t in toks:
        if t.text == "{":
            stack.append(t)
        elif t.text == "}":
            if not stack:
                return t
            stack.pop()
    return stack[0] if stack else None


def _owner(block_chains: list[tuple[Chain, int, int]], pos: int) -> Chain | None:
    """The chain a tag at ``pos`` belongs to: the last chain starting before it."""
    owner = None
    for c, first, _ in block_chains:
        if first <= pos:
            owner = c
    return owner if owner is not None else (block_chains[0][0] if block_chains else None)


def _depth(row: list[Tok], k: int) -> int:
    d = 0
    for t in row[:k]:
        d += {"{": 1, "}": -1}.get(t.text, 0)
    return d


def _quad_tags(toks: list[Tok]) -> tuple[list[Tok], list[tuple[int, str]]]:
    """Seed 001 numbers equations as ``\\quad (7)`` at the end of a row: take those as tags."""
    out: list[Tok] = []
    tags: list[tuple[int, str]] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if (t.text in (r"\quad", r"\qquad") and i + 3 < len(toks) and toks[i + 1].text == "("
                and toks[i + 2].kind == "num" and toks[i + 3].text == ")"
                and (i + 4 == len(toks) or toks[i + 4].kind == "row")):
            tags.append((t.pos, toks[i + 2].text))
            i += 4
            continue
        out.append(t)
        i += 1
    return out, tags


def _strip(toks: list[Tok]) -> list[Tok]:
    """Drop spacing, sizing and alignment tokens; ``\\left.`` and ``\\right.`` vanish."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text in _SPACING_ARG:
            i += 1
            if i < len(toks) and toks[i].text == "*":
                i += 1
            if i < len(toks) and toks[i].text == "{":
                i = _match(toks, i) + 1
            continue
        if t.text in _SPACING or t.text in _ESC_SPACING or t.text in ("&", "~"):
            i += 1
            if t.text in _SPACING and i + 2 < len(toks) and toks[i].text == "[" and \
                    toks[i + 2].text == "]":  # \displaybreak[1]
                i += 3
            continue
        if t.text in _SIZERS:
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            if nxt is not None and nxt.text == ".":
                i += 2
                continue
            if nxt is not None and nxt.text in (r"\{", r"\}", r"\lbrace", r"\rbrace"):
                i += 1
                continue
            i += 1
            continue
        out.append(t)
        i += 1
    return out


def _rows(toks: list[Tok]) -> list[tuple[list[Tok], int]]:
    """The rows (split at ``\\\\`` outside braces and outside a matrix environment) and the
    offset of the separator that ends each (a large number for the last)."""
    rows: list[tuple[list[Tok], int]] = []
    cur: list[Tok] = []
    depth = env = 0
    for t in toks:
        if t.text == "{":
            depth += 1
        elif t.text == "}":
            depth -= 1
        elif t.text == r"\begin":
            env += 1
        elif t.text == r"\end":
            env = max(env - 1, 0)
        if (t.kind == "row" or t.text == r"\cr") and depth <= 0 and env == 0:
            rows.append((cur, t.pos))
            cur = []
            continue
        cur.append(t)
    rows.append((cur, 1 << 62))
    return rows



# ----------------------------------------------------------------------------- lines not judged


_FRACS = {r"\frac", r"\dfrac", r"\tfrac"}
_NORMS = {r"\|", r"\Vert", r"\lVert", r"\rVert"}
_BARS = {"|", r"\vert", r"\rvert", r"\lvert"}
_ELLIPSES = {r"\ldots", r"\cdots", r"\dots", r"\vdots", r"\ddots", r"\dotsb", r"\dotsc",
             r"\dotsm", r"\dotsi", r"\dotso"}
_MATRICES = {"pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "matrix", "smallmatrix",
             "array", "cases"}


def skip_reason(ch: Chain, k: int) -> str | None:
    """Why line ``k`` (1-based) of a chain is not judged, or None when it is.

    :mod:`derive.check` judges one-step equalities of the d(x) calculus (seed 001 eqs 7-25).
    Skipped, first reason that applies: a relation other than ``=`` (a bound ``\\le``/``<``/
    ``\\ge``, an approximation ``\\approx``/``\\sim``, or another: ``\\propto``, ``\\neq``); a
    statement over several steps: ``\\prod``, a ``\\sum`` over an index other than t (the
    ``\\sum_t`` of a gradient is judged), a time index other than t and t-1 (``h_k``, ``f_j``,
    ``c_{j-1}``, ``x_{t-k}``, ``s_{t-2}``; digits such as ``T_0`` are names), a norm
    ``\\|.\\|``; and, outside the calculus: a total derivative
    ``\\frac{\\mathrm{d} c_t}{\\mathrm{d} c_{t-1}}`` (seed 000's, the other states of step t-1
    following), a part of a derivative ``|_{\\mathrm{carousel}}``, the block state Jacobian
    ``J_t`` (with ``\\partial (h_t, c_t)``, a ``pmatrix``), a side condition ``\\text{when ...}``,
    an elision (``\\ldots``, ``\\text{other terms}``). The reason names the relation or the symbol
    found. The left-hand side counts for every line. The reason depends on the text alone."""
    rel = ch.rels[k - 1] if k - 1 < len(ch.rels) else "="
    if rel != "=":
        what = "a bound" if rel in _BOUNDS else "an approximation" if rel in _APPROX else \
            "a relation"
        return f"{what} ({rel}), not an equation"
    toks = [*ch.lhs, *ch.rhs[k - 1]]
    return _several_steps(toks) or _outside(toks)


def _script(toks: list[Tok], i: int) -> tuple[str | None, int]:
    """The canonical subscript right after toks[i-1] (toks[i] is '_'), and the index after it."""
    if i >= len(toks) or toks[i].text != "_" or i + 1 >= len(toks):
        return None, i
    if toks[i + 1].text == "{":
        j = _match(toks, i + 1)
        return _canon(toks[i + 2:j]), j + 1
    return toks[i + 1].text, i + 2


def _bound_var(toks: list[Tok], i: int) -> str | None:
    """The index of the \\sum or \\prod at toks[i] (``\\prod_{j=k+1}^{t}`` -> 'j'), if written."""
    sub, _ = _script(toks, i + 1)
    if sub is None:
        return None
    return sub.split("=", 1)[0].strip() or None


def _other_time(sub: str | None) -> bool:
    """A time subscript other than t and t-1: j, k, l (with an offset), t-k, t-2, t+1."""
    if sub is None:
        return False
    s = sub.replace(" ", "")
    if s in ("t", "t-1"):
        return False
    return bool(re.fullmatch(r"[jkl](?:[+-]\d+)?", s)
                or re.fullmatch(r"t(?:[+-](?:\d+|[a-z]))+", s))


def _several_steps(toks: list[Tok]) -> str | None:
    for i, t in enumerate(toks):
        if t.text == r"\prod":
            var = _bound_var(toks, i)
            return "a statement over several steps (\\prod" + (f" over {var})" if var else ")")
    for i, t in enumerate(toks):
        if t.text == r"\sum":
            var = _bound_var(toks, i)
            if var is not None and var != "t":
                return f"a statement over several steps (\\sum over {var})"
    for i in range(len(toks)):
        a = read_atom(toks, i)
        if a is not None and _other_time(a.sub):
            sub = a.sub if len(a.sub) == 1 else "{" + a.sub + "}"  # type: ignore[arg-type]
            return f"a statement over several steps ({a.base}_{sub} at step {a.sub})"
    for t in toks:
        if t.text in _NORMS:
            return "a statement about norms (\\|\\cdot\\|), not an equation of the d(x) calculus"
    return None


def _total_d(den: list[Tok]) -> bool:
    """A denominator written with an upright or plain d: ``\\mathrm{d} c_{t-1}``, ``d c``."""
    if not den:
        return False
    if den[0].text in (r"\mathrm", r"\text", r"\operatorname", r"\mathit", r"\rm"):
        nxt = den[1:4]
        return bool(nxt) and (nxt[0].text == "d" or [x.text for x in nxt] == ["{", "d", "}"])
    return den[0].text == "d" and (len(den) == 1 or den[1].text not in ("(", "[", "_"))


def _outside(toks: list[Tok]) -> str | None:
    """Readable mathematics that is not a one-step equality of the d(x) calculus."""
    for i, t in enumerate(toks):
        if t.text in _FRACS and i + 1 < len(toks) and toks[i + 1].text == "{":
            j = _match(toks, i + 1)
            den = toks[j + 2:_match(toks, j + 1)] if j + 1 < len(toks) and \
                toks[j + 1].text == "{" else []
            if _total_d(den):
                return ("a total derivative (\\mathrm{d}), not a one-step \\partial of the "
                        "d(x) calculus")
    for i, t in enumerate(toks):
        if t.text in _BARS and i + 1 < len(toks) and toks[i + 1].text == "_":
            sub, _ = _script(toks, i + 1)
            return f"a part of a derivative (|_{{{sub}}}), not its whole value"
    for i, t in enumerate(toks):
        a = read_atom(toks, i) if t.text == "J" else None
        if a is not None and a.base == "J" and _time(a.sub) is not None:
            sub = a.sub if a.sub == "t" else "{" + str(a.sub) + "}"
            return (f"a statement about the block state Jacobian J_{sub}, outside the one-state "
                    "d(x) calculus")
        if t.text == r"\partial" and i + 1 < len(toks) and toks[i + 1].text == "(":
            depth = 0
            for j in range(i + 1, len(toks)):
                depth += {"(": 1, ")": -1}.get(toks[j].text, 0)
                if depth == 0:
                    break
                if toks[j].text == "," and depth == 1:
                    return ("a statement about the block state Jacobian (a derivative of "
                            "stacked states), outside the one-state d(x) calculus")
        if t.text == r"\begin" and i + 2 < len(toks) and toks[i + 1].text == "{":
            name = _canon(toks[i + 2:_match(toks, i + 1)])
            if name.rstrip("*") in _MATRICES:
                return (f"a statement about the block state Jacobian (a block matrix, {name}), "
                        "outside the one-state d(x) calculus")
    for i, t in enumerate(toks):
        if t.text in _TEXT and i + 1 < len(toks) and toks[i + 1].text == "{" and \
                match_activation(toks, i) is None:  # not an activation named \text{...}
            words = _words(toks[i + 2:_match(toks, i + 1)]).split()
            if words and words[0].lower() in _CONDITION_WORDS:
                return f"a conditional statement (\\text{{{words[0]} ...}})"
    for i, t in enumerate(toks):
        if t.text in _ELLIPSES:
            return f"an elided expression ({t.text}), not a whole value"
        if t.text in _TEXT and i + 1 < len(toks) and toks[i + 1].text == "{" and \
                match_activation(toks, i) is None:  # not an activation named \text{...}
            words = _words(toks[i + 2:_match(toks, i + 1)]).strip()
            if any(ch.isalpha() for ch in words):
                return f"an elided expression (\\text{{{words}}}), not a whole value"
    return None

# ----------------------------------------------------------------------------- atoms


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


def read_atom(toks: list[Tok], i: int) -> Atom | None:
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
        j = _match(toks, i + 1) + 1 if toks[i + 1].text == "{" else i + 2
        base = _canon(toks[i:j])
    elif t.kind == "cmd" and t.text not in _OPERATOR_CMDS and len(t.text) > 2:
        base, j = t.text, i + 1
    elif t.text == "{":
        j = _match(toks, i) + 1
        base = _canon(toks[i:j])
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
                k = _match(toks, j + 1)
                arg = _canon(toks[j + 2:k])
                j = k + 1
            else:
                arg = _canon([toks[j + 1]])
                j += 2
            if s.text == "_":
                if sub is not None:
                    break
                sub = arg
            elif arg in (r"\prime", "'"):
                primes += 1
            else:
                if sup is not None:
                    break
                sup = arg
        else:
            break
    return Atom(base, sub, sup, primes, t, j)


def _time(sub: str | None) -> int | None:
    """Lag of a time subscript: t -> 0, t-1 -> 1; None otherwise."""
    if sub is None:
        return None
    s = sub.replace(" ", "")
    if s == "t":
        return 0
    m = re.fullmatch(r"t-(\d+)", s)
    return int(m.group(1)) if m else None


def _strip_accent(base: str, accent: str) -> str | None:
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


# ----------------------------------------------------------------------------- lexicon


class Lexicon:
    """The symbols of one cell in one notation: LaTeX atoms -> spec names."""

    def __init__(self, spec: CellSpec, names: Mapping[str, str]):
        self.spec = spec
        self.names = dict(names)
        self.params: dict[tuple[str, str | None], str] = {}
        self.param_base: dict[str, str] = {}
        self.nodes: dict[str, str] = {}
        self.bad_names: list[str] = []
        for p in spec.params:
            a = self._atom(names.get(p, p))
            if a is None or a.sup is not None or a.primes:
                self.bad_names.append(p)
                continue
            self.params[(a.base, a.sub)] = p
            self.param_base[p] = a.base
        for n in [*(n for n in spec.nodes if not n.endswith(HAT)), INPUT]:
            a = self._atom(names.get(n, n))
            if a is None or a.sub is not None or a.sup is not None or a.primes:
                self.bad_names.append(n)
                continue
            self.nodes[a.base] = n
        self.gates = [n for n, v in spec.nodes.items() if v.role == "gate"]
        self.generic_gate = "g" not in self.nodes
        self.generic_param = ("A", None) not in self.params and "A" not in self.nodes

    @staticmethod
    def _atom(latex: str) -> Atom | None:
        toks = tokenize(latex)
        a = read_atom(toks, 0)
        return a if a is not None and a.end == len(toks) else None

    def gate_params(self, gate: str) -> list[str]:
        """Parameters of a gate's own equation (its pre-activation)."""
        node = self.spec.nodes.get(gate + HAT) or self.spec.nodes[gate]
        return sorted(params_in(node.expr), key=list(self.spec.params).index)

    def bound_param(self, base: str, gate: str) -> str | list[str]:
        """The parameter of ``gate``'s equation printed with base letter ``base`` (W_g -> W_o);
        a list of the candidates when there is not exactly one."""
        cands = [p for p in self.gate_params(gate) if self.param_base.get(p) == base]
        return cands[0] if len(cands) == 1 else cands

    def latex(self, name: str) -> str:
        return self.names.get(name, name)


# ----------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Loss:
    """The loss in a numerator: ``L_t`` / ``\\ell_t`` (step loss) or ``L`` (summed over t)."""

    total: bool


@dataclass(frozen=True)
class FDiag:
    v: Expr
    two: bool = False  # d_2(v)


@dataclass(frozen=True)
class FMat:
    name: str
    transposed: bool = False


@dataclass(frozen=True)
class FIdent:
    pass


@dataclass(frozen=True)
class FDeriv:
    """\\frac{\\partial num}{\\partial den}: num an Expr or Loss, den an Expr (Ref(kind=param)
    for a parameter, any vector expression otherwise). ``self_param`` marks dP/dP."""

    num: Expr | Loss
    den: Expr
    tok: Tok
    self_param: str | None = None


@dataclass(frozen=True)
class FVec:
    """A vector inside a matrix product: a column, or with ``transposed`` the row v^T."""

    v: Expr
    transposed: bool = False


@dataclass(frozen=True)
class FAdj:
    """\\bar{u}_t (kind bar) or \\delta u_{t-lag} (kind carry)."""

    name: str
    kind: str
    lag: int = 0


@dataclass(frozen=True)
class FBlock:
    which: str  # M | N | V
    tok: Tok | None = None


@dataclass(frozen=True)
class FCoef:
    value: Fraction


@dataclass(frozen=True)
class MSum:
    items: tuple[tuple[int, MProd], ...]


@dataclass(frozen=True)
class MProd:
    factors: tuple  # of F* nodes and MSum groups


@dataclass(frozen=True)
class Side:
    """A parsed right-hand side: a matrix sum (or a vector for a cell equation), whether it is
    written under ``\\sum_t``, and notes on tolerated typos."""

    body: MSum | Expr
    summed: bool = False
    notes: tuple[tuple[int, str], ...] = ()


def unresolved(toks: list[Tok], lex: Lexicon) -> int:
    """How many symbol atoms of a token run do not resolve in a lexicon (cell inference)."""
    p = Parser(toks, lex)
    count = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text in ("_", "^"):  # a script of an operator (\sum_t): not a symbol
            i += 2 if i + 1 < len(toks) and toks[i + 1].text != "{" else \
                _match(toks, min(i + 1, len(toks) - 1)) + 1
            continue
        act = match_activation(toks, i)
        if act is not None:  # an activation's name, e.g. \operatorname{ReLU}: not a symbol
            i = act[1]
            continue
        a = read_atom(toks, i) if t.text != "{" else None
        if a is None:
            i += 1
            continue
        if t.kind == "letter" and (
                (t.text == "d" and i + 1 < len(toks) and toks[i + 1].text in ("(", "_", "["))
                or (t.text in ("I", "L") and a.sup is None and a.sub in (None, "t"))):
            i = a.end if t.text != "d" else i + 1
            continue
        if t.text == r"\ell":
            i = a.end
            continue
        bar = _strip_accent(a.base, r"\bar")
        try:
            if bar is not None and p._node_base(Atom(bar, a.sub, None, 0, t, a.end)) is not None:
                i = a.end
                continue
            p.resolve(a)
        except ParseError as exc:
            count += exc.kind == "symbol"
        i = a.end
    return count


# ----------------------------------------------------------------------------- LHS kinds


@dataclass(frozen=True)
class LDeriv:
    num: Expr | Loss
    den: Expr


@dataclass(frozen=True)
class LBlock:
    which: str


@dataclass(frozen=True)
class LAdj:
    name: str
    kind: str  # bar | carry
    lag: int


@dataclass(frozen=True)
class LDef:
    node: str


# ----------------------------------------------------------------------------- parser

_STOP = {"+", "-", ")", "=", "]"}


class Parser:
    """Recursive descent over the tokens of one side of an equation.

    ``binding`` maps the generic symbols ``A`` and ``g`` to a parameter and a gate; without it
    (scan mode) they resolve to placeholders and ``generic`` records which were used.
    """

    def __init__(self, toks: list[Tok], lex: Lexicon, binding: Mapping[str, str] | None = None):
        self.toks = toks
        self.i = 0
        self.lex = lex
        self.spec = lex.spec
        self.binding = binding
        self.generic: set[str] = set()
        self.notes: list[tuple[int, str]] = []

    # -- helpers -------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def text(self, k: int = 0) -> str:
        t = self.peek(k)
        return t.text if t is not None else ""

    def err(self, msg: str, tok: Tok | None = None, kind: str = "syntax") -> ParseError:
        if tok is None:
            tok = self.peek() or (self.toks[-1] if self.toks else None)
        return ParseError(msg, tok, kind)

    def expect(self, text: str) -> Tok:
        t = self.peek()
        if t is None or t.text != text:
            found = repr(t.text) if t is not None else "the end of the expression"
            raise self.err(f"expected {text!r}, found {found}")
        self.i += 1
        return t

    def at_end(self) -> bool:
        return self.i >= len(self.toks)

    def finish(self) -> None:
        if not self.at_end():
            t = self.peek()
            assert t is not None
            what = "'='" if t.text == "=" else repr(t.text)
            raise self.err(f"unexpected {what}" + (" (unbalanced brackets?)"
                                                   if t.text in (")", "]") else ""), t)

    def group(self) -> list[Tok]:
        """The tokens of a ``{...}`` argument (the brace pair consumed)."""
        t = self.peek()
        if t is None or t.text != "{":
            if t is None:
                raise self.err("expected '{'")
            self.i += 1
            return [t]
        j = _match(self.toks, self.i)
        if self.toks[j].text != "}":
            raise self.err("unbalanced '{'", t)
        inner = self.toks[self.i + 1:j]
        self.i = j + 1
        return inner

    def sub(self, toks: list[Tok]) -> Parser:
        p = Parser(toks, self.lex, self.binding)
        p.generic = self.generic
        p.notes = self.notes
        return p

    # -- generic symbols -----------------------------------------------------------------
    def _generic(self, key: str, tok: Tok) -> str:
        self.generic.add(key)
        if self.binding is not None and key in self.binding:
            return self.binding[key]
        if key == "A":
            return self.spec.cell_params[0]
        if not self.lex.gates:
            raise self.err(f"generic gate {tok.text}_t but cell {self.spec.name!r} has no gates",
                           tok, "symbol")
        return self.lex.gates[0]

    # -- symbols -------------------------------------------------------------------------
    def resolve(self, a: Atom) -> tuple[str, object]:
        """Classify an atom: ('param', name, transposed) | ('node', Ref) | ('bar', name) |
        ('block', which) | ('generic-param', name) with extras in a tuple."""
        lex = self.lex
        key = (a.base, a.sub)
        if key in lex.params:
            p = lex.params[key]
            return "param", (p, self._transposed(a))
        lag = _time(a.sub)
        if a.sub is not None and lag is None and re.fullmatch(r"t[-+]\w+|[jkT]|k\+1", a.sub) \
                and (a.base in lex.nodes or _strip_accent(a.base, r"\hat") in lex.nodes):
            raise self.err(f"{a.text}: only the times t and t-1 are supported", a.tok,
                           "unsupported")
        if lag is not None:
            name = self._node_base(a)
            if name is not None:
                return "node", (name, lag)
            if a.base in ("M", "N", "V") and lag == 0 and not a.primes and a.sup is None:
                return "block", a.base
        if (a.base == "A" and lex.generic_param and not a.primes and a.sup is None
                and (a.sub is None or r"\neq" in a.sub or r"\ne" in a.sub)):
            return "param", (self._generic("A", a.tok), False)
        if a.sub is not None and lag is None and not a.primes:
            gate = self._gate_of(a.sub)
            if gate is not None:
                got = lex.bound_param(a.base, gate)
                if isinstance(got, str):
                    return "param", (got, self._transposed(a))
                gl = lex.latex(gate)
                if got:
                    raise self.err(
                        f"{a.text}: the equation of {gl}_t has several parameters written "
                        f"{a.base} ({', '.join(lex.latex(p) for p in got)}); write one of them",
                        a.tok, "symbol")
                raise self.err(f"{a.text}: the equation of {gl}_t has no parameter written "
                               f"{a.base}", a.tok, "symbol")
            if r"\neq" in a.sub and a.base in {b for b, _ in lex.params}:
                raise self.err(f"{a.text}: a parameter of another gate is only understood as "
                               f"the generic A", a.tok, "unsupported")
        if (a.base, None) in lex.params and a.sub is not None and lag is not None:
            raise self.err(f"{a.text}: parameter {a.base} has no time index", a.tok, "symbol")
        if a.base in lex.nodes and a.sub is None:
            raise self.err(f"{a.text}: expected a time index, e.g. {a.base}_t or {a.base}_{{t-1}}",
                           a.tok)
        raise self.err(f"unknown symbol {a.text} for cell {self.spec.name!r}", a.tok, "symbol")

    def _transposed(self, a: Atom) -> bool:
        if a.primes:
            raise self.err(f"{a.text}: a parameter has no prime", a.tok)
        if a.sup is None:
            return False
        if a.sup in _TRANSPOSE:
            return True
        raise self.err(f"{a.text}: unexpected superscript {a.sup!r} (only ^\\top)", a.tok,
                       "unsupported")

    def _node_base(self, a: Atom) -> str | None:
        """Spec node of an atom's base: a node, \\hat{node} (pre-activation), or the generic g."""
        lex = self.lex
        if a.base in lex.nodes:
            return lex.nodes[a.base]
        inner = _strip_accent(a.base, r"\hat")
        if inner is not None and inner in lex.nodes:
            n = lex.nodes[inner]
            if n + HAT not in self.spec.nodes:
                raise self.err(f"{a.text}: {inner} is not a gate, it has no pre-activation",
                               a.tok, "symbol")
            return n + HAT
        if a.base == "g" and lex.generic_gate:
            return self._generic("g", a.tok)
        if inner == "g" and lex.generic_gate:
            return self._generic("g", a.tok) + HAT
        return None

    def _gate_of(self, sub: str) -> str | None:
        """The gate a subscript names (``o``, ``\\tilde{s}``, the generic ``g``)."""
        lex = self.lex
        if sub in lex.nodes and lex.nodes[sub] in lex.gates:
            return lex.nodes[sub]
        if sub == "g" and lex.generic_gate:
            tok = self.peek() or self.toks[-1]
            return self._generic("g", tok)
        return None

    def node_ref(self, a: Atom, name: str, lag: int) -> Expr:
        """A node atom as a vector expression: value, pre-activation or gate derivative."""
        spec = self.spec
        if name == INPUT:
            if lag != 0 or a.primes:
                raise self.err(f"{a.text}: the input is x_t only", a.tok, "unsupported")
            e: Expr = Ref(INPUT, 0, "input")
        elif lag > 1:
            raise self.err(f"{a.text}: only the times t and t-1 are supported", a.tok,
                           "unsupported")
        elif lag == 1 and name not in spec.states:
            raise self.err(f"{a.text}: {self.lex.latex(name)} is not a state, it has no value at "
                           f"t-1 here (states: "
                           f"{', '.join(self.lex.latex(s) for s in spec.states)})", a.tok)
        else:
            e = Ref(name, lag, "node")
        if a.primes:
            if a.primes > 1 or lag != 0 or name + HAT not in spec.nodes:
                raise self.err(f"{a.text}: a prime marks the derivative of a gate's activation "
                               f"(o'_t); {self.lex.latex(name)} is not a gate", a.tok, "symbol")
            fn = spec.nodes[name].expr.fn  # type: ignore[attr-defined]
            e = DerivAt(fn, Ref(name + HAT, 0, "node"))
        return e

    # -- vector level --------------------------------------------------------------------
    def vexpr(self) -> Expr:
        terms: list[tuple[int, Expr]] = []
        sign = 1
        if self.text() in ("-", "+"):
            sign = -1 if self.text() == "-" else 1
            self.i += 1
        terms.append((sign, self.vterm()))
        while self.text() in ("+", "-"):
            sign = 1 if self.text() == "+" else -1
            self.i += 1
            terms.append((sign, self.vterm()))
        if len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return Add(tuple(terms))

    def vterm(self) -> Expr:
        factors = [self.vfactor()]
        while True:
            t = self.text()
            if t in (r"\odot", r"\circ", "*", r"\ast"):
                self.i += 1
                factors.append(self.vfactor())
            elif t and t not in _STOP and t not in ("}", r"\cdot", r"\times") and \
                    self.peek().kind != "row":  # type: ignore[union-attr]
                factors.append(self.vfactor())  # juxtaposed vectors: Hadamard
            else:
                break
        return factors[0] if len(factors) == 1 else Mul(tuple(factors))

    def vfactor(self) -> Expr:
        t = self.peek()
        if t is None:
            raise self.err("expected a vector expression, found the end")
        if t.text == "(" or t.text == "[":
            close = ")" if t.text == "(" else "]"
            self.i += 1
            e = self.vexpr()
            self.expect(close)
            return e
        if t.kind == "num":
            self.i += 1
            return Const(Fraction(t.text))
        if match_activation(self.toks, self.i) is not None:
            return self.activation()
        if t.text in (r"\frac", r"\dfrac", r"\tfrac"):
            raise self.err("a derivative cannot appear inside a vector expression", t)
        a = read_atom(self.toks, self.i)
        if a is None:
            raise self.err(f"unexpected {t.text!r} in a vector expression", t)
        kind, val = self.resolve(a)
        self.i = a.end
        if kind == "param":
            p, tr = val  # type: ignore[misc]
            if self.spec.params[p].is_matrix:
                if tr:
                    raise self.err(f"{a.text}: a transposed matrix inside a vector expression "
                                   "is not supported", a.tok, "unsupported")
                return MatVec(p, self.vfactor())
            return Ref(p, 0, "param")
        if kind == "node":
            name, lag = val  # type: ignore[misc]
            return self.node_ref(a, name, lag)
        raise self.err(f"{a.text} is not a vector", a.tok)

    def activation(self) -> Expr:
        t = self.peek()
        found = match_activation(self.toks, self.i)
        assert t is not None and found is not None
        fn, self.i = found
        name = ACTIVATIONS[fn].latex
        primes = 0
        while self.text() in ("'", "^"):
            if self.text() == "'":
                primes += 1
                self.i += 1
            else:
                self.i += 1
                arg = self.group()
                if _canon(arg) not in (r"\prime", "'"):
                    raise self.err(f"unexpected superscript on {name}", t, "unsupported")
                primes += 1
        if self.text() not in ("(", "["):
            raise self.err(f"expected '(' after {name}", self.peek() or t)
        close = ")" if self.text() == "(" else "]"
        self.i += 1
        arg = self.vexpr()
        self.expect(close)
        if primes > 1:
            raise self.err(f"{name}'' (second derivative) is not supported", t, "unsupported")
        return DerivAt(fn, arg) if primes else Call(fn, arg)

    # -- matrix level --------------------------------------------------------------------
    def msum(self) -> MSum:
        items: list[tuple[int, MProd]] = []
        sign = 1
        if self.text() in ("-", "+"):
            sign = -1 if self.text() == "-" else 1
            self.i += 1
        items.append((sign, self.mprod()))
        while self.text() in ("+", "-"):
            sign = 1 if self.text() == "+" else -1
            self.i += 1
            items.append((sign, self.mprod()))
        return MSum(tuple(items))

    def mprod(self) -> MProd:
        factors: list = []
        while not self.at_end() and self.text() not in _STOP:
            if self.text() in (r"\cdot", r"\times"):
                self.i += 1
                continue
            factors.append(self.mfactor())
        if not factors:
            t = self.peek()
            what = repr(t.text) if t is not None else "the end of the expression"
            raise self.err(f"expected a term, found {what}" +
                           (" (a '+' or '-' too many?)" if t is not None and t.text in "+-"
                            else ""), t)
        return MProd(tuple(factors))

    def mfactor(self) -> Any:
        t = self.peek()
        assert t is not None
        lex = self.lex
        if t.kind == "num":
            self.i += 1
            return FCoef(Fraction(t.text))
        if t.text in ("(", "["):
            close = ")" if t.text == "(" else "]"
            j = self._close(self.i, t.text, close)
            if j + 1 < len(self.toks) and self.toks[j + 1].text == "^":
                # (v)^\top: a row vector
                inner = self.sub(self.toks[self.i + 1:j])
                v = inner.vexpr()
                inner.finish()
                self.i = j + 2
                sup = _canon(self.group())
                if sup not in _TRANSPOSE:
                    raise self.err(f"unexpected superscript {sup!r} (only ^\\top)", t,
                                   "unsupported")
                return FVec(v, True)
            self.i += 1
            s = self.msum()
            self.expect(close)
            return s
        if t.text in (r"\frac", r"\dfrac", r"\tfrac"):
            return self.frac()
        if t.text == r"\sum":
            raise self.err(r"\sum_t is only understood at the start of the right-hand side of "
                           r"\frac{\partial L}{\partial A}", t, "unsupported")
        if t.text == r"\delta":
            a = read_atom(self.toks, self.i + 1)
            if a is None:
                raise self.err(r"expected a state after \delta", t)
            kind, val = self.resolve(a)
            if kind != "node" or val[0] not in self.spec.states:  # type: ignore[index]
                raise self.err(rf"\delta {a.text}: \delta marks the adjoint of a state carried "
                               "from the next step", t, "symbol")
            self.i = a.end
            return FAdj(val[0], "carry", val[1])  # type: ignore[index]
        if match_activation(self.toks, self.i) is not None:
            return FVec(self.activation())
        if t.kind == "letter" and t.text == "d" and "d" not in lex.nodes and \
                ("d", None) not in lex.params:
            nxt = self.text(1)
            two = False
            if nxt == "_":
                k = self.i + 2
                if self.text(2) == "{":
                    arg = self.toks[k + 1:_match(self.toks, k)]
                    k = _match(self.toks, k) + 1
                else:
                    arg = self.toks[k:k + 1]
                    k += 1
                if _canon(arg) == "1":
                    two = False
                elif _canon(arg) == "2":
                    two = True
                else:
                    raise self.err(f"d_{_canon(arg)}: only d(.) and d_2(.) are defined", t,
                                   "unsupported")
                self.i = k
            else:
                self.i += 1
            if self.text() not in ("(", "["):
                raise self.err("expected '(' after d" + ("_2" if two else ""), self.peek() or t)
            close = ")" if self.text() == "(" else "]"
            self.i += 1
            v = self.vexpr()
            self.expect(close)
            return FDiag(v, two)
        a = read_atom(self.toks, self.i)
        if a is None:
            raise self.err(f"unexpected {t.text!r}", t)
        if a.base == "I" and a.sub is None and a.sup is None and ("I", None) not in lex.params \
                and "I" not in lex.nodes:
            self.i = a.end
            return FIdent()
        bar = _strip_accent(a.base, r"\bar")
        if bar is not None and _time(a.sub) == 0:
            inner = Atom(bar, a.sub, None, 0, a.tok, a.end)
            name = self._node_base(inner)
            if name is not None:
                self.i = a.end
                return FAdj(name, "bar", 0)
        kind, val = self.resolve(a)
        self.i = a.end
        if kind == "param":
            p, tr = val  # type: ignore[misc]
            if self.spec.params[p].is_matrix:
                return FMat(p, tr)
            return FVec(Ref(p, 0, "param"), tr)
        if kind == "block":
            return FBlock(val, a.tok)  # type: ignore[arg-type]
        name, lag = val  # type: ignore[misc]
        transposed = a.sup is not None and a.sup in _TRANSPOSE
        if a.sup is not None and not transposed:
            raise self.err(f"{a.text}: unexpected superscript {a.sup!r}", a.tok, "unsupported")
        ref = self.node_ref(Atom(a.base, a.sub, None, a.primes, a.tok, a.end), name, lag)
        return FVec(ref, transposed)

    def _close(self, i: int, open_: str, close: str) -> int:
        depth = 0
        for j in range(i, len(self.toks)):
            tx = self.toks[j].text
            if tx in ("(", "["):
                depth += 1
            elif tx in (")", "]"):
                depth -= 1
                if depth == 0:
                    if tx != close:
                        raise self.err(f"{open_!r} closed by {tx!r}", self.toks[j])
                    return j
        raise self.err(f"{open_!r} is never closed", self.toks[i])

    def frac(self) -> FDeriv | FCoef:
        t = self.peek()
        assert t is not None
        self.i += 1
        num = self.group()
        den = self.group()
        if num and den and all(x.kind == "num" for x in num) and all(x.kind == "num" for x in den):
            return FCoef(Fraction(_canon(num)) / Fraction(_canon(den)))
        if not den or den[0].text != r"\partial":
            raise self.err(r"expected a derivative \frac{\partial u}{\partial A} or a number "
                           r"\frac{1}{2}", t, "unsupported")
        if num and num[0].text == r"\partial":
            num = num[1:]
        else:
            self.notes.append((t.pos, rf"read \frac{{{_canon(num)}}}{{\partial ...}} as "
                               rf"\frac{{\partial {_canon(num)}}}{{\partial ...}} (a missing "
                               r"\partial in the numerator, tolerated)"))
        if not num:
            raise self.err(r"\frac{\partial}{\partial A} applied to what follows is not "
                           r"supported: write \frac{\partial u}{\partial A}", t, "unsupported")
        den_e = self._den(den[1:], t)
        n = self._num(num, t)
        if isinstance(n, tuple):  # a matrix parameter: only dP/dP
            if not (isinstance(den_e, Ref) and den_e.kind == "param" and den_e.name == n[1]):
                raise self.err(rf"\frac{{\partial {self.lex.latex(n[1])}}}{{\partial ...}}: "
                               "a matrix is only differentiated by itself", t, "unsupported")
            return FDeriv(Ref(n[1], 0, "param"), den_e, t, self_param=n[1])
        return FDeriv(n, den_e, t)

    def _num(self, toks: list[Tok], t: Tok) -> Expr | Loss | tuple[str, str]:
        if not toks:
            raise self.err("empty numerator", t)
        a = read_atom(toks, 0)
        if a is not None and a.end == len(toks) and a.base in ("L", r"\ell") and \
                (a.base, a.sub) not in self.lex.params and a.base not in self.lex.nodes:
            if a.sub is None:
                return Loss(True)
            if _time(a.sub) == 0:
                return Loss(False)
        if a is not None and a.end == len(toks):
            kind, val = self.sub(toks).resolve(a)
            if kind == "param" and self.spec.params[val[0]].is_matrix:  # type: ignore[index]
                return ("matrix", val[0])  # type: ignore[index]
        p = self.sub(toks)
        e = p.vexpr()
        p.finish()
        return e

    def _den(self, toks: list[Tok], t: Tok) -> Expr:
        if not toks:
            raise self.err(r"empty denominator after \partial", t)
        a = read_atom(toks, 0)
        p = self.sub(toks)
        if a is not None and a.end == len(toks):
            kind, val = p.resolve(a)
            if kind == "param":
                return Ref(val[0], 0, "param")  # type: ignore[index]
        e = p.vexpr()
        p.finish()
        return e

    # -- sides -----------------------------------------------------------------------------
    def side(self, vector: bool = False) -> Side:
        """A right-hand side: a matrix sum, or (``vector``) a vector expression."""
        if not self.toks:
            raise ParseError("empty right-hand side", None)
        summed = False
        if vector:
            body: MSum | Expr = self.vexpr()
        else:
            if self.text() == r"\sum":
                t = self.peek()
                self.i += 1
                if self.text() == "_":
                    self.i += 1
                    arg = self.group()
                    if _canon(arg) != "t":
                        raise self.err(rf"\sum_{{{_canon(arg)}}}: only \sum_t is understood", t,
                                       "unsupported")
                summed = True
            body = self.msum()
        self.finish()
        return Side(body, summed, tuple(self.notes))

    def lhs(self, as_node: bool = False) -> LDeriv | LBlock | LAdj | LDef:
        """The left-hand side: a derivative, a block, an adjoint or a node (a cell equation).

        ``\bar{u}_t`` is read as the adjoint of u; with ``as_node`` it is read as the node whose
        name is ``\bar{u}`` where the cell has one (minLSTM's \bar{f}_t = f_t / (f_t + i_t)):
        :mod:`derive.check` takes that reading when only it lets the right-hand sides be read."""
        if not self.toks:
            raise ParseError("empty left-hand side", None)
        t = self.peek()
        assert t is not None
        if t.text in (r"\frac", r"\dfrac", r"\tfrac"):
            f = self.frac()
            self.finish()
            if isinstance(f, FDeriv) and f.self_param is None:
                return LDeriv(f.num, f.den)
            raise self.err("the left-hand side must be a derivative of a node, state or loss", t,
                           "unsupported")
        if t.text == r"\delta":
            f = self.mfactor()
            self.finish()
            return LAdj(f.name, "carry", f.lag)
        a = read_atom(self.toks, 0)
        if a is not None:
            bar = _strip_accent(a.base, r"\bar")
            if bar is not None and _time(a.sub) == 0 and not (as_node and
                                                             a.base in self.lex.nodes):
                name = self._node_base(Atom(bar, a.sub, None, 0, a.tok, a.end))
                if name is not None:
                    self.i = a.end
                    self.finish()
                    return LAdj(name, "bar", 0)
            try:
                kind, val = self.resolve(a)
            except ParseError as exc:
                if exc.kind == "symbol":
                    raise self.err(f"left-hand side {a.text}: expected a derivative "
                                   r"\frac{\partial u_t}{\partial A}, a state Jacobian, M_t, N_t, "
                                   r"an adjoint \bar{u}_t or \delta u_{t-1}, or a node u_t of the "
                                   "cell", a.tok, "symbol") from None
                raise
            self.i = a.end
            self.finish()
            if kind == "block" and val in ("M", "N"):
                return LBlock(val)  # type: ignore[arg-type]
            if kind == "node" and val[1] == 0 and not a.primes and a.sup is None:  # type: ignore[index]
                return LDef(val[0])  # type: ignore[index]
        raise self.err("left-hand side not understood: expected a derivative "
                       r"\frac{\partial u_t}{\partial A}, a state Jacobian, M_t, N_t, an adjoint "
                       r"\bar{u}_t or \delta u_{t-1}, or a node u_t of the cell", t, "unsupported")
