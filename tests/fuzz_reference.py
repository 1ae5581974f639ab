"""An independent reference for any cell spec: its own parser, evaluator and torch autograd.

Shares no code with derive (it never imports it): the cell-spec expression language of
``derive/spec/cells.py`` is tokenized and parsed here again, evaluated in torch float64, and every
quantity the kernels compute (forward, readout, BPTT gradients, RTRL sensitivities, one RTRL
step, the one-step state Jacobian) is obtained by torch's autograd. ``tests/test_fuzz.py`` checks
this reference itself against central finite differences and against torch.nn.LSTM / GRU.

The language, as used here:

    sum     := ['-'] product (('+' | '-') product)*
    product := matvec ('*' matvec)*                 Hadamard product
    matvec  := atom ['@' matvec]                    right-associative: A @ B @ x = A @ (B @ x);
                                                    the left side is a 2-D parameter's name
    atom    := NUMBER | NAME | NAME '(' sum ')' | '(' sum ')'

``x`` is the input x_t, ``<state>_prev`` a state at t-1, a bare name a 1-D parameter or a node
at time t; a number c is c times the all-ones vector; ``name(...)`` an elementwise activation
of :data:`ACTIVATIONS`.

Array conventions (those of the kernels): xs (T, B, n_in); states (B, n_hidden); parameters
with the spec's shapes, ``hidden`` -> n_hidden, ``input`` -> n_in, ``output`` -> n_out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64

def _leaky_relu(z: torch.Tensor) -> torch.Tensor:
    """F.leaky_relu(z, 0.01)'s values; written out because torch's float64 backward multiplies
    by the slope rounded to float32 (2e-10 off)."""
    return torch.where(z > 0, z, z * 0.01)


def _hard_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """F.hardsigmoid's values, relu6(z + 3) / 6, and its derivative: 1/6 on the open (-3, 3),
    0 elsewhere (at the kinks too, as torch); written out because torch's float64 backward
    multiplies by 1/6 rounded to float32 (5e-9 off)."""
    inside = (z > -3.0) & (z < 3.0)
    outside = torch.where(z >= 3.0, torch.ones_like(z), torch.zeros_like(z))
    return torch.where(inside, (z + 3.0) / 6.0, outside)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "identity": lambda z: z,
    "relu": torch.relu,
    "leaky_relu": _leaky_relu,  # torch's default slope 0.01
    "softplus": lambda z: F.softplus(z, beta=1.0),
    "softsign": F.softsign,
    "exp": torch.exp,
    "hard_sigmoid": _hard_sigmoid,  # = F.hardsigmoid
    "reciprocal": lambda z: 1.0 / z,
}
"""Activation name -> torch function (elementwise); ``tests/test_fuzz.py`` checks the values
against torch.nn.functional and the float64 derivatives against exact formulas."""

SMOOTH = ("sigmoid", "tanh", "identity", "softplus", "softsign", "exp", "reciprocal")
"""The activations with a continuous first derivative (safe for finite differences)."""


class ReferenceError(ValueError):
    """The spec cannot be read by the reference (bad syntax, unknown name, cycle)."""


# ------------------------------------------------------------------------------ tokens


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs, kind in num | name | op; a final ('end', '')."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isdigit():
            j = i
            while j < n and text[j].isdigit():
                j += 1
            if j + 1 < n and text[j] == "." and text[j + 1].isdigit():
                j += 1
                while j < n and text[j].isdigit():
                    j += 1
            out.append(("num", text[i:j]))
            i = j
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            j = i
            while j < n and text[j].isascii() and (text[j].isalnum() or text[j] == "_"):
                j += 1
            out.append(("name", text[i:j]))
            i = j
        elif ch in "+-*@()":
            out.append(("op", ch))
            i += 1
        else:
            raise ReferenceError(f"unexpected character {ch!r} in {text!r}")
    out.append(("end", ""))
    return out


# ------------------------------------------------------------------------------ parser
# AST nodes are tuples:
#   ("num", float) | ("name", str) | ("call", fn, arg) | ("mv", matrix, arg)
#   | ("sum", ((sign, e), ...)) | ("prod", (e, ...))


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.pos = 0

    def _peek(self) -> tuple[str, str]:
        return self.toks[self.pos]

    def _next(self) -> tuple[str, str]:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def _expect(self, op: str) -> None:
        tok = self._next()
        if tok != ("op", op):
            raise ReferenceError(f"expected {op!r} in {self.text!r}, found {tok[1]!r}")

    def parse(self) -> tuple:
        e = self.sum()
        if self._peek()[0] != "end":
            raise ReferenceError(f"trailing {self._peek()[1]!r} in {self.text!r}")
        return e

    def sum(self) -> tuple:
        terms = []
        sign = 1.0
        if self._peek() == ("op", "-"):
            self._next()
            sign = -1.0
        terms.append((sign, self.product()))
        while self._peek() in (("op", "+"), ("op", "-")):
            sign = 1.0 if self._next()[1] == "+" else -1.0
            terms.append((sign, self.product()))
        if len(terms) == 1 and terms[0][0] == 1.0:
            return terms[0][1]
        return ("sum", tuple(terms))

    def product(self) -> tuple:
        factors = [self.matvec()]
        while self._peek() == ("op", "*"):
            self._next()
            factors.append(self.matvec())
        return factors[0] if len(factors) == 1 else ("prod", tuple(factors))

    def matvec(self) -> tuple:
        left = self.atom()
        if self._peek() == ("op", "@"):
            self._next()
            if left[0] != "name":
                raise ReferenceError(f"the left side of '@' must be a matrix in {self.text!r}")
            return ("mv", left[1], self.matvec())
        return left

    def atom(self) -> tuple:
        kind, val = self._next()
        if kind == "num":
            return ("num", float(val))
        if kind == "name":
            if self._peek() == ("op", "("):
                self._next()
                arg = self.sum()
                self._expect(")")
                return ("call", val, arg)
            return ("name", val)
        if (kind, val) == ("op", "("):
            e = self.sum()
            self._expect(")")
            return e
        raise ReferenceError(f"unexpected {val or 'end'!r} in {self.text!r}")


def parse(text: str) -> tuple:
    """The AST tuple of one node expression."""
    return _Parser(str(text)).parse()


def names_in(e: tuple) -> set[str]:
    """Every name an expression mentions (refs and matrices, not activation names)."""
    kind = e[0]
    if kind == "name":
        return {e[1]}
    if kind == "num":
        return set()
    if kind == "call":
        return names_in(e[2])
    if kind == "mv":
        return {e[1]} | names_in(e[2])
    if kind == "sum":
        return set().union(*(names_in(t) for _, t in e[1]))
    return set().union(*(names_in(f) for f in e[1]))


# ------------------------------------------------------------------------------ the cell


def _items(x: Any) -> list[tuple[str, Any]]:
    if x is None:
        return []
    return list(x.items()) if isinstance(x, Mapping) else [tuple(i) for i in x]


@dataclass
class Cell:
    """A spec read by the reference: parsed nodes, states, parameter shapes."""

    states: tuple[str, ...]
    params: dict[str, tuple[str, ...]]  # cell parameters, in spec order
    readout_params: dict[str, tuple[str, ...]]
    nodes: dict[str, tuple]  # cell nodes (states included), in spec order
    readout: dict[str, tuple] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Cell:
        def shapes(d):
            return {k: (v,) if isinstance(v, str) else tuple(v) for k, v in _items(d)}

        cell = cls(
            states=tuple(spec["states"]),
            params=shapes(spec["params"]),
            readout_params=shapes(spec.get("readout_params")),
            nodes={k: parse(v) for k, v in _items(spec["nodes"])},
            readout={k: parse(v) for k, v in _items(spec.get("readout"))},
        )
        for s in cell.states:
            if s not in cell.nodes:
                raise ReferenceError(f"state {s!r} is not a node")
        return cell

    @property
    def all_params(self) -> dict[str, tuple[str, ...]]:
        return {**self.params, **self.readout_params}

    def shapes(self, n_hidden: int, n_in: int, n_out: int = 1) -> dict[str, tuple[int, ...]]:
        """Parameter name -> numeric shape (cell and readout parameters)."""
        dims = {"hidden": n_hidden, "input": n_in, "output": n_out}
        return {k: tuple(dims[d] for d in v) for k, v in self.all_params.items()}

    # -- one time step ----------------------------------------------------------------------
    def step(self, P: Mapping[str, torch.Tensor], x: torch.Tensor,
             prev: Mapping[str, torch.Tensor], *, readout: bool = False
             ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The states at t (and the readout values at t when ``readout``) from x_t (B, n_in) and
        the states at t-1 (B, n_hidden) each."""
        batch = x.shape[0]
        values: dict[str, torch.Tensor] = {}
        busy: set[str] = set()
        table = {**self.nodes, **(self.readout if readout else {})}

        def lookup(name: str) -> torch.Tensor:
            if name == "x":
                return x
            if name in P and name in self.all_params:
                if len(self.all_params[name]) != 1:
                    raise ReferenceError(f"matrix {name!r} used as a vector")
                return P[name]
            if name in table:
                if name not in values:
                    if name in busy:
                        raise ReferenceError(f"cycle through {name!r}")
                    busy.add(name)
                    v = ev(table[name])
                    if v.dim() == 0:
                        raise ReferenceError(f"node {name!r} is a constant")
                    values[name] = v.expand(batch, v.shape[-1]) if v.dim() == 1 else v
                return values[name]
            if name.endswith("_prev") and name[: -len("_prev")] in self.states:
                return prev[name[: -len("_prev")]]
            raise ReferenceError(f"unknown name {name!r}")

        def ev(e: tuple) -> torch.Tensor:
            kind = e[0]
            if kind == "num":
                return torch.tensor(e[1], dtype=DTYPE)
            if kind == "name":
                return lookup(e[1])
            if kind == "call":
                if e[1] not in ACTIVATIONS:
                    raise ReferenceError(f"unknown activation {e[1]!r}")
                return ACTIVATIONS[e[1]](ev(e[2]))
            if kind == "mv":
                W = P[e[1]]
                if W.dim() != 2:
                    raise ReferenceError(f"{e[1]!r} @ v needs a matrix")
                v = ev(e[2])
                if v.dim() == 0:  # c * ones: W @ (c 1) = c * row sums
                    return W.sum(dim=1) * v
                return v @ W.T
            if kind == "sum":
                out = None
                for sign, t in e[1]:
                    v = ev(t) if sign > 0 else -ev(t)
                    out = v if out is None else out + v
                return out
            out = None
            for f in e[1]:
                v = ev(f)
                out = v if out is None else out * v
            return out

        new = {s: lookup(s) for s in self.states}
        ys = {r: lookup(r) for r in self.readout} if readout else {}
        return new, ys


