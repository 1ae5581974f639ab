"""The slips people make in hand derivations, as candidate repairs (issue 16, item 7).

A wrong line is named by repairing it: each :class:`Slip` is one small edit of the author's
right-hand side (or, for ``lhs``, of the left-hand side), written in the author's own symbols;
the judge re-evaluates the edited line and reports the first edit that makes it correct. The
kinds, likeliest first:

=============  ==============================================================================
``time``       a symbol at the wrong step (``t`` where ``t-1`` belongs)
``gate``       one node of the step put for another (``i`` for ``f``; ``\\hat a`` for ``a``)
``point``      an activation's derivative taken at the gate output instead of its
               pre-activation (``\\sigma'(f_t)``, ``\\hat f (1 - \\hat f)``)
``transpose``  a matrix missing its transpose, or with one too many
``activation`` one activation put for another (``\\sigma``/``\\tanh``, the document's own
               ``\\sigma_h``/``\\sigma_y``), a power or a prime dropped
``order``      two factors of a matrix product in the wrong order
``extra``      a term or a factor too many
``missing``    a term or a factor dropped: drawn from the terms the document writes elsewhere
               and the derivative forms of the cell's activations
``lhs``        the left-hand side names the wrong quantity (``\\nabla_W q`` where v is meant)
               or differentiates by the wrong variable (``\\partial y / \\partial v_{ij}`` where
               ``w_{ij}`` is meant, ``\\partial h_t`` where ``h_{t-1}`` is)
=============  ==============================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from . import grammar as g
from . import lexicon as lx
from .cell import Cell, Key, read_atom, time_of

_PRODUCT_OPS = r"(\\odot|\\circ|\\cdot|\*|\\times|\\ast)\s*$"


@dataclass(frozen=True)
class Slip:
    """One repair: its kind (see the module docstring), what a person reads, the new text."""

    kind: str
    what: str
    new: str
    side: str = "rhs"


class Slips:
    """Candidate repairs of the lines of one document (its cell, its symbols, its style)."""

    def __init__(self, cell: Cell, params: dict, timed: set[Key], sides: list, text: str):
        self.cell = cell
        self.params = params          # key -> value (shapes of the parameters)
        self.timed = timed | set(cell.nodes)
        self.sides = sides            # every parsed side of the document (for missing terms)
        self.text = text

    # -- the right-hand side ---------------------------------------------------------------
    def candidates(self, rhs: g.Node, start: int, src: str,
                   only: str | None = None) -> Iterator[Slip]:
        """Repairs of one right-hand side, the likeliest first; ``only``: replace that symbol
        alone (it is not defined)."""
        atoms = [a for a in g.walk(rhs) if isinstance(a, g.Atom)]
        if only is not None:
            atoms = [a for a in atoms if a.text == only]
        by_text: dict[str, list[g.Atom]] = {}
        for a in atoms:
            by_text.setdefault(src[a.span[0] - start:a.span[1] - start], []).append(a)
        # every occurrence of a symbol replaced at once, then one occurrence at a time
        for text, occ in by_text.items():
            for kind, alt in self.alternatives(occ[0]):
                alt = _bracketed(text, alt)
                new = src
                for a in sorted(occ, key=lambda x: -x.span[0]):
                    new = new[:a.span[0] - start] + alt + new[a.span[1] - start:]
                yield Slip(kind, _say(kind, text, alt), new)
        for a in atoms:
            text = src[a.span[0] - start:a.span[1] - start]
            if len(by_text[text]) > 1:
                for kind, alt in self.alternatives(a):
                    alt = _bracketed(text, alt)
                    yield Slip(kind, _say(kind, text, alt),
                               src[:a.span[0] - start] + alt + src[a.span[1] - start:])
        if only is not None:
            return
        yield from self._calls(rhs, start, src)
        yield from self._points(rhs, start, src)
        yield from self._derivative_swaps(rhs, start, src)
        yield from self._transposes(rhs, start, src)
        yield from self._orders(rhs, start, src)
        yield from self._extras(rhs, start, src)
        for n in g.walk(rhs):
            if isinstance(n, (g.Mul, g.Add)) and _looks_derivative(n):
                a0, a1 = n.span[0] - start, n.span[1] - start
                for alt in self.derivative_forms():
                    yield Slip("point", _say("point", src[a0:a1], alt),
                               src[:a0] + alt + src[a1:])

    def last_resort(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        """Repairs tried after the left-hand side's: the value 0, a dropped term or factor."""
        yield Slip("value", "the value due is 0", "0")
        yield from self._missing(rhs, start, src)

    def alternatives(self, a: g.Atom) -> list[tuple[str, str]]:
        """(kind, text) for one symbol: another time, another node, \\hat toggled, a
        parameter transposed or swapped for one of its shape."""
        cell = self.cell
        r = read_atom(a, self.timed)
        out: list[tuple[str, str]] = []
        if r.key not in cell.nodes and r.key not in cell.params and r.time is not None:
            out += [("gate", _rename(a, k)) for k in cell.order]  # undefined: a node alike
        if r.time is not None and r.time[0] in ("t", "k") and r.time[2] is None:
            out += [("time", _retime(a, off, r.time[0])) for off in (-1, 0, 1)
                    if off != r.time[1]]
        if r.time is not None:
            out += [("gate", _rename(a, k)) for k in [*cell.order, *cell.inputs] if k != r.key]
            hat = re.fullmatch(r"\\(?:hat|widehat|tilde)\{(.+)\}", a.base)
            if hat is None:
                out.append(("gate", _rename(a, Key(r"\hat{" + a.base + "}", r.key.name_sub))))
            else:
                out.append(("gate", _rename(a, Key(hat.group(1), r.key.name_sub))))
        if r.key in cell.params and r.key in self.params:
            shape = self.params[r.key].shape
            for p, v in self.params.items():
                if p != r.key and v.shape == shape:
                    out.append(("gate", p.latex))
        if r.key not in cell.nodes and r.key not in cell.params and r.time is None:
            out += [("gate", alt) for alt in self._named_alternatives(a)]
        return [(k, o) for k, o in out if o != a.text]

    def _derivative_swaps(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        """A hand-written derivative of the other activation: ``x \\circ (1 - x)`` (the
        sigmoid's, in its output) where ``1 - x^2`` (tanh's) is due, and the reverse; x a node
        of the cell."""
        op = re.search(r"\\odot|\\circ|\\cdot|\*", src)
        op_text = f" {op.group()} " if op else " "
        for n in g.walk(rhs):
            if isinstance(n, g.Mul):
                for x, y in zip(n.factors, n.factors[1:], strict=False):
                    if self._node_atom(x) and isinstance(y, g.Add) and _one_minus(y) == x:
                        a0, a1 = x.span[0] - start, y.span[1] - start
                        xs = src[x.span[0] - start:x.span[1] - start]
                        alt = f"(1-({xs})^2)"
                        yield Slip("activation", _say("activation", src[a0:a1], alt),
                                   src[:a0] + alt + src[a1:])
            if isinstance(n, g.Add):
                sq = _one_minus(n)
                if isinstance(sq, g.Pow) and sq.exp == 2 and self._node_atom(sq.base):
                    a0, a1 = n.span[0] - start, n.span[1] - start
                    xs = src[sq.base.span[0] - start:sq.base.span[1] - start]
                    inner = src[a0:a1]
                    opened = inner.startswith("(")
                    alt = f"{xs}{op_text}(1-{xs})"
                    alt = f"({alt})" if opened else alt
                    yield Slip("activation", _say("activation", inner, alt),
                               src[:a0] + alt + src[a1:])

    def _node_atom(self, x: g.Node) -> bool:
        return isinstance(x, g.Atom) and read_atom(x, self.timed).key in self.cell.nodes

    def _named_alternatives(self, a: g.Atom) -> list[str]:
        """A name the author gives a part of one node (``\\delta_{z_{zt}}``, the adjoint of
        z_t's pre-activation) put for the same name of another node (``\\delta_{z_{rt}}``),
        in the author's own spelling of it."""
        mine = _named_part(a, self.cell)
        if mine is None or a.span == (0, 0):
            return []
        lead = _lead(self.text[a.span[0]:a.span[1]])
        out: list[str] = []
        for side in self.sides:
            if not isinstance(side, g.Node):
                continue
            for b in g.walk(side):
                if not isinstance(b, g.Atom) or b.base != a.base or b.span == (0, 0):
                    continue
                other = _named_part(b, self.cell)
                txt = self.text[b.span[0]:b.span[1]]
                if other is None or other[0] == mine[0] or other[1] != mine[1] or \
                        _lead(txt) != lead or txt in out:
                    continue
                out.append(txt)
        return out

    def _calls(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        """A function replaced (\\sigma for \\tanh, \\sigma_y for \\sigma_h), a power or a
        prime dropped or added."""
        names = [r"\sigma", r"\tanh"] + [_fn_latex(f) for f in self.cell.generic]
        for c in g.walk(rhs):
            if not isinstance(c, g.Call) or c.arg is None:
                continue
            a0, a1 = c.span[0] - start, c.span[1] - start
            head = src[a0:c.arg.span[0] - start]
            left = re.search(r"\\left\s*$", head)
            arg = (left.group() if left else "") + src[c.arg.span[0] - start:a1]
            whole = src[a0:a1]
            mine = _fn_latex(c.fn)
            prime = "'" * c.primes
            power = "" if c.power == 1 else f"^{c.power}"
            alts = [f"{n}{prime}{power}{arg}" for n in names if n != mine]
            alts.append(f"{mine}{prime}{arg}" if c.power != 1 else f"{mine}{prime}^2{arg}")
            if c.primes:
                alts.append(f"{mine}{power}{arg}")
            old_head = (head[:left.start()] if left else head).strip()
            for alt in dict.fromkeys(alts):
                new_head = alt[:len(alt) - len(arg)].strip()
                said = _say("activation", old_head, new_head) if len(whole) > 40 else \
                    _say("activation", whole, alt)
                yield Slip("activation", said, src[:a0] + alt + src[a1:])

    def _points(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        """``\\sigma'(f_t)`` with f_t = \\sigma(z): the derivative at the gate output; due at
        the pre-activation, which is f_t (1 - f_t) in the gate's own symbol."""
        for c in g.walk(rhs):
            if not (isinstance(c, g.Call) and c.primes == 1 and isinstance(c.arg, g.Atom)):
                continue
            r = read_atom(c.arg, self.timed)
            e = self.cell.nodes.get(r.key)
            if not isinstance(e, g.Call) or e.arg is None:
                continue
            x = src[c.arg.span[0] - start:c.arg.span[1] - start].strip()
            if x[:1] == "(" and x[-1:] == ")":
                x = x[1:-1].strip()
            form = _derivative_text(e.fn, x)
            if form is None:
                continue
            a0, a1 = c.span[0] - start, c.span[1] - start
            yield Slip("point", f"{src[a0:a1]} takes the derivative at the gate output {x}; it is "
                       f"due at the pre-activation: {form}", src[:a0] + form + src[a1:])

    def _transposes(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        for n in g.walk(rhs):
            if isinstance(n, g.Tr):
                a0, a1 = n.span[0] - start, n.span[1] - start
                inner = n.of
                b1 = inner.span[1] - start
                yield Slip("transpose", f"{src[a0:a1]} should not be transposed",
                           src[:a0] + src[inner.span[0] - start:b1] + src[a1:])
            elif isinstance(n, g.Atom) and read_atom(n, self.timed).key in self.params and \
                    self.params[read_atom(n, self.timed).key].ndim == 2:
                a0, a1 = n.span[0] - start, n.span[1] - start
                inside = src[a0:a1].rfind(n.text)   # {\left(W\right)}^{T-i}: the W inside
                if inside > 0:
                    a0, a1 = a0 + inside, a0 + inside + len(n.text)
                if src[a1:].lstrip().startswith("^"):
                    continue
                yield Slip("transpose", f"missing transpose: {src[a0:a1]}^T is due",
                           src[:a1] + "^T" + src[a1:])

    def _orders(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        for n in g.walk(rhs):
            if not isinstance(n, g.Mul):
                continue
            for k in range(len(n.factors) - 1):
                f1, f2 = n.factors[k], n.factors[k + 1]
                a0, a1 = f1.span[0] - start, f1.span[1] - start
                b0, b1 = f2.span[0] - start, f2.span[1] - start
                x, y = src[a0:a1], src[b0:b1]
                new = src[:a0] + y + src[a1:b0] + x + src[b1:]
                yield Slip("order", f"the factors {x} and {y} in the wrong order", new)

    def _extras(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        for n in g.walk(rhs):
            if isinstance(n, g.Add):
                for _sign, t in n.terms:
                    a0, a1 = t.span[0] - start, t.span[1] - start
                    pre = src[:a0].rstrip()
                    if pre.endswith(("+", "-")):
                        new = pre[:-1] + src[a1:]
                    else:
                        new = src[:a0] + src[a1:].lstrip().lstrip("+")
                    yield Slip("extra", f"extra term {src[a0:a1]}", new)
            if isinstance(n, g.Mul):
                for f in n.factors:
                    a0, a1 = f.span[0] - start, f.span[1] - start
                    new = re.sub(_PRODUCT_OPS, "", src[:a0]) + src[a1:]
                    if new.strip() != src.strip() and new.strip():
                        yield Slip("extra", f"extra factor {src[a0:a1]}", new)

    def derivative_forms(self) -> list[str]:
        out = []
        style = self.style()
        for k in self.cell.order:
            e = self.cell.nodes[k]
            if isinstance(e, g.Call) and e.arg is not None:
                form = _derivative_text(e.fn, _at(k, style))
                if form is not None:
                    out.append(form)
        return out

    def style(self) -> str:
        """How the document writes the time: 'sup' (h^t), 'sub' (h_t), 'paren' (h^{(t)})."""
        for side in self.sides:
            if isinstance(side, g.Atom) and read_atom(side, self.timed).key in self.cell.nodes:
                if side.sup is not None and "(" in side.sup:
                    return "paren"
                return "sup" if side.sup is not None and time_of(side.sup) else "sub"
        return "sub"

    def _missing(self, rhs: g.Node, start: int, src: str) -> Iterator[Slip]:
        """A dropped term or factor: the terms and factors the document writes in its other
        lines (a recurrent contribution, a derivative factor), added to the line or to the
        term they belong in."""
        pool = self.pieces()
        mine = re.sub(r"\s+", "", src)
        for piece in pool:
            if re.sub(r"\s+", "", piece) in mine:
                continue
            yield Slip("missing", f"missing term {piece}", f"{src} + {piece}")
        # a term dropped inside a bracket: \sigma(W_o [h_{t-1}, x_t]) for ... + b_o)
        inner = [n for n in g.walk(rhs) if isinstance(n, g.Add) and n is not rhs]
        inner += [n.arg for n in g.walk(rhs) if isinstance(n, g.Call) and n.arg is not None
                  and not isinstance(n.arg, (g.Add, g.Stack)) and n.arg.span != (0, 0)]
        for piece in pool:
            if re.sub(r"\s+", "", piece) in mine:
                continue
            for n in inner:
                a, b = n.span[0] - start, n.span[1] - start
                if src[a:a + 1] in ("(", "[") and src[b - 1:b] in (")", "]"):
                    b -= 1   # an argument's span holds its brackets
                yield Slip("missing", f"missing term {piece} in {src[a:b].strip('([')}",
                           f"{src[:b]} + {piece}{src[b:]}")
        for piece in pool:
            if re.sub(r"\s+", "", piece) in mine:
                continue
            yield Slip("missing", f"missing factor {piece}", f"{piece} \\odot ({src})")
            # a matrix factor (W^T dL/do): the product the shapes decide
            yield Slip("missing", f"missing factor {piece}", f"{piece} ({src})")
            # inside a term of a sum: the factor belongs to one of them
            if isinstance(rhs, g.Add):
                for _sign, t in rhs.terms:
                    a0, a1 = t.span[0] - start, t.span[1] - start
                    yield Slip("missing", f"missing factor {piece} in {src[a0:a1]}",
                               src[:a0] + f"{piece} \\odot " + src[a0:a1] + src[a1:])

    def pieces(self) -> list[str]:
        """Terms of sums and factors of products that the document writes, as written."""
        out: dict[str, None] = {}
        for side in self.sides:
            if not isinstance(side, g.Node):
                continue
            for n in g.walk(side):
                parts: list[g.Node] = []
                if isinstance(n, g.Add):
                    parts = [t for _s, t in n.terms]
                elif isinstance(n, g.Mul):
                    parts = list(n.factors)
                elif isinstance(n, g.Call) and n.primes:
                    parts = [n]
                for p in parts:
                    if isinstance(p, g.Num) or p.span == (0, 0):
                        continue
                    txt = re.sub(r"\s+", " ", self.text[p.span[0]:p.span[1]]).strip()
                    if txt and len(txt) < 120:
                        out[txt] = None
                        whole = _whole_vectors(txt)
                        if whole != txt:   # \delta_{t[i]} f_{[i]}: the vectors' product too
                            out.setdefault(whole, None)
        return list(out)

    # -- the left-hand side ----------------------------------------------------------------
    def lhs_candidates(self, lhs: g.Node, start: int, src: str,
                       names: list[Key]) -> Iterator[Slip]:
        """The quantity differentiated is another name of the document (``\\nabla_W q`` where
        ``v`` is meant; ``names``: the names in scope), or the variable differentiated by is
        another (:meth:`den_candidates`)."""
        if not isinstance(lhs, g.Deriv):
            return
        yield from self._num_candidates(lhs, start, src, names)
        yield from self.den_candidates(lhs, start, src)

    def den_candidates(self, lhs: g.Deriv, start: int, src: str) -> Iterator[Slip]:
        """The author differentiates by the wrong variable: another parameter of the cell
        (``\\partial v_{ij}`` where ``w_{ij}`` is meant, in the author's spelling and indices),
        the same node at another step, or another node at that step."""
        d = lhs.den
        if not isinstance(d, g.Atom):
            return
        r = read_atom(d, self.timed)
        a0, a1 = d.span[0] - start, d.span[1] - start
        mine = self._param(r)
        alts: list[str] = []
        if mine is not None and mine in self.params:
            ndim = self.params[mine].ndim
            for p, v in self.params.items():
                if p == mine or v.ndim != ndim:
                    continue
                base = p.base.lower() if d.base.islower() and r.indices else p.base
                if r.indices:   # an entry: w_{ij} -> u_{ij}, the author's indices kept
                    alts.append(g.Atom(base, d.sub, d.sup, d.primes).text)
                else:
                    alts.append(g.Atom(p.base, p.name_sub, d.sup, d.primes).text)
        elif r.time is not None and (r.key in self.cell.nodes or r.key in self.cell.inputs):
            if r.time[0] == "t" and r.time[2] is None:
                alts += [_retime(d, off) for off in (-1, 0, 1) if off != r.time[1]]
            for k in [*self.cell.order, *self.cell.inputs]:
                if k != r.key:   # another node, at the step written or at t, t-1, t+1
                    alts.append(_rename(d, k))
                    if r.time[0] == "t" and r.time[2] is None:
                        alts += [_rename(_retimed(d, off), k) for off in (0, -1, 1)]
        for alt in dict.fromkeys(alts):
            if alt == d.text:
                continue
            old = src[a0:a1]
            yield Slip("lhs", f"wrong left-hand side: it differentiates by {old}; the right-hand "
                       f"side is the derivative by {alt}", src[:a0] + alt + src[a1:], "lhs")

    def _param(self, r) -> Key | None:
        """The parameter a reading names (itself, or the matrix of an entry w_{ij})."""
        if r.key in self.params:
            return r.key
        if r.indices:
            same = [k for k in self.params if k.base.lower() == r.key.base.lower()
                    and k.name_sub == r.key.name_sub]
            return same[0] if len(same) == 1 else None
        return None

    def _num_candidates(self, lhs: g.Deriv, start: int, src: str,
                        names: list[Key]) -> Iterator[Slip]:
        if not isinstance(lhs.num, g.Atom):
            return
        a = lhs.num
        r = read_atom(a, self.timed)
        a0, a1 = a.span[0] - start, a.span[1] - start
        for k in names:
            if k == r.key:
                continue
            alt = _rename(a, k)
            if alt == a.text:
                continue
            yield Slip("lhs", f"the left-hand side differentiates {src[a0:a1]}; the right-hand "
                       f"side is the derivative of {alt}", src[:a0] + alt + src[a1:], "lhs")


_KIND_WORDS = {"time": "wrong step", "gate": "wrong symbol", "activation": "wrong function",
               "point": "wrong derivative form"}


def _one_minus(n: g.Add) -> g.Node | None:
    """x of ``1 - x``, or None."""
    if len(n.terms) == 2 and isinstance(n.terms[0][1], g.Num) and n.terms[0][1].value == 1 \
            and n.terms[0][0] == 1 and n.terms[1][0] == -1:
        return n.terms[1][1]
    return None


def _named_part(a: g.Atom, cell: Cell) -> tuple[str, str] | None:
    """(node, step) of a name whose subscript is a node and its step (``z_{z_t}``)."""
    if a.sub is None or a.sup is not None:
        return None
    names = {k.latex for k in cell.nodes}
    m = re.fullmatch(r"(.+)_(\{?t[^_]*)", a.sub)
    if m is None or m.group(1) not in names:
        return None
    return m.group(1), m.group(2)


def _whole_vectors(txt: str) -> str:
    """An element's expression written for the whole vectors: its unit indices in square
    brackets dropped (``\\delta_{t[i]}^{(k)} \\times f^{(k)}_{[i]}`` ->
    ``\\delta_{t}^{(k)} \\times f^{(k)}``)."""
    out = re.sub(r"_\{\s*\[\s*[a-z](?:\s*,\s*[a-z])*\s*\]\s*\}", "", txt)
    return re.sub(r"\[\s*[a-z](?:\s*,\s*[a-z])*\s*\]", "", out)


def _lead(text: str) -> str:
    """What a symbol's spelling starts with (``\\delta`` of ``\\delta_{z_{zt}}``)."""
    m = re.match(r"\\?[A-Za-z]+", text)
    return m.group(0) if m else text


def _say(kind: str, old: str, new: str) -> str:
    return f"{_KIND_WORDS.get(kind, 'wrong factor')}: {old} (should be {new})"


def _bracketed(old: str, new: str) -> str:
    """A symbol written in brackets (``(x_t)^T``) is replaced inside them."""
    old = old.strip()
    if old[:1] in "([" and old[-1:] in ")]":
        return old[0] + new + old[-1]
    return new


def _derivative_text(fn: str, x: str) -> str | None:
    """The derivative of an activation at its pre-activation, written through its output x."""
    if fn in ("sigma", "sigmoid", "sigm"):
        return f"{x} \\odot (1 - {x})"
    if fn == "tanh":
        return f"(1 - {x}^2)"
    return None


def _at(k: Key, style: str, off: int = 0) -> str:
    t = "t" if off == 0 else f"t{off:+d}"
    if style == "paren":
        return f"{k.latex}^{{({t})}}"
    if style == "sup":
        return f"{k.latex}^{{{t}}}" if off else f"{k.latex}^t"
    return f"{k.latex}_{{{t}}}" if off else f"{k.latex}_t"


def _retime(a: g.Atom, off: int, var: str = "t") -> str:
    return _retimed(a, off, var).text


def _retimed(a: g.Atom, off: int, var: str = "t") -> g.Atom:
    """The symbol at step t+off (k+off where the author writes the step (k)), its time written
    where the author writes it."""
    t = var if off == 0 else f"{var}{off:+d}"
    sub, sup = a.sub, a.sup
    if var == "k":
        return g.Atom(a.base, sub, f"({t})", a.primes)
    if time_of(sub) is not None:
        sub = t
    elif time_of(sup) is not None:
        sup = f"({t})" if sup and "(" in sup else t
    return g.Atom(a.base, sub, sup, a.primes)


def _rename(a: g.Atom, k: Key) -> str:
    sub = a.sub if time_of(a.sub) is not None else k.name_sub
    sup = a.sup
    if time_of(a.sub) is None and k.name_sub is None and a.sub is not None:
        sub = None
    return g.Atom(k.base, sub, sup, a.primes).text


def _fn_latex(fn: str) -> str:
    """A function's name as the document writes it: sigma_{y} -> \\sigma_{y}."""
    fixed = {"sigma": r"\sigma", "sigmoid": r"\sigma", "tanh": r"\tanh"}
    if fn in fixed:
        return fixed[fn]
    base, _, sub = fn.partition("_")
    if base in lx.ACTIVATIONS or base in ("sigma", "phi", "varphi", "psi"):
        base = "\\" + base
    return base + ("_" + sub if sub else "")


def _looks_derivative(n: g.Node) -> bool:
    """``1 - x``, ``1 - \\tanh(z)``, ``x \\odot (1 - x)``: a hand-written activation
    derivative."""
    if isinstance(n, g.Add) and len(n.terms) == 2 and isinstance(n.terms[0][1], g.Num):
        return True
    if isinstance(n, g.Mul) and len(n.factors) == 2 and isinstance(n.factors[1], g.Add) and \
            _looks_derivative(n.factors[1]):
        return True
    return False
