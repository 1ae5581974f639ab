"""Judging the derivations people write: the author's cell, every line at its place, a value
for each side, and for a wrong line the term that differs and the corrected right-hand side in
the author's own symbols (issue 16, items 1-5 and 7).

A line's left-hand side says what is claimed:

* ``\\frac{\\partial E}{\\partial x^t}``, ``\\delta x^t``, ``\\nabla_{x^t} L``: the adjoint of x
  at t, read as the author may mean it: the total, or only through step t (what
  ``\\delta c^t \\mathrel{+}= \\frac{\\partial E}{\\partial c^t}`` adds to), or only through step
  t+1; ``+=`` claims one of the parts;
* ``\\frac{\\partial E}{\\partial W}``: the total gradient or its step-t part;
* ``\\frac{\\partial u}{\\partial v}``, ``\\nabla_v u``: a Jacobian, read one step at a time (the
  states of t-1 held) or through time; written in full, as its diagonal (``\\nabla_p i_t =
  \\sigma(p)(1-\\sigma(p))``), as ``1`` for an identity, as ``x^T`` for d(Wx)/dW, or transposed
  (denominator layout);
* ``c^{t+1}``, ``h_1^\\alpha``: a node of the cell (a restatement of its equation);
* a name the document introduces (``p = q + v + b_i``): a definition, read into the cell (a
  premise, reported as such);
* ``\\mathbf{E}[z_t]``: an expectation over the document's random variables; the premises of
  :mod:`derive.check.premises` (an abstract form ``h_t = f(x_t, h_{t-1}, w)``, an objective, a
  distribution, a function's formula) are read into the cell and reported as premises.

A symbol written plain where the document also writes it bold (``h_t`` and ``\\mathbf{h}_t``) is
one symbol.

Each right-hand side is evaluated at t = 2 and t = 3 of a 4-step sequence (and for every value
of the unit indices the left-hand side leaves free) and compared.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass

import numpy as np

from . import grammar as g
from . import lexicon as lx
from . import names
from . import premises as pm
from .cell import Cell, CellError, Key, atoms_of, build, has_derivative, read_atom, time_of
from .document import Equation, equations, rows_joined, segments, underbrace_definitions
from .meaning import Alias, Env, Evaluator, NotJudged
from .slips import Slips, _bracketed, _retime
from .tokens import strip_layout, tokenize
from .world import ShapeError, World

TIMES = (2, 3)


@dataclass
class Line:
    """One right-hand side, ready to report."""

    eq_index: int
    k: int
    verdict: str          # correct | wrong | ill-typed | malformed | skipped
    detail: str
    pos: int
    lhs: str
    rhs: str
    differences: list[dict]


def _text(text: str, toks: list) -> str:
    if not toks:
        return ""
    return re.sub(r"\s+", " ", text[toks[0].pos:toks[-1].end]).strip()


class DocumentJudge:
    def __init__(self, text: str, fmt: str):
        self.text = text
        self.fmt = fmt
        segs, self.problems = segments(text, fmt)
        self.eqs: list[Equation] = [e for s in segs for e in equations(s)]
        # the names written under braces, after the equations (a line's place is its own)
        self.eqs += [e for s in segs if s.display for e in underbrace_definitions(s)
                     if isinstance(self._read(e.lhs), g.Atom)
                     and isinstance(self._read(e.rhs[0]), g.Node)]
        self.parsed: list[tuple] = []
        for e in self.eqs:
            self.parsed.append((self._read(e.lhs), [self._read(r) for r in e.rhs]))
        self.bold = _bold_bases(self.parsed)
        self.parsed = [(_unfont(lhs, self.bold), [_unfont(r, self.bold) for r in rhss])
                       for lhs, rhss in self.parsed]
        self.timed = self._timed()
        # \frac{\partial C_{t+1}}{\partial C_t}: C is a loss's name only where it is not a
        # symbol the document writes with a time index
        self.parsed = [(_unloss(lhs, self.timed), [_unloss(r, self.timed) for r in rhss])
                       for lhs, rhss in self.parsed]
        # the author's names in subscripts (\delta_{z_{zt}}, d_{W_{h,t}}): :mod:`.names`
        self.names = names.reader(self.parsed, self.timed)
        self.parsed = [(self.names(lhs), [self.names(r) for r in rhss])
                       for lhs, rhss in self.parsed]
        self.timed = self._timed()
        self.sections = [m.start() for m in re.finditer(
            r"^#+ |\\(?:sub)*section\*?\{", text, re.M)]
        self.cell: Cell | None = None
        self.cell_error = ""
        try:
            self.cell = build(self._inline(self._templates_out(self._defs())), self.timed)
        except CellError as exc:
            self.cell_error = str(exc)
        self.world = None
        if self.cell is not None:
            try:
                self.world = World(self.cell)
            except (ShapeError, ValueError, KeyError, ZeroDivisionError) as exc:
                # forward equations the checker reads but cannot run (a shape it does not
                # compose, a node read before the step computes it): no cell, with the reason
                self.cell_error = f"the forward equations do not evaluate ({_say_error(exc)})"
                self.cell = None
        if self.cell is not None:   # \delta_t: the adjoint of the one output state
            out = names.output_adjoint(self.parsed, self.cell)
            self.parsed = [(out(lhs), [out(r) for r in rhss]) for lhs, rhss in self.parsed]
            prev = self.names
            self.names = lambda node: out(prev(node))
        self.premises = pm.read(self.eqs, self.parsed, self.cell, self.timed,
                                self.world.T if self.world else 4)
        if self.cell is None:
            self.premises.unmatched = pm.unmatched_abstract(self.eqs, self.parsed, self.timed)
        if self.cell is not None:
            for fn in self.premises.functions:
                self.cell.generic.pop(fn, None)
        self.aliases = self._aliases() if self.cell else []
        self.accumulated = self._accumulated()
        self.node_defs = self._node_defs() if self.cell else []
        sides = [x for lhs, rhss in self.parsed for x in (lhs, *rhss)]
        self.copy_readers: dict[Key, tuple[Key, tuple]] = {}
        self.copy_note = ""
        self._scoring = False
        self.slips = Slips(self.cell, self.world.params, self.timed, sides, text) \
            if self.cell is not None and self.world is not None else None

        if self.cell is not None and self.world is not None:
            self._choose_copy_readers()

    # -- copies ----------------------------------------------------------------------------------
    def _copy_groups(self) -> dict[Key, list[Key]]:
        """Copies of a node that the document differentiates by and never defines (the
        "dummy variables" s_a^{(k-1)}, s_b^{(k-1)} of s^{(k-1)}): node -> its copies, in the
        order written."""
        assert self.cell is not None
        cell = self.cell
        defined = {a.key for a in self.aliases} | set(cell.nodes) | set(cell.params) | \
            set(cell.inputs) | set(getattr(self, "adjoint_names", {}))
        out: dict[Key, list[Key]] = {}
        for lhs, rhss in self.parsed:
            for side in (lhs, *rhss):
                if not isinstance(side, g.Node):
                    continue
                for n in g.walk(side):
                    den = n.den if isinstance(n, g.Deriv) else (
                        n.of if isinstance(n, g.Adj) else None)
                    if not isinstance(den, g.Atom):
                        continue
                    r = read_atom(den, self.timed | set(cell.nodes))
                    node = Key(r.key.base)
                    if r.key.name_sub is None or r.time is None or r.key in defined or \
                            node not in cell.nodes or \
                            not re.fullmatch(r"[A-Za-z0-9]{1,3}", r.key.name_sub):
                        continue
                    if r.key not in out.setdefault(node, []):
                        out[node].append(r.key)
        return out

    def _mentions_copy(self, *sides) -> bool:
        return any(isinstance(a, g.Atom) and
                   read_atom(a, self.timed | set(self.cell.nodes)).key in self.copy_readers
                   for side in sides if isinstance(side, g.Node) for a in g.walk(side))

    def _choose_copy_readers(self) -> None:
        """One reader for each copy, distinct within a node, for the whole document: each
        assignment is tried on the lines that mention a copy, and the one under which most of
        them hold is kept (the first, in the cell's order, among equals). Said in the detail
        of every line that mentions a copy."""
        assert self.world is not None
        groups = self._copy_groups()
        choices = []
        for node, copies in groups.items():
            readers = self.world.readers(node)
            if len(readers) < len(copies):
                continue
            choices.append([[(c, (node, rd)) for c, rd in zip(copies, perm, strict=True)]
                            for perm in itertools.permutations(readers, len(copies))])
        if not choices:
            return
        options = list(itertools.islice(itertools.product(*choices), 120))
        best, best_score, lines = None, -1, 0
        self.copy_scores: list[int] = []
        self._scoring = True
        try:
            for option in options:
                self.copy_readers = {c: v for group in option for c, v in group}
                score = lines = 0
                for e, (lhs, rhss) in zip(self.eqs, self.parsed, strict=True):
                    for k, (rtoks, rhs) in enumerate(zip(e.rhs, rhss, strict=True), 1):
                        if self._mentions_copy(lhs, rhs):
                            lines += 1
                            score += self.judge(e, lhs, rhs, k, rtoks)[0] == "correct"
                self.copy_scores.append(score)
                if score > best_score:
                    best, best_score = dict(self.copy_readers), score
        finally:
            self._scoring = False
        self.copy_readers = best or {}
        self.world._cache.clear()
        self.copy_note = "the document's copies read as " + "; ".join(
            f"{c.latex} = {node.latex} as {_reader_text(rd)} reads it"
            for c, (node, rd) in self.copy_readers.items()) + \
            f" (of {len(options)} assignments of copies to readers, the one under which the " \
            f"most lines that mention a copy hold: {best_score} of {lines})"

    # -- reading -------------------------------------------------------------------------------
    def _read(self, toks):
        try:
            return g.read_side(toks, self.text)
        except g.SyntaxProblem as exc:
            return exc

    def _timed(self) -> set[Key]:
        out: set[Key] = set()
        for lhs, rhss in self.parsed:
            for n in [lhs, *rhss]:
                if isinstance(n, g.Node):
                    for a in g.walk(n):
                        if isinstance(a, g.Atom):
                            for s in (a.sub, a.sup):
                                t = time_of(s)
                                if t is not None and t[0] in ("t", "T", "k"):
                                    out.add(Key(a.base))
                                    if s == a.sup and a.sub is not None:
                                        out.add(Key(a.base, a.sub))
        return out

    def _defs(self):
        out = []
        for e, (lhs, rhss) in zip(self.eqs, self.parsed, strict=True):
            if e.segment.comment or not e.rels or e.rels[0] != "=":
                continue
            if isinstance(lhs, g.Atom):
                out.append((lhs, [r for r in rhss if isinstance(r, g.Node)], e.pos))
        return out

    def _templates_out(self, defs):
        """The definitions less the templates of a sum over named gates: ``m_t = W_a X +
        b_a`` beside ``\\sum_{a \\in \\{f, i, c, o\\}}`` is every gate's pre-activation at once,
        no step of the cell (it stays a name, read with a bound to a gate)."""
        holders = {n.var for lhs, rhss in self.parsed for side in (lhs, *rhss)
                   if isinstance(side, g.Node) for n in g.walk(side)
                   if isinstance(n, g.Big) and n.members is not None}
        if not holders:
            return defs
        return [(lhs, rhss, pos) for lhs, rhss, pos in defs
                if not any(isinstance(a, g.Atom) and (a.sub in holders or a.base in holders)
                           for x in rhss for a in g.walk(x))]

    def section(self, pos: int) -> int:
        return sum(1 for s in self.sections if s <= pos)

    def _inline(self, defs):
        """Forward equations written through local names (``i_t = \\sigma(p)``, ``p = q + v +
        b_i``, ``q = W_{x_i} x_t``): the names replaced by their definitions in the same
        section."""
        local: dict[Key, list[tuple[int, g.Node]]] = {}
        for lhs, rhss, pos in defs:
            if lhs.sub is None and lhs.sup is None and rhss:
                local.setdefault(Key(lhs.base), []).append((pos, rhss[0]))
        if not local:
            return defs

        def near(key: Key, pos: int) -> g.Node | None:
            cands = local.get(key, [])
            same = [c for c in cands if self.section(c[0]) == self.section(pos)]
            pool = same or [c for c in cands if c[0] < pos]
            if not pool:
                return None
            return min(pool, key=lambda c: abs(c[0] - pos))[1]

        def subst(node: g.Node, pos: int, depth: int = 0) -> g.Node:
            if depth > 8:
                return node
            if isinstance(node, g.Atom) and node.sub is None and node.sup is None and \
                    Key(node.base) in local:
                rep = near(Key(node.base), pos)
                if rep is not None:
                    return _paren(subst(rep, pos, depth + 1))
                return node
            return _map_children(node, lambda c: subst(c, pos, depth))

        out = []
        for lhs, rhss, pos in defs:
            if lhs.sub is None and lhs.sup is None:
                out.append((lhs, rhss, pos))
                continue
            out.append((lhs, [subst(r, pos) for r in rhss], pos))
        return out

    def _accumulated(self) -> set[Key]:
        """The symbols whose adjoint the document accumulates with ``+=``."""
        out: set[Key] = set()
        for e, (lhs, rhss) in zip(self.eqs, self.parsed, strict=True):
            if "+=" in e.rels:
                for side in (lhs, *rhss):
                    d = _den(side) if isinstance(side, g.Node) else None
                    if isinstance(d, g.Atom):
                        out.add(read_atom(d, self.timed).key)
        return out

    def _node_defs(self) -> list[tuple[Key, g.Node, int]]:
        assert self.cell is not None
        out = []
        for lhs, rhss, pos in self._defs():
            r = read_atom(lhs, self.timed | set(self.cell.nodes))
            if r.key in self.cell.nodes:
                out.extend((r.key, x, pos) for x in rhss)
        return out

    def _ev(self, pos: int) -> Evaluator:
        ev = Evaluator(self.world, self.aliases, self.timed, pos, self.section, self.premises)
        ev.node_defs = self.node_defs
        ev.copies = self.copy_readers
        return ev

    def _adjoint_names(self) -> dict[Key, int]:
        """Names the document defines as a derivative (``\\delta_t^{(k)}`` under the brace of
        dJ^{(t)}/ds^{(k)}), with the place of the first such definition: a later equation for
        such a name states what it equals, a claim to judge, not a new definition."""
        assert self.cell is not None
        out: dict[Key, int] = {}
        for e, (lhs, rhss) in zip(self.eqs, self.parsed, strict=True):
            if isinstance(lhs, g.Atom) and e.rels and e.rels[0] == "=" and any(
                    isinstance(n, (g.Deriv, g.Adj)) for x in rhss if isinstance(x, g.Node)
                    for n in g.walk(x)):
                key = read_atom(lhs, self.timed | set(self.cell.nodes)).key
                out[key] = min(out.get(key, e.pos), e.pos)
        return out

    def _aliases(self) -> list[Alias]:
        assert self.cell is not None
        out = []
        self.adjoint_names = self._adjoint_names()
        for e, (lhs, rhss) in zip(self.eqs, self.parsed, strict=True):
            if e.segment.comment or not e.rels or e.rels[0] != "=" or \
                    not isinstance(lhs, g.Atom):
                continue
            r = read_atom(lhs, self.timed | set(self.cell.nodes))
            if r.key in self.cell.nodes or r.key in self.cell.params or r.indices or \
                    r.key in self.premises.dists or e.pos in self.premises.at:
                continue
            if self.adjoint_names.get(r.key, e.pos) < e.pos and not any(
                    isinstance(n, (g.Deriv, g.Adj)) for x in rhss if isinstance(x, g.Node)
                    for n in g.walk(x)):
                continue   # a claim about an adjoint's name
            good = [x for x in rhss if isinstance(x, g.Node) and
                    not any(isinstance(n, (g.Elided, g.Bar)) for n in g.walk(x))]
            if good:
                out.append(Alias(r.key, good[0], e.pos, r.time is not None, r.time))
        return out + self._pre_activations({a.key for a in out})

    def _pre_activations(self, named: set[Key]) -> list[Alias]:
        """Names the document uses and never defines for a node's pre-activation: ``a_f``,
        ``z_o`` beside ``f_t = \\sigma(\\dots)`` (the argument of the node's activation; a name
        whose subscript is the node's name, read at the line's own step)."""
        assert self.cell is not None
        cell = self.cell
        known = set(cell.nodes) | set(cell.params) | set(cell.inputs) | named
        by_name = {k.latex: k for k, e in cell.nodes.items()
                   if isinstance(e, g.Call) and e.arg is not None and k.name_sub is None}
        by_name |= {k.latex: k for k, e in cell.nodes.items()
                    if isinstance(e, g.Call) and e.arg is not None}
        out: dict[Key, Alias] = {}
        for lhs, rhss in self.parsed:
            for side in (lhs, *rhss):
                if not isinstance(side, g.Node):
                    continue
                for a in g.walk(side):
                    if not isinstance(a, g.Atom) or a.sub is None or a.sup is not None:
                        continue
                    r = read_atom(a, self.timed | set(cell.nodes))
                    if r.key in known or r.key in out or r.time is not None or r.indices:
                        continue
                    node = by_name.get(a.sub.strip("{}"))
                    if node is None or node.latex == a.base:
                        continue
                    arg = cell.nodes[node].arg  # type: ignore[attr-defined]
                    out[r.key] = Alias(r.key, arg, -1, True)
        return list(out.values())

    # -- judging ---------------------------------------------------------------------------------
    def lines(self) -> list[Line]:
        out: list[Line] = []
        for idx, (e, (lhs, rhss)) in enumerate(zip(self.eqs, self.parsed, strict=True), 1):
            lhs_text = _text(self.text, e.lhs)
            for k, (rtoks, rhs) in enumerate(zip(e.rhs, rhss, strict=True), 1):
                pos = rtoks[0].pos if rtoks else e.pos
                verdict, detail, diffs = self.judge(e, lhs, rhs, k, rtoks)
                if self.copy_note and verdict in ("correct", "wrong", "ill-typed") and \
                        self._mentions_copy(lhs, rhs):
                    detail = f"{detail}; {self.copy_note}" if detail else self.copy_note
                out.append(Line(idx, k, verdict, detail, pos, lhs_text,
                                _text(self.text, rtoks), diffs))
        return out

    def judge(self, e: Equation, lhs, rhs, k: int, rtoks) -> tuple[str, str, list]:
        rel = e.rels[k - 1]
        if e.segment.comment:
            return "skipped", "inside a comment", []
        if rel in lx.SKIPPED_RELATIONS:
            return "skipped", lx.SKIPPED_RELATIONS[rel].format(
                rel=e.rel_toks[k - 1].text if k - 1 < len(e.rel_toks) else rel), []
        if rel in (":=", "<-"):
            return "skipped", f"an assignment ({rel}) in an algorithm, not an equation", []
        for side, toks in ((lhs, e.lhs), (rhs, rtoks)):
            if isinstance(side, g.SyntaxProblem):
                return self._problem(side, toks)
        why = _outside(lhs) or _outside(rhs)
        if why:
            return "skipped", why, []
        idle = self._idle_sum(rhs, rtoks)
        if idle:
            return "wrong", f"{idle[0]['what']}; corrected: {idle[0]['corrected']}", idle
        if self.cell is None:
            if e.pos in self.premises.unmatched:
                return "skipped", self.premises.unmatched[e.pos], []
            return "skipped", f"no cell to judge against: {self.cell_error}", []
        quoted = self._quoted(e, lhs, rhs)
        if quoted:
            return "skipped", quoted, []
        return self._judge_value(e, lhs, rhs, k, rtoks, rel)

    def _quoted(self, e: Equation, lhs, rhs) -> str | None:
        """``\\text{(RNN Eq. 5.2) } \\frac{\\partial J}{\\partial W_h} = \\dots``: an equation
        of another model, quoted: its row opens with a label that names a model's equation
        (a word before "Eq." and its number), and it reads a symbol that neither the cell nor
        the document defines (W_h of the RNN beside the author's LSTM). Not a claim about this
        cell; its model's equations are not in the document."""
        assert self.cell is not None
        head = self.text[e.segment.start:e.pos]
        head = re.split(r"\\\\|\$\$|\n\s*\n", head)[-1]
        m = re.search(r"\\text\{\s*\(?\s*([A-Za-z][\w-]*)\s+(?:Eq|Eqn|Equation)\.?\s*"
                      r"\(?([\d.]+\d)\)?\s*\)?\s*\}", head)
        if m is None:
            return None
        cell = self.cell
        known = set(cell.nodes) | set(cell.params) | set(cell.inputs) | set(cell.targets) | \
            {a.key for a in self.aliases} | set(getattr(self, "adjoint_names", {})) | \
            set(self.copy_readers)
        ev = self._ev(e.pos)
        for side in (lhs, rhs):
            for a in g.walk(side):
                if not isinstance(a, g.Atom):
                    continue
                r = ev.reading(a)
                if r.key not in known and Key(r.key.base) not in known and \
                        r.key not in self.premises.dists:
                    return (f"an equation of another model, quoted ({m.group(1)} Eq. "
                            f"{m.group(2)}: {r.key.latex} is not a symbol of this cell nor "
                            "defined in the document), not a claim about this cell")
        return None

    def _idle_sum(self, rhs, rtoks) -> list[dict]:
        """``\\sum_{j} e^{\\theta_{[i]}}``: a sum over a unit index its body never reads, the
        body reading another unit index instead: the index of the sum written as the other
        (a softmax's denominator that is V times its numerator). Named whatever the line is,
        a definition included."""
        for n in g.walk(rhs):
            if not isinstance(n, g.Big) or n.op != "sum" or not n.var or n.members is not None:
                continue
            var = n.var.strip()
            atoms = [a for a in g.walk(n.body) if isinstance(a, g.Atom)]
            units = {u for a in atoms for u in read_atom(a, self.timed).indices}
            names = {a.base for a in atoms} | {s for a in atoms for s in (a.sub, a.sup) if s}
            if var in units or any(var in re.findall(r"[A-Za-z]+", x) for x in names):
                continue
            other = sorted(units)
            if len(other) != 1 or not rtoks:
                continue
            a0, b0 = n.body.span
            body = self.text[a0:b0]
            fixed = re.sub(r"\[\s*" + re.escape(other[0]) + r"\s*\]", f"[{var}]", body)
            if fixed == body:
                continue
            src = self.text[rtoks[0].pos:rtoks[-1].end]
            new = src[:a0 - rtoks[0].pos] + fixed + src[b0 - rtoks[0].pos:]
            return [{"kind": "index",
                     "what": f"the sum over {var} does not read {var}: {other[0]} for {var} in "
                             f"its body", "corrected": re.sub(r"\s+", " ", new).strip()}]
        return []

    def _problem(self, exc: g.SyntaxProblem, toks) -> tuple[str, str, list]:
        tok = exc.tok
        where = _where(self.text, tok.pos) if tok is not None else ""
        msg = exc.message
        if "unbalanced" in msg or "closed by" in msg or "never closed" in msg or \
                "missing after" in msg or "nothing on its" in msg:
            return "malformed", f"{where}: {msg}", []
        words = "".join(t.text for t in toks)
        if "," in words and ("\\dots" in words or "\\ldots" in words):
            return "skipped", "an enumeration (a, b, \\dots), not an equation", []
        # words outside a \begin{cases} (whose conditions are words around a claim): the line
        # states something in words, no equation between values
        if r"\text" in re.sub(r"\\begin\{cases\}.*?\\end\{cases\}", "", words):
            return "skipped", "a statement in words (\\text{...}), not an equation", []
        return "skipped", f"not read ({where}: {msg})", []

    def _meaning(self, lhs: g.Node, e: Equation, rel: str):
        """What the left-hand side claims: a list of (label, function env -> value), or a reason
        string (skipped)."""
        assert self.cell is not None and self.world is not None
        ev = self._ev(e.pos)
        if e.pos in self.premises.at:
            return self.premises.at[e.pos]
        if isinstance(lhs, g.Adj) or (isinstance(lhs, g.Deriv) and isinstance(lhs.num, g.Loss)):
            den = lhs.of if isinstance(lhs, g.Adj) else lhs.den
            if not isinstance(den, g.Atom):
                return "the derivative of the loss by an expression"
            r = read_atom(den, ev.timed)
            loss = lhs.num if isinstance(lhs, g.Deriv) else None
            is_param = ev.param_of(r) is not None or r.key in self.premises.param_vector
            if is_param and r.time is None:
                return [("the total gradient", lambda env: ev.loss_derivative(
                            den, ev.at_loss(loss, env), "all")),
                        ("its step-t part", lambda env: ev.loss_derivative(
                            den, ev.at_loss(loss, env), "all", "t"))]
            vias = ["within", "later"] if rel == "+=" else self._vias(r)
            names = {"all": "the total adjoint", "within": "the adjoint through step t only",
                     "later": "the adjoint through the next step only"}
            return [(names[v], (lambda env, v=v: ev.loss_derivative(
                den, ev.at_loss(loss, env), v))) for v in vias]
        if isinstance(lhs, g.Deriv):
            return [(f"the Jacobian ({m})", (lambda env, m=m: ev.jacobian(
                lhs.num, lhs.den, Env(env.t, env.T, env.idx, m), m))) for m in ("step", "total")]
        if isinstance(lhs, g.Atom):
            r = read_atom(lhs, ev.timed)
            if r.key in self.cell.nodes:
                if self.cell.defined_at.get(r.key) == e.pos and (
                        r.time is None or r.time[:2] == ("t", 0)):
                    return f"the author's equation of {lhs.text}, read into the cell"
                return [("the node's value", lambda env: ev.eval(lhs, env))]
            if r.key in self.premises.dists:
                return (f"an event of the random variable {lhs.text} (a value it takes), not an "
                        "equation")
            if any(a.key == r.key and a.pos == e.pos for a in self.aliases):
                return (f"a definition of {lhs.text} (a name the document introduces), read "
                        "into the cell")
            if r.key in getattr(self, "adjoint_names", {}) and ev.alias(r.key) is not None:
                return [("the adjoint the name stands for", lambda env: ev.eval(lhs, env))]
            if r.key in self.cell.params:
                return f"{lhs.text} is a parameter; a statement about it is not judged"
            return f"{lhs.text} is not a quantity of the cell"
        if isinstance(lhs, (g.Mul, g.Add, g.Big, g.Tr, g.Call, g.Expect)) and not any(
                isinstance(n, (g.Elided, g.Kron)) for n in g.walk(lhs)):
            # an equation between two expressions (a chain that starts with a product):
            # both sides are values of the cell
            return [("the left-hand side's value", lambda env: ev.eval(lhs, env))]
        return "the left-hand side is not a quantity of the cell"

    def _vias(self, r) -> list[str]:
        """The readings of ``dE/dx = ...``: a state at t is claimed whole (its recurrent part
        included) unless the document accumulates it (``\\delta c^t += ...``: then a line may
        state one part); a state at t-1 may be what step t sends back; a node read only within
        its step has one adjoint."""
        assert self.cell is not None
        if r.key not in self.cell.states or r.time is None or r.time[0] != "t":
            return ["all", "within", "later"]
        if r.time[1] < 0:
            return ["all", "later"]
        return ["all", "within", "later"] if r.key in self.accumulated else ["all"]

    def _judge_value(self, e, lhs, rhs, k, rtoks, rel):
        meaning = self._meaning(lhs, e, rel)
        if isinstance(meaning, str):
            if k > 1 and meaning.startswith("the author's equation of"):
                meaning = [("the node's value", lambda env: self._ev(e.pos).eval(lhs, env))]
            else:
                return "skipped", meaning, []
        ev = self._ev(e.pos + 1)
        if rel == "+=" and isinstance(rhs, g.Deriv) and isinstance(rhs.num, g.Loss) and \
                _den(lhs) is not None and _den(lhs) == rhs.den:
            return "correct", "", []  # accumulates the part of the adjoint written above
        written = meaning   # what the left-hand side claims before an accumulation is read
        rhs, meaning = self._accumulation(lhs, rhs, rel, meaning, ev)
        forward = _forward_mode(lhs, rhs)
        modes = ["total"] if forward else ["step", "total"] + (["partial"] if _paths(rhs) else [])
        try:
            ok, got = self._matches(ev, lhs, rhs, meaning, modes)
        except NotJudged as exc:
            unknown = re.match(r"(.+) is not a symbol of the cell nor defined", exc.reason)
            if unknown:
                diffs = self._name(e, lhs, rhs, rtoks, written, modes, only=unknown.group(1),
                                   rel=rel)
                if diffs:
                    d = diffs[0]
                    return "wrong", (f"{unknown.group(1)} is not defined in the document; "
                                     f"{d['what']}; corrected: {d['corrected']}"), diffs
            return "skipped", exc.reason, []
        except ShapeError as exc:
            if self._scoring:
                return "ill-typed", "", []
            diffs = self._name(e, lhs, rhs, rtoks, written, modes, rel=rel)
            fix = f"; {diffs[0]['what']}; corrected: {diffs[0]['corrected']}" if diffs else ""
            return "ill-typed", f"the shapes do not compose: {exc}{fix}", diffs
        except (ValueError, IndexError, KeyError, ZeroDivisionError, FloatingPointError) as exc:
            return "skipped", f"not evaluated ({exc})", []
        if ok:
            return "correct", "", []
        if self._scoring:
            return "wrong", "", []
        if ev.unlinked:
            return "skipped", f"not judged: {ev.unlinked[0]}", []
        diffs = self._name(e, lhs, rhs, rtoks, written, modes, rel=rel)
        if diffs:
            d = diffs[0]
            detail = d["what"] + (f"; corrected: {d['corrected']}" if d.get("corrected") else "")
            return "wrong", detail, diffs
        own = self._own_equation(e, lhs, rtoks, written, modes, rel)
        if own:
            return "wrong", f"{own[0]['what']}; corrected: {own[0]['corrected']}", own
        return "wrong", f"the value differs from {meaning[0][0]}", []

    def _own_equation(self, e, lhs, rtoks, meaning, modes, rel) -> list[dict]:
        """``c^{t+1} = c^t``: a line that states a node's value at some step, no slip
        explaining it, named from the document's own equation of that node retimed to the
        line's step (its time written where the author writes it): the terms the written side
        lacks or has too many, and the equation's right-hand side as the correction. Nothing
        where the equation cannot be found, retimed or read, or where it does not give the
        value claimed."""
        assert self.cell is not None
        if not isinstance(lhs, g.Atom) or not rtoks:
            return []
        ev = self._ev(e.pos + 1)
        r = read_atom(lhs, ev.timed)
        if r.key not in self.cell.nodes or r.indices or r.time is None or \
                r.time[0] not in ("t", "k") or r.time[2] is not None:
            return []
        var, off = r.time[0], r.time[1]
        found = self._own_source(r.key)
        if found is None:
            return []
        own_eq, node = found
        a0, a1 = node.span
        if a1 <= a0:
            return []
        pieces: list[tuple[int, int, str]] = []
        for a in g.walk(node):
            if not isinstance(a, g.Atom):
                continue
            ra = read_atom(a, ev.timed)
            if ra.time is None:
                continue
            if ra.time[0] != "t" or ra.time[2] is not None or a.span[1] <= a.span[0] or \
                    not a0 <= a.span[0] <= a.span[1] <= a1:
                return []   # a time this retiming does not write: not named
            if off or var != "t":
                # an argument's span holds its brackets (\tanh(c_t)): kept
                pieces.append((a.span[0], a.span[1], _bracketed(
                    self.text[a.span[0]:a.span[1]], _retime(a, ra.time[1] + off, var))))
        new = self.text[a0:a1]
        for p0, p1, txt in sorted(pieces, reverse=True):
            new = new[:p0 - a0] + txt + new[p1 - a0:]
        new = re.sub(r"\s+", " ", new).strip()
        start, end = rtoks[0].pos, rtoks[-1].end
        src = self.text[start:end]
        if _plain(new) == _plain(src):
            return []
        fixed = self._reread(new, start, end)
        written = self._reread(src, start, end)
        if fixed is None or written is None:
            return []
        claim_rhs, claim = self._accumulation(lhs, fixed, rel, meaning, ev)
        try:
            if not self._matches(ev, lhs, claim_rhs, claim, modes)[0]:
                return []
        except (NotJudged, ShapeError, ValueError, IndexError, KeyError, ZeroDivisionError,
                FloatingPointError):
            return []
        line = self.text.count("\n", 0, own_eq.pos) + 1
        step = var if off == 0 else f"{var}{off:+d}"
        lhs_src = _spaced(self.text[e.lhs[0].pos:e.lhs[-1].end]) if e.lhs else lhs.text
        head = (f"the document's own equation of {r.key.latex} (line {line}) at step {step} "
                f"gives {lhs_src} = {new}")
        parts = _term_differences(self.text[:start] + new + self.text[end:], fixed,
                                  self.text, written)
        what = head + (": " + "; ".join(parts) if parts else "")
        return [{"kind": "own", "what": what, "corrected": new}]

    def _own_source(self, key: Key):
        """The document's equation of a node and the right-hand side the cell read it from
        (for a pre-activation z of ``a = act(z) = act(E)``, E): (equation, parsed node)."""
        assert self.cell is not None
        pos = self.cell.defined_at.get(key)
        if pos is None:
            return None
        for e, (lhs, rhss) in zip(self.eqs, self.parsed, strict=True):
            if e.pos != pos or not isinstance(lhs, g.Atom):
                continue
            ok = [x for x in rhss if isinstance(x, g.Node) and not has_derivative(x)
                  and atoms_of(x)]
            if not ok:
                continue
            if read_atom(lhs, self.timed).key == key:
                return e, ok[0]
            if len(ok) >= 2 and isinstance(ok[0], g.Call) and isinstance(ok[0].arg, g.Atom) \
                    and isinstance(ok[-1], g.Call) and ok[-1].arg is not None and \
                    read_atom(ok[0].arg, self.timed).key == key:
                return e, ok[-1].arg
        return None

    def _accumulation(self, lhs, rhs, rel, meaning, ev):
        """``dL/dC_t = dL/da_C \\cdot da_C/dC_t + dL/dC_t``: an adjoint that appears on its own
        right-hand side is an accumulation written with "=" (the author's "+="): the term on
        the right is what the next step sent back, so the other terms claim the adjoint
        through step t only."""
        if rel != "=" or not isinstance(rhs, g.Add) or not (
                isinstance(lhs, g.Deriv) and isinstance(lhs.num, g.Loss)
                and isinstance(lhs.den, g.Atom)):
            return rhs, meaning
        same = [i for i, (sign, x) in enumerate(rhs.terms) if sign == 1 and x == lhs]
        if len(same) != 1 or len(rhs.terms) < 2:
            return rhs, meaning
        rest = tuple(x for i, x in enumerate(rhs.terms) if i != same[0])
        den = lhs.den
        new = rest[0][1] if len(rest) == 1 and rest[0][0] == 1 else g.Add(rest, span=rhs.span)
        return new, [("the adjoint through step t only (the same adjoint on the right: what "
                      "the next step sent back)",
                      lambda env: ev.loss_derivative(den, env, "within"))]

    def _free(self, lhs: g.Node, ev: Evaluator) -> list[str]:
        out: list[str] = []
        for a in g.walk(lhs):
            if isinstance(a, g.Atom):
                for i in read_atom(a, ev.timed).indices:
                    if i not in out:
                        out.append(i)
        return out

    def _envs(self, lhs: g.Node, ev: Evaluator, mode: str, rhs=None):
        free = self._free(lhs, ev)
        # a line at step (k) beside a loss J^{(t)}: t at k and after it
        two = any(isinstance(a, g.Atom) and (read_atom(a, ev.timed).time or ("",))[0] == "k"
                  for side in (lhs, rhs) if isinstance(side, g.Node) for a in g.walk(side))
        for t in self._times(ev.pos):
            for lt in ((t, t + 1) if two else (None,)):
                if lt is not None and lt > self.world.T:
                    continue
                if not free:
                    yield Env(t, self.world.T, {}, mode, lt=lt)
                    continue
                ranges = []
                for i in free:
                    ranges.append(range(self._range(lhs, i, ev, t)))
                for combo in itertools.product(*ranges):
                    yield Env(t, self.world.T, dict(zip(free, combo, strict=True)), mode, lt=lt)

    def _times(self, pos: int) -> tuple[int, ...]:
        """The steps a line is judged at: TIMES, or the one step the sentence just before it
        fixes ("for our base case, we have $t=1$. This reduces to")."""
        near = [a for a in self.aliases if a.key == Key("t") and isinstance(a.expr, g.Num)
                and 0 < pos - a.pos < _NEAR]
        if near:
            t = int(max(near, key=lambda a: a.pos).expr.value)
            if 1 <= t <= self.world.T:
                return (t,)
        return TIMES

    def _range(self, lhs: g.Node, var: str, ev: Evaluator, t: int) -> int:
        env = Env(t, self.world.T)
        for a in g.walk(lhs):
            if isinstance(a, g.Atom):
                r = read_atom(a, ev.timed)
                if var in r.indices:
                    try:
                        v = np.asarray(ev._unindexed(a, r, env))
                    except NotJudged:
                        continue
                    return v.shape[r.indices.index(var)]
        return 3

    def _matches(self, ev, lhs, rhs, meaning, modes) -> tuple[bool, object]:
        got = None
        # the node the line is about: where a \sigma_y' written without its argument is taken
        num = lhs.num if isinstance(lhs, g.Deriv) else lhs
        ev.focus = num if isinstance(num, g.Atom) else None
        for mode in modes:
            for label, fn in meaning:
                good = True
                for env in self._envs(lhs, ev, mode, rhs):
                    want = np.asarray(fn(env))
                    got = np.asarray(ev.eval(rhs, env))
                    if not _same(got, want):
                        good = False
                        break
                if good:
                    return True, got
                del label
        return False, got

    # -- naming the difference -----------------------------------------------------------------
    def _name(self, e, lhs, rhs, rtoks, meaning, modes, only: str | None = None,
              rel: str = "=") -> list[dict]:
        """The first repair (:mod:`derive.check.slips`) that makes the line correct, as
        ``[{"kind", "what", "corrected"}]``; ``corrected`` is the whole right-hand side (for a
        repair of the left-hand side, the line). ``meaning``: what the left-hand side claims
        as written; a repaired right-hand side that holds the left-hand side's adjoint is read
        as an accumulation (:meth:`_accumulation`)."""
        assert self.slips is not None
        start, end = rtoks[0].pos, rtoks[-1].end
        src = self.text[start:end]
        ev = self._ev(e.pos + 1)
        tried: set[str] = set()
        lhs_src = _plain(self.text[e.lhs[0].pos:e.lhs[-1].end]) if e.lhs else ""

        def rhs_ok(slip) -> bool:  # a repair that writes the left-hand side again is none
            if slip.new in tried or _plain(slip.new) == lhs_src:
                return False
            tried.add(slip.new)
            node = self._reread(slip.new, start, end)
            if node is None:
                return False
            node, claim = self._accumulation(lhs, node, rel, meaning, ev)
            try:
                return self._matches(ev, lhs, node, claim, modes)[0]
            except (NotJudged, ShapeError, ValueError, IndexError, KeyError, ZeroDivisionError):
                return False

        def found(slip) -> list[dict]:
            return [{"kind": slip.kind, "what": slip.what,
                     "corrected": re.sub(r"\s+", " ", slip.new).strip()}]

        for slip in self.slips.candidates(rhs, start, src, only):
            if rhs_ok(slip):
                return found(slip)
        if only is None and e.lhs:
            for slip in self._lhs_slips(e, lhs, ev, rhs, rtoks):
                return found(slip)
            for slip in self.slips.last_resort(rhs, start, src):
                if rhs_ok(slip):
                    return found(slip)
        return []

    def _reread(self, new: str, start: int, end: int) -> g.Node | None:
        try:
            # a right-hand side that runs over rows (``\\\\ &+``): one expression
            toks = [t for t in strip_layout(rows_joined(tokenize(new, start))) if t.text != "&"]
            return self.names(_unloss(g.read_side(
                toks, self.text[:start] + new + self.text[end:]), self.timed))
        except g.SyntaxProblem:
            return None

    def _lhs_slips(self, e, lhs, ev, rhs, rtoks):
        """Repairs of the left-hand side that make the line correct as written on the right."""
        assert self.slips is not None and self.cell is not None
        l0, l1 = e.lhs[0].pos, e.lhs[-1].end
        # the names of the line's section, the one defined nearest above first (the slip
        # \nabla_W q for \nabla_W v is made right after v is introduced)
        near = sorted((a for a in self.aliases if self.section(a.pos) == self.section(e.pos)),
                      key=lambda a: (a.pos > e.pos, abs(e.pos - a.pos)))
        names = list(dict.fromkeys([a.key for a in near] + list(self.cell.order)))
        rhs_src = _plain(self.text[rtoks[0].pos:rtoks[-1].end])
        for slip in self.slips.lhs_candidates(lhs, l0, self.text[l0:l1], names):
            if _plain(slip.new) == rhs_src:
                continue   # the right-hand side written again: no repair
            node = self._reread(slip.new, l0, l1)
            if node is None:
                continue
            meaning = self._meaning(node, e, "=")
            if isinstance(meaning, str):
                continue
            try:
                if self._matches(ev, node, rhs, meaning, ["step", "total"])[0]:
                    yield dataclasses.replace(
                        slip, new=f"{slip.new} = {self.text[rtoks[0].pos:rtoks[-1].end]}")
                    return
            except (NotJudged, ShapeError, ValueError, IndexError, KeyError, ZeroDivisionError):
                continue


def _reader_text(reader: tuple) -> str:
    """(node, lag) of :meth:`World.readers` in words."""
    node, lag = reader
    if node == "loss":
        return "the loss of its step"
    when = {0: "of the same step", 1: "of the next step"}.get(lag, f"{lag} steps later")
    return f"{node.latex} {when}"


def _unloss(node, timed: set[Key]):
    """The tree with every Loss whose name is a time-indexed symbol read as that symbol."""
    if not isinstance(node, g.Node):
        return node
    if isinstance(node, g.Loss):
        if Key(node.name) in timed and node.step is None:   # dC/dC_{t-1}: the cell's C
            return g.Atom(node.name, node.sub, span=node.span)
        return node
    changes = {}
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, g.Node):
            changes[f.name] = _unloss(v, timed)
        elif isinstance(v, tuple) and v and all(isinstance(x, g.Node) for x in v):
            changes[f.name] = tuple(_unloss(x, timed) for x in v)
        elif isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and
                                                isinstance(x[1], g.Node) for x in v):
            changes[f.name] = tuple((a, _unloss(b, timed)) for a, b in v)
    return dataclasses.replace(node, **changes) if changes else node


