"""BPTT training step: generated kernels vs torch.nn.LSTM / nn.GRU, jax.grad over lax.scan, and
the GEMM roofline; peak memory of the step.

The step, on both sides: forward over the sequence, then the gradients of every parameter of
L = sum_t sum(h_t * R_t) for a fixed random R (input not requiring grad, zero initial state).
"""

from __future__ import annotations

import importlib
import sys
import time
import tracemalloc

import numpy as np
from _common import (
    CONFIGS,
    GATES,
    PEER_MODULE,
    Policy,
    Row,
    busy_note,
    measure,
    median,
)

TOL = {"float32": 2e-3, "float64": 1e-8}


BACKENDS = ("numpy", "numba")


def kernel(cell: str, backend: str = "numpy"):
    """derive.kernels.<cell> (the NumPy kernel) or derive.kernels.<cell>_<backend>."""
    return importlib.import_module(f"derive.kernels.{cell}" + ("" if backend == "numpy"
                                                          else f"_{backend}"))


def available_backends(cells, wanted) -> list[str]:
    """The backends of ``wanted`` whose modules import for every cell (numba is optional)."""
    out = []
    for b in wanted:
        try:
            for c in cells:
                kernel(c, b)
        except ImportError as e:
            print(f"  backend {b} skipped: {e}", file=sys.stderr)
            continue
        out.append(b)
    return out


def label(cell: str, backend: str) -> str:
    return cell if backend == "numpy" else f"{cell}[{backend}]"


def make_inputs(cell: str, cfg: tuple[int, int, int, int], dtype: str, seed: int = 0,
                backend: str = "numpy"):
    """derive params (torch-style init), xs (T, B, n_in) and R (T, B, n_hidden)."""
    T, B, n_in, n = cfg
    K = kernel(cell, backend)
    P = K.init_params(n_in, n, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    xs = rng.standard_normal((T, B, n_in)).astype(dtype)
    R = rng.standard_normal((T, B, n)).astype(dtype)
    return K, P, xs, R


def derive_step(K, P, xs, R):
    def step():
        _, cache = K.forward(P, xs)
        return K.backward(P, cache, R)

    return step


def derive_grads_torch_layout(cell: str, grads: dict) -> dict:
    from derive.tools.interop import derive_keys, to_torch

    return to_torch(cell, {k: grads[k] for k in derive_keys(cell)}, gradient=True)


def rel_err(ours: dict, theirs: dict) -> float:
    """max over tensors of max|a - b| / max|b|."""
    worst = 0.0
    for k, b in theirs.items():
        a = np.asarray(ours[k], dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        scale = max(float(np.abs(b).max()), 1e-30)
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    return worst


# --------------------------------------------------------------------------------------------
# torch


def torch_step(cell: str, P: dict, xs: np.ndarray, R: np.ndarray):
    """(step, grads) for torch.nn.LSTM / nn.GRU loaded with the same parameters."""
    import torch

    from derive.tools.interop import to_torch

    T, B, n_in = xs.shape
    n = R.shape[2]
    tdtype = getattr(torch, str(xs.dtype))
    cls = torch.nn.LSTM if cell == "lstm" else torch.nn.GRU
    mod = cls(n_in, n, dtype=tdtype)
    mod.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                         for k, v in to_torch(cell, P).items()})
    x = torch.from_numpy(xs)
    r = torch.from_numpy(R)

    def step():
        mod.zero_grad(set_to_none=True)
        out, _ = mod(x)
        (out * r).sum().backward()

    def grads():
        return {k: p.grad.detach().numpy().copy() for k, p in mod.named_parameters()}

    return step, grads


# --------------------------------------------------------------------------------------------
# jax (optional)


