"""The spec: what a cell is. Read first.

``expr`` (the AST of node expressions and how to walk it), ``parse`` (text to AST), ``cellspec``
(:class:`CellSpec`: the validated cell graph, and the rules of a symbol's LaTeX name),
``activations`` (the activation registry) and ``cells`` (the built-in cells, as data). Nothing
here imports the rest of derive.
"""

from .cellspec import (
    DIMS,
    CellSpec,
    Node,
    Param,
    check_symbols,
    latex_problem,
    name_problem,
    renameable,
)
from .expr import (
    HAT,
    INPUT,
    PREV,
    Add,
    Call,
    Const,
    DerivAt,
    Expr,
    MatVec,
    Mul,
    Ref,
    SpecError,
    children,
    params_in,
    refs_in,
    walk,
)
from .parse import MAX_CHAIN, MAX_DEPTH, MAX_TERMS, parse_expr

__all__ = ["DIMS", "HAT", "INPUT", "MAX_CHAIN", "MAX_DEPTH", "MAX_TERMS", "PREV", "Add", "Call",
           "CellSpec", "Const", "DerivAt", "Expr", "MatVec", "Mul", "Node", "Param", "Ref",
           "SpecError", "check_symbols", "children", "latex_problem", "name_problem",
           "params_in", "parse_expr", "refs_in", "renameable", "walk"]
