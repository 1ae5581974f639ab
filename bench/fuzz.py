"""Fuzz derive: random valid cells, every kernel mode of every backend vs an independent reference.

    python bench/fuzz.py --cells 200 --seed 1 --backends numpy          # 20-60 s
    python bench/fuzz.py --cells 20 --seed 1                             # numpy and numba
    python bench/fuzz.py --cells 200 --seed 1 --jobs 2 --show 10 --json /tmp/fuzz.json
    python bench/fuzz.py --builtin                                       # the built-in cells
    python bench/fuzz.py --cells 200 --seed 1 --backends numpy --shrink 10   # + minimal specs

Each cell is drawn by ``tests/cell_strategies.py`` (from ``random.Random("SEED:INDEX")``, so one
cell reproduces alone: ``--only INDEX``) and checked:

read      ``derive.get_spec(spec)``: a ``derive.SpecError`` is "refused at read" (fine when its
          message names a node, parameter or state of the spec; otherwise "refused unclear",
          a failure); any other exception is a crash;
per backend (``derive.codegen.load_kernel``), against ``tests/fuzz_reference.py`` (torch
          autograd, no derive code):
  load            printing and importing the kernel
  init            ``init_params``: the spec's parameters, shapes, dtype
  forward         hs and the final states from a random initial state
  readout         ``readout(params, hs)`` (or ``readout(params, cache)``, whichever the module
                  takes) and ``backward(..., dys=...)`` with the readout's parameters (n/a when
                  the spec has no readout or the module no READOUT)
  backward        every parameter, every initial state ("<state>0") and xs, with random dhs and
                  dstate
  rtrl            dh_T/dA for every parameter from a random initial state
  rtrl_step       one step from a random state with sens=None, then one passing sens
  state_jacobian  d(states at t)/d(states at t-1)
docs      ``derive.document.latex_doc.document(..., standalone=True)`` (what ``derive latex CELL
          --standalone`` prints) and ``derive.document.text.show`` (``derive show CELL``): no crash,
          every state named, balanced braces and environments (``--pdflatex``: and it compiles).

Outcomes: ok, wrong (|got - want| > 1e-8 (1 + max |want|) anywhere, a wrong shape or key, a
non-finite value, a kernel that wrote into its params, xs or state), crash (an exception: type,
message and the line it came from), refused late (a clear error after read:
numba_backend.Unsupported, SpecError, NotImplementedError, NotationError), n/a. Exit status 1
when any cell has a wrong, crash, refused-late or refused-unclear outcome; 0 otherwise.

``--shrink K`` takes the K most frequent kinds of failure (backend/mode/outcome/exception type)
and shrinks the smallest failing spec of each, one edit at a time (drop a state, a readout, a
node, a term or a factor, unwrap a call or a matvec, rename to plain names, smaller sizes),
keeping an edit when derive still accepts the spec and it still fails the same way.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import re
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import cell_strategies  # noqa: E402
import fuzz_reference  # noqa: E402

MODES = ("load", "init", "forward", "readout", "backward", "rtrl", "rtrl_step", "state_jacobian")
DOCS = ("latex", "text")
STATUSES = ("ok", "wrong", "crash", "refused_late", "n/a")
FAILURES = ("wrong", "crash", "refused_late")
RTOL = 1e-8


class Wrong(AssertionError):
    """A kernel result differs from the reference (the message says where and by how much)."""


@dataclass
class Result:
    backend: str  # numpy | numba | docs
    mode: str
    status: str  # ok | wrong | crash | refused_late | n/a
    detail: str = ""
    deviation: float | None = None  # the largest |got - want| seen (ok and wrong)


@dataclass
class CellReport:
    index: int
    seed: int
    spec: dict
    text: str
    sizes: dict
    read: str = "ok"  # ok | refused | refused_unclear | crash
    read_message: str = ""
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.status in FAILURES]

    @property
    def failed(self) -> bool:
        return bool(self.failures) or self.read in ("refused_unclear", "crash")


# ------------------------------------------------------------------------------ the data


def draw(seed: int, index: int) -> tuple[dict, dict]:
    """The spec and sizes of cell ``index`` of run ``seed`` (reproducible alone)."""
    rnd = random.Random(f"{seed}:{index}")
    spec = cell_strategies.generate(rnd, name=f"fuzz{index}")
    return spec, cell_strategies.sizes_for(rnd)


def make_data(spec: Mapping[str, Any], sizes: Mapping[str, int], seed: int = 0,
              scale: float = 1.0) -> dict:
    """Parameters (not saturating), xs, initial states, cotangents, all float64; ``scale``
    shrinks parameters, inputs and states together (see :func:`tame_data`)."""
    cell = fuzz_reference.Cell.from_spec(spec)
    n, m, o = sizes["n_hidden"], sizes["n_in"], sizes["n_out"]
    T, B = sizes.get("T", 3), sizes.get("B", 2)
    rng = np.random.default_rng(seed)
    amount = scale
    params = {}
    for name, shape in cell.shapes(n, m, o).items():
        scale = 0.8 / np.sqrt(shape[1]) if len(shape) == 2 else 0.5
        params[name] = rng.uniform(-scale, scale, size=shape) * amount
    states = cell.states

    def st():
        return {s: rng.normal(size=(B, n)) * 0.5 * amount for s in states}

    return {
        "params": params, "xs": rng.normal(size=(T, B, m)) * 0.8 * amount, "state0": st(),
        "dhs": rng.normal(size=(T, B, n)), "dstate": {s: rng.normal(size=(B, n)) for s in states},
        "dys": {r: rng.normal(size=(T, B, o)) for r in cell.readout},
        "step_state": st(), "sizes": dict(sizes),
    }


def tame_data(spec: Mapping[str, Any], sizes: Mapping[str, int], seed: int = 0
              ) -> tuple[dict, dict]:
    """Data whose reference forward stays below 1e3 in magnitude (and its reference): a cell
    that squares its state each step (c = a * a * a) explodes to 1e10 in three steps from
    random data, and there float64 rounding alone, in the reference as in a kernel, exceeds
    any fixed relative tolerance (measured: two algorithms of derive, BPTT and RTRL, agree to
    4e-13 relative where the reference differs by 1e-7). The data are scaled down until the
    comparison is meaningful; the cell is still checked, never skipped."""
    scale = 1.0
    for _ in range(8):
        data = make_data(spec, sizes, seed=seed, scale=scale)
        ref = reference(spec, data)
        big = max([float(np.max(np.abs(ref["fwd"]["hs"])))] +
                  [float(np.max(np.abs(v))) for v in ref["fwd"]["state"].values()])
        if big <= 1e3:
            break
        scale /= 2
    return data, ref


def reference(spec: Mapping[str, Any], data: dict) -> dict:
    """Everything the kernels compute, from the reference (numpy arrays); RTRL for every
    parameter (a readout parameter's is zero)."""
    R = fuzz_reference
    p, xs, s0 = data["params"], data["xs"], data["state0"]
    cell = R.Cell.from_spec(spec)
    names = list(p)
    st = data["step_state"]
    step1 = R.rtrl_step(cell, p, xs[0], st, None, names=names)
    out = {"fwd": R.forward(cell, p, xs, s0),
           "grads": R.gradients(cell, p, xs, s0, data["dhs"], data["dstate"]),
           "rtrl": R.rtrl(cell, p, xs, s0, names=names),
           "step1": step1,
           "step2": R.rtrl_step(cell, p, xs[1], step1[0], step1[1], names=names),
           "jac": R.state_jacobian(cell, p, xs[0], st)}
    if cell.readout:
        out["grads_y"] = R.gradients(cell, p, xs, s0, data["dhs"], data["dstate"], data["dys"])
    return out


# ------------------------------------------------------------------------------ comparisons


def compare(what: str, got: Any, want: np.ndarray) -> float:
    """The largest |got - want|; raises Wrong past the tolerance, on a shape or a NaN."""
    want = np.asarray(want)
    if not isinstance(got, np.ndarray):
        raise Wrong(f"{what}: got {type(got).__name__}, expected an array of shape {want.shape}")
    if got.shape != want.shape:
        raise Wrong(f"{what}: shape {got.shape}, expected {want.shape}")
    if got.dtype != np.float64:
        raise Wrong(f"{what}: dtype {got.dtype}, expected float64")
    if not np.all(np.isfinite(got)):
        raise Wrong(f"{what}: non-finite values")
    dev = float(np.max(np.abs(got - want))) if want.size else 0.0
    tol = RTOL * (1.0 + (float(np.max(np.abs(want))) if want.size else 0.0))
    if dev > tol:
        raise Wrong(f"{what}: max |got - want| = {dev:.3g} (tolerance {tol:.1g})")
    return dev


def compare_dict(what: str, got: Any, want: Mapping[str, np.ndarray],
                 keys: Iterable[str] | None = None) -> float:
    if not isinstance(got, Mapping):
        raise Wrong(f"{what}: got {type(got).__name__}, expected a dict")
    dev = 0.0
    for k in (want if keys is None else keys):
        if k not in got:
            raise Wrong(f"{what}: missing {k!r} (has {sorted(got)})")
        dev = max(dev, compare(f"{what}[{k!r}]", got[k], want[k]))
    return dev


def _unchanged(where: str, passed: Any, original: Any, path: str = "") -> None:
    """Raise Wrong when a kernel wrote into an array it was given (compared with the data it
    was copied from)."""
    if isinstance(passed, Mapping):
        for k, v in passed.items():
            _unchanged(where, v, original[k], f"{path}[{k!r}]" if path else str(k))
    elif isinstance(passed, np.ndarray) and not np.array_equal(passed, original):
        raise Wrong(f"{where} wrote into its argument {path}")


def _get(d: Any, key: str) -> Any:
    return d.get(key) if isinstance(d, Mapping) else d


def _copy(d):
    if isinstance(d, Mapping):
        return {k: _copy(v) for k, v in d.items()}
    return np.array(d, copy=True) if isinstance(d, np.ndarray) else d


def _refusal_types() -> tuple[type, ...]:
    import derive
    from derive.printing.notation import NotationError

    kinds: list[type] = [derive.SpecError, NotImplementedError, NotationError]
    try:
        from derive.codegen.numba_backend import Unsupported
        kinds.append(Unsupported)
    except Exception:  # noqa: BLE001 (numba printer missing or mid-edit)
        pass
    return tuple(kinds)


def _where(exc: BaseException) -> str:
    """The innermost frame of a traceback that is derive's or a printed kernel's."""
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        f = fr.filename
        if "derive" in f or "/generated/" in f:
            short = f.split("/")[-1]
            return f"{short}:{fr.lineno} {fr.line or ''}".strip()
    return ""


def run_mode(backend: str, mode: str, fn) -> Result:
    try:
        dev = fn()
    except Wrong as exc:
        return Result(backend, mode, "wrong", str(exc), _dev_of(str(exc)))
    except _refusal_types() as exc:
        return Result(backend, mode, "refused_late", f"{type(exc).__name__}: {_first(exc)}")
    except Exception as exc:  # noqa: BLE001 (a crash is what the fuzz reports)
        where = _where(exc)
        detail = f"{type(exc).__name__}: {_first(exc)}" + (f"  [at {where}]" if where else "")
        return Result(backend, mode, "crash", detail)
    if isinstance(dev, str) and dev.startswith("n/a"):
        return Result(backend, mode, "n/a", dev[5:])
    return Result(backend, mode, "ok", "", dev)


def _first(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]


def _dev_of(msg: str) -> float | None:
    m = re.search(r"= ([0-9.e+-]+) \(tolerance", msg)
    return float(m.group(1)) if m else None


# ------------------------------------------------------------------------------ checks


def check_backend(spec: Mapping[str, Any], data: dict, ref: dict, backend: str) -> list[Result]:
    """Every mode of one backend's kernel vs the reference."""
    from derive.codegen import load_kernel

    cell = fuzz_reference.Cell.from_spec(spec)
    sizes = data["sizes"]
    n, m, o = sizes["n_hidden"], sizes["n_in"], sizes["n_out"]
    xs, s0, P = data["xs"], data["state0"], data["params"]
    holder: dict[str, Any] = {}

    def load():
        holder["mod"] = load_kernel(dict(spec), backend)
        return 0.0

    out = [run_mode(backend, "load", load)]
    if "mod" not in holder:
        return out + [Result(backend, md, "n/a", "not loaded") for md in MODES[1:]]
    mod = holder["mod"]
    has_readout = bool(cell.readout) and hasattr(mod, "READOUT")

    def kparams():
        names = list(mod.PARAMS)
        unknown = [k for k in names if k not in P]
        if unknown:
            raise Wrong(f"PARAMS has {unknown}, not parameters of the spec")
        return {k: P[k].copy() for k in names}

    def init():
        kw = {"n_out": o} if has_readout else {}
        got = mod.init_params(m, n, seed=0, dtype=np.float64, **kw)
        shapes = cell.shapes(n, m, o)
        want = set(cell.params) | (set(cell.readout_params) if has_readout else set())
        if set(got) != want:
            raise Wrong(f"init_params keys {sorted(got)}, expected {sorted(want)}")
        for k, v in got.items():
            if not isinstance(v, np.ndarray) or v.shape != shapes[k] or v.dtype != np.float64:
                raise Wrong(f"init_params[{k!r}]: {getattr(v, 'shape', v)}, expected "
                            f"{shapes[k]} float64")
        return 0.0

    def forward():
        kp, x_in, s_in = kparams(), xs.copy(), _copy(s0)
        hs, cache = mod.forward(kp, x_in, s_in)
        dev = compare("hs", hs, ref["fwd"]["hs"])
        dev = max(dev, compare_dict("cache['state']", cache["state"], ref["fwd"]["state"],
                                    cell.states))
        _unchanged("forward", {"params": kp, "xs": x_in, "state0": s_in},
                   {"params": P, "xs": xs, "state0": s0})
        return dev

    def grads_dev(grads, want, names):
        # the module names the keys of the non-parameter gradients (a parameter may be
        # called "xs" or "h0"): INPUT_GRAD and STATE0_GRAD
        dev = compare_dict("grads", grads, want["params"], names)
        for s in cell.states:
            key = mod.STATE0_GRAD[s]
            dev = max(dev, compare(f"grads[{key!r}]", grads.get(key), want["state0"][s]))
        return max(dev, compare(f"grads[{mod.INPUT_GRAD!r}]", grads.get(mod.INPUT_GRAD),
                                want["xs"]))

    def readout():
        if not cell.readout:
            return "n/a"
        if not has_readout:
            return "n/a: the spec has a readout, the module no READOUT"
        names = [*mod.PARAMS, *getattr(mod, "READOUT_PARAMS", cell.readout_params)]
        allp = {k: P[k].copy() for k in names}
        hs, cache = mod.forward(allp, xs.copy(), _copy(s0))
        # readout(params, hs) or readout(params, cache), whichever the module takes
        second = list(inspect.signature(mod.readout).parameters)[1:2]
        ys = mod.readout(allp, cache if second == ["cache"] else ref["fwd"]["hs"].copy())
        dev = compare_dict("ys", ys, ref["fwd"]["ys"], list(cell.readout))
        _, cache = mod.forward(allp, xs.copy(), _copy(s0))
        grads = mod.backward(allp, cache, data["dhs"].copy(), dstate=_copy(data["dstate"]),
                             input_grad=True, dys=_copy(data["dys"]))
        return max(dev, grads_dev(grads, ref["grads_y"], names))

    def backward():
        kp = kparams()
        _, cache = mod.forward(kp, xs.copy(), _copy(s0))
        grads = mod.backward(kp, cache, data["dhs"].copy(), dstate=_copy(data["dstate"]),
                             input_grad=True)
        return grads_dev(grads, ref["grads"], list(kp))

    def rtrl():
        kp = kparams()
        got = mod.rtrl(kp, xs.copy(), _copy(s0))
        return compare_dict("rtrl", got, ref["rtrl"], list(kp))

    def rtrl_step():
        kp = kparams()
        names = list(kp)
        want1, want2 = ref["step1"], ref["step2"]
        st_in = _copy(data["step_state"])
        got_s, got_sens = mod.rtrl_step(kp, xs[0].copy(), st_in)
        dev = compare_dict("step 1 state", got_s, want1[0], cell.states)
        _unchanged("rtrl_step", {"params": kp, "state": st_in},
                   {"params": P, "state": data["step_state"]})
        for s in cell.states:
            dev = max(dev, compare_dict(f"step 1 sens[{s!r}]", _get(got_sens, s), want1[1][s],
                                        names))
        # the second step starts from the reference's state and sens (only the keys the
        # kernel takes), so that it is judged on its own
        sens = {s: {a: want1[1][s][a].copy() for a in names} for s in cell.states}
        got_s, got_sens = mod.rtrl_step(kp, xs[1].copy(), _copy(want1[0]), sens)
        dev = max(dev, compare_dict("step 2 state", got_s, want2[0], cell.states))
        for s in cell.states:
            dev = max(dev, compare_dict(f"step 2 sens[{s!r}]", _get(got_sens, s), want2[1][s],
                                        names))
        return dev

    def state_jacobian():
        got = mod.state_jacobian(kparams(), xs[0].copy(), _copy(data["step_state"]))
        return compare("state_jacobian", got, ref["jac"])

    fns = {"init": init, "forward": forward, "readout": readout, "backward": backward,
           "rtrl": rtrl, "rtrl_step": rtrl_step, "state_jacobian": state_jacobian}
    return out + [run_mode(backend, md, fns[md]) for md in MODES[1:]]


def _balanced(doc: str) -> str:
    """'' when braces and environments balance, else what does not."""
    depth = 0
    for k, ch in enumerate(doc):
        if ch in "{}" and k and doc[k - 1] == "\\":
            continue
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth < 0:
            return f"unbalanced '}}' at offset {k}: {doc[max(0, k - 40):k + 10]!r}"
    if depth:
        return f"{depth} unclosed '{{'"
    begins = Counter(re.findall(r"\\begin\{(\w+\*?)\}", doc))
    ends = Counter(re.findall(r"\\end\{(\w+\*?)\}", doc))
    if begins != ends:
        return f"\\begin {dict(begins)} vs \\end {dict(ends)}"
    return ""


def _pdflatex(doc: str) -> str:
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("pdflatex")
    if not exe:
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "cell.tex").write_text(doc)
        proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "cell.tex"],
                              cwd=tmp, capture_output=True, text=True, timeout=120)
        if proc.returncode:
            errs = [ln for ln in proc.stdout.splitlines() if ln.startswith("!")]
            return "pdflatex failed: " + (errs[0] if errs else proc.stdout[-200:])
    return ""


