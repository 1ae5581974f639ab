"""Cell spec files: a cell written as TOML or JSON, read wherever a cell name is accepted.

The file holds the dictionary of :meth:`derive.spec.CellSpec.from_dict` (the format of
:mod:`derive.spec.cells`). In TOML::

    name = "cifg"
    title = "Coupled input-forget gate LSTM (Greff et al. 2017)"
    states = ["h", "c"]

    [params]
    W_xf = ["hidden", "input"]
    b_f = "hidden"

    [nodes]                     # in order; each node may use the ones above it
    f = "sigmoid(W_xf @ x + W_hf @ h_prev + b_f)"

:func:`load_spec_file` reads one, :func:`resolve_cell` turns a command-line argument (a built-in
name or a file) into a :class:`CellSpec`, :func:`starter_toml` writes the commented starter of
``derive new``. Every error names the file and the line (a syntax error) or the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cellspec import DIMS, CellSpec
from .expr import SpecError

SUFFIXES = (".toml", ".json")


class SpecFileError(SpecError):
    """A spec file that cannot be read or does not hold a valid cell; the message names the
    file and the line or field."""


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the tomli backport (a dependency there)
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def read_spec_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The plain data of a spec file (not yet validated)."""
    p = Path(path)
    where = str(path)
    if p.suffix.lower() not in SUFFIXES:
        raise SpecFileError(f"{where}: expected a cell spec file ending in .toml or .json, "
                            f"got {p.suffix or 'no suffix'!r}")
    if not p.is_file():
        raise SpecFileError(f"{where}: no such cell spec file"
                            + (" (it is a directory)" if p.is_dir() else ""))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SpecFileError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None
    except OSError as exc:
        raise SpecFileError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecFileError(f"{where}: line {exc.lineno}, column {exc.colno}: "
                                f"{exc.msg} (not valid JSON)") from None
    else:
        try:
            data = _toml_loads(text)
        except ValueError as exc:  # tomllib.TOMLDecodeError: "... (at line L, column C)"
            raise SpecFileError(f"{where}: {exc} (not valid TOML)") from None
    if not isinstance(data, Mapping):
        raise SpecFileError(f"{where}: expected a table of the spec's fields (name, params, "
                            f"nodes, states, ...), got {type(data).__name__}")
    return dict(data)


def load_spec_file(path: str | os.PathLike[str]) -> CellSpec:
    """The validated cell of a .toml or .json spec file; a missing ``name`` is the file's stem.

    Raises :class:`SpecFileError` naming the file and the line or field.
    """
    data = read_spec_data(path)
    data.setdefault("name", Path(path).stem)
    try:
        return CellSpec.from_dict(data)
    except SpecFileError:
        raise
    except SpecError as exc:
        raise SpecFileError(f"{path}: {exc}") from None


def looks_like_file(arg: str) -> bool:
    """True when a command-line cell argument names a file rather than a built-in cell."""
    return arg.lower().endswith(SUFFIXES) or os.sep in arg or "/" in arg or Path(arg).is_file()


def resolve_cell(arg: str, builtin: Mapping[str, Mapping[str, Any]] | None = None) -> CellSpec:
    """A built-in cell's name or a spec file's path, as a :class:`CellSpec`."""
    if builtin is None:
        from .cells import BUILTIN as builtin
    if arg in builtin:
        return CellSpec.from_dict(builtin[arg])
    if looks_like_file(arg):
        return load_spec_file(arg)
    raise SpecError(f"unknown cell {arg!r}; expected a built-in cell ({', '.join(builtin)}) or "
                    f"a cell spec file (.toml or .json; `derive new NAME` writes a starter)")


# ----------------------------------------------------------------------------- writing


def _value(v: Any) -> str:
    """A TOML value (strings as basic strings: JSON's escapes are TOML's)."""
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {type(v).__name__}")


def _key(k: str) -> str:
    return k if k.replace("_", "a").replace("-", "a").isalnum() and k.isascii() else json.dumps(k)


_GRAMMAR = """\
# A derive cell spec (`derive list`, `derive show`, `derive latex`, `derive generate`,
# `derive verify`, `derive flow` and `derive check --cell` all take this file).
#
# params      name = shape: one or two of the dimensions {dims}. A 2-D parameter
#             acts by matrix product (W @ v); a 1-D one is a bias (a summand) or an elementwise
#             weight (a Hadamard factor). readout_params may also use "output".
# nodes       name = expression, in order; an expression reads x (the input x_t),
#             <state>_prev (a state at t-1), the parameters and the nodes above it:
#             @ matrix-vector product, * elementwise (Hadamard) product, + and -, numbers
#             (1 is the all-ones vector, 0.5 * v scales), and the activations
{acts}
#             A node whose whole expression is act(...) is a gate: its pre-activation is
#             written \\hat{{g}}_t and its derivative g'_t in the derivation.
# states      the recurrent states, the output h first; each must be a node.
# readout     optional: outputs y_t computed from the output state, which do not feed back.
# latex       optional: LaTeX names, e.g. c = "s" prints the state c as s_t.
"""


def starter_toml(name: str, like: CellSpec | None = None) -> str:
    """The commented TOML of ``derive new NAME [--like CELL]``: ``like``'s spec under the new
    name, or a small gated cell to edit (a GRU-like cell with one state)."""
    from .activations import ACTIVATIONS

    if like is not None:
        data = like.to_dict()
        data["name"] = name
        data["title"] = f"{name}: a variant of {like.title}"
    else:
        data = {
            "name": name,
            "title": f"{name}: a gated recurrent cell",
            "params": {"W_xz": ["hidden", "input"], "W_hz": ["hidden", "hidden"],
                       "b_z": ["hidden"], "W_xn": ["hidden", "input"],
                       "W_hn": ["hidden", "hidden"], "b_n": ["hidden"]},
            "nodes": {"z": "sigmoid(W_xz @ x + W_hz @ h_prev + b_z)",
                      "n": "tanh(W_xn @ x + W_hn @ h_prev + b_n)",
                      "h": "(1 - z) * n + z * h_prev"},
            "states": ["h"],
        }
    CellSpec.from_dict(data)  # the starter must be a valid cell
    import textwrap

    acts = textwrap.fill(", ".join(ACTIVATIONS) + ".", width=96, initial_indent="#" + " " * 13,
                         subsequent_indent="#" + " " * 13)
    lines = [_GRAMMAR.format(dims=", ".join(f'"{d}"' for d in DIMS[:2]), acts=acts)]
    lines.append(f"name = {_value(data['name'])}")
    lines.append(f"title = {_value(data['title'])}")
    lines.append(f"states = {_value(data['states'])}")
    for table in ("params", "nodes", "readout_params", "readout", "latex"):
        if data.get(table):
            lines += ["", f"[{table}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in data[table].items()]
    text = "\n".join(lines) + "\n"
    if CellSpec.from_dict(_toml_loads(text)).to_dict() != CellSpec.from_dict(data).to_dict():
        raise AssertionError("the starter TOML does not read back as its cell")  # pragma: no cover
    return text


__all__ = ["SUFFIXES", "SpecFileError", "load_spec_file", "looks_like_file", "read_spec_data",
           "resolve_cell", "starter_toml"]
