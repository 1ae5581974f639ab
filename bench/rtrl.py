"""RTRL (forward mode, dh_T/dA for every parameter A): generated ``rtrl`` vs torch.func.jacfwd
and (when installed) jax.jacfwd of the same function of the same parameters."""

from __future__ import annotations

import sys
import time

import numpy as np
from _common import RTRL_CONFIGS, Policy, Row, busy_note, measure, median
from bptt import have_jax, kernel, label, rel_err

TOL = {"float32": 2e-3, "float64": 1e-8}


def _split(cell: str, p: dict, cat):
    """Stacked (input weights, recurrent weights, biases) of derive's parameters."""
    if cell == "lstm":
        g = "ifgo"
        return (cat([p[f"W_x{k}"] for k in g]), cat([p[f"W_h{k}"] for k in g]),
                cat([p[f"b_{k}"] for k in g]))
    g = "rzn"
    return (cat([p[f"W_x{k}"] for k in g]), cat([p[f"W_h{k}"] for k in g]),
            cat([p["b_r"], p["b_z"], p["b_xn"]]), p["b_hn"])


def torch_hT(cell: str):
    """h_T(params, xs) in torch, params in derive's layout (so jacfwd's dict matches rtrl's)."""
    import torch

    cat = torch.cat

    def f(p, xs):
        T, B, _ = xs.shape
        if cell == "lstm":
            wx, wh, b = _split(cell, p, cat)
            n = wh.shape[1]
            h = xs.new_zeros(B, n)
            c = xs.new_zeros(B, n)
            for t in range(T):
                a = xs[t] @ wx.T + h @ wh.T + b
                i = torch.sigmoid(a[:, :n])
                fg = torch.sigmoid(a[:, n:2 * n])
                g = torch.tanh(a[:, 2 * n:3 * n])
                o = torch.sigmoid(a[:, 3 * n:])
                c = fg * c + i * g
                h = o * torch.tanh(c)
            return h
        wx, wh, bx, bhn = _split(cell, p, cat)
        n = wh.shape[1]
        h = xs.new_zeros(B, n)
        for t in range(T):
            ax = xs[t] @ wx.T + bx
            ah = h @ wh.T
            r = torch.sigmoid(ax[:, :n] + ah[:, :n])
            z = torch.sigmoid(ax[:, n:2 * n] + ah[:, n:2 * n])
            m = torch.tanh(ax[:, 2 * n:] + r * (ah[:, 2 * n:] + bhn))
            h = (1 - z) * m + z * h
        return h

    return f


def jax_hT(cell: str):
    from bptt import _jax

    jax = _jax()
    jnp = jax.numpy
    cat = jnp.concatenate

    def f(p, xs):
        B = xs.shape[1]
        if cell == "lstm":
            wx, wh, b = _split(cell, p, cat)
            n = wh.shape[1]
            ax = xs @ wx.T + b

            def step(carry, a):
                h, c = carry
                a = a + h @ wh.T
                i = jax.nn.sigmoid(a[:, :n])
                fg = jax.nn.sigmoid(a[:, n:2 * n])
                g = jnp.tanh(a[:, 2 * n:3 * n])
                o = jax.nn.sigmoid(a[:, 3 * n:])
                c = fg * c + i * g
                return (o * jnp.tanh(c), c), None

            z0 = jnp.zeros((B, n), xs.dtype)
            (h, _), _ = jax.lax.scan(step, (z0, z0), ax)
            return h
        wx, wh, bx, bhn = _split(cell, p, cat)
        n = wh.shape[1]
        ax = xs @ wx.T + bx

        def step(h, a):
            ah = h @ wh.T
            r = jax.nn.sigmoid(a[:, :n] + ah[:, :n])
            z = jax.nn.sigmoid(a[:, n:2 * n] + ah[:, n:2 * n])
            m = jnp.tanh(a[:, 2 * n:] + r * (ah[:, 2 * n:] + bhn))
            return (1 - z) * m + z * h, None

        h, _ = jax.lax.scan(step, jnp.zeros((B, n), xs.dtype), ax)
        return h

    return f


