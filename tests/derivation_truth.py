"""The truth of every judged line of the public fixtures, by torch autodiff (this module does not
import derive: it is the independent reference ``derive check`` is measured against).

Each fixture's cell is written here by hand from the source's forward equations; the loss is a
random linear function of the hidden states over T steps. Every claim of the source is computed
in torch, as the source writes it, and compared with autograd's gradients: ``TRUTH[fixture]`` maps
(source line, row of the chain) to "correct" or "wrong".
"""

from __future__ import annotations

import torch

T, N, M = 4, 3, 2   # steps, hidden units, inputs
STEPS = (2, 3)      # the steps each claim is checked at


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.allclose(a.reshape(-1), b.reshape(-1), atol=1e-9, rtol=1e-7))


def lstm_saikrishnaponnam() -> dict[tuple[int, int], str]:
    """Sai Krishna Ponnam, "LSTM" (saikrishnaponnam/Machine-Learning, docs/lstm.md): the standard
    LSTM with biases, C_t cell state, \\tilde C_t = tanh(...)."""
    g = torch.Generator().manual_seed(1)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    P = {k: rnd(N, M) for k in ("Wxf", "Wxi", "WxC", "Wxo")}
    P |= {k: rnd(N, N) for k in ("Whf", "Whi", "WhC", "Who")}
    P |= {k: rnd(N) for k in ("bf", "bi", "bC", "bo")}
    for v in P.values():
        v.requires_grad_(True)
    xs = [rnd(M).requires_grad_(True) for _ in range(T + 1)]
    lw = [rnd(N) for _ in range(T + 1)]
    h = [rnd(N).requires_grad_(True)]
    C = [rnd(N).requires_grad_(True)]
    f, i, Ct, o = [None], [None], [None], [None]
    for t in range(1, T + 1):
        f.append(torch.sigmoid(P["Wxf"] @ xs[t] + P["Whf"] @ h[t - 1] + P["bf"]))
        i.append(torch.sigmoid(P["Wxi"] @ xs[t] + P["Whi"] @ h[t - 1] + P["bi"]))
        Ct.append(torch.tanh(P["WxC"] @ xs[t] + P["WhC"] @ h[t - 1] + P["bC"]))
        o.append(torch.sigmoid(P["Wxo"] @ xs[t] + P["Who"] @ h[t - 1] + P["bo"]))
        C.append(f[t] * C[t - 1] + i[t] * Ct[t])
        h.append(o[t] * torch.tanh(C[t]))
    for seq in (f, i, Ct, o, C, h):
        for v in seq[1:]:
            v.retain_grad()
    loss = sum((lw[t] * h[t]).sum() for t in range(1, T + 1))
    loss.backward()

    def d(v):  # the total adjoint dL/dv
        return v.grad if v.grad is not None else torch.zeros_like(v)

    def dC(t):
        return d(C[t]) if t <= T else torch.zeros(N, dtype=torch.float64)

    out: dict[tuple[int, int], str] = {}

    def claim(line: int, row: int, ok: bool) -> None:
        prev = out.get((line, row), "correct")
        out[(line, row)] = "correct" if ok and prev == "correct" else "wrong"

    for t in STEPS:
        x, Cp = xs[t].detach(), C[t - 1].detach()
        ft, it, ct, ot, Cn = (v[t].detach() for v in (f, i, Ct, o, C))
        sig = {"f": ft * (1 - ft), "i": it * (1 - it), "o": ot * (1 - ot)}
        # the step-t part of dL/dW_xf: (dL/df_t * f'(.)) x_t^T
        step_Wxf = torch.outer(d(f[t]) * sig["f"], x)
        claim(57, 1, True)  # dL/df_t . df_t/dW_xf: the chain rule itself
        # row 2 through the pre-activation a_f of f_t = sigma(a_f), which the source never defines
        claim(57, 2, _close(torch.outer(dC(t) * Cp * sig["f"], x), step_Wxf))
        claim(57, 3, _close(torch.outer(dC(t) * Cp * sig["f"], x), step_Wxf))
        # the adjoint of the cell state: through h_t and through C_{t+1}
        fnext = f[t + 1].detach() if t < T else torch.zeros(N, dtype=torch.float64)
        rhs = d(h[t]) * ot * (1 - torch.tanh(Cn) ** 2) + dC(t + 1) * fnext
        claim(67, 1, _close(rhs, dC(t)))
        claim(67, 2, _close(rhs, dC(t)))
        step_WxC = torch.outer(d(Ct[t]) * (1 - ct ** 2), x)
        claim(76, 1, True)
        claim(76, 3, _close(torch.outer(dC(t) * it * (1 - ct ** 2), x), step_WxC))
        step_Wxo = torch.outer(d(o[t]) * sig["o"], x)
        claim(87, 1, True)
        claim(87, 2, _close(torch.outer(d(h[t]) * torch.tanh(Cn) * sig["o"], x), step_Wxo))
        claim(87, 3, _close(torch.outer(d(h[t]) * torch.tanh(Cn) * sig["o"], x), step_Wxo))
        # the input's adjoint: every gate's pre-activation through W_x*
        pre = {"f": d(f[t]) * sig["f"], "i": d(i[t]) * sig["i"], "o": d(o[t]) * sig["o"],
               "C": d(Ct[t]) * (1 - ct ** 2)}
        dx = sum(pre[k] @ P["Wx" + k].detach() for k in pre)
        claim(97, 1, _close(dx, d(xs[t])))
        claim(97, 2, _close(dx, d(xs[t])))
        dh_prev = sum(pre[k] @ P["Wh" + k].detach() for k in pre)
        # what step t sends back to h_{t-1} (the source: "sent back to the previous time
        # step"): the total adjoint less the loss's own term at t-1
        back = d(h[t - 1]) - lw[t - 1]
        claim(104, 1, _close(dh_prev, back))
        written = (pre["f"] @ P["Whf"].detach() + pre["i"] @ P["Whi"].detach()
                   + pre["o"] @ P["Who"].detach()
                   + dC(t) * (1 - ct ** 2) @ P["WhC"].detach())  # dL/dC_t where dL/dC~_t is due
        claim(104, 2, _close(written, back))
        # "Vanishing Gradients": dL/dC_{t+1} * f_{t+1} = dL/dC_{t+2} * f_{t+2} * f_{t+1}
        #   = dL/dC_T prod_{j=1}^{T-t} f_{t+j}
        if t + 2 <= T:
            a = dC(t + 1) * f[t + 1].detach()
            b = dC(t + 2) * f[t + 2].detach() * f[t + 1].detach()
            prod = torch.ones(N, dtype=torch.float64)
            for j in range(1, T - t + 1):
                prod = prod * f[t + j].detach()
            claim(113, 1, _close(a, b))
            claim(113, 2, _close(a, dC(T) * prod))
    return out


