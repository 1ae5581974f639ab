"""Property-based fuzz: random valid cells, every kernel mode against an independent reference.

The cells come from ``tests/cell_strategies.py`` (the whole spec grammar, names chosen to collide
with a code generator's), the reference is ``tests/fuzz_reference.py`` (its own parser, torch
autograd, no derive code), the per-cell check is the one of ``bench/fuzz.py`` (``check_cell``),
so a failure here reproduces there. Before the kernels are judged, the reference itself is
checked: against central finite differences on drawn cells, against torch.nn.LSTM / GRU on the
built-in specs (copied here as text, not imported from derive), and its parser on the grammar's
corner cases.

A drawn spec that derive refuses at read (a SpecError naming the culprit) passes; a crash, a
wrong number, or a clear error raised only after read (e.g. the numba backend's Unsupported)
fails, and the failure message holds the spec and a shrunk spec that fails the same way.
Time: about 25 s on 2 cores (numba's compilation of three cells is most of it).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require

import derive

torch = require("torch", "the fuzz reference runs on torch autograd")
require("hypothesis", "the fuzz draws cells with hypothesis (pip install hypothesis)")

import cell_strategies  # noqa: E402
import fuzz_reference as R  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load_bench_fuzz():
    name = "_bench_fuzz"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "fuzz.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz = _load_bench_fuzz()

SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def _report(rep) -> str:
    lines = [f"spec: {rep.text}", f"dict: {rep.spec!r}", f"sizes: {rep.sizes}"]
    if rep.read != "ok":
        lines.append(f"read [{rep.read}]: {rep.read_message}")
    lines += [f"{r.backend}/{r.mode}: {r.status}: {r.detail}" for r in rep.failures]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the kernels
# Hypothesis' own shrinking re-runs the whole check hundreds of times (minutes), so it is off;
# a failing cell is shrunk instead by bench/fuzz.py's structural shrinker (one edit at a time,
# same kind of failure), within SHRINK_SECONDS, and both specs are in the failure message.

SHRINK_SECONDS = 15.0
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]
_SHRUNK: dict[str, str] = {}


def _check(spec, sizes, backend):
    rep = fuzz.check_cell(spec, sizes, backends=[backend], docs=backend == "numpy")
    if not rep.failed:
        return
    msg = _report(rep)
    if rep.failures and msg not in _SHRUNK:  # hypothesis runs the failing example twice
        key = fuzz.failure_key(rep.failures[0])
        seconds = SHRINK_SECONDS if backend == "numpy" else 0.0
        _, small_sizes, small = fuzz.shrink(rep.spec, rep.sizes, key, seconds=seconds)
        _SHRUNK[msg] = (f"\nshrunk ({key}), sizes {small_sizes}:\n  {small.text}\n  dict: "
                        f"{small.spec!r}\n  " + "\n  ".join(
                            f"{r.backend}/{r.mode}: {r.status}: {r.detail}"
                            for r in small.failures))
    raise AssertionError(msg + _SHRUNK.get(msg, ""))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=SLOW_OK,
          phases=NO_SHRINK)
@given(cell=cell_strategies.cells_with_sizes())
def test_numpy_kernels_match_the_reference_on_random_cells(cell):
    """Every mode of the NumPy backend, the LaTeX article and the terminal text."""
    _check(*cell, "numpy")


def test_numpy_kernels_on_the_bench_sample():
    """The first cells of ``bench/fuzz.py --seed 0`` (hypothesis' examples mutate one another;
    these are independent draws), all failures listed at once; where pdflatex is installed,
    each cell's LaTeX article must also compile."""
    import shutil

    pdflatex = shutil.which("pdflatex") is not None
    bad = []
    for index in range(25):
        spec, sizes = fuzz.draw(0, index)
        rep = fuzz.check_cell(spec, sizes, index=index, backends=["numpy"], docs=True,
                              pdflatex=pdflatex)
        if rep.failed:
            bad.append(f"cell #{index}: " + _report(rep))
    if bad:
        flag = " --pdflatex" if pdflatex else ""
        pytest.fail(f"{len(bad)} of 25 cells fail (python bench/fuzz.py --seed 0 --cells 25 "
                    f"--backends numpy{flag}):\n" + "\n\n".join(bad), pytrace=False)