# ------------------------------------------------------------------------------ helpers


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=DTYPE, requires_grad=grad)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def _cell(spec: Mapping[str, Any] | Cell) -> Cell:
    return spec if isinstance(spec, Cell) else Cell.from_spec(spec)


def run(spec, params, xs, state0, *, readout: bool = True):
    """Forward over xs: (hs (T, B, n), final states, ys name -> (T, B, n_out)) as tensors of the
    torch leaves passed in (params: name -> tensor, xs (T, B, n_in), state0: name -> (B, n))."""
    cell = _cell(spec)
    state = dict(state0)
    hs, ys = [], {r: [] for r in (cell.readout if readout else {})}
    for t in range(xs.shape[0]):
        state, y = cell.step(params, xs[t], state, readout=readout)
        hs.append(state[cell.states[0]])
        for r, v in y.items():
            ys[r].append(v)
    return torch.stack(hs), state, {r: torch.stack(v) for r, v in ys.items()}


def forward(spec, params, xs, state0=None):
    """NumPy in and out: {"hs", "state", "ys"}."""
    cell = _cell(spec)
    P = {k: _t(v) for k, v in params.items()}
    X = _t(xs)
    S0 = _state0(cell, state0, X)
    hs, final, ys = run(cell, P, X, S0, readout=bool(cell.readout))
    return {"hs": _np(hs), "state": {k: _np(v) for k, v in final.items()},
            "ys": {k: _np(v) for k, v in ys.items()}}