def rnn_d2l_bptt() -> dict[tuple[int, int], str]:
    """Dive into Deep Learning, "Backpropagation Through Time" (d2l-ai/d2l-en,
    chapter_recurrent-neural-networks/bptt.md): h_t = W_hx x_t + W_hh h_{t-1} (identity
    activation, no bias), o_t = W_qh h_t; the loss L = (1/T) sum_t l(o_t, y_t) taken as a random
    linear function of the o_t (any l: only dL/do_t enters the claims)."""
    g = torch.Generator().manual_seed(2)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    Q = 2
    Whx, Whh, Wqh = (rnd(N, M).requires_grad_(True), rnd(N, N).requires_grad_(True),
                     rnd(Q, N).requires_grad_(True))
    xs = [rnd(M) for _ in range(T + 1)]
    lw = [rnd(Q) for _ in range(T + 1)]
    h = [rnd(N).requires_grad_(True)]
    o = [None]
    for t in range(1, T + 1):
        h.append(Whx @ xs[t] + Whh @ h[t - 1])
        o.append(Wqh @ h[t])
    for v in h[1:] + o[1:]:
        v.retain_grad()
    loss = sum((lw[t] * o[t]).sum() for t in range(1, T + 1))
    loss.backward()
    dh = {t: h[t].grad for t in range(1, T + 1)}
    do = {t: o[t].grad for t in range(1, T + 1)}
    A, B, C = Whx.detach(), Whh.detach(), Wqh.detach()
    out: dict[tuple[int, int], str] = {}

    def claim(line: int, row: int, ok: bool) -> None:
        prev = out.get((line, row), "correct")
        out[(line, row)] = "correct" if ok and prev == "correct" else "wrong"

    hd = [v.detach() for v in h]
    # dL/dW_qh = sum_t prod(dL/do_t, do_t/dW_qh) = sum_t dL/do_t h_t^T
    s = sum(torch.outer(do[t], hd[t]) for t in range(1, T + 1))
    claim(133, 1, _close(s, Wqh.grad))
    claim(133, 2, _close(s, Wqh.grad))
    # dL/dh_T = W_qh^T dL/do_T
    claim(142, 1, _close(C.T @ do[T], dh[T]))
    claim(142, 2, _close(C.T @ do[T], dh[T]))
    for t in STEPS:   # t < T
        rhs = B.T @ dh[t + 1] + C.T @ do[t]
        claim(154, 1, _close(rhs, dh[t]))
        claim(154, 2, _close(rhs, dh[t]))
        # the closed form: sum_{i=t}^T (W_hh^T)^{T-i} W_qh^T dL/do_{T+t-i}
        closed = sum(torch.linalg.matrix_power(B.T, T - i) @ C.T @ do[T + t - i]
                     for i in range(t, T + 1))
        claim(163, 1, _close(closed, dh[t]))
    s = sum(torch.outer(dh[t], xs[t]) for t in range(1, T + 1))
    claim(173, 1, _close(s, Whx.grad))
    claim(173, 2, _close(s, Whx.grad))
    s = sum(torch.outer(dh[t], hd[t - 1]) for t in range(1, T + 1))
    claim(176, 1, _close(s, Whh.grad))
    claim(176, 2, _close(s, Whh.grad))
    del A
    return out


