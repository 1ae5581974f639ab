"""Bad specs raise a SpecError naming the cell and the culprit; a new cell is only data."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import derive
from derive import CellSpec, SpecError
from derive.calculus.numeric import Step
from derive.document import latex_doc as D
from derive.document import text as T
from derive.spec import Const, Mul, Ref, parse_expr
from derive.spec.cells import LSTM


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


# ----------------------------------------------------------------------------- validation

def _reads(spec: dict) -> CellSpec:
    return CellSpec.from_dict(spec)


BASE_NODE = "tanh(W @ h_prev + U @ x + b)"
PARAMS = {"W": ("hidden", "hidden"), "U": ("hidden", "input"), "b": ("hidden",)}


@pytest.mark.parametrize("changes, needles", [
    # names: identifiers of the expression language, starting with a letter
    ({"nodes": {"a b": "b", "h": BASE_NODE}}, ["'bad'", "nodes", "'a b'", "identifier"]),
    ({"nodes": {"1a": "b", "h": BASE_NODE}}, ["'1a'", "starting with a letter"]),
    ({"nodes": {"a-b": "b", "h": BASE_NODE}}, ["'a-b'", "identifier"]),
    ({"nodes": {"": "b", "h": BASE_NODE}}, ["node name ''", "non-empty"]),
    ({"nodes": {5: "b", "h": BASE_NODE}}, ["node name 5", "expected a name string, got int"]),
    ({"nodes": {"_a": "b", "h": BASE_NODE}}, ["'_a'", "may not start with '_'"]),
    ({"nodes": {"a_": "b", "h": BASE_NODE}}, ["'a_'", "may not end with '_'"]),
    ({"nodes": {"a__b": "b", "h": BASE_NODE}}, ["'a__b'", "'__'", "g__hat"]),
    ({"nodes": {"g__hat": "b", "h": BASE_NODE}}, ["'g__hat'", "'__'"]),
    ({"nodes": {"x": "b", "h": BASE_NODE}}, ["node name 'x'", "reserved", "input"]),
    ({"nodes": {"c_prev": "b", "h": BASE_NODE}}, ["'c_prev'", "reserved"]),
    ({"nodes": {"tanh": "W @ h_prev + U @ x + b", "h": "tanh(tanh)"}},
     ["node name 'tanh'", "is an activation", "sigmoid"]),
    ({"params": {**PARAMS, "sigmoid": ("hidden",)}}, ["parameter name 'sigmoid'", "activation"]),
    ({"params": {"W x": ("hidden", "hidden"), "U": ("hidden", "input"), "b": ("hidden",)}},
     ["params", "bad parameter name 'W x'", "identifier"]),
    ({"params": {**PARAMS, 3: ("hidden",)}}, ["bad parameter name 3", "got int"]),
    ({"params": {**PARAMS, "x": ("hidden",)}}, ["parameter name 'x'", "reserved"]),
    ({"params": {**PARAMS, "p__q": ("hidden",)}}, ["'p__q'", "'__'"]),
    # field types
    ({"name": 7}, ["cell int 7", "name", "expected a string"]),
    ({"name": "my cell"}, ["name", "letters, digits"]),
    ({"title": 3}, ["'bad'", "title", "expected a string, got int 3"]),
    ({"title": "two\nlines"}, ["title", "one line"]),
    ({"title": 'a """ b'}, ["title", "triple quotes"]),
    ({"title": "a \\ b"}, ["title", "backslashes"]),
    ({"title": "caf\u00e9"}, ["title", "ASCII"]),
    ({"params": [("W", ("hidden", "hidden"))]}, ["params", "expected a mapping", "got list"]),
    ({"params": {**PARAMS, "b": 5}}, ["'b'", "shape 5", "dimension names"]),
    ({"params": {**PARAMS, "b": ("hidden", 1)}}, ["'b'", "dimension names"]),
    ({"params": {**PARAMS, "b": ()}}, ["'b'", "shape ()"]),
    ({"nodes": "h"}, ["nodes", "expected a mapping", "got str 'h'"]),
    ({"nodes": 5}, ["nodes", "got int 5"]),
    ({"nodes": ["h"]}, ["nodes", "(name, expression) pair", "got str 'h'"]),
    ({"nodes": {"h": 5}}, ["node 'h'", "expected an expression string, got int 5"]),
    ({"nodes": {"h": None}}, ["node 'h'", "expression string, got NoneType"]),
    ({"states": "h"}, ["states", "expected a non-empty list", "got str 'h'"]),
    ({"states": 5}, ["states", "got int 5"]),
    ({"states": ()}, ["at least one state"]),
    ({"states": ("h", "h")}, ["states", "'h' is listed more than once"]),
    ({"states": ("h", 2)}, ["states", "expected state names", "got int 2"]),
    ({"readout": "y"}, ["readout", "expected a mapping", "got str"]),
    ({"readout_params": ["V"]}, ["readout_params", "expected a mapping", "got list"]),
    ({"latex": ["W"]}, ["latex", "expected a mapping", "got list"]),
    ({"latex": {"Q": "q"}}, ["latex", "unknown symbol 'Q'", "'W'"]),
    ({"latex": {"W": 5}}, ["latex", "W", "expected a LaTeX string, got int"]),
    ({"latex": {"W": r"\input{x}"}}, ["latex", "W", "input"]),
    ({"latex": {"W": "U"}}, ["LaTeX names", "W and U", "both print"]),
    ({"latex": {"h": "h^2"}}, ["LaTeX names", "superscript"]),
    ({"nodes": {"M": "W @ h_prev", "h": "tanh(M + U @ x + b)"}},
     ["LaTeX names", "M = 'M'", "clashes", "'latex' entry"]),
    # the output size belongs to the readout
    ({"params": {**PARAMS, "b": ("output",)}}, ["parameter 'b'", "output", "readout"]),
    ({"params": {"W": ("output", "hidden"), "U": ("hidden", "input"), "b": ("hidden",)}},
     ["parameter 'W'", "only readout parameters"]),
    # a readout reads the output state at t
    ({"nodes": {"a": "W @ h_prev", "h": "tanh(a + U @ x + b)"},
      "readout_params": {"V": ("output", "hidden")}, "readout": {"y": "V @ a"}},
     ["readout 'y' may not use 'a'", "output state 'h'"]),
    # nesting and size limits
    ({"nodes": {"h": "tanh(" + "(" * 10000 + "b" + ")" * 10000 + " + W @ h_prev + U @ x)"}},
     ["node 'h'", "nested deeper than 64", "split"]),
    ({"nodes": {"h": "tanh(" * 65 + "W @ h_prev + U @ x + b" + ")" * 65}},
     ["node 'h'", "nested deeper than 64"]),
    ({"nodes": {"h": "tanh(" + "W @ " * 100 + "h_prev + U @ x + b)"}}, ["nested deeper"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x" + " + b" * 10000 + ")"}},
     ["node 'h'", "a sum of more than 256 operands"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + b" + " * b" * 300 + ")"}},
     ["a product of more than 256 operands"]),
    # numbers
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + 1e99 * b)"}}, ["number '1e99'", "exponent"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + " + "9" * 5000 + " * b)"}},
     ["number", "at most 30 digits"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + 1e * b)"}}, ["cannot parse", "'e'"]),
    ({"nodes": {"h": "tanh(W @ h_prev + U @ x + 1.2.3 * b)"}}, ["cannot parse", "'.3'"]),
])
def test_invalid_spec_is_rejected_when_read(changes: dict, needles: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        _reads(spec_with(**changes))
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))
    # the same through the public entry points
    with pytest.raises(SpecError):
        derive.derive(spec_with(**changes))