def check_docs(spec: Mapping[str, Any], pdflatex: bool = False) -> list[Result]:
    """The LaTeX article and the terminal text: no crash, every state named, balanced."""
    import derive
    from derive.document import latex_doc, text
    from derive.printing import notation

    holder: dict[str, Any] = {}

    def names():
        if "nm" not in holder:
            holder["d"] = derive.derive(dict(spec))
            holder["nm"] = notation.load(None).names(holder["d"].spec)
        return holder["d"], holder["nm"]

    def latex():
        d, nm = names()
        doc = latex_doc.document(d, standalone=True)
        missing = [s for s in spec["states"] if nm[s] not in doc]
        if missing:
            raise Wrong(f"LaTeX never names the state(s) {missing}")
        bad = _balanced(doc)
        if bad:
            raise Wrong(f"LaTeX: {bad}")
        if pdflatex:
            bad = _pdflatex(doc)
            if bad:
                raise Wrong(bad)
        return 0.0

    def show():
        d, nm = names()
        out = text.show(d)
        missing = [s for s in spec["states"] if text.to_unicode(nm[s]) not in out]
        if missing:
            raise Wrong(f"text never names the state(s) {missing}")
        return 0.0

    return [run_mode("docs", "latex", latex), run_mode("docs", "text", show)]


