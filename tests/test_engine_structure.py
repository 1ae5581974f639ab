"""Structural facts of the derivation: shared M_t/N_t, determinism, the SymPy view."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import reference
import sympy as sp

import derive
from derive.calculus.numeric import Step
from derive.printing.symbolic import SIZES


@pytest.mark.parametrize("cell", derive.cells())
def test_recursion_blocks_are_the_state_jacobian_for_every_parameter(cell: str) -> None:
    """dh_t/dA = M_t dh_{t-1}/dA + N_t ds_{t-1}/dA + V_t^A with M_t, N_t shared by all A
    (seed 001 eq 26): every parameter's recursion blocks equal the one-step state Jacobian."""
    D = derive.derive(cell)
    for A in D.params:
        fp = D.forward[A]
        for u in D.states:
            for v in D.states:
                assert fp.raw.blocks[u][v].key() == D.jacobian[u][v].key(), (A, u, v)
            assert fp.state(u).key() == D.recursion_sum(A, u).key()


def test_lstm_carousel_block_is_the_forget_gate() -> None:
    # ds_t/ds_{t-1} = d(f_t) exactly for the seed-001 cell (no peephole): the carousel
    D = derive.derive("sigmoid_lstm")
    assert [str(t.factors) for t in D.jacobian["s"]["s"]] == [
        "(Diag(v=Ref(name='f', lag=0, kind='node')),)"]


def _dump() -> str:
    code = (
        "import derive\n"
        "from derive.printing import latex as L\n"
        "for c in derive.cells():\n"
        "    d = derive.derive(c)\n"
        "    print(L.render_mode(d, 'forward'), L.render_mode(d, 'reverse'),"
        " L.render_mode(d, 'jacobian'))\n"
    )
    return code


def test_output_is_identical_across_processes_and_hash_seeds() -> None:
    outs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.append(subprocess.run([sys.executable, "-c", _dump()], env=env, check=True,
                                   capture_output=True, text=True).stdout)
    assert outs[0] == outs[1] and len(outs[0]) > 1000


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sympy_view_as_explicit_equals_numeric_instantiation(cell: str) -> None:
    D = derive.derive(cell)
    n, m = 2, 3
    rng = np.random.default_rng(5)
    P = reference.random_params(cell, n, m, rng)
    x = rng.normal(size=m)
    prev = reference.random_state(cell, n, rng)
    step = Step(D.spec, P, x, prev)
    # numeric values for every MatrixSymbol the SymPy view uses
    for A in ["W_hf" if cell == "lstm" else "W_hn", "b_" + ("f" if cell == "lstm" else "hn")]:
        expr = D.forward[A].sympy("V")
        sizes = {SIZES["hidden"]: n, SIZES["input"]: m}
        expr = expr.subs(sizes)
        repl = {}
        for sym in expr.atoms(sp.MatrixSymbol):
            name = str(sym.name)
            if name in P:
                val = P[name]
            elif name == "x_{t}":
                val = x
            else:
                base, t = name.split("_{")
                lag = 0 if t == "t}" else 1
                base = base[:-4] + "__hat" if base.endswith("_hat") else base
                val = step.prev[base] if lag else step.values[base]
            repl[sym] = sp.Matrix(val.reshape(sym.shape))
        got = np.array(expr.xreplace(repl).as_explicit().evalf(), dtype=float)
        assert np.allclose(got, step.evaluate(D.forward[A].V), rtol=1e-12, atol=1e-14)
