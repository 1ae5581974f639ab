"""The tools that use derive's outputs: ``generate`` (every file of ``generated/``), ``verify``
(a generated kernel against central differences), ``flow`` (gradient flow: symbolic results and
measurements) and ``interop`` (weights to and from torch.nn.LSTM / GRU / RNN)."""
