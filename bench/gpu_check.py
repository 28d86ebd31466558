"""The GPU check: train.py's recipe against the course template's on a CUDA GPU (a Colab T4).

    .venv/bin/python bench/gpu_check.py                          # default 36M model, on CUDA: auto, then fp16
    .venv/bin/python bench/gpu_check.py --dataset pairs.jsonl.gz --steps 50
    .venv/bin/python bench/gpu_check.py --device cpu --preset tiny --steps 3 --train_steps 20 --compile off
                                                                 # the same code on a CPU (tests run this)

On real question-answer batches (the stand-in corpus ../shared/data/qa/train.jsonl.gz when it is
there, else --dataset), with the default model, it measures:

  template recipe   every batch padded to max_len 128, torch.compile, fp16 autocast with a
                    gradient scaler, F.cross_entropy(logits.transpose(1, 2), target)
  this project      train.py's step: length-grouped batches padded to their longest, the same
                    compile and precision, the loss over real target tokens

and prints, for each: seconds per step, useful (real target) tokens/s, peak GPU memory, and the
projected minutes per epoch of the course's 859,765 GooAQ pairs (steps per epoch x the mean
step time; this project's mean is over batches drawn with the length distribution of the data
used). Then it checks the training loop itself: --train_steps fp16 steps lower the loss, the
training state saves, and a fresh state resumed from it continues from the same step and scale.
By default all of it runs twice: in the precision train.py's --precision auto picks on this GPU
(bf16 from compute capability 8.0, fp16 below), then in fp16 with a gradient scaler, the T4's path,
whatever the GPU. docs/MEASURED.md quotes only what a run printed.
"""

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import Config, make_config  # noqa: E402
from dataset import IGNORE_INDEX, QADataset, epoch_batches  # noqa: E402
from machine import print_machine_header  # noqa: E402
from model import TransformerModel  # noqa: E402
from support.checkpoint import Progress, TrainingState  # noqa: E402
from support.data_sources import load_qa_pairs  # noqa: E402
from support.runtime import Runtime  # noqa: E402
from tokenizer import fit_tokenizer  # noqa: E402
from train import train_step, training_net  # noqa: E402

COURSE_PAIRS = 859_765  # odinhg/gooaq-subset, train split
REAL_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "qa", "train.jsonl.gz")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")


def timed_steps(step, batches, warmup, device):
    """Mean seconds per step over batches[warmup:], and the useful tokens/s, after `warmup` steps."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            synchronize(device)
            tokens, start = 0, time.perf_counter()
        step(batch)
        tokens += int((batch["target_sequence"] != IGNORE_INDEX).sum())
    synchronize(device)
    elapsed = time.perf_counter() - start
    return elapsed / (len(batches) - warmup), tokens / elapsed


def template_recipe(cfg, runtime, dataset, indices, n):
    """The template's step on batches padded to max_len: returns a step function and the batches."""
    model = TransformerModel(cfg).to(runtime.device).train()
    compiled = torch.compile(model) if runtime.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision.grad_scaler)
    rng = np.random.default_rng(cfg.seed)
    batches = [dataset.collate(rng.choice(indices, cfg.batch_size, replace=False), width=cfg.max_len)
               for _ in range(n)]

    def step(batch):
        source, target, mask = (t.to(runtime.device, non_blocking=True) for t in batch.values())
        with torch.autocast(runtime.device.type, dtype=runtime.precision.dtype, enabled=runtime.precision.autocast):
            logits = compiled(source, padding_mask=mask)
            loss = F.cross_entropy(logits.transpose(1, 2), target)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step, batches


