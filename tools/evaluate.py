"""Score a trained model on any question-answer file: cross-entropy per answer token, perplexity.

    python -m tools.evaluate --preset demo --split heldout        # demo model, built-in held-out split
    python -m tools.evaluate --preset demo                        # ... on its training split
    python -m tools.evaluate --dataset path/to/pairs.jsonl.gz     # the default model on your own file
    python -m tools.evaluate --preset small --dataset ../shared/data/qa/eval.jsonl.gz --model_train_fraction 1

--dataset takes what train.py takes (a local .jsonl/.jsonl.gz/.csv/.json file or folder of
question/answer pairs, a Hugging Face name, or 'builtin'), --model_filename and
--tokenizer_filename the run to score. Prints two numbers:

  answer tokens   mean cross-entropy of the answer tokens and [END], given the question: how
                  well the model answers; compare models with this one
  all tokens      the same over every target token, question included: what train.py reports
                  as validation loss

and exp() of each, the perplexity. Pairs are scored in batches of similar length (a progress bar
shows them), in fp32, with --batch_size pairs per batch.
"""

import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from config import Config, parse_cli
from dataset import IGNORE_INDEX, QADataset
from inference import load_trained_run
from support.data_sources import load_qa_pairs
from utils import run_main


@torch.no_grad()
def score(model, dataset, sep_id, batch_size, device, progress=True):
    """{"answer": (summed loss, tokens), "all": (summed loss, tokens)} over the whole dataset.

    A target is an answer token when its source position is at or after the first [SEP]: the
    position of [SEP] predicts the first answer token.
    """
    model.eval()
    order = np.argsort(dataset.lengths, kind="stable")  # similar lengths together: less padding
    sums = {"answer": [0.0, 0], "all": [0.0, 0]}
    for start in tqdm(range(0, len(order), batch_size), desc="Scoring", unit="batch", disable=not progress):
        batch = dataset.collate(order[start:start + batch_size])
        source, target, padding_mask = (t.to(device) for t in batch.values())
        logits = model(source, padding_mask=padding_mask).float()  # (B, T, vocab)
        losses = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX,
                                 reduction="none")  # (B, T), 0 where ignored
        real = target != IGNORE_INDEX  # (B, T)
        sep_at = (source == sep_id).int().argmax(dim=1, keepdim=True)  # (B, 1)
        answer = real & (torch.arange(source.size(1), device=device) >= sep_at)  # (B, T)
        for name, mask in (("answer", answer), ("all", real)):
            sums[name][0] += losses[mask].sum().item()
            sums[name][1] += int(mask.sum())
    return {name: tuple(value) for name, value in sums.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config, _ = parse_cli(parser=parser)
    model, tokenizer, info, ids = load_trained_run(config)
    device = next(model.parameters()).device
    for note in info["notes"]:
        print(note)
    # Every pair is scored, and cut at the model's own max_len whatever the preset says.
    model_config = Config(**{**vars(config), **info["model_shape"], "model_train_fraction": 1.0})
    pairs = load_qa_pairs(config.dataset, config.split)
    dataset = QADataset(model_config, tokenizer, pairs=pairs)
    sums = score(model, dataset, ids["sep"], config.batch_size, device)
    print(f"Model {config.model_filename} on {pairs.description} ({len(dataset):,} pairs):")
    for name, label in (("answer", "answer tokens"), ("all", "all tokens")):
        total, count = sums[name]
        mean = total / max(count, 1)
        print(f"  {label:13s} {count:>10,} tokens  cross-entropy {mean:.4f}  "
              f"perplexity {math.exp(min(mean, 50)):,.2f}")


if __name__ == "__main__":
    run_main(main)
