"""Cold-process costs: ``derive generate`` of all built-in cells, and the import time of a
generated module compared with ``import numpy`` alone. Every run is a fresh interpreter."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _common import ROOT, ForeignLoad, Policy, Row, busy_note, median

GEN_FALLBACK = """
import time
t0 = time.perf_counter()
import derive.tools.generate as g
files = g.outputs()
print(time.perf_counter() - t0, len(files))
"""

IMPORT = """
import time
t0 = time.perf_counter()
import {module}
print(time.perf_counter() - t0)
"""


def _run(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, p.stdout


def generate_command(out: str) -> tuple[list[str] | None, str]:
    """The ``derive generate --out DIR`` command when the CLI has it, else None and why."""
    if importlib.util.find_spec("derive.cli") is None:
        return None, "derive.cli not present yet"
    exe = shutil.which("derive")
    base = [exe] if exe else [sys.executable, "-c",
                              "import sys; from derive.cli import main; sys.exit(main())"]
    try:
        p = subprocess.run([*base, "generate", "--help"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"derive generate --help failed: {e}"
    if p.returncode or "--out" not in p.stdout:
        return None, "derive generate has no --out option (would overwrite generated/)"
    return [*base, "generate", "--out", out], ""


def run_generate(policy: Policy, log=print) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="derive-bench-") as tmp:
        cmd, why = generate_command(os.path.join(tmp, "generated"))
        if cmd is not None:
            what, note = "derive generate --out DIR (all cells), cold process", ""
        else:
            cmd = [sys.executable, "-c", GEN_FALLBACK]
            what = "derive.tools.generate.outputs() (all cells), cold process"
            note = f"CLI fallback: {why}"
        log(f"  generate: {' '.join(cmd[:2])} ...", file=sys.stderr)
        _run(cmd)  # warm-up (bytecode caches)
        fl = ForeignLoad()
        walls, inner = [], []
        for _ in range(policy.subprocess_runs):
            wall, out = _run(cmd)
            walls.append(wall)
            if cmd[1] == "-c" and out.strip():
                inner.append(float(out.split()[0]))
    w = median(walls)
    busy = busy_note(fl.fraction(), policy)
    rows.append(Row(what=what, config="all", dtype="-", derive=w, target="<= 2 s",
                    met=w <= 2.0, n_derive=len(walls),
                    note=(note + "; " if note else "") + "wall time incl. interpreter start"
                    + (f"; {median(inner):.3g} s in-process" if inner else "")
                    + (f"; {busy}" if busy else ""),
                    extra={"walls": walls, "in_process": inner, "command": cmd[:4]}))
    # the older core-engine measurement (bench/derive_cold.py): derive every mode + LaTeX
    try:
        import derive_cold

        walls, inner = [], []
        _run([sys.executable, "-c", derive_cold.CODE])
        for _ in range(policy.subprocess_runs):
            wall, out = _run([sys.executable, "-c", derive_cold.CODE])
            walls.append(wall)
            inner.append(float(out))
        rows.append(Row(what="derive every cell, every mode + LaTeX (bench/derive_cold.py)",
                        config="all", dtype="-", derive=median(inner), target="< 2 s (core)",
                        met=median(inner) < 2.0, n_derive=len(inner),
                        note=f"in-process; wall {median(walls):.3g} s",
                        extra={"walls": walls, "in_process": inner}))
    except Exception as e:  # informational row only
        log(f"  derive_cold skipped: {e}", file=sys.stderr)
    return rows


def run_import(cells, policy: Policy, backends=("numpy",), log=print) -> list[Row]:
    """Median in-process import time of ``generated.<cell>`` vs ``numpy`` alone, each in fresh
    interpreters, interleaved. Other backends' modules (generated.<cell>_numba) are reported
    without a target: they import their compiler."""
    rows = []
    mods = ["numpy"] + [f"derive.kernels.{c}" + ("" if b == "numpy" else f"_{b}")
                        for b in backends for c in cells]
    cmds = {m: [sys.executable, "-c", IMPORT.format(module=m)] for m in mods}
    for m in mods:  # warm-up: bytecode caches
        _run(cmds[m])
    times: dict[str, list[float]] = {m: [] for m in mods}
    fl = ForeignLoad()
    log(f"  import: {', '.join(mods)} x {policy.subprocess_runs} ...", file=sys.stderr)
    for _ in range(max(policy.subprocess_runs, 5)):
        for m in mods:
            times[m].append(float(_run(cmds[m])[1]))
    np_med = median(times["numpy"])
    busy = busy_note(fl.fraction(), policy)
    for mod in mods[1:]:
        m = median(times[mod])
        d = m - np_med
        is_tgt = not mod.endswith(tuple(f"_{b}" for b in backends if b != "numpy"))
        rows.append(Row(what=f"import {mod} vs import numpy", config="cold", dtype="-",
                        derive=m, peer="numpy", peer_value=np_med, ratio=m / np_med,
                        ratio_text=f"{d * 1e3:+.1f} ms", target="<= +20 ms" if is_tgt else "",
                        met=(d <= 0.020) if is_tgt else None,
                        note="; ".join(filter(None, [
                            "" if is_tgt else "optional backend, imports its compiler", busy])),
                        n_derive=len(times[mod]), n_peer=len(times["numpy"]),
                        extra={"times": times[mod], "numpy_times": times["numpy"]}))
    return rows