def have_jax() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def jax_hs(cell: str):
    """hs(p, xs) in jax, p in torch's layout (weight_ih_l0, weight_hh_l0, bias_ih_l0,
    bias_hh_l0): input projection of all steps in one matmul, lax.scan over the recurrence."""
    jax = _jax()
    jnp = jax.numpy

    def hs(p, xs):
        ax = xs @ p["weight_ih_l0"].T + p["bias_ih_l0"]
        whh = p["weight_hh_l0"].T
        bhh = p["bias_hh_l0"]
        n = whh.shape[0]
        h0 = jnp.zeros((xs.shape[1], n), xs.dtype)
        if cell == "lstm":
            def step(carry, a):
                h, c = carry
                a = a + h @ whh + bhh
                i = jax.nn.sigmoid(a[:, :n])
                f = jax.nn.sigmoid(a[:, n:2 * n])
                g = jnp.tanh(a[:, 2 * n:3 * n])
                o = jax.nn.sigmoid(a[:, 3 * n:])
                c = f * c + i * g
                h = o * jnp.tanh(c)
                return (h, c), h

            _, out = jax.lax.scan(step, (h0, h0), ax)
        else:
            def step(h, a):
                ah = h @ whh + bhh
                r = jax.nn.sigmoid(a[:, :n] + ah[:, :n])
                z = jax.nn.sigmoid(a[:, n:2 * n] + ah[:, n:2 * n])
                m = jnp.tanh(a[:, 2 * n:] + r * ah[:, 2 * n:])
                h = (1 - z) * m + z * h
                return h, h

            _, out = jax.lax.scan(step, h0, ax)
        return out

    return hs


def jax_step(cell: str, P: dict, xs: np.ndarray, R: np.ndarray):
    """(step, grads, compile_s): jit(grad(L)) with L = sum(hs * R), compile time excluded."""
    from derive.tools.interop import to_torch

    jax = _jax()
    jnp = jax.numpy
    hs = jax_hs(cell)

    def loss(p, x, r):
        return jnp.sum(hs(p, x) * r)

    g = jax.jit(jax.grad(loss))
    p = {k: jnp.asarray(v) for k, v in to_torch(cell, P).items()}
    x, r = jnp.asarray(xs), jnp.asarray(R)
    t0 = time.perf_counter()
    jax.block_until_ready(g(p, x, r))
    compile_s = time.perf_counter() - t0
    box = {}

    def step():
        box["g"] = jax.block_until_ready(g(p, x, r))

    def grads():
        step()
        return {k: np.asarray(v) for k, v in box["g"].items()}

    return step, grads, compile_s


# --------------------------------------------------------------------------------------------
# GEMM roofline


def matmul_flops(cell: str, cfg: tuple[int, int, int, int]) -> dict[str, int]:
    """Matmul FLOPs of one BPTT step (no dL/dxs): forward input projection and recurrence,
    backward weight gradients and the recurrent adjoint dh."""
    T, B, n_in, n = cfg
    G = GATES[cell]
    parts = {
        "fwd_input": 2 * T * B * n_in * G * n,
        "fwd_recurrent": 2 * T * B * n * G * n,
        "bwd_weight_grads": 2 * T * B * (n_in + n) * G * n,
        "bwd_dh": 2 * T * B * G * n * n,
    }
    parts["total"] = sum(parts.values())
    return parts


def gemm_throughput(cell: str, cfg, dtype: str, policy: Policy) -> tuple[float, tuple]:
    """numpy matmul FLOP/s at the step's representative shape (T*B, n) @ (n, G*n)."""
    T, B, _, n = cfg
    G = GATES[cell]
    rng = np.random.default_rng(3)
    a = rng.standard_normal((T * B, n)).astype(dtype)
    b = rng.standard_normal((n, G * n)).astype(dtype)
    out = np.empty((T * B, G * n), dtype)
    pol = Policy(min_repeats=max(policy.min_repeats, 5), min_time=min(policy.min_time, 1.0),
                 max_repeats=policy.max_repeats, warmup=2)
    pol.retries, pol.retry_wait, pol.foreign_max = (policy.retries, policy.retry_wait,
                                                    policy.foreign_max)
    ts = measure({"mm": lambda: np.matmul(a, b, out=out)}, pol, "gemm")[0]["mm"]
    return 2 * T * B * n * G * n / median(ts), (T * B, n, G * n)