def _names_culprit(msg: str, spec: Mapping[str, Any]) -> bool:
    names = {*spec["params"], *spec["nodes"], *spec["states"], *(spec.get("readout") or {}),
             *(spec.get("readout_params") or {})}
    return any(f"'{nm}'" in msg or f'"{nm}"' in msg for nm in names)


def check_cell(spec: Mapping[str, Any], sizes: Mapping[str, int], *, index: int = 0,
               seed: int = 0, backends: Sequence[str] = ("numpy",), docs: bool = True,
               pdflatex: bool = False) -> CellReport:
    """Read the spec, then every backend's every mode and the documents, vs the reference."""
    import derive

    t0 = time.perf_counter()
    rep = CellReport(index, seed, dict(spec), cell_strategies.spec_text(spec), dict(sizes))
    try:
        derive.get_spec(dict(spec))
    except derive.SpecError as exc:
        rep.read, rep.read_message = "refused", str(exc)
        if not _names_culprit(str(exc), spec):
            rep.read = "refused_unclear"
        rep.seconds = time.perf_counter() - t0
        return rep
    except Exception as exc:  # noqa: BLE001
        rep.read, rep.read_message = "crash", f"{type(exc).__name__}: {_first(exc)}"
        rep.seconds = time.perf_counter() - t0
        return rep
    try:
        data, ref = tame_data(spec, sizes, seed=seed * 100003 + index)
    except Exception as exc:  # noqa: BLE001 (a harness bug: report it, do not hide it)
        rep.results.append(Result("reference", "reference", "crash",
                                  f"{type(exc).__name__}: {_first(exc)}"))
        rep.seconds = time.perf_counter() - t0
        return rep
    for backend in backends:
        rep.results += check_backend(spec, data, ref, backend)
    if docs:
        rep.results += check_docs(spec, pdflatex)
    rep.seconds = time.perf_counter() - t0
    return rep


