"""Instantiate the engine's three modes for one time step, and the same quantities from a
reference step function, so that tests can compare them (exactly with SymPy, or with finite
differences in float64).

For one step (x_t, states at t-1, parameters):

* forward: V[u][A] = d u_t / d A with the previous states held fixed, and (rnn) the readout's
  d y_t / d A; the recursion blocks are the state Jacobian (checked structurally elsewhere);
* jacobian: J[u][v] = d u_t / d v_{t-1};
* reverse: with given adjoints (loss_h = d l_t/d h_t, carry_u = delta u_t from step t+1) the
  engine's assignments give delta v_{t-1}, the step's dL/dA and dL/dx_t; these equal the
  gradients of the scalar phi = (loss_h + carry_h) . h_t + sum_{u != h} carry_u . u_t.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from derive.calculus.numeric import Step


def engine_modes(D: Any, step: Step, adj_in: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """All engine quantities of one step, keyed like the reference's."""
    out: dict[str, Any] = {}
    n = step.n()
    for A in D.params:
        for u in D.states:
            size = step.params[A].size
            out[("V", u, A)] = step.evaluate(D.forward[A].raw.V[u], shape=(n, size))
    for u in D.states:
        for v in D.states:
            out[("J", u, v)] = step.evaluate(D.jacobian[u][v], shape=(n, n))
    adj = dict(adj_in)
    for name, s in D.reverse.assignments:
        adj[(name, "bar")] = step.evaluate(s, adj=adj)
    for v, s in D.reverse.carries.items():
        out[("carry", v)] = step.evaluate(s, adj=adj, shape=(n,))
    for A, s in D.reverse.grads.items():
        g = step.evaluate(s, adj=adj, shape=(step.params[A].size,))
        out[("grad", A)] = g.reshape(-1)
    out[("grad", "x")] = step.evaluate(D.reverse.inputs, adj=adj, shape=(len(step.x),))
    return out


def phi_weights(D: Any, adj_in: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """The weight of each state u_t in phi."""
    w = {u: adj_in[(u, "carry")] for u in D.states}
    w[D.output] = w[D.output] + adj_in[(D.output, "loss")]
    return w


def random_adjoints(D: Any, n: int, rng: np.random.Generator) -> dict[tuple[str, str], Any]:
    adj = {(u, "carry"): rng.normal(size=n) for u in D.states}
    adj[(D.output, "loss")] = rng.normal(size=n)
    return adj