# numba compiles every new cell (seconds each): a small sample, no shrinking.
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=SLOW_OK,
          phases=NO_SHRINK)
@given(cell=cell_strategies.cells_with_sizes())
def test_numba_kernels_match_the_reference_on_random_cells(cell):
    require("numba", "the optional numba backend (pip install 'derive[numba]')")
    _check(*cell, "numba")


@pytest.mark.parametrize("cell", derive.cells())
def test_builtin_cells_pass_the_harness(cell):
    """The harness on the built-in cells (pinned to torch by other tests): every mode ok, NumPy
    backend; the readout too where the spec has one."""
    from derive.spec.cells import BUILTIN

    rep = fuzz.check_cell(BUILTIN[cell], {"n_hidden": 3, "n_in": 2, "n_out": 2, "T": 3, "B": 2},
                          backends=["numpy"], docs=True)
    assert not rep.failed, _report(rep)
    modes = {r.mode: r.status for r in rep.results}
    assert all(modes[m] == "ok" for m in ("forward", "backward", "rtrl", "rtrl_step",
                                          "state_jacobian", "latex", "text")), modes
    if "readout" in BUILTIN[cell]:
        assert modes["readout"] == "ok", modes


def test_harness_detects_a_wrong_kernel():
    """Not vacuous: the GRU kernel judged against the reference of a GRU with z and 1 - z
    swapped is wrong in every numeric mode."""
    from derive.spec.cells import GRU

    swapped = {**GRU, "nodes": {**GRU["nodes"], "h": "z * n + (1 - z) * h_prev"}}
    sizes = {"n_hidden": 3, "n_in": 2, "n_out": 1, "T": 3, "B": 2}
    data = fuzz.make_data(GRU, sizes, seed=3)
    results = fuzz.check_backend(GRU, data, fuzz.reference(swapped, data), "numpy")
    status = {r.mode: r.status for r in results}
    for mode in ("forward", "backward", "rtrl", "rtrl_step", "state_jacobian"):
        assert status[mode] == "wrong", status


def test_drawn_specs_are_valid_and_varied():
    """The generator's specs parse in the reference, and over 300 draws it covers the grammar."""
    seen = {k: 0 for k in ("two_states", "three_states", "readout", "no_x", "nested_mv",
                           "compound_mv", "const", "unary_minus", "peephole", "collide")}
    for k in range(300):
        spec = cell_strategies.generate(random.Random(k))
        R.Cell.from_spec(spec)
        seen["two_states"] += len(spec["states"]) == 2
        seen["three_states"] += len(spec["states"]) == 3
        seen["readout"] += "readout" in spec
        seen["no_x"] += not any(("name", "x") in R.tokenize(v) for v in spec["nodes"].values())
        seen["nested_mv"] += any(e[0] == "mv" and e[2][0] == "mv" for e in _walk_spec(spec))
        seen["compound_mv"] += any(e[0] == "mv" and e[2][0] in ("sum", "prod")
                                   for e in _walk_spec(spec))
        seen["const"] += any(e[0] == "num" for e in _walk_spec(spec))
        seen["unary_minus"] += any(e[0] == "sum" and e[1][0][0] < 0 for e in _walk_spec(spec))
        seen["peephole"] += any(e[0] == "prod" and any(
            f[0] == "name" and len(spec["params"].get(f[1], ())) == 1 for f in e[1])
            for e in _walk_spec(spec))
        names = {*spec["params"], *spec["nodes"]}
        seen["collide"] += bool(names & {*cell_strategies.COLLIDING_NAMES,
                                         *cell_strategies.KEYWORDS})
    assert all(v >= 5 for v in seen.values()), seen


def _walk(e):
    yield e
    if e[0] in ("call",):
        yield from _walk(e[2])
    elif e[0] == "mv":
        yield from _walk(e[2])
    elif e[0] == "sum":
        for _, t in e[1]:
            yield from _walk(t)
    elif e[0] == "prod":
        for f in e[1]:
            yield from _walk(f)


