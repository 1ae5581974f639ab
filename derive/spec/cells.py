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
    gets the name \\hat{g} and its derivative is written g'_t.
``states``
    the recurrent state names, output first (h).
``readout``
    optional nodes computed from the states at t that do not feed the recurrence (e.g.
    y_t = sigma_y(V h_t + b_y)); their parameters are listed in ``readout_params``.
``latex``
    optional LaTeX names for symbols whose automatic name (``W_xi`` -> ``W_{xi}``) is not wanted.

Parameter conventions shared with torch (see :mod:`derive.tools.interop`): where torch keeps two
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
    "title": "LSTM with a sigmoid candidate and h_t = o_t * sigmoid(s_t), W on h_t-1 and U on x_t "
             "(the notation of Goodfellow, Bengio and Courville 2016, sec. 10.10)",
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
    "title": "Elman RNN (Elman 1990; torch.nn.RNN, tanh) with a sigmoid readout y_t",
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

CLASSIC: dict[str, dict[str, Any]] = {
    spec["name"]: spec for spec in (LSTM, SIGMOID_LSTM, RNN, GRU, PEEPHOLE_LSTM)
}


# ----------------------------------------------------------------------------- literature cells
#
# Recurrent cells of the literature, each written as its paper writes it (the paper's symbols
# wherever they are valid identifiers; the input is always ``x`` and the previous value of a state
# ``<state>_prev``). They are kept apart from BUILTIN until the kernel printer handles all of
# their constructs (a matrix product of a Hadamard product, relu, reciprocal); the torch
# references of tests/literature_reference.py and tests/test_literature.py check them.

# Minimal gated unit. G.-B. Zhou, J. Wu, C.-L. Zhang, Z.-H. Zhou, "Minimal gated unit for
# recurrent neural networks", International Journal of Automation and Computing 13(3):226-234,
# 2016 (arXiv:1603.09420), Sec. 3: f_t = sigma(W_f [h_{t-1}, x_t] + b_f),
# h~_t = tanh(W_h [f_t * h_{t-1}, x_t] + b_h), h_t = (1 - f_t) * h_{t-1} + f_t * h~_t. The
# paper's W_f, W_h act on the concatenation [h_{t-1}, x_t]; here their two blocks are W (on
# h_{t-1}) and U (on x_t).
MGU: dict[str, Any] = {
    "name": "mgu",
    "title": "Minimal gated unit (Zhou, Wu, Zhang, Zhou 2016, \"Minimal gated unit for recurrent "
             "neural networks\", Int. J. Autom. Comput. 13(3), arXiv:1603.09420)",
    "params": {"W_f": (H, H), "U_f": (H, X), "b_f": (H,),
               "W_h": (H, H), "U_h": (H, X), "b_h": (H,)},
    "nodes": {
        "f": "sigmoid(W_f @ h_prev + U_f @ x + b_f)",
        "h_tilde": "tanh(W_h @ (f * h_prev) + U_h @ x + b_h)",
        "h": "(1 - f) * h_prev + f * h_tilde",
    },
    "states": ("h",),
}

# The GRU as first proposed. K. Cho, B. van Merrienboer, C. Gulcehre, D. Bahdanau, F. Bougares,
# H. Schwenk, Y. Bengio, "Learning phrase representations using RNN encoder-decoder for
# statistical machine translation", EMNLP 2014 (arXiv:1406.1078), Sec. 2.3, eqs (5)-(8):
# r = sigma(W_r x + U_r h_{t-1}), z = sigma(W_z x + U_z h_{t-1}),
# h~ = phi(W x + U (r * h_{t-1})), h_t = z * h_{t-1} + (1 - z) * h~. The reset gate multiplies
# h_{t-1} before the recurrent product (torch.nn.GRU, the built-in ``gru``, resets after it), z
# keeps the old state, and the paper's equations have no bias terms; phi is tanh.
GRU_CHO: dict[str, Any] = {
    "name": "gru_cho",
    "title": "GRU of Cho et al. 2014 (\"Learning phrase representations using RNN "
             "encoder-decoder for statistical machine translation\", EMNLP 2014, "
             "arXiv:1406.1078, eqs 5-8): reset before the recurrent product, no biases",
    "params": {"W_r": (H, X), "U_r": (H, H), "W_z": (H, X), "U_z": (H, H),
               "W": (H, X), "U": (H, H)},
    "nodes": {
        "r": "sigmoid(W_r @ x + U_r @ h_prev)",
        "z": "sigmoid(W_z @ x + U_z @ h_prev)",
        "h_tilde": "tanh(W @ x + U @ (r * h_prev))",
        "h": "z * h_prev + (1 - z) * h_tilde",
    },
    "states": ("h",),
}

# LSTM with coupled input and forget gate. K. Greff, R. K. Srivastava, J. Koutnik,
# B. R. Steunebrink, J. Schmidhuber, "LSTM: A search space odyssey", IEEE Transactions on Neural
# Networks and Learning Systems 28(10):2222-2232, 2017 (arXiv:1503.04069). The vanilla LSTM of
# its Sec. II with the paper's symbols (block input z, block output y, input weights W_*,
# recurrent weights R_*, g = h = tanh) and the CIFG variant of its Sec. III, which sets
# f^t = 1 - i^t instead of learning the forget gate. The paper's CIFG keeps the vanilla LSTM's
# peepholes; this one has none.
CIFG_LSTM: dict[str, Any] = {
    "name": "cifg_lstm",
    "title": "LSTM with coupled input and forget gate, no peepholes (Greff, Srivastava, "
             "Koutnik, Steunebrink, Schmidhuber 2017, \"LSTM: A search space odyssey\", "
             "IEEE TNNLS 28(10), arXiv:1503.04069)",
    "params": {
        **{f"W_{g}": (H, X) for g in "zio"},
        **{f"R_{g}": (H, H) for g in "zio"},
        **{f"b_{g}": (H,) for g in "zio"},
    },
    "nodes": {
        "z": "tanh(W_z @ x + R_z @ y_prev + b_z)",
        "i": "sigmoid(W_i @ x + R_i @ y_prev + b_i)",
        "f": "1 - i",
        "c": "z * i + c_prev * f",
        "o": "sigmoid(W_o @ x + R_o @ y_prev + b_o)",
        "y": "tanh(c) * o",
    },
    "states": ("y", "c"),
}

