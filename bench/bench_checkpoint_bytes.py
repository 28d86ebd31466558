"""Bytes a training run writes to its checkpoint folder (Google Drive on Colab), per save and per epoch.

    .venv/bin/python bench/bench_checkpoint_bytes.py                    # the default 36M model
    .venv/bin/python bench/bench_checkpoint_bytes.py --preset tiny --epoch_minutes 5

Measured: train.py's own loop runs a few steps of the preset's model on this CPU and saves after
every --save_every steps; every byte its saves write is counted (each save writes model.pth,
optimizer.pth and model.json in full, to temporary files renamed into place). Beside it, the
course template's save of the same model and optimizer: torch.save of the model's state_dict and
of the optimizer's.

Per epoch, from the schedules: the template saves every 500 batches (13 saves in an epoch of the
course's 6,717 batches); train.py saves every --checkpoint_minutes of training and at the epoch
end, so an epoch of --epoch_minutes (the course says about 30 on a T4; not measured here) has
ceil(epoch_minutes / checkpoint_minutes) saves. On a mounted Google Drive a replaced file is
reported to stay in Drive's trash for 30 days, counting against the quota: the Drive space a run
needs is about what it writes, not what it keeps.
"""

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import make_config  # noqa: E402
from machine import print_machine_header  # noqa: E402
from model import TransformerModel  # noqa: E402
from support import checkpoint, corpus  # noqa: E402
from tokenizer import fit_tokenizer  # noqa: E402
from train import train_model  # noqa: E402

COURSE_BATCHES_PER_EPOCH = 6_717  # 859,765 GooAQ pairs in batches of 128
TEMPLATE_SAVE_EVERY = 500  # batches


def write_pairs(path, rows):
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def counted_saves(cfg):
    """Run train_model(cfg); return the bytes each save wrote (one list entry per save)."""
    saves, real_write = [], checkpoint.write_temporary

    def write_temporary(path, write):
        tmp = real_write(path, write)
        if path == cfg.optimizer_filename:  # the first file of a save
            saves.append(0)
        saves[-1] += os.path.getsize(tmp)
        return tmp

    checkpoint.write_temporary = write_temporary
    try:
        train_model(cfg)
    finally:
        checkpoint.write_temporary = real_write
    return saves


def template_save_bytes(cfg, folder):
    """What the template's save writes: the model's and the optimizer's state_dicts, after a step."""
    model = TransformerModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model(torch.randint(4, 100, (2, 8))).sum().backward()
    optimizer.step()
    paths = [os.path.join(folder, "template_model.pth"), os.path.join(folder, "template_optimizer.pth")]
    torch.save(model.state_dict(), paths[0])
    torch.save(optimizer.state_dict(), paths[1])
    return sum(os.path.getsize(p) for p in paths)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default", choices=["default", "tiny", "small", "demo"])
    parser.add_argument("--steps", type=int, default=4, help="training steps to run")
    parser.add_argument("--save_every", type=int, default=2, help="steps between the measured saves")
    parser.add_argument("--epoch_minutes", type=float, default=30.0,
                        help="minutes per epoch for the per-epoch figure (the course's T4 figure)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of a whole run (the template's 5)")
    args = parser.parse_args()
    print_machine_header("fp32 (the weights and AdamW's moments are saved in fp32 in every precision)")

    pairs = corpus.generate("train")[:400]
    with tempfile.TemporaryDirectory() as folder:
        files = {key: os.path.join(folder, name) for key, name in (
            ("tokenizer_filename", "tokenizer.json"), ("model_filename", "model.pth"),
            ("optimizer_filename", "optimizer.pth"), ("log_filename", "log.csv"), ("plot_filename", "loss.png"))}
        cfg = make_config(args.preset, device="cpu", precision="fp32", compile="off",
                          dataset=write_pairs(os.path.join(folder, "pairs.jsonl"), pairs),
                          model_train_fraction=1.0, batch_size=8, dataloader_num_workers=0, num_epochs=1,
                          max_steps=args.steps, checkpoint_every=args.save_every, checkpoint_minutes=0.0,
                          eval_every=0, val_fraction=0.05, min_frequency=1, **files)
        fit_tokenizer(cfg, [p["question"] + " " + p["answer"] for p in pairs]).save(cfg.tokenizer_filename)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # train.py's own log
            saves = counted_saves(cfg)
        ours = max(saves)
        template = template_save_bytes(cfg, folder)
    mb = 1e6
    minutes = make_config(args.preset).checkpoint_minutes
    ours_per_epoch = math.ceil(args.epoch_minutes / minutes)
    template_per_epoch = COURSE_BATCHES_PER_EPOCH // TEMPLATE_SAVE_EVERY
    print(f"{args.preset} model, {sum(p.numel() for p in TransformerModel(cfg).parameters()):,} parameters; "
          f"{len(saves)} saves measured in train.py's loop: {', '.join(f'{b / mb:,.1f}' for b in saves)} MB")
    print(f"{'':14s} {'MB per save':>12s} {'saves per epoch':>16s} {'GB per epoch':>13s} "
          f"{f'GB per {args.epochs} epochs':>16s}")
    rows = (("template", template, template_per_epoch, f"every {TEMPLATE_SAVE_EVERY} batches"),
            ("this project", ours, ours_per_epoch, f"every {minutes:g} min + epoch end"))
    for name, size, per_epoch, how in rows:
        print(f"{name:14s} {size / mb:12,.1f} {per_epoch:16d} {size * per_epoch / 1e9:13.2f} "
              f"{size * per_epoch * args.epochs / 1e9:16.2f}   ({how})")
    print(f"this project writes {ours * ours_per_epoch / (template * template_per_epoch):.2f}x the template's "
          f"bytes per epoch of {args.epoch_minutes:g} minutes; {ours / template:.3f}x per save")


if __name__ == "__main__":
    main()
