"""The activation registry (derive/spec/activations.py): every facet of every record, checked
against sympy.diff and torch.autograd, and one new activation registered in one place and seen by
every consumer (LaTeX, terminal text, gradient-flow bound, NumPy and numba kernels).

The numbers each test expects come from SymPy, torch or a hand-written formula in this file,
never from the facet under test.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from conftest import require

from derive.spec.activations import ACTIVATIONS, Activation, register, unregister

NAMES = list(ACTIVATIONS)
# kinks (0 for relu / leaky_relu, +-3 for hard_sigmoid), both sides of them, and the tails
POINTS = [-30.0, -20.5, -5.0, -3.0, -2.999, -1.0, -0.25, 0.0, 0.25, 1.0, 2.999, 3.0, 3.001, 5.0,
          20.5, 30.0]
SINGULAR = {"reciprocal": 0.0}  # where an activation is not defined


def points(name: str) -> np.ndarray:
    z = np.array(POINTS)
    return z[z != SINGULAR[name]] if name in SINGULAR else z


def close(got, want, what: str) -> None:
    """Relative 1e-9, absolute 1e-13 (1 - y for y rounded to 1 at the tails has no digits)."""
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=1e-9,
                               atol=1e-13, err_msg=what)


# ---------------------------------------------------------------------------- the records


def test_the_built_in_activations_are_registered():
    assert {"sigmoid", "tanh", "identity", "relu", "leaky_relu", "softplus", "softsign", "exp",
            "hard_sigmoid", "reciprocal"} <= set(ACTIVATIONS)
    for name, act in ACTIVATIONS.items():
        assert act.name == name


def test_a_missing_facet_is_an_error():
    facets = {f: getattr(ACTIVATIONS["tanh"], f) for f in Activation.__dataclass_fields__}
    facets["name"] = "tanh2"
    Activation(**facets)  # complete: fine
    for f in ("numba", "range", "latex"):
        with pytest.raises(TypeError):
            Activation(**{k: v for k, v in facets.items() if k != f})
        with pytest.raises(ValueError, match="missing facets"):
            Activation(**{**facets, f: None})
    with pytest.raises(ValueError, match="all given or all None"):
        Activation(**{**facets, "numba_deriv_from_output": None})
    with pytest.raises(ValueError, match="not a format"):
        Activation(**{**facets, "numpy": "np.tanh({x})"})
    with pytest.raises(ValueError, match="already registered"):
        register(ACTIVATIONS["tanh"])


@pytest.mark.parametrize("name", NAMES)
def test_value_and_derivatives_match_sympy_diff(name):
    act = ACTIVATIONS[name]
    z = sp.Symbol("z", real=True)
    f = act.sympy(z)
    df = sp.diff(f, z)
    zs = points(name)
    want = [float(f.subs(z, sp.Float(v, 30))) for v in zs]
    want_d = [float(df.subs(z, sp.Float(v, 30))) for v in zs]
    close(act.value(zs), want, f"{name}: numpy")
    close(act.derivative(zs), want_d, f"{name}: deriv")
    close(act.derivative_from_output(act.value(zs)), want_d, f"{name}: deriv_from_output")
    close(act.sympy_deriv(sp.Float(0.5)), df.subs(z, sp.Float(0.5)), f"{name}: sympy_deriv")


# torch's function of every built-in activation (torch.nn.functional where it has one that is
# not deprecated)
TORCH = {
    "sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "relu": "F.relu",
    "leaky_relu": "F.leaky_relu", "softplus": "F.softplus", "softsign": "F.softsign",
    "exp": "torch.exp", "hard_sigmoid": "F.hardsigmoid", "reciprocal": "torch.reciprocal",
    "identity": "torch.clone",
}


@pytest.mark.parametrize("name", NAMES)
def test_value_and_derivatives_match_torch_autograd(name):
    torch = require("torch", "torch is not installed (pip install torch==2.13.0)")
    import torch.nn.functional as F

    act = ACTIVATIONS[name]
    module, attr = TORCH[name].split(".")
    fn = getattr({"torch": torch, "F": F}[module], attr)
    zs = points(name)
    tz = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    ty = fn(tz)
    (grad,) = torch.autograd.grad(ty.sum(), tz)
    # torch's softplus returns z itself above its threshold 20 (and 1 as its derivative); its
    # sigmoid' is y (1 - y), with 1 - y's rounding at the tails
    tol = {"rtol": 1e-8, "atol": 3e-9} if name == "softplus" else {"rtol": 1e-12, "atol": 1e-13}
    if name == "hard_sigmoid":
        tol = {"rtol": 1e-7, "atol": 0}  # torch's float64 hardsigmoid' is float32's 1/6
    np.testing.assert_allclose(act.value(zs), ty.detach().numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(act.derivative(zs), grad.numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(act.derivative_from_output(act.value(zs)), grad.numpy(), **tol,
                               err_msg=name)


def test_kinks_follow_torch():
    """The values at the kinks, written out (torch's autograd conventions)."""
    assert ACTIVATIONS["relu"].derivative(np.array([0.0]))[0] == 0.0
    assert ACTIVATIONS["leaky_relu"].derivative(np.array([0.0]))[0] == 0.01
    hs = ACTIVATIONS["hard_sigmoid"]
    assert list(hs.derivative(np.array([-3.0, 3.0, -2.999, 2.999]))) == [0, 0, 1 / 6, 1 / 6]
    assert list(hs.derivative_from_output(hs.value(np.array([-3.0, 3.0])))) == [0, 0]
    assert ACTIVATIONS["softsign"].derivative(np.array([0.0]))[0] == 1.0


GRID = np.concatenate([np.linspace(-60.0, 60.0, 240_001), [-3.0, 0.0, 3.0, -1e-12, 1e-12]])


@pytest.mark.parametrize("name", NAMES)
def test_bound_is_the_sup_of_the_derivative(name):
    act = ACTIVATIONS[name]
    z = GRID[GRID != SINGULAR[name]] if name in SINGULAR else GRID
    with np.errstate(over="ignore"):
        d = act.derivative(z)
        y = act.value(z)
    lo, hi = act.deriv_range
    ulp = 1 + 1e-15
    assert lo is None or d.min() >= float(lo) - 1e-15
    assert hi is None or d.max() <= float(hi) * ulp
    lo, hi = act.range
    assert (lo is None or y.min() >= float(lo)) and (hi is None or y.max() <= float(hi))
    sup = np.abs(d[np.isfinite(d)]).max()
    if act.deriv_bound is None:
        assert sup > 1e20 or not np.isfinite(d).all(), name  # exp, reciprocal: unbounded
    else:
        assert sup <= float(act.deriv_bound) * ulp, name
        assert sup >= float(act.deriv_bound) * (1 - 1e-6), name  # and attained (the sup)


# numba: the scalar forms as the fused loops print them (float literals bound in the dtype by
# derive.codegen.numba_printer.NumbaPrinter; sigmoid's and tanh's helpers from the template)


@pytest.fixture(scope="module")
def numba_helpers(tmp_path_factory):
    """templates/numba/_activations.py.j2 as a module of its own (numba caches its functions
    on disk, which needs a file)."""
    require("numba", "numba is not installed (pip install -e '.[numba]')")
    import importlib.util

    from derive.codegen import environment

    path = tmp_path_factory.mktemp("numba_helpers") / "numba_activation_helpers.py"
    path.write_text("import math\n\nimport numpy as np\nfrom llvmlite import ir\n"
                    "from numba import njit, types\nfrom numba.extending import intrinsic, overload"
                    "\n\n\n" + environment().get_template("numba/_activations.py.j2").render())
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


@pytest.mark.parametrize("name", NAMES)
def test_numba_scalar_forms(name, numba_helpers):
    from numba import njit

    from derive.codegen.ir import ActDeriv, ActValue, Var
    from derive.codegen.naming import Namer
    from derive.codegen.numba_printer import Constants, NumbaPrinter

    act = ACTIVATIONS[name]
    consts = Constants(Namer(["z", "v", "d"]))
    printer = NumbaPrinter(scalars={"z", "v"}, consts=consts)
    body = [f"v = {printer.doprint(ActValue(name, Var('z')))}",
            f"d = {printer.doprint(ActDeriv(name, Var('v'), True))}"]
    lits = [(n, consts.literal(n)) for n in consts.values.values()]
    zs = points(name)
    # float32: 1 - y^2 and y (1 - y) lose their relative digits where y rounds near 1
    for dtype, rtol, atol in ((np.float64, 1e-12, 1e-14), (np.float32, 2e-6, 5e-7)):
        src = "\n".join(["def kernel(zs, out, dout):"]
                        + [f"    {n} = np.{dtype.__name__}({lit})" for n, lit in lits]
                        + ["    for k in range(zs.shape[0]):", "        z = zs[k]"]
                        + [f"        {line}" for line in body]
                        + ["        out[k] = v", "        dout[k] = d"])
        ns = dict(numba_helpers)
        exec(src, ns)
        z = zs.astype(dtype)
        out, dout = np.empty_like(z), np.empty_like(z)
        njit(ns["kernel"])(z, out, dout)
        want = act.value(z.astype(np.float64))
        want_d = act.derivative(z.astype(np.float64))
        np.testing.assert_allclose(out, want, rtol=rtol, atol=atol, err_msg=name)
        np.testing.assert_allclose(dout, want_d, rtol=rtol, atol=atol, err_msg=name)


# ---------------------------------------------------------------------------- a new activation

H, X = "hidden", "input"
BISIG_RNN = {  # bisig as a gate (g) and applied to a state (bisig(h_prev))
    "name": "bisig_rnn",
    "title": "RNN with the bipolar sigmoid tanh(z / 2)",
    "params": {"W": (H, X), "U": (H, H), "b": (H,)},
    "nodes": {"g": "bisig(W @ x + U @ h_prev + b)", "h": "g * bisig(h_prev)"},
    "states": ("h",),
}


def bisig_reference(P, xs, h):
    """The cell by hand: h_t = tanh((W x_t + U h_{t-1} + b) / 2) tanh(h_{t-1} / 2)."""
    hs = []
    for x in xs:
        h = np.tanh(0.5 * (x @ P["W"].T + h @ P["U"].T + P["b"])) * np.tanh(0.5 * h)
        hs.append(h)
    return np.array(hs)


@pytest.fixture
def bisig():
    """The bipolar sigmoid 2 sigma(z) - 1 = tanh(z / 2), registered for one test only."""
    act = register(Activation(
        name="bisig", latex=r"\operatorname{bisig}", unicode="bisig",
        numpy="np.tanh(0.5 * ({z}))",
        deriv="0.5 * (1.0 - np.square(np.tanh(0.5 * ({z}))))",
        deriv_from_output="0.5 * (1.0 - {y} * {y})",
        deriv_from_output_latex=r"\tfrac12 (1 - {y} \odot {y})",
        sympy=lambda z: sp.tanh(z / 2),
        numpy_kernel="np.tanh(0.5 * ({z}))", numpy_kernel_out="np.tanh(0.5 * ({z}), out={out})",
        numba="math.tanh(0.5 * ({z}))", numba_deriv_from_output="0.5 * (1.0 - ({y}) * ({y}))",
        range=(Fraction(-1), Fraction(1)), deriv_range=(Fraction(0), Fraction(1, 2)),
    ))
    yield act
    unregister("bisig")
    assert "bisig" not in ACTIVATIONS


def test_a_new_activation_is_one_registration(bisig):
    import derive
    from derive.document.latex_doc import document
    from derive.document.text import show
    from derive.tools import flow

    d = derive.derive(BISIG_RNN)
    assert r"\operatorname{bisig}'(h_{t-1})" in document(d)  # the derivation
    assert r"\operatorname{bisig}(" in document(d, standalone=True)  # the cell's equations
    text = show(d)
    assert "bisig′(hₜ₋₁)" in text and "operatorname" not in text
    # dh_t/dh_{t-1} = d(g_t) d(bisig'(h_{t-1})) + d(bisig(h_{t-1})) d(g'_t) U: |g| <= 1,
    # |bisig| <= 1 and |bisig'| <= 1/2 from the record, so each term is bounded by 1/2 (||U||_2)
    terms = d.jacobian["h"]["h"]
    assert len(terms) == 2
    assert all(flow.term_bound(d, t).const == Fraction(1, 2) for t in terms)
    bounds = next(b for b in flow.latex_blocks(d) if b.key == "bounds")
    assert r"\|d(\operatorname{bisig}')\|_2 \le \tfrac12" in bounds.text
    assert r"\le \tfrac{1}{2} \|U\|_2 + \tfrac{1}{2}" in [rhs for _, rhs in bounds.rows]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_new_activation_runs_in_the_kernels(bisig, backend):
    if backend == "numba":
        require("numba", "numba is not installed (pip install -e '.[numba]')")
    from derive.codegen import load_kernel

    mod = load_kernel(BISIG_RNN, backend)
    rng = np.random.default_rng(0)
    T, B, M, N = 4, 2, 2, 3
    P = {k: 2.0 * v for k, v in mod.init_params(M, N, seed=1).items()}
    xs = rng.normal(size=(T, B, M))
    s0 = {"h": 0.5 * rng.normal(size=(B, N))}
    hs, cache = mod.forward(P, xs, s0)
    np.testing.assert_allclose(hs, bisig_reference(P, xs, s0["h"]), rtol=1e-12, atol=1e-14)
    R = rng.normal(size=(T, B, N))
    grads = mod.backward(P, cache, R)
    eps = 1e-6
    for k, v in P.items():
        fd = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            plus, minus = dict(P), dict(P)
            plus[k], minus[k] = v.copy(), v.copy()
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd[idx] = ((bisig_reference(plus, xs, s0["h"]) * R).sum()
                       - (bisig_reference(minus, xs, s0["h"]) * R).sum()) / (2 * eps)
        np.testing.assert_allclose(grads[k], fd, rtol=1e-6, atol=1e-8, err_msg=k)


# ------------------------------------------------------------------ all of them in the kernels

ALL_ACTS = {
    "name": "all_acts",
    "title": "every built-in activation in one step",
    "params": {"W": (H, X), "U": (H, H), "b": (H,), "V": (H, X), "c": (H,)},
    "nodes": {
        "a": "relu(W @ x + U @ h_prev + b)",
        "l": "leaky_relu(V @ x + c)",
        "p": "softplus(W @ x - b)",
        "s": "softsign(U @ h_prev + c)",
        "e": "exp(0.5 * h_prev)",
        "g": "hard_sigmoid(V @ x + U @ h_prev)",
        "r": "reciprocal(1 + p)",
        "i": "identity(a + l)",
        "h": "tanh(i * r + s * g + 0.1 * e)",
    },
    "states": ("h",),
}


def all_acts_reference(P, xs, h):
    """ALL_ACTS by hand, with NumPy's own functions."""
    hs = []
    for x in xs:
        a = np.maximum(x @ P["W"].T + h @ P["U"].T + P["b"], 0.0)
        zl = x @ P["V"].T + P["c"]
        l_ = np.where(zl > 0, zl, 0.01 * zl)
        p = np.log1p(np.exp(x @ P["W"].T - P["b"]))
        zs = h @ P["U"].T + P["c"]
        s = zs / (1 + np.abs(zs))
        e = np.exp(0.5 * h)
        g = np.clip((x @ P["V"].T + h @ P["U"].T + 3.0) / 6.0, 0.0, 1.0)
        r = 1.0 / (1.0 + p)
        h = np.tanh((a + l_) * r + s * g + 0.1 * e)
        hs.append(h)
    return np.array(hs)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_every_activation_runs_in_the_kernels(backend):
    """Forward against the hand-written step, backward against central differences (random
    points: no kink is within the step of a difference)."""
    if backend == "numba":
        require("numba", "numba is not installed (pip install -e '.[numba]')")
    from derive.codegen import load_kernel

    mod = load_kernel(ALL_ACTS, backend)
    rng = np.random.default_rng(0)
    T, B, M, N = 4, 2, 2, 3
    P = {k: 2.0 * v for k, v in mod.init_params(M, N, seed=1).items()}
    xs = rng.normal(size=(T, B, M))
    s0 = {"h": 0.5 * rng.normal(size=(B, N))}
    hs, cache = mod.forward(P, xs, s0)
    np.testing.assert_allclose(hs, all_acts_reference(P, xs, s0["h"]), rtol=1e-12, atol=1e-14)
    R = rng.normal(size=(T, B, N))
    grads = mod.backward(P, cache, R)
    eps = 1e-6
    for k, v in P.items():
        fd = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            plus, minus = dict(P), dict(P)
            plus[k], minus[k] = v.copy(), v.copy()
            plus[k][idx] += eps
            minus[k][idx] -= eps
            fd[idx] = ((all_acts_reference(plus, xs, s0["h"]) * R).sum()
                       - (all_acts_reference(minus, xs, s0["h"]) * R).sum()) / (2 * eps)
        np.testing.assert_allclose(grads[k], fd, rtol=1e-6, atol=1e-8, err_msg=k)
    # float32 in, float32 out
    P32 = {k: v.astype(np.float32) for k, v in P.items()}
    hs32, cache32 = mod.forward(P32, xs.astype(np.float32),
                                {"h": s0["h"].astype(np.float32)})
    assert hs32.dtype == np.float32
    np.testing.assert_allclose(hs32, hs, rtol=1e-4, atol=1e-5)
    assert all(g.dtype == np.float32
               for g in mod.backward(P32, cache32, R.astype(np.float32)).values())
