"""The mathematical lines of a document, each at its own place in the file (issue 16, item 4).

A *math segment* is display math (``$$..$$``, ``\\[..\\]``, ``equation``, ``align``, ``gather``,
``multline``, ``eqnarray``, ``flalign``, ``alignat`` and their starred forms) or inline math
(``$..$``, ``\\(..\\)``). Code fences are not read; math inside an HTML comment
(``<!-- -->``) or, in LaTeX, after ``%`` is kept and marked ``comment`` (reported as skipped).
Inside a segment ``\\tag``, ``\\label`` and the inner environments (``aligned``, ``split``,
``gathered``, ...) are blanked, ``\\boxed{..}`` and ``\\bbox[..]{..}`` are unwrapped; offsets
are preserved, so every token keeps its place in the file.

A segment is split into *rows* at top-level ``\\\\``, and a row into *equations* at a
top-level separator (``,``, ``;``, ``\\quad``, ``\\qquad``, ``\\text{and}``) whose both sides
hold a relation: ``a = b, \\quad c = d`` is two equations. An :class:`Equation` is
``lhs rel r_1 rel r_2 ...``; a display row that starts with a relation adds right-hand sides to
the equation above it, one without a relation continues its last right-hand side. Each
right-hand side keeps its own first token, hence its own line in the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import lexicon as lx
from .tokens import Tok, match_brace, strip_layout, tokenize

_DISPLAY_ENVS = ("equation", "align", "gather", "multline", "eqnarray", "flalign",
                 "displaymath", "alignat", "math")
_OPEN = re.compile(r"\$\$|(?<!\\)\\\[|(?<!\\)\\\(|(?<![\\$])\$(?!\$)|\\begin\{(?P<env>(?:"
                   + "|".join(_DISPLAY_ENVS) + r")\*?)\}")
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.S | re.M)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TEX_COMMENT = re.compile(r"(?<!\\)%[^\n]*")
_BLANK_IN_MATH = re.compile(
    r"\\tag\*?\{[^{}]*\}|\\label\{[^{}]*\}|\\(?:begin|end)\{(?:aligned|split|gathered|alignedat|"
    r"multlined|array|equation\*?|align\*?)\}(?:\{[^{}]*\})?|\\nonumber|\\notag"
    r"|\\(?:displaystyle|textstyle|limits)\b")
_WRAPPERS = (r"\boxed", r"\bbox", r"\fbox", r"\colorbox", r"\color", r"\textcolor",
             r"\underbrace", r"\overbrace", r"\mathrel", r"\mathop", r"\mathbin")

RELATIONS = {"=": "=", r"\le": "<=", r"\leq": "<=", r"\leqslant": "<=", r"\ge": ">=",
             r"\geq": ">=", r"\geqslant": ">=", "<": "<", ">": ">", r"\lt": "<", r"\gt": ">",
             r"\approx": "~", r"\sim": "~", r"\simeq": "~", r"\propto": "~", r"\ll": "<",
             r"\gg": ">", r"\neq": "!=", r"\ne": "!=", r"\equiv": "=", r"\coloneqq": ":=",
             r"\leftarrow": "<-", r"\gets": "<-", r"\lesssim": "<", r"\gtrsim": ">"}
_SEPARATORS = {",", ";", r"\quad", r"\qquad", r"\text"}


@dataclass(frozen=True)
class Segment:
    """One piece of math: its text, the offset of the text in the file, how it was written."""

    text: str
    start: int
    display: bool
    comment: bool


@dataclass
class Equation:
    """``lhs rels[0] rhs[0] rels[1] rhs[1] ...``; a relation is '=', '+=', '<=', '~', ...

    ``start``/``ends``: token positions of the first token of the left-hand side and of every
    right-hand side (every line is reported at its own place)."""

    lhs: list[Tok]
    rhs: list[list[Tok]]
    rels: list[str]
    segment: Segment
    rel_toks: list[Tok] = field(default_factory=list)

    @property
    def pos(self) -> int:
        if self.lhs:
            return self.lhs[0].pos
        return self.rhs[0][0].pos if self.rhs and self.rhs[0] else self.segment.start


def _blank(text: str, spans) -> str:
    chars = list(text)
    for a, b in spans:
        for k in range(a, b):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars)


def segments(text: str, fmt: str) -> tuple[list[Segment], list[tuple[int, str]]]:
    """Every math segment of a file (``fmt``: md | tex) and problems ((offset, message): an
    unclosed ``$$``)."""
    scan = _blank(text, [m.span() for m in _FENCE.finditer(text)]) if fmt == "md" else text
    comments = [m.span() for m in _HTML_COMMENT.finditer(scan)]
    if fmt == "tex":
        comments += [m.span() for m in _TEX_COMMENT.finditer(scan)]
    # inline code spans in Markdown are not math
    if fmt == "md":
        scan = _blank(scan, [m.span() for m in re.finditer(r"(?<!`)`[^`\n]+`(?!`)", scan)])
    # comment delimiters blanked so that math inside a comment is found like any other
    scan = re.sub(r"<!--|-->", lambda m: " " * len(m.group()), scan)
    if fmt == "tex":
        scan = re.sub(r"(?<!\\)%", " ", scan)
    out: list[Segment] = []
    problems: list[tuple[int, str]] = []
    pos = 0
    while True:
        m = _OPEN.search(scan, pos)
        if not m:
            break
        g = m.group()
        display = True
        if g == "$$":
            close = "$$"
        elif g == r"\[":
            close = r"\]"
        elif g == r"\(":
            close, display = r"\)", False
        elif g == "$":
            close, display = "$", False
        else:
            close = r"\end{" + m.group("env") + "}"
        if close == "$":
            end = m.end()
            while True:
                end = scan.find("$", end)
                if end < 0 or scan[end - 1] != "\\":
                    break
                end += 1
            if end < 0 or "\n\n" in scan[m.end():end]:
                pos = m.end()  # a lone dollar (a price, a shell prompt): not math
                continue
        else:
            end = scan.find(close, m.end())
            if g == "$$" and fmt == "md" and not _kramdown_pair(scan, m.start(), end, comments):
                pos = m.end()  # a lone $$ (in words, or its partner past a paragraph): not math
                continue
        if end < 0:
            problems.append((m.start(), f"{g} is never closed (expected {close})"))
            break
        in_comment = any(a <= m.start() < b for a, b in comments)
        out.append(Segment(scan[m.end():end], m.end(), display, in_comment))
        pos = end + len(close)
    return out, problems


def _kramdown_pair(scan: str, start: int, end: int, comments) -> bool:
    """Kramdown's ``$$``: one that opens a line may open a display block; one inside a line of
    words is inline math, closed in the same paragraph. A pair is not made across a blank line
    from inside a line, nor across the edge of an HTML comment."""
    if end < 0:
        return True
    at_line_start = scan[scan.rfind("\n", 0, start) + 1:start].strip() == ""
    if not at_line_start and "\n\n" in scan[start:end].replace(" ", "").replace("\t", ""):
        return False
    inside = [any(a <= p < b for a, b in comments) for p in (start, end)]
    return inside[0] == inside[1]


def _unwrap(toks: list[Tok]) -> list[Tok]:
    """``\\boxed{x}`` -> ``x``; ``\\bbox[opts]{x}`` -> ``x``; ``\\color{red}`` dropped;
    ``\\underbrace{x}_{text}`` -> ``x``; ``\\mathrel{+}=`` -> ``+=``."""
    out: list[Tok] = []
    i = 0
    drop: set[int] = set()
    while i < len(toks):
        t = toks[i]
        if t.text in _WRAPPERS:
            j = i + 1
            if j < len(toks) and toks[j].text == "[":
                while j < len(toks) and toks[j].text != "]":
                    j += 1
                j += 1
            if t.text in (r"\color", r"\colorbox", r"\textcolor") and j < len(toks) and \
                    toks[j].text == "{":
                j = match_brace(toks, j) + 1  # the colour name
            if t.text in (r"\fbox", r"\colorbox"):
                pass
            if j < len(toks) and toks[j].text == "{":
                k = match_brace(toks, j)
                drop.update((j, k))
                if t.text in (r"\underbrace", r"\overbrace") and k + 1 < len(toks) and \
                        toks[k + 1].text in ("_", "^"):
                    a = k + 2
                    b = match_brace(toks, a) if a < len(toks) and toks[a].text == "{" else a
                    drop.update(range(k + 1, b + 1))
            i = j
            continue
        if i not in drop:
            out.append(t)
        i += 1
    return [t for t in out]


def _depth_row(row: list[Tok]) -> list[int]:
    """Bracket depth before every token ({}, (), [], and a ``cases`` environment, whose
    conditions ``p = i`` are no relations of the row)."""
    d = 0
    out = []
    for k, t in enumerate(row):
        if t.text in ("}", ")", "]", r"\}", r"\rangle"):
            d -= 1
        elif t.text == r"\end" and _cases_at(row, k):
            d -= 1
        out.append(d)
        if t.text in ("{", "(", "[", r"\{", r"\langle"):
            d += 1
        elif t.text == r"\begin" and _cases_at(row, k):
            d += 1
    return out


def _cases_at(row: list[Tok], k: int) -> bool:
    return "".join(t.text for t in row[k + 1:k + 8]) == "{cases}"


def _relations(row: list[Tok]) -> list[tuple[int, int, str]]:
    """Top-level relations of a row: (first token, last token, kind). ``+=``, ``\\mathrel{+}=``
    (unwrapped to ``+ =``) and ``:=`` are one relation."""
    depth = _depth_row(row)
    out: list[tuple[int, int, str]] = []
    for k, t in enumerate(row):
        if depth[k] != 0 or t.text not in RELATIONS:
            continue
        kind = RELATIONS[t.text]
        first = k
        if t.text == "=" and k > 0 and row[k - 1].text == "+" and (k < 2 or row[k - 2].text
                                                                   not in ("(", "{")):
            kind, first = "+=", k - 1
        elif t.text == "=" and k > 0 and row[k - 1].text == ":":
            kind, first = ":=", k - 1
        out.append((first, k, kind))
    return out


def _split_equations(row: list[Tok]) -> list[list[Tok]]:
    """Several equations on one row (``a = b, \\quad c = d``): split at a top-level separator
    with a relation on both sides."""
    depth = _depth_row(row)
    cuts: list[tuple[int, int]] = []  # (separator start, separator end)
    k = 0
    while k < len(row):
        t = row[k]
        if depth[k] == 0 and t.text in _SEPARATORS:
            j = k
            if t.text == r"\text":
                if k + 1 < len(row) and row[k + 1].text == "{":
                    j = match_brace(row, k + 1)
                    words = "".join(x.text for x in row[k + 2:j]).strip(" ,.").lower()
                    if words not in ("and", "", ",", "or"):
                        k = j + 1
                        continue
                else:
                    k += 1
                    continue
            while j + 1 < len(row) and row[j + 1].text in _SEPARATORS - {r"\text"}:
                j += 1
            cuts.append((k, j + 1))
            k = j + 1
            continue
        k += 1
    merged: list[tuple[int, int]] = []  # token index ranges
    bounds = []
    prev = 0
    for a, b in cuts:
        bounds.append((prev, a))
        prev = b
    bounds.append((prev, len(row)))
    for a, end in bounds:
        piece = row[a:end]
        if merged and (not _relations(piece) or not _relations(row[merged[-1][0]:merged[-1][1]])):
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((a, end))
    return [row[a:b] for a, b in merged if row[a:b]]


_DIMENSION = re.compile(r"\[-?\d*\.?\d*(?:ex|em|pt|mm|cm|in|mu|pc|bp|sp|dd|cc)\]")


def _row_spacing(toks: list[Tok]) -> list[Tok]:
    """``\\\\[2ex]``: the row break keeps, its optional spacing (a dimension in brackets) goes."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        out.append(toks[i])
        if toks[i].kind == "row" and i + 1 < len(toks) and toks[i + 1].text == "[":
            j = next((k for k in range(i + 1, min(i + 8, len(toks))) if toks[k].text == "]"),
                     None)
            if j is not None and _DIMENSION.fullmatch("".join(t.text for t in toks[i + 1:j + 1])):
                i = j + 1
                continue
        i += 1
    return out


