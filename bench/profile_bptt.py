"""Where a generated kernel's BPTT step spends its time (a helper for optimising the kernels).

    python bench/profile_bptt.py --cell lstm --config c3 --dtype float32 [--backend numba]
        [--lines] [--cprofile]

Always prints the split forward / backward, the time per time step, and the matmul share
(the step's GEMMs timed alone at their shapes). --lines prints per-line timings of forward and
backward (needs `pip install line_profiler`; benchmark-only, not a project dependency).
--cprofile prints the top functions by own time (NumPy ufuncs and operators do not show up in
cProfile: they are attributed to the calling line, which is what --lines shows).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the `generated` package

from _common import CONFIGS, Policy, median  # noqa: E402
from bptt import gemm_floor, make_inputs  # noqa: E402


def tmed(fn, n: int) -> float:
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru"])
    ap.add_argument("--config", default="c1", choices=list(CONFIGS))
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "numba"])
    ap.add_argument("--repeats", type=int, default=0, help="default: adaptive")
    ap.add_argument("--lines", action="store_true")
    ap.add_argument("--cprofile", action="store_true")
    args = ap.parse_args()
    cfg = CONFIGS[args.config]
    T = cfg[0]
    K, P, xs, R = make_inputs(args.cell, cfg, args.dtype, backend=args.backend)
    t_one = tmed(lambda: K.backward(P, K.forward(P, xs)[1], R), 1)
    n = args.repeats or max(3, min(200, int(2.0 / max(t_one, 1e-6))))
    tf = tmed(lambda: K.forward(P, xs), n)
    # backward consumes its cache (it writes the adjoints over the gates): time it on fresh
    # copies made outside the timed region
    caches = [K.forward(P, xs)[1] for _ in range(n + 1)]
    tb = tmed(lambda: K.backward(P, caches.pop(), R), n)
    caches.clear()
    print(f"{args.cell}[{args.backend}] {args.config} {cfg} {args.dtype}: "
          f"forward {tf * 1e3:.3f} ms "
          f"({tf / T * 1e6:.1f} µs/step), backward {tb * 1e3:.3f} ms ({tb / T * 1e6:.1f} µs/step),"
          f" total {(tf + tb) * 1e3:.3f} ms ({n} repeats)")
    g = gemm_floor(args.cell, cfg, args.dtype, Policy(min_repeats=3, min_time=0.5))
    for k, v in g.items():
        print(f"  matmul alone: {k:45s} {v * 1e3:9.3f} ms  ({v / (tf + tb):5.1%} of the step)")
    if args.cprofile:
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(n):
            K.backward(P, K.forward(P, xs)[1], R)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)
    if args.lines:
        try:
            from line_profiler import LineProfiler
        except ImportError:
            raise SystemExit("--lines needs line_profiler (pip install line_profiler)") from None
        lp = LineProfiler(K.forward, K.backward)
        f = lp(K.forward)
        b = lp(K.backward)
        for _ in range(n):
            b(P, f(P, xs)[1], R)
        lp.print_stats(output_unit=1e-6 if (tf + tb) < 0.05 else 1e-3, stripzeros=True)


if __name__ == "__main__":
    main()