def _state0(cell: Cell, state0, X: torch.Tensor, grad: bool = False) -> dict[str, torch.Tensor]:
    """The initial states as torch leaves (state0 is required: the reference does not guess
    n_hidden)."""
    if state0 is None:
        raise ReferenceError("state0 is required")
    return {s: _t(state0[s], grad) for s in cell.states}


def gradients(spec, params, xs, state0, dhs, dstate=None, dys=None) -> dict[str, Any]:
    """The gradients of L = sum(dhs * hs) + sum_s sum(dstate[s] * final[s])
    + sum_r sum(dys[r] * ys[r]): {"params": name -> dL/dA (every parameter, readout ones
    included), "state0": state -> dL/d(initial state), "xs": dL/dxs}."""
    cell = _cell(spec)
    P = {k: _t(v, True) for k, v in params.items()}
    X = _t(xs, True)
    S0 = _state0(cell, state0, X, grad=True)
    hs, final, ys = run(cell, P, X, S0, readout=bool(dys))
    L = (hs * _t(dhs)).sum()
    for s, d in (dstate or {}).items():
        L = L + (final[s] * _t(d)).sum()
    for r, d in (dys or {}).items():
        L = L + (ys[r] * _t(d)).sum()
    leaves = [*P.values(), *S0.values(), X]
    got = torch.autograd.grad(L, leaves, allow_unused=True)
    got = [_np(torch.zeros_like(leaf) if g is None else g)
           for leaf, g in zip(leaves, got, strict=True)]
    k = len(P)
    return {"params": dict(zip(P, got[:k], strict=True)),
            "state0": dict(zip(S0, got[k:k + len(S0)], strict=True)), "xs": got[-1]}