@pytest.mark.parametrize("name", ["lambda", "class", "None", "np", "t", "xs", "U1", "s0", "d_h",
                                  "params", "cache", "grads", "out", "math", "J", "S", "V"])
def test_keyword_and_code_generator_names_are_valid(name: str) -> None:
    """Python keywords and names a kernel printer binds itself are valid spec names; the
    printers rename what would clash. Here such a name is a node and a parameter."""
    node = {"name": "kw", "params": {"W": ("hidden", "hidden"), "U": ("hidden", "input"),
                                     name: ("hidden",)},
            "nodes": {"a": f"W @ h_prev + {name}", "h": "tanh(a + U @ x)"}, "states": ("h",)}
    as_node = {"name": "kw", "params": PARAMS,
               "nodes": {name: "W @ h_prev + b", "h": f"tanh({name} + U @ x)"}, "states": ("h",)}
    for spec in (node, as_node):
        d = derive.derive(spec)
        assert name in d.spec.params or name in d.spec.nodes
        assert d.reverse.grads and d.jacobian["h"]["h"]
        assert "\\end{document}" in D.document(d, standalone=True)
        assert T.show(d, modes=["reverse"])


@pytest.mark.parametrize("text, value", [
    ("2", Fraction(2)), ("0.5", Fraction(1, 2)), (".5", Fraction(1, 2)), ("1.", Fraction(1)),
    ("1e-3", Fraction(1, 1000)), ("2.5E+2", Fraction(250)), ("1e30", Fraction(10) ** 30),
])
def test_number_literals_are_exact(text: str, value: Fraction) -> None:
    """Numbers are decimal literals, read exactly: 2, 0.5, .5, 1., 1e-3, 2.5E+2."""
    assert parse_expr(f"{text} * b") == Mul((Const(value), Ref("b")))
    d = derive.derive(spec_with(nodes={"h": f"tanh(W @ h_prev + U @ x + {text} * b)"}))
    assert d.spec.nodes["h__hat"].expr.terms[-1][1].factors[0] == Const(value)