def _walk_spec(spec):
    for v in [*spec["nodes"].values(), *(spec.get("readout") or {}).values()]:
        yield from _walk(R.parse(v))


# ------------------------------------------------------------------------------ the reference


def test_reference_parser_corner_cases():
    assert R.parse("A @ B @ x") == ("mv", "A", ("mv", "B", ("name", "x")))
    assert R.parse("W @ x * h_prev") == ("prod", (("mv", "W", ("name", "x")),
                                                  ("name", "h_prev")))
    assert R.parse("-a * b + c") == ("sum", ((-1.0, ("prod", (("name", "a"), ("name", "b")))),
                                             (1.0, ("name", "c"))))
    assert R.parse("(1 - z) * n")[1][0] == ("sum", ((1.0, ("num", 1.0)),
                                                    (-1.0, ("name", "z"))))
    assert R.parse("tanh(W @ (r * h_prev))") == (
        "call", "tanh", ("mv", "W", ("prod", (("name", "r"), ("name", "h_prev")))))
    assert R.parse("0.5 * lambda") == ("prod", (("num", 0.5), ("name", "lambda")))
    for bad in ("tanh(x", "(a + b) @ x", "a $ b", "a +"):
        with pytest.raises(R.ReferenceError):
            R.parse(bad)


def test_reference_constants_and_matvec_of_a_constant():
    spec = {"params": {"W": ("hidden", "hidden"), "b": ("hidden",)},
            "nodes": {"h": "-b + 0.5 * h_prev - W @ 2"}, "states": ("h",)}
    rng = np.random.default_rng(0)
    P = {"W": rng.normal(size=(3, 3)), "b": rng.normal(size=3)}
    s0 = {"h": rng.normal(size=(2, 3))}
    got = R.forward(spec, P, np.zeros((1, 2, 1)), s0)["hs"][0]
    want = 0.5 * s0["h"] - 2 * P["W"].sum(axis=1) - P["b"]
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_reference_activations_match_torch_and_exact_derivatives():
    import torch.nn.functional as F

    z = torch.cat([torch.linspace(-4.5, 4.5, 181, dtype=torch.float64),
                   torch.tensor([-3.0, 3.0, 0.0, -0.0], dtype=torch.float64)])  # the kinks
    values = {"sigmoid": torch.sigmoid(z), "tanh": torch.tanh(z), "identity": z,
              "relu": F.relu(z), "leaky_relu": F.leaky_relu(z), "softplus": F.softplus(z),
              "softsign": F.softsign(z), "exp": torch.exp(z),
              "hard_sigmoid": F.hardsigmoid(z), "reciprocal": 1 / (z + 5)}
    derivs = {"sigmoid": torch.sigmoid(z) * (1 - torch.sigmoid(z)),
              "tanh": 1 - torch.tanh(z) ** 2, "identity": torch.ones_like(z),
              "relu": (z > 0).double(),
              "leaky_relu": torch.where(z > 0, 1.0, torch.full_like(z, 0.01)),
              "softplus": torch.sigmoid(z), "softsign": 1 / (1 + z.abs()) ** 2,
              "exp": torch.exp(z), "hard_sigmoid": ((z > -3) & (z < 3)).double() / 6,
              "reciprocal": -1 / (z + 5) ** 2}
    assert set(values) == set(R.ACTIVATIONS)
    for name, fn in R.ACTIVATIONS.items():
        arg = (z + 5 if name == "reciprocal" else z).clone().requires_grad_(True)
        out = fn(arg)
        assert torch.equal(out.detach(), values[name]), name
        (g,) = torch.autograd.grad(out.sum(), arg)
        torch.testing.assert_close(g, derivs[name], rtol=1e-15, atol=1e-16, msg=name)


def _fd_cells():
    """Four drawn cells with the reference's smooth activations (not only derive's): one state,
    two states, three states, a readout."""
    want = {"one": lambda s: len(s["states"]) == 1, "two": lambda s: len(s["states"]) == 2,
            "three": lambda s: len(s["states"]) == 3, "readout": lambda s: "readout" in s}
    out = {}
    for k in range(200):
        spec = cell_strategies.generate(random.Random(f"fd:{k}"), activations=R.SMOOTH,
                                        collide=0.0)
        for kind, ok in want.items():
            if kind not in out and ok(spec):
                out[kind] = spec
                break
    sizes = {"n_hidden": 2, "n_in": 2, "n_out": 2, "T": 2, "B": 2}
    return [(out[k], sizes) for k in want]


