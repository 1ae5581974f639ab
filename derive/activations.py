"""Elementwise activations: their value, their derivative and how each is printed.

The derivative is stored in terms of the activation's *output* y = act(z), because that is what
a kernel has at hand: sigma'(z) = y (1 - y), tanh'(z) = 1 - y^2. Note that sigma' is taken at
the pre-activation z: writing sigma'(g) for a gate g = sigma(z) is a classic slip (NOTES.md).
``tests/test_activations.py`` checks both formulas against ``sympy.diff``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Activation:
    name: str
    latex: str  # LaTeX name of the function: \sigma, \tanh
    unicode: str  # terminal name
    numpy: str  # a NumPy expression of {z}
    deriv_from_output: str  # a NumPy expression of {y} = act(z), equal to act'(z)
    deriv_from_output_latex: str  # the same in LaTeX, of {y}


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(
        "sigmoid", r"\sigma", "σ", "1.0 / (1.0 + np.exp(-({z})))",
        "{y} * (1.0 - {y})", r"{y} \odot (1 - {y})",
    ),
    "tanh": Activation(
        "tanh", r"\tanh", "tanh", "np.tanh({z})", "1.0 - {y} * {y}", r"1 - {y} \odot {y}",
    ),
}


def sympy_function(name: str):
    """The activation as an exact SymPy lambda (used for explicit instantiation and tests)."""
    import sympy as sp

    z = sp.Symbol("z", real=True)
    if name == "sigmoid":
        return sp.Lambda(z, 1 / (1 + sp.exp(-z)))
    if name == "tanh":
        return sp.Lambda(z, sp.tanh(z))
    raise KeyError(name)