def gemm_floor(cell: str, cfg, dtype: str, policy: Policy) -> dict[str, float]:
    """The matmuls of one BPTT step at the generated kernels' shapes (per-step products T
    times), each timed alone in NumPy (medians): a lower bound on any kernel whose products
    run in NumPy's BLAS, whatever its elementwise work costs (both backends use these)."""
    T, B, n_in, h = cfg
    G = GATES[cell]
    rng = np.random.default_rng(0)

    def r(*s):
        return rng.standard_normal(s).astype(dtype)

    X, Wx, Wh, Hs, dA = r(T * B, n_in), r(G * h, n_in), r(G * h, h), r(T * B, h), r(T * B, G * h)
    hb, db = r(B, h), r(B, G * h)
    oh, od = np.empty((B, G * h), dtype), np.empty((B, h), dtype)
    whole = {
        "fwd input projection (T*B,n_in)@(n_in,G*n)": lambda: X @ Wx.T,
        "bwd weight grads dA^T X, dA^T H": lambda: (dA.T @ X, dA.T @ Hs),
    }
    per_step = {
        "fwd recurrent, T x (B,n)@(n,G*n)": lambda: np.matmul(hb, Wh.T, out=oh),
        "bwd dh, T x (B,G*n)@(G*n,n)": lambda: np.matmul(db, Wh, out=od),
    }
    pol = Policy(min_repeats=max(policy.min_repeats, 3), min_time=min(policy.min_time, 0.5),
                 max_repeats=policy.max_repeats, warmup=2)
    pol.retries, pol.retry_wait, pol.foreign_max = (policy.retries, policy.retry_wait,
                                                    policy.foreign_max)
    out = {k: median(v) for k, v in measure(whole, pol, "gemm floor")[0].items()}
    # a per-step product takes microseconds: time blocks of T calls, as the kernel makes them
    blocks = {k: (lambda f=f: [f() for _ in range(T)]) for k, f in per_step.items()}
    out.update({k: median(v) for k, v in measure(blocks, pol, "gemm floor")[0].items()})
    out["total"] = sum(out.values())
    return out


# --------------------------------------------------------------------------------------------
# peak memory


