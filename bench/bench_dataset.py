"""How much tokenizing once (batch encoding at construction) saves over encoding in __getitem__.

    .venv/bin/python bench/bench_dataset.py                 # real stand-in corpus if present
    .venv/bin/python bench/bench_dataset.py --dataset builtin --epochs 3

Reference: the straightforward QADataset most template solutions write, which calls
tokenizer.encode on the question and answer strings every time an item is read. Both produce
identical tensors (checked here); the script prints the time per epoch of item reads and the
ratio, measured in one run.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import make_config  # noqa: E402
from dataset import IGNORE_INDEX, QADataset  # noqa: E402
from machine import print_machine_header  # noqa: E402
from support import corpus  # noqa: E402
from support.data_sources import load_qa_pairs  # noqa: E402
from tokenizer import fit_tokenizer  # noqa: E402

REAL_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "qa", "train.jsonl.gz")


class StraightforwardQADataset(torch.utils.data.Dataset):
    """Encodes strings on every read, as the template's TODO invites."""

    def __init__(self, questions, answers, tokenizer, max_len, sep_id, end_id, pad_id):
        self.questions, self.answers, self.tokenizer = questions, answers, tokenizer
        self.max_len, self.sep_id, self.end_id, self.pad_id = max_len, sep_id, end_id, pad_id

    def __len__(self):
        return len(self.questions)

    def __getitem__(self, idx):
        q = self.tokenizer.encode(self.questions[idx]).ids
        a = self.tokenizer.encode(self.answers[idx]).ids
        seq = q + [self.sep_id] + a + [self.end_id]
        if len(seq) > self.max_len + 1:
            seq = seq[: self.max_len] + [self.end_id]
        seq = seq + [self.pad_id] * (self.max_len + 1 - len(seq))
        source, target = torch.tensor(seq[:-1]), torch.tensor(seq[1:])
        target[target == self.pad_id] = IGNORE_INDEX
        return {"source_sequence": source, "target_sequence": target,
                "key_padding_mask": source == self.pad_id}


def read_all(dataset):
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default=REAL_CORPUS if os.path.exists(REAL_CORPUS) else "builtin")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    print_machine_header("none: tokenization and item reads, no model arithmetic")

    cfg = make_config(device="cpu", dataset=args.dataset)
    pairs = load_qa_pairs(cfg.dataset, cfg.split)
    tokenizer = fit_tokenizer(cfg, (q + " " + a for q, a in zip(pairs.questions, pairs.answers)))
    print(f"data: {pairs.description}, {len(pairs):,} pairs, max_len {cfg.max_len}, "
          f"vocab {tokenizer.get_vocab_size():,}")

    start = time.perf_counter()
    ours = QADataset(cfg, tokenizer, pairs=pairs)
    build = time.perf_counter() - start
    reference = StraightforwardQADataset(pairs.questions, pairs.answers, tokenizer, cfg.max_len,
                                         ours.sep_id, ours.end_id, ours.pad_id)

    # Same tensors wherever the sequence fits (the reference drops the question's tail rule).
    for i in np.random.default_rng(0).choice(len(ours), size=min(500, len(ours)), replace=False):
        if ours.lengths[i] <= cfg.max_len:
            for a, b in zip(ours[int(i)].values(), reference[int(i)].values()):
                assert torch.equal(a, b), i

    ours_epoch = min(read_all(ours) for _ in range(args.epochs))
    reference_epoch = min(read_all(reference) for _ in range(args.epochs))
    print(f"build once (batch encoding):       {build:8.2f} s")
    print(f"one epoch of reads, this project:  {ours_epoch:8.2f} s")
    print(f"one epoch of reads, encode per item: {reference_epoch:6.2f} s")
    print(f"ratio per epoch (reference / ours): {reference_epoch / ours_epoch:.1f}x")
    print(f"ratio over {args.epochs} epochs incl. build: "
          f"{args.epochs * reference_epoch / (build + args.epochs * ours_epoch):.1f}x")

    # The built-in corpus is generated whenever the demo, tests or `--dataset builtin` need it;
    # it should take about a second (this was once a pass/fail test; timings belong here).
    start = time.perf_counter()
    corpus.generate("train", seed=5)
    corpus.generate("heldout", seed=5)
    print(f"generating the built-in corpus (train + held-out): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
