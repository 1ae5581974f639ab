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

from .calculus.derivation import Derivation, ForwardParam, cells, derive, get_spec
from .spec import CellSpec, SpecError

__all__ = ["CellSpec", "Derivation", "ForwardParam", "SpecError", "cells", "derive", "get_spec"]
__version__ = "0.1.0"

# The README's short paths (``from derive import flow, interop``; the ``derive.activations``
# registry), loaded on first use so that ``import derive`` stays light.
_SHORT = {"activations": "derive.spec.activations", "flow": "derive.tools.flow",
          "interop": "derive.tools.interop"}


def __getattr__(name: str):
    if name in _SHORT:
        return importlib.import_module(_SHORT[name])
    raise AttributeError(f"module 'derive' has no attribute {name!r}")