def _owners(obj, skip: list[np.ndarray], seen: dict[int, np.ndarray]) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _owners(v, skip, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _owners(v, skip, seen)
    elif isinstance(obj, np.ndarray):
        if any(np.shares_memory(obj, s) for s in skip):
            return
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        seen[id(base)] = base


def cache_bytes(cache: dict, xs: np.ndarray) -> int:
    """Bytes of the arrays the cache holds for backward (each buffer once; the input xs, which
    the caller owns, excluded)."""
    seen: dict[int, np.ndarray] = {}
    _owners(cache, [xs], seen)
    return sum(a.nbytes for a in seen.values())


def peak_memory(cell: str, cfg, dtype: str, backend: str = "numpy") -> dict:
    """tracemalloc peak (numpy reports its data buffers to tracemalloc) of forward + backward,
    above what was allocated before, vs the bytes the cache keeps."""
    K, P, xs, R = make_inputs(cell, cfg, dtype, backend=backend)
    # warm the kernel once at a tiny size so lazy imports / caches are not counted
    K.backward(P, K.forward(P, xs[:2, :1].copy())[1], R[:2, :1].copy())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        _, cache = K.forward(P, xs)
        after_fwd, peak_fwd = (m - base for m in tracemalloc.get_traced_memory())
        tracemalloc.reset_peak()
        grads = K.backward(P, cache, R)
        peak_bwd = tracemalloc.get_traced_memory()[1] - base
        peak = max(peak_fwd, peak_bwd)
    finally:
        tracemalloc.stop()
    kept = cache_bytes(cache, xs)
    grad_bytes = sum(g.nbytes for g in grads.values())
    del cache, grads
    return {"peak_bytes": peak, "cache_bytes": kept, "after_forward_bytes": after_fwd,
            "peak_forward_bytes": peak_fwd, "peak_backward_bytes": peak_bwd,
            "grad_bytes": grad_bytes, "ratio": peak / kept}


# --------------------------------------------------------------------------------------------
# the section


def target_for(config: str, dtype: str) -> float:
    return 1.5 if (config == "c1" and dtype == "float32") else 1.0


def run(cells, configs, dtypes, policy: Policy, use_jax: bool, backends=("numpy",),
        log=print) -> list[Row]:
    rows: list[Row] = []  # torch threads: set by run.py
    jax_ok = use_jax and have_jax()
    for config in configs:
        cfg = CONFIGS[config]
        for dtype in dtypes:
            for cell in cells:
                fns, errs = {}, {}
                for b in backends:
                    K, P, xs, R = make_inputs(cell, cfg, dtype, backend=b)
                    fns[b] = derive_step(K, P, xs, R)
                    if b == backends[0]:
                        ours = derive_grads_torch_layout(cell, fns[b]())
                    else:  # every backend against the first, and so against the peers
                        errs[b] = rel_err(derive_grads_torch_layout(cell, fns[b]()), ours)
                t_step, t_grads = torch_step(cell, P, xs, R)
                # equal work: check the gradients agree before timing
                t_step()
                errs["torch"] = rel_err(ours, t_grads())
                fns["torch"] = t_step
                compile_s = None
                if jax_ok:
                    j_step, j_grads, compile_s = jax_step(cell, P, xs, R)
                    errs["jax"] = rel_err(ours, j_grads())
                    fns["jax"] = j_step
                log(f"  bptt {cell} {config} {dtype}: grad rel err "
                    + ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
                    + (f" (jax jit {compile_s:.2f} s)" if jax_ok else "") + " ... timing",
                    file=sys.stderr)
                ts, share = measure(fns, policy, f"bptt {cell} {config} {dtype}")
                busy = busy_note(share, policy)
                tol = TOL[dtype]
                tgt = target_for(config, dtype)
                fl = matmul_flops(cell, cfg)
                thr, shape = gemm_throughput(cell, cfg, dtype, policy)
                roof = fl["total"] / thr
                for b in backends:
                    md = median(ts[b])
                    bad_b = errs.get(b, 0.0) > tol
                    for peer, name in (("torch", PEER_MODULE[cell]),
                                       ("jax", "jax.grad(lax.scan)")):
                        if peer not in ts:
                            continue
                        mp = median(ts[peer])
                        ok = errs[peer] <= tol and not bad_b
                        is_tgt = peer == "torch"
                        rows.append(Row(
                            what=f"bptt {label(cell, b)} vs {name}", config=config, dtype=dtype,
                            derive=md, peer=peer, peer_value=mp, ratio=md / mp,
                            target=f"<= {tgt:g}" if is_tgt else "",
                            met=((md / mp <= tgt) if ok else False) if is_tgt else None,
                            n_derive=len(ts[b]), n_peer=len(ts[peer]),
                            note="; ".join(filter(None, [busy, "" if ok else (
                                "GRADIENTS DIFFER: rel err "
                                f"{max(errs[peer], errs.get(b, 0.0)):.1e}")])),
                            extra={"grad_rel_err": errs[peer], "backend": b,
                                   "foreign_cpu_share": share,
                                   "times_derive": ts[b], "times_peer": ts[peer],
                                   **({"jit_compile_s": compile_s} if peer == "jax" else {})}))
                    # the GEMM roofline, measured now
                    is_tgt = config == "c4" and dtype == "float32"
                    rows.append(Row(
                        what=f"bptt {label(cell, b)} vs GEMM roofline", config=config,
                        dtype=dtype, derive=md, peer="roofline", peer_value=roof,
                        ratio=md / roof, target="<= 2" if is_tgt else "",
                        met=(md / roof <= 2.0) if is_tgt else None,
                        note="; ".join(filter(None, [
                            f"{fl['total'] / 1e9:.3g} GFLOP at {thr / 1e9:.0f} GFLOP/s", busy])),
                        extra={"flops": fl, "gemm_flops_per_s": thr, "gemm_shape": shape,
                               "backend": b}))
                # the floor: the step's matmuls alone at the kernels' shapes, against torch
                floor = gemm_floor(cell, cfg, dtype, policy)
                mt = median(ts["torch"])
                rows.append(Row(
                    what=f"bptt {cell}: its matmuls alone vs {PEER_MODULE[cell]}",
                    config=config, dtype=dtype, derive=floor["total"], peer="torch",
                    peer_value=mt, ratio=floor["total"] / mt,
                    note="; ".join(filter(None, [
                        "lower bound of any kernel on NumPy's BLAS"
                        + (": above the target" if floor["total"] / mt > tgt else ""), busy])),
                    extra={"gemm_floor": floor}))
                del fns, t_step
    return rows


def run_memory(cells, dtypes, backends=("numpy",), log=print) -> list[Row]:
    rows = []
    for dtype in dtypes:
        for cell in cells:
            for b in backends:
                log(f"  memory {label(cell, b)} c4 {dtype}", file=sys.stderr)
                m = peak_memory(cell, CONFIGS["c4"], dtype, backend=b)
                rows.append(Row(
                    what=f"bptt {label(cell, b)} peak memory vs cache", config="c4",
                    dtype=dtype, derive=m["peak_bytes"], peer="cache",
                    peer_value=m["cache_bytes"], ratio=m["ratio"], target="<= 1.5",
                    met=m["ratio"] <= 1.5, unit="B",
                    note=f"peak in forward {m['peak_forward_bytes'] / m['cache_bytes']:.2f}x, "
                         f"in backward {m['peak_backward_bytes'] / m['cache_bytes']:.2f}x "
                         "the cache",
                    extra={**m, "backend": b}))
    return rows