# ------------------------------------------------------------------------------ shrinking


def failure_key(res: Result) -> str:
    """What a failure is, without its numbers: backend/mode/status/exception type (crash and
    refusal) or what differs (wrong: the first word of the quantity, 'shape' or 'value')."""
    if res.status == "wrong":
        what = re.split(r"[\[:( ]", res.detail, maxsplit=1)[0]
        kind = "shape" if ": shape" in res.detail else "keys" if "missing" in res.detail \
            else "value"
        return f"{res.backend}/{res.mode}/wrong/{what}/{kind}"
    return f"{res.backend}/{res.mode}/{res.status}/{res.detail.split(':', 1)[0]}"


ATOM, MV, PROD, SUM = 3, 2, 1, 0


def unparse(e: tuple, need: int = SUM) -> str:
    """The text of a reference AST (fuzz_reference.parse), parenthesised where needed."""
    kind = e[0]
    if kind == "num":
        v = e[1]
        text, prec = (str(int(v)) if float(v).is_integer() else repr(v)), ATOM
    elif kind == "name":
        text, prec = e[1], ATOM
    elif kind == "call":
        text, prec = f"{e[1]}({unparse(e[2])})", ATOM
    elif kind == "mv":
        text, prec = f"{e[1]} @ {unparse(e[2], MV)}", MV
    elif kind == "sum":
        parts = []
        for k, (sign, t) in enumerate(e[1]):
            body = unparse(t, PROD)
            parts.append(("-" + body if sign < 0 else body) if k == 0
                         else (" - " if sign < 0 else " + ") + body)
        text, prec = "".join(parts), SUM
    else:
        text, prec = " * ".join(unparse(f, MV) for f in e[1]), PROD
    return text if prec >= need else f"({text})"


