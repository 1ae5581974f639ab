"""Gradient flow (derive.tools.flow, derive flow): measured against independent things.

* products of one-step Jacobians (from the generated kernels) against central differences of the
  hand-written steps of tests/reference.py, over several steps, for every cell;
* the RNN's decay and growth against the spectral radius of d(tanh') U computed here by hand;
* the LSTM's carousel path against the product of forget gates computed here by hand;
* every measured norm against the derived bounds, and seed 001 eq (33)'s tight bound against the
  path it bounds, computed here by hand;
* seed 004's closed-form sum over paths, written here index by index from the seed, against the
  recursion (the kernel's RTRL), exact SymPy derivatives and the matrix path sum;
* seed 000's approximation: its exact counterpart against differences, and the condition under
  which it is exact.

Seed slips named here: seed 004 writes sigma'_{h_{gamma_k}} for the derivative at step t-k,
component gamma_k (``seed004_index_form`` uses the step index t-k), and expands with A(gamma_1, t)
where A(gamma_1, t-1) is meant. Seed 000's last line writes dc_1/dW_f and prod_{j=1}^{i-1}
f_{j+1} where d^+c_i/dW_f and prod_{j=i+1}^{t} f_j are meant (``test_truncated_sum_over_time``).
Seed 001 eq (33) bounds ||d(sigma(s))||, ||d(o')|| by sqrt(n), sqrt(n)/2 (Frobenius); the spectral
norms are at most 1 and 1/4 (``test_seed001_eq33_tight_bound``).
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os

import numpy as np
import pytest
import reference
import sympy as sp
from conftest import require

import derive
from derive.cli import flow_cli
from derive.tools import flow

CELLS = reference.CELLS
EPS = 1e-6


def _torch_init(cell: str, n: int, m: int, rng: np.random.Generator, scale: float = 1.0):
    k = scale / np.sqrt(n)
    return {a: rng.uniform(-k, k, size=s) for a, s in reference.PARAM_SHAPES[cell](n, m).items()}


def _flat(cell: str, st: dict) -> np.ndarray:
    return np.concatenate([st[s] for s in reference.STATES[cell]])


def _unflat(cell: str, v: np.ndarray, n: int) -> dict:
    return {s: v[i * n:(i + 1) * n] for i, s in enumerate(reference.STATES[cell])}


def _central(f, a: np.ndarray) -> np.ndarray:
    cols = []
    for i in range(a.size):
        hi, lo = a.copy(), a.copy()
        hi.flat[i] += EPS
        lo.flat[i] -= EPS
        cols.append((f(hi) - f(lo)) / (2 * EPS))
    return np.array(cols).T


def _ref_states(cell: str, P: dict, xs: np.ndarray, s0: dict) -> list[dict]:
    return [dict(s0)] + reference.numpy_run(cell, P, xs, s0)


# ----------------------------------------------------------------------------- Jacobian products


@pytest.mark.parametrize("cell", CELLS)
def test_jacobian_products_equal_finite_differences(cell: str) -> None:
    """ds_T/ds_k = J_T ... J_{k+1} (kernel state_jacobian) equals central differences of the
    reference steps run from s_k to s_T, for every k; and measure() reports its norms by lag."""
    n, m, T = 3, 2, 6
    rng = np.random.default_rng(7)
    P = reference.random_params(cell, n, m, rng, scale=0.8)
    xs = rng.standard_normal((T, m))
    s0 = reference.random_state(cell, n, rng)
    d = derive.derive(cell)
    tr = flow.trajectory(d, P, xs, s0)
    assert tr.source == "kernel"
    states = _ref_states(cell, P, xs, s0)
    fl = flow.measure(d, P, xs, s0)
    for k in range(T):
        def run_from(v: np.ndarray, k: int = k) -> np.ndarray:
            st = _unflat(cell, v, n)
            for j in range(k, T):
                st = reference.numpy_step(cell, P, xs[j], st)
            return _flat(cell, st)

        want = _central(run_from, _flat(cell, states[k]))
        got = flow.jacobian_product(tr, T, k)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-8 * max(1, np.abs(want).max()),
                                   err_msg=f"{cell}: ds_{T}/ds_{k}")
        if k >= 1:  # measure() reports lags 1..T-1: ds_T/ds_k with k = T - lag
            lag = T - k
            top = "state" if len(d.states) > 1 else "h"
            assert fl.norms[top]["spectral"][lag - 1] == pytest.approx(
                np.linalg.norm(want, 2), rel=1e-6)
            assert fl.norms["h"]["frobenius"][lag - 1] == pytest.approx(
                np.linalg.norm(want[:n, :n]), rel=1e-6)


# ----------------------------------------------------------------------------- RNN decay / growth


def _rnn_with_radius(rho: float, n: int = 8, m: int = 3, T: int = 40, seed: int = 0):
    """U = rho Q (Q orthogonal: every singular value and |eigenvalue| of U is rho), tiny inputs so
    that h stays in tanh's linear range and d(tanh') ~ I."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    P = {"W": rng.standard_normal((n, m)) / np.sqrt(m), "U": rho * Q, "b_h": np.zeros(n)}
    xs = 1e-8 * rng.standard_normal((T, m))
    return P, xs


