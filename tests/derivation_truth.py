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
        # row 2 differentiates by W_{xc}, the source's W_{xC} in lower case: dC_t/dC~_t = i_t
        claim(76, 2, _close(torch.outer(dC(t) * it * (1 - ct ** 2), x), step_WxC))
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
    linear function of the o_t (any l: only dL/do_t enters the claims). The abstract section
    (h_t = f(x_t, h_{t-1}, w), o_t = g(h_t, w), w the parameters) is this cell with w the
    parameters flattened; its randomized truncation xi_t takes 0 with probability 1 - pi and
    1/pi with probability pi."""
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

    # -- the abstract section: h_t = f(x_t, h_{t-1}, w), o_t = g(h_t, w), w every parameter --
    # (flattened W_hx, W_hh, W_qh); L = sum_t l(y_t, o_t) with l = lw_t . o_t, and
    # L = (1/T) sum_t ell(o_t, y_t) with ell = T lw_t . o_t (the same loss)
    W0 = [A, B, C]
    sizes = [m.numel() for m in W0]

    def unflat(w):
        parts = torch.split(w, sizes)
        return [p.reshape(m.shape) for p, m in zip(parts, W0, strict=True)]

    def f(x, hp, w):
        a, b, _ = unflat(w)
        return a @ x + b @ hp

    def gfun(hh, w):
        return unflat(w)[2] @ hh

    w0 = torch.cat([m.reshape(-1) for m in W0])
    jac = torch.autograd.functional.jacobian

    def hs(w):   # the states as functions of the parameter vector, h_0 held
        out_h = [hd[0]]
        for t in range(1, T + 1):
            out_h.append(f(xs[t], out_h[-1], w))
        return out_h

    Jh = [jac(lambda w, t=t: hs(w)[t], w0) for t in range(T + 1)]   # d h_t / d w, total
    grad_w = jac(lambda w: sum((lw[t] * gfun(hs(w)[t], w)).sum() for t in range(1, T + 1)), w0)
    # d_w L = sum_t d_w l(y_t, o_t): each term the total derivative through o_t
    terms = [jac(lambda w, t=t: (lw[t] * gfun(hs(w)[t], w)).sum(), w0) for t in range(1, T + 1)]
    claim(52, 1, _close(sum(terms), grad_w))
    for t in STEPS:
        df_w = jac(lambda w, t=t: f(xs[t], hd[t - 1], w), w0)     # d_w f, h_{t-1} held
        dg_w = jac(lambda w, t=t: gfun(hd[t], w), w0)             # d_w g, h_t held
        # sum_t d_{o_t} l  d_w g(h_t, w)  d_w h_t: (P,) then times (h x P) does not compose
        try:
            v = (lw[t] @ dg_w) @ Jh[t]
            ok = _close(v, grad_w)
        except RuntimeError:
            ok = False
        claim(52, 2, ok)
        # the recursion d_w h_t = d_w f + d_h f d_w h_{t-1} (d_h f = W_hh)
        claim(59, 1, _close(df_w + B @ Jh[t - 1], Jh[t]))
        # sum_{i=t}^{1} [prod_{j=t}^{i} d_h f(x_j, h_{j-1}, w)] d_w f(x_i, h_{i-1}, w), i and
        # j running down from t: the product holds d_h f at i too, one factor W_hh too many
        s = torch.zeros_like(Jh[t])
        for i in range(t, 0, -1):
            prod = torch.eye(N, dtype=torch.float64)
            for _j in range(t, i - 1, -1):
                prod = prod @ B
            s = s + prod @ jac(lambda w, i=i: f(xs[i], hd[i - 1], w), w0)
        claim(59, 2, _close(s, Jh[t]))
        # Pr(xi = 0) = 1 - pi, Pr(xi = 1/pi) = pi: E[xi] = 1 and E[z_t] = d_w h_t
        pi = 0.37
        outcomes = [(0.0, 1 - pi), (1 / pi, pi)]
        claim(87, 1, abs(sum(p * v for v, p in outcomes) - 1) < 1e-12)
        Ez = sum(p * (df_w + v * B @ Jh[t - 1]) for v, p in outcomes)
        claim(92, 1, _close(Ez, Jh[t]))
        # dL/do_t = d ell(o_t, y_t) / (T d o_t), ell = T lw_t . o_t
        claim(127, 1, _close((T * lw[t]) / T, do[t]))
    return out


def lstm_jaketae() -> dict[tuple[int, int], str]:
    """Jake Tae, "Dissecting LSTMs" (jaketae/jaketae.github.io, _posts/2020-06-02-dissecting-
    lstm.md): the standard LSTM on the stacked input [h_{t-1}, x_t] with biases, read out at
    every step by y^_t = softmax(z_t), z_t = W_y h_t + b_y (the source's (7), (8)); the loss the
    cross-entropy -sum_t y_t . log y^_t against random target distributions y_t (the source's
    "cross entropy loss", under which dL/dz = y^ - y). a_C = tanh(C_t), a_o (the output gate's
    pre-activation) and z are kept as tensors of their own so that their adjoints are
    autograd's. The source writes its backward pass in row vectors (z = h W_y) against its own
    forward equations (z = W_y h_t): a product written so, such as h_t^T (y^ - y), does not
    compose in the column vectors of (7) and (8), and is wrong as written."""
    g = torch.Generator().manual_seed(3)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    K = 2   # readout units
    P = {k: rnd(N, N + M).requires_grad_(True) for k in ("Wf", "Wi", "WC", "Wo")}
    P |= {k: rnd(N).requires_grad_(True) for k in ("bf", "bi", "bC", "bo")}
    P["Wy"], P["by"] = rnd(K, N).requires_grad_(True), rnd(K).requires_grad_(True)
    xs = [rnd(M) for _ in range(T + 1)]
    ys = [None] + [torch.softmax(rnd(K), 0) for _ in range(T)]   # target distributions
    h = [rnd(N).requires_grad_(True)]
    C = [rnd(N).requires_grad_(True)]
    f, i, Ct, o, ao, aC, z, yh = ([None] for _ in range(8))
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
        z.append(P["Wy"] @ h[t] + P["by"])
        yh.append(torch.softmax(z[t], 0))
    for seq in (f, i, Ct, o, ao, aC, C, h, z, yh):
        for v in seq[1:]:
            v.retain_grad()
    loss = -sum((ys[t] * torch.log(yh[t])).sum() for t in range(1, T + 1))
    loss.backward()

    def d(v):
        return v.grad if v.grad is not None else torch.zeros_like(v)

    out: dict[tuple[int, int], str] = {}

    def claim(line: int, row: int, ok: bool) -> None:
        prev = out.get((line, row), "correct")
        out[(line, row)] = "correct" if ok and prev == "correct" else "wrong"

    def composes(a: torch.Tensor, b: torch.Tensor) -> bool:
        try:
            a @ b
        except RuntimeError:
            return False
        return True

    # the derivatives of sigmoid and tanh, (1)-(4) of the source, at a random point x
    x = rnd(5).requires_grad_(True)
    ds, = torch.autograd.grad(torch.sigmoid(x).sum(), x)
    dtanh, = torch.autograd.grad(torch.tanh(x).sum(), x)
    x = x.detach()
    e = torch.exp
    claim(40, 1, _close(ds, ds))                                     # d/dx [1 / (1 + e^-x)]
    claim(40, 2, _close(-(1 + e(-x)) ** -2 * (-e(-x)), ds))
    claim(40, 3, _close(torch.sigmoid(x) * (e(-x) / (1 + e(-x))), ds))
    claim(40, 4, _close(torch.sigmoid(x) * (1 - torch.sigmoid(x)), ds))
    claim(56, 1, _close(dtanh, dtanh))                   # d/dx [(e^x - e^-x) / (e^x + e^-x)]
    claim(56, 2, _close(1 - ((e(x) - e(-x)) / (e(x) + e(-x))) ** 2, dtanh))
    claim(56, 3, _close(1 - torch.tanh(x) ** 2, dtanh))
    for t in STEPS:
        ot, Cn, ft = o[t].detach(), C[t].detach(), f[t].detach()
        ht, dz, yt = h[t].detach(), d(z[t]), yh[t].detach()
        X = torch.cat([h[t - 1].detach(), xs[t]])
        claim(67, 1, _close(torch.softmax(z[t].detach(), 0), yt))          # (7) through z
        claim(74, 1, _close(yt - ys[t], dz))                               # dL/dz = y^ - y
        claim(84, 1, True)                        # dL/dW_y = dL/dz . dz/dW_y: the chain rule
        # h_t^T (y^ - y): a 1 x N row times K entries; as an outer product N x K, the
        # transpose of dL/dW_y (K x N)
        claim(84, 2, composes(ht.reshape(1, N), (yt - ys[t]).reshape(K, 1)))
        claim(94, 1, _close(dz, dz))                  # the step-t part of dL/db_y is dL/dz_t
        claim(94, 2, _close(yt - ys[t], dz))
        claim(100, 1, _close(ot * torch.tanh(Cn), ht))                     # (6) restated
        # dL/dh_t = dL/dz . dz/dh_t + dL/dh_t: the last term what step t+1 sent back, the
        # first the adjoint through step t's readout
        hh = ht.clone().requires_grad_(True)
        yy = torch.softmax(P["Wy"].detach() @ hh + P["by"].detach(), 0)
        within, = torch.autograd.grad(-(ys[t] * torch.log(yy)).sum(), hh)
        claim(108, 1, _close(P["Wy"].detach().T @ dz, within))
        # (y^ - y) W_y^T: K entries as a row times an N x K matrix
        claim(108, 2, composes((yt - ys[t]).reshape(1, K), P["Wy"].detach().T))
        claim(126, 1, _close(ot * torch.tanh(Cn), ht))                     # (6) again
        claim(128, 1, True)                    # dL/do_t = dL/dh_t . dh_t/do_t: the chain rule
        claim(128, 2, _close(d(h[t]) * torch.tanh(Cn), d(o[t])))
        claim(138, 1, _close(d(h[t]) * ot, d(aC[t])))      # dh_t/da_C = diag(o_t)
        claim(138, 2, _close(d(h[t]) * ot, d(aC[t])))
        # dL/dC_t = dL/da_C . da_C/dC_t + dL/dC_t: the last term what step t+1 sent back
        back = d(C[t + 1]) * f[t + 1].detach() if t < T else torch.zeros(N, dtype=torch.float64)
        claim(148, 1, _close(d(aC[t]) * (1 - torch.tanh(Cn) ** 2) + back, d(C[t])))
        claim(148, 2, _close(d(h[t]) * ot * (1 - torch.tanh(Cn) ** 2) + back, d(C[t])))
        claim(160, 1, _close(torch.sigmoid(P["Wo"].detach() @ X + P["bo"].detach()), ot))
        claim(163, 1, _close(torch.sigmoid(ao[t].detach()), ot))           # o_t = sigma(a_o)
        claim(168, 1, _close(d(o[t]) * ot * (1 - ot), d(ao[t])))
        # the source's sigma(o_t)(1 - sigma(o_t)): sigma' taken at the gate's output
        so = torch.sigmoid(ot)
        claim(168, 2, _close(d(h[t]) * torch.tanh(Cn) * so * (1 - so), d(ao[t])))
        # dL/db_o: its step-t part is dL/da_o (a_o = W_o X + b_o)
        claim(178, 1, _close(d(ao[t]), d(ao[t])))
        claim(178, 2, _close(d(ao[t]), d(ao[t])))
        claim(188, 1, True)                        # dL/dW_o = dL/da_o . da_o/dW_o: the chain rule
        # X^T dL/da_o with the source's X = (x_t | h_{t-1}): a 1 x (M+N) row times N entries
        Xs = torch.cat([xs[t], h[t - 1].detach()])
        claim(188, 2, composes(Xs.reshape(1, M + N), d(ao[t]).reshape(N, 1)))
        # sum_a dL/da_t . da_t/dm_t . W_a^T: a row of N times an (N+M) x N matrix
        claim(214, 3, composes(d(f[t]).reshape(1, N) @ torch.diag(ft * (1 - ft)),
                               P["Wf"].detach().T))
        # dL/dC_{t-1} = dL/dC_t . f_t: what step t sends back to C_{t-1} (the total adjoint
        # less the part through h_{t-1})
        Cp = C[t - 1].detach()
        through_h = d(h[t - 1]) * o[t - 1].detach() * (1 - torch.tanh(Cp) ** 2)
        claim(233, 1, _close(d(C[t]) * ft, d(C[t - 1]) - through_h))   # dC/dC_{t-1} = diag(f_t)
        claim(233, 2, _close(d(C[t]) * ft, d(C[t - 1]) - through_h))
    return out



def gru_aiedu() -> dict[tuple[int, int], str]:
    """Microsoft AI-EDU, "20.3 GRU基本原理与实现" (microsoft/ai-edu): the bias-free GRU in row
    vectors, z_t = sigma(h_{t-1} W_z + x_t U_z), r_t likewise, h~_t = tanh((r_t o h_{t-1}) W_h +
    x_t U_h), h_t = (1 - z_t) o h_{t-1} + z_t o h~_t; the loss a random linear function of the
    h_t (the source's delta_t, the error from the next step plus the layer above, is the total
    adjoint of h_t). Each step's copy of a weight (d_{W_{h,t}}: its contribution at step t) is a
    tensor of its own."""
    g = torch.Generator().manual_seed(4)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    P = {k: rnd(N, N).requires_grad_(True) for k in ("Wz", "Wr", "Wh")}
    P |= {k: rnd(M, N).requires_grad_(True) for k in ("Uz", "Ur", "Uh")}
    xs = [rnd(M).requires_grad_(True) for _ in range(T + 1)]
    lw = [rnd(N) for _ in range(T + 1)]
    h = [rnd(N).requires_grad_(True)]
    z, r, ht, az, ar, ah = ([None] for _ in range(6))
    copy: dict[str, list] = {k: [None] for k in P}
    for t in range(1, T + 1):
        C = {k: P[k].clone() for k in P}          # the weights as step t reads them
        for k in P:
            C[k].retain_grad()
            copy[k].append(C[k])
        az.append(h[t - 1] @ C["Wz"] + xs[t] @ C["Uz"])
        ar.append(h[t - 1] @ C["Wr"] + xs[t] @ C["Ur"])
        z.append(torch.sigmoid(az[t]))
        r.append(torch.sigmoid(ar[t]))
        ah.append((r[t] * h[t - 1]) @ C["Wh"] + xs[t] @ C["Uh"])
        ht.append(torch.tanh(ah[t]))
        h.append((1 - z[t]) * h[t - 1] + z[t] * ht[t])
    for seq in (z, r, ht, az, ar, ah, h):
        for v in seq[1:]:
            v.retain_grad()
    loss = sum((lw[t] * h[t]).sum() for t in range(1, T + 1))
    loss.backward()
    out: dict[tuple[int, int], str] = {}

    def claim(line: int, row: int, ok: bool) -> None:
        prev = out.get((line, row), "correct")
        out[(line, row)] = "correct" if ok and prev == "correct" else "wrong"

    W = {k: P[k].detach() for k in P}

    def pre(t):   # the adjoints of the three pre-activations at step t (autograd)
        return az[t].grad, ar[t].grad, ah[t].grad

    # (1)-(4): the forward equations (premises, true by definition); (5)-(7) name the
    # pre-activations, and z_t = sigma(z_{zt}) etc. hold by construction
    for line in (26, 33, 40, 47, 62, 67, 72):
        claim(line, 1, True)
    for t in STEPS:
        hp, x = h[t - 1].detach(), xs[t].detach()
        zt, rt, hh = z[t].detach(), r[t].detach(), ht[t].detach()
        dt = h[t].grad                                   # delta_t
        dz, dr, dh = pre(t)
        # (8): the chain rule, the Jacobian product in row vectors, the elementwise form
        claim(80, 1, True)
        claim(80, 2, _close(dt @ (-torch.diag(hp) + torch.diag(hh)) @ torch.diag(zt * (1 - zt)),
                            dz))
        claim(80, 3, _close(dt * (hh - hp) * zt * (1 - zt), dz))
        # (9)
        claim(89, 1, True)
        claim(89, 2, _close(dt @ torch.diag(zt) @ torch.diag(1 - hh ** 2), dh))
        claim(89, 3, _close(dt * zt * (1 - hh ** 2), dh))
        # (10): delta_{z_{h~t}} . W_h^T is the adjoint of r_t o h_{t-1}
        claim(98, 1, True)
        claim(98, 2, _close(dh @ W["Wh"].T @ torch.diag(hp) @ torch.diag(rt * (1 - rt)), dr))
        claim(98, 3, _close((dh @ W["Wh"].T) * hp * rt * (1 - rt), dr))
        # (11)-(16): the contribution of step t's copy of each weight, a chain rule then an
        # outer product (row vectors: the input's transpose on the left)
        for line, k, a, d in ((109, "Wh", rt * hp, dh), (116, "Uh", x, dh), (123, "Wr", hp, dr),
                              (130, "Ur", x, dr), (137, "Wz", hp, dz), (144, "Uz", x, dz)):
            claim(line, 1, True)
            claim(line, 2, _close(torch.outer(a, d), copy[k][t].grad))
        # (23): what step t sends back to h_{t-1} (the source: "passed to the previous time
        # step", the partials of step t): the total adjoint less the loss's own term at t-1
        back = h[t - 1].grad - lw[t - 1]
        claim(187, 1, True)        # delta_{h_{t-1}} names it
        claim(187, 2, True)        # the four paths out of h_{t-1} through step t
        sent = (dt * (1 - zt) + (dh @ W["Wh"].T) * rt + dr @ W["Wr"].T + dz @ W["Wz"].T)
        claim(187, 3, _close(sent, back))
        # (24): the input's adjoint, through the three pre-activations
        claim(199, 1, True)
        claim(199, 2, True)
        claim(199, 3, _close(dh @ W["Uh"].T + dr @ W["Ur"].T + dz @ W["Uz"].T, xs[t].grad))
    # (17)-(22): the sums over the steps are the gradients of the shared weights
    for line, k, a, d in ((152, "Wh", lambda t: r[t].detach() * h[t - 1].detach(), 2),
                          (157, "Uh", lambda t: xs[t].detach(), 2),
                          (162, "Wr", lambda t: h[t - 1].detach(), 1),
                          (167, "Ur", lambda t: xs[t].detach(), 1),
                          (172, "Wz", lambda t: h[t - 1].detach(), 0),
                          (177, "Uz", lambda t: xs[t].detach(), 0)):
        claim(line, 1, _close(sum(copy[k][t].grad for t in range(1, T + 1)), P[k].grad))
        claim(line, 2, _close(sum(torch.outer(a(t), pre(t)[d]) for t in range(1, T + 1)),
                              P[k].grad))
    return out


def lstm_talwar() -> dict[tuple[int, int], str]:
    """Abhimanyu Talwar, "Build an LSTM from scratch in Python (+ backprop derivations!)"
    (talwarabhimanyu/talwarabhimanyu.github.io, _posts/2018-08-12-lstm-backprop.md): the
    author's cell, s^{(t)} = f o s^{(t-1)} + g o e, h^{(t)} = q o tanh(s^{(t)}), the gates and the
    "input feature vector" e all sigma(b + U x + W h^{(t-1)}). J^{(t)} is the loss of step t
    alone, taken as a random linear function of h^{(t)} (the readout and softmax are not
    modelled: only dJ^{(t)}/dh^{(t)} enters the claims); gamma_t^{(k)} = dJ^{(t)}/dh^{(k)} and
    delta_t^{(k)} = dJ^{(t)}/ds^{(k)}, each by autograd on J^{(t)} alone. The post's "dummy
    variables" are tensors of their own: each step's copy of W_f, and s^{(k-1)} split into s_a
    (read by s^{(k)}) and s_b (read by h^{(k-1)})."""
    g = torch.Generator().manual_seed(5)

    def rnd(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    P = {k: rnd(N) for k in ("bf", "bg", "bq", "be")}
    P |= {k: rnd(N, M) for k in ("Uf", "Ug", "Uq", "Ue")}
    P |= {k: rnd(N, N) for k in ("Wf", "Wg", "Wq", "We")}
    xs = [rnd(M) for _ in range(T + 1)]
    lw = [rnd(N) for _ in range(T + 1)]
    h0, s0 = rnd(N), rnd(N)

    def forward(split: int | None = None) -> dict:
        """The cell over T steps; with split=j, s^{(j)} is read through two copies."""
        Wf = P["Wf"].clone().requires_grad_(True)     # the root W_f
        V: dict = {"Wf": Wf, "h": [h0], "s": [s0], "sa": {}, "sb": {}}
        for k in ("f", "g", "q", "e", "zf", "zq", "ze", "zg", "Wfk"):
            V[k] = [None]
        s_next = s0
        for t in range(1, T + 1):
            Wfk = Wf.clone()                            # W_f^{(t)}, the step's copy
            hp, x = V["h"][t - 1], xs[t]
            zf = P["bf"] + P["Uf"] @ x + Wfk @ hp
            zg = P["bg"] + P["Ug"] @ x + P["Wg"] @ hp
            zq = P["bq"] + P["Uq"] @ x + P["Wq"] @ hp
            ze = P["be"] + P["Ue"] @ x + P["We"] @ hp
            f, gg, q, e = (torch.sigmoid(a) for a in (zf, zg, zq, ze))
            s = f * s_next + gg * e
            if split == t:
                sa, sb = s.clone(), s.clone()
                V["sa"][t], V["sb"][t] = sa, sb
            else:
                sa = sb = s
            h = q * torch.tanh(sb)
            s_next = sa
            for k, v in (("f", f), ("g", gg), ("q", q), ("e", e), ("zf", zf), ("zq", zq),
                         ("ze", ze), ("zg", zg), ("Wfk", Wfk), ("s", s), ("h", h)):
                V[k].append(v)
        return V

    def J(V, t):
        return (lw[t] * V["h"][t]).sum()

    def grads(V, t, things):
        return torch.autograd.grad(J(V, t), things, retain_graph=True, allow_unused=True)

    def zero_if_none(v, like):
        return torch.zeros_like(like) if v is None else v

    def dsig(a):
        return torch.sigmoid(a) * (1 - torch.sigmoid(a))

    def dtanh(a):
        return 1 - torch.tanh(a) ** 2

    out: dict[tuple[int, int], str] = {}

    def claim(line: int, row: int, ok: bool) -> None:
        prev = out.get((line, row), "correct")
        out[(line, row)] = "correct" if ok and prev == "correct" else "wrong"

    V = forward()
    W = {k: P[k] for k in P}
    # (3.0), (5.0), (5.1): the readout, the step's loss and their sum (definitions)
    for line in (29, 44, 50):
        claim(line, 1, True)
    # (4.0): the softmax with theta_[i] for theta_[j] in the denominator: 1/V everywhere
    theta = rnd(5)
    written = torch.stack([torch.exp(theta[i]) / sum(torch.exp(theta[i]) for _ in range(5))
                           for i in range(5)])
    claim(36, 1, _close(written, torch.softmax(theta, 0)))
    # (1.1), (1.2), (2.1)-(2.4): the cell (premises, true by definition)
    for line in (68, 72, 79, 81, 83, 85):
        claim(line, 1, True)
    # tanh as exponentials and its derivative, at a few points
    xv = torch.linspace(-2, 2, 9, dtype=torch.float64).requires_grad_(True)
    claim(92, 1, _close((1 - torch.exp(-2 * xv)) / (1 + torch.exp(-2 * xv)), torch.tanh(xv)))
    (dtx,) = torch.autograd.grad(torch.tanh(xv).sum(), xv)
    claim(98, 1, _close(1 - torch.tanh(xv) ** 2, dtx))
    for t in (3, 4):
        for k in (2, 3):
            if k > t:
                continue
            s_k, h_km1, s_km1 = V["s"][k], V["h"][k - 1], V["s"][k - 1]
            f_k, g_k, e_k = V["f"][k], V["g"][k], V["e"][k]
            gWf, gWfk, gf, gs, gh, gs1, gh1 = grads(
                V, t, [V["Wf"], V["Wfk"][k], f_k, s_k, V["h"][k], s_km1, h_km1])
            delta = zero_if_none(gs, s_k)                 # delta_t^{(k)}
            gamma = zero_if_none(gh, s_k)                 # gamma_t^{(k)}
            delta1 = zero_if_none(gs1, s_k)               # delta_t^{(k-1)}
            gamma1 = zero_if_none(gh1, s_k)               # gamma_t^{(k-1)}
            sig_f = dsig(V["zf"][k])
            # (6.0): the root's gradient is the sum over the steps' copies (times 1)
            copies = grads(V, t, [V["Wfk"][j] for j in range(1, T + 1)])
            total = sum(zero_if_none(c, P["Wf"]) for c in copies)
            claim(106, 1, _close(total, gWf))
            claim(106, 2, _close(total, gWf))
            # (6.1): through the D components of f^{(k)}
            jac = torch.zeros(N, N, N, dtype=torch.float64)   # d f_p / d W_f[i, j]
            for p in range(N):
                jac[p, p, :] = sig_f[p] * h_km1.detach()
            claim(129, 1, _close(torch.einsum("p,pij->ij", gf, jac), gWfk))
            # (6.1.2): zero unless p = i, then sigma'(z_f[i]) h_[j]^{(k-1)} (the cases open on
            # the line after the left-hand side, 139: the line the row is reported at)
            for p in range(N):
                (jf,) = torch.autograd.grad(f_k[p], V["Wfk"][k], retain_graph=True)
                claim(139, 1, _close(jf, jac[p]))
            # (6.1.1): through s^{(k)}, a sum over m, then its one term
            claim(150, 1, _close(gf, delta * s_km1))
            claim(150, 2, _close(gf, delta * s_km1))
            # the element [i, j], and (6.2) in matrices
            ours = torch.outer(delta * sig_f * s_km1, h_km1)
            claim(159, 1, _close(ours, gWfk))
            claim(167, 1, _close(ours, gWfk))
            # (7.0)-(7.0.2.1): s^{(k-1)} read by s^{(k)} (s_a) and by h^{(k-1)} (s_b)
            Vs = forward(split=k - 1)
            ga, gb, ghs = grads(Vs, t, [Vs["sa"][k - 1], Vs["sb"][k - 1], Vs["h"][k - 1]])
            claim(220, 1, _close(ga + gb, delta1))
            claim(227, 1, _close(ga, delta * f_k))
            claim(227, 2, _close(ga, delta * f_k))
            q1 = V["q"][k - 1]
            claim(236, 1, _close(gb, ghs * q1 * dtanh(s_km1)))
            for p in range(N):
                (jh,) = torch.autograd.grad(Vs["h"][k - 1][p], Vs["sb"][k - 1],
                                            retain_graph=True)
                want = torch.zeros(N, dtype=torch.float64)
                want[p] = q1[p] * dtanh(s_km1[p])
                claim(244, 1, _close(jh, want))   # (7.0.2.1): its cases open on 244
            claim(253, 1, _close(gb, gamma1 * q1 * dtanh(s_km1)))
            # (7.1): the recursion, elementwise and in vectors
            rec = gamma1 * q1 * dtanh(s_km1) + delta * f_k
            claim(259, 1, _close(rec, delta1))
            claim(266, 1, _close(rec, delta1))
            # (8.1): gamma_t^{(k-1)} through f, e, g (via delta_t^{(k)}) and q (via gamma_t^{(k)})
            g81 = (W["Wf"].T @ (delta * s_km1 * sig_f)
                   + W["We"].T @ (delta * g_k * dsig(V["ze"][k]))
                   + W["Wg"].T @ (delta * e_k * dsig(V["zg"][k]))
                   + W["Wq"].T @ (gamma * torch.tanh(s_k) * dsig(V["zq"][k])))
            claim(282, 1, _close(g81, gamma1))
        # (9.0): the start of the recursion, delta_t^{(t)} = gamma_t^{(t)} o q o tanh'(s)
        gs, gh = grads(V, t, [V["s"][t], V["h"][t]])
        c = V["q"][t] * dtanh(V["s"][t])
        claim(299, 1, _close(gh * c, gs))
        claim(299, 2, _close(gh * c, gs))
        claim(307, 1, _close(gh * c, gs))
    # (RNN Eq. 5.2), quoted from the author's RNN post (z = W_h h^{(k-1)} + W_x x + b_1,
    # h = sigma(z)): dJ^{(t)}/dW_h^{(k)} = (gamma_t^{(k)} o sigma'(z^{(k)})) h^{(k-1)}^T
    Wh, Wx, b1 = rnd(N, N), rnd(N, M), rnd(N)
    hr, zr, Whk = [h0], [None], [None]
    for t in range(1, T + 1):
        Whk.append(Wh.clone().requires_grad_(True))
        zr.append(Whk[t] @ hr[t - 1] + Wx @ xs[t] + b1)
        hr.append(torch.sigmoid(zr[t]))
    for t, k in ((3, 2), (4, 3), (4, 4)):
        gW, gh = torch.autograd.grad((lw[t] * hr[t]).sum(), [Whk[k], hr[k]], retain_graph=True)
        claim(178, 1, _close(torch.outer(gh * dsig(zr[k]), hr[k - 1]), gW))
    return out


TRUTH = {"lstm_saikrishnaponnam.md": lstm_saikrishnaponnam, "rnn_d2l_bptt.md": rnn_d2l_bptt,
         "lstm_jaketae.md": lstm_jaketae}
TRUTH |= {"gru_aiedu.md": gru_aiedu, "lstm_talwar.md": lstm_talwar}


if __name__ == "__main__":
    for name, fn in TRUTH.items():
        print(name)
        for (line, row), v in sorted(fn().items()):
            print(f"  line {line} row {row}: {v}")