def _simpler(e: tuple, fallback: str):
    """One-edit simplifications of e (drop a term or factor, unwrap a call or a matvec, a name
    replaced by ``fallback``, a constant by 1), outermost first."""
    kind = e[0]
    if kind == "sum":
        terms = e[1]
        for i in range(len(terms)):
            rest = terms[:i] + terms[i + 1:]
            yield rest[0][1] if len(rest) == 1 and rest[0][0] > 0 else ("sum", rest)
        for i, (sign, t) in enumerate(terms):
            if sign < 0:
                yield ("sum", terms[:i] + ((1.0, t),) + terms[i + 1:])
            for t2 in _simpler(t, fallback):
                yield ("sum", terms[:i] + ((sign, t2),) + terms[i + 1:])
    elif kind == "prod":
        fs = e[1]
        for i in range(len(fs)):
            rest = fs[:i] + fs[i + 1:]
            yield rest[0] if len(rest) == 1 else ("prod", rest)
        for i, f in enumerate(fs):
            for f2 in _simpler(f, fallback):
                yield ("prod", fs[:i] + (f2,) + fs[i + 1:])
    elif kind == "call":
        yield e[2]
        if e[1] not in ("reciprocal", "exp"):  # keep their arguments bounded
            for a in _simpler(e[2], fallback):
                yield ("call", e[1], a)
    elif kind == "mv":
        yield e[2]
        for a in _simpler(e[2], fallback):
            yield ("mv", e[1], a)
    elif kind == "name":
        if e[1] != fallback:
            yield ("name", fallback)
    elif kind == "num" and e[1] != 1.0:
        yield ("num", 1.0)


