"""``derive.torch.RNN``: any derived cell as a multi-layer, bidirectional torch layer, called
like ``torch.nn.LSTM`` / ``GRU`` / ``RNN``.

Each (layer, direction) runs the cell's sequence Function (:mod:`derive.torch.function`: the
derived BPTT as backward, the derived forward mode as ``jvp``); layers compose through the
input gradient, the reverse direction runs each sequence reversed within its own length
(Schuster & Paliwal 1997), and variable lengths (a ``PackedSequence``, or ``lengths=``) freeze
each sequence's state after its end, as torch's packed sequences do.

Parameters: for the cells that have a torch counterpart (``lstm``, ``gru``, ``rnn``, see
:mod:`derive.tools.interop`) the module keeps torch's own tensors and names
(``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``), so that
its ``state_dict`` is torch's and SGD updates both of torch's biases as torch does (the cell's
one bias is their sum: interop's docstring). Any other cell keeps its own parameters,
``<name>_l<k>[_reverse]``, drawn uniform(-1/sqrt(hidden), 1/sqrt(hidden)) as torch draws its.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..calculus.derivation import get_spec
from ..spec import Add, CellSpec, Ref, walk
from ..spec.cells import BUILTIN
from .function import lengths_mask, sequence

# torch's stacked row blocks and how each of the cell's parameters is read from them: a list
# of (tensor, block) summed (a merged bias is bias_ih[k] + bias_hh[k]; interop's docstring)
_BLOCKS = {"lstm": "ifgo", "gru": "rzn", "rnn": "h"}


def _torch_layout(name: str) -> dict[str, tuple[tuple[str, int], ...]]:
    g = _BLOCKS[name]
    if name == "rnn":
        return {"W": (("weight_ih", 0),), "U": (("weight_hh", 0),),
                "b_h": (("bias_ih", 0), ("bias_hh", 0))}
    out: dict[str, tuple[tuple[str, int], ...]] = {}
    out |= {f"W_x{c}": (("weight_ih", k),) for k, c in enumerate(g)}
    out |= {f"W_h{c}": (("weight_hh", k),) for k, c in enumerate(g)}
    if name == "lstm":
        out |= {f"b_{c}": (("bias_ih", k), ("bias_hh", k)) for k, c in enumerate(g)}
    else:
        out |= {"b_r": (("bias_ih", 0), ("bias_hh", 0)), "b_z": (("bias_ih", 1), ("bias_hh", 1)),
                "b_xn": (("bias_ih", 2),), "b_hn": (("bias_hh", 2),)}
    return out


def resolve(cell: str | os.PathLike[str] | Mapping[str, Any] | CellSpec) -> CellSpec:
    """A built-in name, a spec dict, a CellSpec or the path of a spec file (.toml, .json)."""
    if isinstance(cell, os.PathLike) or (isinstance(cell, str) and cell not in BUILTIN):
        from ..spec.files import load_spec_file

        return load_spec_file(cell)
    return get_spec(cell)


def _same_as_builtin(spec: CellSpec) -> bool:
    if spec.name not in _BLOCKS:
        return False
    ref = get_spec(spec.name)
    return ({n: v.source for n, v in spec.nodes.items()} ==
            {n: v.source for n, v in ref.nodes.items()} and
            {p: v.shape for p, v in spec.params.items()} ==
            {p: v.shape for p, v in ref.params.items()})


def _biases(spec: CellSpec) -> set[str]:
    """1-D parameters that only ever appear as a summand (what ``bias=False`` removes)."""
    summand: dict[str, int] = {}
    used: dict[str, int] = {}
    for node in spec.nodes.values():
        for e in walk(node.expr):
            if isinstance(e, Ref) and e.kind == "param":
                used[e.name] = used.get(e.name, 0) + 1
            if isinstance(e, Add):
                for _, t in e.terms:
                    if isinstance(t, Ref) and t.kind == "param":
                        summand[t.name] = summand.get(t.name, 0) + 1
    return {p for p in spec.cell_params if len(spec.params[p].shape) == 1
            and summand.get(p, 0) == used.get(p, -1)}


class RNN(nn.Module):
    """A derived cell as a recurrent layer: ``RNN(cell, input_size, hidden_size, num_layers=1,
    bias=True, batch_first=False, dropout=0.0, bidirectional=False)``.

    ``module(input, hx=None, lengths=None)`` takes a (T, B, input_size) tensor (B, T, ... with
    ``batch_first``) or a ``PackedSequence``; ``hx`` is the initial state, a tensor
    (num_layers * num_directions, B, hidden_size) for a one-state cell and a tuple of them in
    the cell's state order otherwise (zeros when None); ``lengths`` (B,) marks a padded batch's
    lengths. Returns ``(output, h_n)``, ``h_n`` being ``(h_n, c_n)`` for a two-state cell
    like the LSTM; a packed input gives a packed output. The cell's readout, if it has one, is
    not part of the layer.

    ``backend`` picks what runs the cell (:func:`derive.torch.function.sequence`): "torch"
    its torch kernels on any device; "numba" (what "auto" is when numba is installed) its
    fused numba loops for plain CPU tensors without lengths, the torch kernels otherwise.
    """

    def __init__(self, cell: str | os.PathLike[str] | Mapping[str, Any] | CellSpec,
                 input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: Any = None, dtype: Any = None, backend: str = "auto") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout}")
        self.spec = spec = resolve(cell)
        self.cell = spec.name
        self.input_size, self.hidden_size = input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        self.backend = backend
        self._seq = sequence(spec, backend)
        K = self._seq.kernel  # type: ignore[attr-defined]
        self.states: tuple[str, ...] = tuple(K.STATE)
        self._names: tuple[str, ...] = tuple(K.PARAMS)
        self._shapes = dict(K.PARAMS)
        self.torch_layout = _same_as_builtin(spec)
        kw = {"device": device, "dtype": dtype}
        self._zero_bias = set() if bias else _biases(spec)
        dirs = 2 if bidirectional else 1
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * dirs
            for d in range(dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for name, shape in self._tensor_shapes(n_in).items():
                    if self.torch_layout and not bias and name.startswith("bias"):
                        continue
                    if not self.torch_layout and name in self._zero_bias:
                        self.register_buffer(name + sfx, torch.zeros(shape, **kw))
                        continue
                    self.register_parameter(name + sfx, nn.Parameter(torch.empty(shape, **kw)))
        self.reset_parameters()

    def _tensor_shapes(self, n_in: int) -> dict[str, tuple[int, ...]]:
        H = self.hidden_size
        if self.torch_layout:
            G = len(_BLOCKS[self.cell]) * H
            return {"weight_ih": (G, n_in), "weight_hh": (G, H), "bias_ih": (G,),
                    "bias_hh": (G,)}
        dims = {"n_hidden": H, "n_in": n_in}
        return {p: tuple(dims[d] for d in shape) for p, shape in self._shapes.items()}

    def reset_parameters(self) -> None:
        """uniform(-1/sqrt(hidden_size), 1/sqrt(hidden_size)), torch's draw."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def extra_repr(self) -> str:
        s = f"{self.cell!r}, {self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # ------------------------------------------------------------------ parameters
    def cell_params(self, layer: int, direction: int = 0) -> dict[str, torch.Tensor]:
        """The cell's parameters (its own names) of one layer and direction, as tensors of the
        module's parameters (differentiable: slices and sums of torch's stacked tensors)."""
        sfx = f"_l{layer}" + ("_reverse" if direction else "")
        H = self.hidden_size
        if not self.torch_layout:
            return {p: getattr(self, p + sfx) for p in self._names}
        out = {}
        for p, parts in _torch_layout(self.cell).items():
            val = None
            for tensor, k in parts:
                if tensor.startswith("bias") and not self.bias:
                    w = getattr(self, "weight_ih" + sfx)
                    v = w.new_zeros(H)
                else:
                    v = getattr(self, tensor + sfx)[k * H:(k + 1) * H]
                val = v if val is None else val + v
            out[p] = val
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False):
        """torch's ``load_state_dict``, also taking NumPy arrays (what
        :func:`derive.tools.interop.to_torch` gives)."""
        ref = self.state_dict()
        sd = {k: (v if isinstance(v, torch.Tensor) else
                  torch.as_tensor(v, dtype=ref[k].dtype if k in ref else None))
              for k, v in state_dict.items()}
        return super().load_state_dict(sd, strict=strict, assign=assign)

    # ------------------------------------------------------------------ forward
    def _check_input(self, x: torch.Tensor, packed: bool) -> None:
        """torch.nn.LSTM's checks, said in its words: a 3-D input (a packed sequence's data:
        2-D) whose last size is input_size, in the parameters' dtype."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a tensor or a PackedSequence, got "
                            f"{type(x).__name__}")
        if x.dim() != (2 if packed else 3):
            raise ValueError(f"input must be 2-D (unbatched: T, input_size) or 3-D "
                             f"({'B, T' if self.batch_first else 'T, B'}, input_size), got "
                             f"{x.dim()}-D of shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {x.shape[-1]}")
        w = next(iter(self.parameters()), None)
        if w is not None and x.dtype != w.dtype:
            raise ValueError(f"input dtype ({x.dtype}) does not match the parameters' dtype "
                             f"({w.dtype}): convert the input (input.to({w.dtype})) or the "
                             f"module (module.to({x.dtype}))")

    def forward(self, input: torch.Tensor | PackedSequence, hx: Any = None,
                lengths: torch.Tensor | None = None):
        packed = isinstance(input, PackedSequence)
        unbatched = not packed and isinstance(input, torch.Tensor) and input.dim() == 2
        if unbatched:  # one sequence (T, input_size), as torch.nn.LSTM takes it
            out, h_n = self.forward(input.unsqueeze(1), _unbatched_hx(hx), lengths)
            return out.squeeze(1), (h_n.squeeze(1) if isinstance(h_n, torch.Tensor)
                                    else tuple(h.squeeze(1) for h in h_n))
        self._check_input(input.data if packed else input, packed)
        if packed:
            sorted_idx, unsorted_idx = input.sorted_indices, input.unsorted_indices
            xs, lengths = pad_packed_sequence(input)
        else:
            xs = input.transpose(0, 1) if self.batch_first else input
        steps, batch = xs.shape[:2]
        mask = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths)
            mask = lengths_mask(lengths, steps).to(xs.device)
        dirs = 2 if self.bidirectional else 1
        S = len(self.states)
        if hx is None:
            init = [xs.new_zeros(self.num_layers * dirs, batch, self.hidden_size)] * S
        else:
            init = [hx] if isinstance(hx, torch.Tensor) else list(hx)
            if len(init) != S:
                raise ValueError(f"hx: the cell {self.cell!r} has {S} states {self.states}")
            want = (self.num_layers * dirs, batch, self.hidden_size)
            for s, h in zip(self.states, init, strict=True):
                if tuple(h.shape) != want:
                    raise ValueError(f"hx: the initial {s} must have shape (num_layers * "
                                     f"num_directions, batch, hidden_size) = {want}, got "
                                     f"{tuple(h.shape)}")
        finals: list[list[torch.Tensor]] = [[] for _ in range(S)]
        layer_in = xs
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                state0 = {s: init[i][k] for i, s in enumerate(self.states)}
                x = layer_in if d == 0 else _reverse(layer_in, lengths)
                hs, final = self._seq(x, state0, self.cell_params(layer, d), mask)
                outs.append(hs if d == 0 else _reverse(hs, lengths))
                for i, s in enumerate(self.states):
                    finals[i].append(final[s])
            layer_in = outs[0] if dirs == 1 else torch.cat(outs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_in = nn.functional.dropout(layer_in, self.dropout, training=True)
        out = layer_in
        h_n = tuple(torch.stack(f) for f in finals)
        if packed:
            data = pack_padded_sequence(out.index_select(1, sorted_idx),
                                        lengths[sorted_idx.cpu()], enforce_sorted=True).data
            out = PackedSequence(data, input.batch_sizes, sorted_idx, unsorted_idx)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_n[0] if S == 1 else h_n)


def _unbatched_hx(hx: Any) -> Any:
    """An unbatched initial state (num_layers * num_directions, hidden_size) with a batch of
    one added."""
    if hx is None:
        return None
    if isinstance(hx, torch.Tensor):
        return hx.unsqueeze(1)
    return tuple(h.unsqueeze(1) for h in hx)


def _reverse(xs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence reversed within its own length (padding stays where it is)."""
    if lengths is None:
        return xs.flip(0)
    steps = xs.shape[0]
    t = torch.arange(steps, device=xs.device)[:, None]
    L = lengths.to(xs.device)[None, :]
    idx = torch.where(t < L, L - 1 - t, t)
    return xs.gather(0, idx[..., None].expand_as(xs))
