"""Independent hand-written references for the built-in cells.

Nothing here imports :mod:`derive`: every cell is re-implemented by hand from its equations (the
same equations as ``derive/spec/cells.py``), once with NumPy and once with SymPy, so that the
test-suite can check the symbolic engine against code that shares none of its machinery.

Conventions
-----------
* ``n_hidden`` (hidden size), ``n_in`` (input size), ``n_out`` (readout size, rnn only).
* NumPy: parameters are arrays; ``x`` has shape ``(n_in,)`` or ``(B, n_in)``, states ``(n,)`` or
  ``(B, n)``. Matrix products are written ``v @ W.T`` so a leading batch axis just works. The
  activations accept complex arrays, so :func:`numpy_step` can be used for complex-step
  differentiation.
* SymPy: 2-D parameters are ``Matrix(rows, cols)``, 1-D parameters, ``x`` and the states are
  column matrices ``(n, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import sympy as sp

CELLS: tuple[str, ...] = ("lstm", "sigmoid_lstm", "rnn", "gru", "peephole_lstm")

STATES: dict[str, tuple[str, ...]] = {
    "lstm": ("h", "c"),
    "sigmoid_lstm": ("h", "s"),
    "rnn": ("h",),
    "gru": ("h",),
    "peephole_lstm": ("h", "c"),
}


# --------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------


def _lstm_shapes(n_hidden: int, n_in: int, n_out: int = 2) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for g in "ifgo":
        shapes[f"W_x{g}"] = (n_hidden, n_in)
    for g in "ifgo":
        shapes[f"W_h{g}"] = (n_hidden, n_hidden)
    for g in "ifgo":
        shapes[f"b_{g}"] = (n_hidden,)
    return shapes


def _sigmoid_lstm_shapes(n_hidden: int, n_in: int, n_out: int = 2) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name in ("W", "W_i", "W_f", "W_o"):
        shapes[name] = (n_hidden, n_hidden)
    for name in ("U", "U_i", "U_f", "U_o"):
        shapes[name] = (n_hidden, n_in)
    for name in ("b", "b_i", "b_f", "b_o"):
        shapes[name] = (n_hidden,)
    return shapes


def _rnn_shapes(n_hidden: int, n_in: int, n_out: int = 2) -> dict[str, tuple[int, ...]]:
    return {"W": (n_hidden, n_in), "U": (n_hidden, n_hidden), "b_h": (n_hidden,)}


def _gru_shapes(n_hidden: int, n_in: int, n_out: int = 2) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for g in "rzn":
        shapes[f"W_x{g}"] = (n_hidden, n_in)
    for g in "rzn":
        shapes[f"W_h{g}"] = (n_hidden, n_hidden)
    for name in ("b_r", "b_z", "b_xn", "b_hn"):
        shapes[name] = (n_hidden,)
    return shapes


def _peephole_lstm_shapes(n_hidden: int, n_in: int, n_out: int = 2) -> dict[str, tuple[int, ...]]:
    shapes = _lstm_shapes(n_hidden, n_in, n_out)
    for name in ("p_i", "p_f", "p_o"):
        shapes[name] = (n_hidden,)
    return shapes


PARAM_SHAPES: dict[str, Callable[..., dict[str, tuple[int, ...]]]] = {
    "lstm": _lstm_shapes,
    "sigmoid_lstm": _sigmoid_lstm_shapes,
    "rnn": _rnn_shapes,
    "gru": _gru_shapes,
    "peephole_lstm": _peephole_lstm_shapes,
}
"""``PARAM_SHAPES[cell](n_hidden, n_in, n_out=2)`` -> recurrent parameter name -> shape."""


def _rnn_readout_shapes(n_hidden: int, n_in: int = 0, n_out: int = 2) -> dict[str, tuple[int, ...]]:
    return {"V": (n_out, n_hidden), "b_y": (n_out,)}


READOUT_SHAPES: dict[str, Callable[..., dict[str, tuple[int, ...]]]] = {
    "rnn": _rnn_readout_shapes,
}
"""``READOUT_SHAPES[cell](n_hidden, n_in, n_out=2)`` -> readout parameter name -> shape."""


def _check_cell(cell: str) -> None:
    if cell not in STATES:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(CELLS)}")


# --------------------------------------------------------------------------------------------
# random values
# --------------------------------------------------------------------------------------------


def random_params(
    cell: str,
    n_hidden: int,
    n_in: int,
    rng: np.random.Generator,
    scale: float = 0.5,
    dtype: Any = np.float64,
    *,
    n_out: int = 2,
    readout: bool = False,
) -> dict[str, np.ndarray]:
    """Random parameters ``scale * N(0, 1)`` for ``cell`` (plus readout ones if ``readout``)."""
    _check_cell(cell)
    shapes = dict(PARAM_SHAPES[cell](n_hidden, n_in, n_out))
    if readout and cell in READOUT_SHAPES:
        shapes.update(READOUT_SHAPES[cell](n_hidden, n_in, n_out))
    return {
        name: (scale * rng.standard_normal(shape)).astype(dtype) for name, shape in shapes.items()
    }


def random_state(
    cell: str,
    n_hidden: int,
    rng: np.random.Generator,
    batch: int | None = None,
    dtype: Any = np.float64,
) -> dict[str, np.ndarray]:
    """Random previous states ``N(0, 1) / 2`` of shape ``(n_hidden,)`` or ``(batch, n_hidden)``."""
    _check_cell(cell)
    shape = (n_hidden,) if batch is None else (batch, n_hidden)
    return {s: (0.5 * rng.standard_normal(shape)).astype(dtype) for s in STATES[cell]}


# --------------------------------------------------------------------------------------------
# NumPy step, one hand-written function per cell
# --------------------------------------------------------------------------------------------


def np_sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-z))`` (accepts complex input)."""
    return 1.0 / (1.0 + np.exp(-z))


