"""Generated NumPy kernels (generated/<cell>.py) against numeric autodiff, torch and each other.

* complex-step differences of an independent NumPy reference (tests/reference.py), float64,
  <= 1e-7 relative (complex step is exact to rounding, so the bound has room to spare);
* torch.autograd / torch.func on a hand-written torch version of every cell, <= 1e-9;
* torch.nn.LSTM / GRU / RNN through derive.tools.interop (in tests/test_kernels_torch.py).
"""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest
import reference
from conftest import require

CELLS = reference.CELLS
# every built-in cell, the cells of the literature too (mgu and gru_cho multiply a value of the
# step by a matrix: their numba steps have a product between two fused loops)
ALL_CELLS = ("lstm", "sigmoid_lstm", "rnn", "gru", "peephole_lstm", "mgu", "gru_cho",
             "cifg_lstm", "indrnn", "mingru", "minlstm", "ugrnn")
N, M, T, B = 3, 2, 4, 2
H = 1e-30  # complex step


# "numba" runs the whole-sequence kernels at these test sizes (small stacked matrices),
# "numba-steps" the same module forced onto its per-step BLAS path (what large cells run)
BACKENDS = ["numpy", "numba", "numba-steps"]


def kernel(cell: str, backend: str = "numpy"):
    """The generated module of a cell; the numba backend needs numba (an optional extra)."""
    if backend.startswith("numba"):
        require("numba", "numba is not installed (pip install -e '.[numba]')")
        return importlib.import_module(f"derive.kernels.{cell}_numba")
    return importlib.import_module(f"derive.kernels.{cell}")


def numba_path(monkeypatch, path: str) -> None:
    """Force every numba module onto its whole-sequence ("seq") or per-step ("steps") path."""
    for cell in ALL_CELLS:
        monkeypatch.setattr(kernel(cell, "numba"), "SEQUENCE_MAX_BYTES",
                            1 << 62 if path == "seq" else -1)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> str:
    if request.param.startswith("numba"):
        numba_path(monkeypatch, "steps" if request.param == "numba-steps" else "seq")
    return request.param


def setup(cell: str, seed: int = 0, scale: float = 2.0, backend: str = "numpy"):
    mod = kernel(cell, backend)
    rng = np.random.default_rng(seed)
    P = {k: v * scale for k, v in mod.init_params(M, N, seed=seed + 1).items()}
    xs = rng.normal(size=(T, B, M))
    s0 = {s: 0.5 * rng.normal(size=(B, N)) for s in mod.STATE}
    return mod, P, xs, s0, rng


def ref_run(cell, P, xs, s0):
    st, hs = dict(s0), []
    for t in range(xs.shape[0]):
        st = reference.numpy_step(cell, P, xs[t], st)
        hs.append(st["h"])
    return np.array(hs), st


def cstep(f, a: np.ndarray) -> np.ndarray:
    """d f / d a by complex step; f returns an array, a any shape; result (*f.shape, *a.shape)."""
    out = []
    for k in range(a.size):
        e = np.zeros(a.size, complex)
        e[k] = 1j * H
        out.append(np.imag(f(a.astype(complex) + e.reshape(a.shape))) / H)
    return np.moveaxis(np.array(out), 0, -1).reshape(np.shape(out[0]) + a.shape)


def rel(got, want) -> float:
    return float(np.abs(np.asarray(got) - want).max() / max(np.abs(want).max(), 1e-300))


@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_reference(cell, backend):
    mod, P, xs, s0, _ = setup(cell, backend=backend)
    hs, cache = mod.forward(P, xs, s0)
    want, final = ref_run(cell, P, xs, s0)
    assert hs.shape == (T, B, N) and hs.dtype == np.float64
    assert rel(hs, want) <= 1e-14
    for s in mod.STATE:
        assert rel(cache["state"][s], final[s]) <= 1e-14


