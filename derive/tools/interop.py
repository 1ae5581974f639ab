"""Conversion between derive's parameter layout and torch's ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``.

Pure NumPy: this module never imports torch. A torch ``state_dict`` may hold tensors or arrays;
anything with ``.detach().cpu().numpy()`` is converted by duck typing, and dtypes are kept.

Only single-layer, unidirectional modules are supported, i.e. exactly the keys
``weight_ih_l0`` (G*n, n_in), ``weight_hh_l0`` (G*n, n), ``bias_ih_l0`` (G*n,) and
``bias_hh_l0`` (G*n,), with G row blocks stacked in torch's order.

Mapping (n = hidden size; ``[k]`` is the k-th row block of n rows)
------------------------------------------------------------------

``lstm`` <-> ``torch.nn.LSTM``, blocks ``[i, f, g, o]``::

    W_x{i,f,g,o} = weight_ih[k]       W_h{i,f,g,o} = weight_hh[k]
    b_{i,f,g,o}  = bias_ih[k] + bias_hh[k]

``gru`` <-> ``torch.nn.GRU``, blocks ``[r, z, n]``::

    W_x{r,z,n} = weight_ih[k]         W_h{r,z,n} = weight_hh[k]
    b_r  = bias_ih[0] + bias_hh[0]    b_z  = bias_ih[1] + bias_hh[1]
    b_xn = bias_ih[2]                 b_hn = bias_hh[2]

``rnn`` <-> ``torch.nn.RNN(nonlinearity='tanh')`` (one block)::

    W = weight_ih    U = weight_hh    b_h = bias_ih + bias_hh

Why biases merge
----------------
torch keeps an input bias and a hidden bias for every gate, but in LSTM gates, in the GRU reset
and update gates and in the RNN they only ever appear as the sum ``b_ih + b_hh``: the function
computed (and hence every gradient with respect to anything else) depends on the sum alone.
derive keeps the one bias the math has. The GRU candidate is the exception: torch computes
``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, where the reset gate multiplies ``b_hn`` but
not ``b_in``, so derive keeps ``b_xn`` and ``b_hn`` apart.

Going back (:func:`to_torch`) is therefore not unique for parameters: a merged bias is written to
``bias_ih`` and ``bias_hh`` gets zeros, which makes the torch module compute the same function.
For *gradients* (``gradient=True``) the answer is unique: since ``dL/db_ih = dL/db_hh = dL/db``
for a merged bias ``b = b_ih + b_hh``, the gradient goes to both, which is exactly what torch
autograd reports for the two tensors.

The readout parameters of derive's ``rnn`` cell (``V``, ``b_y``) have no counterpart in
``torch.nn.RNN`` and are rejected by :func:`to_torch`; pass only the recurrent parameters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["CELLS", "TORCH_KEYS", "TORCH_MODULES", "from_torch", "to_torch", "derive_keys"]

CELLS: tuple[str, ...] = ("lstm", "gru", "rnn")
"""Cells that have a torch counterpart."""

TORCH_MODULES: dict[str, str] = {
    "lstm": "torch.nn.LSTM",
    "gru": "torch.nn.GRU",
    "rnn": "torch.nn.RNN(nonlinearity='tanh')",
}

TORCH_KEYS: tuple[str, ...] = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
"""The state_dict keys of a single-layer unidirectional torch RNN module with biases."""

# Row-block order of torch's stacked weights.
_BLOCKS: dict[str, str] = {"lstm": "ifgo", "gru": "rzn", "rnn": "h"}

_READOUT: dict[str, tuple[str, ...]] = {"rnn": ("V", "b_y")}

_DEEPER = re.compile(r"_l[1-9]\d*(?:_|$)|_reverse")


def _check_cell(cell: str) -> None:
    if cell not in CELLS:
        raise ValueError(
            f"unknown cell {cell!r}: torch interop supports {', '.join(map(repr, CELLS))}"
        )


def derive_keys(cell: str) -> tuple[str, ...]:
    """derive's parameter names for ``cell`` (``lstm``, ``gru`` or ``rnn``), in a fixed order."""
    _check_cell(cell)
    if cell == "lstm":
        return (
            *(f"W_x{g}" for g in "ifgo"),
            *(f"W_h{g}" for g in "ifgo"),
            *(f"b_{g}" for g in "ifgo"),
        )
    if cell == "gru":
        return (
            *(f"W_x{g}" for g in "rzn"),
            *(f"W_h{g}" for g in "rzn"),
            "b_r",
            "b_z",
            "b_xn",
            "b_hn",
        )
    return ("W", "U", "b_h")


