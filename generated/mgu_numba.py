# generated from numba/fallback.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec, the engine or the
# template. Cell: mgu, numba backend (re-export).
"""Minimal gated unit (Zhou, Wu, Zhang, Zhou 2016, "Minimal gated unit for recurrent neural networks", Int. J. Autom. Comput. 13(3), arXiv:1603.09420): the numba backend's module, which for this cell is the NumPy kernel.

The fused-loop printer does not print this cell: cell 'mgu': W_h @ (...) multiplies a value computed inside the step. This module re-exports
its NumPy sibling ``mgu`` (same API, same numbers), so code written for the numba backend runs
unchanged; ``FUSED`` is False here and True in a module with compiled loops.
"""

from .mgu import (  # noqa: F401  (re-exported: same API)
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
