"""Shared pieces of the benchmark suite: timing, the machine, result rows and the table.

Not a package on purpose: ``bench/run.py`` puts this folder on ``sys.path``.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (T, B, n_in, n_hidden) of the BPTT configs of the issue, and of the RTRL ones.
CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "c1": (50, 1, 32, 32),
    "c2": (100, 16, 64, 128),
    "c3": (100, 64, 256, 256),
    "c4": (200, 128, 512, 512),
}
RTRL_CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "r16": (20, 1, 16, 16),
    "r32": (20, 1, 32, 32),
}
GATES = {"lstm": 4, "gru": 3}
PEER_MODULE = {"lstm": "torch.nn.LSTM", "gru": "torch.nn.GRU"}


@dataclass
class Policy:
    """How many times to run a measurement: at least ``min_repeats`` timed runs after
    ``warmup`` untimed ones, and more until ``min_time`` seconds were spent timing it, but never
    more than ``max_repeats``."""

    min_repeats: int = 3
    min_time: float = 2.0
    max_repeats: int = 500
    warmup: int = 1
    subprocess_runs: int = 7
    # other processes on 2 cores wreck multi-threaded timings (spinning thread pools): when
    # they took more than foreign_max of the CPUs during a measurement, wait for idle CPUs (at
    # most retry_wait s) and measure again, at most `retries` times
    foreign_max: float = 0.10
    retries: int = 2
    retry_wait: float = 300.0


def time_interleaved(fns: dict[str, Callable[[], object]], policy: Policy,
                     block_time: float = 0.5, settle: float = 0.1) -> dict[str, list[float]]:
    """Time every function of ``fns`` in alternating blocks, so that a slow drift of the machine
    (or another process) hits both sides of a ratio alike. A block runs one function for about
    ``block_time`` seconds (at least one call). Before each block the process sleeps ``settle``
    seconds and the function gets one untimed call: the previous library's worker threads spin
    for a while after its last call (OpenBLAS, OpenMP, XLA), and on 2 cores that spinning slows
    the next library's first calls by up to 2x (measured here: torch right after a numpy-heavy
    call 74 ms, after 0.1 s of sleep 34 ms); and on this VM memory the previous side just freed
    is re-faulted slowly by the next side's first call (measured at c4 float32: the NumPy LSTM
    step timed right after torch's 1.69 s, in a steady loop 1.05-1.15 s). Timed calls are thus
    steady-state calls, as in a training loop. Returns name -> list of seconds per call."""
    for fn in fns.values():
        for _ in range(policy.warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}

    def wants(k: str) -> bool:
        ts = times[k]
        if len(ts) < policy.min_repeats:
            return True
        return sum(ts) < policy.min_time and len(ts) < policy.max_repeats

    gc.collect()
    while True:
        todo = [k for k in fns if wants(k)]
        if not todo:
            return times
        for k in todo:
            fn = fns[k]
            if len(fns) > 1:
                time.sleep(settle)
            if len(fns) > 1:
                fn()  # untimed: see the docstring
            start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                fn()
                t1 = time.perf_counter()
                times[k].append(t1 - t0)
                if t1 - start >= block_time or not wants(k):
                    break


def measure(fns: dict[str, Callable[[], object]], policy: Policy, what: str = "",
            log=print) -> tuple[dict[str, list[float]], float | None]:
    """time_interleaved, repeated (after waiting for idle CPUs) while other processes used more
    than policy.foreign_max of the CPUs meanwhile. Returns (times, that share)."""
    for attempt in range(policy.retries + 1):
        fl = ForeignLoad()
        times = time_interleaved(fns, policy)
        share = fl.fraction()
        if share is None or share <= policy.foreign_max or attempt == policy.retries:
            return times, share
        log(f"  {what}: other processes used {share:.0%} of the CPUs; waiting for idle CPUs "
            f"and measuring again", file=sys.stderr)
        wait_idle(policy.retry_wait, log=log)
    return times, share


def busy_note(share: float | None, policy: Policy) -> str:
    return (f"BUSY MACHINE: others used {share:.0%} of the CPUs" if share is not None
            and share > policy.foreign_max else "")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


@dataclass
class Row:
    """One line of the table. ``ratio`` is derive / peer (lower is better for derive) unless
    ``ratio_text`` says otherwise; ``met`` is None where the issue sets no target."""

    what: str
    config: str
    dtype: str
    derive: float | None = None  # seconds, or bytes when unit == "B"
    peer: str = ""
    peer_value: float | None = None
    ratio: float | None = None
    ratio_text: str = ""
    target: str = ""
    met: bool | None = None
    unit: str = "s"
    n_derive: int = 0
    n_peer: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def fmt_value(v: float | None, unit: str = "s") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "B":
        return f"{v / 2**20:.1f} MiB"
    if v >= 1:
        return f"{v:.3g} s"
    if v >= 1e-3:
        return f"{v * 1e3:.3g} ms"
    return f"{v * 1e6:.3g} µs"


def fmt_ratio(r: Row) -> str:
    if r.ratio_text:
        return r.ratio_text
    if r.ratio is None or math.isnan(r.ratio):
        return "-"
    return f"{r.ratio:.3g}"


def fmt_met(m: bool | None) -> str:
    return "-" if m is None else ("yes" if m else "NO")


HEADER = ("what", "config", "dtype", "derive median", "peer median", "ratio", "target", "met?")


def table_cells(rows: list[Row]) -> list[tuple[str, ...]]:
    out = []
    for r in rows:
        peer = f"{r.peer} {fmt_value(r.peer_value, r.unit)}".strip() if r.peer else "-"
        what = r.what + (f" [{r.note}]" if r.note else "")
        out.append((what, r.config, r.dtype, fmt_value(r.derive, r.unit), peer, fmt_ratio(r),
                    r.target or "-", fmt_met(r.met)))
    return out


def text_table(rows: list[Row]) -> str:
    cells = [HEADER, *table_cells(rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = []
    for j, c in enumerate(cells):
        lines.append("  ".join(s.ljust(w) for s, w in zip(c, widths, strict=True)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    cells = table_cells(rows)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for c in cells:
        lines.append("| " + " | ".join(s.replace("|", "\\|") for s in c) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The machine


def cpu_idle(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs idle over ``seconds`` (from /proc/stat; None where unavailable)."""

    def sample():
        with open("/proc/stat") as fh:
            v = [int(x) for x in fh.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total

    try:
        i0, t0 = sample()
        time.sleep(seconds)
        i1, t1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (i1 - i0) / max(t1 - t0, 1)


class ForeignLoad:
    """CPU time other processes used while this one ran, as a fraction of all CPUs: the share
    of the machine the benchmark did not have (0 on a quiet machine)."""

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as fh:
                v = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        t = os.times()
        busy = (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
        return busy, t.user + t.system + t.children_user + t.children_system, time.monotonic()

    def fraction(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start, strict=True))
        return max(0.0, busy - own) / max(wall * (os.cpu_count() or 1), 1e-9)


def wait_idle(max_wait: float, threshold: float = 0.9, log=print) -> float | None:
    """Wait (at most ``max_wait`` s) until the CPUs were >= ``threshold`` idle for 3 s in a row;
    returns the last idle fraction seen."""
    start = time.monotonic()
    streak, idle, said = 0, None, -1e9
    while time.monotonic() < start + max_wait:
        idle = cpu_idle(1.0)
        if idle is None:
            return None
        streak = streak + 1 if idle >= threshold else 0
        if streak >= 3:
            return idle
        if streak == 0 and time.monotonic() - said >= 30:
            said = time.monotonic()
            log(f"  waiting for idle CPUs: {idle:.0%} idle ({said - start:.0f} s so far)",
                file=sys.stderr)
    return idle


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_info() -> dict:
    """What numpy was built against, and the BLAS thread pools threadpoolctl sees (if any)."""
    import numpy as np

    info: dict = {}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no mode="dicts"
        info["numpy_blas"] = "unknown"
    try:
        from threadpoolctl import threadpool_info

        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas_threads"] = [
            {"internal_api": p.get("internal_api"), "num_threads": p.get("num_threads"),
             "version": p.get("version"), "architecture": p.get("architecture"),
             "prefix": p.get("prefix")}
            for p in pools
        ]
    except ImportError:
        info["blas_threads"] = "unknown (threadpoolctl not installed)"
    return info


