"""Notation profiles: the math is one, the names are the paper's.

Every printer of :mod:`derive.printing.latex` takes a ``names`` mapping (spec name -> LaTeX), so a
notation profile is nothing but that mapping, per cell: it renames parameters, nodes, states and the
input ``x``, and never touches the derivation. Profiles:

``native``
    each cell's own spec names (``lstm``: W_{xi}, W_{hi}, c_t, g_t; ``sigmoid_lstm``: W, U,
    s_t, \\tilde{s}_t; ``rnn``: W on x_t, U on h_{t-1}). Built in, no file.
``goodfellow``
    the style of Goodfellow, Bengio and Courville, *Deep Learning* (2016), sec. 10.10, for every
    cell: W acts on h_{t-1}, U on x_t, cell state s_t, candidate \\tilde{s}_t
    (``notations/goodfellow.toml``; its former name ``seed001`` is an alias).
``standard``
    the common style: W_{x*} on x_t, W_{h*} on h_{t-1}, cell state c_t, candidate g_t
    (``notations/standard.toml``).

A user file has the same TOML format as the shipped ones::

    name = "mine"                  # optional
    description = "..."            # optional
    extends = "goodfellow"         # optional: a shipped profile or another file (relative path)
    [symbols]                      # renames for every cell that has the symbol
    x = "u"
    [cells.lstm]                   # renames for one cell: spec name = "LaTeX"
    W_hi = '\\mathbf{W}_i'

Renames are validated against the cells (unknown cells and symbols are errors that list the valid
ones), must keep the notation one-to-one (two symbols may not print alike, nor like the reserved
d(.), I, L, M_t, N_t) and must survive the printers' decorations: a node is printed with ``_t``,
``'_t`` and ``\\bar{}`` attached and a matrix with ``^\\top``, so their names may not carry a
top-level subscript, superscript or prime (wrap them in braces: ``{h^{(1)}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..resources import NOTATIONS
from ..spec.cellspec import (  # noqa: F401  (re-exported: the rules of a symbol's LaTeX name)
    _FORBIDDEN_CHARS,
    _FORBIDDEN_COMMANDS,
    _RESERVED_PARAM,
    _RESERVED_TIMED,
    HAT,
    INPUT,
    CellSpec,
    check_symbols,
    latex_problem,
    renameable,
)

NOTATIONS_DIR = NOTATIONS
NATIVE = "native"
_KEYS = ("name", "description", "extends", "symbols", "cells")
class NotationError(ValueError):
    """A notation profile cannot be used; the message says what was expected and what was got."""


@dataclass(frozen=True)
class Notation:
    """A notation profile: per-cell renames of spec names to LaTeX (see the module docstring)."""

    name: str
    description: str = ""
    source: str = "built-in"
    symbols: Mapping[str, str] = field(default_factory=dict)
    cells: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    base: Notation | None = None

    def renames(self, spec: CellSpec) -> dict[str, str]:
        """The renames this profile (and the profiles it extends) makes for one cell."""
        out = self.base.renames(spec) if self.base is not None else {}
        known = renameable(spec)
        out.update({k: v for k, v in self.symbols.items() if k in known})
        out.update(self.cells.get(spec.name, {}))
        return out

    def names(self, spec: CellSpec) -> dict[str, str]:
        """The full ``names`` mapping for the printers of :mod:`derive.printing.latex`: the cell's
        own LaTeX names with this profile's renames applied. Raises :class:`NotationError` when the
        result is ambiguous or a rename cannot be printed."""
        ren = self.renames(spec)
        unknown = sorted(set(ren) - set(renameable(spec)))
        if unknown:
            raise NotationError(
                f"notation {self.name!r}: cell {spec.name!r} has no symbol(s) {unknown}; "
                f"expected some of {sorted(renameable(spec))}")
        names = dict(spec.latex_names)
        names.update(ren)
        _check_cell(self.name, spec, names, set(ren))
        return names

    def __str__(self) -> str:
        return self.name


ALIASES = {"seed001": "goodfellow"}
"""Former names of shipped profiles, still accepted (not listed by :func:`available`)."""


def available() -> list[str]:
    """Names of the shipped profiles: ``native`` and every ``notations/*.toml``."""
    files = sorted(p.stem for p in NOTATIONS_DIR.glob("*.toml")) if NOTATIONS_DIR.is_dir() else []
    return [NATIVE, *(f for f in files if f != NATIVE)]


def load(ref: str | Path | Notation | None = None) -> Notation:
    """A profile by shipped name (see :func:`available`), by path to a TOML file, or ``None``
    for ``native``. Raises :class:`NotationError` listing the valid choices."""
    return _load(ref, ())


def _load(ref: str | Path | Notation | None, chain: tuple[str, ...]) -> Notation:
    if isinstance(ref, Notation):
        return ref
    if ref is None or ref == NATIVE:
        return Notation(NATIVE, "each cell's own spec names")
    text = str(ref)
    if not isinstance(ref, Path):
        text = ALIASES.get(text, text)
    if not isinstance(ref, Path) and text in available():
        path = NOTATIONS_DIR / f"{text}.toml"
    elif isinstance(ref, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise NotationError(f"notation file {text!r} not found")
    else:
        raise NotationError(
            f"unknown notation {text!r}; expected one of {', '.join(available())} "
            f"or a path to a .toml file")
    key = str(path.resolve())
    if key in chain:
        raise NotationError(f"notation file {text!r}: 'extends' makes a cycle: "
                            f"{' -> '.join([*chain, key])}")
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotationError(f"cannot read notation file {text!r}: {exc}") from None
    return parse(raw, source=str(path), default_name=path.stem, _chain=(*chain, key))


def _toml_loads(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise NotationError("reading a notation file needs Python >= 3.11 (tomllib) or the "
                                "'tomli' package") from None
    return tomllib.loads(text)


def parse(text: str, source: str = "<string>", default_name: str = "custom",
          _chain: tuple[str, ...] = ()) -> Notation:
    """Parse and validate a notation profile from TOML text (format: module docstring)."""
    where = f"notation file {source!r}"
    try:
        data = _toml_loads(text)
    except NotationError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError carries line and column
        raise NotationError(f"{where}: invalid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise NotationError(f"{where}: unknown key(s) {unknown}; expected some of {list(_KEYS)}")
    for key in ("name", "description", "extends"):
        if key in data and not isinstance(data[key], str):
            raise NotationError(f"{where}: {key!r} must be a string, got "
                                f"{type(data[key]).__name__}")
    base = None
    if "extends" in data:
        ext = data["extends"]
        if ext not in available() and not Path(ext).is_absolute():
            cand = Path(source).parent / ext
            ext = str(cand) if cand.is_file() else ext
        try:
            base = _load(ext, _chain)
        except NotationError as exc:
            raise NotationError(f"{where}: extends: {exc}") from None
    specs = _builtin_specs()
    symbols = _table(data.get("symbols", {}), f"{where}: [symbols]")
    everywhere = sorted({s for spec in specs.values() for s in renameable(spec)})
    bad = sorted(set(symbols) - set(everywhere))
    if bad:
        raise NotationError(f"{where}: [symbols] renames unknown symbol(s) {bad}; "
                            f"expected some of {everywhere}")
    cells_raw = data.get("cells", {})
    if not isinstance(cells_raw, dict):
        raise NotationError(f"{where}: 'cells' must be a table of [cells.NAME] tables, got "
                            f"{type(cells_raw).__name__}")
    cells: dict[str, dict[str, str]] = {}
    for cname, table in cells_raw.items():
        if cname not in specs:
            raise NotationError(f"{where}: [cells.{cname}]: unknown cell {cname!r}; expected "
                                f"one of {', '.join(specs)}")
        ren = _table(table, f"{where}: [cells.{cname}]")
        valid = renameable(specs[cname])
        bad = sorted(set(ren) - set(valid))
        if bad:
            raise NotationError(f"{where}: [cells.{cname}]: cell {cname!r} has no symbol(s) "
                                f"{bad}; expected some of {valid}")
        cells[cname] = ren
    note = Notation(data.get("name", default_name), data.get("description", ""), source,
                    symbols, cells, base)
    for spec in specs.values():  # validate every built-in cell now, not at first use
        try:
            note.names(spec)
        except NotationError as exc:
            raise NotationError(f"{where}: {exc}") from None
    return note


def _table(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise NotationError(f"{where} must be a table of name = \"LaTeX\", got "
                            f"{type(value).__name__}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise NotationError(f"{where}: {k} must be a LaTeX string, got {type(v).__name__} "
                                f"{v!r}")
        problem = latex_problem(v)
        if problem:
            raise NotationError(f"{where}: {k} = {v!r}: {problem}")
        out[k] = v.strip()
    return out


def _check_cell(profile: str, spec: CellSpec, names: dict[str, str], renamed: set[str]) -> None:
    """The symbol rules of :func:`derive.spec.check_symbols`, as a notation's error."""
    check_symbols(profile, spec, names, renamed, NotationError)


_SPECS: dict[str, CellSpec] = {}


def _builtin_specs() -> dict[str, CellSpec]:
    if not _SPECS:
        from ..spec.cells import BUILTIN

        _SPECS.update({n: CellSpec.from_dict(d) for n, d in BUILTIN.items()})
    return _SPECS
