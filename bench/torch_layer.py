"""The derived torch layer (derive.torch.RNN) against torch.nn.LSTM / nn.GRU, forward+backward
on the CPU at the bench sizes, in one run; and the derived JAX functions (derive.jax) against
jax.grad through lax.scan of the same cell (the kernel's own forward scan, no custom rule).

    python bench/torch_layer.py [--configs c2,c3,c4] [--dtypes float32,float64] [--cells lstm,gru]
                                [--backends auto,torch] [--no-jax] [--no-torch] [--min-time S]

``--backends``: what runs under derive.torch.RNN (``backend=``): auto (the fused numba loops on
the CPU when numba is installed) and torch (the torch-printed kernels).

Medians of interleaved timings (bench/_common.py), ratio = derived / peer (below 1: faster).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CONFIGS, Policy, busy_note, machine_info, machine_text, measure, median  # noqa: E402


def torch_pair(cell: str, cfg, dtype: str, backend: str = "auto"):
    import torch

    import derive.torch as dt

    T, B, n_in, n = cfg
    td = getattr(torch, dtype)
    torch.manual_seed(0)
    ref = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](n_in, n, dtype=td)
    ours = dt.RNN(cell, n_in, n, dtype=td, backend=backend)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, n_in, dtype=td)
    r = torch.randn(T, B, n, dtype=td)

    def step(m):
        def run():
            m.zero_grad(set_to_none=True)
            out, _ = m(x)
            (out * r).sum().backward()
        return run

    return {"derive.torch": step(ours), "torch.nn": step(ref)}


def jax_pair(cell: str, cfg, dtype: str):
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from derive.codegen.jax_backend import load_jax_kernel
    from derive.codegen.load import load_kernel
    from derive.jax import sequence_vjp

    T, B, n_in, n = cfg
    K = load_jax_kernel(cell)
    P = {k: jnp.asarray(v) for k, v in load_kernel(cell).init_params(n_in, n, seed=0,
                                                                     dtype=dtype).items()}
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((T, B, n_in)).astype(dtype))
    r = jnp.asarray(rng.standard_normal((T, B, n)).astype(dtype))
    s0 = {s: jnp.zeros((B, n), dtype) for s in K.STATE}
    f = sequence_vjp(cell)
    ours = jax.jit(jax.grad(lambda p: jnp.sum(f(p, x, s0)[0] * r)))
    peer = jax.jit(jax.grad(lambda p: jnp.sum(K.forward(p, x, s0)[0] * r)))

    def run(g):
        return lambda: jax.block_until_ready(g(P))

    return {"derive.jax": run(ours), "jax.grad(lax.scan)": run(peer)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--configs", default="c2,c3,c4")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--no-torch", action="store_true", help="the JAX rows only")
    ap.add_argument("--backends", default="auto,torch",
                    help="derive.torch.RNN backends to time (auto: numba on the CPU)")
    ap.add_argument("--min-time", type=float, default=2.0)
    args = ap.parse_args(argv)
    policy = Policy(min_repeats=3, min_time=args.min_time, retries=0)
    print(machine_text(machine_info()))
    print(f"{'what':28s} {'config':6s} {'dtype':8s} {'derived':>10s} {'peer':>10s} {'ratio':>6s}")
    sides = [(f"torch[{b}]", lambda cell, cfg, dt, b=b: torch_pair(cell, cfg, dt, b))
             for b in ([] if args.no_torch else args.backends.split(","))]
    sides += [] if args.no_jax else [("jax", jax_pair)]
    for lib, make in sides:
        for c in args.configs.split(","):
            for dtype in args.dtypes.split(","):
                for cell in args.cells.split(","):
                    fns = make(cell, CONFIGS[c], dtype)
                    times, share = measure(fns, policy, what=f"{lib} {cell} {c}",
                                           log=lambda *a, **k: print(*a, **k))
                    ours, peer = (median(times[k]) for k in fns)
                    print(f"{lib + ' ' + cell:28s} {c:6s} {dtype:8s} {ours:10.4f} {peer:10.4f} "
                          f"{ours / peer:6.2f} {busy_note(share, policy)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
