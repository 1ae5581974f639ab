"""Elementwise activations: one record per activation, read by every consumer.

Everything derive knows about an activation lives in its :class:`Activation` record: its value
and derivative as NumPy, numba and SymPy code, how it prints in LaTeX and on a terminal, the
range of its values and of its derivative (the gradient-flow bounds). :func:`register` is the one
place to add one; the spec parser, the printers, the kernels and :mod:`derive.tools.flow` all look
it up in :data:`ACTIVATIONS`, and a record missing a facet cannot be built (no facet has a default).

The derivative is stored twice: in terms of the pre-activation z (``deriv``) and in terms of the
*output* y = act(z) (``deriv_from_output``), because that is what a kernel has at hand:
sigma'(z) = y (1 - y), tanh'(z) = 1 - y^2. Note that sigma' is taken at the pre-activation z:
writing sigma'(g) for a gate g = sigma(z) is a classic slip (NOTES.md). At a kink the derivative
follows torch's autograd (relu'(0) = 0, leaky_relu'(0) = 0.01, hardsigmoid'(+-3) = 0), and the
SymPy form is a Piecewise whose ``sympy.diff`` gives the same values.
``tests/test_activations.py`` checks every formula against ``sympy.diff`` and torch.

Formats: ``{z}`` (or ``{y}``, ``{out}``) is replaced by the printed operand, which may be a
compound expression, so a format parenthesises it wherever an operator binds tighter than the
operand's own (``0.01 * ({z})``); a literal brace in LaTeX is doubled (``e^{{-{y}}}``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

Interval = tuple[Fraction | None, Fraction | None]
"""A closed interval (lo, hi) holding every value; None: unbounded on that side."""


class _LazySympy:
    """``sympy``, imported on first use (``import derive`` does not import SymPy)."""

    def __getattr__(self, name: str) -> Any:
        import sympy

        return getattr(sympy, name)


sp: Any = _LazySympy()


@dataclass(frozen=True)
class Activation:
    """Every facet of one elementwise activation act: R -> R (see the module docstring)."""

    name: str  # the name in a cell spec: tanh(...)
    latex: str  # LaTeX name of the function: \sigma, \tanh; its derivative prints as latex'(.)
    unicode: str  # terminal name (derive show): σ, tanh
    numpy: str  # a NumPy expression of {z}, valid on arrays
    deriv: str  # a NumPy expression of {z} equal to act'(z) (torch's value at kinks)
    deriv_from_output: str | None  # a NumPy expression of {y} = act(z) equal to act'(z), or
    #                                None where the output does not determine act'(z)
    deriv_from_output_latex: str | None  # the same in LaTeX, of {y}
    sympy: Callable[[Any], Any]  # the exact value at a SymPy expression (Piecewise at kinks)
    numpy_kernel: str  # act({z}) as the NumPy kernels print it (may use the runtime's names:
    #                    _sigmoid = rt.sigmoid, templates/numpy/runtime.py.j2)
    numpy_kernel_out: str  # a NumPy statement that writes act({z}) into the array {out}
    numba: str  # act({z}) as scalar code inside the numba loops (math.*, builtins, or the
    #             branch-free helpers of templates/numba/_activations.py.j2)
    numba_deriv_from_output: str | None  # act'(z) as numba scalar code of {y}
    range: Interval  # closed hull of act's values
    deriv_range: Interval  # closed hull of act''s values (the flow bounds read it)
    # The array-library backends (derive.codegen.torch_printer / jax_printer), functional code
    # (no ``out=``). They may use the printed modules' names ``_torch`` (torch), ``_jnp``
    # (jax.numpy) and ``_jax`` (jax). A record without them still registers (the NumPy and
    # numba kernels, LaTeX and flow need none of them), and printing a torch or JAX kernel that
    # uses it raises, naming the missing facet (:meth:`facet`): nothing defaults.
    torch: str | None = None  # act({z})
    torch_deriv: str | None = None  # act'({z})
    torch_deriv_from_output: str | None = None  # act'(z) of {y} = act(z)
    jax: str | None = None
    jax_deriv: str | None = None
    jax_deriv_from_output: str | None = None

    def facet(self, name: str) -> str:
        """A backend facet's format, or ValueError naming it when the record lacks it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"activation {self.name!r} has no {name!r} facet: give "
                             f"Activation(..., {name}=...) to print it for that backend")
        return value

    def __post_init__(self) -> None:
        missing = [f.name for f in fields(self) if f.name not in _OPTIONAL | _BACKEND
                   and getattr(self, f.name) is None]
        if missing:
            raise ValueError(f"activation {self.name!r}: missing facets {missing}")
        have = [getattr(self, f) is not None for f in sorted(_OPTIONAL)]
        if any(have) and not all(have):
            raise ValueError(f"activation {self.name!r}: {sorted(_OPTIONAL)} are all given or "
                             "all None (the kernels need the derivative from the output)")
        for lib in ("torch", "jax"):
            value = getattr(self, lib)
            group = {f"{lib}_deriv": getattr(self, f"{lib}_deriv"),
                     f"{lib}_deriv_from_output": getattr(self, f"{lib}_deriv_from_output")}
            need = {f"{lib}_deriv"} | ({f"{lib}_deriv_from_output"}
                                        if self.deriv_from_output is not None else set())
            if value is not None and any(group[k] is None for k in need):
                raise ValueError(f"activation {self.name!r}: {lib} is given, so "
                                 f"{sorted(need)} must be too")
            if value is None and any(v is not None for v in group.values()):
                raise ValueError(f"activation {self.name!r}: {lib}'s derivatives without {lib}")
        if not self.name.isidentifier():
            raise ValueError(f"activation name {self.name!r} is not an identifier")
        for facet, keys in _PLACEHOLDERS.items():
            text = getattr(self, facet)
            if text is None:
                continue
            try:
                text.format(**{k: k for k in keys})
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"activation {self.name!r}: facet {facet} = {text!r} is not a "
                                 f"format of {', '.join('{' + k + '}' for k in keys)}") from err
        for facet in ("range", "deriv_range"):
            lo, hi = getattr(self, facet)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"activation {self.name!r}: empty {facet} {(lo, hi)}")

    # -- derived from the facets (never stored twice) -------------------------------------
    @property
    def deriv_bound(self) -> Fraction | None:
        """sup |act'(z)| over all z (None: unbounded): the constant of ||d(act'(v))||_2."""
        lo, hi = self.deriv_range
        return None if lo is None or hi is None else max(abs(lo), abs(hi))

    def value(self, z: Any) -> Any:
        """act(z) on a NumPy array, from the ``numpy`` facet."""
        return _compiled(self.numpy, "z")(z)

    def derivative(self, z: Any) -> Any:
        """act'(z) on a NumPy array, from the ``deriv`` facet."""
        return _compiled(self.deriv, "z")(z)

    def derivative_from_output(self, y: Any) -> Any:
        """act'(z) from y = act(z), from the ``deriv_from_output`` facet."""
        if self.deriv_from_output is None:
            raise ValueError(f"activation {self.name!r}: its output does not determine its "
                             "derivative (deriv_from_output is None)")
        return _compiled(self.deriv_from_output, "y")(y)

    def sympy_deriv(self, z: Any) -> Any:
        """act'(z) at a SymPy expression, by ``sympy.diff`` of the ``sympy`` facet."""
        s = sp.Dummy("z", real=True)
        return sp.diff(self.sympy(s), s).subs(s, z)


