"""derive: derive, print and run the gradients of recurrent cells from a declarative spec.

>>> import derive
>>> derive.cells()
['lstm', 'sigmoid_lstm', 'rnn', 'gru', 'peephole_lstm']
>>> d = derive.derive("sigmoid_lstm")
>>> len(d.forward["W_f"].V)   # the one direct term of dh_t/dW_f
1

The package reads as the pipeline, each folder importing only those above it: ``spec/`` (what
a cell is), ``calculus/`` (the derivation, as values), ``printing/`` and ``document/`` (LaTeX and
terminal text), ``codegen/`` (the kernels), ``tools/`` (generate, verify, flow, interop),
``check/`` (judging a hand derivation), ``cli/`` (the command line).
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
    from .calculus.derivation import Derivation, ForwardParam, cells, derive, get_spec
    from .spec import CellSpec, SpecError

__all__ = ["CellSpec", "Derivation", "ForwardParam", "SpecError", "cells", "derive", "get_spec"]
__version__ = "0.2.0"

# Everything is loaded on first use, so that ``import derive`` (and so ``import
# derive.kernels.lstm``, whose parent it is) costs nothing: a kernel needs numpy only.
_LAZY = {"Derivation": "derive.calculus.derivation", "ForwardParam": "derive.calculus.derivation",
         "cells": "derive.calculus.derivation", "derive": "derive.calculus.derivation",
         "get_spec": "derive.calculus.derivation", "CellSpec": "derive.spec",
         "SpecError": "derive.spec"}
# The README's short paths (``from derive import flow, interop``; the ``derive.activations``
# registry).
_SHORT = {"activations": "derive.spec.activations", "flow": "derive.tools.flow",
          "interop": "derive.tools.interop"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SHORT:
        return importlib.import_module(_SHORT[name])
    raise AttributeError(f"module 'derive' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SHORT])
