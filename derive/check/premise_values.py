"""The values of what a document states as given (:mod:`derive.check.premises`; issue 16,
items 2 and 3), as methods of :class:`derive.check.meaning.Evaluator`:

* an abstract function at other arguments: ``f(x_j, h_{j-1}, w)`` is the cell's step with the
  arguments put where the document's form ``h_t = f(x_t, h_{t-1}, w)`` puts them (the nodes of
  the step computed in order from them, ``w`` unflattened into the parameters), and the loss's
  term ``l(y_t, o_t)`` the world's loss term at the output argument, divided by the objective's
  scale;
* ``\\partial_h f(x_t, h_{t-1}, w)``: the partial derivative in the argument the variable
  names (the argument as written, the symbol at another step, or w for the parameter vector),
  the other arguments held; a variable that is no argument leaves the total derivative to
  :meth:`~derive.check.meaning.Evaluator.jacobian`;
* ``\\mathbf{E}[x]``: x averaged over the outcomes of the independent random variables it reads,
  each found when the evaluation first needs its value (:class:`NeedRandom`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from . import grammar as g
from .cell import Key
from .world import H, NotJudged, cell_eval, plus

if TYPE_CHECKING:
    from .meaning import Env


class NeedRandom(NotJudged):
    """A random variable was read outside ``\\mathbf{E}[\\dots]`` (``which``: its key and
    step); :meth:`PremiseValues._expect` catches it and averages over its outcomes."""

    def __init__(self, which: tuple, text: str):
        super().__init__(f"{text} is a random variable: it has a value only under an "
                         "expectation")
        self.which = which


class PremiseValues:
    """Mixed into :class:`~derive.check.meaning.Evaluator`, whose ``eval``, ``reading``,
    ``resolve``, ``step``, ``premises``, ``cell``, ``w``, ``values``, ``params`` and ``inputs``
    it uses."""

    def arguments(self, e: g.Call, env: Env) -> list[np.ndarray | None]:
        """The values of a call's arguments (None for a label such as the target y_t)."""
        items = e.arg.items if isinstance(e.arg, g.Stack) else (e.arg,)
        ab = self.premises.abstract.get(e.fn)
        if ab is not None:
            if len(items) != len(ab.slots):
                raise NotJudged(f"{e.fn} with {len(items)} arguments; its form has "
                                f"{len(ab.slots)}")
            return [None if sl.kind == "label" else np.asarray(self.eval(x, env))
                    for x, sl in zip(items, ab.slots, strict=True)]
        lt = self.premises.losses[e.fn]
        if len(items) != lt.arity:
            raise NotJudged(f"{e.fn} with {len(items)} arguments; the objective has {lt.arity}")
        return [np.asarray(self.eval(x, env)) if k == lt.slot else None
                for k, x in enumerate(items)]

    def call_step(self, e: g.Call, env: Env) -> int:
        """The step a call is at: that of its first argument read at a time (``f(x_j,
        h_{j-1}, w)``: j)."""
        items = e.arg.items if isinstance(e.arg, g.Stack) else (e.arg,)
        ab = self.premises.abstract.get(e.fn)
        for k, x in enumerate(items):
            if isinstance(x, g.Atom):
                r = self.reading(self.resolve(x, env))
                if r.time is not None and (r.key in self.cell.nodes or r.key in self.cell.inputs):
                    lag = ab.slots[k].lag if ab is not None and k < len(ab.slots) else 0
                    return self.step(r, env) + lag
        return env.t

    def abstract(self, e: g.Call, env: Env, vals: list[np.ndarray | None]) -> np.ndarray:
        """An abstract function at the arguments ``vals``: the cell's step with the arguments
        put where its form puts them, or the loss's term at a step."""
        s = self.call_step(e, env)
        lt = self.premises.losses.get(e.fn)
        if lt is not None:
            v = vals[lt.slot]
            assert v is not None
            return np.asarray(self.w.step_loss(lt.output, s, v)) / lt.scale
        ab = self.premises.abstract[e.fn]
        params = self.params
        given: dict[tuple[Key, int], np.ndarray] = {}
        for sl, v in zip(ab.slots, vals, strict=True):
            if sl.kind == "params" and v is not None:
                params = self.w.unflat(np.asarray(v))
            elif sl.kind == "value" and sl.key is not None and v is not None:
                given[(sl.key, sl.lag)] = v
        cur: dict[Key, np.ndarray] = {}

        def lookup(key: Key, lag: int) -> np.ndarray:
            if (key, lag) in given:
                return given[(key, lag)]
            if key in self.cell.nodes:
                if lag == 0:
                    return cur[key]
                return self.values[(key, s - lag)]
            if key in params:
                return params[key]
            return self.inputs[(key, s)]

        for k in self.cell.order:
            if (k, 0) in given:
                cur[k] = given[(k, 0)]
            else:
                cur[k] = cell_eval(self.cell, self.cell.nodes[k], lookup)
            if k == ab.node:
                return cur[k]
        raise NotJudged(f"{e.fn}: its node is not computed")

    def partial(self, e: g.Call, den: g.Atom, env: Env) -> np.ndarray | None:
        """``\\partial_h f(x_t, h_{t-1}, w)``: the partial derivative in the argument the
        variable names (the argument itself, the symbol at another step, or w for the parameter
        vector), the others held; None where the variable is no argument."""
        items = e.arg.items if isinstance(e.arg, g.Stack) else (e.arg,)
        ab = self.premises.abstract.get(e.fn)
        den = self.resolve(den, env)
        which = [k for k, x in enumerate(items) if x == den]
        if not which:
            rd = self.reading(den)
            if rd.key in self.premises.param_vector and ab is not None:
                which = [k for k, sl in enumerate(ab.slots) if sl.kind == "params"]
            else:
                which = [k for k, x in enumerate(items) if isinstance(x, g.Atom)
                         and self.reading(self.resolve(x, env)).key == rd.key]
        if len(which) != 1:
            return None
        k = which[0]
        vals = self.arguments(e, env)
        v0 = vals[k]
        if v0 is None:
            raise NotJudged(f"a derivative by {den.text}, an argument that is only a label")
        v0 = np.asarray(v0, dtype=complex)
        cols = []
        for j in range(v0.size):
            d = np.zeros(v0.size, dtype=complex)
            d[j] = 1j * H
            moved = list(vals)
            moved[k] = v0 + d.reshape(v0.shape)
            cols.append(np.asarray(self.abstract(e, env, moved)).imag / H)
        return np.stack(cols, axis=-1)

    def _expect(self, e: g.Expect, env: Env) -> np.ndarray:
        """``\\mathbf{E}[x]``: x averaged over the outcomes of the random variables it reads
        (independent, with the document's distributions)."""
        return self._average(e.of, env, 0)

    def _average(self, x: g.Node, env: Env, depth: int) -> np.ndarray:
        try:
            return np.asarray(self.eval(x, env))
        except NeedRandom as need:
            if depth > 6:
                raise NotJudged("an expectation over too many random variables") from None
            dist = self.premises.dists[need.which[1]]
            total = None
            for value, prob in dist.outcomes:
                v = np.asarray(self.eval(value, env))
                p = np.asarray(self.eval(prob, env))
                sub = dataclasses.replace(env, override={**env.override, need.which: v})
                term = p * self._average(x, sub, depth + 1)
                total = term if total is None else plus(total, term)
            return np.asarray(total)

    def _prob(self, e: g.Prob, env: Env) -> np.ndarray:
        raise NotJudged("a probability, read as the distribution it states")


