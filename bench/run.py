"""derive's benchmark suite: generated kernels vs torch (and jax when installed), in one process.

    python bench/run.py                       # everything (several minutes on 2 cores)
    python bench/run.py --quick               # c1, c2 only, fewer repeats (development)
    python bench/run.py --only bptt --configs c3 --dtypes float32 --cells lstm
    python bench/run.py --markdown --json bench/results.json   # what bench/README.md pastes

Sections (--only): bptt (training step vs torch.nn.LSTM/GRU, jax and the GEMM roofline), rtrl
(vs torch.func.jacfwd and jax.jacfwd), generate (`derive generate`, cold), import (a generated
module vs numpy alone, cold), memory (peak of BPTT at c4 vs the cache). Medians of repeated
runs after one warm-up; ratios are derive / peer, measured in the same run, the two sides
interleaved. Progress goes to stderr, the table to stdout. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    CONFIGS,
    RTRL_CONFIGS,
    ForeignLoad,
    Policy,
    kernel_fingerprint,
    machine_info,
    machine_text,
    markdown_table,
    text_table,
    wait_idle,
)

SECTIONS = ("bptt", "rtrl", "generate", "import", "memory")


def _csv(s: str, allowed, what: str) -> list[str]:
    items = [x.strip() for x in s.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(allowed)})")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections (default: all of {','.join(SECTIONS)})")
    ap.add_argument("--configs", help="BPTT configs (default c1,c2,c3,c4; --quick: c1,c2)")
    ap.add_argument("--rtrl-configs", default=",".join(RTRL_CONFIGS),
                    help="RTRL configs: r16 = (T=20,B=1,16,16), r32 = (20,1,32,32)")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--repeats", type=int, help="minimum timed runs per measurement (default 3)")
    ap.add_argument("--min-time", type=float,
                    help="keep repeating until this many seconds per side (default 3; quick 0.3)")
    ap.add_argument("--max-repeats", type=int, default=1000)
    ap.add_argument("--quick", action="store_true", help="c1,c2 only and fewer repeats")
    ap.add_argument("--backends", default="numpy,numba",
                    help="kernel backends for bptt/memory/import: numpy = derive.kernels.<cell>, "
                         "numba = derive.kernels.<cell>_numba (skipped when it does not import)")
    ap.add_argument("--kernels", metavar="DIR",
                    help="use the kernel package in DIR (`derive generate --out DIR`) as "
                         "derive.kernels in this process (e.g. to compare old and new kernels; "
                         "the import-time section measures the installed kernels)")
    ap.add_argument("--threads", type=int,
                    help="torch threads and numpy BLAS threads (default: os.cpu_count())")
    ap.add_argument("--foreign-max", type=float, default=0.10, metavar="F",
                    help="re-measure when other processes used more than this share of the "
                         "CPUs during a measurement (default 0.10)")
    ap.add_argument("--retries", type=int, default=2,
                    help="re-measurements on a busy machine (each after waiting up to 300 s for "
                         "idle CPUs; default 2)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="S",
                    help="first wait up to S seconds until the CPUs are idle (other processes "
                         "on 2 cores make multi-threaded timings meaningless)")
    ap.add_argument("--no-jax", action="store_true", help="skip jax even if it is installed")
    ap.add_argument("--json", help="write machine info and all rows (with raw times) here")
    ap.add_argument("--markdown", action="store_true",
                    help="print the machine and the table as Markdown (for bench/README.md)")
    args = ap.parse_args(argv)

    sections = _csv(args.only, SECTIONS, "section")
    configs = _csv(args.configs or ("c1,c2" if args.quick else ",".join(CONFIGS)), CONFIGS,
                   "config")
    rconfigs = _csv(args.rtrl_configs, RTRL_CONFIGS, "rtrl config")
    dtypes = _csv(args.dtypes, ("float32", "float64"), "dtype")
    cells = _csv(args.cells, ("lstm", "gru"), "cell")
    policy = Policy(
        min_repeats=args.repeats or 3,
        min_time=args.min_time if args.min_time is not None else (0.3 if args.quick else 3.0),
        max_repeats=args.max_repeats,
        subprocess_runs=3 if args.quick else 7,
        foreign_max=args.foreign_max,
        retries=args.retries,
    )

    if args.kernels:
        # a kernel package (derive generate --out DIR) stands in for derive.kernels in this
        # process: its modules import relatively, so any folder works
        import importlib.util

        kdir = Path(args.kernels).resolve()
        if not (kdir / "__init__.py").exists():
            raise SystemExit(f"--kernels: {kdir}/__init__.py not found (write a kernel package "
                             f"with `derive generate --out DIR`)")
        import derive  # noqa: F401  (the parent package first)

        spec = importlib.util.spec_from_file_location(
            "derive.kernels", kdir / "__init__.py", submodule_search_locations=[str(kdir)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["derive.kernels"] = mod
        spec.loader.exec_module(mod)
    threads = args.threads or os.cpu_count()
    if args.wait_idle > 0:
        idle = wait_idle(args.wait_idle)
        print(f"CPUs idle before the run: {idle:.0%}" if idle is not None else
              "CPU idleness unknown", file=sys.stderr)
    import torch

    torch.set_num_threads(threads)
    if args.threads:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads, user_api="blas")
        except ImportError:
            print("--threads: threadpoolctl not installed, numpy BLAS threads unchanged",
                  file=sys.stderr)
    info = machine_info(torch.get_num_threads())
    info["kernels"] = kernel_fingerprint(cells)  # the numpy kernels
    print(machine_text(info), file=sys.stderr)
    print("(medians; ratio = derive / peer; other processes on these cores skew both sides)",
          file=sys.stderr)
    t_start = time.perf_counter()
    foreign = ForeignLoad()
    rows = []
    import bptt

    backends = bptt.available_backends(cells, _csv(args.backends, bptt.BACKENDS, "backend"))
    info["backends"] = backends
    if "bptt" in sections:
        rows += bptt.run(cells, configs, dtypes, policy, use_jax=not args.no_jax,
                         backends=backends)
    if "rtrl" in sections:
        import rtrl

        rows += rtrl.run(cells, dtypes, policy, use_jax=not args.no_jax, configs=rconfigs,
                         backends=backends)
    if "memory" in sections:
        rows += bptt.run_memory(cells, dtypes, backends=backends)
    if "generate" in sections:
        import startup

        rows += startup.run_generate(policy)
    if "import" in sections:
        import startup

        rows += startup.run_import(cells, policy, backends=backends)
    elapsed = time.perf_counter() - t_start
    info["foreign_cpu_share"] = foreign.fraction()
    if hasattr(os, "getloadavg"):
        info["loadavg_at_end"] = os.getloadavg()

    cmd = "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.markdown:
        print(f"Command: `{cmd.strip()}` ({elapsed:.0f} s)\n")
        print("Machine:\n")
        for line in machine_text(info).splitlines():
            print(f"- {line}")
        print()
        print(markdown_table(rows))
    else:
        print(text_table(rows))
        print(f"\n{machine_text(info)}\n{cmd.strip()}: {elapsed:.0f} s")
    missed = [r for r in rows if r.met is False]
    print(f"\ntargets: {sum(r.met is True for r in rows)} met, {len(missed)} missed",
          file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": cmd.strip(), "elapsed_s": elapsed, "machine": info,
                       "policy": policy.__dict__, "rows": [r.as_dict() for r in rows]},
                      fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