def rows_joined(toks: list[Tok]) -> list[Tok]:
    """The tokens of a right-hand side that runs over several rows, as one row (its row breaks
    and their spacing dropped, its braces and boxes unwrapped): what a repair of such a side
    is read from."""
    return [t for t in _unwrap(_row_spacing(toks)) if t.kind != "row"]


def _rows(toks: list[Tok]) -> list[list[Tok]]:
    rows: list[list[Tok]] = []
    cur: list[Tok] = []
    depth = 0
    env = 0
    for t in _row_spacing(toks):
        if t.text == "{":
            depth += 1
        elif t.text == "}":
            depth -= 1
        elif t.text == r"\begin":
            env += 1
        elif t.text == r"\end":
            env = max(env - 1, 0)
        if (t.kind == "row" or t.text == r"\cr") and depth <= 0 and env == 0:
            rows.append(cur)
            cur = []
            continue
        cur.append(t)
    rows.append(cur)
    return rows


def _trim(toks: list[Tok]) -> list[Tok]:
    """Trailing punctuation ends a sentence, not the math; a trailing connective
    (``\\implies``) leads to the next row."""
    while toks and (toks[-1].text in (",", ".", ";", ":") or toks[-1].text in lx.CONNECTIVES):
        toks = toks[:-1]
    while toks and toks[0].text in (",", ";"):
        toks = toks[1:]
    return toks


