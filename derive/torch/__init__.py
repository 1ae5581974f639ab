"""Derived cells as torch layers: ``derive.torch.RNN`` (any cell, stacked, bidirectional,
packed sequences) and ``derive.torch.sequence`` (one cell over one sequence, an
``autograd.Function`` whose backward is the derived BPTT and whose ``jvp`` is the derived
forward mode)."""

from .function import lengths_mask, sequence
from .rnn import RNN

__all__ = ["RNN", "lengths_mask", "sequence"]
