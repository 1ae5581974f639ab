"""The derivation object: everything derive knows about one cell, derived once.

``derive.derive("lstm")`` returns a :class:`Derivation` with

* ``forward[A]`` (:class:`ForwardParam`): dh_t/dA = M_t dh_{t-1}/dA + N_t ds_{t-1}/dA + V_t^A
  (seed 001 eq 26) and the companion recursion of every other state;
* ``M``, ``N``: the blocks shared by all parameters (= rows of the state Jacobian);
* ``jacobian[u][v]``: the one-step state Jacobian d u_t / d v_{t-1};
* ``reverse``: the BPTT adjoint recursions, parameter gradients and stacked blocks (seed 002).

Each piece is a :class:`~derive.calculus.algebra.Sum` (the middle layer) with ``.latex()`` and
``.sympy()`` views on the :class:`Derivation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ..spec import CellSpec, SpecError
from ..spec.cells import BUILTIN
from .algebra import FactorOrder, Rec, Sum, add, single
from .rules import Forward, Reverse, derive_forward, derive_jacobian, derive_reverse


@dataclass(frozen=True)
class ForwardParam:
    """Forward mode for one parameter; see :class:`derive.calculus.rules.Forward`."""

    cell: Derivation
    raw: Forward

    @property
    def param(self) -> str:
        return self.raw.param

    @property
    def M(self) -> Sum:
        """M_t: coefficient of dh_{t-1}/dA in dh_t/dA."""
        return self.raw.blocks[self.cell.output][self.cell.output]

    @property
    def N(self) -> Sum | None:
        """N_t: coefficient of ds_{t-1}/dA in dh_t/dA (None for a one-state cell)."""
        s = self.cell.second_state
        return self.raw.blocks[self.cell.output][s] if s else None

    @property
    def V(self) -> Sum:
        """V_t^A: the direct term of dh_t/dA."""
        return self.raw.V[self.cell.output]

    def state(self, u: str) -> Sum:
        """d u_t / dA expanded, in terms of the opaque d v_{t-1}/dA."""
        return self.raw.total[u]

    def latex(self, state: str | None = None, **kw: Any) -> str:
        from ..printing.latex import forward_equation

        return forward_equation(self.cell, self.param, state or self.cell.output, **kw)

    def sympy(self, part: str = "total", state: str | None = None):
        """The SymPy matrix expression of ``part`` in {total, M, N, V} (of ``state``)."""
        from ..printing.symbolic import to_sympy

        u = state or self.cell.output
        s = {"total": self.raw.total[u], "V": self.raw.V[u],
             "M": self.raw.blocks[u][self.cell.output],
             "N": self.raw.blocks[u].get(self.cell.second_state or "", None)}[part]
        return to_sympy(self.cell, s, wrt=self.param)


class Derivation:
    """All derivatives of one cell. Built by :func:`derive`; cheap to construct, parts are
    derived on first use and cached."""

    def __init__(self, spec: CellSpec):
        self.spec = spec
        self.order = FactorOrder(spec)

    # -- identity --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def params(self) -> list[str]:
        return self.spec.cell_params

    @property
    def states(self) -> tuple[str, ...]:
        return self.spec.states

    @property
    def output(self) -> str:
        return self.spec.states[0]

    @property
    def second_state(self) -> str | None:
        return self.spec.states[1] if len(self.spec.states) > 1 else None

    # -- results ---------------------------------------------------------------------------
    @cached_property
    def jacobian(self) -> dict[str, dict[str, Sum]]:
        """J_t[u][v] = d u_t / d v_{t-1}."""
        return derive_jacobian(self.spec, self.order)

    @property
    def M(self) -> Sum:
        """M_t = d h_t / d h_{t-1} (seed 001 eq 26), shared by every parameter."""
        return self.jacobian[self.output][self.output]

    @property
    def N(self) -> Sum | None:
        """N_t = d h_t / d s_{t-1} (seed 001 eq 26); None for a one-state cell."""
        s = self.second_state
        return self.jacobian[self.output][s] if s else None

    @cached_property
    def forward(self) -> dict[str, ForwardParam]:
        return {p: ForwardParam(self, derive_forward(self.spec, p, self.order))
                for p in self.spec.params}

    @cached_property
    def reverse(self) -> Reverse:
        return derive_reverse(self.spec, self.order)

    def recursion_sum(self, param: str, state: str) -> Sum:
        """sum_v J[u][v] d v_{t-1}/dA + V[u], rebuilt from the shared blocks (a consistency
        view: it equals ``forward[param].state(state)``)."""
        fp = self.forward[param].raw
        parts = [self.jacobian[state][v].then(Rec(v, param, 1)) for v in self.states]
        return add([*parts, fp.V[state]], self.order) if parts else single(self.order)

    # -- views -----------------------------------------------------------------------------
    def latex(self, mode: str = "forward", **kw: Any) -> str:
        from ..printing import latex as L

        return L.render_mode(self, mode, **kw)

    def _repr_latex_(self) -> str:
        from ..printing.latex import notebook_summary

        return notebook_summary(self)

    def __repr__(self) -> str:
        return f"<Derivation {self.name}: states {self.states}, params {self.params}>"


_CACHE: dict[str, Derivation] = {}


def cells() -> list[str]:
    """Names of the built-in cells."""
    return list(BUILTIN)


def get_spec(name_or_spec: str | Mapping[str, Any] | CellSpec) -> CellSpec:
    """A validated :class:`CellSpec` from a built-in name, a spec dict or a CellSpec."""
    if isinstance(name_or_spec, CellSpec):
        return name_or_spec
    if isinstance(name_or_spec, Derivation):
        return name_or_spec.spec
    if isinstance(name_or_spec, str):
        if name_or_spec not in BUILTIN:
            raise SpecError(
                f"unknown cell {name_or_spec!r}; built-in cells: {', '.join(BUILTIN)}"
            )
        return CellSpec.from_dict(BUILTIN[name_or_spec])
    return CellSpec.from_dict(name_or_spec)


def derive(name_or_spec: str | Mapping[str, Any] | CellSpec) -> Derivation:
    """Derive a cell: a built-in name (see :func:`cells`), a spec dict or a :class:`CellSpec`."""
    if isinstance(name_or_spec, Derivation):
        return name_or_spec
    if isinstance(name_or_spec, str) and name_or_spec in _CACHE:
        return _CACHE[name_or_spec]
    d = Derivation(get_spec(name_or_spec))
    if isinstance(name_or_spec, str):
        _CACHE[name_or_spec] = d
    return d