@pytest.mark.parametrize("rho", [0.8, 0.95, 1.1, 1.25])
def test_rnn_gradient_decays_or_grows_with_spectral_radius(rho: float) -> None:
    """||dh_T/dh_k||_2 is geometric in the lag with factor the spectral radius of d(tanh')U:
    below 1 it vanishes, above 1 it explodes."""
    P, xs = _rnn_with_radius(rho)
    fl = flow.measure("rnn", P, xs)
    # spectral radius of d(tanh'(h_hat_j)) U per step, by hand from the reference trajectory
    hs = _ref_states("rnn", P, xs, {"h": np.zeros(8)})
    radii = [np.max(np.abs(np.linalg.eigvals(np.diag(1 - st["h"] ** 2) @ P["U"])))
             for st in hs[1:]]
    rbar = float(np.exp(np.mean(np.log(radii))))
    norms = fl.norms["h"]["spectral"]
    lags = fl.lags
    rate = fl.rate("h")
    # geometric: log-norm is a straight line in the lag, with slope log(rho)
    fit = np.polyfit(lags, np.log(norms), 1, full=True)
    resid = float(np.sqrt(fit[1][0] / len(lags))) if len(fit[1]) else 0.0
    assert resid < 1e-6, f"rho={rho}: log-norm not linear in the lag (rms residual {resid:.2e})"
    assert rate == pytest.approx(rbar, rel=1e-4), \
        f"rho={rho}: measured factor per step {rate:.6f}, spectral radius {rbar:.6f}"
    L = int(lags[-1])
    if rho < 1:
        assert rate < 1 and np.all(np.diff(norms) < 0)
        assert norms[-1] <= 1.0001 * rho ** L, f"rho={rho}: ||dh_T/dh_(T-{L})|| = {norms[-1]:.3e}"
    else:
        assert rate > 1 and np.all(np.diff(norms) > 0)
        assert norms[-1] >= 0.999 * rho ** L, f"rho={rho}: ||dh_T/dh_(T-{L})|| = {norms[-1]:.3e}"


# ----------------------------------------------------------------------------- LSTM carousel


def _lstm_forget_gates(P: dict, xs: np.ndarray, states: list[dict]) -> np.ndarray:
    """f_j = sigmoid(W_xf x_j + W_hf h_{j-1} + b_f), j = 1..T, by hand."""
    return np.array([reference.np_sigmoid(P["W_xf"] @ xs[j - 1] + P["W_hf"] @ states[j - 1]["h"]
                                          + P["b_f"]) for j in range(1, len(xs) + 1)])


@pytest.mark.parametrize("forget_bias", [0.0, 8.0])
def test_lstm_carousel_is_product_of_forget_gates(forget_bias: float) -> None:
    """||prod_{j=k+1}^{T} d(f_j)||_2 = max_i prod_j f_ji (and the Frobenius norm is the 2-norm
    of the products): near 1 at every lag when f ~ 1, vanishing when f ~ 1/2."""
    n, m, T = 8, 4, 50
    rng = np.random.default_rng(3)
    P = _torch_init("lstm", n, m, rng)
    P["b_f"] = P["b_f"] + forget_bias
    xs = rng.standard_normal((T, m))
    fl = flow.measure("lstm", P, xs)
    assert fl.carousel_state == "c" and fl.carousel_gates == ["f"]
    f = _lstm_forget_gates(P, xs, _ref_states("lstm", P, xs, {"h": np.zeros(n),
                                                             "c": np.zeros(n)}))
    for L in fl.lags:
        prod = np.prod(f[T - L:], axis=0)
        assert fl.norms["carousel"]["spectral"][L - 1] == pytest.approx(prod.max(), rel=1e-12)
        assert fl.norms["carousel"]["frobenius"][L - 1] == pytest.approx(
            np.linalg.norm(prod), rel=1e-12)
    last = fl.norms["carousel"]["spectral"][-1]
    if forget_bias > 0:
        assert last > 0.97, f"forget bias {forget_bias}: carousel at lag {T - 1} is {last:.4f}"
    else:
        assert last < 1e-6, f"forget bias 0: carousel at lag {T - 1} is {last:.3e}"