def _as_numpy(value: Any) -> np.ndarray:
    """A NumPy copy of ``value`` (torch tensors via ``.detach().cpu().numpy()``), dtype kept."""
    if hasattr(value, "detach"):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        value = value.numpy()
    return np.array(value, copy=True)


def _check_keys(got: Mapping[str, Any], expected: tuple[str, ...], what: str) -> None:
    keys = set(got)
    missing = [k for k in expected if k not in keys]
    extra = sorted(k for k in keys if k not in expected)
    if not missing and not extra:
        return
    parts = [f"{what}: expected keys {', '.join(expected)}"]
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected {', '.join(extra)}")
    raise ValueError("; ".join(parts))


def _shape_error(cell: str, key: str, expected: str, got: tuple[int, ...]) -> ValueError:
    return ValueError(f"{cell}: {key} should have shape {expected}, got {got}")


def from_torch(cell: str, state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """derive parameters of ``cell`` from the ``state_dict`` of the matching torch module.

    Parameters
    ----------
    cell:
        ``"lstm"``, ``"gru"`` or ``"rnn"``.
    state_dict:
        ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` of a single-layer
        unidirectional module; values are NumPy arrays or torch tensors.

    Returns
    -------
    dict
        derive parameter name -> NumPy array (a copy, same dtype). See the module docstring.

    Raises
    ------
    ValueError
        unknown cell, multi-layer / bidirectional keys, missing or unexpected keys, bad shapes.
    """
    _check_cell(cell)
    module = TORCH_MODULES[cell]
    deeper = sorted(k for k in state_dict if _DEEPER.search(k))
    if deeper:
        raise ValueError(
            f"{cell}: only single-layer unidirectional modules are supported "
            f"(num_layers=1, bidirectional=False); got keys {', '.join(deeper)}"
        )
    _check_keys(state_dict, TORCH_KEYS, f"{cell} <- {module} state_dict")
    w_ih, w_hh, b_ih, b_hh = (_as_numpy(state_dict[k]) for k in TORCH_KEYS)

    blocks = _BLOCKS[cell]
    n_blocks = len(blocks)
    if w_ih.ndim != 2:
        raise _shape_error(cell, "weight_ih_l0", f"({n_blocks}*hidden, input)", w_ih.shape)
    rows = w_ih.shape[0]
    if rows == 0 or rows % n_blocks:
        raise ValueError(
            f"{cell}: weight_ih_l0 should have a number of rows that is a positive multiple of "
            f"{n_blocks} (one block per gate {', '.join(blocks)}), got shape {w_ih.shape}"
        )
    n = rows // n_blocks
    expected = {
        "weight_hh_l0": (w_hh, (rows, n)),
        "bias_ih_l0": (b_ih, (rows,)),
        "bias_hh_l0": (b_hh, (rows,)),
    }
    for key, (arr, shape) in expected.items():
        if arr.shape != shape:
            raise ValueError(
                f"{cell}: {key} should have shape {shape} for hidden size {n} "
                f"(from weight_ih_l0 of shape {w_ih.shape}), got {arr.shape}"
            )

    def block(arr: np.ndarray, k: int) -> np.ndarray:
        return arr[k * n : (k + 1) * n].copy()

    if cell == "rnn":
        return {"W": w_ih, "U": w_hh, "b_h": b_ih + b_hh}
    out: dict[str, np.ndarray] = {}
    for k, g in enumerate(blocks):
        out[f"W_x{g}"] = block(w_ih, k)
    for k, g in enumerate(blocks):
        out[f"W_h{g}"] = block(w_hh, k)
    if cell == "lstm":
        for k, g in enumerate(blocks):
            out[f"b_{g}"] = block(b_ih, k) + block(b_hh, k)
    else:  # gru
        out["b_r"] = block(b_ih, 0) + block(b_hh, 0)
        out["b_z"] = block(b_ih, 1) + block(b_hh, 1)
        out["b_xn"] = block(b_ih, 2)
        out["b_hn"] = block(b_hh, 2)
    return out


def to_torch(
    cell: str, params_or_grads: Mapping[str, Any], *, gradient: bool = False
) -> dict[str, np.ndarray]:
    """torch ``state_dict`` layout (NumPy arrays) from derive parameters or their gradients.

    Parameters
    ----------
    cell:
        ``"lstm"``, ``"gru"`` or ``"rnn"``.
    params_or_grads:
        derive parameter name -> array (see :func:`derive_keys`).
    gradient:
        ``False``: the values are parameters; a merged bias goes to ``bias_ih_l0`` and
        ``bias_hh_l0`` gets zeros there, so a module loaded with the result computes the same
        function. ``True``: the values are gradients dL/d(param); a merged bias's gradient goes
        to both ``bias_ih_l0`` and ``bias_hh_l0``, as torch autograd reports it.

    Returns
    -------
    dict
        ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` -> NumPy array. Use
        ``{k: torch.from_numpy(v) for k, v in ...}`` for ``module.load_state_dict``.

    Raises
    ------
    ValueError
        unknown cell, missing or unexpected keys, inconsistent shapes.
    """
    _check_cell(cell)
    keys = derive_keys(cell)
    what = f"{cell} -> {TORCH_MODULES[cell]} ({'gradients' if gradient else 'parameters'})"
    readout = [k for k in _READOUT.get(cell, ()) if k in params_or_grads]
    if readout:
        raise ValueError(
            f"{what}: readout parameters {', '.join(readout)} have no counterpart in "
            f"{TORCH_MODULES[cell]}; pass only {', '.join(keys)}"
        )
    _check_keys(params_or_grads, keys, what)
    p = {k: _as_numpy(params_or_grads[k]) for k in keys}

    blocks = _BLOCKS[cell]
    w_x = [p["W"]] if cell == "rnn" else [p[f"W_x{g}"] for g in blocks]
    w_h = [p["U"]] if cell == "rnn" else [p[f"W_h{g}"] for g in blocks]
    w_x_names = ["W"] if cell == "rnn" else [f"W_x{g}" for g in blocks]
    w_h_names = ["U"] if cell == "rnn" else [f"W_h{g}" for g in blocks]

    first = w_x[0]
    if first.ndim != 2:
        raise _shape_error(cell, w_x_names[0], "(hidden, input)", first.shape)
    n, n_in = first.shape
    for name, arr in zip(w_x_names, w_x, strict=True):
        if arr.shape != (n, n_in):
            raise ValueError(
                f"{what}: {name} should have shape {(n, n_in)} like {w_x_names[0]}, got {arr.shape}"
            )
    for name, arr in zip(w_h_names, w_h, strict=True):
        if arr.shape != (n, n):
            raise ValueError(
                f"{what}: {name} should have shape {(n, n)} (hidden size {n} from "
                f"{w_x_names[0]}), got {arr.shape}"
            )
    bias_names = [k for k in keys if k.startswith("b")]
    for name in bias_names:
        if p[name].shape != (n,):
            raise ValueError(
                f"{what}: {name} should have shape {(n,)} (hidden size {n} from "
                f"{w_x_names[0]}), got {p[name].shape}"
            )

    def merged(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bias_ih part, bias_hh part) of a merged bias or of its gradient."""
        return (b.copy(), b.copy()) if gradient else (b.copy(), np.zeros_like(b))

    if cell == "rnn":
        pairs = [merged(p["b_h"])]
    elif cell == "lstm":
        pairs = [merged(p[f"b_{g}"]) for g in blocks]
    else:  # gru
        pairs = [merged(p["b_r"]), merged(p["b_z"]), (p["b_xn"].copy(), p["b_hn"].copy())]

    return {
        "weight_ih_l0": np.concatenate(w_x, axis=0),
        "weight_hh_l0": np.concatenate(w_h, axis=0),
        "bias_ih_l0": np.concatenate([a for a, _ in pairs]),
        "bias_hh_l0": np.concatenate([b for _, b in pairs]),
    }
