"""The recurrent cells of the literature (derive.spec.cells.LITERATURE) written by hand with torch.

Independent of derive (nothing here imports it): each step is the paper's equations typed in
again, in torch, so that torch.autograd / torch.func can check the kernels derive prints. The
parameter names and layout are those of the specs in derive/spec/cells.py (a 2-D parameter W of
shape (n_hidden, n_in or n_hidden) acts as W @ v); tensors are batch-leading, so W @ v is
``v @ W.T``. Every function works in the dtype of its arguments (float64 or float32).

Papers (see derive/spec/cells.py for the full citations):
  mgu        Zhou, Wu, Zhang, Zhou 2016, Minimal gated unit for recurrent neural networks
  gru_cho    Cho et al. 2014, arXiv:1406.1078, eqs (5)-(8): reset before U, no biases
  cifg_lstm  Greff et al. 2017, LSTM: A search space odyssey, CIFG variant (f = 1 - i), no
             peepholes; states y (block output) and c
  indrnn     Li et al. 2018, IndRNN: h = relu(W x + u * h_prev + b)
  mingru     Feng et al. 2024, Were RNNs all we needed?, minGRU sequential mode
  minlstm    Feng et al. 2024, minLSTM sequential mode (normalised gates f/(f+i), i/(f+i))
  ugrnn      Collins, Sohl-Dickstein, Sussillo 2017, update-gate RNN
"""

from __future__ import annotations

import torch


def _lin(p, name, v):
    """W @ v for a batch of row vectors v (B, k): v @ W.T."""
    return v @ p[name].T


def mgu(p, x, prev):
    h = prev["h"]
    f = torch.sigmoid(_lin(p, "W_f", h) + _lin(p, "U_f", x) + p["b_f"])
    h_tilde = torch.tanh(_lin(p, "W_h", f * h) + _lin(p, "U_h", x) + p["b_h"])
    return {"h": (1 - f) * h + f * h_tilde}


def gru_cho(p, x, prev):
    h = prev["h"]
    r = torch.sigmoid(_lin(p, "W_r", x) + _lin(p, "U_r", h))
    z = torch.sigmoid(_lin(p, "W_z", x) + _lin(p, "U_z", h))
    h_tilde = torch.tanh(_lin(p, "W", x) + _lin(p, "U", r * h))
    return {"h": z * h + (1 - z) * h_tilde}


def cifg_lstm(p, x, prev):
    y, c = prev["y"], prev["c"]
    z = torch.tanh(_lin(p, "W_z", x) + _lin(p, "R_z", y) + p["b_z"])
    i = torch.sigmoid(_lin(p, "W_i", x) + _lin(p, "R_i", y) + p["b_i"])
    f = 1 - i
    c_new = z * i + c * f
    o = torch.sigmoid(_lin(p, "W_o", x) + _lin(p, "R_o", y) + p["b_o"])
    return {"y": torch.tanh(c_new) * o, "c": c_new}


def indrnn(p, x, prev):
    return {"h": torch.relu(_lin(p, "W", x) + p["u"] * prev["h"] + p["b"])}


def mingru(p, x, prev):
    h = prev["h"]
    z = torch.sigmoid(_lin(p, "W_z", x) + p["b_z"])
    h_tilde = _lin(p, "W_h", x) + p["b_h"]
    return {"h": (1 - z) * h + z * h_tilde}


def minlstm(p, x, prev):
    h = prev["h"]
    f = torch.sigmoid(_lin(p, "W_f", x) + p["b_f"])
    i = torch.sigmoid(_lin(p, "W_i", x) + p["b_i"])
    h_tilde = _lin(p, "W_h", x) + p["b_h"]
    f_prime = f / (f + i)
    i_prime = i / (f + i)
    return {"h": f_prime * h + i_prime * h_tilde}


def ugrnn(p, x, prev):
    h = prev["h"]
    c = torch.tanh(_lin(p, "W_cx", x) + _lin(p, "W_ch", h) + p["b_c"])
    g = torch.sigmoid(_lin(p, "W_gx", x) + _lin(p, "W_gh", h) + p["b_g"])
    return {"h": g * h + (1 - g) * c}


STEPS = {"mgu": mgu, "gru_cho": gru_cho, "cifg_lstm": cifg_lstm, "indrnn": indrnn,
         "mingru": mingru, "minlstm": minlstm, "ugrnn": ugrnn}

STATES = {"mgu": ("h",), "gru_cho": ("h",), "cifg_lstm": ("y", "c"), "indrnn": ("h",),
          "mingru": ("h",), "minlstm": ("h",), "ugrnn": ("h",)}
"""The states of each cell, the output first (the order of the kernels' STATE)."""

CELLS = list(STEPS)


def step(cell, p, x, prev):
    """One step: x (B, n_in), prev maps each state to (B, n_hidden); returns the new states."""
    return STEPS[cell](p, x, prev)


def run(cell, p, xs, state0):
    """Run over xs (T, B, n_in): the outputs (T, B, n_hidden), i.e. the first state at every
    step, and the final state (a dict)."""
    out = STATES[cell][0]
    st, hs = dict(state0), []
    for t in range(xs.shape[0]):
        st = STEPS[cell](p, xs[t], st)
        hs.append(st[out])
    return torch.stack(hs), st
