"""The d(x) notation (seed 001 eqs (7)-(25), derive's own LaTeX export) as tables.

Everything the d(x) reader knows about how a symbol, a derivative, a time index or a relation is
spelled lives here; the grammar (:mod:`derive.check.dx.parser`), the line splitter
(:mod:`derive.check.dx.chains`) and the scope rules (:mod:`derive.check.dx.scope`) only look
words up. Activation names are not listed: they are read from the registry
:data:`derive.spec.activations.ACTIVATIONS` when a line is read
(:func:`derive.check.dx.atoms.match_activation`). The layout commands every reader drops are
:mod:`derive.check.tokens`'s.
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- documents

# display-math environments (and their starred forms); \[ \] and $$ $$ are display math too
DISPLAY_ENVS = ("equation", "align", "gather", "multline", "eqnarray", "flalign", "displaymath",
                "alignat")
# environments inside a display that only align: their \begin/\end are dropped
INNER_ENVS = ("aligned", "split", "gathered", "alignedat", "multlined")
# a block that mentions one of these restricts the generic A to other gates' parameters
# (seed 001 eq 10's heading, A_{p \neq g})
RESTRICTING = (r"\neq", r"\ne ")

# ----------------------------------------------------------------------------- relations

RELATIONS = {"=", r"\le", r"\leq", r"\leqslant", r"\ge", r"\geq", r"\geqslant", "<", ">",
             r"\lt", r"\gt", r"\lesssim", r"\gtrsim", r"\ll", r"\gg", r"\approx", r"\sim",
             r"\simeq", r"\eqsim", r"\propto", r"\neq", r"\ne"}
BOUNDS = {r"\le", r"\leq", r"\leqslant", r"\ge", r"\geq", r"\geqslant", "<", ">", r"\lt",
          r"\gt", r"\lesssim", r"\gtrsim"}
APPROXIMATIONS = {r"\approx", r"\sim", r"\simeq", r"\eqsim"}
# text commands, and the first words that make a \text{...} a side condition
TEXT = {r"\text", r"\textrm", r"\textnormal", r"\textit", r"\textup", r"\mbox"}
CONDITION_WORDS = {"when", "whenever", "if", "iff", "where", "for", "provided", "unless", "with",
                   "assuming", "given"}

# ----------------------------------------------------------------------------- derivatives

FRACS = {r"\frac", r"\dfrac", r"\tfrac"}
PARTIAL = r"\partial"
# an upright d in a denominator (\mathrm{d} c_{t-1}): a total derivative
UPRIGHT = (r"\mathrm", r"\text", r"\operatorname", r"\mathit", r"\rm")
# the diagonal matrix d(v), and d_1(v) / d_2(v): True for the d_2 of seed 001
DIAG = "d"
DIAG_ORDERS = {"1": False, "2": True}
# the primes of a derivative, as a superscript: \sigma^{\prime}(z), o^{'}_t
PRIMES = (r"\prime", "'")
# a transpose, as a superscript
TRANSPOSES = {r"\top", "T", r"\intercal", r"\mathsf{T}", r"\mathrm{T}", r"\mathsf T"}

# ----------------------------------------------------------------------------- symbols

# the generic symbols of seed 001 (where the cell has no symbol so named): A any parameter, g_t
# any gate, X_g the parameter of gate g's equation whose base letter is X
GENERIC_PARAM = "A"
GENERIC_GATE = "g"
# the blocks of seed 001 eq 26 (dh_t/dh_{t-1}, dh_t/ds_{t-1}, the direct term of dh_t/dA)
BLOCKS = ("M", "N", "V")
LHS_BLOCKS = ("M", "N")
IDENTITY = "I"
# the loss in a numerator: L (summed over t), L_t and \ell_t (the loss at step t)
LOSSES = ("L", r"\ell")
# adjoints: \bar{u}_t, and \delta u_{t-1} carried from the next step
ADJOINT_ACCENT = r"\bar"
CARRY = r"\delta"
# the pre-activation of a gate: \hat{o}_t
PRE_ACTIVATION_ACCENT = r"\hat"
# commands that are operators, never symbols
OPERATOR_CMDS = {r"\frac", r"\dfrac", r"\tfrac", r"\partial", r"\odot", r"\circ", r"\cdot",
                 r"\times", r"\sum", r"\delta", r"\top", r"\prime"}

# ----------------------------------------------------------------------------- products and sums

BRACKETS = {"(": ")", "[": "]"}
SIGNS = {"+": 1, "-": -1}
# the Hadamard product of two vectors (juxtaposition too)
HADAMARD = (r"\odot", r"\circ", "*", r"\ast")
# a written matrix product: the operator is dropped
MATRIX_PRODUCTS = (r"\cdot", r"\times")
# the sum over steps of a gradient, \sum_t
SUM = r"\sum"
SUM_INDEX = "t"
# tokens that end a term
STOP = {"+", "-", ")", "=", "]"}

# ----------------------------------------------------------------------------- time

# the times the calculus reads: t (lag 0) and t-k (lag k; only t-1 is judged)
TIME_NOW = "t"
TIME_LAG = r"t-(\d+)"
# a time subscript of a node that the calculus does not read (reported as unsupported)
UNSUPPORTED_TIME = r"t[-+]\w+|[jkT]|k\+1"
# a time subscript that makes a line a statement over several steps (skipped): j, k, l (with an
# offset), t-k, t-2, t+1 (digits such as T_0 are names)
OTHER_STEPS = (r"[jkl](?:[+-]\d+)?", r"t(?:[+-](?:\d+|[a-z]))+")

# ----------------------------------------------------------------------------- not judged

PRODUCT_OVER_STEPS = r"\prod"
NORMS = {r"\|", r"\Vert", r"\lVert", r"\rVert"}
BARS = {"|", r"\vert", r"\rvert", r"\lvert"}
ELLIPSES = {r"\ldots", r"\cdots", r"\dots", r"\vdots", r"\ddots", r"\dotsb", r"\dotsc",
            r"\dotsm", r"\dotsi", r"\dotso"}
# block matrices (the block state Jacobian)
MATRICES = {"pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "matrix", "smallmatrix",
            "array", "cases"}
BLOCK_JACOBIAN = "J"
