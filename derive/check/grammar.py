"""The grammar of one side of a hand-written equation (issue 16, items 3 and 6).

Read as a person would read it, in this order (``|`` alternatives, ``[]`` optional,
``{}`` repeated)::

    side     := [sign] term {sign term}                      sign: + - (lexicon.SIGNS)
    term     := factor {[product] factor}                    product: lexicon.PRODUCTS
    factor   := big | postfix
    big      := (\\sum | \\prod) [_{var[=lo]}] [^{hi}] term  a sum over time or over units
              | \\sum_{a \\in \\{f, i, o\\}} term               a sum over named gates
    postfix  := primary {^T | ^2 | ^{(..)} | '}              transpose, power, prime
    primary  := number | \\frac{a}{b} | derivative | adjoint | call | diag(..) | delta(a,b)
              | ( side ) | [ side ] | [ a, b ] (a stack) | { side } | atom | \\cdots
              | \\begin{cases} side, & index rel index \\\\ ... \\end{cases}   by cases of units
    derivative := \\frac{\\partial u}{\\partial v} | \\frac{du}{dv} | \\nabla_{v} u
              | \\partial_{v} u | \\frac{d}{dv} u | \\frac{d\\sigma}{dv} (sigma' at v)
              | \\frac{\\partial u}{c \\cdot \\partial v} (a factor beside the variable)
    adjoint  := \\delta atom                                 \\delta c^t: dE/dc^t
    call     := activation [_{name}] [^2 | '] ( side )        \\sigma, \\tanh, \\text{tanh}, \\phi'
              | \\text{prod}( side, side )                     the chain-rule product (d2l)
              | f(side, side, ...)                            an abstract function (f, g, l, \\ell)
              | e^{side}                                      the exponential
    expect   := \\mathbf{E}[ side ] | \\Pr( atom = side )       an expectation, a probability
    atom     := base [_{sub}] [^{sup}] {'}                   W_{xf}, h^{(t)}, \\hat{a}^t, y_t^k
    stack    := [ a, b ] | ( a \\vert b )                     a concatenation

What a symbol *means* (a node at a time, a parameter, a unit index) is not decided here:
:mod:`derive.check.meaning` resolves atoms against the author's cell. Every node keeps the
offsets of its first and last token, so a verdict can quote and correct the author's text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from . import lexicon as lx
from .tokens import ACCENTS, Tok, canon, match_brace


class SyntaxProblem(Exception):
    """A side cannot be read: ``tok`` is where, ``message`` what."""

    def __init__(self, message: str, tok: Tok | None):
        super().__init__(message)
        self.message = message
        self.tok = tok


@dataclass(frozen=True)
class Node:
    span: tuple[int, int] = field(default=(0, 0), compare=False, kw_only=True)


@dataclass(frozen=True)
class Num(Node):
    value: Fraction


@dataclass(frozen=True)
class Atom(Node):
    base: str
    sub: str | None = None
    sup: str | None = None
    primes: int = 0

    @property
    def text(self) -> str:
        s = self.base
        if self.sub is not None:
            s += "_{" + self.sub + "}"
        if self.sup is not None:
            s += "^{" + self.sup + "}"
        return s + "'" * self.primes


@dataclass(frozen=True)
class Call(Node):
    fn: str            # lexicon name (sigma, tanh, ...) or the generic symbol (\phi, \sigma_h)
    arg: Node | None   # None: written without its argument (\sigma_h')
    power: int = 1
    primes: int = 0


@dataclass(frozen=True)
class Diag(Node):
    arg: Node


@dataclass(frozen=True)
class Kron(Node):
    a: str
    b: str


@dataclass(frozen=True)
class Loss(Node):
    name: str
    sub: str | None = None
    step: str | None = None     # J^{(t)}: the loss of step t alone


@dataclass(frozen=True)
class Deriv(Node):
    num: Node
    den: Node


@dataclass(frozen=True)
class Adj(Node):
    of: Node


@dataclass(frozen=True)
class Add(Node):
    terms: tuple[tuple[int, Node], ...]


@dataclass(frozen=True)
class Mul(Node):
    factors: tuple[Node, ...]
    ops: tuple[str, ...]  # one per gap: lexicon.PRODUCTS kinds


@dataclass(frozen=True)
class Div(Node):
    a: Node
    b: Node


@dataclass(frozen=True)
class Pow(Node):
    base: Node
    exp: int | str   # a number, or an integer expression of times and indices (T-i)


@dataclass(frozen=True)
class Tr(Node):
    of: Node


@dataclass(frozen=True)
class Big(Node):
    op: str            # sum | prod
    var: str | None
    lo: str | None
    hi: str | None
    body: Node
    members: tuple[str, ...] | None = None   # \sum_{a \in \{f, i, o\}}: the names a takes


@dataclass(frozen=True)
class Expect(Node):
    """``\\mathbf{E}[x]``: the expectation of x over the document's random variables."""

    of: Node


@dataclass(frozen=True)
class Prob(Node):
    """``\\Pr(\\xi_t = v)``: the probability that a random variable takes a value."""

    var: Node
    value: Node