def rtrl(spec, params, xs, state0, names=None) -> dict[str, np.ndarray]:
    """dh_T/dA for every cell parameter A (or every A in ``names``): (B, n_hidden, *A.shape)."""
    cell = _cell(spec)
    names = list(cell.params) if names is None else list(names)
    X = _t(xs)
    S0 = _state0(cell, state0, X)
    fixed = {k: _t(v) for k, v in params.items()}

    if not names:
        return {}

    def h_T(*theta):
        P = {**fixed, **dict(zip(names, theta, strict=True))}
        hs, _, _ = run(cell, P, X, S0, readout=False)
        return hs[-1]

    jac = torch.autograd.functional.jacobian(h_T, tuple(fixed[n] for n in names))
    return {n: _np(j) for n, j in zip(names, jac, strict=True)}


def rtrl_step(spec, params, x_t, state, sens=None, names=None):
    """One RTRL step: (new states, sens'), sens'[s][A] = d s_t/dA = sum_v d s_t/d v_(t-1)
    sens[v][A] + the direct part; sens[v][A] (B, n_hidden, *A.shape), zeros when None; A runs
    over the cell parameters (or ``names``)."""
    cell = _cell(spec)
    names = list(cell.params) if names is None else list(names)
    theta0 = {k: _t(v) for k, v in params.items()}
    X = _t(x_t)
    prev0 = {s: _t(state[s]) for s in cell.states}
    batch, n = prev0[cell.states[0]].shape
    S = None
    if sens is not None:
        S = {s: {a: _t(sens[s][a]).reshape(batch, n, -1) for a in names} for s in cell.states}

    def step(*theta):
        P = {**theta0, **dict(zip(names, theta, strict=True))}
        prev = dict(prev0)
        if S is not None:  # prev(theta) = prev0 + sum_A sens[v][A] . (A - A0), linearised
            for s in cell.states:
                for a, th in zip(names, theta, strict=True):
                    prev[s] = prev[s] + S[s][a] @ (th - theta0[a]).reshape(-1)
        new, _ = cell.step(P, X, prev)
        return tuple(new[s] for s in cell.states)

    with torch.no_grad():
        new, _ = cell.step(theta0, X, prev0)
    if not names:
        return {s: _np(v) for s, v in new.items()}, {s: {} for s in cell.states}
    jac = torch.autograd.functional.jacobian(step, tuple(theta0[n] for n in names))
    out = {s: {a: _np(jac[i][j]) for j, a in enumerate(names)}
           for i, s in enumerate(cell.states)}
    return {s: _np(v) for s, v in new.items()}, out


def state_jacobian(spec, params, x_t, state) -> np.ndarray:
    """d(all states at t)/d(all states at t-1): (B, S, S), states concatenated in spec order."""
    cell = _cell(spec)
    P = {k: _t(v) for k, v in params.items()}
    X = _t(x_t)
    k = len(cell.states)
    flat = torch.cat([_t(state[s]) for s in cell.states], dim=1)
    batch, total = flat.shape
    n = total // k

    def f(z):
        prev = {s: z[:, i * n:(i + 1) * n] for i, s in enumerate(cell.states)}
        new, _ = cell.step(P, X, prev)
        return torch.cat([new[s] for s in cell.states], dim=1)

    J = torch.autograd.functional.jacobian(f, flat)  # (B, S, B, S)
    rows = torch.arange(batch)
    return _np(J[rows, :, rows, :])