def _bold_bases(parsed: list) -> dict[str, str]:
    """Plain symbol -> the bold spelling the document also uses (``h`` -> ``\\mathbf{h}``)."""
    out: dict[str, str] = {}
    for lhs, rhss in parsed:
        for side in (lhs, *rhss):
            if not isinstance(side, g.Node):
                continue
            for a in g.walk(side):
                if isinstance(a, g.Atom):
                    m = re.fullmatch(r"(\\(?:mathbf|boldsymbol|bm))\{(\\?[A-Za-z]+)\}", a.base)
                    if m and (len(m.group(2)) == 1 or m.group(2).startswith("\\")):
                        out.setdefault(m.group(2), a.base)
    return out


def _unfont(node, bold: dict[str, str]):
    """The tree with every plain atom of a symbol the document also writes bold in bold."""
    if not isinstance(node, g.Node) or not bold:
        return node
    if isinstance(node, g.Atom):
        return dataclasses.replace(node, base=bold[node.base]) if node.base in bold else node
    changes = {}
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, g.Node):
            changes[f.name] = _unfont(v, bold)
        elif isinstance(v, tuple) and v and all(isinstance(x, g.Node) for x in v):
            changes[f.name] = tuple(_unfont(x, bold) for x in v)
        elif isinstance(v, tuple) and v and all(isinstance(x, tuple) and len(x) == 2 and
                                                isinstance(x[1], g.Node) for x in v):
            changes[f.name] = tuple((a, _unfont(b, bold)) for a, b in v)
    return dataclasses.replace(node, **changes) if changes else node