def test_constants_only_stay_rejected() -> None:
    with pytest.raises(SpecError, match="'k': an expression of constants only"):
        _reads(spec_with(nodes={"h": BASE_NODE, "k": "1e-3"}))


def test_nesting_at_the_limit_derives_and_prints() -> None:
    """64 levels are accepted and every output works; 65 are not, and no RecursionError comes
    out of any depth of input."""
    ok = spec_with(nodes={"h": "tanh(" * 63 + "W @ h_prev + U @ x + b" + ")" * 63})
    d = derive.derive(ok)
    assert len(d.jacobian["h"]["h"]) == 1
    T.show(d, modes=["reverse"])
    for depth in (65, 1000, 10000, 100000):
        with pytest.raises(SpecError, match="nested deeper than 64"):
            derive.derive(spec_with(nodes={"h": "(" * depth + BASE_NODE + ")" * depth}))


def test_a_long_chain_of_nodes_is_rejected_clearly() -> None:
    """A chain of same-step nodes is as deep, for the engine, as one nested expression: it is
    bounded too (the topological sort itself is iterative)."""
    nodes = {"a0": BASE_NODE, **{f"a{k}": f"tanh(a{k - 1})" for k in range(1, 2000)},
             "h": "a1999"}
    with pytest.raises(SpecError, match="chain of same-step nodes.*expected at most 256"):
        derive.derive(spec_with(nodes=nodes))
    short = {"a0": BASE_NODE, **{f"a{k}": f"tanh(a{k - 1})" for k in range(1, 40)}, "h": "a39"}
    assert derive.derive(spec_with(nodes=short)).jacobian["h"]["h"]


def test_every_shipped_cell_reads() -> None:
    from derive.spec.cells import BUILTIN, LITERATURE

    for spec in [*BUILTIN.values(), *LITERATURE.values()]:
        assert CellSpec.from_dict(spec).name == spec["name"]


def test_spec_lists_and_mappings_are_both_accepted() -> None:
    """JSON has no tuples: lists for shapes and states, a list of pairs for ordered nodes."""
    spec = {"name": "json-cell", "params": {"W": ["hidden", "hidden"], "U": ["hidden", "input"],
                                            "b": "hidden"},
            "nodes": [["h", BASE_NODE]], "states": ["h"], "title": "From JSON"}
    assert derive.derive(spec).spec.params["b"].shape == ("hidden",)


# ----------------------------------------------------------------------------- random input

_JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(), st.text(max_size=6),
              st.sampled_from(["hidden", "input", "output", "h", "x", "tanh(b)", "W @ x"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(st.text(max_size=4), st.integers(0, 2)),
                                            inner, max_size=3)),
    max_leaves=6)
_NAMES = st.one_of(st.sampled_from(["h", "c", "a", "W", "U", "b", "x", "h_prev", "tanh", "d",
                                    "_a", "a_", "a__b", "1a", "a-b", "", "a b", "lambda"]),
                   st.text(max_size=4))
_SOUP = st.lists(st.sampled_from(["W", "@", "x", "(", ")", "+", "-", "*", "tanh", "h_prev", "b",
                                  "1", "1e", "e", ".", "3", "$", "c_prev"]),
                 max_size=10).map(" ".join)