def test_lstm_carousel_stays_while_rnn_vanishes() -> None:
    """At the same lag (49) and initialisation scale: LSTM carousel with a large forget bias ~ 1,
    the RNN's ||dh_T/dh_k|| ~ 1e-14."""
    lstm = flow.run_cell("lstm", steps=50, seed=0, forget_bias=8.0)
    rnn = flow.run_cell("rnn", steps=50, seed=0, forget_bias=8.0)
    car = lstm.norms["carousel"]["spectral"][-1]
    van = rnn.norms["h"]["spectral"][-1]
    assert car > 0.97, f"LSTM carousel at lag 49: {car:.4f}"
    assert van < 1e-10, f"RNN ||dh_T/dh_k|| at lag 49: {van:.3e}"
    assert rnn.carousel_state is None and "carousel" not in rnn.norms
    assert rnn.settings["forget_bias_on"] == []  # nothing to shift in a cell with no carousel
    assert lstm.settings["forget_bias_on"] == ["b_f"]


# ----------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scale,forget_bias", [(1.0, 0.0), (1.0, 4.0), (4.0, 0.0), (4.0, -3.0)])
def test_measured_norms_never_exceed_bounds(cell: str, scale: float, forget_bias: float) -> None:
    """measured <= prod ||J_j||_2 <= term-wise bound at the measured values <= derived bound, at
    every lag; Frobenius <= sqrt(dim) times the bound; the carousel never exceeds 1."""
    n, m, T = 6, 3, 30
    rng = np.random.default_rng(11)
    P = _torch_init(cell, n, m, rng, scale)
    d = derive.derive(cell)
    for b in flow.forget_biases(d):
        P[b] = P[b] + forget_bias
    xs = rng.standard_normal((T, m))
    fl = flow.measure(d, P, xs)
    tol = 1 + 1e-9
    S = len(d.states) * n
    for p in ("h", "state", "block"):
        if p not in fl.norms:
            continue
        assert np.all(fl.norms[p]["spectral"] <= fl.submult * tol), p
        assert np.all(fl.norms[p]["frobenius"] <= np.sqrt(S) * fl.bound * tol), p
    assert np.all(fl.submult <= fl.bound_at_values * tol)
    assert np.all(fl.bound_at_values <= fl.bound * tol)
    if "carousel" in fl.norms:
        assert np.all(fl.norms["carousel"]["spectral"] <= 1)
    # one step: ||J_j||_2 <= beta_j, J_j by central differences of the reference step
    tr = flow.trajectory(d, P, xs)
    beta = flow.step_bounds(tr)
    states = _ref_states(cell, P, xs, {s: np.zeros(n) for s in d.states})
    for j in (1, T // 2, T):
        J = _central(lambda v, j=j: _flat(cell, reference.numpy_step(
            cell, P, xs[j - 1], _unflat(cell, v, n))), _flat(cell, states[j - 1]))
        assert np.linalg.norm(J, 2) <= beta[j - 1] * tol


def test_bound_margins_are_reported() -> None:
    """The derived bound is honest about its slack: at lag 1 it is within a factor 10 of the
    measured norm for every built-in cell (it is a bound on one step), and it grows with the lag."""
    for cell in CELLS:
        fl = flow.run_cell(cell, steps=20, seed=1)
        top = fl.norms["state" if "state" in fl.norms else "h"]["spectral"]
        margin = fl.bound / top
        assert 1 <= margin[0] < 10, f"{cell}: bound/measured at lag 1 = {margin[0]:.2f}"
        assert margin[-1] >= margin[0]


def test_seed001_eq33_tight_bound() -> None:
    """||prod_{j=k+1}^{t} d(sigma(s_j)) d(o'_j) W_o||_2 <= (||W_o||_2 / 4)^{t-k}: the path of
    eq (32) computed by hand, against the tight bound (and the seed's (n/2 ||W_o||)^{t-k})."""
    n, m, T = 5, 3, 12
    rng = np.random.default_rng(5)
    P = reference.random_params("sigmoid_lstm", n, m, rng, scale=1.5)
    xs = rng.standard_normal((T, m))
    st = _ref_states("sigmoid_lstm", P, xs, {"h": np.zeros(n), "s": np.zeros(n)})
    Wo = P["W_o"]
    w2 = np.linalg.norm(Wo, 2)
    prod = np.eye(n)
    for L in range(1, T + 1):
        j = T - L + 1
        o = reference.np_sigmoid(Wo @ st[j - 1]["h"] + P["U_o"] @ xs[j - 1] + P["b_o"])
        step = np.diag(reference.np_sigmoid(st[j]["s"])) @ np.diag(o * (1 - o)) @ Wo
        prod = prod @ step
        assert np.linalg.norm(prod, 2) <= (w2 / 4) ** L * (1 + 1e-12)
        assert (w2 / 4) ** L <= (n / 2 * np.linalg.norm(Wo)) ** L  # the seed's looser form
    rows = dict(flow.latex_rows(derive.derive("sigmoid_lstm")))
    lhs = r"\left\|\prod_{j=k+1}^{t} d(\sigma(s_j)) d(o'_j) W_o\right\|_2"
    assert rows[lhs] == r"\le \left(\tfrac{1}{4} \|W_o\|_2\right)^{t-k}"


def test_rnn_bound_is_norm_of_U_to_the_lag() -> None:
    """Seed 004's product of sigma' u: ||dh_t/dh_k||_2 <= ||U||_2^{t-k} (tanh' <= 1)."""
    rows = flow.latex_rows(derive.derive("rnn"))
    assert (r"\left\|\frac{\partial h_t}{\partial h_k}\right\|_2",
            r"\le \left(\|U\|_2\right)^{t-k}") in rows
    n, m, T = 6, 2, 25
    rng = np.random.default_rng(2)
    P = reference.random_params("rnn", n, m, rng, scale=0.9)
    fl = flow.measure("rnn", P, rng.standard_normal((T, m)))
    u2 = np.linalg.norm(P["U"], 2)
    assert np.all(fl.norms["h"]["spectral"] <= u2 ** fl.lags * (1 + 1e-12))
    np.testing.assert_allclose(fl.bound, u2 ** fl.lags, rtol=1e-12)


# ----------------------------------------------------------------------------- seed 004 path sum


def seed004_index_form(P: dict, xs: np.ndarray, hs: list[np.ndarray], wrt: str) -> np.ndarray:
    """Seed 004, written index by index (gamma_0 = alpha):
    dh^alpha_t/dw_ij = sum_{k=0}^{t-1} sum_{gamma_1..gamma_k} prod_{l=0}^{k-1}
    sigma'_{t-l}[gamma_l] u_{gamma_l gamma_{l+1}} * sigma'_{t-k}[gamma_k] delta(gamma_k, i) v^j
    with v = x_{t-k} (w = W) or h_{t-k-1} (w = U). The seed writes sigma'_{h_{gamma_k}}; the
    derivative is taken at step t-k (component gamma_k)."""
    U = P["U"]
    n = U.shape[0]
    t = len(xs)
    sig = {j: 1 - hs[j] ** 2 for j in range(1, t + 1)}  # tanh' at step j
    cols = xs.shape[1] if wrt == "W" else n
    out = np.zeros((n, n, cols))
    for alpha in range(n):
        for k in range(t):
            v = xs[t - k - 1] if wrt == "W" else hs[t - k - 1]
            for gam in itertools.product(range(n), repeat=k):
                g = (alpha, *gam)
                w = 1.0
                for ll in range(k):
                    w *= sig[t - ll][g[ll]] * U[g[ll], g[ll + 1]]
                w *= sig[t - k][g[k]]
                out[alpha, g[k], :] += w * v  # delta(gamma_k, i): only i = gamma_k
    return out.reshape(n, n * cols)


@pytest.mark.parametrize("wrt", ["W", "U"])
def test_seed004_path_sum_equals_recursion(wrt: str) -> None:
    """Closed form (seed 004, index by index) = matrix path sum (flow.path_sum) = RTRL recursion
    (the generated kernel's rtrl)."""
    n, m, T = 3, 2, 5
    rng = np.random.default_rng(9)
    P = reference.random_params("rnn", n, m, rng, scale=0.9)
    xs = rng.standard_normal((T, m))
    tr = flow.trajectory(derive.derive("rnn"), P, xs)
    hs = [s["h"] for s in _ref_states("rnn", P, xs, {"h": np.zeros(n)})]
    closed = seed004_index_form(P, xs, hs, wrt)
    paths = flow.path_sum(tr, wrt)["h"]
    mod = importlib.import_module("derive.kernels.rnn")
    rec = mod.rtrl(P, xs[:, None, :])[wrt][0].reshape(n, -1)
    np.testing.assert_allclose(closed, rec, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(paths, rec, rtol=1e-12, atol=1e-14)


def test_seed004_path_sum_equals_exact_sympy() -> None:
    """At n=2, m=1, T=3: the matrix path sum equals SymPy's exact derivative of h_3 by W."""
    n, m, T = 2, 1, 3
    rng = np.random.default_rng(4)
    P = reference.random_params("rnn", n, m, rng, scale=0.9)
    xs = rng.standard_normal((T, m))
    sym, _, _ = reference.sympy_symbols("rnn", n, m)
    Wsym = sym["W"]
    Ps = {"W": Wsym, "U": reference.to_sympy(P["U"]), "b_h": reference.to_sympy(P["b_h"])}
    h = sp.zeros(n, 1)
    for t in range(T):
        h = reference.sympy_step("rnn", Ps, reference.to_sympy(xs[t]), {"h": h})["h"]
    wflat = reference.flat_symbols(Wsym)
    jac = h.jacobian(wflat)
    vals = dict(zip(wflat, [sp.Float(float(v), 30) for v in P["W"].ravel()], strict=True))
    exact = np.array(jac.subs(vals).evalf(20), dtype=float)
    tr = flow.trajectory(derive.derive("rnn"), P, xs)
    np.testing.assert_allclose(flow.path_sum(tr, "W")["h"], exact, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell,param",
                         [("lstm", "W_hf"), ("gru", "W_xz"), ("peephole_lstm", "p_f")])
def test_path_sum_generic_equals_finite_differences(cell: str, param: str) -> None:
    """ds_T/dA = sum_k (prod_{l<k} J_{T-l}) V_{T-k} for multi-state and gated cells, against
    central differences of the reference run."""
    n, m, T = 3, 2, 4
    rng = np.random.default_rng(6)
    P = reference.random_params(cell, n, m, rng, scale=0.8)
    xs = rng.standard_normal((T, m))
    s0 = reference.random_state(cell, n, rng)
    tr = flow.trajectory(derive.derive(cell), P, xs, s0)
    got = np.concatenate([flow.path_sum(tr, param)[s] for s in reference.STATES[cell]])

    def final(a: np.ndarray) -> np.ndarray:
        Q = {**P, param: a.reshape(P[param].shape)}
        return _flat(cell, reference.numpy_run(cell, Q, xs, s0)[-1])

    np.testing.assert_allclose(got, _central(final, P[param].ravel()), atol=1e-8)


def test_trajectory_rejects_bad_input() -> None:
    d = derive.derive("lstm")
    P = reference.random_params("lstm", 3, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"missing \['b_o'\]; expected"):
        flow.trajectory(d, {k: v for k, v in P.items() if k != "b_o"}, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"params\['W_xi'\] has shape \(3, 2\); expected \(3, 4\)"):
        flow.trajectory(d, P, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"state0 must map exactly the states \['h', 'c'\]"):
        flow.trajectory(d, P, np.ones((2, 2)), {"h": np.zeros(3)})
    with pytest.raises(ValueError, match="need at least 2 steps"):
        flow.measure(d, P, np.ones((1, 2)))


def test_path_sum_rejects_unknown_parameter() -> None:
    tr = flow.trajectory(derive.derive("rnn"), reference.random_params(
        "rnn", 2, 1, np.random.default_rng(0)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="unknown parameter 'V'.*expected one of"):
        flow.path_sum(tr, "V")  # a readout parameter: not in the recursion
    with pytest.raises(ValueError, match="'h' has no carousel; states with one: none"):
        flow.carousel_path_sum(tr, "h", "W")
    with pytest.raises(ValueError, match="t=3 is outside"):
        flow.path_sum(tr, "W", t=3)


# ----------------------------------------------------------------------------- seed 000


def _lstm_setup(n=4, m=3, T=12, seed=8, **zero):
    rng = np.random.default_rng(seed)
    P = _torch_init("lstm", n, m, rng, scale=2.0)
    for a, v in zero.items():
        P[a] = np.full_like(P[a], v)
    xs = rng.standard_normal((T, m))
    return P, xs


def test_truncated_exact_total_derivative() -> None:
    """dc_t/dc_{t-1} with h_{t-1} = o_{t-1} * tanh(c_{t-1}) following c_{t-1} (o_{t-1} from
    h_{t-2}, x_{t-1}, by hand), by central differences, equals d(f_t) plus the dropped term."""
    n = 4
    P, xs = _lstm_setup(n=n)
    d = derive.derive("lstm")
    tr = flow.trajectory(d, P, xs)
    st = _ref_states("lstm", P, xs, {"h": np.zeros(n), "c": np.zeros(n)})
    for t in (2, 6, 12):
        o_prev = reference.np_sigmoid(P["W_xo"] @ xs[t - 2] + P["W_ho"] @ st[t - 2]["h"]
                                      + P["b_o"])

        def c_t(c: np.ndarray, t: int = t, o_prev: np.ndarray = o_prev) -> np.ndarray:
            prev = {"h": o_prev * np.tanh(c), "c": c}
            return reference.numpy_step("lstm", P, xs[t - 1], prev)["c"]

        want = _central(c_t, st[t - 1]["c"])
        np.testing.assert_allclose(flow.total_derivative(tr, "c", t), want, atol=1e-9)
        f_t = _lstm_forget_gates(P, xs, st)[t - 1]
        assert np.linalg.norm(want - np.diag(f_t), 2) > 1e-3  # the approximation is not exact


@pytest.mark.parametrize("case", ["W_h*=0", "o*tanh'(c)=0"])
def test_truncated_exact_when_dropped_terms_vanish(case: str) -> None:
    """dc_t/dc_{t-1} ~ f_t is exact when W_hf = W_hi = W_hg = 0 (then also dc_T/dW_xf =
    sum_i prod d(f) d^+c_i, checked against differences) or when o_{t-1} * tanh'(c_{t-1}) = 0
    (o -> 0 by b_o = -60); with the weights as drawn it is off by several percent."""
    n = 4
    P0, xs = _lstm_setup(n=n)
    if case == "W_h*=0":
        P = {**P0, **{a: np.zeros_like(P0[a]) for a in ("W_hf", "W_hi", "W_hg")}}
    else:
        P = {**P0, "b_o": np.full(n, -60.0)}
    d = derive.derive("lstm")
    exact = flow.truncated_onestep(flow.trajectory(d, P, xs), "c")
    assert exact.max() < 1e-15, f"{case}: dropped terms of relative size {exact.max():.2e}"
    drawn = flow.truncated_onestep(flow.trajectory(d, P0, xs), "c")
    assert np.median(drawn) > 0.05, f"weights as drawn: dropped {np.median(drawn):.2%}"
    if case == "W_h*=0":
        tr = flow.trajectory(d, P, xs)
        approx = flow.carousel_path_sum(tr, "c", "W_xf")

        def c_T(a: np.ndarray) -> np.ndarray:
            Q = {**P, "W_xf": a.reshape(P["W_xf"].shape)}
            return reference.numpy_run("lstm", Q, xs, {"h": np.zeros(n), "c": np.zeros(n)})[-1]["c"]

        np.testing.assert_allclose(approx, _central(c_T, P["W_xf"].ravel()), atol=1e-9)


def test_truncated_sum_over_time() -> None:
    """dc_T/dW_xf ~ sum_{i=1}^{T} (prod_{j=i+1}^{T} d(f_j)) d^+c_i/dW_xf (the seed's last line
    with dc_1 -> d^+c_i and prod_{j=1}^{i-1} f_{j+1} -> prod_{j=i+1}^{T} f_j), written here by hand,
    equals flow's carousel path sum; the exact dc_T/dW_xf (differences) differs from it."""
    n, m = 4, 3
    P, xs = _lstm_setup(n=n, m=m)
    T = len(xs)
    st = _ref_states("lstm", P, xs, {"h": np.zeros(n), "c": np.zeros(n)})
    f = _lstm_forget_gates(P, xs, st)
    want = np.zeros((n, n * m))
    for i in range(1, T + 1):
        fhat = P["W_xf"] @ xs[i - 1] + P["W_hf"] @ st[i - 1]["h"] + P["b_f"]
        fp = reference.np_sigmoid(fhat) * (1 - reference.np_sigmoid(fhat))
        # d^+c_i/dW_xf = d(c_{i-1}) d(f'_i) d_2(x_i), d_2(x) = I kron x^T
        direct = np.kron(np.diag(st[i - 1]["c"] * fp), xs[i - 1][None, :])
        want += np.prod(f[i:], axis=0)[:, None] * direct
    tr = flow.trajectory(derive.derive("lstm"), P, xs)
    got = flow.carousel_path_sum(tr, "c", "W_xf")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)

    def c_T(a: np.ndarray) -> np.ndarray:
        Q = {**P, "W_xf": a.reshape(P["W_xf"].shape)}
        return reference.numpy_run("lstm", Q, xs, {"h": np.zeros(n), "c": np.zeros(n)})[-1]["c"]

    exact = _central(c_T, P["W_xf"].ravel())
    np.testing.assert_allclose(flow.path_sum(tr, "W_xf")["c"], exact, atol=1e-9)
    rel = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert rel > 0.01, f"the approximation is off by {rel:.2%}"


# ----------------------------------------------------------------------------- symbolic structure


def test_carousel_is_found_from_the_derivation() -> None:
    """The carousel is the diagonal, derivative-free part of a state's self-Jacobian: d(f_t) for
    the LSTMs (also with peepholes), d(z_t) for the GRU, none for the RNN."""
    from derive.printing import latex as L

    got = {}
    for c in CELLS:
        d = derive.derive(c)
        got[c] = {v: L.expanded(s, L.names_for(d)) for v, s in flow.carousel(d).items()}
    assert got == {"lstm": {"c": "d(f_t)"}, "sigmoid_lstm": {"s": "d(f_t)"}, "rnn": {},
                   "gru": {"h": "d(z_t)"}, "peephole_lstm": {"c": "d(f_t)"}}
    custom = derive.derive({
        "name": "leaky", "params": {"W": ("hidden", "input"), "a": ("hidden",)},
        "nodes": {"k": "sigmoid(a)", "h": "k * h_prev + tanh(W @ x)"}, "states": ("h",)})
    assert {v: L.expanded(s, L.names_for(custom)) for v, s in flow.carousel(custom).items()} \
        == {"h": "d(k_t)"}
    assert flow.forget_biases(custom) == ["a"]  # k = sigmoid(a): a is its bias
    assert flow.gate_biases(derive.derive("gru"), "z") == ["b_z"]


def test_within_step_derivative() -> None:
    """dh_t/dc_t = d(o_t) d(tanh'(c_t)) (LSTM); with peepholes o also sees c_t."""
    from derive.printing import latex as L

    d = derive.derive("lstm")
    assert L.expanded(flow.within(d, "h", "c"), L.names_for(d)) == r"d(o_t) d(\tanh'(c_t))"
    assert L.expanded(flow.within(d, "c", "h"), L.names_for(d)) == "0"
    assert L.expanded(flow.within(d, "h", "h"), L.names_for(d)) == "I"
    p = derive.derive("peephole_lstm")
    assert L.expanded(flow.within(p, "h", "c"), L.names_for(p)) == \
        r"d(\tanh(c_t)) d(o'_t) d(p_o) + d(o_t) d(\tanh'(c_t))"


def test_interval_bounds() -> None:
    from fractions import Fraction as F

    from derive.spec import Add, Call, Const, DerivAt, Ref

    d = derive.derive("gru")
    z = Ref("z", 0, "node")
    assert flow.interval(d, DerivAt("sigmoid", Ref("z__hat", 0, "node"))) == (0, F(1, 4))
    assert flow.interval(d, Add(((1, Const(F(1))), (-1, z)))) == (0, 1)  # 1 - z
    assert flow.interval(d, Call("tanh", Ref("h", 1, "node"))) == (-1, 1)
    assert flow.interval(d, Ref("h", 1, "node")) == (None, None)  # h_{t-1}: measured
    assert flow.diag_sup(d, Ref("n", 0, "node")) == 1


# ----------------------------------------------------------------------------- LaTeX


def test_latex_rows_lstm() -> None:
    rows = flow.latex_rows(derive.derive("lstm"))
    assert (r"\left.\frac{\partial c_t}{\partial c_{t-1}}\right|_{\mathrm{carousel}}", "d(f_t)") \
        in rows
    assert (r"\frac{\partial c_t}{\partial A}", r"\left(\prod_{j=k+1}^{t} d(f_j)\right) "
            r"\frac{\partial c_k}{\partial A} + \ldots") in rows
    assert (r"\frac{\partial h_t}{\partial A}", r"d(o_t) d(\tanh'(c_t)) \left(\prod_{j=k+1}^{t} "
            r"d(f_j)\right) \frac{\partial c_k}{\partial A} + \ldots") in rows
    total = r"\frac{\mathrm{d} c_t}{\mathrm{d} c_{t-1}}"
    assert (total, r"d(f_t) + \left(d(c_{t-1}) d(f'_t) W_{hf} + d(g_t) d(i'_t) W_{hi} + d(i_t) "
            r"d(g'_t) W_{hg}\right) d(o_{t-1}) d(\tanh'(c_{t-1}))") in rows
    assert (total, r"\approx d(f_t)") in rows
    assert (total, r"d(f_t) \quad \text{when } W_{hf} = W_{hi} = W_{hg} = 0 \text{ or } "
            r"o_{t-1} \odot \tanh'(c_{t-1}) = 0") in rows
    assert (r"\frac{\partial c_t}{\partial W_{xf}}", r"\approx \sum_{i=1}^{t} \left("
            r"\prod_{j=i+1}^{t} d(f_j)\right) d(c_{i-1}) d(f'_i) d_2(x_i)") in rows


def test_latex_rows_rnn_path_sum() -> None:
    rows = flow.latex_rows(derive.derive("rnn"))
    assert (r"\frac{\partial h_t}{\partial W}", r"\sum_{k=0}^{t-1} \left(\prod_{l=0}^{k-1} "
            r"d(h'_{t-l}) U\right) d(h'_{t-k}) d_2(x_{t-k})") in rows
    assert (r"\frac{\partial h_t}{\partial U}", r"\sum_{k=0}^{t-1} \left(\prod_{l=0}^{k-1} "
            r"d(h'_{t-l}) U\right) d(h'_{t-k}) d_2(h_{t-k-1})") in rows
    assert not any("carousel" in lhs for lhs, _ in rows)


def test_latex_rows_names_and_time_shift() -> None:
    """Renamed symbols follow the names mapping, and a name that contains _t is not re-timed."""
    rows = flow.latex_rows(derive.derive("sigmoid_lstm"), names={"W_o": "V_t", "f": "F"})
    text = "\n".join(r for _, r in rows) + "\n".join(lhs for lhs, _ in rows)
    assert r"\left(\tfrac{1}{4} \|V_t\|_2\right)^{t-k}" in text
    assert r"d(o'_j) V_t\right\|_2" in text
    assert r"\prod_{j=k+1}^{t} d(F_j)" in text and "d(F_t)" in text
    assert "\x00" not in text


@pytest.mark.parametrize("cell", CELLS)
def test_latex_rows_are_well_formed(cell: str) -> None:
    for lhs, rhs in flow.latex_rows(derive.derive(cell)):
        for s in (lhs, rhs):
            depth = 0
            for ch in s:
                depth += {"{": 1, "}": -1}.get(ch, 0)
                assert depth >= 0, s
            assert depth == 0, s
            assert s.count(r"\left") == s.count(r"\right"), s
            assert "t-1-1" not in s and "\x00" not in s
        rel, body = flow.split_relation(rhs)
        assert rel in ("=", r"\le", r"\approx") and body


# ----------------------------------------------------------------------------- CLI


def test_cli_unknown_cell_exits_2(capsys) -> None:
    assert flow_cli.main(["lstm", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown cell 'bogus'" in err and "lstm, sigmoid_lstm, rnn, gru, peephole_lstm" in err


@pytest.mark.parametrize("argv,msg", [
    (["lstm", "--steps", "1"], "--steps 1: expected at least 2"),
    (["lstm", "--plot", "out.svg"], "expected a .png or .pdf file, got '.svg'"),
    (["lstm", "--json", "/nonexistent/dir/f.json"], "does not exist"),
    (["lstm", "--hidden", "0"], "expected positive sizes"),
])
def test_cli_bad_input_exits_2(argv, msg, capsys) -> None:
    assert flow_cli.main(argv) == 2
    assert msg in capsys.readouterr().err


def test_cli_parse_error_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        flow_cli.main(["lstm", "--steps", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_cli_plot_without_matplotlib(monkeypatch, tmp_path, capsys) -> None:
    real = flow_cli.importlib.util.find_spec
    monkeypatch.setattr(flow_cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert flow_cli.main(["lstm", "--plot", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install 'derive-rnn[plot]'" in err
    assert not (tmp_path / "f.png").exists()


def test_cli_table_json_and_plot(tmp_path, capsys) -> None:
    require("matplotlib", "derive flow --plot needs matplotlib (the plot extra)")
    png, pdf, js = tmp_path / "flow.png", tmp_path / "flow.pdf", tmp_path / "flow.json"
    rc = flow_cli.main(["lstm", "gru", "rnn", "--steps", "15", "--forget-bias", "3",
                        "--plot", str(png), "--json", str(js)])
    assert rc == 0
    out = capsys.readouterr().out
    for s in ("lag 1", "lag 10", "lag 14", "rate/step", "bound@14", "prod d(f)", "prod d(z)",
              "dh_T/dh_k", "d(h,c)_T/d(h,c)_k",
              "the truncated gradient (Gers, Schmidhuber and Cummins 2000)"):
        assert s in out, s
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    assert png.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    data = json.loads(js.read_text())
    assert [c["cell"] for c in data["cells"]] == ["lstm", "gru", "rnn"]
    lstm = data["cells"][0]
    assert lstm["settings"]["forget_bias"] == 3.0 and lstm["settings"]["forget_bias_on"] == ["b_f"]
    assert len(lstm["lags"]) == 14 and len(lstm["norms"]["carousel"]["spectral"]) == 14
    assert set(lstm["norms"]) == {"h", "state", "carousel", "block"}
    assert lstm["carousel"] == {"state": "c", "gates": ["f"]}
    assert all(b >= s for b, s in zip(lstm["bound"], lstm["norms"]["state"]["spectral"],
                                      strict=True))
    assert any(r[1] == "d(f_t)" for r in lstm["latex"])
    assert data["cells"][2]["carousel"] is None
    assert flow_cli.main(["rnn", "--steps", "5", "--plot", str(pdf)]) == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_cli_register() -> None:
    parser = argparse.ArgumentParser(prog="derive")
    sub = parser.add_subparsers(dest="command")
    flow_cli.register(sub)
    args = parser.parse_args(["flow", "rnn", "--steps", "4", "--forget-bias", "2"])
    assert args.func is flow_cli.run
    assert (args.cells, args.steps, args.forget_bias, args.plot) == (["rnn"], 4, 2.0, None)
