"""The numba printer: an IR expression as the scalar code of one element inside a fused loop.

:class:`NumbaPrinter` is :class:`~derive.codegen.numpy_printer.NumpyPrinter` with the few
methods that differ overridden (the operators' precedence and parentheses are the NumPy
printer's). Inside the loops ``for b: for j:`` of a numba kernel every vector of the step is one
element:

* a value the loop holds is a scalar local (``i``); a value held in an array is an element of a
  *row view* taken once per batch row, ``A_x_t_0[j]`` with ``A_x_t_0 = A_x[t, b, 0:n_hidden]``
  (indexed by the loop counter alone, the access is unit-stride and LLVM vectorises the loop);
  which array and which columns hold a value is the ``places`` setting, the view's name comes
  from the module's :class:`~derive.codegen.naming.Namer` (:class:`Views`);
* a constant is a name bound to the arrays' dtype before the loop (:class:`Constants`): numba
  types a literal ``1.0`` as float64, and one float64 operand turns a float32 loop into float64
  arithmetic, half the vector width;
* an activation is its registry record's ``numba`` facet and its derivative the
  ``numba_deriv_from_output`` facet (:mod:`derive.spec.activations`); the facet's own float
  literals become typed constants as well (:func:`facet_tree` reads the facet once as a Python
  expression tree; the printer prints that tree).
"""

from __future__ import annotations

import ast
import copy
import functools
from dataclasses import dataclass
from fractions import Fraction

from ..spec.activations import ACTIVATIONS
from .ir import ActDeriv, ActValue, At, Cols, Const, Dot, Expr, Scaled, Var
from .naming import Namer
from .numpy_printer import ADD, ATOM, MUL, NumpyPrinter


class Unsupported(ValueError):
    """A construct the fused numba printer does not print; the module re-exports NumPy's."""


@dataclass(frozen=True)
class Place:
    """Where a vector of the step lives: columns ``lo:hi`` (None: all) of row b of ``array``
    at time index ``time`` ('t', 't + 1' or None for an array without a time axis);
    ``batched`` False for an array without a batch axis (a parameter, a gradient sum)."""

    array: str
    time: str | None = None
    lo: str | None = None
    hi: str | None = None
    batched: bool = True

    def index(self, b: str = "b") -> str:
        """The subscript of the row this place names for batch row ``b``: ``[t, b, lo:hi]``."""
        parts = ([self.time] if self.time is not None else []) + ([b] if self.batched else [])
        if self.lo is not None:
            parts.append(f"{self.lo}:{self.hi}")
        return ", ".join(parts)

    def row(self, b: str = "b") -> str:
        """``array[t, b, lo:hi]``: the row of batch row ``b`` (the array itself when it has
        neither a time nor a batch axis and no columns)."""
        idx = self.index(b)
        return f"{self.array}[{idx}]" if idx else self.array


class Views:
    """The row views of one module, one name each (from the Namer): ``A_x_t_0`` for
    ``A_x[t, b, 0:n_hidden]``. :meth:`name` registers a view; :meth:`lines` are the views a
    loop body uses, taken once per batch row before the unit loop."""

    def __init__(self, names: Namer):
        self.names = names
        self._cols: dict[str, list[tuple[str | None, str | None]]] = {}

    def name(self, place: Place) -> str:
        if place.time is None and not place.batched and place.lo is None:
            return place.array  # a parameter or a gradient sum: indexed as it is
        tag = {None: "b", "t": "t", "t + 1": "t1"}[place.time]
        cols = self._cols.setdefault(place.array, [])
        if place.lo is not None and (place.lo, place.hi) not in cols:
            cols.append((place.lo, place.hi))
        suffix = "" if place.lo is None else f"_{cols.index((place.lo, place.hi))}"
        return self.names.once(f"view:{place}", f"{place.array}_{tag}{suffix}")

    def define(self, place: Place, b: str = "b") -> str:
        """The line that takes the view of ``place`` for batch row ``b``."""
        return f"{self.name(place)} = {place.row(b)}"


_KNOWN = {0.0: "zero", 1.0: "one", 2.0: "two", 0.5: "half"}


class Constants:
    """The loops' constants, each a name bound to the arrays' dtype (``one = dtype.type(1.0)``);
    names from the module's Namer, one per value."""

    def __init__(self, names: Namer):
        self.names = names
        self.values: dict[float, str] = {}

    def name(self, value: float) -> str:
        value = float(value)
        if value not in self.values:
            base = _KNOWN.get(value, f"c{sum(v not in _KNOWN for v in self.values)}")
            self.values[value] = self.names.once(f"const:{value!r}", base)
        return self.values[value]

    def literal(self, name: str) -> str:
        """The Python literal of the constant called ``name``."""
        return next(repr(v) for v, n in self.values.items() if n == name)


@functools.cache
def facet_tree(fmt: str, var: str) -> ast.expr:
    """An activation facet (a format of ``{var}``) as a Python expression tree whose operand is
    the name ``__operand__``: read once per facet, from the registry's text (never from code a
    printer printed)."""
    return ast.parse(fmt.format(**{var: "__operand__"}), mode="eval").body


