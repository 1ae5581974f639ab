"""The recurrent cells of the literature (derive.spec.cells.LITERATURE) against hand-written torch.

For every cell and both kernel backends ("numpy", and "numba" where numba is installed) the
kernel printed by derive.codegen.load_kernel is checked against tests/literature_reference.py
(the papers' equations typed in again with torch, no derive in it) through torch.autograd and
torch.func, in float64 (<= 1e-9 relative to the magnitude of the reference) and in float32
(<= 1e-4 against the same reference run in float32):

* forward: hs and the final value of every state;
* backward: the gradient of sum(hs * dhs) + sum_s sum(state_T[s] * dstate[s]), for random dhs
  and dstate, with respect to every parameter, every initial state (grads["<s>0"]) and xs;
* rtrl: dh_T/dA for every parameter A, (B, n_hidden, *A.shape), against torch.func.jacfwd;
* rtrl_step: two online steps, the states and the sensitivities d s_2/dA of every state s;
* state_jacobian: d(states at t)/d(states at t-1), (B, S, S), against torch.func.jacrev.

Then each cell's standalone LaTeX document (what ``derive latex CELL --standalone`` writes) must
compile with pdflatex without an overfull box, and, at the end, each cell must be listed by
derive.cells() (``derive list``): that last test fails until LITERATURE is merged into BUILTIN.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import require, require_executable

import derive
from derive.codegen import load_kernel
from derive.spec.cells import LITERATURE

torch = require("torch", "torch is not installed (pip install torch==2.13.0)")
import literature_reference as ref  # noqa: E402

CELLS = list(LITERATURE)
BACKENDS = ["numpy", "numba"]
DTYPES = {"float64": (np.float64, torch.float64, 1e-9),
          "float32": (np.float32, torch.float32, 1e-4)}
N, M, T, B = 3, 2, 4, 2
SCALE = 2.0  # init_params' range times 2, so that the gates leave their linear range


def test_reference_covers_every_literature_cell():
    assert sorted(ref.CELLS) == sorted(LITERATURE)
    for cell, spec in LITERATURE.items():
        assert tuple(spec["states"]) == ref.STATES[cell], cell


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "numba":
        require("numba", "numba is not installed (pip install -e '.[numba]')")
    return request.param


@pytest.fixture(params=list(DTYPES))
def dtype(request):
    return DTYPES[request.param]


def kernel(cell: str, backend: str):
    """The kernel module printed for the literature cell (inside the test: a printer that cannot
    print the cell is a failure of the test, not an error of a fixture)."""
    return load_kernel(LITERATURE[cell], backend)


def setup(mod, np_dtype, seed: int = 0):
    rng = np.random.default_rng(seed)
    P = {k: (SCALE * v).astype(np_dtype)
         for k, v in mod.init_params(M, N, seed=seed + 1, dtype=np_dtype).items()}
    xs = rng.normal(size=(T, B, M)).astype(np_dtype)
    s0 = {s: (0.5 * rng.normal(size=(B, N))).astype(np_dtype) for s in mod.STATE}
    return P, xs, s0, rng


def tt(a, t_dtype):
    return torch.tensor(np.asarray(a), dtype=t_dtype)


def rel(got, want) -> float:
    """max |got - want| relative to the magnitude of want (computed in float64)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300))


@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_torch(cell, backend, dtype):
    np_dtype, t_dtype, tol = dtype
    mod = kernel(cell, backend)
    assert tuple(mod.STATE) == ref.STATES[cell]
    P, xs, s0, _ = setup(mod, np_dtype)
    hs, cache = mod.forward(P, xs, s0)
    with torch.no_grad():
        want_hs, want_final = ref.run(cell, {k: tt(v, t_dtype) for k, v in P.items()},
                                      tt(xs, t_dtype), {k: tt(v, t_dtype) for k, v in s0.items()})
    assert hs.shape == (T, B, N) and hs.dtype == np_dtype
    assert rel(hs, want_hs.numpy()) <= tol
    for s in mod.STATE:
        assert cache["state"][s].dtype == np_dtype, s
        assert rel(cache["state"][s], want_final[s].numpy()) <= tol, s


@pytest.mark.parametrize("cell", CELLS)
def test_backward_matches_torch_autograd(cell, backend, dtype):
    np_dtype, t_dtype, tol = dtype
    mod = kernel(cell, backend)
    P, xs, s0, rng = setup(mod, np_dtype, seed=3)
    R = rng.normal(size=(T, B, N)).astype(np_dtype)
    Rs = {s: rng.normal(size=(B, N)).astype(np_dtype) for s in mod.STATE}
    _, cache = mod.forward(P, xs, s0)
    g = mod.backward(P, cache, R, dstate=Rs, input_grad=True)

    tp = {k: tt(v, t_dtype).requires_grad_() for k, v in P.items()}
    ts0 = {k: tt(v, t_dtype).requires_grad_() for k, v in s0.items()}
    txs = tt(xs, t_dtype).requires_grad_()
    ths, tfinal = ref.run(cell, tp, txs, ts0)
    loss = (ths * tt(R, t_dtype)).sum() + sum((tfinal[s] * tt(Rs[s], t_dtype)).sum()
                                               for s in mod.STATE)
    loss.backward()

    assert set(g) == set(P) | {f"{s}0" for s in mod.STATE} | {"xs"}
    for k in P:
        assert g[k].shape == P[k].shape and g[k].dtype == np_dtype, k
        assert rel(g[k], tp[k].grad.numpy()) <= tol, k
    for s in mod.STATE:
        assert g[f"{s}0"].dtype == np_dtype, s
        assert rel(g[f"{s}0"], ts0[s].grad.numpy()) <= tol, f"{s}0"
    assert g["xs"].dtype == np_dtype
    assert rel(g["xs"], txs.grad.numpy()) <= tol


