"""The symbols of one cell in one notation: what a LaTeX atom names.

A :class:`Lexicon` inverts a notation's ``names`` map (spec name -> LaTeX). A :class:`Resolver`
classifies an atom against it: a parameter (``W_o``, ``W_o^\\top``), a node at t or t-1
(``o_t``, ``s_{t-1}``), a pre-activation ``\\hat{o}_t``, a gate derivative ``o'_t``, or a block
``M_t``/``N_t``/``V_t``. Seed 001's generic symbols resolve through a *binding*: ``A`` (and
``A_{p \\neq g}``) is any parameter, ``g_t`` any gate (where the cell has no symbol ``g``), and
``X_g`` the unique parameter of gate g's equation whose LaTeX base letter is X (``W_g``,
``U_g``, ``b_g``). Without a binding (scan mode) they resolve to placeholders, and the resolver
records which were met, so that :mod:`derive.check.dx.lines` enumerates the bindings. Every
failure is a :class:`~derive.check.dx.errors.ParseError` holding the atom's token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ...spec import HAT, INPUT, CellSpec, DerivAt, Expr, Ref, params_in
from ..tokens import Tok, match_brace, tokenize
from .atoms import Atom, match_activation, read_atom, strip_accent, time_lag
from .errors import ParseError
from .tables import (
    ADJOINT_ACCENT,
    BLOCKS,
    DIAG,
    GENERIC_GATE,
    GENERIC_PARAM,
    IDENTITY,
    LOSSES,
    PRE_ACTIVATION_ACCENT,
    TIME_NOW,
    TRANSPOSES,
    UNSUPPORTED_TIME,
)


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
        self.generic_gate = GENERIC_GATE not in self.nodes
        self.generic_param = (GENERIC_PARAM, None) not in self.params and \
            GENERIC_PARAM not in self.nodes

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
        """How the notation writes a spec name."""
        return self.names.get(name, name)

    def reserved(self, letter: str) -> bool:
        """Is ``letter`` one of the cell's own symbols (then it is not a notation's word:
        ``d`` is not d(.), ``I`` is not the identity)?"""
        return letter in self.nodes or (letter, None) in self.params


class Resolver:
    """Atoms resolved in a lexicon, the generic symbols bound by ``binding`` (or, without one,
    to placeholders); :attr:`generic` collects the generic symbols met."""

    def __init__(self, lex: Lexicon, binding: Mapping[str, str] | None = None):
        self.lex = lex
        self.spec = lex.spec
        self.binding = binding
        self.generic: set[str] = set()

    def _generic(self, key: str, tok: Tok) -> str:
        self.generic.add(key)
        if self.binding is not None and key in self.binding:
            return self.binding[key]
        if key == GENERIC_PARAM:
            return self.spec.cell_params[0]
        if not self.lex.gates:
            raise ParseError(f"generic gate {tok.text}_t but cell {self.spec.name!r} has no "
                             "gates", tok, "symbol")
        return self.lex.gates[0]

    def resolve(self, a: Atom, here: Tok) -> tuple[str, object]:
        """Classify an atom: ('param', (name, transposed)) | ('node', (name, lag)) |
        ('block', which). ``here``: the token a generic gate in a subscript is reported at."""
        lex = self.lex
        key = (a.base, a.sub)
        if key in lex.params:
            p = lex.params[key]
            return "param", (p, self._transposed(a))
        lag = time_lag(a.sub)
        if a.sub is not None and lag is None and re.fullmatch(UNSUPPORTED_TIME, a.sub) \
                and (a.base in lex.nodes
                     or strip_accent(a.base, PRE_ACTIVATION_ACCENT) in lex.nodes):
            raise ParseError(f"{a.text}: only the times t and t-1 are supported", a.tok,
                             "unsupported")
        if lag is not None:
            name = self.node_base(a)
            if name is not None:
                return "node", (name, lag)
            if a.base in BLOCKS and lag == 0 and not a.primes and a.sup is None:
                return "block", a.base
        if (a.base == GENERIC_PARAM and lex.generic_param and not a.primes and a.sup is None
                and (a.sub is None or r"\neq" in a.sub or r"\ne" in a.sub)):
            return "param", (self._generic(GENERIC_PARAM, a.tok), False)
        if a.sub is not None and lag is None and not a.primes:
            gate = self._gate_of(a.sub, here)
            if gate is not None:
                got = lex.bound_param(a.base, gate)
                if isinstance(got, str):
                    return "param", (got, self._transposed(a))
                gl = lex.latex(gate)
                if got:
                    raise ParseError(
                        f"{a.text}: the equation of {gl}_t has several parameters written "
                        f"{a.base} ({', '.join(lex.latex(p) for p in got)}); write one of them",
                        a.tok, "symbol")
                raise ParseError(f"{a.text}: the equation of {gl}_t has no parameter written "
                                 f"{a.base}", a.tok, "symbol")
            if r"\neq" in a.sub and a.base in {b for b, _ in lex.params}:
                raise ParseError(f"{a.text}: a parameter of another gate is only understood as "
                                 f"the generic A", a.tok, "unsupported")
        if (a.base, None) in lex.params and a.sub is not None and lag is not None:
            raise ParseError(f"{a.text}: parameter {a.base} has no time index", a.tok, "symbol")
        if a.base in lex.nodes and a.sub is None:
            raise ParseError(f"{a.text}: expected a time index, e.g. {a.base}_t or "
                             f"{a.base}_{{t-1}}", a.tok)
        raise ParseError(f"unknown symbol {a.text} for cell {self.spec.name!r}", a.tok, "symbol")

    def _transposed(self, a: Atom) -> bool:
        if a.primes:
            raise ParseError(f"{a.text}: a parameter has no prime", a.tok)
        if a.sup is None:
            return False
        if a.sup in TRANSPOSES:
            return True
        raise ParseError(f"{a.text}: unexpected superscript {a.sup!r} (only ^\\top)", a.tok,
                         "unsupported")

    def node_base(self, a: Atom) -> str | None:
        """Spec node of an atom's base: a node, \\hat{node} (pre-activation), or the generic g."""
        lex = self.lex
        if a.base in lex.nodes:
            return lex.nodes[a.base]
        inner = strip_accent(a.base, PRE_ACTIVATION_ACCENT)
        if inner is not None and inner in lex.nodes:
            n = lex.nodes[inner]
            if n + HAT not in self.spec.nodes:
                raise ParseError(f"{a.text}: {inner} is not a gate, it has no pre-activation",
                                 a.tok, "symbol")
            return n + HAT
        if a.base == GENERIC_GATE and lex.generic_gate:
            return self._generic(GENERIC_GATE, a.tok)
        if inner == GENERIC_GATE and lex.generic_gate:
            return self._generic(GENERIC_GATE, a.tok) + HAT
        return None

    def _gate_of(self, sub: str, here: Tok) -> str | None:
        """The gate a subscript names (``o``, ``\\tilde{s}``, the generic ``g``)."""
        lex = self.lex
        if sub in lex.nodes and lex.nodes[sub] in lex.gates:
            return lex.nodes[sub]
        if sub == GENERIC_GATE and lex.generic_gate:
            return self._generic(GENERIC_GATE, here)
        return None

    def node_ref(self, a: Atom, name: str, lag: int) -> Expr:
        """A node atom as a vector expression: value, pre-activation or gate derivative."""
        spec = self.spec
        if name == INPUT:
            if lag != 0 or a.primes:
                raise ParseError(f"{a.text}: the input is x_t only", a.tok, "unsupported")
            e: Expr = Ref(INPUT, 0, "input")
        elif lag > 1:
            raise ParseError(f"{a.text}: only the times t and t-1 are supported", a.tok,
                             "unsupported")
        elif lag == 1 and name not in spec.states:
            raise ParseError(f"{a.text}: {self.lex.latex(name)} is not a state, it has no value "
                             f"at t-1 here (states: "
                             f"{', '.join(self.lex.latex(s) for s in spec.states)})", a.tok)
        else:
            e = Ref(name, lag, "node")
        if a.primes:
            if a.primes > 1 or lag != 0 or name + HAT not in spec.nodes:
                raise ParseError(f"{a.text}: a prime marks the derivative of a gate's activation "
                                 f"(o'_t); {self.lex.latex(name)} is not a gate", a.tok, "symbol")
            fn = spec.nodes[name].expr.fn  # type: ignore[attr-defined]
            e = DerivAt(fn, Ref(name + HAT, 0, "node"))
        return e

    def adjoint_base(self, a: Atom) -> str | None:
        """The node whose adjoint ``\\bar{u}_t`` the atom is, if it is one."""
        bar = strip_accent(a.base, ADJOINT_ACCENT)
        if bar is None or time_lag(a.sub) != 0:
            return None
        return self.node_base(Atom(bar, a.sub, None, 0, a.tok, a.end))


def unresolved(toks: Sequence[Tok], lex: Lexicon) -> int:
    """How many symbol atoms of a token run do not resolve in a lexicon (cell inference)."""
    sym = Resolver(lex)
    count = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.text in ("_", "^"):  # a script of an operator (\sum_t): not a symbol
            i += 2 if i + 1 < len(toks) and toks[i + 1].text != "{" else \
                match_brace(toks, min(i + 1, len(toks) - 1)) + 1
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
                (t.text == DIAG and i + 1 < len(toks) and toks[i + 1].text in ("(", "_", "["))
                or (t.text in (IDENTITY, *LOSSES) and a.sup is None
                    and a.sub in (None, TIME_NOW))):
            i = a.end if t.text != DIAG else i + 1
            continue
        if t.kind == "cmd" and t.text in LOSSES:  # \ell, whatever its scripts
            i = a.end
            continue
        try:
            bar = strip_accent(a.base, ADJOINT_ACCENT)
            if bar is not None and sym.node_base(Atom(bar, a.sub, None, 0, t, a.end)) is not None:
                i = a.end
                continue
            sym.resolve(a, toks[0])
        except ParseError as exc:
            count += exc.kind == "symbol"
        i = a.end
    return count