_OPERAND = "__operand__"


class _Facet(ast.NodeTransformer):
    """The facet tree with its float literals as typed constants and the operand's code in
    place of ``__operand__`` (bare as a call's argument, else parenthesised unless atomic)."""

    def __init__(self, consts: Constants, operand: str, wrapped: str):
        self.consts, self.operand, self.wrapped = consts, operand, wrapped
        self.bare: set[int] = set()

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.bare |= {id(a) for a in node.args if isinstance(a, ast.Name)}
        return self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Name(self.consts.name(node.value), ast.Load()), node)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == _OPERAND:
            code = self.operand if id(node) in self.bare else self.wrapped
            return ast.copy_location(ast.Name(code, ast.Load()), node)
        return node


def _precedence(tree: ast.expr) -> int:
    """The printer's precedence of a facet's top operator."""
    if isinstance(tree, (ast.Call, ast.Name, ast.Attribute, ast.Subscript, ast.Constant)):
        return ATOM
    if isinstance(tree, ast.BinOp) and isinstance(tree.op, (ast.Mult, ast.Div)):
        return MUL
    if isinstance(tree, ast.BinOp) and isinstance(tree.op, (ast.Add, ast.Sub)):
        return ADD
    return 0  # a conditional, a comparison, a unary minus: parenthesised as any operand


class NumbaPrinter(NumpyPrinter):
    """Scalar code of element ``index`` of vector expressions (see the module docstring).

    Settings: ``places`` (identifier -> :class:`Place` of the values held in arrays),
    ``scalars`` (identifiers the loop holds as locals), ``views`` (:class:`Views`), ``consts``
    (:class:`Constants`), ``index`` (the unit loop's counter, 'j'), ``reads`` (a list the
    printer appends every identifier it prints to, each time, or None)."""

    _default_settings = {"places": {}, "scalars": frozenset(), "views": None, "consts": None,
                         "index": "j", "reads": None}

    def element(self, place: Place) -> str:
        return f"{self.settings['views'].name(place)}[{self.settings['index']}]"

    def const(self, value) -> str:
        return self.settings["consts"].name(value)

    # -- leaves ---------------------------------------------------------------------------
    def _print_Var(self, e: Var) -> tuple[str, int]:
        if self.settings["reads"] is not None:
            self.settings["reads"].append(e.ident)  # what the printed code reads, in order
        if e.ident in self.settings["scalars"]:
            return e.ident, ATOM
        place = self.settings["places"].get(e.ident)
        if place is None:
            raise Unsupported(f"the value {e.ident!r} is not held where the loop can read it")
        return self.element(place), ATOM

    def _print_Cols(self, e: Cols) -> tuple[str, int]:
        return self.element(Place(e.array, e.time, e.lo, e.hi)), ATOM

    def _print_At(self, e: At) -> tuple[str, int]:
        return self.element(Place(e.array, e.time)), ATOM

    def _print_Const(self, e: Const) -> tuple[str, int]:
        name = self.const(abs(Fraction(e.value)))
        return (name, ATOM) if e.value >= 0 else (f"(-{name})", ATOM)

    def _print_Scaled(self, e: Scaled) -> tuple[str, int]:
        c = Fraction(e.coef)
        if c == 1:
            return self._print(e.e)
        if c == -1:
            return f"-{self.operand(e.e, MUL, right=True)}", ADD
        body = f"{self.const(abs(c))} * {self.operand(e.e, MUL, right=True)}"
        return (body, MUL) if c > 0 else (f"-{body}", ADD)

    def _print_Dot(self, e: Dot) -> tuple[str, int]:
        raise Unsupported("a matrix product inside an elementwise loop")

    # -- activations ----------------------------------------------------------------------
    def facet(self, fmt: str, var: str, operand: Expr) -> tuple[str, int]:
        """An activation facet printed around ``operand``, its literals typed."""
        tree = facet_tree(fmt, var)
        if isinstance(tree, ast.Name) and tree.id == _OPERAND:
            return self._print(operand)  # the identity: the operand itself
        used = any(isinstance(n, ast.Name) and n.id == _OPERAND for n in ast.walk(tree))
        text, prec = self._print(operand) if used else ("", ATOM)  # (a constant derivative)
        wrapped = text if prec >= ATOM else f"({text})"
        out = _Facet(self.settings["consts"], text, wrapped).visit(copy.deepcopy(tree))
        return ast.unparse(out), _precedence(out)

    def _print_ActValue(self, e: ActValue) -> tuple[str, int]:
        return self.facet(ACTIVATIONS[e.fn].numba, "z", e.z)

    def _print_ActDeriv(self, e: ActDeriv) -> tuple[str, int]:
        act = ACTIVATIONS[e.fn]
        if not e.from_output or act.numba_deriv_from_output is None:
            raise Unsupported(f"activation {e.fn!r}: the numba loops need its derivative from "
                              "its output (numba_deriv_from_output)")
        return self.facet(act.numba_deriv_from_output, "y", e.arg)


__all__ = ["Constants", "NumbaPrinter", "Place", "Unsupported", "Views", "facet_tree"]
