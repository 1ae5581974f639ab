"""The notations of hand derivations, as tables (issue 16, items 3 and 6).

Everything :mod:`derive.check.grammar` knows about how people write a symbol lives here: a new
way of writing a product, an activation, a loss or an adjoint is one entry, not a new branch.
"""

from __future__ import annotations

import numpy as np

# products: how an operator between two factors is read ("elementwise" forces the Hadamard
# product; "generic" is decided by the shapes: matrix-vector, row-vector-matrix, outer product
# of a column and an explicit row, Hadamard product of two vectors of one length)
PRODUCTS: dict[str, str] = {
    r"\odot": "elementwise", r"\circ": "elementwise", r"\otimes": "elementwise",
    r"\bullet": "elementwise", r"\ast": "generic", "*": "generic", r"\cdot": "generic",
    r"\times": "generic", ".": "generic", "": "generic",
}

# sums and differences
SIGNS: dict[str, int] = {"+": 1, "-": -1, r"\oplus": 1}


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - np.max(z.real))
    return e / e.sum()


# activations: LaTeX spellings -> (name, value, derivative). A name read in any of the
# spellings \sigma, \text{sigmoid}, \operatorname{sigmoid}, \mathrm{sigmoid}, sigmoid.
ACTIVATIONS: dict[str, tuple] = {
    "sigma": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "sigmoid": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "sigm": (_sigmoid, lambda z: _sigmoid(z) * (1 - _sigmoid(z))),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "exp": (np.exp, np.exp),
    "log": (np.log, lambda z: 1 / z),
    "softmax": (_softmax, None),
}
# an activation the author leaves generic (\phi, g, \sigma_h, \sigma_y, f): each distinct name
# gets its own smooth function, so that one put in place of another is seen
GENERIC_ACTIVATIONS: tuple[tuple, ...] = (
    (np.arctan, lambda z: 1 / (1 + z * z)),
    (lambda z: np.tanh(0.7 * z) * 1.3, lambda z: 0.91 * (1 - np.tanh(0.7 * z) ** 2)),
    (lambda z: np.sinh(0.5 * z), lambda z: 0.5 * np.cosh(0.5 * z)),
    (lambda z: z / 2 + np.tanh(z), lambda z: 0.5 + 1 - np.tanh(z) ** 2),
)
GENERIC_NAMES = {r"\phi", r"\varphi", r"\psi", r"\sigma", "g", "f"}
# names of abstract functions of several arguments: the step h_t = f(x_t, h_{t-1}, w), the
# readout o_t = g(h_t, w), the loss at a step l(y_t, o_t) and the objective L(x, y, w) (Dive
# into Deep Learning); read as calls only where a list of arguments follows
ABSTRACT_FUNCTIONS = {"f", "g", "l", r"\ell", "L", "F", "G"}
# connectives that end a row without belonging to its math (h_t = \dots \implies)
CONNECTIVES = {r"\implies", r"\Rightarrow", r"\Longrightarrow", r"\therefore", r"\because",
               r"\iff", r"\Leftrightarrow"}

# commands that name a function by their {argument}
NAMED_FUNCTION_CMDS = {r"\text", r"\operatorname", r"\mathrm", r"\textrm", r"\mathit",
                       r"\textit", r"\mbox"}
# the chain-rule product of two derivatives, contracted over what they share (Dive into Deep
# Learning's prod(dL/do_t, do_t/dW): "multiplication after the necessary transpositions")
CHAIN_PRODUCTS = {"prod": "prod"}
# matrix-valued functions
DIAG = {"diag", r"\diag", r"\operatorname{diag}", r"\text{diag}", r"\mathrm{diag}"}

# numerators that are the loss (an adjoint \frac{\partial E}{\partial x} is a gradient)
LOSSES = {"E", "L", "l", r"\ell", r"\mathcal{L}", r"\mathcal{E}", "J", "C", r"\mathcal{J}",
          r"\mathbf{L}", r"\mathbf{E}"}

# the loss written as a word in a numerator (\frac{\partial{loss}}{\partial{h_t}})
LOSS_WORDS = {"loss", "Loss", "cost", "Cost"}
# prefixes that name the gradient of the symbol written in their subscript (\delta_{z_{zt}},
# d_{W_{h,t}}, d_{W_h}): the adjoint of that symbol
ADJOINT_PREFIXES = {r"\delta", "d"}

# transposes written as a superscript (W^{Tr}: Talwar's)
TRANSPOSES = {"T", r"\top", r"\intercal", r"\mathsf{T}", r"\mathrm{T}", r"\mathsf T", "t",
              "Tr"}

# relation kinds that are not judged, with the reason
SKIPPED_RELATIONS = {
    "<=": "a bound ({rel}), not an equation", ">=": "a bound ({rel}), not an equation",
    "<": "a bound ({rel}), not an equation", ">": "a bound ({rel}), not an equation",
    "~": "an approximation ({rel}), not an equation",
    "!=": "an inequation ({rel}), not an equation",
}

# elisions
ELLIPSES = {r"\ldots", r"\cdots", r"\dots", r"\vdots", r"\ddots", r"\dotsb", r"\dotsc",
            r"\dotsm"}

# time written as a script: t, t-1, t+1, T, \tau, (t), <t>, \langle t \rangle, digits
TIME_VARS = {"t", "T", r"\tau", "k", "s", "j"}