_OPTIONAL = frozenset({"deriv_from_output", "deriv_from_output_latex", "numba_deriv_from_output"})
_BACKEND = frozenset({"torch", "torch_deriv", "torch_deriv_from_output",
                      "jax", "jax_deriv", "jax_deriv_from_output"})
_PLACEHOLDERS = {"numpy": ("z",), "deriv": ("z",), "deriv_from_output": ("y",),
                 "deriv_from_output_latex": ("y",), "numpy_kernel": ("z",),
                 "numpy_kernel_out": ("z", "out"), "numba": ("z",),
                 "numba_deriv_from_output": ("y",), "torch": ("z",), "torch_deriv": ("z",),
                 "torch_deriv_from_output": ("y",), "jax": ("z",), "jax_deriv": ("z",),
                 "jax_deriv_from_output": ("y",)}


@functools.cache
def _compiled(template: str, var: str) -> Callable[[Any], Any]:
    import numpy as np

    return eval(f"lambda {var}: {template.format(**{var: var})}", {"np": np})  # noqa: S307


ACTIVATIONS: dict[str, Activation] = {}
"""Activation name -> record, in registration order. Add one with :func:`register` only."""


def register(act: Activation) -> Activation:
    """Make ``act`` known to the spec parser, the printers, the kernels and the flow bounds."""
    if not isinstance(act, Activation):
        raise TypeError(f"register() takes an Activation, not {type(act).__name__}")
    if act.name in ACTIVATIONS:
        raise ValueError(f"activation {act.name!r} is already registered")
    ACTIVATIONS[act.name] = act
    return act


