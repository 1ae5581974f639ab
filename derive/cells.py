"""Built-in cells, written only as data.

Every cell is a plain dictionary in the declarative spec format of :mod:`derive.spec`; nothing
in the engine knows any of these cells by name. A new cell is one more dictionary (see
``test_custom_cell_from_a_spec_file`` in ``tests/test_check.py``: a minimal gated unit, read from
a JSON file, that derives without touching the engine).

Format (see :func:`derive.spec.CellSpec.from_dict`):

``params``
    name -> shape, in dimension names ``hidden`` (n_hidden), ``input`` (n_in), ``output``
    (n_out, readout only). 2-D parameters act by matrix product (``W @ v``); 1-D parameters are
    biases (a summand) or elementwise weights (a Hadamard factor, e.g. peepholes).
``nodes``
    ordered name -> expression over ``x`` (the input x_t), ``<state>_prev`` (the state at t-1),
    parameters and earlier nodes. ``@`` is the matrix-vector product, ``*`` the Hadamard
    product, ``+``/``-`` sums, ``1`` the all-ones vector, ``sigmoid(.)``/``tanh(.)`` elementwise
    activations. A node whose whole expression is ``act(...)`` is a *gate*: its pre-activation
    gets the name \\hat{g} and its derivative is written g'_t, as in seed 001.
``states``
    the recurrent state names, output first (h).
``readout``
    optional nodes computed from the states at t that do not feed the recurrence (seed 004's
    y_t = sigma_y(V h_t + b_y)); their parameters are listed in ``readout_params``.
``latex``
    optional LaTeX names for symbols whose automatic name (``W_xi`` -> ``W_{xi}``) is not wanted.

Parameter conventions shared with torch (see :mod:`derive.interop`): where torch keeps two
biases that only ever appear as a sum (bias_ih + bias_hh for LSTM gates, GRU r and z, RNN),
derive keeps the one bias the math has; GRU keeps b_xn and b_hn apart because the reset gate
multiplies (W_hn h_{t-1} + b_hn) only.
"""

from __future__ import annotations

from typing import Any

H = "hidden"
X = "input"

LSTM: dict[str, Any] = {
    "name": "lstm",
    "title": "LSTM (torch.nn.LSTM)",
    "params": {
        **{f"W_x{g}": (H, X) for g in "ifgo"},
        **{f"W_h{g}": (H, H) for g in "ifgo"},
        **{f"b_{g}": (H,) for g in "ifgo"},
    },
    "nodes": {
        "i": "sigmoid(W_xi @ x + W_hi @ h_prev + b_i)",
        "f": "sigmoid(W_xf @ x + W_hf @ h_prev + b_f)",
        "g": "tanh(W_xg @ x + W_hg @ h_prev + b_g)",
        "o": "sigmoid(W_xo @ x + W_ho @ h_prev + b_o)",
        "c": "f * c_prev + i * g",
        "h": "o * tanh(c)",
    },
    "states": ("h", "c"),
}

SIGMOID_LSTM: dict[str, Any] = {
    "name": "sigmoid_lstm",
    "title": "LSTM of seed 001, eqs (1)-(6): sigmoid candidate and h_t = o_t * sigma(s_t)",
    "params": {
        "W": (H, H), "W_i": (H, H), "W_f": (H, H), "W_o": (H, H),
        "U": (H, X), "U_i": (H, X), "U_f": (H, X), "U_o": (H, X),
        "b": (H,), "b_i": (H,), "b_f": (H,), "b_o": (H,),
    },
    "nodes": {
        "o": "sigmoid(W_o @ h_prev + U_o @ x + b_o)",
        "i": "sigmoid(W_i @ h_prev + U_i @ x + b_i)",
        "f": "sigmoid(W_f @ h_prev + U_f @ x + b_f)",
        "s_tilde": "sigmoid(W @ h_prev + U @ x + b)",
        "s": "f * s_prev + i * s_tilde",
        "h": "o * sigmoid(s)",
    },
    "states": ("h", "s"),
}

RNN: dict[str, Any] = {
    "name": "rnn",
    "title": "Vanilla RNN of seed 004 (torch.nn.RNN, tanh) with readout y_t",
    "params": {"W": (H, X), "U": (H, H), "b_h": (H,)},
    "nodes": {"h": "tanh(W @ x + U @ h_prev + b_h)"},
    "states": ("h",),
    "readout_params": {"V": ("output", H), "b_y": ("output",)},
    "readout": {"y": "sigmoid(V @ h + b_y)"},
}

GRU: dict[str, Any] = {
    "name": "gru",
    "title": "GRU (torch.nn.GRU)",
    "params": {
        **{f"W_x{g}": (H, X) for g in "rzn"},
        **{f"W_h{g}": (H, H) for g in "rzn"},
        "b_r": (H,), "b_z": (H,), "b_xn": (H,), "b_hn": (H,),
    },
    "nodes": {
        "r": "sigmoid(W_xr @ x + W_hr @ h_prev + b_r)",
        "z": "sigmoid(W_xz @ x + W_hz @ h_prev + b_z)",
        "n": "tanh(W_xn @ x + b_xn + r * (W_hn @ h_prev + b_hn))",
        "h": "(1 - z) * n + z * h_prev",
    },
    "states": ("h",),
}

PEEPHOLE_LSTM: dict[str, Any] = {
    "name": "peephole_lstm",
    "title": "LSTM with peepholes (Gers & Schmidhuber): i, f see c_{t-1}, o sees c_t",
    "params": {
        **{f"W_x{g}": (H, X) for g in "ifgo"},
        **{f"W_h{g}": (H, H) for g in "ifgo"},
        **{f"b_{g}": (H,) for g in "ifgo"},
        "p_i": (H,), "p_f": (H,), "p_o": (H,),
    },
    "nodes": {
        "i": "sigmoid(W_xi @ x + W_hi @ h_prev + p_i * c_prev + b_i)",
        "f": "sigmoid(W_xf @ x + W_hf @ h_prev + p_f * c_prev + b_f)",
        "g": "tanh(W_xg @ x + W_hg @ h_prev + b_g)",
        "c": "f * c_prev + i * g",
        "o": "sigmoid(W_xo @ x + W_ho @ h_prev + p_o * c + b_o)",
        "h": "o * tanh(c)",
    },
    "states": ("h", "c"),
}

BUILTIN: dict[str, dict[str, Any]] = {
    spec["name"]: spec for spec in (LSTM, SIGMOID_LSTM, RNN, GRU, PEEPHOLE_LSTM)
}
