"""Cold-process time to derive every built-in cell (issue: core engine, target < 2 s).

Each run starts a fresh Python, imports derive (and sympy, which the derivation of the SymPy
views needs) and derives every mode of every built-in cell: forward for every parameter, the
state Jacobian, reverse mode, and the LaTeX of all three. Prints the median of the runs.

    python bench/derive_cold.py [--runs 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CODE = """
import time
t0 = time.perf_counter()
import sympy  # noqa: F401  (counted: the SymPy view is part of a derivation)
import derive
from derive.printing import latex as L
for c in derive.cells():
    d = derive.derive(c)
    d.jacobian, d.forward, d.reverse
    for mode in ("forward", "reverse", "jacobian"):
        L.render_mode(d, mode)
print(time.perf_counter() - t0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()
    inner, outer = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CODE], check=True, capture_output=True,
                             text=True).stdout
        outer.append(time.perf_counter() - t)
        inner.append(float(out))
    res = {"runs": args.runs, "median_in_process_s": statistics.median(inner),
           "median_wall_incl_interpreter_s": statistics.median(outer), "target_s": 2.0}
    print(f"derive all built-in cells, cold: median {res['median_in_process_s']:.3f} s "
          f"(process wall incl. interpreter start {res['median_wall_incl_interpreter_s']:.3f} s; "
          f"target < 2 s; {args.runs} runs)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