def unregister(name: str) -> Activation:
    """Remove an activation again (tests that register one of their own)."""
    return ACTIVATIONS.pop(name)


def sympy_function(name: str):
    """The activation as an exact SymPy lambda."""
    z = sp.Symbol("z", real=True)
    return sp.Lambda(z, ACTIVATIONS[name].sympy(z))


_F = Fraction

register(Activation(
    name="sigmoid", latex=r"\sigma", unicode="σ",
    numpy="1.0 / (1.0 + np.exp(-({z})))",
    deriv="np.exp(-np.abs({z})) / np.square(1.0 + np.exp(-np.abs({z})))",
    deriv_from_output="{y} * (1.0 - {y})", deriv_from_output_latex=r"{y} \odot (1 - {y})",
    sympy=lambda z: 1 / (1 + sp.exp(-z)),
    numpy_kernel="_sigmoid({z})", numpy_kernel_out="_sigmoid({z}, out={out})",
    numba="_sigmoid_s({z})", numba_deriv_from_output="{y} * (1.0 - {y})",
    range=(_F(0), _F(1)), deriv_range=(_F(0), _F(1, 4)),
    torch='_torch.sigmoid({z})',
    torch_deriv='_torch.sigmoid({z}) * (1.0 - _torch.sigmoid({z}))',
    torch_deriv_from_output='{y} * (1.0 - {y})',
    jax='_jax.nn.sigmoid({z})',
    jax_deriv='_jax.nn.sigmoid({z}) * (1.0 - _jax.nn.sigmoid({z}))',
    jax_deriv_from_output='{y} * (1.0 - {y})',
))
register(Activation(
    name="tanh", latex=r"\tanh", unicode="tanh",
    numpy="np.tanh({z})",
    deriv="1.0 - np.square(np.tanh({z}))",
    deriv_from_output="1.0 - {y} * {y}", deriv_from_output_latex=r"1 - {y} \odot {y}",
    sympy=lambda z: sp.tanh(z),
    numpy_kernel="np.tanh({z})", numpy_kernel_out="np.tanh({z}, out={out})",
    numba="_tanh_s({z})", numba_deriv_from_output="1.0 - {y} * {y}",
    range=(_F(-1), _F(1)), deriv_range=(_F(0), _F(1)),
    torch='_torch.tanh({z})',
    torch_deriv='1.0 - _torch.square(_torch.tanh({z}))',
    torch_deriv_from_output='1.0 - {y} * {y}',
    jax='_jnp.tanh({z})',
    jax_deriv='1.0 - _jnp.square(_jnp.tanh({z}))',
    jax_deriv_from_output='1.0 - {y} * {y}',
))
register(Activation(
    name="identity", latex=r"\operatorname{id}", unicode="id",
    numpy="np.positive({z})",
    deriv="np.ones_like({z})",
    deriv_from_output="np.ones_like({y})", deriv_from_output_latex="1",
    sympy=lambda z: z,
    numpy_kernel="np.positive({z})", numpy_kernel_out="np.positive({z}, out={out})",
    numba="({z})", numba_deriv_from_output="1.0",
    range=(None, None), deriv_range=(_F(1), _F(1)),
    torch='_torch.positive({z})',
    torch_deriv='_torch.ones_like({z})',
    torch_deriv_from_output='_torch.ones_like({y})',
    jax='_jnp.positive({z})',
    jax_deriv='_jnp.ones_like({z})',
    jax_deriv_from_output='_jnp.ones_like({y})',
))
register(Activation(
    name="relu", latex=r"\operatorname{ReLU}", unicode="ReLU",
    numpy="np.maximum({z}, 0.0)",
    deriv="np.heaviside({z}, 0.0)",
    deriv_from_output="np.heaviside({y}, 0.0)", deriv_from_output_latex="[{y} > 0]",
    sympy=lambda z: sp.Piecewise((z, z > 0), (0, True)),
    numpy_kernel="np.maximum({z}, 0.0)", numpy_kernel_out="np.maximum({z}, 0.0, out={out})",
    numba="max({z}, 0.0)", numba_deriv_from_output="(1.0 if {y} > 0.0 else 0.0)",
    range=(_F(0), None), deriv_range=(_F(0), _F(1)),
    torch='_torch.relu({z})',
    # where(), not heaviside(): torch has no derivative for heaviside, and the derived backward is
    # differentiated again under create_graph=True (a zero derivative, as the step function has)
    torch_deriv='_torch.where(({z}) > 0.0, _torch.ones_like({z}), _torch.zeros_like({z}))',
    torch_deriv_from_output=('_torch.where(({y}) > 0.0, _torch.ones_like({y}), '
                             '_torch.zeros_like({y}))'),
    jax='_jnp.maximum({z}, 0.0)',
    jax_deriv='_jnp.heaviside({z}, 0.0)',
    jax_deriv_from_output='_jnp.heaviside({y}, 0.0)',
))
register(Activation(  # torch.nn.functional.leaky_relu's default negative slope, 0.01
    name="leaky_relu", latex=r"\operatorname{LeakyReLU}", unicode="LeakyReLU",
    numpy="np.maximum({z}, 0.01 * ({z}))",  # max(z, 0.01 z): the slope is below 1
    deriv="0.01 + 0.99 * np.heaviside({z}, 0.0)",
    deriv_from_output="0.01 + 0.99 * np.heaviside({y}, 0.0)",
    deriv_from_output_latex=r"0.01 + 0.99\,[{y} > 0]",
    sympy=lambda z: sp.Piecewise((z, z > 0), (z / 100, True)),
    numpy_kernel="np.maximum({z}, 0.01 * ({z}))",
    numpy_kernel_out="np.maximum({z}, 0.01 * ({z}), out={out})",
    numba="max({z}, 0.01 * ({z}))", numba_deriv_from_output="(1.0 if {y} > 0.0 else 0.01)",
    range=(None, None), deriv_range=(_F(1, 100), _F(1)),
    torch='_torch.maximum({z}, 0.01 * ({z}))',
    torch_deriv=('_torch.where(({z}) > 0.0, _torch.ones_like({z}), '
                 '0.01 * _torch.ones_like({z}))'),
    torch_deriv_from_output=('_torch.where(({y}) > 0.0, _torch.ones_like({y}), '
                             '0.01 * _torch.ones_like({y}))'),
    jax='_jnp.maximum({z}, 0.01 * ({z}))',
    jax_deriv='0.01 + 0.99 * _jnp.heaviside({z}, 0.0)',
    jax_deriv_from_output='0.01 + 0.99 * _jnp.heaviside({y}, 0.0)',
))
register(Activation(  # beta 1 (torch returns z itself above its threshold 20: within 2e-9)
    name="softplus", latex=r"\operatorname{softplus}", unicode="softplus",
    numpy="np.logaddexp({z}, 0.0)",
    deriv="0.5 * (1.0 + np.tanh(0.5 * ({z})))",
    deriv_from_output="-np.expm1(-({y}))", deriv_from_output_latex=r"1 - e^{{-{y}}}",
    sympy=lambda z: sp.log(1 + sp.exp(z)),
    numpy_kernel="np.logaddexp({z}, 0.0)", numpy_kernel_out="np.logaddexp({z}, 0.0, out={out})",
    numba="max({z}, 0.0) + math.log1p(math.exp(-abs({z})))",
    numba_deriv_from_output="-math.expm1(-({y}))",
    range=(_F(0), None), deriv_range=(_F(0), _F(1)),
    torch='_torch.logaddexp({z}, _torch.zeros_like({z}))',
    torch_deriv='0.5 * (1.0 + _torch.tanh(0.5 * ({z})))',
    torch_deriv_from_output='-_torch.expm1(-({y}))',
    jax='_jnp.logaddexp({z}, 0.0)',
    jax_deriv='0.5 * (1.0 + _jnp.tanh(0.5 * ({z})))',
    jax_deriv_from_output='-_jnp.expm1(-({y}))',
))
register(Activation(
    name="softsign", latex=r"\operatorname{softsign}", unicode="softsign",
    numpy="({z}) / (1.0 + np.abs({z}))",
    deriv="1.0 / np.square(1.0 + np.abs({z}))",
    deriv_from_output="np.square(1.0 - np.abs({y}))", deriv_from_output_latex=r"(1 - |{y}|)^2",
    sympy=lambda z: z / (1 + sp.Abs(z)),
    numpy_kernel="({z}) / (1.0 + np.abs({z}))",
    numpy_kernel_out="np.divide({z}, 1.0 + np.abs({z}), out={out})",
    numba="({z}) / (1.0 + abs({z}))",
    numba_deriv_from_output="(1.0 - abs({y})) * (1.0 - abs({y}))",
    range=(_F(-1), _F(1)), deriv_range=(_F(0), _F(1)),
    torch='({z}) / (1.0 + _torch.abs({z}))',
    torch_deriv='1.0 / _torch.square(1.0 + _torch.abs({z}))',
    torch_deriv_from_output='_torch.square(1.0 - _torch.abs({y}))',
    jax='({z}) / (1.0 + _jnp.abs({z}))',
    jax_deriv='1.0 / _jnp.square(1.0 + _jnp.abs({z}))',
    jax_deriv_from_output='_jnp.square(1.0 - _jnp.abs({y}))',
))
register(Activation(
    name="exp", latex=r"\exp", unicode="exp",
    numpy="np.exp({z})",
    deriv="np.exp({z})",
    deriv_from_output="np.positive({y})", deriv_from_output_latex="{y}",
    sympy=lambda z: sp.exp(z),
    numpy_kernel="np.exp({z})", numpy_kernel_out="np.exp({z}, out={out})",
    numba="math.exp({z})", numba_deriv_from_output="({y})",
    range=(_F(0), None), deriv_range=(_F(0), None),
    torch='_torch.exp({z})',
    torch_deriv='_torch.exp({z})',
    torch_deriv_from_output='_torch.positive({y})',
    jax='_jnp.exp({z})',
    jax_deriv='_jnp.exp({z})',
    jax_deriv_from_output='_jnp.positive({y})',
))
register(Activation(  # torch's hardsigmoid: relu6(z + 3) / 6, derivative 1/6 on (-3, 3) only
    name="hard_sigmoid", latex=r"\operatorname{hardsigmoid}", unicode="hardsigmoid",
    numpy="np.clip(({z}) + 3.0, 0.0, 6.0) / 6.0",
    deriv="np.heaviside(3.0 - np.abs({z}), 0.0) / 6.0",
    deriv_from_output="np.heaviside({y} * (1.0 - {y}), 0.0) / 6.0",
    deriv_from_output_latex=r"\tfrac16\,[0 < {y} < 1]",
    sympy=lambda z: sp.Piecewise((0, z <= -3), (1, z >= 3), ((z + 3) / 6, True)),
    numpy_kernel="np.clip(({z}) + 3.0, 0.0, 6.0) / 6.0",
    numpy_kernel_out="np.divide(np.clip(({z}) + 3.0, 0.0, 6.0), 6.0, out={out})",
    numba="min(max(({z}) + 3.0, 0.0), 6.0) / 6.0",
    numba_deriv_from_output="(1.0 / 6.0 if 0.0 < ({y}) < 1.0 else 0.0)",
    range=(_F(0), _F(1)), deriv_range=(_F(0), _F(1, 6)),
    torch='_torch.clamp(({z}) + 3.0, 0.0, 6.0) / 6.0',
    torch_deriv=('_torch.where(_torch.abs({z}) < 3.0, _torch.ones_like({z}), '
                 '_torch.zeros_like({z})) / 6.0'),
    torch_deriv_from_output='_torch.heaviside({y} * (1.0 - {y}), _torch.zeros_like({y})) / 6.0',
    jax='_jnp.clip(({z}) + 3.0, 0.0, 6.0) / 6.0',
    jax_deriv='_jnp.heaviside(3.0 - _jnp.abs({z}), 0.0) / 6.0',
    jax_deriv_from_output='_jnp.heaviside({y} * (1.0 - {y}), 0.0) / 6.0',
))
register(Activation(  # 1/z, e.g. minLSTM's normalisation f / (f + i) = f * reciprocal(f + i)
    name="reciprocal", latex=r"\operatorname{recip}", unicode="recip",
    numpy="1.0 / ({z})",
    deriv="-1.0 / np.square({z})",
    deriv_from_output="-np.square({y})", deriv_from_output_latex=r"-{y} \odot {y}",
    sympy=lambda z: 1 / z,
    numpy_kernel="1.0 / ({z})", numpy_kernel_out="np.divide(1.0, {z}, out={out})",
    numba="1.0 / ({z})", numba_deriv_from_output="-({y}) * ({y})",
    range=(None, None), deriv_range=(None, _F(0)),
    torch='1.0 / ({z})',
    torch_deriv='-1.0 / _torch.square({z})',
    torch_deriv_from_output='-_torch.square({y})',
    jax='1.0 / ({z})',
    jax_deriv='-1.0 / _jnp.square({z})',
    jax_deriv_from_output='-_jnp.square({y})',
))