def _paren(node: g.Node) -> g.Node:
    return node


def _map_children(node: g.Node, fn) -> g.Node:
    import dataclasses
    if isinstance(node, g.Add):
        return dataclasses.replace(node, terms=tuple((s_, fn(t)) for s_, t in node.terms))
    if isinstance(node, g.Mul):
        return dataclasses.replace(node, factors=tuple(fn(f) for f in node.factors))
    if isinstance(node, g.Call) and node.arg is not None:
        return dataclasses.replace(node, arg=fn(node.arg))
    if isinstance(node, g.Pow):
        return dataclasses.replace(node, base=fn(node.base))
    if isinstance(node, g.Div):
        return dataclasses.replace(node, a=fn(node.a), b=fn(node.b))
    if isinstance(node, g.Tr):
        return dataclasses.replace(node, of=fn(node.of))
    return node


def _den(lhs) -> g.Node | None:
    if isinstance(lhs, g.Adj):
        return lhs.of
    if isinstance(lhs, g.Deriv) and isinstance(lhs.num, g.Loss):
        return lhs.den
    return None


def _forward_mode(lhs, rhs) -> bool:
    """A line of forward mode: a derivative of a state at t-1 by a parameter appears."""
    for side in (lhs, rhs):
        for n in g.walk(side):
            if isinstance(n, g.Deriv) and isinstance(n.num, g.Atom):
                t = time_of(n.num.sub) or time_of(n.num.sup)
                if t is not None and t[0] == "t" and t[1] < 0:
                    return True
    return False


