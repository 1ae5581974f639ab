# generated from numba/fallback.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: gru_cho, numba backend (re-export).
"""GRU of Cho et al. 2014 ("Learning phrase representations using RNN encoder-decoder for statistical machine translation", EMNLP 2014, arXiv:1406.1078, eqs 5-8): reset before the recurrent product, no biases: the numba backend's module, which for this cell is the NumPy kernel.

The fused-loop printer does not print this cell: cell 'gru_cho': U @ (...) multiplies a value computed inside the step. This module re-exports
its NumPy sibling ``gru_cho`` (same API, same numbers), so code written for the numba backend runs
unchanged; ``FUSED`` is False here and True in a module with compiled loops.
"""

from .gru_cho import (  # noqa: F401  (re-exported: same API)
    INPUT_GRAD,
    PARAMS,
    READOUT,
    READOUT_PARAMS,
    RTRL_DENSE_MAX,
    STATE,
    STATE0_GRAD,
    backward,
    forward,
    init_params,
    rtrl,
    rtrl_step,
    state_jacobian,
)

FUSED = False
