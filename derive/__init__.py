"""derive: derive, print and run the gradients of recurrent cells from a declarative spec.

>>> import derive
>>> derive.cells()
['lstm', 'sigmoid_lstm', 'rnn', 'gru', 'peephole_lstm']
>>> d = derive.derive("sigmoid_lstm")
>>> len(d.forward["W_f"].V)   # the one direct term of dh_t/dW_f
1
"""

from .derivation import Derivation, ForwardParam, cells, derive, get_spec
from .spec import CellSpec, SpecError

__all__ = ["CellSpec", "Derivation", "ForwardParam", "SpecError", "cells", "derive", "get_spec"]
__version__ = "0.1.0"