def _paths(rhs) -> bool:
    """A sum over paths (``\\frac{\\partial L}{\\partial h_t} \\frac{\\partial h_t}{\\partial
    h_{t-1}} + \\frac{\\partial L}{\\partial z_t} \\frac{\\partial z_t}{\\partial h_{t-1}}``): every
    term holds a derivative of a quantity of the cell, and each such derivative is then
    partial, the other paths held (the mode ``partial`` of the evaluator)."""
    if not isinstance(rhs, g.Add) or len(rhs.terms) < 2:
        return False
    return all(any(isinstance(n, g.Deriv) and not isinstance(n.num, g.Loss) for n in g.walk(x))
               for _, x in rhs.terms)


def _outside(node) -> str | None:
    for n in g.walk(node):
        if isinstance(n, g.Elided):
            return f"an elided expression ({n.text}), not a whole value"
        if isinstance(n, g.Big) and n.op == "prod":
            return None
    return None


_NEAR = 120   # characters: a step fixed in words binds the equation that follows at once


def _term_differences(own_text: str, own: g.Node, text: str, written: g.Node) -> list[str]:
    """What a written right-hand side lacks or has too many against the one due, term by term
    (a term written without some of its factors is named by the factors it lacks), in the
    texts as written: ``own`` is read in ``own_text``, ``written`` in ``text``."""

    def terms(src: str, n: g.Node) -> list[tuple[int, str, list[str]]] | None:
        out = []
        for sign, t in (n.terms if isinstance(n, g.Add) else ((1, n),)):
            fs = t.factors if isinstance(t, g.Mul) else (t,)
            if any(x.span[1] <= x.span[0] for x in (t, *fs)):
                return None
            out.append((sign, _spaced(src[t.span[0]:t.span[1]]),
                        [_spaced(src[f.span[0]:f.span[1]]) for f in fs]))
        return out

    due, got = terms(own_text, own), terms(text, written)
    if due is None or got is None:
        return []
    for t in list(got):
        same = [d for d in due if d[0] == t[0] and _plain(d[1]) == _plain(t[1])]
        if same:
            due.remove(same[0])
            got.remove(t)
    factors: list[str] = []
    for t in list(got):
        mine = [_plain(f) for f in t[2]]
        for d in due:
            theirs = [_plain(f) for f in d[2]]
            if d[0] != t[0] or len(theirs) == len(mine):
                continue
            small, big, word = (mine, d[2], "missing") if len(mine) < len(theirs) else \
                (theirs, t[2], "extra")
            rest = _less(big, small)
            if rest is not None:
                factors.append(f"{word} factor{'s' if len(rest) > 1 else ''} "
                               f"{', '.join(rest)} in {t[1]}")
                due.remove(d)
                got.remove(t)
                break
    def signed(x: tuple[int, str, list[str]]) -> str:
        return ("- " if x[0] < 0 else "") + x[1]

    out = [f"missing term{'s' if len(due) > 1 else ''} {', '.join(map(signed, due))}"] \
        if due else []
    out += factors
    if got:
        out.append(f"extra term{'s' if len(got) > 1 else ''} {', '.join(map(signed, got))}")
    return out