def _prune(spec: dict) -> dict:
    """Drop the parameters nothing uses (derive rejects them)."""
    used = set()
    for group in ("nodes", "readout"):
        for text in (spec.get(group) or {}).values():
            used |= fuzz_reference.names_in(fuzz_reference.parse(text))
    out = dict(spec)
    for group in ("params", "readout_params"):
        if group in out:
            out[group] = {k: v for k, v in out[group].items() if k in used}
    if not out.get("readout"):
        out.pop("readout", None)
        out.pop("readout_params", None)
    return out


def _candidates(spec: dict):
    """Smaller specs, one edit each: whole states, readouts and nodes first, then expressions,
    then plain names."""
    states = list(spec["states"])
    first = f"{states[0]}_prev"
    nodes = dict(spec["nodes"])
    if spec.get("readout"):
        yield {k: v for k, v in spec.items() if k not in ("readout", "readout_params")}
        if len(spec["readout"]) > 1:
            for r in spec["readout"]:
                yield {**spec, "readout": {k: v for k, v in spec["readout"].items() if k != r}}
    for s in states[1:]:  # a state becomes a plain node; its _prev reads h_prev instead
        new = {k: unparse(_rename(fuzz_reference.parse(v), f"{s}_prev", first))
               for k, v in nodes.items()}
        yield {**spec, "nodes": new, "states": tuple(x for x in states if x != s)}
    for n in nodes:  # a node nobody reads
        if n in states:
            continue
        rest = {k: v for k, v in nodes.items() if k != n}
        yield {**spec, "nodes": rest}
        # or every read of it replaced by h_prev
        yield {**spec, "nodes": {k: unparse(_rename(fuzz_reference.parse(v), n, first))
                                 for k, v in rest.items()}}
    for group in ("nodes", "readout"):
        for n, text in (spec.get(group) or {}).items():
            fb = first if group == "nodes" else states[0]
            for e in _simpler(fuzz_reference.parse(text), fb):
                yield {**spec, group: {**spec[group], n: unparse(e)}}
    # plain names: every parameter P<k>, every node n<k>
    names = [*spec["params"], *(spec.get("readout_params") or {})]
    for k, old in enumerate(names):
        new = f"P{k}"
        if old != new and new not in names:
            yield _rename_spec(spec, old, new)
    for k, old in enumerate([*nodes, *(spec.get("readout") or {})]):
        new = ("h", "c", "m")[states.index(old)] if old in states else f"n{k}"
        if old != new and new not in nodes and new not in names:
            yield _rename_spec(spec, old, new)


def _rename(e: tuple, old: str, new: str) -> tuple:
    kind = e[0]
    if kind == "name":
        return ("name", new) if e[1] == old else e
    if kind == "num":
        return e
    if kind == "call":
        return ("call", e[1], _rename(e[2], old, new))
    if kind == "mv":
        return ("mv", new if e[1] == old else e[1], _rename(e[2], old, new))
    if kind == "sum":
        return ("sum", tuple((s, _rename(t, old, new)) for s, t in e[1]))
    return ("prod", tuple(_rename(f, old, new) for f in e[1]))


def _rename_spec(spec: dict, old: str, new: str) -> dict:
    out = dict(spec)
    for group in ("params", "readout_params"):
        if group in out:
            out[group] = {(new if k == old else k): v for k, v in out[group].items()}
    for group in ("nodes", "readout"):
        if group in out:
            out[group] = {(new if k == old else k):
                          unparse(_rename(_rename(fuzz_reference.parse(v), old, new),
                                          f"{old}_prev", f"{new}_prev"))
                          for k, v in out[group].items()}
    out["states"] = tuple(new if s == old else s for s in spec["states"])
    return out


def _size(spec: dict) -> int:
    return len(cell_strategies.spec_text(spec))


