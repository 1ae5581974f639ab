# generated from numba/fallback.py.j2 by derive; do not edit.
# Regenerate with `derive generate` after changing the cell spec (derive/cells.py), the engine
# or the template. Cell: cifg_lstm, numba backend (re-export).
"""LSTM with coupled input and forget gate, no peepholes (Greff, Srivastava, Koutnik, Steunebrink, Schmidhuber 2017, "LSTM: A search space odyssey", IEEE TNNLS 28(10), arXiv:1503.04069): the numba backend's module, which for this cell is the NumPy kernel.

The fused-loop printer does not print this cell: its names ['R_i', 'R_o', 'R_z'] are among the fused printer's own. This module re-exports
``generated.cifg_lstm`` (same API, same numbers), so code written for the numba backend runs
unchanged; ``FUSED`` is False here and True in a module with compiled loops.
"""

from generated.cifg_lstm import (  # noqa: F401  (re-exported: same API)
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