@dataclass(frozen=True)
class Stack(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Cases(Node):
    """``\\begin{cases} v_1, & p = i \\\\ v_2, & p \\ne i \\end{cases}``: a value by cases of
    unit indices. ``branches``: (condition, value); a condition is (index, relation, index)
    with the relation one of ``= != < > <= >=``, or None for "otherwise"."""

    branches: tuple[tuple[tuple[str, str, str] | None, Node], ...]


@dataclass(frozen=True)
class Elided(Node):
    text: str


@dataclass(frozen=True)
class Bar(Node):
    of: Node
    sub: str


_STOP_TERM = {"+", "-", ")", "]", "}", r"\pm", r"\oplus", ","}
_FONT_CMDS = {r"\mathbf", r"\mathbb", r"\mathrm", r"\operatorname", r"\mathcal", r"\mathsf"}
_OPEN_CLOSE = {"(": ")", "[": "]", r"\lbrack": r"\rbrack", r"\{": r"\}", r"\langle": r"\rangle"}


def _close_of(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at i (any of (), [], \\{\\})."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text in _OPEN_CLOSE:
            depth += 1
        elif toks[j].text in _OPEN_CLOSE.values():
            depth -= 1
            if depth == 0:
                return j
    raise SyntaxProblem(f"{toks[i].text!r} is never closed", toks[i])
_FUNC_TAKES_ARG = {"(", "[", r"\lbrack"}


class Reader:
    """Recursive descent over the tokens of one side (see the module docstring)."""

    def __init__(self, toks: list[Tok], text: str):
        self.toks = toks
        self.text = text
        self.i = 0

    # -- helpers -------------------------------------------------------------------------
    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if 0 <= j < len(self.toks) else None

    def t(self, k: int = 0) -> str:
        p = self.peek(k)
        return p.text if p is not None else ""

    def fail(self, msg: str, tok: Tok | None = None) -> SyntaxProblem:
        return SyntaxProblem(msg, tok or self.peek() or (self.toks[-1] if self.toks else None))

    def span(self, a: int) -> tuple[int, int]:
        first = self.toks[a] if a < len(self.toks) else self.toks[-1]
        last = self.toks[max(self.i - 1, a)] if self.toks else first
        return (first.pos, last.end)

    def group(self) -> list[Tok]:
        """A ``{..}`` argument or one token."""
        t = self.peek()
        if t is None:
            raise self.fail("expected an argument")
        if t.text != "{":
            self.i += 1
            return [t]
        j = match_brace(self.toks, self.i)
        if self.toks[j].text != "}":
            raise self.fail("unbalanced '{'", t)
        inner = self.toks[self.i + 1:j]
        self.i = j + 1
        return inner

    def sub_reader(self, toks: list[Tok]) -> Reader:
        return Reader(toks, self.text)

    def whole(self, toks: list[Tok]) -> Node:
        r = self.sub_reader(toks)
        n = r.side()
        r.finish()
        return n

    def finish(self) -> None:
        if self.i < len(self.toks):
            t = self.peek()
            assert t is not None
            extra = " (unbalanced brackets?)" if t.text in (")", "]", "}") else ""
            raise self.fail(f"unexpected {t.text!r}{extra}", t)

    # -- grammar ---------------------------------------------------------------------------
    def side(self) -> Node:
        a = self.i
        terms: list[tuple[int, Node]] = []
        sign = 1
        if self.t() in lx.SIGNS or self.t() == r"\pm":
            sign = lx.SIGNS.get(self.t(), 1)
            self.i += 1
        terms.append((sign, self.term()))
        while self.t() in lx.SIGNS or self.t() == r"\pm":
            sign = lx.SIGNS.get(self.t(), 1)
            self.i += 1
            if self.peek() is None:
                raise self.fail("a term is missing after the last sign", self.toks[-1])
            terms.append((sign, self.term()))
        if len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return Add(tuple(terms), span=self.span(a))

    def term(self) -> Node:
        a = self.i
        factors: list[Node] = []
        ops: list[str] = []
        op = ""
        while self.peek() is not None and self.t() not in _STOP_TERM and \
                self.t() not in ("=",):
            if self.t() in lx.PRODUCTS and self.t() != "":
                if not factors:
                    raise self.fail(f"{self.t()} with nothing on its left")
                op = self.t()
                self.i += 1
                if self.peek() is None or self.t() in _STOP_TERM:
                    raise self.fail(f"{op} with nothing on its right", self.toks[self.i - 1])
                continue
            f = self.factor()
            if factors:
                ops.append(lx.PRODUCTS[op])
            factors.append(f)
            op = ""
        if not factors:
            t = self.peek()
            what = repr(t.text) if t is not None else "the end"
            raise self.fail(f"expected a term, found {what}")
        if len(factors) == 1:
            return factors[0]
        return Mul(tuple(factors), tuple(ops), span=self.span(a))

    def factor(self) -> Node:
        a = self.i
        if self.t() in (r"\sum", r"\prod", r"\Pi"):
            op = "sum" if self.t() == r"\sum" else "prod"
            self.i += 1
            var = lo = hi = None
            members: tuple[str, ...] | None = None
            while self.t() in ("_", "^", r"\limits"):
                if self.t() == r"\limits":
                    self.i += 1
                    continue
                which = self.t()
                self.i += 1
                grp = self.group()
                arg = canon(grp)
                if which == "_" and any(tk.text == r"\in" for tk in grp):
                    var, members = _members(grp)
                elif which == "_":
                    if "=" in arg:
                        var, lo = (s.strip() for s in arg.split("=", 1))
                    else:
                        var = arg
                else:
                    hi = arg
            if self.peek() is None or self.t() in _STOP_TERM:
                raise self.fail(f"\\{op} with nothing to {op}")
            body = self.term()
            return Big(op, var, lo, hi, body, members, span=self.span(a))
        return self.postfix()

    def postfix(self) -> Node:
        a = self.i
        node = self.primary()
        while True:
            if self.t() == "^":
                self.i += 1
                sup = self.group()
                txt = canon(sup)
                if txt in lx.TRANSPOSES and txt != "t":
                    node = Tr(node, span=self.span(a))
                elif txt.isdigit():
                    node = Pow(node, int(txt), span=self.span(a))
                elif txt in (r"\prime", "'"):
                    node = _prime(node, self.span(a))
                elif re.fullmatch(r"-\d+", txt):
                    node = Pow(node, int(txt), span=self.span(a))
                elif re.fullmatch(r"[A-Za-z](?:[+-](?:[A-Za-z]|\d+))+", txt.replace(" ", "")):
                    # a power counted in steps: (W^T)^{T-i}
                    node = Pow(node, txt.replace(" ", ""), span=self.span(a))
                else:
                    raise self.fail(f"unexpected superscript {txt!r}", sup[0] if sup else None)
            elif self.t() == "'":
                self.i += 1
                node = _prime(node, self.span(a))
            elif self.t() == "_" and isinstance(node, (Bar,)):
                break
            else:
                break
        return node

    def primary(self) -> Node:
        a = self.i
        t = self.peek()
        if t is None:
            raise self.fail("expected a term")
        x = t.text
        if t.kind == "num":
            self.i += 1
            return Num(Fraction(x), span=self.span(a))
        if x in lx.ELLIPSES:
            self.i += 1
            return Elided(x, span=self.span(a))
        if x in (r"\frac", r"\dfrac", r"\tfrac"):
            return self.frac()
        if x == r"\nabla":
            self.i += 1
            den: Node | None = None
            if self.t() == "_":
                self.i += 1
                den = self.whole(self.group())
            arg = self.postfix_atom_or_group()
            if den is None:
                raise self.fail(r"\nabla without the variable (\nabla_x)", t)
            return Deriv(arg, den, span=self.span(a))
        if x == r"\partial":
            if self.t(1) == "_":   # \partial_w L, \partial_{o_t} l(y_t, o_t): an operator
                self.i += 2
                den_op = self.whole(self.group())
                if self.peek() is None or self.t() in _STOP_TERM:
                    raise self.fail(r"\partial_v without what it differentiates", t)
                return Deriv(self.operand(), den_op, span=self.span(a))
            raise self.fail(r"\partial outside \frac{\partial u}{\partial v}", t)
        if x in _FONT_CMDS and self.t(1) == "{" and self.t(2) == "E" and self.t(3) == "}" \
                and self.t(4) in ("[", "("):
            self.i += 4   # \mathbf{E}[x], \mathbb{E}[x]: an expectation
            return Expect(self.bracket(), span=self.span(a))
        if x == r"\Pr" and self.t(1) in ("(", "["):
            return self.probability()
        if x == "e" and t.kind == "letter" and self.t(1) == "^":
            grp_at = self.i + 2
            if grp_at < len(self.toks):
                end = match_brace(self.toks, grp_at) if self.t(2) == "{" else grp_at
                grp = self.toks[grp_at + 1:end] if self.t(2) == "{" else [self.toks[grp_at]]
                txt = canon(grp).replace(" ", "")
                if grp and not _time_like(txt) and not re.fullmatch(r"[ijkmn]|\(.*\)", txt):
                    self.i = end + 1   # e^{-x}: the exponential
                    return Call("exp", self.whole(grp), span=self.span(a))
        if x == r"\delta":
            nxt = self.peek(1)
            if nxt is not None and nxt.text in ("(", r"\left"):
                return self.kron()
            if nxt is not None and nxt.text not in ("_", "^", "'", "{") and nxt.kind != "num" \
                    and nxt.text not in _STOP_TERM:
                self.i += 1
                of = self.postfix_atom_or_group()
                return Adj(of, span=self.span(a))
        env = _env_at(self.toks, self.i) if x == r"\begin" else None
        if env is not None and env[0] == "cases":
            return self.cases(env[1])
        if x in (r"\mathbb", ) and self.t(1) == "{" and self.t(2) == "1":
            raise self.fail("an indicator \\mathbb{1}: not a quantity of the cell", t)
        if x in ("(", "[", r"\lbrack", r"\{", r"\langle"):
            return self.bracket()
        if x == "{":
            inner = self.group()
            node = self.whole(inner) if inner else Num(Fraction(1))
            return _respan(node, self.span(a))
        if x in (r"\|", r"\Vert", r"\lVert"):
            raise self.fail("a norm, not an equation between values", t)
        if x in ("|", r"\vert"):
            if self.t(1) == "_":
                raise self.fail("an evaluation bar |_{...} (a part of a derivative), not a "
                                "whole value", t)
            raise self.fail("an absolute value or a norm", t)
        fn = self.function_name()
        if fn is not None:
            return self.call(fn, a)
        return self.atom()

    def cases(self, body: int) -> Node:
        """``\\begin{cases} value, & condition \\\\ ... \\end{cases}`` (the ``&`` is gone
        by now): each row split at its last top-level comma, or where its words begin."""
        a = self.i
        j, depth, after = body, 1, body
        while j < len(self.toks):
            env = _env_at(self.toks, j)
            if env is not None and env[0] == "cases":
                depth += 1 if self.toks[j].text == r"\begin" else -1
                if depth == 0:
                    after = env[1]
                    break
                j = env[1]
                continue
            j += 1
        if depth:
            raise self.fail(r"\begin{cases} without its \end{cases}", self.toks[a])
        rows = _split_top(self.toks[body:j], {"\\\\", r"\cr"})
        self.i = after
        branches = []
        for row in rows:
            if not row:
                continue
            cut = _case_cut(row)
            if cut is None:
                raise self.fail("a case without its condition (value, & condition)", row[0])
            value, cond = row[:cut], row[cut:]
            while cond and cond[0].text == ",":
                cond = cond[1:]
            if not value:
                raise self.fail("a case without its value", row[0])
            branches.append((_condition(cond, self.fail), self.whole(value)))
        if not branches:
            raise self.fail("an empty \\begin{cases}", self.toks[a])
        return Cases(tuple(branches), span=self.span(a))

    def operand(self) -> Node:
        """What ``\\partial_v`` or ``\\frac{d}{dv}`` differentiates: the factor that follows
        (a loss's name read as the loss)."""
        node = self.postfix()
        if isinstance(node, Atom) and _is_loss(node):
            return Loss(node.base, node.sub, span=node.span)
        return node

    def probability(self) -> Node:
        """``\\Pr(\\xi_t = v)``."""
        a = self.i
        self.i += 1
        close = _close_of(self.toks, self.i)
        inner = self.toks[self.i + 1:close]
        eq = [k for k, tk in enumerate(inner) if tk.text == "="]
        if len(eq) != 1:
            raise self.fail(r"\Pr(...) without one '='", self.toks[a])
        self.i = close + 1
        return Prob(self.whole(inner[:eq[0]]), self.whole(inner[eq[0] + 1:]),
                    span=self.span(a))

    def postfix_atom_or_group(self) -> Node:
        if self.t() == "{":
            a = self.i
            inner = self.group()
            return _respan(self.whole(inner), self.span(a))
        if self.t() in ("(", "["):
            return self.bracket()
        return self.atom()

    def kron(self) -> Node:
        a = self.i
        self.i += 1  # \delta
        if self.t() == r"\left":
            self.i += 1
        self.i += 1  # (
        j = self.i
        depth = 1
        while j < len(self.toks):
            if self.toks[j].text == "(":
                depth += 1
            elif self.toks[j].text == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        inner = self.toks[self.i:j]
        parts = canon(inner).replace(r"\right", "").split(",")
        if len(parts) != 2:
            raise self.fail("expected \\delta(a, b)", self.toks[a])
        self.i = j + 1
        return Kron(parts[0].strip(), parts[1].strip(), span=self.span(a))

    def bracket(self) -> Node:
        a = self.i
        open_ = self.t()
        close = {"(": ")", "[": "]", r"\lbrack": r"\rbrack", r"\{": r"\}",
                 r"\langle": r"\rangle"}[open_]
        depth = 0
        j = self.i
        while j < len(self.toks):
            tx = self.toks[j].text
            if tx in ("(", "[", r"\lbrack", r"\{", r"\langle"):
                depth += 1
            elif tx in (")", "]", r"\rbrack", r"\}", r"\rangle"):
                depth -= 1
                if depth == 0:
                    if tx != close:
                        raise self.fail(f"{open_!r} closed by {tx!r}", self.toks[j])
                    break
            j += 1
        else:
            raise self.fail(f"{open_!r} is never closed", self.toks[a])
        inner = self.toks[self.i + 1:j]
        self.i = j + 1
        if not inner:
            raise self.fail("empty brackets", self.toks[a])
        items = self.stack_items(inner)
        if items is not None:
            return Stack(tuple(self.whole(p) for p in items), span=self.span(a))
        return _respan(self.whole(inner), self.span(a))

    def stack_items(self, inner: list[Tok]) -> list[list[Tok]] | None:
        """``[x_t, h_{t-1}]`` or ``[x^t \\ h^{t-1}]``: the items of a stacked vector, or None."""
        depth = 0
        cuts = []
        for k, tk in enumerate(inner):
            if tk.text in ("(", "[", "{"):
                depth += 1
            elif tk.text in (")", "]", "}"):
                depth -= 1
            elif depth == 0 and tk.text in (",", ";", "|", r"\vert", r"\mid"):
                cuts.append((k, k + 1))   # (x_t | h_{t-1}): a concatenation
            elif depth == 0 and k > 0:
                gap = self.text[inner[k - 1].end:tk.pos]
                if "\\ " in gap or "\\quad" in gap or "\\;" in gap or "\\," in gap:
                    cuts.append((k, k))
        if not cuts:
            return None
        out = []
        prev = 0
        for x, y in cuts:
            out.append(inner[prev:x])
            prev = y
        out.append(inner[prev:])
        return out if all(out) else None

    def frac(self) -> Node:
        a = self.i
        self.i += 1
        num = self.group()
        den = self.group()
        d_num = _leading_d(num)
        d_den = _leading_d(den)
        scale: list[Tok] = []
        if d_den is None:   # \frac{\partial l}{T \cdot \partial o_t}: a factor beside the variable
            at = [k for k, tk in enumerate(den) if tk.text == r"\partial"]
            if len(at) == 1 and at[0] > 0 and den[at[0] + 1:]:
                scale = [tk for tk in den[:at[0]] if tk.text not in (r"\cdot", "*", r"\,")]
                d_den = den[at[0] + 1:]
        if d_den is not None and _bare_d(num):
            # \frac{d}{dx} f(x): the operator applied to the factor that follows
            if self.peek() is None or self.t() in _STOP_TERM:
                raise self.fail(r"\frac{d}{dx} with nothing to differentiate", self.toks[a])
            return Deriv(self.operand(), _timed_den(self.whole(d_den)), span=self.span(a))
        if d_den is not None:
            if d_num is None:
                if not num:
                    raise self.fail(r"\frac{\partial}{\partial x} applied to what follows "
                                    "is not read", self.toks[a])
                d_num = num  # \frac{h_t}{\partial W}: a missing \partial, tolerated
            if not d_num:
                raise self.fail(r"\frac{\partial}{\partial x} applied to what follows is not read",
                                self.toks[a])
            n = self.numerator(d_num)
            dn = _timed_den(self.whole(d_den))
            if isinstance(n, Atom) and n.sub is None and n.sup is None and \
                    _function_atom(n.base):
                n = Call(_function_atom(n.base), dn, span=n.span)  # d\sigma/dx: sigma at x
            if scale:
                return Div(Deriv(n, dn, span=self.span(a)), self.whole(scale), span=self.span(a))
            return Deriv(n, dn, span=self.span(a))
        if not num or not den:
            raise self.fail("empty fraction", self.toks[a])
        return Div(self.whole(num), self.whole(den), span=self.span(a))

    def numerator(self, toks: list[Tok]) -> Node:
        word = _loss_word(toks)
        if word is not None:   # \partial{loss}: the loss written as a word
            return Loss(word, span=(toks[0].pos, toks[-1].end))
        r = self.sub_reader(toks)
        if len(toks) >= 1:
            at = r.try_atom()
            if at is not None and r.i == len(toks) and _is_loss(at):
                return Loss(at.base, at.sub, span=at.span)
            if at is not None and r.i == len(toks) and at.base in lx.LOSSES and \
                    at.sup is not None and not at.primes and at.sup.strip().startswith("(") \
                    and _time_like(at.sup.strip()[1:-1].replace(" ", "")):
                return Loss(at.base, at.sub, at.sup, span=at.span)   # J^{(t)}
        return self.whole(toks)

    def try_atom(self) -> Atom | None:
        save = self.i
        try:
            return self.atom()
        except SyntaxProblem:
            self.i = save
            return None

    def function_name(self) -> tuple[str, int] | None:
        """The function named at the cursor and the index after its name, or None."""
        t = self.peek()
        if t is None:
            return None
        x = t.text
        j = self.i + 1
        name = None
        if x in lx.NAMED_FUNCTION_CMDS and self.t(1) == "{":
            k = match_brace(self.toks, self.i + 1)
            word = canon(self.toks[self.i + 2:k]).strip()
            j = k + 1
            if word.lower() in lx.ACTIVATIONS or word.lower() in ("diag", "relu"):
                name = word.lower()
            elif word in lx.CHAIN_PRODUCTS:
                name = lx.CHAIN_PRODUCTS[word]
            elif word in lx.ELLIPSES:
                return None
            else:
                return None
        elif x.startswith("\\") and x[1:] in lx.ACTIVATIONS:
            name = x[1:]
        elif x == r"\diag":
            name = "diag"
        elif t.kind == "letter":
            # a word spelled in letters: sigmoid, tanh, diag, softmax
            for word in sorted(lx.ACTIVATIONS, key=len, reverse=True) + ["diag"]:
                n = len(word)
                if "".join(tk.text for tk in self.toks[self.i:self.i + n]) == word and all(
                        tk.kind == "letter" for tk in self.toks[self.i:self.i + n]):
                    nxt = self.toks[self.i + n] if self.i + n < len(self.toks) else None
                    if nxt is not None and nxt.text in ("(", "[", "'", "^", r"\left"):
                        return word, self.i + n
            if x in lx.GENERIC_NAMES and self.t(1) in ("(", "'", r"\left"):
                name = x
            elif x in lx.ABSTRACT_FUNCTIONS and self._list_follows(self.i + 1):
                name = x
        elif x in lx.GENERIC_NAMES and self._called(j):
            name = x
        elif x in lx.ABSTRACT_FUNCTIONS and self._list_follows(j):
            name = x
        if name is None:
            return None
        if name == "sigma" and not self._called(j):
            return None
        return name, j

    def _list_follows(self, j: int) -> bool:
        """A bracket at j holding a top-level comma: the arguments of ``l(y_t, o_t)``."""
        if j >= len(self.toks) or self.toks[j].text != "(":
            return False
        try:
            close = _close_of(self.toks, j)
        except SyntaxProblem:
            return False
        depth = 0
        for tk in self.toks[j + 1:close]:
            if tk.text in _OPEN_CLOSE or tk.text == "{":
                depth += 1
            elif tk.text in _OPEN_CLOSE.values() or tk.text == "}":
                depth -= 1
            elif tk.text == "," and depth == 0:
                return True
        return False

    def _called(self, j: int) -> bool:
        """After a function name at j: optional _{..} and primes/powers, then '(' or '['."""
        k = j
        while k < len(self.toks) and self.toks[k].text in ("_", "^", "'"):
            if self.toks[k].text == "'":
                k += 1
                continue
            k += 1
            if k < len(self.toks) and self.toks[k].text == "{":
                k = match_brace(self.toks, k) + 1
            else:
                k += 1
        if k < len(self.toks) and self.toks[k].text in ("(", "[", r"\left"):
            return True
        # \sigma_y' or \sigma_h': a derivative written without its argument
        return k > j and any(tk.text in ("'",) or tk.text == r"\prime"
                             for tk in self.toks[j:k])

    def call(self, found: tuple[str, int], a: int) -> Node:
        name, j = found
        self.i = j
        sub = None
        power = 1
        primes = 0
        while self.t() in ("_", "^", "'"):
            if self.t() == "'":
                primes += 1
                self.i += 1
                continue
            which = self.t()
            self.i += 1
            arg = canon(self.group())
            if which == "_":
                sub = arg
            elif arg in (r"\prime", "'"):
                primes += 1
            elif arg.isdigit():
                power = int(arg)
            else:
                raise self.fail(f"unexpected superscript {arg!r} on {name}")
        fn = name if sub is None else f"{name}_{{{sub}}}"
        if name == "diag":
            arg_node = self.bracket_arg()
            return Diag(arg_node, span=self.span(a))
        if name == "prod":  # the chain-rule product of two derivatives: prod(dL/do, do/dW)
            if self.t() == r"\left":
                self.i += 1
            b = self.i
            pair = self.bracket()
            if not isinstance(pair, Stack) or len(pair.items) != 2:
                raise self.fail("prod(a, b) takes two arguments", self.toks[b])
            return Call(fn, pair, power, primes, span=self.span(a))
        if self.t() in ("(", "[", r"\left"):
            if self.t() == r"\left":
                self.i += 1
            if name in lx.GENERIC_NAMES | lx.ABSTRACT_FUNCTIONS and self.t() == "(":
                # f(x_t, h_{t-1}, w): an abstract function of several arguments
                return Call(fn, self.bracket(), power, primes, span=self.span(a))
            arg_node = self.bracket_arg()
            return Call(fn, arg_node, power, primes, span=self.span(a))
        if primes:
            return Call(fn, None, power, primes, span=self.span(a))
        raise self.fail(f"expected '(' after {name}")

    def bracket_arg(self) -> Node:
        if self.t() not in ("(", "["):
            raise self.fail("expected '('")
        a = self.i
        node = self.bracket()
        if isinstance(node, Stack):
            raise self.fail("a list where one argument is due", self.toks[a])
        return node

    def atom(self) -> Atom:
        a = self.i
        t = self.peek()
        if t is None:
            raise self.fail("expected a symbol")
        if t.kind == "letter":
            base = t.text
            j = self.i + 1
            # d\_out: a name with an escaped underscore is one symbol
            while j + 1 < len(self.toks) and self.toks[j].text == r"\_" and \
                    self.toks[j + 1].kind == "letter" and self.toks[j].pos == self.toks[j - 1].end:
                base += r"\_"
                j += 1
                while j < len(self.toks) and self.toks[j].kind == "letter" and \
                        self.toks[j].pos == self.toks[j - 1].end:
                    base += self.toks[j].text
                    j += 1
        elif t.kind == "cmd" and t.text in ACCENTS:
            if self.i + 1 >= len(self.toks):
                raise self.fail(f"{t.text} without its argument", t)
            j = match_brace(self.toks, self.i + 1) + 1 if self.t(1) == "{" else self.i + 2
            base = canon(self.toks[self.i:j])
        elif t.kind == "cmd" and len(t.text) > 2 and t.text not in (
                r"\frac", r"\partial", r"\sum", r"\prod", r"\left", r"\right", r"\text",
                r"\begin", r"\end", r"\nabla", r"\mathbb"):
            base = t.text
            j = self.i + 1
        elif t.kind == "cmd" and t.text in lx.NAMED_FUNCTION_CMDS:
            raise self.fail(f"{canon(self.toks[self.i:self.i + 4])}...: words, not a symbol", t)
        else:
            raise self.fail(f"unexpected {t.text!r}", t)
        self.i = j
        sub = sup = None
        primes = 0
        while self.t() in ("_", "^", "'"):
            if self.t() == "'":
                primes += 1
                self.i += 1
                continue
            which = self.t()
            if self.i + 1 >= len(self.toks):
                raise self.fail(f"{which} without its script", self.peek())
            save = self.i
            self.i += 1
            arg_toks = self.group()
            arg = canon(arg_toks)
            if which == "_":
                if sub is not None:
                    self.i = save
                    break
                sub = arg
            else:
                if arg in (r"\prime", "'"):
                    primes += 1
                    continue
                if sup is not None or arg in lx.TRANSPOSES - {"t"} or (
                        arg.isdigit() and sub is not None) or re.fullmatch(r"-\d+", arg):
                    self.i = save  # a transpose or a power: postfix
                    break
                if arg.isdigit() and sub is None:
                    self.i = save
                    break
                sup = arg
        return Atom(base, sub, sup, primes, span=self.span(a))


def _env_at(toks: list[Tok], i: int) -> tuple[str, int] | None:
    """``\\begin{name}`` / ``\\end{name}`` at i: (name, the index after its closing brace)."""
    if i + 2 >= len(toks) or toks[i].text not in (r"\begin", r"\end") or toks[i + 1].text != "{":
        return None
    j = match_brace(toks, i + 1)
    if j >= len(toks) or toks[j].text != "}":
        return None
    return "".join(t.text for t in toks[i + 2:j]), j + 1


def _split_top(toks: list[Tok], seps: set[str]) -> list[list[Tok]]:
    """Tokens split at the separators outside every bracket and brace."""
    out: list[list[Tok]] = [[]]
    depth = 0
    for tk in toks:
        if tk.text in ("(", "[", "{"):
            depth += 1
        elif tk.text in (")", "]", "}"):
            depth -= 1
        if depth == 0 and tk.text in seps:
            out.append([])
            continue
        out[-1].append(tk)
    return out


_CASE_WORDS = {r"\text", r"\mbox", r"\textrm", r"\textit", r"\quad", r"\qquad", r"\mathrm"}


def _case_cut(row: list[Tok]) -> int | None:
    """Where a row of cases turns from its value to its condition: the last top-level comma,
    else the first words (``\\text{if}``, ``\\quad``) after the value."""
    depth = 0
    comma = None
    for n, tk in enumerate(row):
        if tk.text in ("(", "[", "{"):
            depth += 1
        elif tk.text in (")", "]", "}"):
            depth -= 1
        elif depth == 0 and tk.text == ",":
            comma = n
    if comma is not None and comma > 0:
        return comma
    for n, tk in enumerate(row):
        if n > 0 and tk.text in _CASE_WORDS:
            return n
    return None


_CASE_RELATIONS = {"=": "=", r"\ne": "!=", r"\neq": "!=", "!=": "!=", "<": "<", ">": ">",
                   r"\lt": "<", r"\gt": ">", r"\le": "<=", r"\leq": "<=", r"\leqslant": "<=",
                   r"\ge": ">=", r"\geq": ">=", r"\geqslant": ">="}
_CASE_OTHERWISE = {"otherwise", "else", "elsewhere", "sonst", "sinon"}
_CASE_LEADS = {"if", "for", "when", "where", "falls", "si"}


def _condition(toks: list[Tok], fail) -> tuple[str, str, str] | None:
    """A case's condition: (index, relation, index), or None for "otherwise"; words around it
    (``\\text{if } p = i``, ``\\text{p $\\ne$ i}``) are dropped."""
    skip = _CASE_WORDS | {"{", "}", "$", ",", ".", "~", r"\,", r"\;", r"\ ", r"\space"}
    words: list[str] = []
    last: Tok | None = None
    for tk in toks:
        if tk.text in skip:
            last = None
            continue
        text = r"\ne" if tk.text == r"\not" else tk.text
        if tk.text == "=" and words and words[-1] == r"\ne":
            continue   # \not =
        if last is not None and last.end == tk.pos and re.fullmatch(r"[A-Za-z]", tk.text) \
                and re.fullmatch(r"[A-Za-z]+", words[-1]):
            words[-1] += tk.text   # the letters of one word, one token each
        else:
            words.append(text)
        last = tk
    while words and words[0].lower() in _CASE_LEADS:
        words = words[1:]
    if len(words) == 1 and words[0].lower() in _CASE_OTHERWISE:
        return None
    if len(words) == 3 and words[1] in _CASE_RELATIONS and all(
            re.fullmatch(r"[A-Za-z]|\\[a-z]+|\d+", w) for w in (words[0], words[2])):
        return (words[0], _CASE_RELATIONS[words[1]], words[2])
    raise fail("a case whose condition is not a relation of unit indices: "
               + " ".join(t.text for t in toks), toks[0] if toks else None)


def _members(grp: list[Tok]) -> tuple[str, tuple[str, ...]]:
    """``a \\in \\{f, i, c, o\\}``: the variable and the names it takes."""
    k = next(n for n, tk in enumerate(grp) if tk.text == r"\in")
    var = canon(grp[:k]).strip()
    inner = [tk for tk in grp[k + 1:] if tk.text not in (r"\{", r"\}", r"\lbrace", r"\rbrace")]
    names: list[list[Tok]] = [[]]
    for tk in inner:
        if tk.text == ",":
            names.append([])
        else:
            names[-1].append(tk)
    members = tuple(canon(n).strip() for n in names if n)
    if not var or not members:
        raise SyntaxProblem("a sum over a set without its members", grp[0] if grp else None)
    return var, members


def _time_like(s: str) -> bool:
    return s.replace(" ", "") in ("t", "t-1", "t+1", "T", r"\tau") or s.isdigit()


def _prime(node: Node, span: tuple[int, int]) -> Node:
    if isinstance(node, Call):
        return Call(node.fn, node.arg, node.power, node.primes + 1, span=span)
    if isinstance(node, Atom):
        return Atom(node.base, node.sub, node.sup, node.primes + 1, span=span)
    raise SyntaxProblem("a prime on an expression", None)


def _respan(node: Node, span: tuple[int, int]) -> Node:
    import dataclasses
    return dataclasses.replace(node, span=span)


def _bare_d(toks: list[Tok]) -> bool:
    """A numerator that is ``d`` or ``\\partial`` alone (``\\frac{d}{dx}``)."""
    txt = [tk.text for tk in toks]
    return txt in (["d"], [r"\partial"], [r"\mathrm", "{", "d", "}"])


def _function_atom(base: str) -> str | None:
    """An activation written as a symbol (the numerator of ``\\frac{d\\sigma}{dx}``)."""
    if base.startswith("\\") and base[1:] in lx.ACTIVATIONS:
        return base[1:]
    return None


def _timed_den(node: Node) -> Node:
    """``d Ct``: a symbol and its time written without the underscore, read as ``C_t``."""
    if isinstance(node, Mul) and len(node.factors) == 2 and all(
            isinstance(f, Atom) and f.sub is None and f.sup is None and not f.primes
            for f in node.factors):
        base, time = node.factors
        assert isinstance(base, Atom) and isinstance(time, Atom)
        if time.base == "t" and base.base != "t":
            return Atom(base.base, "t", span=node.span)
    return node


def _leading_d(toks: list[Tok]) -> list[Tok] | None:
    """The tokens after a leading ``\\partial`` or ``d`` / ``\\mathrm{d}``, or None."""
    if not toks:
        return None
    if toks[0].text == r"\partial":
        return toks[1:]
    if toks[0].text in (r"\mathrm", r"\text", r"\operatorname") and len(toks) > 3 and \
            toks[1].text == "{" and toks[2].text == "d" and toks[3].text == "}":
        return toks[4:]
    if toks[0].text == "d" and len(toks) > 1 and toks[1].kind in ("letter", "cmd") and \
            toks[1].text not in ("_",):
        return toks[1:]
    return None


def _loss_word(toks: list[Tok]) -> str | None:
    """A numerator that spells the loss as a word, braced or not (``{loss}``), or None."""
    if len(toks) > 2 and toks[0].text == "{" and toks[-1].text == "}":
        toks = toks[1:-1]
    if len(toks) < 2 or not all(tk.kind == "letter" for tk in toks) or any(
            b.pos != a.end for a, b in zip(toks, toks[1:], strict=False)):
        return None
    word = "".join(tk.text for tk in toks)
    return word if word in lx.LOSS_WORDS else None


def _is_loss(a: Atom) -> bool:
    return a.base in lx.LOSSES and a.sup is None and not a.primes


def read_side(toks: list[Tok], text: str) -> Node:
    """One side of an equation as an AST; raises :class:`SyntaxProblem`."""
    if not toks:
        raise SyntaxProblem("an empty side", None)
    _balanced(toks)
    r = Reader(toks, text)
    n = r.side()
    r.finish()
    return n


def _balanced(toks: list[Tok]) -> None:
    """A malformed line is reported as such: the first bracket without its partner."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[Tok] = []
    for tk in toks:
        if tk.text in ("(", "[", "{"):
            stack.append(tk)
        elif tk.text in pairs:
            if not stack:
                raise SyntaxProblem(f"unbalanced {tk.text!r}: nothing opens it", tk)
            top = stack.pop()
            if top.text != pairs[tk.text] and not (top.text == "[" and tk.text == ")") and \
                    not (top.text == "(" and tk.text == "]"):
                raise SyntaxProblem(f"{top.text!r} closed by {tk.text!r}", tk)
    if stack:
        raise SyntaxProblem(f"unbalanced {stack[0].text!r}: never closed", stack[0])


def walk(node: Node):
    """Every node of a tree, depth first, parents before children."""
    yield node
    for f in _children(node):
        yield from walk(f)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Add):
        return tuple(n for _, n in node.terms)
    if isinstance(node, Mul):
        return node.factors
    if isinstance(node, (Call,)):
        return (node.arg,) if node.arg is not None else ()
    if isinstance(node, (Diag, Tr, Adj)):
        return (node.arg if isinstance(node, Diag) else node.of,)
    if isinstance(node, Pow):
        return (node.base,)
    if isinstance(node, Div):
        return (node.a, node.b)
    if isinstance(node, Deriv):
        return (node.num, node.den)
    if isinstance(node, Big):
        return (node.body,)
    if isinstance(node, Stack):
        return node.items
    if isinstance(node, Bar):
        return (node.of,)
    if isinstance(node, Expect):
        return (node.of,)
    if isinstance(node, Prob):
        return (node.var, node.value)
    if isinstance(node, Cases):
        return tuple(v for _, v in node.branches)
    return ()
