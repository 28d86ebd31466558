"""Part 1 training speed: the notebook's encoder in fp32 and bf16 against PyTorch's
nn.TransformerEncoderLayer and the template's fixed-length batches, on the same real IMDb reviews.

    .venv/bin/python bench/bench_imdb_encoder.py [--batches 40] [--compile] [--imdb-dir ../shared/data/imdb]

Models with the template's hyperparameters (embed 96, 4 heads, 3 layers, max length 256, batch 64,
AdamW lr 1e-3, weight decay 1e-3, clipping at 10, dropout 0.1), one training step each per batch:
- notebook:  the notebook's SentimentTransformer on its length-grouped, trimmed batches, in fp32 and, where
             the CPU has native bf16 units, under torch.autocast(bfloat16) as the notebook trains there;
- torch:     the same embedding, positional encoding and head around nn.TransformerEncoderLayer
             (norm_first, GELU; attention dropout 0 like Figure 2), fed the *same* batches, same precisions;
- template batches: the notebook's model on the template's fixed-length batches (every review padded to
             256), fp32: what the template's loop computes;
- with --compile: torch.compile of the notebook's model (dynamic shapes), fp32 and bf16; its compile time
             is printed separately and left out of the step times.
The same `--batches` training steps are drawn from one epoch's batches at evenly spaced quantiles of their
length (so the length mix is the epoch's), and each time is scaled to the epoch's 391 steps. A warm-up step
per model is not timed. Ratios are printed against the notebook in fp32.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from machine import print_machine_header  # noqa: E402
from support.runtime import cpu_has_fast_bf16  # noqa: E402
from tools.notebook import load_definitions  # noqa: E402


class TorchLayerModel(nn.Module):
    """The notebook's model with its blocks replaced by nn.TransformerEncoderLayer."""

    def __init__(self, nb, vocab_size, max_len, dim, heads, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.positional_encoding = nb.PositionalEncoding(dim, max_len)
        self.encoders = nn.ModuleList()
        for _ in range(layers):
            layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.1, activation="gelu",
                                               batch_first=True, norm_first=True)
            layer.self_attn.dropout = 0.0  # Figure 2 has no dropout on the attention weights
            self.encoders.append(layer)
        self.fc = nn.Linear(dim, 1)

    def forward(self, x, mask=None):
        x = self.positional_encoding(self.embedding(x))
        for layer in self.encoders:
            x = layer(x, src_key_padding_mask=mask)
        return torch.sigmoid(self.fc(x[:, 0])).squeeze(-1)


def time_steps(model, batches, nb, bf16=False):
    """Seconds for one training step per batch (after one untimed warm-up step), and the warm-up's."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    model.train()

    def step(sequences, labels):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = model(sequences, mask=nb.create_mask(sequences, 0)).float()
        loss = F.binary_cross_entropy(outputs, labels.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    start = time.perf_counter()
    step(*batches[0])  # warm-up (and compilation, for a compiled model)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for sequences, labels in batches:
        step(sequences, labels)
    return time.perf_counter() - start, warm_up


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the notebook's model")
    parser.add_argument("--imdb-dir", default=os.environ.get("INF265_IMDB_DIR", os.path.join(ROOT, "..", "shared",
                                                                                              "data", "imdb")))
    args = parser.parse_args()
    native_bf16 = cpu_has_fast_bf16()
    print_machine_header("fp32" + (", and bf16 autocast (native bf16 units)" if native_bf16 else
                                   " only (no native bf16 units: bf16 rows skipped)"))
    nb = load_definitions()
    torch.manual_seed(nb.SEED)

    train, _, source = nb.load_imdb(args.imdb_dir)
    texts = [nb.preprocess_text(t) for t in train["text"]]
    tokenizer = nb.train_word_tokenizer(texts)
    dataset = nb.IMDBDataset(texts, train["label"], tokenizer, 256, 0, 2)
    loader = nb.make_loader(dataset, 64, shuffle=True, generator=torch.Generator().manual_seed(nb.SEED))
    epoch = sorted(loader.batch_sampler, key=lambda b: dataset.lengths[b].max())
    chosen = [epoch[i] for i in np.linspace(0, len(epoch) - 1, args.batches).round().astype(int)]  # length quantiles
    trimmed = [nb.trim_padding([dataset[i] for i in b], 0) for b in chosen]
    fixed = [(torch.stack([dataset[i][0] for i in b]), torch.tensor([dataset[i][1] for i in b])) for b in chosen]
    print(f"{source}: {len(epoch)} batches per epoch; timing {len(chosen)} of them "
          f"(mean trimmed length {np.mean([s.shape[1] for s, _ in trimmed]):.0f}, fixed 256)")

    vocab = tokenizer.get_vocab_size()
    precisions = [False, True] if native_bf16 else [False]
    runs = []  # (name, make the model, batches, bf16, compile)
    for bf16 in precisions:
        tag = "bf16" if bf16 else "fp32"
        runs.append((f"notebook, {tag}", lambda: nb.make_model(vocab), trimmed, bf16, False))
        runs.append((f"nn.TransformerEncoderLayer, same batches, {tag}",
                     lambda: TorchLayerModel(nb, vocab, 256, 96, 4, 3), trimmed, bf16, False))
    runs.append(("notebook, template's fixed 256-token batches, fp32", lambda: nb.make_model(vocab), fixed, False, False))
    if args.compile:
        runs += [(f"notebook, torch.compile, {'bf16' if b else 'fp32'}", lambda: nb.make_model(vocab), trimmed, b, True)
                 for b in precisions]
    scale = len(epoch) / len(chosen)
    times = {}
    for name, make, batches, bf16, compiled in runs:
        torch.manual_seed(nb.SEED)
        model = make()
        if compiled:
            torch._dynamo.reset()
            model = torch.compile(model, dynamic=True)
        seconds, warm_up = time_steps(model, batches, nb, bf16)
        times[name] = seconds * scale
        if compiled:
            print(f"  ({name}: first step, compilation included, {warm_up:.0f} s)")
    ours = times[runs[0][0]]
    print(f"{'model':55s} {'s/epoch':>8s} {'time vs notebook fp32':>22s}")
    for name, seconds in times.items():
        print(f"{name:55s} {seconds:8.0f} {seconds / ours:21.2f}x")


if __name__ == "__main__":
    main()