def run(cells, dtypes, policy: Policy, use_jax: bool, configs=None, log=print,
        backends=("numpy",)) -> list[Row]:
    """Every backend's rtrl and the peers, timed in one measurement per (config, dtype, cell)."""
    import torch
    from torch.func import jacfwd
    rows: list[Row] = []
    jax_ok = use_jax and have_jax()
    for config in configs or RTRL_CONFIGS:
        T, B, n_in, n = RTRL_CONFIGS[config]
        cfg = f"T={T},B={B},{n_in}/{n}"
        for dtype in dtypes:
            for cell in cells:
                mods = {b: kernel(cell, b) for b in backends}
                P = mods[backends[0]].init_params(n_in, n, seed=0, dtype=dtype)
                xs = np.random.default_rng(1).standard_normal((T, B, n_in)).astype(dtype)
                runs = {b: (lambda K=K, P=P, xs=xs: K.rtrl(P, xs)) for b, K in mods.items()}

                tp = {k: torch.from_numpy(v) for k, v in P.items()}
                tx = torch.from_numpy(xs)
                tj = jacfwd(torch_hT(cell))

                def t_run(tj=tj, tp=tp, tx=tx):
                    return tj(tp, tx)

                ours = {b: f() for b, f in runs.items()}  # also compiles numba kernels
                want_t = {k: v.numpy() for k, v in t_run().items()}
                errs = {(b, "torch"): rel_err(o, want_t) for b, o in ours.items()}
                fns = {f"derive:{b}": f for b, f in runs.items()}
                fns["torch"] = t_run
                if jax_ok:
                    from bptt import _jax

                    jax = _jax()
                    jj = jax.jit(jax.jacfwd(jax_hT(cell)))
                    jp = {k: jax.numpy.asarray(v) for k, v in P.items()}
                    jx = jax.numpy.asarray(xs)
                    t0 = time.perf_counter()
                    jres = jax.block_until_ready(jj(jp, jx))
                    compile_s = time.perf_counter() - t0
                    want_j = {k: np.asarray(v) for k, v in jres.items()}
                    errs.update({(b, "jax"): rel_err(o, want_j) for b, o in ours.items()})

                    def j_run(jj=jj, jp=jp, jx=jx, jax=jax):
                        return jax.block_until_ready(jj(jp, jx))

                    fns["jax"] = j_run
                log(f"  rtrl {cell} {cfg} {dtype}: rel err "
                    + ", ".join(f"{b} vs {p} {e:.1e}" for (b, p), e in errs.items())
                    + (f" (jax jit {compile_s:.2f} s)" if jax_ok else "") + " ... timing",
                    file=sys.stderr)
                ts, share = measure(fns, policy, f"rtrl {cell} {cfg} {dtype}")
                busy = busy_note(share, policy)
                tol = TOL[dtype]
                for b in backends:
                    md = median(ts[f"derive:{b}"])
                    for peer, name in (("torch", "torch.func.jacfwd"),
                                       ("jax", "jax.jit(jax.jacfwd)")):
                        if peer not in ts:
                            continue
                        err = errs[(b, peer)]
                        mp = median(ts[peer])
                        r = md / mp
                        is_tgt = peer == "torch" and dtype == "float64"
                        rows.append(Row(
                            what=f"rtrl {label(cell, b)} vs {name}", config=cfg, dtype=dtype,
                            derive=md, peer=peer, peer_value=mp, ratio=r,
                            ratio_text=f"{r:.3g} ({1 / r:.1f}x faster)" if r < 1
                            else f"{r:.3g} ({r:.1f}x slower)",
                            target="<= 0.05 (>= 20x faster)" if is_tgt else "",
                            met=((r <= 0.05) and err <= tol) if is_tgt else None,
                            n_derive=len(ts[f"derive:{b}"]), n_peer=len(ts[peer]),
                            note="; ".join(filter(None, [
                                busy,
                                "" if err <= tol else f"RESULTS DIFFER: rel err {err:.1e}"])),
                            extra={"rel_err": err, "foreign_cpu_share": share, "backend": b,
                                   **({"jit_compile_s": compile_s} if peer == "jax" else {})}))
    return rows