@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_complex_step(cell, backend):
    mod, P, xs, s0, rng = setup(cell, backend=backend)
    R = rng.normal(size=(T, B, N))
    Rs = {s: rng.normal(size=(B, N)) for s in mod.STATE}  # a loss on the final state too
    _, cache = mod.forward(P, xs, s0)
    g = mod.backward(P, cache, R, dstate=Rs, input_grad=True)

    def loss(P=P, xs=xs, s0=s0):
        hs, fin = ref_run(cell, P, xs, s0)
        return np.sum(hs * R) + sum(np.sum(fin[s] * Rs[s]) for s in mod.STATE)

    assert set(g) == set(P) | {f"{s}0" for s in mod.STATE} | {"xs"}
    for A in P:
        assert g[A].shape == P[A].shape and g[A].dtype == P[A].dtype
        assert rel(g[A], cstep(lambda a, A=A: loss(P={**P, A: a}), P[A])) <= 1e-7, A
    for s in mod.STATE:
        assert rel(g[f"{s}0"], cstep(lambda a, s=s: loss(s0={**s0, s: a}), s0[s])) <= 1e-7, s
    assert rel(g["xs"], cstep(lambda a: loss(xs=a), xs)) <= 1e-7


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("product", ["dense", "blocks"])
def test_rtrl_and_rtrl_step_match_complex_step(cell, backend, product, monkeypatch):
    """Both RTRL products: S <- J S with the whole dense state Jacobian (small states) and
    block by block (larger states), forced here by the kernel's RTRL_DENSE_MAX."""
    monkeypatch.setattr(kernel(cell), "RTRL_DENSE_MAX", 1 << 30 if product == "dense" else 0)
    mod, P, xs, s0, _ = setup(cell, backend=backend)
    sens = mod.rtrl(P, xs, s0)
    state, online = dict(s0), None
    for t in range(T):
        state, online = mod.rtrl_step(P, xs[t], state, online)
    for A in P:
        want = cstep(lambda a, A=A: ref_run(cell, {**P, A: a}, xs, s0)[1]["h"], P[A])
        assert sens[A].shape == (B, N) + P[A].shape
        assert rel(sens[A], want) <= 1e-7, A
        assert rel(online["h"][A], want) <= 1e-7, A
        for s in mod.STATE[1:]:  # the other states' sensitivities, from rtrl_step
            want_s = cstep(lambda a, A=A, s=s: ref_run(cell, {**P, A: a}, xs, s0)[1][s], P[A])
            assert rel(online[s][A], want_s) <= 1e-7, (s, A)
    _, final = ref_run(cell, P, xs, s0)
    for s in mod.STATE:
        assert rel(state[s], final[s]) <= 1e-14


@pytest.mark.parametrize("cell", CELLS)
def test_state_jacobian_matches_complex_step(cell):
    mod, P, xs, s0, _ = setup(cell)
    J = mod.state_jacobian(P, xs[0], s0)
    k = len(mod.STATE)
    assert J.shape == (B, k * N, k * N)
    for b in range(B):
        flat = np.concatenate([s0[s][b] for s in mod.STATE])

        def step(v, b=b):
            prev = {s: v[i * N:(i + 1) * N] for i, s in enumerate(mod.STATE)}
            out = reference.numpy_step(cell, P, xs[0][b], prev)
            return np.concatenate([out[s] for s in mod.STATE])

        assert rel(J[b], cstep(step, flat)) <= 1e-7


@pytest.mark.parametrize("cell", CELLS)
def test_float32_in_float32_out_close_to_float64(cell, backend):
    mod, P, xs, s0, rng = setup(cell, scale=1.0, backend=backend)
    R = rng.normal(size=(T, B, N))
    P32 = {k: v.astype(np.float32) for k, v in P.items()}
    xs32, s032 = xs.astype(np.float32), {s: v.astype(np.float32) for s, v in s0.items()}
    hs64, c64 = mod.forward(P, xs, s0)
    hs32, c32 = mod.forward(P32, xs32, s032)
    g64 = mod.backward(P, c64, R, input_grad=True)
    g32 = mod.backward(P32, c32, R.astype(np.float32), input_grad=True)
    assert hs32.dtype == np.float32 and rel(hs32, hs64) <= 1e-4
    for k in g64:
        assert g32[k].dtype == np.float32, k
        assert rel(g32[k], g64[k]) <= 1e-4, k
    sens32 = mod.rtrl(P32, xs32, s032)
    sens64 = mod.rtrl(P, xs, s0)
    for k in sens64:
        assert sens32[k].dtype == np.float32 and rel(sens32[k], sens64[k]) <= 1e-4, k
    J32 = mod.state_jacobian(P32, xs32[0], s032)
    assert J32.dtype == np.float32
    assert rel(J32, mod.state_jacobian(P, xs[0], s0)) <= 1e-4