@pytest.mark.parametrize("case", range(4))
def test_reference_matches_central_finite_differences(case):
    spec, sizes = _fd_cells()[case]
    data = fuzz.make_data(spec, sizes, seed=case)
    P, xs, s0 = data["params"], data["xs"], data["state0"]
    dhs, dstate, dys = data["dhs"], data["dstate"], data["dys"]
    cell = R.Cell.from_spec(spec)

    def loss(P=P, xs=xs, s0=s0):
        f = R.forward(cell, P, xs, s0)
        out = float(np.sum(f["hs"] * dhs))
        out += sum(float(np.sum(f["state"][s] * dstate[s])) for s in cell.states)
        return out + sum(float(np.sum(f["ys"][r] * dys[r])) for r in dys)

    def fd(f, arr):
        """d f() / d arr by central differences: shape f().shape + arr.shape."""
        cols = []
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + 1e-6
            up = np.asarray(f())
            arr[idx] = old - 1e-6
            down = np.asarray(f())
            arr[idx] = old
            cols.append((up - down) / 2e-6)
        out = np.stack(cols, axis=-1)
        return out.reshape(out.shape[:-1] + arr.shape)

    grads = R.gradients(cell, P, xs, s0, dhs, dstate, dys)
    P = {k: v.copy() for k, v in P.items()}
    for k in P:
        np.testing.assert_allclose(grads["params"][k], fd(lambda: loss(P=P), P[k]),
                                   rtol=1e-5, atol=1e-7, err_msg=k)
    s0 = {k: v.copy() for k, v in s0.items()}
    for s in cell.states:
        np.testing.assert_allclose(grads["state0"][s], fd(lambda: loss(s0=s0), s0[s]),
                                   rtol=1e-5, atol=1e-7, err_msg=s)
    xs = xs.copy()
    np.testing.assert_allclose(grads["xs"], fd(lambda: loss(xs=xs), xs), rtol=1e-5, atol=1e-7)

    # rtrl: dh_T/dA by differences
    rt = R.rtrl(cell, P, xs, s0)
    for k in cell.params:
        want = fd(lambda: R.forward(cell, P, xs, s0)["hs"][-1], P[k])
        np.testing.assert_allclose(rt[k], want, rtol=1e-5, atol=1e-7, err_msg=k)

    # two rtrl steps (the second passing sens) are rtrl over two steps
    st, sens = R.rtrl_step(cell, P, xs[0], s0)
    st, sens = R.rtrl_step(cell, P, xs[1], st, sens)
    for k in cell.params:
        np.testing.assert_allclose(sens[cell.states[0]][k], rt[k], rtol=1e-12, atol=1e-14)

    # the state Jacobian by differences of one step
    J = R.state_jacobian(cell, P, xs[0], s0)
    n, S = sizes["n_hidden"], len(cell.states)
    for v_i, v in enumerate(cell.states):
        for j in range(n):
            def new(sign, v=v, j=j):
                prev = {k: a.copy() for k, a in s0.items()}
                prev[v][:, j] += sign * 1e-6
                out = R.rtrl_step(cell, P, xs[0], prev)[0]
                return np.concatenate([out[s] for s in cell.states], axis=1)
            col = (new(1) - new(-1)) / 2e-6
            np.testing.assert_allclose(J[:, :, v_i * n + j], col, rtol=1e-5, atol=1e-7)
    assert J.shape == (2, S * n, S * n)