_SHAPES = st.one_of(st.sampled_from([("hidden", "hidden"), ("hidden", "input"), ("hidden",),
                                     ("output",), "hidden", ("hidden", "output")]), _JUNK)


@st.composite
def _malformed_specs(draw) -> dict:
    spec = {"name": draw(st.one_of(st.just("fz"), _JUNK)),
            "params": draw(st.one_of(st.dictionaries(_NAMES, _SHAPES, max_size=4),
                                     st.just(dict(PARAMS)), _JUNK)),
            "nodes": draw(st.one_of(st.dictionaries(_NAMES, st.one_of(_SOUP, _JUNK),
                                                    max_size=4),
                                    st.lists(st.tuples(_NAMES, _SOUP), max_size=3), _JUNK)),
            "states": draw(st.one_of(st.just(["h"]), st.lists(_NAMES, max_size=3), _JUNK))}
    for key, values in (("title", st.one_of(st.text(max_size=8), _JUNK)),
                        ("readout", st.one_of(st.dictionaries(_NAMES, _SOUP, max_size=2), _JUNK)),
                        ("readout_params", st.one_of(st.dictionaries(_NAMES, _SHAPES,
                                                                     max_size=2), _JUNK)),
                        ("latex", st.one_of(st.dictionaries(_NAMES, st.text(max_size=5),
                                                            max_size=2), _JUNK))):
        if draw(st.booleans()):
            spec[key] = draw(values)
    return spec


_ATOMS = st.sampled_from(["U @ x", "W @ h_prev", "W @ c_prev", "b", "h_prev", "c_prev", "a", "z",
                          "c", "1", "0.5", ".5", "1e-3", "2.", "W @ z", "h", "x"])
_EXPRS = st.recursive(_ATOMS, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from([" + ", " - ", " * "]), inner).map(
        lambda t: f"({t[0]}{t[1]}{t[2]})"),
    st.tuples(inner, st.sampled_from([" + ", " - ", " * "]), inner).map("".join),
    st.tuples(st.sampled_from(["tanh", "sigmoid", "relu", "identity"]), inner).map(
        lambda t: f"{t[0]}({t[1]})"),
    inner.map(lambda e: f"-({e})"),
    inner.map(lambda e: f"W @ ({e})"),
), max_leaves=7)


@st.composite
def _near_valid_specs(draw) -> dict:
    """Random cells over fixed parameters (z keeps them all used): many are valid."""
    nodes = {"z": "tanh(W @ h_prev + U @ x + b)"}
    for n in draw(st.permutations(["a", "c", "h"])):
        if n == "h" or draw(st.booleans()):
            nodes[n] = draw(_EXPRS)
    states = ["h", *(s for s in ("c", "a") if s in nodes and draw(st.booleans()))]
    spec = {"name": "nv", "params": dict(PARAMS), "nodes": nodes, "states": states}
    if draw(st.booleans()):
        spec["readout_params"] = {"V": ("output", "hidden"), "b_y": ("output",)}
        spec["readout"] = {"y": draw(st.sampled_from(["sigmoid(V @ h + b_y)", "V @ h + b_y",
                                                      "V @ (h * h) - b_y", "V @ c + b_y"]))}
    if draw(st.booleans()):
        spec["latex"] = draw(st.dictionaries(
            st.sampled_from(["W", "h", "a", "z", "x", "c", "y"]),
            st.sampled_from(["W", "h", r"\alpha", "d", r"\mathbf{a}", "h^2", "{h^2}", "q"]),
            max_size=2))
    return spec


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(_malformed_specs())
def test_malformed_specs_raise_only_spec_errors(spec: dict) -> None:
    try:
        d = derive.derive(spec)
    except SpecError:
        return
    d.jacobian, d.forward, d.reverse  # noqa: B018 - derive every part


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(_near_valid_specs())
def test_accepted_random_specs_work_in_every_output(spec: dict) -> None:
    """A random cell is either refused when read (SpecError) or derives and prints: the
    standalone article of every mode with the chain-rule steps, and the terminal text."""
    try:
        d = derive.derive(spec)
    except SpecError:
        return
    assert "\\end{document}" in D.document(d, standalone=True, steps=True)
    assert T.show(d, steps=True)
    for mode in ("forward", "reverse", "jacobian"):
        assert d.latex(mode)