def _lin(W: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``W @ v`` for ``v`` of shape ``(n,)`` or a batch ``(B, n)``."""
    return v @ W.T


def _np_lstm(p: Mapping[str, np.ndarray], x: np.ndarray, prev: Mapping[str, np.ndarray]):
    h_prev, c_prev = prev["h"], prev["c"]
    i = np_sigmoid(_lin(p["W_xi"], x) + _lin(p["W_hi"], h_prev) + p["b_i"])
    f = np_sigmoid(_lin(p["W_xf"], x) + _lin(p["W_hf"], h_prev) + p["b_f"])
    g = np.tanh(_lin(p["W_xg"], x) + _lin(p["W_hg"], h_prev) + p["b_g"])
    o = np_sigmoid(_lin(p["W_xo"], x) + _lin(p["W_ho"], h_prev) + p["b_o"])
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    return {"h": h, "c": c}


def _np_sigmoid_lstm(p: Mapping[str, np.ndarray], x: np.ndarray, prev: Mapping[str, np.ndarray]):
    h_prev, s_prev = prev["h"], prev["s"]
    o = np_sigmoid(_lin(p["W_o"], h_prev) + _lin(p["U_o"], x) + p["b_o"])
    i = np_sigmoid(_lin(p["W_i"], h_prev) + _lin(p["U_i"], x) + p["b_i"])
    f = np_sigmoid(_lin(p["W_f"], h_prev) + _lin(p["U_f"], x) + p["b_f"])
    s_tilde = np_sigmoid(_lin(p["W"], h_prev) + _lin(p["U"], x) + p["b"])
    s = f * s_prev + i * s_tilde
    h = o * np_sigmoid(s)
    return {"h": h, "s": s}


def _np_rnn(p: Mapping[str, np.ndarray], x: np.ndarray, prev: Mapping[str, np.ndarray]):
    h = np.tanh(_lin(p["W"], x) + _lin(p["U"], prev["h"]) + p["b_h"])
    return {"h": h}


def _np_gru(p: Mapping[str, np.ndarray], x: np.ndarray, prev: Mapping[str, np.ndarray]):
    h_prev = prev["h"]
    r = np_sigmoid(_lin(p["W_xr"], x) + _lin(p["W_hr"], h_prev) + p["b_r"])
    z = np_sigmoid(_lin(p["W_xz"], x) + _lin(p["W_hz"], h_prev) + p["b_z"])
    n = np.tanh(_lin(p["W_xn"], x) + p["b_xn"] + r * (_lin(p["W_hn"], h_prev) + p["b_hn"]))
    h = (1 - z) * n + z * h_prev
    return {"h": h}


def _np_peephole_lstm(p: Mapping[str, np.ndarray], x: np.ndarray, prev: Mapping[str, np.ndarray]):
    h_prev, c_prev = prev["h"], prev["c"]
    i = np_sigmoid(_lin(p["W_xi"], x) + _lin(p["W_hi"], h_prev) + p["p_i"] * c_prev + p["b_i"])
    f = np_sigmoid(_lin(p["W_xf"], x) + _lin(p["W_hf"], h_prev) + p["p_f"] * c_prev + p["b_f"])
    g = np.tanh(_lin(p["W_xg"], x) + _lin(p["W_hg"], h_prev) + p["b_g"])
    c = f * c_prev + i * g
    o = np_sigmoid(_lin(p["W_xo"], x) + _lin(p["W_ho"], h_prev) + p["p_o"] * c + p["b_o"])
    h = o * np.tanh(c)
    return {"h": h, "c": c}


_NUMPY_STEPS = {
    "lstm": _np_lstm,
    "sigmoid_lstm": _np_sigmoid_lstm,
    "rnn": _np_rnn,
    "gru": _np_gru,
    "peephole_lstm": _np_peephole_lstm,
}


def numpy_step(
    cell: str,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    prev: Mapping[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One time step of ``cell``: new states (dict state -> array) from ``x`` and ``prev``."""
    _check_cell(cell)
    return _NUMPY_STEPS[cell](params, x, prev)


def numpy_readout(params: Mapping[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    """Readout of the rnn cell: ``y = sigmoid(V h + b_y)`` (``h`` may carry a batch axis)."""
    return np_sigmoid(_lin(params["V"], h) + params["b_y"])


def numpy_run(
    cell: str,
    params: Mapping[str, np.ndarray],
    xs: np.ndarray,
    state0: Mapping[str, np.ndarray],
) -> list[dict[str, np.ndarray]]:
    """Run :func:`numpy_step` over ``xs`` (time first); returns the states at t = 1..T."""
    states: list[dict[str, np.ndarray]] = []
    prev = dict(state0)
    for x in xs:
        prev = numpy_step(cell, params, x, prev)
        states.append(prev)
    return states


# --------------------------------------------------------------------------------------------
# SymPy step
# --------------------------------------------------------------------------------------------


def sp_sigmoid(z: sp.Matrix) -> sp.Matrix:
    """Elementwise ``1 / (1 + exp(-z))`` of a SymPy matrix."""
    return z.applyfunc(lambda e: 1 / (1 + sp.exp(-e)))


def sp_tanh(z: sp.Matrix) -> sp.Matrix:
    """Elementwise ``tanh`` of a SymPy matrix."""
    return z.applyfunc(sp.tanh)


def _had(a: sp.Matrix, b: sp.Matrix) -> sp.Matrix:
    """Hadamard product of two SymPy matrices of the same shape."""
    return a.multiply_elementwise(b)


def _sp_lstm(p: Mapping[str, sp.Matrix], x: sp.Matrix, prev: Mapping[str, sp.Matrix]):
    h_prev, c_prev = prev["h"], prev["c"]
    i = sp_sigmoid(p["W_xi"] * x + p["W_hi"] * h_prev + p["b_i"])
    f = sp_sigmoid(p["W_xf"] * x + p["W_hf"] * h_prev + p["b_f"])
    g = sp_tanh(p["W_xg"] * x + p["W_hg"] * h_prev + p["b_g"])
    o = sp_sigmoid(p["W_xo"] * x + p["W_ho"] * h_prev + p["b_o"])
    c = _had(f, c_prev) + _had(i, g)
    h = _had(o, sp_tanh(c))
    return {"h": h, "c": c}


def _sp_sigmoid_lstm(p: Mapping[str, sp.Matrix], x: sp.Matrix, prev: Mapping[str, sp.Matrix]):
    h_prev, s_prev = prev["h"], prev["s"]
    o = sp_sigmoid(p["W_o"] * h_prev + p["U_o"] * x + p["b_o"])
    i = sp_sigmoid(p["W_i"] * h_prev + p["U_i"] * x + p["b_i"])
    f = sp_sigmoid(p["W_f"] * h_prev + p["U_f"] * x + p["b_f"])
    s_tilde = sp_sigmoid(p["W"] * h_prev + p["U"] * x + p["b"])
    s = _had(f, s_prev) + _had(i, s_tilde)
    h = _had(o, sp_sigmoid(s))
    return {"h": h, "s": s}


def _sp_rnn(p: Mapping[str, sp.Matrix], x: sp.Matrix, prev: Mapping[str, sp.Matrix]):
    return {"h": sp_tanh(p["W"] * x + p["U"] * prev["h"] + p["b_h"])}


def _sp_gru(p: Mapping[str, sp.Matrix], x: sp.Matrix, prev: Mapping[str, sp.Matrix]):
    h_prev = prev["h"]
    r = sp_sigmoid(p["W_xr"] * x + p["W_hr"] * h_prev + p["b_r"])
    z = sp_sigmoid(p["W_xz"] * x + p["W_hz"] * h_prev + p["b_z"])
    n = sp_tanh(p["W_xn"] * x + p["b_xn"] + _had(r, p["W_hn"] * h_prev + p["b_hn"]))
    ones = sp.ones(z.rows, 1)
    h = _had(ones - z, n) + _had(z, h_prev)
    return {"h": h}


def _sp_peephole_lstm(p: Mapping[str, sp.Matrix], x: sp.Matrix, prev: Mapping[str, sp.Matrix]):
    h_prev, c_prev = prev["h"], prev["c"]
    i = sp_sigmoid(p["W_xi"] * x + p["W_hi"] * h_prev + _had(p["p_i"], c_prev) + p["b_i"])
    f = sp_sigmoid(p["W_xf"] * x + p["W_hf"] * h_prev + _had(p["p_f"], c_prev) + p["b_f"])
    g = sp_tanh(p["W_xg"] * x + p["W_hg"] * h_prev + p["b_g"])
    c = _had(f, c_prev) + _had(i, g)
    o = sp_sigmoid(p["W_xo"] * x + p["W_ho"] * h_prev + _had(p["p_o"], c) + p["b_o"])
    h = _had(o, sp_tanh(c))
    return {"h": h, "c": c}


_SYMPY_STEPS = {
    "lstm": _sp_lstm,
    "sigmoid_lstm": _sp_sigmoid_lstm,
    "rnn": _sp_rnn,
    "gru": _sp_gru,
    "peephole_lstm": _sp_peephole_lstm,
}


def sympy_step(
    cell: str,
    params: Mapping[str, sp.Matrix],
    x: sp.Matrix,
    prev: Mapping[str, sp.Matrix],
) -> dict[str, sp.Matrix]:
    """One time step of ``cell`` with SymPy matrices; returns state -> column Matrix."""
    _check_cell(cell)
    return _SYMPY_STEPS[cell](params, x, prev)


def sympy_readout(params: Mapping[str, sp.Matrix], h: sp.Matrix) -> sp.Matrix:
    """Readout of the rnn cell with SymPy: ``sigmoid(V h + b_y)``."""
    return sp_sigmoid(params["V"] * h + params["b_y"])


def _symbol_matrix(name: str, shape: tuple[int, ...]) -> sp.Matrix:
    """Matrix of distinct real symbols ``name_i_j`` (2-D) or column ``name_i`` (1-D)."""
    if len(shape) == 2:
        rows, cols = shape
        return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}_{j}", real=True))
    (n,) = shape
    return sp.Matrix(n, 1, lambda i, _j: sp.Symbol(f"{name}_{i}", real=True))


def sympy_symbols(
    cell: str,
    n_hidden: int,
    n_in: int,
    *,
    n_out: int = 2,
    readout: bool = False,
) -> tuple[dict[str, sp.Matrix], sp.Matrix, dict[str, sp.Matrix]]:
    """``(params, x, prev)`` of SymPy matrices filled with distinct real symbols.

    Names: ``W_xi_0_1`` (2-D entry (0, 1)), ``b_i_0``, ``x_2``, ``h_prev_0``, ``c_prev_3``.
    """
    _check_cell(cell)
    shapes = dict(PARAM_SHAPES[cell](n_hidden, n_in, n_out))
    if readout and cell in READOUT_SHAPES:
        shapes.update(READOUT_SHAPES[cell](n_hidden, n_in, n_out))
    params = {name: _symbol_matrix(name, shape) for name, shape in shapes.items()}
    x = _symbol_matrix("x", (n_in,))
    prev = {s: _symbol_matrix(f"{s}_prev", (n_hidden,)) for s in STATES[cell]}
    return params, x, prev


def flat_symbols(matrix: sp.Matrix) -> list[sp.Expr]:
    """Entries of ``matrix`` in row-major order."""
    return [matrix[i, j] for i in range(matrix.rows) for j in range(matrix.cols)]


def to_sympy(value: np.ndarray) -> sp.Matrix:
    """A NumPy parameter/vector as a SymPy Matrix (1-D -> column) of exact Floats."""
    arr = np.asarray(value)
    if arr.ndim == 1:
        return sp.Matrix(arr.shape[0], 1, [sp.Float(float(v), 30) for v in arr])
    return sp.Matrix(arr.shape[0], arr.shape[1], [sp.Float(float(v), 30) for v in arr.ravel()])
