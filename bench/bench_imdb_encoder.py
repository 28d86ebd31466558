"""Part 1 training speed: the notebook's encoder against PyTorch's nn.TransformerEncoderLayer and a
straightforward implementation, on the same batches of real IMDb reviews.

    .venv/bin/python bench/bench_imdb_encoder.py [--batches 40] [--imdb-dir ../shared/data/imdb]

Three models with the template's hyperparameters (embed 96, 4 heads, 3 layers, max length 256, batch 64,
AdamW lr 1e-3, weight decay 1e-3, clipping at 10, dropout 0.1):
- notebook:   the notebook's SentimentTransformer, fed the notebook's length-grouped, trimmed batches;
- torch:      the same embedding, positional encoding and head around nn.TransformerEncoderLayer
              (norm_first, GELU; attention dropout 0 like ours), fed the *same* batches;
- straightforward: a textbook from-scratch encoder (separate projections, masked_fill, softmax, nn.Dropout,
              every block over every position) fed the template's fixed-length batches (every review padded
              to 256), i.e. what the template's loop computes.
The same `--batches` training steps are drawn from one epoch's batches at evenly spaced quantiles of their
length (so the length mix is the epoch's), and each model's time is scaled to the epoch's 391 steps. Last, nn.Dropout
against the notebook's FastDropout on one MLP-sized tensor. A warm-up step per
model is not timed. Ratios are printed against the notebook's time; the notebook's own measured epoch time
is in its output.
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from imdb_notebook import load_definitions  # noqa: E402
from machine import print_machine_header  # noqa: E402


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


class PlainAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = (proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(mask[:, None, None, :], float("-inf"))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(out)


class PlainBlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention, self.dropout = PlainAttention(dim, heads), nn.Dropout(0.1)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.1), nn.Linear(4 * dim, dim),
                                 nn.Dropout(0.1))

    def forward(self, x, mask):
        x = x + self.dropout(self.attention(self.norm1(x), mask))
        return x + self.mlp(self.norm2(x))


class PlainModel(TorchLayerModel):
    def __init__(self, nb, vocab_size, max_len, dim, heads, layers):
        super().__init__(nb, vocab_size, max_len, dim, heads, 0)
        self.encoders = nn.ModuleList([PlainBlock(dim, heads) for _ in range(layers)])

    def forward(self, x, mask=None):
        x = self.positional_encoding(self.embedding(x))
        for block in self.encoders:
            x = block(x, mask)
        return torch.sigmoid(self.fc(x[:, 0])).squeeze(-1)


def time_steps(model, batches, nb):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3)
    model.train()

    def step(sequences, labels):
        outputs = model(sequences, mask=nb.create_mask(sequences, 0))
        loss = F.binary_cross_entropy(outputs, labels.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()

    step(*batches[0])  # warm-up
    start = time.perf_counter()
    for sequences, labels in batches:
        step(sequences, labels)
    return time.perf_counter() - start


def time_dropout(nb, repeats=10):
    """Seconds per forward+backward of nn.Dropout and the notebook's FastDropout on an MLP-sized tensor."""
    x = torch.randn(64, 192, 384, requires_grad=True)  # (B, T, 4d) at a typical batch length
    grad = torch.randn_like(x)
    result = {}
    for name, module in (("nn.Dropout", nn.Dropout(0.1)), ("FastDropout", nb.FastDropout(0.1))):
        module.train()
        module(x).backward(grad)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            module(x).backward(grad)
        result[name] = (time.perf_counter() - start) / repeats
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--imdb-dir", default=os.environ.get("INF265_IMDB_DIR", os.path.join(ROOT, "..", "shared",
                                                                                              "data", "imdb")))
    args = parser.parse_args()
    print_machine_header("fp32")
    nb = load_definitions()
    nb.cpu_speed_settings()  # as the notebook does; process-wide, so every model below gets them
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
    scale = len(epoch) / len(chosen)
    runs = [
        ("notebook (length-grouped batches)", nb.make_model(vocab), trimmed),
        ("nn.TransformerEncoderLayer, same batches", TorchLayerModel(nb, vocab, 256, 96, 4, 3), trimmed),
        ("straightforward, fixed length 256", PlainModel(nb, vocab, 256, 96, 4, 3), fixed),
    ]
    times = {}
    for name, model, batches in runs:
        times[name] = time_steps(model, batches, nb) * scale
    ours = times[runs[0][0]]
    print(f"{'model':45s} {'s/epoch':>8s} {'vs notebook':>12s}")
    for name, seconds in times.items():
        print(f"{name:45s} {seconds:8.0f} {seconds / ours:11.2f}x")
    dropout = time_dropout(nb)
    print(f"dropout on a (64, 192, 384) tensor, forward + backward: nn.Dropout {dropout['nn.Dropout'] * 1e3:.1f} ms, "
          f"FastDropout {dropout['FastDropout'] * 1e3:.1f} ms ({dropout['nn.Dropout'] / dropout['FastDropout']:.2f}x)")


if __name__ == "__main__":
    main()