def lstm_jaketae() -> dict[tuple[int, int], str]:
    """Jake Tae, "Dissecting LSTMs" (jaketae/jaketae.github.io, _posts/2020-06-02-dissecting-
    lstm.md): the standard LSTM on the stacked input [h_{t-1}, x_t] with biases; the softmax
    readout is not modelled (only dL/dh_t enters the claims judged), the loss a random linear
    function of the h_t. a_C = tanh(C_t) and a_o (the output gate's pre-activation) are kept as
    tensors of their own so that their adjoints are autograd's."""
    g = torch.Generator().manual_seed(3)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    P = {k: rnd(N, N + M).requires_grad_(True) for k in ("Wf", "Wi", "WC", "Wo")}
    P |= {k: rnd(N).requires_grad_(True) for k in ("bf", "bi", "bC", "bo")}
    xs = [rnd(M) for _ in range(T + 1)]
    lw = [rnd(N) for _ in range(T + 1)]
    h = [rnd(N).requires_grad_(True)]
    C = [rnd(N).requires_grad_(True)]
    f, i, Ct, o, ao, aC = [None], [None], [None], [None], [None], [None]
    for t in range(1, T + 1):
        X = torch.cat([h[t - 1], xs[t]])
        f.append(torch.sigmoid(P["Wf"] @ X + P["bf"]))
        i.append(torch.sigmoid(P["Wi"] @ X + P["bi"]))
        Ct.append(torch.tanh(P["WC"] @ X + P["bC"]))
        ao.append(P["Wo"] @ X + P["bo"])
        o.append(torch.sigmoid(ao[t]))
        C.append(f[t] * C[t - 1] + i[t] * Ct[t])
        aC.append(torch.tanh(C[t]))
        h.append(o[t] * aC[t])
    for seq in (f, i, Ct, o, ao, aC, C, h):
        for v in seq[1:]:
            v.retain_grad()
    loss = sum((lw[t] * h[t]).sum() for t in range(1, T + 1))
    loss.backward()

    def d(v):
        return v.grad if v.grad is not None else torch.zeros_like(v)

    out: dict[tuple[int, int], str] = {}

    def claim(line: int, row: int, ok: bool) -> None:
        prev = out.get((line, row), "correct")
        out[(line, row)] = "correct" if ok and prev == "correct" else "wrong"

    for t in STEPS:
        ot, Cn, ft = o[t].detach(), C[t].detach(), f[t].detach()
        X = torch.cat([h[t - 1].detach(), xs[t]])
        claim(100, 1, _close(ot * torch.tanh(Cn), h[t].detach()))        # (6) restated
        claim(128, 1, True)                    # dL/do_t = dL/dh_t . dh_t/do_t: the chain rule
        claim(128, 2, _close(d(h[t]) * torch.tanh(Cn), d(o[t])))
        claim(138, 2, _close(d(h[t]) * ot, d(aC[t])))
        # dL/dC_t = dL/da_C . da_C/dC_t + dL/dC_t: the last term what step t+1 sent back
        back = d(C[t + 1]) * f[t + 1].detach() if t < T else torch.zeros(N, dtype=torch.float64)
        claim(148, 1, _close(d(aC[t]) * (1 - torch.tanh(Cn) ** 2) + back, d(C[t])))
        claim(160, 1, _close(torch.sigmoid(P["Wo"].detach() @ X + P["bo"].detach()), ot))
        claim(163, 1, _close(torch.sigmoid(ao[t].detach()), ot))           # o_t = sigma(a_o)
        claim(168, 1, _close(d(o[t]) * ot * (1 - ot), d(ao[t])))
        # the source's sigma(o_t)(1 - sigma(o_t)): sigma' taken at the gate's output
        so = torch.sigmoid(ot)
        claim(168, 2, _close(d(h[t]) * torch.tanh(Cn) * so * (1 - so), d(ao[t])))
        # dL/dC_{t-1} = dL/dC_t . f_t: what step t sends back to C_{t-1} (the total adjoint
        # less the part through h_{t-1})
        Cp = C[t - 1].detach()
        through_h = d(h[t - 1]) * o[t - 1].detach() * (1 - torch.tanh(Cp) ** 2)
        claim(233, 2, _close(d(C[t]) * ft, d(C[t - 1]) - through_h))
    return out


TRUTH = {"lstm_saikrishnaponnam.md": lstm_saikrishnaponnam, "rnn_d2l_bptt.md": rnn_d2l_bptt,
         "lstm_jaketae.md": lstm_jaketae}


if __name__ == "__main__":
    for name, fn in TRUTH.items():
        print(name)
        for (line, row), v in sorted(fn().items()):
            print(f"  line {line} row {row}: {v}")