def cpu_isa() -> list[str]:
    """The wide-vector extensions the CPU reports (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")
                        if f in flags]
    except OSError:
        pass
    return []


def blas_mismatch(info: dict) -> str:
    """A warning when OpenBLAS runs kernels narrower than the CPU offers. OpenBLAS picks its
    kernels at load time from OPENBLAS_CORETYPE or, unset, from the CPU model; this machine's
    environment sets OPENBLAS_CORETYPE=Haswell (AVX2) on an AVX-512 CPU, which halves NumPy's
    float32 GEMM throughput, while torch's oneDNN uses AVX-512 regardless. The benchmark keeps
    whatever the environment says and reports it; see bench/README.md for both settings."""
    if "avx512f" not in info.get("cpu_isa", []):
        return ""
    bt = info.get("blas_threads")
    archs = [p.get("architecture", "") for p in bt] if isinstance(bt, list) else []
    if any(a.lower() in ("haswell", "zen", "sandybridge") for a in archs):
        why = (f"pinned by OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']}"
               if os.environ.get("OPENBLAS_CORETYPE") else "its choice for this CPU model")
        return ("WARNING: the CPU has AVX-512 but OpenBLAS runs its " + "/".join(archs)
                + f" kernels ({why}): NumPy's GEMMs at about half the CPU's speed "
                "(OPENBLAS_CORETYPE=SkylakeX selects the AVX-512 ones)")
    return ""


def machine_info(torch_threads: int | None = None) -> dict:
    import numpy as np

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        **blas_info(),
        "cpu_isa": cpu_isa(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
    }
    info["blas_warning"] = blas_mismatch(info)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = (torch_threads if torch_threads is not None
                                 else torch.get_num_threads())
        info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    except ImportError:
        info["torch"] = "not installed"
    try:
        import jax

        info["jax"] = jax.__version__
    except ImportError:
        info["jax"] = "not installed"
    return info


def kernel_fingerprint(cells) -> dict:
    """Which generated kernels are measured: the file and a hash of its text per cell."""
    import hashlib
    import importlib

    out = {}
    for c in cells:
        try:
            m = importlib.import_module(f"derive.kernels.{c}")
            text = Path(m.__file__).read_bytes()
            out[c] = {"file": m.__file__, "sha256": hashlib.sha256(text).hexdigest()[:12]}
        except Exception as e:  # report, the sections will fail loudly
            out[c] = {"error": f"{type(e).__name__}: {e}"}
    return out


def machine_text(info: dict) -> str:
    bt = info.get("blas_threads")
    if isinstance(bt, list):
        bt = ", ".join(f"{p['internal_api']} {p['version']} ({p['architecture']}) "
                       f"{p['num_threads']} threads" for p in bt) or "none found"
    lines = [
        f"CPU: {info['cpu']}, {info['cores']} cores ({info['platform']})",
        f"Python {info['python']}, numpy {info['numpy']} with {info['numpy_blas']}; BLAS at run "
        f"time: {bt}",
        f"CPU vector extensions: {', '.join(info.get('cpu_isa') or ['unknown'])}; "
        f"OPENBLAS_CORETYPE={info.get('openblas_coretype') or 'unset'}"
        + (f"; {info['blas_warning']}" if info.get("blas_warning") else ""),
        f"torch {info.get('torch')} ({info.get('torch_threads')} threads, mkldnn "
        f"{info.get('torch_mkldnn')}); jax {info.get('jax')}",
    ]
    if info.get("kernels"):
        lines.append("kernels: " + ", ".join(
            f"{c} {k.get('file', '?')} sha256 {k.get('sha256', k.get('error'))}"
            for c, k in info["kernels"].items()))
    la, lb = info.get("loadavg_at_start"), info.get("loadavg_at_end")
    if info.get("foreign_cpu_share") is not None:
        lines.append(f"other processes used {info['foreign_cpu_share']:.0%} of the CPUs during "
                     f"the run (0% = quiet machine)")
    if la:
        lines.append(f"load average (1/5/15 min) at start {'/'.join(f'{x:.2f}' for x in la)}"
                     + (f", at end {'/'.join(f'{x:.2f}' for x in lb)}" if lb else ""))
    return "\n".join(lines)