def shrink(spec: dict, sizes: dict, key: str, *, seconds: float = 60.0,
           pdflatex: bool = False) -> tuple[dict, dict, CellReport]:
    """Greedy structural shrinking of a failing spec: keep any one-edit smaller spec that
    derive accepts and that still fails with the same :func:`failure_key`, until no edit
    helps or ``seconds`` run out. Returns (spec, sizes, its report)."""
    import derive

    backend = key.split("/", 1)[0]
    backends = [backend] if backend in ("numpy", "numba") else []
    t_end = time.perf_counter() + seconds

    def fails(sp: dict, sz: dict) -> CellReport | None:
        try:
            sp = _prune(sp)
            derive.get_spec(sp)
            fuzz_reference.Cell.from_spec(sp)
        except Exception:  # noqa: BLE001 (an invalid candidate)
            return None
        rep = check_cell(sp, sz, backends=backends, docs=backend == "docs", pdflatex=pdflatex)
        return rep if any(failure_key(r) == key for r in rep.results) else None

    best = fails(spec, sizes)
    if best is None:
        return spec, sizes, check_cell(spec, sizes, backends=backends, docs=True)
    spec = _prune(spec)
    small = {**sizes, "n_hidden": 2, "n_in": 1, "n_out": 1}
    if small != sizes and (rep := fails(spec, small)) is not None:
        sizes, best = small, rep
    progress = True
    while progress and time.perf_counter() < t_end:
        progress = False
        for cand in _candidates(spec):
            if time.perf_counter() > t_end:
                break
            try:
                cand = _prune(cand)
            except Exception:  # noqa: BLE001 (an edit the reference cannot parse)
                continue
            if _size(cand) >= _size(spec) and not _plainer(cand, spec):
                continue
            rep = fails(cand, sizes)
            if rep is not None:
                spec, best, progress = cand, rep, True
                break
    best.text = cell_strategies.spec_text(spec)
    return spec, sizes, best


def _plainer(a: dict, b: dict) -> bool:
    """Renaming to a plain name counts as progress when the text is no longer."""
    plain = re.compile(r"^(P\d+|n\d+|h|c|m)$")
    names = lambda d: [*d["params"], *d["nodes"]]  # noqa: E731
    return _size(a) <= _size(b) and \
        sum(bool(plain.match(n)) for n in names(a)) > sum(bool(plain.match(n)) for n in names(b))


# ------------------------------------------------------------------------------ the run


def _job(args: tuple) -> CellReport:
    seed, index, backends, docs, pdflatex = args
    spec, sizes = draw(seed, index)
    return check_cell(spec, sizes, index=index, seed=seed, backends=backends, docs=docs,
                      pdflatex=pdflatex)


def _builtin_job(args: tuple) -> CellReport:
    name, backends, docs, pdflatex = args
    from derive.spec.cells import BUILTIN

    spec = BUILTIN[name]
    return check_cell(spec, {"n_hidden": 3, "n_in": 2, "n_out": 2, "T": 3, "B": 2},
                      backends=backends, docs=docs, pdflatex=pdflatex)


