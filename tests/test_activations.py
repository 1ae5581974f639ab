"""The activation table's derivative-from-output formulas against sympy.diff."""

import sympy as sp

from derive.activations import ACTIVATIONS, sympy_function


def test_derivative_from_output_matches_sympy_diff() -> None:
    z = sp.Symbol("z", real=True)
    for name, act in ACTIVATIONS.items():
        f = sympy_function(name)(z)
        y = sp.Symbol("y")
        from_output = sp.sympify(act.deriv_from_output.format(y="y")).subs(y, f)
        assert sp.simplify(sp.diff(f, z) - from_output) == 0, name