# The built-in specs, copied as text from derive/spec/cells.py (the reference side must not import
# derive), against torch.nn.LSTM / torch.nn.GRU.
LSTM_SPEC = {
    "name": "lstm",
    "params": {
        **{f"W_x{g}": ("hidden", "input") for g in "ifgo"},
        **{f"W_h{g}": ("hidden", "hidden") for g in "ifgo"},
        **{f"b_{g}": ("hidden",) for g in "ifgo"},
    },
    "nodes": {
        "i": "sigmoid(W_xi @ x + W_hi @ h_prev + b_i)",
        "f": "sigmoid(W_xf @ x + W_hf @ h_prev + b_f)",
        "g": "tanh(W_xg @ x + W_hg @ h_prev + b_g)",
        "o": "sigmoid(W_xo @ x + W_ho @ h_prev + b_o)",
        "c": "f * c_prev + i * g",
        "h": "o * tanh(c)",
    },
    "states": ("h", "c"),
}
GRU_SPEC = {
    "name": "gru",
    "params": {
        **{f"W_x{g}": ("hidden", "input") for g in "rzn"},
        **{f"W_h{g}": ("hidden", "hidden") for g in "rzn"},
        "b_r": ("hidden",), "b_z": ("hidden",), "b_xn": ("hidden",), "b_hn": ("hidden",),
    },
    "nodes": {
        "r": "sigmoid(W_xr @ x + W_hr @ h_prev + b_r)",
        "z": "sigmoid(W_xz @ x + W_hz @ h_prev + b_z)",
        "n": "tanh(W_xn @ x + b_xn + r * (W_hn @ h_prev + b_hn))",
        "h": "(1 - z) * n + z * h_prev",
    },
    "states": ("h",),
}


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_reference_matches_torch_nn(kind):
    n, m, T, B = 3, 2, 4, 2
    torch.manual_seed(0)
    net = getattr(torch.nn, kind)(m, n, dtype=torch.float64)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    gates = "ifgo" if kind == "LSTM" else "rzn"
    P = {}
    for k, g in enumerate(gates):
        rows = slice(k * n, (k + 1) * n)
        P[f"W_x{g}"] = sd["weight_ih_l0"][rows].copy()
        P[f"W_h{g}"] = sd["weight_hh_l0"][rows].copy()
        if kind == "LSTM":
            P[f"b_{g}"] = sd["bias_ih_l0"][rows] + sd["bias_hh_l0"][rows]
        elif g == "n":
            P["b_xn"], P["b_hn"] = sd["bias_ih_l0"][rows].copy(), sd["bias_hh_l0"][rows].copy()
        else:
            P[f"b_{g}"] = sd["bias_ih_l0"][rows] + sd["bias_hh_l0"][rows]
    spec = LSTM_SPEC if kind == "LSTM" else GRU_SPEC
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(T, B, m))
    s0 = {s: rng.normal(size=(B, n)) * 0.5 for s in spec["states"]}
    dhs = rng.normal(size=(T, B, n))
    X = torch.tensor(xs, requires_grad=True)
    h0 = torch.tensor(s0["h"][None], requires_grad=True)
    if kind == "LSTM":
        c0 = torch.tensor(s0["c"][None], requires_grad=True)
        out, (hT, cT) = net(X, (h0, c0))
        finals = {"h": hT[0], "c": cT[0]}
    else:
        out, hT = net(X, h0)
        finals = {"h": hT[0]}
    (out * torch.tensor(dhs)).sum().backward()
    ref = R.forward(spec, P, xs, s0)
    np.testing.assert_allclose(ref["hs"], out.detach().numpy(), rtol=1e-12, atol=1e-14)
    for s, v in finals.items():
        np.testing.assert_allclose(ref["state"][s], v.detach().numpy(), rtol=1e-12, atol=1e-14)
    g = R.gradients(spec, P, xs, s0, dhs)
    tg = {k: v.grad.numpy() for k, v in net.named_parameters()}
    for k, gate in enumerate(gates):
        rows = slice(k * n, (k + 1) * n)
        np.testing.assert_allclose(g["params"][f"W_x{gate}"], tg["weight_ih_l0"][rows],
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g["params"][f"W_h{gate}"], tg["weight_hh_l0"][rows],
                                   rtol=1e-10, atol=1e-12)
        bias = f"b_{gate}" if f"b_{gate}" in P else "b_hn"
        np.testing.assert_allclose(g["params"][bias], tg["bias_hh_l0"][rows],
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["xs"], X.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["state0"]["h"], h0.grad.numpy()[0], rtol=1e-10, atol=1e-12)
