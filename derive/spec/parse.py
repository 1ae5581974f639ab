"""The parser of node expressions: text to the (unresolved) AST of :mod:`derive.spec.expr`.

Numbers are decimal literals (``2``, ``0.5``, ``.5``, ``1.``, ``1e-3``), read exactly as
fractions. :data:`MAX_DEPTH`, :data:`MAX_TERMS` and :data:`MAX_CHAIN` keep every consumer inside
Python's recursion limit (:class:`~derive.spec.cellspec.CellSpec` checks the last two).
"""

from __future__ import annotations

import re
from fractions import Fraction

from .expr import Add, Call, Const, Expr, MatVec, Mul, Ref

# ----------------------------------------------------------------------------- parser

MAX_DEPTH = 64
"""Deepest nesting of one expression: parentheses, activation calls and chained ``@`` together.
The parser and every printer and kernel generator recurse on the expression tree; a limit far
above any cell keeps them well inside Python's recursion limit."""
MAX_TERMS = 256
"""Most summands of one sum and factors of one product (the kernels print a sum as one Python
expression, which Python's compiler nests one level per operator)."""
MAX_CHAIN = 256
"""Deepest same-step dependency through the nodes, counted in expression levels: a node's depth
plus that of the deepest node it uses at time t (the engine recurses through node references)."""
_MAX_NUMBER = 30
"""Most digits in a number literal and largest exponent magnitude (1e-30 .. 1e30)."""

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>[-+*@()]))"
)


def _number(text: str, col: int) -> Fraction:
    """A number literal as an exact fraction: 2, 0.5, .5, 1., 1e-3, 2.5E+2."""
    mantissa, _, exp = text.lower().partition("e")
    digits = mantissa.replace(".", "")
    if len(digits) > _MAX_NUMBER or len(exp) > 3 or (exp and abs(int(exp)) > _MAX_NUMBER):
        raise ValueError(f"number {text[:40]!r} at column {col + 1} is too long or too large; "
                         f"expected at most {_MAX_NUMBER} digits and an exponent between "
                         f"-{_MAX_NUMBER} and {_MAX_NUMBER}")
    return Fraction(text)


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = text[pos:].lstrip()[:1]
            col = len(text) - len(text[pos:].lstrip())
            raise ValueError(f"unexpected character {bad!r} at column {col + 1}")
        kind = m.lastgroup or "op"
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    """Recursive descent: expr := term (('+'|'-') term)*; term := mv ('*' mv)*;
    mv := primary ('@' mv)?; primary := NUM | NAME | NAME '(' expr ')' | '(' expr ')'.

    Nesting (parentheses, calls, chained '@') deeper than :data:`MAX_DEPTH` and sums or products
    of more than :data:`MAX_TERMS` operands are rejected with a ValueError, never a
    RecursionError."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if value is not None and tok[1] != value:
            found = tok[1] or "end of expression"
            raise ValueError(f"expected {value!r} at column {tok[2] + 1}, found {found!r}")
        self.i += 1
        return tok

    def enter(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels (parentheses, activation "
                             f"calls and chained '@') at column {col + 1}; split the expression "
                             f"into several nodes")

    def parse(self) -> Expr:
        e = self.expr()
        if self.peek()[0] != "end":
            tok = self.peek()
            raise ValueError(f"unexpected {tok[1]!r} at column {tok[2] + 1}")
        return e

    def _count(self, n: int, what: str, col: int) -> None:
        if n > MAX_TERMS:
            raise ValueError(f"a {what} of more than {MAX_TERMS} operands at column {col + 1}; "
                             f"split it into several nodes")

    def expr(self) -> Expr:
        terms: list[tuple[int, Expr]] = []
        sign = 1
        if self.peek()[1] == "-":
            self.take()
            sign = -1
        terms.append((sign, self.term()))
        while self.peek()[1] in "+-" and self.peek()[0] == "op":
            tok = self.take()
            self._count(len(terms) + 1, "sum", tok[2])
            terms.append((1 if tok[1] == "+" else -1, self.term()))
        if len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return Add(tuple(terms))

    def term(self) -> Expr:
        factors = [self.matvec()]
        while self.peek()[1] == "*":
            tok = self.take()
            self._count(len(factors) + 1, "product", tok[2])
            factors.append(self.matvec())
        return factors[0] if len(factors) == 1 else Mul(tuple(factors))

    def matvec(self) -> Expr:
        left = self.primary()
        if self.peek()[1] == "@":
            tok = self.take()
            if not isinstance(left, Ref):
                raise ValueError(f"left of '@' at column {tok[2] + 1} must be a matrix parameter")
            self.enter(tok[2])
            arg = self.matvec()
            self.depth -= 1
            return MatVec(left.name, arg)
        return left

    def primary(self) -> Expr:
        kind, value, col = self.take()
        if kind == "num":
            return Const(_number(value, col))
        if kind == "name":
            if self.peek()[1] == "(":
                self.enter(self.take("(")[2])
                arg = self.expr()
                self.take(")")
                self.depth -= 1
                return Call(value, arg)
            return Ref(value)
        if value == "(":
            self.enter(col)
            e = self.expr()
            self.take(")")
            self.depth -= 1
            return e
        raise ValueError(f"unexpected {value or 'end of expression'!r} at column {col + 1}")


def parse_expr(text: str) -> Expr:
    """Parse one node expression into the (unresolved) AST."""
    return _Parser(text).parse()
