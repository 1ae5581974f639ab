"""The five built-in cells written by hand with torch (for torch.autograd / torch.func checks).

Independent of derive: the same equations as tests/reference.py, in torch. Parameter layout is
derive's (see derive/spec/cells.py); batch-leading tensors, v @ W.T.
"""

from __future__ import annotations

import torch


def _lstm(p, x, prev, peep=False):
    h, c = prev["h"], prev["c"]

    def pre(g, extra=0):
        return x @ p[f"W_x{g}"].T + h @ p[f"W_h{g}"].T + p[f"b_{g}"] + extra

    i = torch.sigmoid(pre("i", p["p_i"] * c if peep else 0))
    f = torch.sigmoid(pre("f", p["p_f"] * c if peep else 0))
    g = torch.tanh(pre("g"))
    c_new = f * c + i * g
    o = torch.sigmoid(pre("o", p["p_o"] * c_new if peep else 0))
    return {"h": o * torch.tanh(c_new), "c": c_new}


def _sigmoid_lstm(p, x, prev):
    h, s = prev["h"], prev["s"]

    def pre(w, u, b):
        return h @ p[w].T + x @ p[u].T + p[b]

    o = torch.sigmoid(pre("W_o", "U_o", "b_o"))
    i = torch.sigmoid(pre("W_i", "U_i", "b_i"))
    f = torch.sigmoid(pre("W_f", "U_f", "b_f"))
    st = torch.sigmoid(pre("W", "U", "b"))
    s_new = f * s + i * st
    return {"h": o * torch.sigmoid(s_new), "s": s_new}


def _rnn(p, x, prev):
    return {"h": torch.tanh(x @ p["W"].T + prev["h"] @ p["U"].T + p["b_h"])}


def _gru(p, x, prev):
    h = prev["h"]
    r = torch.sigmoid(x @ p["W_xr"].T + h @ p["W_hr"].T + p["b_r"])
    z = torch.sigmoid(x @ p["W_xz"].T + h @ p["W_hz"].T + p["b_z"])
    n = torch.tanh(x @ p["W_xn"].T + p["b_xn"] + r * (h @ p["W_hn"].T + p["b_hn"]))
    return {"h": (1 - z) * n + z * h}


STEPS = {"lstm": _lstm, "sigmoid_lstm": _sigmoid_lstm, "rnn": _rnn, "gru": _gru,
         "peephole_lstm": lambda p, x, prev: _lstm(p, x, prev, peep=True)}


def run(cell, p, xs, state0):
    """hs (T, B, n) and the final state."""
    st, hs = dict(state0), []
    for t in range(xs.shape[0]):
        st = STEPS[cell](p, xs[t], st)
        hs.append(st["h"])
    return torch.stack(hs), st