def _less(big: list[str], small: list[str]) -> list[str] | None:
    """The factors of ``big`` left once those of ``small`` are taken out (compared as plain
    text); None where ``small`` holds one that ``big`` does not."""
    rest = list(big)
    for f in small:
        hit = next((x for x in rest if _plain(x) == f), None)
        if hit is None:
            return None
        rest.remove(hit)
    return rest


def _spaced(src: str) -> str:
    return re.sub(r"\s+", " ", src).strip()


def _plain(src: str) -> str:
    """LaTeX without spaces and without braces around one-character scripts (h_{T} = h_T)."""
    return re.sub(r"([_^])\{(\w)\}", r"\1\2", re.sub(r"\s+", "", src))


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    got = np.real_if_close(np.asarray(got))
    want = np.real_if_close(np.asarray(want))
    scale = 1e-7 * (1 + float(np.max(np.abs(want))) if want.size else 1)
    cands = [got]
    if got.ndim <= 1 and want.ndim == 2 and want.shape[0] == want.shape[1]:
        if got.ndim == 0:
            cands.append(got * np.eye(want.shape[0]))
        else:
            cands.append(np.diag(got))
    if got.ndim == 2 and got.shape[0] == 1 and want.ndim == 2 and \
            want.shape[1] == want.shape[0] * got.shape[1]:
        cands.append(np.kron(np.eye(want.shape[0]), got))
    if got.ndim == 2:
        cands.append(got.T)
    for c in cands:
        c = np.asarray(c)
        if c.size != want.size:
            continue
        if c.shape != want.shape and not (c.ndim <= 1 or want.ndim <= 1 or 1 in c.shape
                                          or c.size == want.size):
            continue
        if np.allclose(c.reshape(-1), want.reshape(-1), atol=scale, rtol=1e-6):
            return True
    return False


def _say_error(exc: Exception) -> str:
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], Key):
        return f"{exc.args[0].latex} is read before the step computes it"
    return str(exc)


def _where(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {col}"


__all__ = ["DocumentJudge", "Line", "CellError", "segments", "equations"]
