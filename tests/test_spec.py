"""Bad specs raise a SpecError naming the cell and the culprit; a new cell is only data."""

from __future__ import annotations

import numpy as np
import pytest

import derive
from derive import CellSpec, SpecError
from derive.cells import LSTM
from derive.numeric import Step


def spec_with(**changes) -> dict:
    base = {"name": "bad", "params": {"W": ("hidden", "hidden"), "U": ("hidden", "input"),
                                      "b": ("hidden",)},
            "nodes": {"h": "tanh(W @ h_prev + U @ x + b)"}, "states": ("h",)}
    base.update(changes)
    return base


@pytest.mark.parametrize("changes, needles", [
    ({"nodes": {"h": "sigmod(W @ h_prev + U @ x + b)"}},
     ["'bad'", "unknown activation 'sigmod'", "sigmoid", "tanh"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + b + q)"}}, ["'bad'", "undefined name 'q'"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ y_prev + b)"}}, ["'bad'", "'y_prev'", "not a state"]),
    ({"nodes": {"a": "tanh(W @ g + U @ x)", "g": "tanh(W @ a + b)", "h": "a * g"}},
     ["'bad'", "cycle", "a -> g -> a"]),
    ({"nodes": {"h": "tanh(W @ x + U @ x + b)"}}, ["'bad'", "shape mismatch", "'W @ ...'",
                                                   "(hidden, hidden)", "size input"]),
    ({"nodes": [("h", "tanh(W @ h_prev + U @ x + b)"), ("h", "tanh(b)")]},
     ["'bad'", "duplicate node name 'h'"]),
    ({"nodes": {"W": "tanh(b)", "h": "tanh(W @ h_prev + U @ x + b)"}},
     ["'bad'", "'W' is both a parameter and a node"]),
    ({"params": {"W": ("hidden", "hidden"), "U": ("hidden", "input"), "b": ("hidden",),
                 "p": ("hidden",)}}, ["'bad'", "['p']", "never used"]),
    ({"params": {"W": ("hidden", "wide"), "U": ("hidden", "input"), "b": ("hidden",)}},
     ["'bad'", "'W'", "dimension names"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + b"}}, ["'bad'", "cannot parse", "expected ')'"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + b) $"}}, ["'bad'", "unexpected character '$'"]),
    ({"nodes": {"h": "tanh(b @ h_prev + U @ x)"}}, ["'bad'", "'b'", "2-D parameter"]),
    ({"states": ("h", "c")}, ["'bad'", "state 'c' is not defined"]),
])
def test_bad_spec_names_cell_and_culprit(changes: dict, needles: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        CellSpec.from_dict(spec_with(**changes))
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_unknown_builtin_lists_the_choices() -> None:
    with pytest.raises(SpecError, match="unknown cell 'lstn'.*lstm, sigmoid_lstm, rnn, gru"):
        derive.derive("lstn")


def test_unknown_spec_key() -> None:
    with pytest.raises(SpecError, match="unknown key.*'gates'"):
        CellSpec.from_dict({**LSTM, "gates": {}})


# A minimal gated unit (Zhou et al. 2016), written only as data: one forget gate drives both the
# reset and the update. Nothing in the engine knows it.
MGU = {
    "name": "mgu",
    "params": {"W_f": ("hidden", "hidden"), "U_f": ("hidden", "input"), "b_f": ("hidden",),
               "W_h": ("hidden", "hidden"), "U_h": ("hidden", "input"), "b_h": ("hidden",)},
    "nodes": {
        "f": "sigmoid(W_f @ h_prev + U_f @ x + b_f)",
        "h_tilde": "tanh(W_h @ (f * h_prev) + U_h @ x + b_h)",
        "h": "(1 - f) * h_prev + f * h_tilde",
    },
    "states": ("h",),
}


def mgu_step(P: dict, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Hand-written MGU step, the independent reference."""
    f = 1 / (1 + np.exp(-(P["W_f"] @ h + P["U_f"] @ x + P["b_f"])))
    ht = np.tanh(P["W_h"] @ (f * h) + P["U_h"] @ x + P["b_h"])
    return (1 - f) * h + f * ht


def test_a_new_cell_written_only_as_data_derives() -> None:
    d = derive.derive(MGU)
    assert d.params == ["W_f", "U_f", "b_f", "W_h", "U_h", "b_h"]
    rng = np.random.default_rng(2)
    n, m = 3, 2
    P = {k: rng.normal(size=(n, n) if v == ("hidden", "hidden") else
                       (n, m) if v == ("hidden", "input") else (n,)) * 0.5
         for k, v in MGU["params"].items()}
    x, h = rng.normal(size=m), rng.normal(size=n)
    step = Step(d.spec, P, x, {"h": h})
    eps = 1e-6
    for A in d.params:
        a = P[A].reshape(-1)
        fd = np.stack([(mgu_step({**P, A: (a + eps * e).reshape(P[A].shape)}, x, h)
                        - mgu_step({**P, A: (a - eps * e).reshape(P[A].shape)}, x, h)) / (2 * eps)
                       for e in np.eye(a.size)], axis=1)
        assert np.abs(step.evaluate(d.forward[A].V) - fd).max() < 1e-8, A
    fd = np.stack([(mgu_step(P, x, h + eps * e) - mgu_step(P, x, h - eps * e)) / (2 * eps)
                   for e in np.eye(n)], axis=1)
    assert np.abs(step.evaluate(d.jacobian["h"]["h"]) - fd).max() < 1e-8
    # W_h sees h_{t-1} through the gate: d_2(f_t * h_{t-1}), the d_2 rule on a product
    assert r"d_2(f_t \odot h_{t-1})" in d.forward["W_h"].latex()
