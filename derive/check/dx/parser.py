r"""The grammar of the d(x) notation: recursive descent over the tokens of one side of an
equation, into the values of :mod:`derive.check.dx.syntax`.

The grammar (``atom`` is a LaTeX symbol, :func:`derive.check.dx.atoms.read_atom`, resolved by
:class:`derive.check.dx.symbols.Resolver`; the spellings in quotes are those of
:mod:`derive.check.dx.tables`)::

    lhs      = frac                           \frac{\partial u_t}{\partial A}      LDeriv
             | '\delta' atom                  \delta s_{t-1}, a carried adjoint      LAdj
             | '\bar{' u '}_t'                an adjoint (a node \bar{u} with as_node)
             | atom                           M_t, N_t (LBlock), a node u_t (LDef)
    side     = [ '\sum' [ '_' 't' ] ] msum    a matrix right-hand side               Side
             | vexpr                          (vector) a cell equation's right-hand side
    msum     = [ '+' | '-' ] mprod { ( '+' | '-' ) mprod }
    mprod    = mfactor { [ '\cdot' | '\times' ] mfactor }
    mfactor  = number
             | '(' vexpr ')' '^' transpose    a row vector v^\top                    FVec
             | '(' msum ')' | '[' msum ']'
             | frac
             | '\delta' atom                  a carried adjoint                      FAdj
             | activation                     a vector in a product                  FVec
             | 'd' [ '_' ( '1' | '2' ) ] '(' vexpr ')'   d(v), d_2(v)                FDiag
             | 'I'                            the identity                           FIdent
             | '\bar{' u '}_t'                an adjoint                             FAdj
             | atom                           W, W^\top (FMat), b, h_t, h_t^\top (FVec),
                                              M_t, N_t, V_t (FBlock)
    frac     = '\frac' '{' number '}' '{' number '}'                 a coefficient   FCoef
             | '\frac' '{' [ '\partial' ] num '}' '{' '\partial' den '}'             FDeriv
    num      = 'L' | 'L_t' | '\ell_t' | a matrix parameter | vexpr
    den      = a parameter | vexpr
    vexpr    = [ '+' | '-' ] vterm { ( '+' | '-' ) vterm }
    vterm    = vfactor { [ '\odot' | '\circ' | '*' | '\ast' ] vfactor }   Hadamard products
    vfactor  = '(' vexpr ')' | '[' vexpr ']' | number | activation
             | atom                           a parameter vector, a node u_t, u_{t-1}, a
                                              pre-activation \hat{u}_t, a gate derivative u'_t
             | matrix-atom vfactor            W v, a matrix-vector product
    activation = name { "'" | '^' '{\prime}' } ( '(' vexpr ')' | '[' vexpr ']' )

``d`` and ``I`` are these words only where the cell has no symbol so named; ``\frac`` is also
``\dfrac``, ``\tfrac``. An activation's name is any LaTeX name of
:data:`derive.spec.activations.ACTIVATIONS` (``\sigma``, ``\tanh``, ``\operatorname{ReLU}``, ...),
read when the line is read. The numerator of ``\frac{\partial u}{\partial A}`` is any vector
(a symbol, ``(f_t \odot s_{t-1} + ...)``, ``W_g h_{t-1}``) or the loss.

**Seed 001's missing \partial** (``\frac{\tilde{s}_t}{\partial W}`` 13 times and
``\frac{h_{t-1}}{\partial A}`` 4 times in the note) is a *tolerated typo*: it is read as
``\frac{\partial \tilde{s}_t}{\partial W}``, and the side's ``notes`` say so with the position.

Entry points: :func:`parse_lhs`, :func:`parse_side`; each returns the tree and the generic
symbols (``A``, ``g``) the side uses. Every error is a
:class:`~derive.check.dx.errors.ParseError` holding the offending token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from ...spec import Add, Call, Const, DerivAt, Expr, MatVec, Mul, Ref
from ...spec.activations import ACTIVATIONS
from ..tokens import Tok, canon, match_brace
from .atoms import Atom, match_activation, read_atom, time_lag
from .errors import ParseError
from .symbols import Lexicon, Resolver
from .syntax import (
    FAdj,
    FBlock,
    FCoef,
    FDeriv,
    FDiag,
    FIdent,
    FMat,
    FVec,
    LAdj,
    LBlock,
    LDef,
    LDeriv,
    Lhs,
    Loss,
    MProd,
    MSum,
    Side,
)
from .tables import (
    BRACKETS,
    CARRY,
    DIAG,
    DIAG_ORDERS,
    FRACS,
    HADAMARD,
    IDENTITY,
    LHS_BLOCKS,
    LOSSES,
    MATRIX_PRODUCTS,
    PARTIAL,
    PRIMES,
    SIGNS,
    STOP,
    SUM,
    SUM_INDEX,
    TRANSPOSES,
)


def parse_lhs(toks: Sequence[Tok], lex: Lexicon, binding: Mapping[str, str] | None = None, *,
              as_node: bool = False) -> tuple[Lhs, frozenset[str]]:
    """A left-hand side (:meth:`Parser.lhs`) and the generic symbols it uses."""
    p = Parser(toks, Resolver(lex, binding))
    return p.lhs(as_node), frozenset(p.sym.generic)


def parse_side(toks: Sequence[Tok], lex: Lexicon, binding: Mapping[str, str] | None = None, *,
               vector: bool = False) -> tuple[Side, frozenset[str]]:
    """A right-hand side (:meth:`Parser.side`) and the generic symbols it uses."""
    p = Parser(toks, Resolver(lex, binding))
    return p.side(vector), frozenset(p.sym.generic)


class Parser:
    """Recursive descent over the tokens of one side (the grammar: module docstring). A parser
    for a nested run of tokens (a numerator, a bracket) shares its resolver and notes."""

    def __init__(self, toks: Sequence[Tok], sym: Resolver,
                 notes: list[tuple[int, str]] | None = None):
        self.toks = toks
        self.i = 0
        self.sym = sym
        self.lex = sym.lex
        self.spec = sym.spec
        self.notes: list[tuple[int, str]] = [] if notes is None else notes

    # -- the cursor ----------------------------------------------------------------------
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

    def group(self) -> Sequence[Tok]:
        """The tokens of a ``{...}`` argument (the brace pair consumed)."""
        t = self.peek()
        if t is None or t.text != "{":
            if t is None:
                raise self.err("expected '{'")
            self.i += 1
            return [t]
        j = match_brace(self.toks, self.i)
        if self.toks[j].text != "}":
            raise self.err("unbalanced '{'", t)
        inner = self.toks[self.i + 1:j]
        self.i = j + 1
        return inner

    def sub(self, toks: Sequence[Tok]) -> Parser:
        return Parser(toks, self.sym, self.notes)

    def resolve(self, a: Atom) -> tuple[str, object]:
        return self.sym.resolve(a, self.peek() or self.toks[-1])

    def _signs(self, term: Any) -> list[tuple[int, Any]]:
        """``[+|-] term {(+|-) term}`` as (sign, term) pairs."""
        items: list[tuple[int, Any]] = []
        sign = 1
        if self.text() in SIGNS:
            sign = SIGNS[self.text()]
            self.i += 1
        items.append((sign, term()))
        while self.text() in SIGNS:
            sign = SIGNS[self.text()]
            self.i += 1
            items.append((sign, term()))
        return items

    # -- vector level --------------------------------------------------------------------
    def vexpr(self) -> Expr:
        terms = self._signs(self.vterm)
        if len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return Add(tuple(terms))

    def vterm(self) -> Expr:
        factors = [self.vfactor()]
        while True:
            t = self.text()
            if t in HADAMARD:
                self.i += 1
                factors.append(self.vfactor())
            elif t and t not in STOP and t not in ("}", *MATRIX_PRODUCTS) and \
                    self.peek().kind != "row":  # type: ignore[union-attr]
                factors.append(self.vfactor())  # juxtaposed vectors: Hadamard
            else:
                break
        return factors[0] if len(factors) == 1 else Mul(tuple(factors))

    def vfactor(self) -> Expr:
        t = self.peek()
        if t is None:
            raise self.err("expected a vector expression, found the end")
        if t.text in BRACKETS:
            self.i += 1
            e = self.vexpr()
            self.expect(BRACKETS[t.text])
            return e
        if t.kind == "num":
            self.i += 1
            return Const(Fraction(t.text))
        if match_activation(self.toks, self.i) is not None:
            return self.activation()
        if t.text in FRACS:
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
            return self.sym.node_ref(a, name, lag)
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
                if canon(arg) not in PRIMES:
                    raise self.err(f"unexpected superscript on {name}", t, "unsupported")
                primes += 1
        if self.text() not in BRACKETS:
            raise self.err(f"expected '(' after {name}", self.peek() or t)
        close = BRACKETS[self.text()]
        self.i += 1
        arg = self.vexpr()
        self.expect(close)
        if primes > 1:
            raise self.err(f"{name}'' (second derivative) is not supported", t, "unsupported")
        return DerivAt(fn, arg) if primes else Call(fn, arg)

    # -- matrix level --------------------------------------------------------------------
    def msum(self) -> MSum:
        return MSum(tuple(self._signs(self.mprod)))

    def mprod(self) -> MProd:
        factors: list = []
        while not self.at_end() and self.text() not in STOP:
            if self.text() in MATRIX_PRODUCTS:
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
        if t.kind == "num":
            self.i += 1
            return FCoef(Fraction(t.text))
        if t.text in BRACKETS:
            close = BRACKETS[t.text]
            j = self._close(self.i, t.text, close)
            if j + 1 < len(self.toks) and self.toks[j + 1].text == "^":
                # (v)^\top: a row vector
                inner = self.sub(self.toks[self.i + 1:j])
                v = inner.vexpr()
                inner.finish()
                self.i = j + 2
                sup = canon(self.group())
                if sup not in TRANSPOSES:
                    raise self.err(f"unexpected superscript {sup!r} (only ^\\top)", t,
                                   "unsupported")
                return FVec(v, True)
            self.i += 1
            s = self.msum()
            self.expect(close)
            return s
        if t.text in FRACS:
            return self.frac()
        if t.text == SUM:
            raise self.err(r"\sum_t is only understood at the start of the right-hand side of "
                           r"\frac{\partial L}{\partial A}", t, "unsupported")
        if t.text == CARRY:
            return self.carry(t)
        if match_activation(self.toks, self.i) is not None:
            return FVec(self.activation())
        if t.kind == "letter" and t.text == DIAG and not self.lex.reserved(DIAG):
            return self.diag(t)
        a = read_atom(self.toks, self.i)
        if a is None:
            raise self.err(f"unexpected {t.text!r}", t)
        if a.base == IDENTITY and a.sub is None and a.sup is None and \
                not self.lex.reserved(IDENTITY):
            self.i = a.end
            return FIdent()
        name = self.sym.adjoint_base(a)
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
        transposed = a.sup is not None and a.sup in TRANSPOSES
        if a.sup is not None and not transposed:
            raise self.err(f"{a.text}: unexpected superscript {a.sup!r}", a.tok, "unsupported")
        ref = self.sym.node_ref(Atom(a.base, a.sub, None, a.primes, a.tok, a.end), name, lag)
        return FVec(ref, transposed)

    def carry(self, t: Tok) -> FAdj:
        """``\\delta u_{t-1}``: the adjoint of a state carried from the next step."""
        a = read_atom(self.toks, self.i + 1)
        if a is None:
            raise self.err(r"expected a state after \delta", t)
        kind, val = self.resolve(a)
        if kind != "node" or val[0] not in self.spec.states:  # type: ignore[index]
            raise self.err(rf"\delta {a.text}: \delta marks the adjoint of a state carried "
                           "from the next step", t, "symbol")
        self.i = a.end
        return FAdj(val[0], "carry", val[1])  # type: ignore[index]

    def diag(self, t: Tok) -> FDiag:
        """``d(v)``, ``d_1(v)``, ``d_2(v)``."""
        two = False
        if self.text(1) == "_":
            k = self.i + 2
            if self.text(2) == "{":
                arg = self.toks[k + 1:match_brace(self.toks, k)]
                k = match_brace(self.toks, k) + 1
            else:
                arg = self.toks[k:k + 1]
                k += 1
            if canon(arg) not in DIAG_ORDERS:
                raise self.err(f"d_{canon(arg)}: only d(.) and d_2(.) are defined", t,
                               "unsupported")
            two = DIAG_ORDERS[canon(arg)]
            self.i = k
        else:
            self.i += 1
        if self.text() not in BRACKETS:
            raise self.err("expected '(' after d" + ("_2" if two else ""), self.peek() or t)
        close = BRACKETS[self.text()]
        self.i += 1
        v = self.vexpr()
        self.expect(close)
        return FDiag(v, two)

    def _close(self, i: int, open_: str, close: str) -> int:
        depth = 0
        for j in range(i, len(self.toks)):
            tx = self.toks[j].text
            if tx in BRACKETS:
                depth += 1
            elif tx in BRACKETS.values():
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
            return FCoef(Fraction(canon(num)) / Fraction(canon(den)))
        if not den or den[0].text != PARTIAL:
            raise self.err(r"expected a derivative \frac{\partial u}{\partial A} or a number "
                           r"\frac{1}{2}", t, "unsupported")
        if num and num[0].text == PARTIAL:
            num = num[1:]
        else:
            self.notes.append((t.pos, rf"read \frac{{{canon(num)}}}{{\partial ...}} as "
                               rf"\frac{{\partial {canon(num)}}}{{\partial ...}} (a missing "
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

    def _num(self, toks: Sequence[Tok], t: Tok) -> Expr | Loss | tuple[str, str]:
        if not toks:
            raise self.err("empty numerator", t)
        a = read_atom(toks, 0)
        if a is not None and a.end == len(toks) and a.base in LOSSES and \
                (a.base, a.sub) not in self.lex.params and a.base not in self.lex.nodes:
            if a.sub is None:
                return Loss(True)
            if time_lag(a.sub) == 0:
                return Loss(False)
        if a is not None and a.end == len(toks):
            kind, val = self.sub(toks).resolve(a)
            if kind == "param" and self.spec.params[val[0]].is_matrix:  # type: ignore[index]
                return ("matrix", val[0])  # type: ignore[index]
        p = self.sub(toks)
        e = p.vexpr()
        p.finish()
        return e

    def _den(self, toks: Sequence[Tok], t: Tok) -> Expr:
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
            if self.text() == SUM:
                t = self.peek()
                self.i += 1
                if self.text() == "_":
                    self.i += 1
                    arg = self.group()
                    if canon(arg) != SUM_INDEX:
                        raise self.err(rf"\sum_{{{canon(arg)}}}: only \sum_t is understood", t,
                                       "unsupported")
                summed = True
            body = self.msum()
        self.finish()
        return Side(body, summed, tuple(self.notes))

    def lhs(self, as_node: bool = False) -> Lhs:
        """The left-hand side: a derivative, a block, an adjoint or a node (a cell equation).

        ``\\bar{u}_t`` is read as the adjoint of u; with ``as_node`` it is read as the node whose
        name is ``\\bar{u}`` where the cell has one (minLSTM's \\bar{f}_t = f_t / (f_t + i_t)):
        :mod:`derive.check.dx.lines` takes that reading when only it lets the right-hand sides be
        read."""
        if not self.toks:
            raise ParseError("empty left-hand side", None)
        t = self.peek()
        assert t is not None
        if t.text in FRACS:
            f = self.frac()
            self.finish()
            if isinstance(f, FDeriv) and f.self_param is None:
                return LDeriv(f.num, f.den)
            raise self.err("the left-hand side must be a derivative of a node, state or loss", t,
                           "unsupported")
        if t.text == CARRY:
            f = self.mfactor()
            self.finish()
            return LAdj(f.name, "carry", f.lag)
        a = read_atom(self.toks, 0)
        if a is not None:
            name = None if as_node and a.base in self.lex.nodes else self.sym.adjoint_base(a)
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
            if kind == "block" and val in LHS_BLOCKS:
                return LBlock(val)  # type: ignore[arg-type]
            if kind == "node" and val[1] == 0 and not a.primes and a.sup is None:  # type: ignore[index]
                return LDef(val[0])  # type: ignore[index]
        raise self.err("left-hand side not understood: expected a derivative "
                       r"\frac{\partial u_t}{\partial A}, a state Jacobian, M_t, N_t, an adjoint "
                       r"\bar{u}_t or \delta u_{t-1}, or a node u_t of the cell", t, "unsupported")
