"""A training run: a two-layer bidirectional derived LSTM (derive.torch.RNN) beside
torch.nn.LSTM, from the same weights on the same batches, on a small real sequence task.

Task: tell prose from code. 48-character snippets of this repository's own text, English prose
(README.md, bench/README.md) or Python source (derive/**/*.py), one-hot characters; the
classifier reads the last layer's final states of both directions. Same initial weights, same
batches, Adam with gradient-norm clipping (the defaults); the script prints both loss curves,
their largest difference and the held-out accuracy, and plots them (bench/train_bilstm.png).

    python bench/train_bilstm.py [--steps 400] [--dtype float32] [--optimizer adam|sgd]
                                 [--lr 0.003] [--clip 1.0] [--plot bench/train_bilstm.png]

In float32 the two curves part after a few tens of steps: oneDNN's LSTM and the derived kernels
round differently, and training amplifies any difference (Adam most of all, being nearly a sign
step at first). With ``--dtype float64 --optimizer sgd --momentum 0 --lr 0.5 --clip 0`` they
agree to rounding (2e-16 over 150 steps), which tests/test_torch_layer.py also checks.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch

import derive.torch as dt

ROOT = Path(__file__).resolve().parents[1]
T = 48


def snippets(seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    prose = "\n".join((ROOT / p).read_text() for p in ("README.md", "bench/README.md"))
    prose = "\n".join(line for line in prose.splitlines()
                      if line and not line.startswith(("    ", "```", "|", "python", "derive ")))
    code = "\n".join(p.read_text() for p in sorted((ROOT / "derive").rglob("*.py")))
    rnd = random.Random(seed)
    xs, ys = [], []
    for label, text in ((0, prose), (1, code)):
        for _ in range(1200):
            i = rnd.randrange(0, len(text) - T)
            xs.append(text[i:i + T])
            ys.append(label)
    vocab = sorted({c for s in xs for c in s})
    return xs, ys, vocab


class Classifier(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module, hidden: int):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear(2 * hidden, 2, dtype=next(rnn.parameters()).dtype)

    def forward(self, x):
        _, (h, _) = self.rnn(x)
        return self.head(torch.cat([h[-2], h[-1]], dim=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clipping (0: none)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--plot", default=str(ROOT / "bench" / "train_bilstm.png"))
    args = ap.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    texts, labels, vocab = snippets()
    index = {c: i for i, c in enumerate(vocab)}
    X = torch.zeros(len(texts), T, len(vocab), dtype=dtype)
    for n, s in enumerate(texts):
        X[n, torch.arange(T), torch.tensor([index[c] for c in s])] = 1.0
    Y = torch.tensor(labels)
    perm = torch.randperm(len(texts), generator=torch.Generator().manual_seed(0))
    test, train = perm[:400], perm[400:]
    torch.manual_seed(0)
    ref = Classifier(torch.nn.LSTM(len(vocab), args.hidden, num_layers=2, bidirectional=True,
                                   batch_first=True, dtype=dtype), args.hidden)
    ours = Classifier(dt.RNN("lstm", len(vocab), args.hidden, num_layers=2, bidirectional=True,
                             batch_first=True, dtype=dtype), args.hidden)
    ours.load_state_dict(ref.state_dict())
    rng = np.random.default_rng(0)
    batches = [torch.as_tensor(rng.choice(train.numpy(), args.batch, replace=False))
               for _ in range(args.steps)]
    curves, seconds, acc = {}, {}, {}
    for name, model in (("torch.nn.LSTM", ref), ("derive.torch.RNN('lstm')", ours)):
        opt = (torch.optim.Adam(model.parameters(), lr=args.lr) if args.optimizer == "adam"
               else torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum))
        losses = []
        t0 = time.perf_counter()
        for b in batches:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X[b]), Y[b])
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            losses.append(loss.item())
        seconds[name] = time.perf_counter() - t0
        curves[name] = np.array(losses)
        with torch.no_grad():
            acc[name] = (model(X[test]).argmax(1) == Y[test]).double().mean().item()
    a, b = curves.values()
    print(f"task: prose vs code, {len(texts)} snippets of {T} characters, vocabulary "
          f"{len(vocab)}; 2 layers, bidirectional, hidden {args.hidden}, batch {args.batch}, "
          f"{args.optimizer} lr {args.lr}, {args.steps} steps, {args.dtype}")
    for name in curves:
        c = curves[name]
        print(f"{name:26s} loss {c[0]:.4f} -> {c[-10:].mean():.4f} (mean of last 10), "
              f"test accuracy {acc[name]:.3f}, {seconds[name]:.1f} s")
    print(f"largest |loss difference| over the run: {np.abs(a - b).max():.3e}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        k = 20  # running mean over k steps, drawn over the raw per-batch losses
        for (name, c), style, color in zip(curves.items(), ("-", "--"), ("C0", "C1"),
                                           strict=True):
            ax.plot(c, style, color=color, lw=0.6, alpha=0.35)
            ax.plot(np.arange(k - 1, len(c)), np.convolve(c, np.ones(k) / k, mode="valid"),
                    style, color=color, lw=1.6, label=f"{name} (mean of {k})")
        ax.set_xlabel(f"training step (batch of {args.batch})")
        ax.set_ylabel("cross-entropy")
        ax.set_title("2-layer bidirectional LSTM: prose vs code")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
