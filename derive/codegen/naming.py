"""Every identifier a printed kernel uses comes from here, so a cell's own names never collide.

A cell may name its parameters and nodes anything the spec language accepts: ``U1``, ``s0``,
``d_h``, ``np``, ``t``, ``xs``, ``lambda``. The kernel templates use a fixed vocabulary of their
own (:data:`TEMPLATE_NAMES`, the one list of it); the lowering asks :meth:`Namer.fresh` for every
name it introduces. A cell name that is a Python keyword, a builtin the kernels call, or a word of
the templates' vocabulary gets a trailing underscore (more if that is taken too), and fresh names
avoid every cell name and every name given out before. The printed code is then correct by
construction, whatever the cell calls its values.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Iterable

# The words the NumPy kernel templates and the runtime calls write literally (function
# arguments, loop variables, module-level names). Nothing else in a template is an identifier.
TEMPLATE_NAMES = frozenset({
    "np", "rt", "PARAMS", "STATE", "READOUT", "RTRL_DENSE_MAX", "SPEC_DIGEST", "init_params",
    "forward", "backward", "readout", "rtrl", "rtrl_step", "state_jacobian", "params", "xs",
    "state0", "state", "cache", "dhs", "dys", "dstate", "input_grad", "keep_cache", "grads",
    "steps", "batch", "n_hidden", "n_in", "n_out", "dtype", "t", "x_t", "P", "S", "out", "V", "off",
    "dense", "sens", "prev", "ones", "carry", "new_state", "J", "hs", "ys", "name", "seed",
    "_sizes", "_unpack", "_local_step", "_check_array", "_check_state", "_check_xs",
    "_sigmoid", "_apply", "zip", "range", "dict", "mask", "lengths", "held",
})

# The words the numba kernel templates (templates/numba/) write literally on top of those: the
# module's imports and globals, the arguments and locals of its functions, loop counters.
NUMBA_TEMPLATE_NAMES = TEMPLATE_NAMES | frozenset({
    "math", "ir", "njit", "types", "intrinsic", "overload", "INPUT_GRAD", "STATE0_GRAD",
    "READOUT_PARAMS", "SEQUENCE_MAX_BYTES", "FUSED", "lo", "hi", "b", "b0", "b1", "j", "m", "q",
    "U", "W_cat", "nil", "chunks", "chunk", "args", "width", "rows", "whole", "OFF",
    "readout_grads", "dh_readout",
})

_BUILTINS = frozenset(dir(builtins))


class Namer:
    """The identifiers of one printed module: the cell's names, renamed where they would clash,
    and every name the generator introduces.

    ``cell(name)`` is the identifier of a cell name (parameter, node or state); ``fresh(base)``
    a new identifier that is ``base`` when that is free, else ``base_1``, ``base_2``, ...
    """

    def __init__(self, cell_names: Iterable[str], reserved: Iterable[str] = TEMPLATE_NAMES):
        self._taken: set[str] = set(reserved)
        self._cell: dict[str, str] = {}
        for n in cell_names:
            if n in self._cell:
                continue
            ident = n
            while ident in self._taken or keyword.iskeyword(ident) or ident in _BUILTINS:
                ident += "_"
            self._cell[n] = ident
            self._taken.add(ident)
        self._fresh: dict[str, str] = {}

    def cell(self, name: str) -> str:
        """The identifier of the cell's own name ``name``."""
        return self._cell[name]

    def fresh(self, base: str) -> str:
        """A new identifier, ``base`` where free. Asking twice for one base gives two names."""
        ident, k = base, 0
        while ident in self._taken or keyword.iskeyword(ident) or ident in _BUILTINS:
            k += 1
            ident = f"{base}_{k}"
        self._taken.add(ident)
        return ident

    def once(self, key: str, base: str | None = None) -> str:
        """The fresh identifier registered under ``key`` (made on first use)."""
        if key not in self._fresh:
            self._fresh[key] = self.fresh(base or key)
        return self._fresh[key]


def module_name(cell_name: str) -> str:
    """The Python module name of a cell's kernel: the cell name where it is an identifier, else
    with every other character as ``_`` (``my-cell`` -> ``my_cell``), ``cell_`` in front of a
    leading digit, ``_`` after a keyword. Module names never start with ``_`` (the package's
    own ``_runtime`` cannot be hit); the numba sibling is ``<module>_numba``."""
    ident = "".join(ch if ch.isalnum() and ch.isascii() or ch == "_" else "_"
                    for ch in cell_name)
    if not ident or not ident[0].isalpha():
        ident = f"cell_{ident}"
    while keyword.iskeyword(ident):
        ident += "_"
    return ident