def _label_out(row: list[Tok]) -> list[Tok]:
    """``\\text{(Forget Gate) } f^{(t)} = ...``: words that open a row before its left-hand side
    label the equation; the equation starts after them."""
    while len(row) > 3 and row[0].text in (r"\text", r"\textbf", r"\textit", r"\mbox") and \
            row[1].text == "{":
        j = match_brace(row, 1)
        if j + 1 >= len(row) or not _relations(row[j + 1:]) or _relations(row[j + 1:])[0][0] == 0:
            break
        row = row[j + 1:]
    return row


def _unbracket(toks: list[Tok], units: set[str]) -> list[Tok]:
    """``s_{[i]}^{(k)}`` -> ``s^{(k)}``, ``\\delta_{t[i]}`` -> ``\\delta_{t}``: the unit indices
    ``units`` in square brackets dropped (an empty subscript with them)."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text == "[":
            j = next((k for k in range(i + 1, len(toks)) if toks[k].text == "]"), None)
            inner = "".join(x.text for x in toks[i + 1:j]) if j is not None else ""
            if j is not None and inner and set(inner.split(",")) <= units:
                i = j + 1
                if len(out) >= 2 and out[-1].text == "{" and out[-2].text == "_" and \
                        i < len(toks) and toks[i].text == "}":
                    out = out[:-2]
                    i += 1
                continue
        out.append(t)
        i += 1
    return out


def _bracket_units(toks: list[Tok]) -> set[str]:
    text = "".join(t.text for t in toks)
    return {u for m in re.finditer(r"\[([^\[\]]+)\]", text) for u in m.group(1).split(",")}


def underbrace_definitions(seg: Segment) -> list[Equation]:
    """``\\underbrace{\\frac{\\partial J}{\\partial s_{[i]}}}_{\\delta_{[i]}}``: a label in
    symbols under a brace names what the brace holds, ``label = content`` (a label in words,
    ``\\text{Local}``, names nothing). An element's name for an element's expression, with the
    same unit indices in brackets, names the whole vector too."""
    clean = _BLANK_IN_MATH.sub(lambda m: " " * len(m.group()), seg.text)
    toks = strip_layout(tokenize(clean, seg.start))
    out: list[Equation] = []
    for i, t in enumerate(toks):
        if t.text not in (r"\underbrace", r"\overbrace") or i + 1 >= len(toks) or \
                toks[i + 1].text != "{":
            continue
        k = match_brace(toks, i + 1)
        if k + 2 >= len(toks) or toks[k + 1].text not in ("_", "^"):
            continue
        a = k + 2
        label = toks[a + 1:match_brace(toks, a)] if toks[a].text == "{" else [toks[a]]
        content = _unwrap(toks[i + 2:k])
        dollars = [n for n, x in enumerate(label) if x.text == "$"]
        if label and label[0].text == r"\text" and len(dollars) == 2:
            label = label[dollars[0] + 1:dollars[1]]   # \text{Call it $c_{[i]}$}
        if not label or not content or any(x.text.startswith(r"\text") or x.text in
                                           (r"\substack", "?", "=") for x in label):
            continue
        if label[0].kind not in ("letter", "cmd") or _relations(content):
            continue
        units = _bracket_units(label)
        if units and units <= _bracket_units(content) and units == _bracket_units(content):
            label, content = _unbracket(label, units), _unbracket(content, units)
        out.append(Equation(list(label), [list(content)], ["="], seg))
    return out


def _number_out(toks: list[Tok]) -> list[Tok]:
    """``\\qquad (7.1)``: an equation's number written by hand, not its math."""
    out: list[Tok] = []
    i = 0
    while i < len(toks):
        if toks[i].text in (r"\qquad", r"\quad") and i + 3 < len(toks) and \
                toks[i + 1].text == "(" and toks[i + 2].kind == "num" and \
                toks[i + 3].text == ")" and (i + 4 == len(toks) or toks[i + 4].kind == "row" or
                                             toks[i + 4].text in ("}", r"\end")):
            i += 4
            continue
        out.append(toks[i])
        i += 1
    return out


def equations(seg: Segment) -> list[Equation]:
    """The equations of one segment, in order (see the module docstring)."""
    clean = _BLANK_IN_MATH.sub(lambda m: " " * len(m.group()), seg.text)
    toks = _unwrap(_number_out(tokenize(clean, seg.start)))
    out: list[Equation] = []
    cur: Equation | None = None
    for row in _rows(toks):
        row = _label_out(_trim(strip_layout(row)))
        if not row:
            continue
        for piece in _split_equations(row):
            piece = _trim(piece)
            rels = _relations(piece)
            if not rels:
                if cur is not None and cur.rhs and seg.display:
                    cur.rhs[-1].extend(piece)
                continue
            first = rels[0][0]
            lhs = piece[:first]
            parts = [piece[b + 1:(rels[n + 1][0] if n + 1 < len(rels) else len(piece))]
                     for n, (_, b, _) in enumerate(rels)]
            if lhs or cur is None:
                cur = Equation(lhs, [], [], seg)
                out.append(cur)
            cur.rhs.extend(_trim(p) for p in parts)
            cur.rels.extend(kind for _, _, kind in rels)
            cur.rel_toks.extend(piece[a] for a, _, _ in rels)
    return out