def test_state0_defaults_to_zeros():
    mod, P, xs, s0, _ = setup("lstm")
    zeros = {s: np.zeros_like(v) for s, v in s0.items()}
    assert np.array_equal(mod.forward(P, xs)[0], mod.forward(P, xs, zeros)[0])


@pytest.mark.parametrize("cell", CELLS)
def test_importing_a_kernel_does_not_import_sympy(cell):
    code = (f"import sys, derive.kernels.{cell} as k; "
            "bad = [m for m in sys.modules if m.startswith(('sympy', 'jinja2')) or "
            "m.startswith('derive.') and not m.startswith('derive.kernels')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("cell", CELLS)
def test_a_backend_refuses_the_other_backends_cache(cell):
    """The NumPy and numba backends lay their caches out differently: a backward given the
    other backend's cache says so instead of reading the wrong arrays."""
    a, P, xs, s0, rng = setup(cell)
    b = kernel(cell, "numba")
    R = rng.normal(size=(T, B, N))
    _, ca = a.forward(P, xs, s0)
    _, cb = b.forward(P, xs, s0)
    with pytest.raises(ValueError, match="made by the numba backend"):
        a.backward(P, cb, R)
    with pytest.raises(ValueError, match="made by the numpy backend"):
        b.backward(P, ca, R)


def test_init_params_shapes_dtype_and_seed():
    mod = kernel("gru")
    p = mod.init_params(3, 5, seed=4, dtype=np.float32)
    assert list(p) == list(mod.PARAMS)
    assert p["W_xr"].shape == (5, 3) and p["W_hn"].shape == (5, 5) and p["b_hn"].shape == (5,)
    assert all(v.dtype == np.float32 for v in p.values())
    assert np.abs(p["W_hr"]).max() <= 1 / np.sqrt(5)
    assert np.array_equal(p["W_xr"], mod.init_params(3, 5, seed=4, dtype=np.float32)["W_xr"])


BAD = [
    (lambda P, xs, s0: ({k: v for k, v in P.items() if k != "b_i"}, xs, s0),
     ["missing ['b_i']"]),
    (lambda P, xs, s0: ({**P, "W_zz": P["b_i"]}, xs, s0), ["unexpected ['W_zz']"]),
    (lambda P, xs, s0: ({**P, "W_hi": P["W_hi"][:, :2]}, xs, s0),
     ["params['W_hi'] has shape (3, 2)", "expected (3, 3)"]),
    (lambda P, xs, s0: ({**P, "b_f": P["b_f"].astype(np.float32)}, xs, s0),
     ["params['b_f'] has dtype float32", "expected float64"]),
    (lambda P, xs, s0: (P, xs[0], s0), ["xs must be an array of shape (T, B, n_in=2)", "(2, 2)"]),
    (lambda P, xs, s0: (P, xs[:, :, :1], s0), ["xs has shape (4, 2, 1)", "expected (4, 2, 2)"]),
    (lambda P, xs, s0: (P, xs.astype(np.float32), s0), ["xs has dtype float32"]),
    (lambda P, xs, s0: (P, xs, {"h": s0["h"]}), ["state0 must map exactly the states ['h', 'c']"]),
    (lambda P, xs, s0: (P, xs, {**s0, "c": s0["c"][:1]}),
     ["state0['c'] has shape (1, 3)", "expected (2, 3)"]),
]


@pytest.mark.parametrize("make, needles", BAD)
def test_bad_input_is_a_clear_value_error(make, needles, backend):
    mod, P, xs, s0, _ = setup("lstm", backend=backend)
    args = make(P, xs, s0)
    with pytest.raises(ValueError) as err:
        mod.forward(*args)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_backward_rejects_inconsistent_t_or_b(backend):
    mod, P, xs, s0, _ = setup("gru", backend=backend)
    _, cache = mod.forward(P, xs, s0)
    with pytest.raises(ValueError, match=r"dhs has shape \(3, 2, 3\); expected \(4, 2, 3\)"):
        mod.backward(P, cache, np.zeros((T - 1, B, N)))
    with pytest.raises(ValueError, match=r"dhs has shape \(4, 1, 3\); expected \(4, 2, 3\)"):
        mod.backward(P, cache, np.zeros((T, 1, N)))
    with pytest.raises(ValueError, match="cache must be the dict returned by forward"):
        mod.backward(P, {}, np.zeros((T, B, N)))


def test_rtrl_step_and_state_jacobian_reject_bad_input():
    mod, P, xs, s0, _ = setup("lstm")
    with pytest.raises(ValueError, match=r"x_t must be an array of shape \(B, n_in=2\)"):
        mod.state_jacobian(P, xs, s0)
    with pytest.raises(ValueError, match=r"state\['h'\] has shape"):
        mod.rtrl_step(P, xs[0], {**s0, "h": s0["h"][:1]})
    with pytest.raises(ValueError, match="sens.*missing 'W_xi'"):
        mod.rtrl_step(P, xs[0], s0, {"h": {}, "c": {}})


@pytest.mark.parametrize("cell", ALL_CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path, threads", [("seq", "1"), ("seq", "3"), ("steps", "1")])
def test_numba_backend_matches_numpy_at_vector_sizes(cell, dtype, path, threads, monkeypatch):
    """At sizes where the fused loops run vectorised, with a remainder (n = 37 is no multiple
    of any vector width, nor of the products' 4-row blocks) and several batch rows, the numba
    backend equals the NumPy backend on both of its paths, every gradient (initial states,
    inputs, a loss on the final state too): float64 to rounding, float32 to float32 rounding
    (its activations compute in float32). With 3 threads the 5 rows split into chunks of 2
    and 3 rows (a pair and a pair plus a single row). Every built-in cell prints fused."""
    numba_path(monkeypatch, path)
    monkeypatch.setenv("DERIVE_NUM_THREADS", threads)
    b = kernel(cell, "numba")
    a = kernel(cell)
    assert b.FUSED
    rng = np.random.default_rng(4)
    n, batch = 37, 5
    P = a.init_params(M, n, seed=3, dtype=dtype)
    xs = rng.normal(size=(3, batch, M)).astype(dtype)
    R = rng.normal(size=(3, batch, n)).astype(dtype)
    s0 = {s: rng.normal(size=(batch, n)).astype(dtype) for s in a.STATE}
    Rs = {s: rng.normal(size=(batch, n)).astype(dtype) for s in a.STATE}
    ha, ca = a.forward(P, xs, s0)
    hb, cb = b.forward(P, xs, s0)
    tol = 1e-14 if dtype == np.float64 else 1e-6
    assert hb.dtype == dtype and rel(hb, ha) <= tol
    for s in a.STATE:
        assert rel(cb["state"][s], ca["state"][s]) <= tol, s
    ga = a.backward(P, ca, R, dstate=Rs, input_grad=True)
    gb = b.backward(P, cb, R, dstate=Rs, input_grad=True)
    assert set(ga) == set(gb)
    for k in ga:
        assert gb[k].dtype == dtype and rel(gb[k], ga[k]) <= 100 * tol, k


def _activation_loops(mod):
    """Compiled loops applying a numba kernel's sigma and tanh elementwise."""
    from numba import njit

    sig, tanh = mod._sigmoid_s, mod._tanh_s

    @njit(error_model="numpy")
    def apply(z, out_s, out_t):
        for i in range(z.shape[0]):
            out_s[i] = sig(z[i])
            out_t[i] = tanh(z[i])

    return apply


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_activations_are_accurate_to_two_ulp(dtype):
    """The numba kernels' branch-free sigma and tanh (their own exp, so that the fused loops
    vectorise) against long-double references: at most 2 ulp wherever the result is a normal
    number, exact limits at +-inf, signed zero, and NaN passes through."""
    mod = kernel("lstm", "numba")
    apply = _activation_loops(mod)
    fin = np.finfo(dtype)
    z = np.concatenate([np.linspace(-120, 120, 200_001), np.geomspace(1e-30, 120, 20_001),
                        -np.geomspace(1e-30, 120, 20_001)]).astype(dtype)
    out_s, out_t = np.empty_like(z), np.empty_like(z)
    apply(z, out_s, out_t)
    zl = z.astype(np.longdouble)
    for got, want in ((out_s, 1 / (1 + np.exp(-zl))), (out_t, np.tanh(zl))):
        ok = np.abs(want) >= fin.tiny
        err = np.abs(got[ok] - want[ok]) / np.abs(want[ok]) / fin.eps
        assert got.dtype == dtype and err.max() <= 2.0, float(err.max())
    special = np.array([np.inf, -np.inf, 0.0, -0.0, np.nan, 1e4, -1e4], dtype)
    s, t = np.empty_like(special), np.empty_like(special)
    apply(special, s, t)
    assert list(s[:4]) == [1, 0, 0.5, 0.5] and s[5] == 1 and s[6] == 0 and np.isnan(s[4])
    assert list(t[:2]) == [1, -1] and t[5] == 1 and t[6] == -1 and np.isnan(t[4])
    assert t[2] == 0 and not np.signbit(t[2]) and t[3] == 0 and np.signbit(t[3])


@pytest.mark.parametrize("cell", CELLS + ("mgu", "gru_cho"))
def test_numba_fused_loops_compile_to_vector_code_in_the_arrays_dtype(cell):
    """Regression guard for the fused loops' speed, without timing anything: compiled for
    float32, each step's loop has vector arithmetic (LLVM vectorised it: no libm call, no
    aliasing it cannot rule out) and no float32 -> float64 conversion (a float64 literal would
    halve the vector width)."""
    import re

    import numba
    from numba import njit

    mod = kernel(cell, "numba")
    P = mod.init_params(M, 9, seed=1, dtype=np.float32)
    xs = np.ones((2, 3, M), np.float32)
    for path in ("seq", "steps"):  # compiles every loop for float32
        with pytest.MonkeyPatch.context() as mp:
            numba_path(mp, path)
            _, cache = mod.forward(P, xs)
            mod.backward(P, cache, np.ones((2, 3, 9), np.float32))
    loops = [f for name, f in vars(mod).items()
             if name.startswith(("_forward_step", "_backward_step"))]
    for step in loops + [mod._forward_seq, mod._backward_seq, mod._nt2, mod._rank_update]:
        opts = {k: v for k, v in step.targetoptions.items() if k not in ("cache", "nopython")}
        fresh = njit(**opts)(step.py_func)  # code loaded from the cache cannot be inspected
        sig = next(s for s in step.signatures  # the float32 one (other tests compile float64)
                   if any(getattr(a, "dtype", None) == numba.float32 for a in s))
        fresh.compile(sig)
        ir = fresh.inspect_llvm(sig)
        assert re.search(r"fmul [a-z ]*<\d+ x float>", ir), f"{step.__name__} not vectorised"
        assert "fpext float" not in ir, f"{step.__name__} converts float32 to float64"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_backward_reuses_the_cache_once_unless_kept(cell, backend):
    mod, P, xs, s0, rng = setup(cell, backend=backend)
    R = rng.normal(size=(T, B, N))
    _, cache = mod.forward(P, xs, s0)
    kept = mod.backward(P, cache, R, keep_cache=True)
    again = mod.backward(P, cache, R, keep_cache=True)
    last = mod.backward(P, cache, R)  # reuses the cache's memory for the adjoints
    for k in kept:
        assert np.array_equal(kept[k], again[k]) and np.array_equal(kept[k], last[k]), k
    if backend == "numpy":  # the NumPy kernels leave the cache intact: it serves again
        after = mod.backward(P, cache, R)
        for k in kept:
            assert np.array_equal(kept[k], after[k]), k
        return
    with pytest.raises(ValueError, match="used by an earlier backward"):
        mod.backward(P, cache, R)


# mgu and gru_cho: their state Jacobians hold products of two matrices (W_h d(.) W_f), which
# the RTRL loops do not print; their numba modules re-export the NumPy rtrl
OWN_RTRL = tuple(c for c in ALL_CELLS if c not in ("mgu", "gru_cho"))


@pytest.mark.parametrize("cell", ALL_CELLS)
def test_numba_rtrl_is_its_own_and_matches_numpy(cell):
    """The numba backend prints its own rtrl for every built-in cell whose Jacobian terms are
    d(.)...d(.) W (not NumPy's re-exported); it equals NumPy's rtrl (itself checked against
    complex steps above) at a small and at a vector-sized state."""
    b = kernel(cell, "numba")
    a = kernel(cell)
    if cell in OWN_RTRL:
        assert b.rtrl is not a.rtrl and b.rtrl.__module__ == b.__name__
    else:
        assert b.rtrl is a.rtrl
    rng = np.random.default_rng(5)
    for n, batch in ((5, 3), (37, 5)):
        P = a.init_params(M, n, seed=2)
        xs = rng.normal(size=(3, batch, M))
        s0 = {s: 0.5 * rng.normal(size=(batch, n)) for s in a.STATE}
        ra, rb = a.rtrl(P, xs, s0), b.rtrl(P, xs, s0)
        for k in ra:
            assert rb[k].shape == ra[k].shape and rel(rb[k], ra[k]) <= 1e-12, (n, k)


def test_numba_module_falls_back_to_numpy_rtrl_when_the_printer_cannot(monkeypatch):
    """A cell whose Jacobian or V terms the numba RTRL printer does not cover still gets a
    numba module: its rtrl is the NumPy backend's, re-exported."""
    require("numba", "numba is not installed")
    from derive.codegen import numba_backend

    def unsupported(*args):
        raise numba_backend.Unsupported("not covered")

    monkeypatch.setattr(numba_backend, "rtrl_context", unsupported)
    text = numba_backend.render_numba_kernel("lstm")
    assert "def rtrl(" not in text and "def _rtrl_post(" not in text
    assert "\n    rtrl,\n" in text  # imported from the NumPy sibling
    compile(text, "lstm_numba.py", "exec")


def test_numba_printer_prints_row_views_and_typed_constants_exact_strings():
    """What makes the numba loops vectorise, printed (never rewritten): a value held in an
    array is an element of a row view taken once per batch row, a loop-local value a scalar,
    every constant (the spec's and an activation facet's own literals) a name bound to the
    arrays' dtype."""
    from fractions import Fraction

    from derive.codegen.ir import ActDeriv, ActValue, Cols, Const, Scaled, Signed, Var
    from derive.codegen.naming import Namer
    from derive.codegen.numba_printer import Constants, NumbaPrinter, Place, Views
    from derive.spec import Mul

    nm = Namer(["c", "f", "one"])
    views, consts = Views(nm), Constants(nm)
    p = NumbaPrinter(places={"c_prev": Place("S_c", "t"), "b_f": Place("b_f", batched=False)},
                     scalars={"f"}, views=views, consts=consts)
    gate = Cols("A_x", "n_hidden", "2 * n_hidden", "t")
    assert p.doprint(Signed(((1, Mul((Var("f"), Var("c_prev")))), (1, Const(Fraction(1)))))) \
        == "f * S_c_t[j] + one_1"  # the cell's own name 'one' keeps its name
    assert p.doprint(ActValue("sigmoid", Signed(((1, gate), (1, Var("b_f")))))) == \
        "_sigmoid_s(A_x_t_0[j] + b_f[j])"
    assert p.doprint(ActDeriv("tanh", Var("f"), True)) == "one_1 - f * f"
    assert p.doprint(Scaled(Fraction(-1, 4), ActValue("leaky_relu", Var("f")))) == \
        "-c0 * max(f, c1 * f)"
    assert p.doprint(Mul((ActDeriv("relu", Var("f"), True), Var("f")))) == \
        "(one_1 if f > zero else zero) * f"
    assert views.define(Place("A_x", "t", "n_hidden", "2 * n_hidden")) == \
        "A_x_t_0 = A_x[t, b, n_hidden:2 * n_hidden]"
    assert views.define(Place("S_c", "t")) == "S_c_t = S_c[t, b]"
    assert {consts.literal(n): n for n in consts.values.values()} == {
        "1.0": "one_1", "0.25": "c0", "0.01": "c1", "0.0": "zero"}


@pytest.mark.parametrize("batch", range(1, 10))
@pytest.mark.parametrize("threads", [1, 2, 3, 5, 16])
def test_row_chunks_cover_the_batch_in_whole_pairs(batch, threads):
    """The numba backend's batch split: contiguous chunks covering every row once, each but the
    last of whole row pairs (the products take two rows at a time), at most `threads` of them,
    sizes within one pair of each other."""
    from derive.kernels import _runtime as rt

    chunks = rt.row_chunks(batch, threads)
    assert 1 <= len(chunks) <= threads
    assert chunks[0][0] == 0 and chunks[-1][1] == batch
    assert all(a[1] == b[0] for a, b in zip(chunks[:-1], chunks[1:], strict=True))
    assert all(lo < hi and lo % 2 == 0 for lo, hi in chunks)
    pairs = [(hi - lo + 1) // 2 for lo, hi in chunks]
    assert max(pairs) - min(pairs) <= 1
    assert len(chunks) == min(threads, (batch + 1) // 2)


def test_run_chunks_runs_every_chunk_and_reraises(monkeypatch):
    from derive.kernels import _runtime as rt

    seen = []
    rt.run_chunks(lambda lo, hi, tag: seen.append((lo, hi, tag)), [(0, 2), (2, 4), (4, 5)],
                  lambda i: (f"t{i}",))
    assert sorted(seen) == [(0, 2, "t0"), (2, 4, "t1"), (4, 5, "t2")]

    def boom(lo, hi):
        if lo:
            raise RuntimeError(f"chunk {lo}")

    with pytest.raises(RuntimeError, match="chunk 2"):
        rt.run_chunks(boom, [(0, 2), (2, 4)], lambda i: ())


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_bad_derive_num_threads_is_a_clear_error(value, monkeypatch):
    from derive.kernels import _runtime as rt

    monkeypatch.setenv("DERIVE_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"DERIVE_NUM_THREADS must be a positive integer, "
                                         f"got '{value}'"):
        rt.num_threads()
    monkeypatch.setenv("DERIVE_NUM_THREADS", "3")
    assert rt.num_threads() == 3


@pytest.mark.parametrize("cell, merged", [("lstm", ["h"]), ("sigmoid_lstm", ["h"]),
                                          ("peephole_lstm", ["h"]), ("rnn", ["h"]), ("gru", []),
                                          ("mgu", []), ("cifg_lstm", ["y"])])
def test_numba_folds_the_recurrent_product_into_the_input_product_only_where_valid(cell, merged):
    """[W_x W_h] [x; h] in one product is right where every W_hk h is added to W_xk x and
    nowhere else used (the LSTMs, the RNN), wrong for the GRU, whose W_hn h is scaled by r."""
    from derive.calculus.derivation import derive
    from derive.codegen.numba_backend import fused

    assert [st.vec.name for st in fused(derive(cell)).steps.merged] == merged


def test_numba_prints_a_cell_whose_derivatives_are_all_zero():
    """h = U x - U x: no adjoint, no Jacobian term, no V term; the compiled functions whose
    loops are left with nothing to do still parse (found by bench/fuzz.py, seed 101, cell 810:
    an empty loop body)."""
    require("numba", "numba is not installed")
    from derive.codegen import load_kernel

    spec = {"name": "nothing", "title": "a cell that is zero",
            "params": {"U": ("hidden", "input")}, "nodes": {"h": "U @ x - U @ x"},
            "states": ("h",)}
    mod = load_kernel(spec, "numba")
    assert mod.FUSED
    P = mod.init_params(M, N, seed=1)
    xs = np.random.default_rng(2).normal(size=(T, B, M))
    hs, cache = mod.forward(P, xs)
    g = mod.backward(P, cache, np.ones_like(hs), input_grad=True)
    assert not hs.any() and not g["U"].any() and not g["xs"].any()
    assert not mod.rtrl(P, xs)["U"].any()


def test_numba_does_not_fold_a_recurrent_product_read_once_beside_an_input_product_twice():
    """U x + W h + U x reads U's columns of A_x twice: with W h folded into them W h would
    count twice (found by bench/fuzz.py, seed 101, cell 999: wrong numbers, silently)."""
    require("numba", "numba is not installed")
    from derive.calculus.derivation import derive
    from derive.codegen import load_kernel
    from derive.codegen.numba_backend import fused

    spec = {"name": "twice", "title": "an input product twice in one sum",
            "params": {"U": ("hidden", "input"), "W": ("hidden", "hidden"), "b": ("hidden",)},
            "nodes": {"h": "tanh(U @ x + W @ h_prev + U @ x + b)"}, "states": ("h",)}
    assert fused(derive(spec)).steps.merged == ()
    a, b = load_kernel(spec, "numpy"), load_kernel(spec, "numba")
    P = a.init_params(M, N, seed=1)
    xs = np.random.default_rng(2).normal(size=(T, B, M))
    assert rel(b.forward(P, xs)[0], a.forward(P, xs)[0]) <= 1e-14