# Independently recurrent neural network. S. Li, W. Li, C. Cook, C. Zhu, Y. Gao,
# "Independently recurrent neural network (IndRNN): building a longer and deeper RNN",
# CVPR 2018 (arXiv:1803.04831), eq (2): h_t = sigma(W x_t + u * h_{t-1} + b), the recurrent
# weight u a vector (a Hadamard product), sigma = relu as in the paper's experiments.
INDRNN: dict[str, Any] = {
    "name": "indrnn",
    "title": "IndRNN (Li, Li, Cook, Zhu, Gao 2018, \"Independently recurrent neural network "
             "(IndRNN): building a longer and deeper RNN\", CVPR 2018, arXiv:1803.04831)",
    "params": {"W": (H, X), "u": (H,), "b": (H,)},
    "nodes": {"h": "relu(W @ x + u * h_prev + b)"},
    "states": ("h",),
}

# minGRU and minLSTM. L. Feng, F. Tung, M. O. Ahmed, Y. Bengio, H. Hajimirsadeghi, "Were RNNs
# all we needed?", arXiv:2410.01201, 2024, Sec. 3, sequential mode. Each Linear_{d_h}(x_t) is
# W x_t + b with its own W and b.
#   minGRU:  z_t = sigma(Linear(x_t)), h~_t = Linear(x_t), h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
#   minLSTM: f_t = sigma(Linear(x_t)), i_t = sigma(Linear(x_t)), h~_t = Linear(x_t),
#            f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t), h_t = f'_t * h_{t-1} + i'_t * h~_t
# The paper's f'_t, i'_t are printed \bar{f}_t, \bar{i}_t: a prime is derive's notation for the
# derivative of a gate (f'_t = sigma'(\hat f_t)), which the derivation of minLSTM needs too.
MINGRU: dict[str, Any] = {
    "name": "mingru",
    "title": "minGRU, sequential mode (Feng, Tung, Ahmed, Bengio, Hajimirsadeghi 2024, "
             "\"Were RNNs all we needed?\", arXiv:2410.01201)",
    "params": {"W_z": (H, X), "b_z": (H,), "W_h": (H, X), "b_h": (H,)},
    "nodes": {
        "z": "sigmoid(W_z @ x + b_z)",
        "h_tilde": "W_h @ x + b_h",
        "h": "(1 - z) * h_prev + z * h_tilde",
    },
    "states": ("h",),
}

MINLSTM: dict[str, Any] = {
    "name": "minlstm",
    "title": "minLSTM, sequential mode (Feng, Tung, Ahmed, Bengio, Hajimirsadeghi 2024, "
             "\"Were RNNs all we needed?\", arXiv:2410.01201)",
    "params": {"W_f": (H, X), "b_f": (H,), "W_i": (H, X), "b_i": (H,),
               "W_h": (H, X), "b_h": (H,)},
    "nodes": {
        "f": "sigmoid(W_f @ x + b_f)",
        "i": "sigmoid(W_i @ x + b_i)",
        "h_tilde": "W_h @ x + b_h",
        "f_prime": "f * reciprocal(f + i)",
        "i_prime": "i * reciprocal(f + i)",
        "h": "f_prime * h_prev + i_prime * h_tilde",
    },
    "states": ("h",),
    "latex": {"f_prime": r"\bar{f}", "i_prime": r"\bar{i}"},
}

# Update-gate RNN. J. Collins, J. Sohl-Dickstein, D. Sussillo, "Capacity and trainability in
# recurrent neural networks", ICLR 2017 (arXiv:1611.09913), Sec. 2 / App.:
# c_t = tanh(W^{ch} h_{t-1} + W^{cx} x_t + b^c), g_t = sigma(W^{gh} h_{t-1} + W^{gx} x_t + b^g),
# h_t = g_t * h_{t-1} + (1 - g_t) * c_t; the superscripts become subscripts here (W_ch for
# W^{ch}), so that W^T prints.
UGRNN: dict[str, Any] = {
    "name": "ugrnn",
    "title": "Update-gate RNN (Collins, Sohl-Dickstein, Sussillo 2017, \"Capacity and "
             "trainability in recurrent neural networks\", ICLR 2017, arXiv:1611.09913)",
    "params": {"W_cx": (H, X), "W_ch": (H, H), "b_c": (H,),
               "W_gx": (H, X), "W_gh": (H, H), "b_g": (H,)},
    "nodes": {
        "c": "tanh(W_cx @ x + W_ch @ h_prev + b_c)",
        "g": "sigmoid(W_gx @ x + W_gh @ h_prev + b_g)",
        "h": "g * h_prev + (1 - g) * c",
    },
    "states": ("h",),
}

LITERATURE: dict[str, dict[str, Any]] = {
    spec["name"]: spec for spec in (MGU, GRU_CHO, CIFG_LSTM, INDRNN, MINGRU, MINLSTM, UGRNN)
}

BUILTIN: dict[str, dict[str, Any]] = {**CLASSIC, **LITERATURE}
"""Every built-in cell: the classic five, then the cells of the literature, each citing its
paper in its title."""
