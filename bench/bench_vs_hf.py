"""Validation loss per minute of CPU time: this project's model against Hugging Face GPT-2.

    make bench-deps && .venv/bin/python bench/bench_vs_hf.py [--minutes 5] [--preset small]

Both models have the preset's size (embed, heads, layers, vocabulary, max_len) and train in turn
on the same batches, in the same order, with the same optimizer, schedule and precision
(train.train_step; support.runtime.choose_precision), for the same wall-clock minutes each on this CPU:

  this project   TransformerModel, the step train.py runs (output layer fused with the loss in fp32 and bf16)
  HF GPT-2       transformers.GPT2LMHeadModel (pre-norm, learned positions, tied output layer)

Every minute (evaluation time not counted) both are scored on the same validation pairs (the
seeded split train.py uses) with train.evaluate. Data: the stand-in corpus's train file
(../shared/data/qa/train.jsonl.gz; never the eval file), or --dataset.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench_train import HFGPT2  # noqa: E402
from config import make_config  # noqa: E402
from dataset import QADataset, epoch_batches, split_indices  # noqa: E402
from machine import print_machine_header  # noqa: E402
from model import TransformerModel  # noqa: E402
from support.checkpoint import Progress, TrainingState  # noqa: E402
from support.data_sources import load_qa_pairs  # noqa: E402
from support.runtime import Runtime  # noqa: E402
from tokenizer import fit_tokenizer, load_tokenizer  # noqa: E402
from train import evaluate, train_step, training_net  # noqa: E402
from utils import get_num_params  # noqa: E402

REAL_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "qa", "train.jsonl.gz")


def train_for(name, model, net, output_layer, cfg, runtime, dataset, batches, val_indices, minutes):
    """Train `model` on `batches` for `minutes` of step time; returns [(minute, steps, val loss)]."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup_steps))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision.grad_scaler)
    state = TrainingState(model, optimizer, scheduler, scaler, Progress(), {}, "bench")
    model.train()
    rows, spent, steps = [], 0.0, 0
    for minute in range(1, minutes + 1):
        while spent < 60 * minute:
            start = time.perf_counter()
            train_step(net, dataset.collate(batches[steps % len(batches)], cfg.pad_multiple), state,
                       output_layer, cfg, runtime)
            scheduler.step()
            spent += time.perf_counter() - start
            steps += 1
        rows.append((minute, steps, evaluate(model, dataset, val_indices, cfg, runtime)))
        print(f"  {name}: {minute} min, {steps} steps, validation loss {rows[-1][2]:.4f}", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=REAL_CORPUS if os.path.exists(REAL_CORPUS) else "builtin")
    parser.add_argument("--preset", default="small", choices=["small", "tiny", "demo", "default"])
    parser.add_argument("--minutes", type=int, default=5, help="CPU minutes of training for each model")
    args = parser.parse_args()
    cfg = make_config(args.preset, device="cpu", dataset=args.dataset, model_train_fraction=1.0,
                      warmup_steps=100, dropout_p=0.0)
    runtime = Runtime(cfg)
    print_machine_header(f"{runtime.precision.name} for both ({runtime.precision.reason})")

    pairs = load_qa_pairs(cfg.dataset, "train")
    if os.path.isfile(cfg.tokenizer_filename):
        tokenizer = load_tokenizer(cfg)
    else:
        tokenizer = fit_tokenizer(cfg, (q + " " + a for q, a in zip(pairs.questions, pairs.answers)))
    dataset = QADataset(cfg, tokenizer, pairs=pairs)
    train_indices, val_indices = split_indices(len(dataset), 0.02, cfg.seed)
    batches = epoch_batches(train_indices, dataset.lengths, cfg.batch_size, cfg.seed, 0, True)

    torch.manual_seed(cfg.seed)
    ours = TransformerModel(cfg)
    torch.manual_seed(cfg.seed)
    hf = HFGPT2(cfg)
    print(f"{args.preset}: embed {cfg.embed_size}, {cfg.num_heads} heads, {cfg.num_layers} layers, vocab "
          f"{cfg.vocab_size}, max_len {cfg.max_len}, batch {cfg.batch_size}, lr {cfg.lr}; this project "
          f"{get_num_params(ours):,} parameters, HF GPT-2 {get_num_params(hf):,}; {len(train_indices):,} "
          f"training and {len(val_indices):,} validation pairs of {pairs.description}; "
          f"{args.minutes} min each")
    net, output_layer = training_net(ours, runtime)
    results = {"this project": train_for("this project", ours, net, output_layer, cfg, runtime, dataset,
                                         batches, val_indices, args.minutes),
               "HF GPT-2": train_for("HF GPT-2", hf, hf, None, cfg, runtime, dataset, batches, val_indices,
                                     args.minutes)}
    print(f"{'minute':>6s} {'this project: steps, val loss':>30s} {'HF GPT-2: steps, val loss':>27s}")
    for (minute, s1, l1), (_, s2, l2) in zip(results["this project"], results["HF GPT-2"]):
        print(f"{minute:6d} {s1:18d} {l1:11.4f} {s2:15d} {l2:11.4f}")
    final = {name: rows[-1][2] for name, rows in results.items()}
    print(f"after {args.minutes} min: this project {final['this project']:.4f}, HF GPT-2 "
          f"{final['HF GPT-2']:.4f} ({'this project lower' if final['this project'] <= final['HF GPT-2'] else 'HF lower'}"
          f" by {abs(final['this project'] - final['HF GPT-2']):.4f} nats; "
          f"perplexity {np.exp(final['this project']):.1f} vs {np.exp(final['HF GPT-2']):.1f})")


if __name__ == "__main__":
    main()