def summary(reports: list[CellReport], backends: Sequence[str], show: int, wall: float) -> str:
    lines = []
    read = Counter(r.read for r in reports)
    lines.append(f"cells: {len(reports)}; read: {read['ok']} accepted, {read['refused']} refused "
                 f"at read (message names the culprit), {read['refused_unclear']} refused "
                 f"with a message naming nothing of the spec, {read['crash']} crashed at read")
    counts: dict[tuple[str, str], Counter] = {}
    for r in reports:
        for res in r.results:
            counts.setdefault((res.backend, res.mode), Counter())[res.status] += 1
    head = f"{'backend':<10}{'mode':<16}" + "".join(f"{s:>14}" for s in STATUSES)
    lines += ["", head, "-" * len(head)]
    order = [(b, m) for b in backends for m in MODES] + [("docs", m) for m in DOCS] + \
        [k for k in counts if k[0] == "reference"]
    for key in order:
        if key in counts:
            c = counts[key]
            lines.append(f"{key[0]:<10}{key[1]:<16}" + "".join(f"{c[s]:>14}" for s in STATUSES))
    for b in [*backends, "docs"]:
        bad = sum(1 for r in reports if any(x.backend == b and x.status in FAILURES
                                            for x in r.results))
        ran = sum(1 for r in reports if any(x.backend == b for x in r.results))
        lines.append(f"cells with a failure in {b}: {bad} of {ran}")
    secs = [r.seconds for r in reports]
    if secs:
        lines.append(f"time per cell: median {statistics.median(secs):.2f} s, max "
                     f"{max(secs):.2f} s, total {sum(secs):.1f} s (wall {wall:.1f} s)")
    refused = [r for r in reports if r.read in ("refused", "refused_unclear", "crash")]
    if refused:
        lines += ["", "refused / crashed at read (first 5 kinds):"]
        seen: set[str] = set()
        for r in refused:
            key = re.sub(r"'[^']*'", "'.'", r.read_message)[:60]
            if key in seen:
                continue
            seen.add(key)
            lines.append(f"  #{r.index} [{r.read}] {r.read_message[:200]}")
            if len(seen) >= 5:
                break
    failing = [r for r in reports if r.failed]
    if failing and show:
        lines += ["", f"failures (first {min(show, len(failing))} of {len(failing)} cells):"]
        for r in failing[:show]:
            lines.append(f"  cell #{r.index} (seed {r.seed}, sizes {r.sizes}):")
            lines.append(f"    spec: {r.text}")
            if r.read != "ok":
                lines.append(f"    read [{r.read}]: {r.read_message[:300]}")
            for res in r.failures:
                lines.append(f"    {res.backend}/{res.mode}: {res.status}: {res.detail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--cells", type=int, default=50, help="how many random cells (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", default="numpy,numba",
                    help="comma-separated, of numpy,numba (default both; numba compiles every "
                         "cell, seconds each)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--show", type=int, default=10, help="failing cells to print (default 10)")
    ap.add_argument("--json", help="write every cell's outcome to this file")
    ap.add_argument("--only", type=int, action="append",
                    help="check only cell INDEX of the run (repeatable)")
    ap.add_argument("--builtin", action="store_true",
                    help="check the built-in cells instead of random ones")
    ap.add_argument("--no-docs", action="store_true", help="skip the LaTeX and text checks")
    ap.add_argument("--pdflatex", action="store_true", help="also compile each LaTeX article")
    ap.add_argument("--shrink", type=int, default=0, metavar="K",
                    help="for the K most frequent kinds of failure, shrink the smallest failing "
                         "spec of that kind (greedy, one edit at a time) and print it")
    ap.add_argument("--shrink-seconds", type=float, default=60.0,
                    help="time budget per shrunk spec (default 60)")
    args = ap.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in ("numpy", "numba")]
    if bad:
        ap.error(f"unknown backend(s) {bad}; choose from numpy, numba")
    docs = not args.no_docs
    if args.builtin:
        from derive.spec.cells import BUILTIN

        jobs, fn = [(name, backends, docs, args.pdflatex) for name in BUILTIN], _builtin_job
    else:
        indices = args.only or list(range(args.cells))
        jobs = [(args.seed, i, backends, docs, args.pdflatex) for i in indices]
        fn = _job
    print(f"fuzz: {len(jobs)} cells, seed {args.seed}, backends {','.join(backends)}, "
          f"{args.jobs} job(s)", file=sys.stderr)
    t0 = time.perf_counter()
    reports: list[CellReport] = []
    if args.jobs > 1:
        from multiprocessing import Pool

        # a worker keeps every numba module it compiled (~15 MB each, and every random cell's
        # numba module is compiled): fresh workers every 100 cells bound the memory
        # (multiprocessing's maxtasksperchild: ProcessPoolExecutor's max_tasks_per_child hangs
        # on Python 3.11 once the first workers have been replaced)
        with Pool(args.jobs, maxtasksperchild=100) as pool:
            for k, rep in enumerate(pool.imap(fn, jobs, chunksize=1)):
                reports.append(rep)
                _progress(k, len(jobs), rep)
    else:
        for k, job in enumerate(jobs):
            rep = fn(job)
            reports.append(rep)
            _progress(k, len(jobs), rep)
    wall = time.perf_counter() - t0
    if args.builtin:
        for rep, name in zip(reports, BUILTIN, strict=True):
            rep.text = f"[{name}] " + rep.text
    print(summary(reports, backends, args.show, wall))
    if args.shrink:
        kinds = Counter(failure_key(x) for r in reports for x in r.failures)
        print("\nshrunk failing specs (one per kind of failure, most frequent first):")
        for key, count in kinds.most_common(args.shrink):
            t1 = time.perf_counter()
            start = min((r for r in reports if any(failure_key(x) == key for x in r.failures)),
                        key=lambda r: len(r.text))
            spec, sizes, rep = shrink(start.spec, start.sizes, key, seconds=args.shrink_seconds,
                                      pdflatex=args.pdflatex)
            took = time.perf_counter() - t1
            print(f"  {key} ({count} in this run; from cell #{start.index}, {took:.0f} s):")
            print(f"    sizes {sizes}")
            print(f"    spec: {rep.text}")
            for res in rep.failures:
                if failure_key(res) == key:
                    print(f"    {res.backend}/{res.mode}: {res.status}: {res.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**asdict(r), "failed": r.failed} for r in reports], indent=1, default=str))
    return 1 if any(r.failed for r in reports) else 0


def _progress(k: int, total: int, rep: CellReport) -> None:
    mark = "F" if rep.failed else ("r" if rep.read != "ok" else ".")
    sys.stderr.write(mark)
    if (k + 1) % 50 == 0 or k + 1 == total:
        sys.stderr.write(f" {k + 1}/{total}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