def _final_states(cell, xs, s0, t_dtype):
    """params -> the states after running over xs, for torch.func."""
    txs = tt(xs, t_dtype)
    ts0 = {k: tt(v, t_dtype) for k, v in s0.items()}
    return lambda params: ref.run(cell, params, txs, ts0)[1]


@pytest.mark.parametrize("cell", CELLS)
def test_rtrl_matches_torch_jacfwd(cell, backend, dtype):
    np_dtype, t_dtype, tol = dtype
    mod = kernel(cell, backend)
    P, xs, s0, _ = setup(mod, np_dtype, seed=5)
    sens = mod.rtrl(P, xs, s0)
    out = mod.STATE[0]
    jac = torch.func.jacfwd(lambda p: _final_states(cell, xs, s0, t_dtype)(p)[out])(
        {k: tt(v, t_dtype) for k, v in P.items()})
    assert set(sens) == set(P)
    for k in P:
        assert sens[k].shape == (B, N) + P[k].shape and sens[k].dtype == np_dtype, k
        assert rel(sens[k], jac[k].numpy()) <= tol, k


@pytest.mark.parametrize("cell", CELLS)
def test_rtrl_step_two_steps_match_torch_jacfwd(cell, backend, dtype):
    np_dtype, t_dtype, tol = dtype
    mod = kernel(cell, backend)
    P, xs, s0, _ = setup(mod, np_dtype, seed=7)
    state, sens = dict(s0), None
    for t in range(2):
        state, sens = mod.rtrl_step(P, xs[t], state, sens)
    plain = {k: tt(v, t_dtype) for k, v in P.items()}
    final = _final_states(cell, xs[:2], s0, t_dtype)
    want_state = final(plain)
    jac = torch.func.jacfwd(final)(plain)
    for s in mod.STATE:
        assert state[s].dtype == np_dtype, s
        assert rel(state[s], want_state[s].numpy()) <= tol, s
        for k in P:
            assert sens[s][k].shape == (B, N) + P[k].shape, (s, k)
            assert sens[s][k].dtype == np_dtype, (s, k)
            assert rel(sens[s][k], jac[s][k].numpy()) <= tol, (s, k)


@pytest.mark.parametrize("cell", CELLS)
def test_state_jacobian_matches_torch_jacrev(cell, backend, dtype):
    np_dtype, t_dtype, tol = dtype
    mod = kernel(cell, backend)
    P, xs, s0, _ = setup(mod, np_dtype, seed=9)
    J = mod.state_jacobian(P, xs[0], s0)
    k = len(mod.STATE)
    assert J.shape == (B, k * N, k * N) and J.dtype == np_dtype
    plain = {name: tt(v, t_dtype) for name, v in P.items()}
    for b in range(B):
        def step(flat, b=b):
            prev = {s: flat[i * N:(i + 1) * N][None] for i, s in enumerate(mod.STATE)}
            new = ref.step(cell, plain, tt(xs[0][b:b + 1], t_dtype), prev)
            return torch.cat([new[s][0] for s in mod.STATE])

        flat = tt(np.concatenate([s0[s][b] for s in mod.STATE]), t_dtype)
        assert rel(J[b], torch.func.jacrev(step)(flat).numpy()) <= tol, b


# ----------------------------------------------------------------------------- LaTeX


@pytest.mark.parametrize("cell", CELLS)
def test_standalone_latex_document_compiles_without_overfull_boxes(cell, tmp_path):
    """The article of ``derive latex CELL --standalone`` (every mode, native notation, article
    width), built from the spec dict, compiles with pdflatex; its log has no "Overfull"."""
    pdflatex = require_executable("pdflatex", "compiling the LaTeX documents derive emits")
    from derive.document.latex_doc import document

    text = document(LITERATURE[cell], standalone=True)
    (tmp_path / f"{cell}.tex").write_text(text, encoding="utf-8")
    run = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error",
                          "-file-line-error", f"{cell}.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    log_path = tmp_path / f"{cell}.log"
    log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    errors = [ln for ln in log.splitlines() if ln.startswith("!") or ": error:" in ln]
    assert run.returncode == 0 and not errors, (run.returncode, errors, run.stdout[-2000:])
    assert (tmp_path / f"{cell}.pdf").exists()
    overfull = [ln for ln in log.splitlines() if "Overfull" in ln]
    assert overfull == []


# ----------------------------------------------------------------------------- derive list
# Expected to fail until LITERATURE is merged into BUILTIN (derive/spec/cells.py).


@pytest.mark.parametrize("cell", CELLS)
def test_listed_by_derive_cells_once_merged(cell):
    assert derive.cells().count(cell) == 1
