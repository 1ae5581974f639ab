"""Unicode terminal printer: ``derive show``.

The derivation is printed from the same model as the LaTeX documents
(:mod:`derive.document.latex_doc`: the forward form of seed 001 eq 26, the BPTT recursions of seed
002, the state Jacobian and the gradient flow results), with every LaTeX atom converted to Unicode
by :func:`to_unicode`: d(oₜ), d(σ′(sₜ)), d₂(hₜ₋₁), ∂hₜ/∂W_f, W_oᵀ, s̃ₜ, ‖W_ho‖₂ ≤ …, Πⱼ₌ₖ₊₁ᵗ.
Time indices (t, t-1, j-1, t-k, k+1) and digits become Unicode subscripts; other subscripts stay
as ``_f``, ``_xi``, ``_j`` (Unicode has no subscript for most letters, and a lone letter may be
a name), so W_f and W_xi read alike. A matrix prints as ``(a, b; c, d)``. Long equations break
before a '+' or '-' to fit the terminal width.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..spec.activations import ACTIVATIONS
from .latex_doc import MODES, Block, Item, Style, layout, render_flat, sections

if TYPE_CHECKING:
    from ..calculus.derivation import Derivation
    from ..printing.notation import Notation

_SUB = dict(zip("0123456789+-=()taehijklmnoprsuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₜₐₑₕᵢⱼₖₗₘₙₒₚᵣₛᵤᵥₓ",
                strict=True))
_SUP = dict(zip("0123456789+-=()ABDEGHIJKLMNOPRTUVWnit",
                "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂⁿⁱᵗ", strict=True))
_COMMANDS = {
    "sigma": "σ", "tanh": "tanh", "odot": "⊙", "partial": "∂", "ell": "ℓ", "delta": "δ",
    "top": "ᵀ", "sum": "Σ", "prod": "Π", "otimes": "⊗", "cdot": "·", "times": "×", "ast": "∗",
    "alpha": "α", "beta": "β", "gamma": "γ", "theta": "θ", "Theta": "Θ", "eta": "η",
    "lambda": "λ", "mu": "μ", "nu": "ν", "phi": "φ", "varphi": "φ", "psi": "ψ", "omega": "ω",
    "epsilon": "ε", "varepsilon": "ε", "rho": "ρ", "tau": "τ", "xi": "ξ", "zeta": "ζ",
    "kappa": "κ", "chi": "χ", "pi": "π", "Sigma": "Σ", "Delta": "Δ", "Gamma": "Γ", "Phi": "Φ",
    "Psi": "Ψ", "Omega": "Ω", "Lambda": "Λ", "prime": "′", "nabla": "∇", "infty": "∞",
    "ldots": "…", "cdots": "⋯", "exp": "exp", "log": "log", "quad": "  ", "qquad": "    ",
    "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥", "approx": "≈", "ne": "≠", "neq": "≠",
    "sim": "∼", "equiv": "≡", "max": "max", "min": "min",
}
_OPS = {"Σ", "Π", "max", "min"}  # their limits print as sub- and superscripts where Unicode can
_MATRICES = {"pmatrix": ("(", ")"), "bmatrix": ("[", "]"), "vmatrix": ("|", "|"),
             "Vmatrix": ("‖", "‖"), "matrix": ("", "")}
_ACCENTS = {"tilde": "\u0303", "widetilde": "\u0303", "hat": "\u0302", "widehat": "\u0302",
            "bar": "\u0304", "overline": "\u0305", "vec": "\u20d7", "dot": "\u0307",
            "ddot": "\u0308", "check": "\u030c", "breve": "\u0306", "underline": "\u0332"}
_DELIMS = {"left", "right", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "Biggl", "Biggr",
           "big", "Big", "bigg", "Bigg"}
# a time index: t, t-1, t-k-1, j-1, k+1 (a lone i, j, k, l may be a name: W_i stays W_i) or digits
_TIME = re.compile(r"(t|[ijkl](?=[-+]))([-+](\d+|[tijkl]))*|\d+")
_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[{}_^']|\s+|[^\\{}_^'\s]")
_GLUE = {"partial", "delta", "nabla"}  # printed against their operand: ∂h, δh


def display_width(s: str) -> int:
    """Terminal columns of s (combining marks take none)."""
    return sum(0 if unicodedata.combining(c) else 1 for c in s)


class _Conv:
    def __init__(self, latex: str):
        self.toks = _TOKEN.findall(latex)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        self.i += 1
        return self.toks[self.i - 1]

    def arg(self) -> str:
        """The next argument, converted."""
        while self.peek() is not None and self.peek().isspace():
            self.take()
        if self.peek() is None:
            return ""
        if self.peek() != "{":
            return self.one(self.take())
        self.take()
        depth, start = 1, self.i
        while self.peek() is not None:
            tok = self.take()
            depth += {"{": 1, "}": -1}.get(tok, 0)
            if depth == 0:
                break
        return _convert_tokens(self.toks[start:self.i - 1])

    def one(self, tok: str) -> str:
        return _convert_tokens([tok])


def _script(text: str, table: dict[str, str], mark: str, time_only: bool) -> str:
    plain = text.replace(" ", "")
    if plain and all(c in table for c in plain) and (not time_only or _TIME.fullmatch(plain)):
        return "".join(table[c] for c in plain)
    if re.search(r".[-+]", plain):  # x^(t-k), not x^t-k
        return f"{mark}({plain})"
    return mark + plain


def _wrap(s: str) -> str:
    """Parenthesise a numerator or denominator that is more than one symbol (what is inside its
    own parentheses does not count)."""
    top = s.strip()
    while re.search(r"\([^()]*\)", top):
        top = re.sub(r"\([^()]*\)", "", top)
    return f"({s})" if re.search(r"[ +\-⊙]", top) else s


def _op_script(text: str, table: dict[str, str], mark: str) -> str:
    """A limit of Σ, Π, max: in Unicode sub- or superscripts where every character has one."""
    plain = text.replace(" ", "")
    if plain and all(c in table for c in plain):
        return "".join(table[c] for c in plain)
    return mark + (plain if len(plain) == 1 else f"({plain})")


def _matrix(c: _Conv, env: str) -> str:
    """A matrix environment (after its \\begin{...}) as ``(a, b; c, d)``."""
    rows: list[list[list[str]]] = [[[]]]
    depth = 1
    while c.peek() is not None:
        tok = c.take()
        depth += {r"\begin": 1, r"\end": -1}.get(tok, 0)
        if depth == 0:
            c.arg()
            break
        if tok == "\\\\" and depth == 1:
            rows.append([[]])
        elif tok == "&" and depth == 1:
            rows[-1].append([])
        else:
            rows[-1][-1].append(tok)
    opener, closer = _MATRICES.get(env, ("(", ")"))
    body = "; ".join(", ".join(_convert_tokens(cell).strip() for cell in row) for row in rows)
    return opener + body + closer


@functools.lru_cache(maxsize=8)
def _activation_tokens(pairs: tuple[tuple[str, str], ...]) -> list[tuple[list[str], str]]:
    return sorted(((_TOKEN.findall(latex), uni) for latex, uni in pairs),
                  key=lambda p: -len(p[0]))


def _activation_at(c: _Conv, tok: str) -> str | None:
    """The terminal name (record's ``unicode``) of the activation whose LaTeX name starts at
    ``tok``, consuming the rest of that name; None where none does."""
    pairs = tuple((a.latex, a.unicode) for a in ACTIVATIONS.values())
    for toks, uni in _activation_tokens(pairs):
        if toks[0] == tok and c.toks[c.i:c.i + len(toks) - 1] == toks[1:]:
            c.i += len(toks) - 1
            return uni
    return None


def _convert_tokens(toks: list[str]) -> str:
    c = _Conv("")
    c.toks = toks
    out: list[str] = []
    op = False  # the last thing printed is an operator with limits (Σ, Π, max)
    while c.peek() is not None:
        tok = c.take()
        if tok.isspace():
            if out and not out[-1].endswith(" "):
                out.append(" ")
            continue
        if tok in ("{", "}"):
            continue
        if tok == "_":
            arg = c.arg()
            out.append(_op_script(arg, _SUB, "_") if op else
                       _script(arg, _SUB, "_", time_only=True))
            continue
        if tok == "^":
            arg = c.arg()
            out.append(_op_script(arg, _SUP, "^") if op else
                       arg if arg == "ᵀ" else _script(arg, _SUP, "^", time_only=False))
            continue
        op = False
        if tok == "'":
            out.append("′")
            continue
        if tok.startswith("\\"):
            act = _activation_at(c, tok)
            if act is not None:
                out.append(act)
                continue
            name = tok[1:].strip()
            if name in ("frac", "tfrac", "dfrac"):
                num, den = c.arg(), c.arg()
                out.append(f"{_wrap(num)}/{_wrap(den)}")
            elif name == "begin":
                out.append(_matrix(c, c.arg().strip()))
            elif name == "mathrm" and c.peek() == "{" and c.toks[c.i + 1:c.i + 3] == ["d", "}"]:
                out.append(c.arg())  # the d of a total derivative, printed against its operand
                while c.peek() is not None and c.peek().isspace():
                    c.take()
            elif name in _ACCENTS:
                arg = c.arg()
                out.append(arg + _ACCENTS[name])
            elif name in ("mathrm", "mathbf", "mathit", "mathsf", "mathcal", "boldsymbol",
                          "operatorname", "text", "textrm", "mathtt", "bm"):
                out.append(c.arg())
            elif name in ("vphantom", "phantom"):
                c.arg()
            elif name in _DELIMS:
                delim = c.take() if c.peek() is not None else ""
                out.append("" if delim == "." else "‖" if delim == "\\|" else delim)
            elif name in _COMMANDS:
                out.append(_COMMANDS[name])
                op = _COMMANDS[name] in _OPS
                if name in _GLUE:
                    while c.peek() is not None and c.peek().isspace():
                        c.take()
            elif name in (",", ";", ":", " "):
                out.append(" ")
            elif name == "!":
                continue
            elif name == "|":
                out.append("‖")
            elif len(name) == 1 and not name.isalpha():
                out.append(name)  # \{ \} \_ ...
            else:
                out.append(name)
            continue
        out.append(tok)
    return "".join(out)


def to_unicode(latex: str) -> str:
    """Readable Unicode of one of derive's LaTeX strings (math mode)."""
    return re.sub(r" {2,}", " ", _convert_tokens(_TOKEN.findall(latex))).strip()


TEXT = Style(lambda s: float(display_width(s)), to_unicode,
             opener=lambda h, f: "(" if h == 1 else "[",
             closer=lambda h, f: ")" if h == 1 else "]")
"""Terminal style: widths in columns, brackets ( ) innermost and [ ] around them."""


WIDE_LHS = 0.4
"""A left-hand side wider than this share of the line gets a line of its own (as in LaTeX)."""


def block_lines(block: Block, width: int = 100, indent: int = 2) -> list[str]:
    """The rows of a block laid out for a terminal ``width`` columns wide, relations aligned
    (=, ≤, ≈); a chain of :attr:`~derive.document.latex_doc.Row.inline` right-hand sides continues
    on its line while it fits. A left-hand side wider than :data:`WIDE_LHS` of the line is printed
    on lines of its own, its relation below it."""
    lhs = [to_unicode(r.lhs) for r in block.rows]
    avail = width - indent
    wide = [display_width(x) > WIDE_LHS * avail for x in lhs]
    lw = max((display_width(x) for x, big in zip(lhs, wide, strict=True) if not big), default=0)
    if any(wide):
        lw = max(lw, 2)
    room = max(20, width - indent - lw - 3)
    out: list[str] = []
    for row, left, big in zip(block.rows, lhs, wide, strict=True):
        if big:
            pieces = layout((Item(1, row.lhs),), TEXT, avail, lambda dep: avail - lw - 3)
            out += [" " * (indent + (lw + 3 if i else 0)) + text
                    for i, (_, text) in enumerate(pieces)]
        pad = " " * (lw - display_width(left))
        for j, (rel, rhs) in enumerate(zip(row.relations, row.rhs, strict=True)):
            sym = to_unicode(rel)
            if j and row.inline:
                more = f" {sym} {render_flat(rhs, TEXT)}"
                if display_width(out[-1]) + display_width(more) <= width:
                    out[-1] += more
                    continue
            broken = layout(rhs, TEXT, room, lambda dep: room - 2 * (dep + 1))
            for i, (dep, text) in enumerate(broken):
                if i == 0:
                    head = (pad + left) if j == 0 and not big else " " * lw
                    out.append(" " * indent + head + f" {sym} " + text)
                else:
                    out.append(" " * (indent + lw + 3 + 2 * (dep + 1)) + text)
    return out


def show(cell: str | Derivation, *, modes: Sequence[str] = MODES,
         params: Sequence[str] | None = None, notation: str | Notation | None = None,
         steps: bool = False, width: int = 100) -> str:
    """The derivation of ``cell`` as readable Unicode text (``derive show``); the arguments are
    those of :func:`derive.document.latex_doc.document`."""
    from ..calculus.derivation import Derivation, derive
    from ..printing import notation as notation_mod

    d = cell if isinstance(cell, Derivation) else derive(cell)
    nm = notation_mod.load(notation).names(d.spec)
    lines: list[str] = []
    for sec in sections(d, modes, params, nm, steps):
        if lines:
            lines.append("")
        title = f"{d.name}: {sec.title}"
        lines += [title, "=" * display_width(title)]
        for block in sec.blocks:
            title = block.title
            if block.param:
                title = f"parameter {to_unicode(nm.get(block.param, block.param))}"
            lines.append(f"[{title}]")
            lines += block_lines(block, width)
    return "\n".join(lines) + "\n"