def project_recipe(cfg, runtime, dataset, indices, n, state=None):
    """train.py's step on length-grouped batches: returns (step function, batches, state)."""
    if state is None:
        model = TransformerModel(cfg).to(runtime.device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision.grad_scaler)
        state = TrainingState(model, optimizer, scheduler, scaler, Progress(), {}, "gpu_check")
    net, output_layer = training_net(state.model, runtime)
    batches = epoch_batches(indices, dataset.lengths, cfg.batch_size, cfg.seed, 0, True)
    # batches drawn at random from the epoch: their lengths follow the data's distribution
    picked = np.random.default_rng(cfg.seed).permutation(len(batches))[:n]
    collated = [dataset.collate(batches[i], cfg.pad_multiple) for i in picked]
    losses = []

    def step(batch):
        loss, tokens = train_step(net, batch, state, output_layer, cfg, runtime)
        state.scheduler.step()
        state.progress.advance(loss, tokens)
        losses.append(loss)

    step.losses = losses
    return step, collated, state


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=REAL_CORPUS if os.path.exists(REAL_CORPUS) else "builtin")
    parser.add_argument("--preset", default="default", choices=["default", "tiny", "demo"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="auto,fp16",
                        help="comma-separated precisions to check, one after the other (default: what "
                             "train.py's auto picks here, then fp16 as on a T4, whatever the GPU)")
    parser.add_argument("--compile", default="on", choices=["on", "off"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per recipe")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    parser.add_argument("--train_steps", type=int, default=200, help="steps that must lower the loss")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here: this check is for a GPU (use --device cpu to try the code on a CPU)")
    print_machine_header()
    for precision in args.precision.split(","):
        print()
        check(args, precision)


def check(args, precision):
    """The whole check in one precision: both recipes timed, then training, saving and resuming."""
    cfg = make_config(args.preset, device=args.device, precision=precision, compile=args.compile,
                      model_train_fraction=1.0, lr=3e-4, dropout_p=0.1)
    runtime = Runtime(cfg)
    gpu = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else "none (CPU run)"
    chosen = f"--precision {precision}: " if precision == "auto" else ""
    print(f"precision: {chosen}{runtime.precision.name} ({runtime.precision.reason}); GPU: {gpu}", flush=True)
    pairs = load_qa_pairs(args.dataset, "train")
    tokenizer = fit_tokenizer(cfg, (q + " " + a for q, a in zip(pairs.questions, pairs.answers)))
    dataset = QADataset(cfg, tokenizer, pairs=pairs)
    indices = np.arange(len(dataset))
    n = args.warmup + args.steps
    steps_per_epoch = math.ceil(COURSE_PAIRS / cfg.batch_size)
    print(f"{args.preset} model, batch {cfg.batch_size}, max_len {cfg.max_len}, compile {args.compile}; "
          f"{args.steps} timed steps after {args.warmup} warm-up; {len(dataset):,} pairs of {pairs.description}")
    print(f"{'':16s} {'s/step':>8s} {'useful tok/s':>13s} {'peak MiB':>9s} {'min/epoch (859,765 pairs)':>26s}")
    rows = {}
    for name, recipe in (("template recipe", template_recipe), ("this project", project_recipe)):
        step, batches = recipe(cfg, runtime, dataset, indices, n)[:2]
        seconds, rate = timed_steps(step, batches, args.warmup, runtime.device)
        rows[name] = rate
        print(f"{name:16s} {seconds:8.3f} {rate:13,.0f} {peak_memory_mib(runtime.device):9,.0f} "
              f"{seconds * steps_per_epoch / 60:26,.1f}")
    print(f"this project trains {rows['this project'] / rows['template recipe']:.2f}x the template's useful tokens/s")

    step, batches, state = project_recipe(cfg, runtime, dataset, indices, args.train_steps)
    for batch in batches:
        step(batch)
    first, last = np.mean(step.losses[:10]), np.mean(step.losses[-10:])
    print(f"{len(step.losses)} {runtime.precision.name} steps: mean loss of the first 10 {first:.3f}, "
          f"of the last 10 {last:.3f}; scale {state.scaler.get_scale() if state.scaler.is_enabled() else 'off'}")
    assert last < first, "training did not lower the loss"
    with tempfile.TemporaryDirectory() as folder:
        saved_cfg = Config(**{**vars(cfg), "model_filename": os.path.join(folder, "model.pth"),
                              "optimizer_filename": os.path.join(folder, "optimizer.pth")})
        state.save(saved_cfg)
        step, more, resumed = project_recipe(saved_cfg, runtime, dataset, indices, 1)
        message = resumed.resume(saved_cfg)
        assert resumed.progress.global_step == state.progress.global_step, message
        assert resumed.scaler.state_dict() == state.scaler.state_dict()
        step(more[0])
        assert resumed.progress.global_step == state.progress.global_step + 1 and math.isfinite(step.losses[-1])
    print(f"resume: {message.splitlines()[0]}; the next step's loss {step.losses[-1]:.3f}")


if __name__ == "__main__":
    main()
