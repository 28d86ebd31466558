"""The training loop: `train_model(config)` trains TransformerModel on config.dataset.

    python train.py --preset demo             # small model on the built-in corpus (CPU, minutes)
    python train.py --preset tiny             # the template's tiny CPU model
    python train.py                           # the template's 36M model (GPU: Colab T4 or better)
    python train.py --fresh                   # ignore existing checkpoints and start over
    torchrun --nproc_per_node=2 train.py      # DistributedDataParallel on 2 GPUs (gloo on CPU)

Rerunning the same command after an interruption continues from the last checkpoint: same epoch,
same step, same data order and RNG states, so on CPU in fp32 the final weights equal those of an
uninterrupted run. What it adds to the template's loop:

- precision decided once (support.runtime.choose_precision): on CUDA bf16 from compute
  capability 8.0, fp16 autocast with a gradient scaler below it (a T4); on a CPU bf16 only where
  its flags show native bf16 units, else fp32; settable with --precision;
- torch.compile of the training model on CUDA (--compile on|off|auto), falling back to eager
  mode with one message if compilation fails in the forward or the backward pass; checkpoints
  come from the uncompiled module;
- length-aware batching: each batch is padded only to its longest sequence, and similar lengths
  are grouped (--length_grouping); the per-position loss is the same as with fixed padding;
- gradient clipping, warmup then cosine decay, a validation split with loss and perplexity every
  --eval_every steps and at each epoch end;
- a progress bar with loss, learning rate and tokens/s; a CSV log and a loss-curve PNG in temp/;
- checkpoints every --checkpoint_minutes of training (15), or every --checkpoint_every steps,
  and at every epoch end; written atomically, the weights once (support/checkpoint.py);
- two named switches, each tested equal to the plain path: the fused output-layer loss
  (--fused_loss) and DistributedDataParallel (under torchrun, support.runtime.Runtime.wrap).
"""

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from config import parse_cli
from dataset import IGNORE_INDEX, BatchView, QADataset, epoch_batches, split_indices
from model import TransformerModel
from support.checkpoint import Progress, TrainingState, adopt_finished_state, check_free_space
from support.errors import UserError
from support.files import file_sha256
from support.fused_loss import HiddenStates, linear_cross_entropy
from support.runtime import CompiledOrEager, Runtime, check_library_versions
from support.training_log import CsvLog, plot_loss_curve
from tokenizer import check_vocab_fits, load_tokenizer
from utils import get_num_params, print_config, run_main, seed_everything


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule, loss, evaluation

def lr_factor(step, total_steps, config):
    """Multiplier of config.lr after `step` optimizer steps: linear warmup, then cosine or flat.

    >>> from config import make_config; c = make_config(warmup_steps=10, min_lr_ratio=0.1)
    >>> [round(lr_factor(s, 110, c), 3) for s in (0, 5, 10, 60, 110)]
    [0.1, 0.6, 1.0, 0.55, 0.1]
    """
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant" or total_steps <= config.warmup_steps:
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / (total_steps - config.warmup_steps))
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def loss_sum_and_count(net, batch, runtime, vocab_size, output_layer=None):
    """Summed cross-entropy over the real target tokens, and their number.

    The plain path (the template's; output_layer None): `net` returns logits (B, T, vocab) under
    autocast and F.cross_entropy scores them. The fused switch (--fused_loss, training_net): `net`
    returns the last block's output (B, T, C) and linear_cross_entropy applies the output layer
    and the loss together (support/fused_loss.py), tested equal to the plain path.
    """
    source, target, padding_mask = (t.to(runtime.device, non_blocking=True) for t in batch.values())
    n_tokens = (target != IGNORE_INDEX).sum()
    precision = runtime.precision
    with torch.autocast(runtime.device.type, dtype=precision.dtype, enabled=precision.autocast):
        out = net(source, padding_mask=padding_mask)  # (B, T, vocab), or (B, T, C) when fused
    if output_layer is None:
        # (B*T, vocab) is contiguous; the template's logits.transpose(1, 2) makes log_softmax run
        # over a strided dimension: 1.4x-1.6x slower tiny-model steps (bench/bench_cpu_choices.py).
        loss = F.cross_entropy(out.float().reshape(-1, vocab_size), target.reshape(-1),
                               ignore_index=IGNORE_INDEX, reduction="sum")
    else:
        loss = linear_cross_entropy(out, output_layer, target, dtype=precision.dtype)
    return loss, n_tokens


@torch.no_grad()
def evaluate(model, dataset, indices, config, runtime, max_batches=0):
    """Mean validation loss over `indices` (all ranks share the work); nan when there are none."""
    if len(indices) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    ordered = np.asarray(indices)[np.argsort(dataset.lengths[indices], kind="stable")]
    batches = [ordered[i:i + config.batch_size] for i in range(0, len(ordered), config.batch_size)]
    if max_batches:
        batches = batches[:: max(1, len(batches) // max_batches)][:max_batches]
    total = count = 0.0
    for batch in batches[runtime.rank:: runtime.world_size]:
        loss, n = loss_sum_and_count(model, dataset.collate(batch, config.pad_multiple), runtime,
                                     config.vocab_size)
        total, count = total + loss.item(), count + n.item()
    total, count = runtime.all_sum(total, count)
    model.train(was_training)
    return total / max(count, 1.0)


def training_net(model, runtime, fused_loss="auto"):
    """(what the training step calls, the output layer the loss applies itself, or None).

    Plain: the model, returning logits. Fused (--fused_loss; auto: on in fp32 and bf16): the model
    without fc_out (support.fused_loss.HiddenStates). Not under fp16's gradient scaler (a T4): the
    fused loss computes its gradients before the scale is known, so small fp16 gradients would
    underflow; there the scaled gradients must flow through fc_out. Either net is wrapped in DDP
    under torchrun and in torch.compile when the run uses them (Runtime.wrap).
    """
    fused = fused_loss == "on" or (fused_loss == "auto" and not runtime.precision.grad_scaler)
    if fused and runtime.precision.grad_scaler:
        raise UserError("--fused_loss on cannot run with fp16's gradient scaler (its gradients would "
                        "underflow before scaling); use --fused_loss auto or off, or another --precision")
    if not fused:
        return runtime.wrap(model), None
    return runtime.wrap(HiddenStates(model)), model.fc_out


def train_step(net, batch, state, output_layer, config, runtime):
    """One optimizer step; returns (mean loss over the global batch, its real target tokens).

    The loss is summed and divided by the token count of the *global* batch (times the number of
    ranks, because DDP averages gradients), so several processes compute exactly the gradient
    one process computes for the same global batch. Gradients are clipped after unscaling.
    Under torch.compile, a compiler failure in the forward or the backward pass reruns the step
    without compilation (support.runtime.CompiledOrEager).
    """
    def forward_backward():
        loss_sum, n_tokens = loss_sum_and_count(net, batch, runtime, config.vocab_size, output_layer)
        global_loss, global_tokens = runtime.all_sum(loss_sum.item(), n_tokens.item())
        loss = loss_sum * runtime.world_size / max(global_tokens, 1.0)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        return global_loss, global_tokens

    if isinstance(net, CompiledOrEager):  # a compile failure in either pass falls back to eager
        global_loss, global_tokens = net.run_step(forward_backward)
    else:
        global_loss, global_tokens = forward_backward()
    if config.grad_clip:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), config.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return global_loss / max(global_tokens, 1.0), int(global_tokens)


# ----------------------------------------------------------------------------------------------
# The loop

def train_model(config, fresh=False):
    """Train (or resume training) the model of `config`; returns the trained, uncompiled model."""
    runtime = Runtime(config)
    try:
        return _train(config, runtime, fresh)
    finally:
        runtime.close()


def _train(config, runtime, fresh):
    dataset, train_indices, val_indices, tokenizer_hash = prepare_data(config, runtime)
    steps_per_epoch, total_steps = count_steps(len(train_indices), len(val_indices), config, runtime)
    state = prepare_model(config, runtime, total_steps, len(dataset), tokenizer_hash, fresh)
    model, progress = state.model, state.progress
    if progress.epoch >= config.num_epochs or (config.max_steps and progress.global_step >= config.max_steps):
        runtime.log(f"Nothing to do: the checkpoint already has {progress.epoch} epoch(s), "
                    f"{progress.global_step} steps. Raise --num_epochs/--max_steps or pass --fresh.")
        return model
    net, output_layer = training_net(model, runtime, config.fused_loss)

    log = CsvLog(config.log_filename, progress.global_step, runtime.is_main)
    schedule = SaveSchedule(config, runtime)
    model.train()
    try:
        for epoch in range(progress.epoch, config.num_epochs):
            progress.epoch = epoch
            batches = epoch_batches(train_indices, dataset.lengths, runtime.world_size * config.batch_size,
                                    config.seed, epoch, config.length_grouping)[:steps_per_epoch]
            bar = tqdm(total=len(batches), initial=progress.step_in_epoch, disable=not runtime.is_main,
                       desc=f"[{epoch + 1:02d} | {config.num_epochs:02d}]", unit="step", dynamic_ncols=True)
            speed = Throughput()
            for batch in rank_loader(dataset, batches[progress.step_in_epoch:], config, runtime):
                loss, tokens = train_step(net, batch, state, output_layer, config, runtime)
                state.scheduler.step()
                progress.advance(loss, tokens)
                lr, rate = state.scheduler.get_last_lr()[0], speed.update(tokens)
                bar.set_postfix_str(f"loss {loss:.4f}, lr {lr:.2e}, {rate:,.0f} tok/s")
                bar.update()
                val_loss = None
                if config.eval_every and progress.global_step % config.eval_every == 0:
                    val_loss = progress.val_loss = evaluate(model, dataset, val_indices, config, runtime,
                                                            config.eval_max_batches)
                    runtime.log(f"step {progress.global_step}: validation {loss_and_perplexity(val_loss)}")
                log.write(step=progress.global_step, epoch=epoch + 1, loss=f"{loss:.5f}", lr=f"{lr:.3e}",
                          tokens_per_s=f"{rate:.0f}", **val_columns(val_loss))
                stop = bool(config.max_steps) and progress.global_step >= config.max_steps
                last = progress.step_in_epoch == len(batches)  # then the epoch end below saves
                if not last and (stop or schedule.due(progress.global_step)):
                    save_checkpoint(state, config, runtime, log)
                    schedule.saved()
                if stop:
                    break
            bar.close()
            if progress.step_in_epoch < len(batches):  # stopped by max_steps
                runtime.log(f"Stopped after {progress.global_step} steps (--max_steps).")
                break
            progress.val_loss = evaluate(model, dataset, val_indices, config, runtime)
            runtime.log(f"Mean Epoch Cross-Entropy Loss: {progress.epoch_mean():.4f}; "
                        f"validation {loss_and_perplexity(progress.val_loss)}")
            log.write(step=progress.global_step, epoch=epoch + 1, loss=None, lr=None, tokens_per_s=None,
                      **val_columns(progress.val_loss))
            progress.next_epoch()
            save_checkpoint(state, config, runtime, log)
            schedule.saved()
            if config.max_steps and progress.global_step >= config.max_steps:  # on an epoch's last step
                runtime.log(f"Stopped after {progress.global_step} steps (--max_steps).")
                break
    finally:
        log.close()
    if runtime.is_main and plot_loss_curve(log.rows, config.plot_filename):
        runtime.log(f"Saved loss curve to {config.plot_filename} and the log to {config.log_filename}")
    return model


# ----------------------------------------------------------------------------------------------
# Set-up and small pieces of the loop

def prepare_data(config, runtime):
    """(dataset, training indices, validation indices, tokenizer fingerprint); logs the set-up."""
    if runtime.is_main:
        print_config(config)
    runtime.log(f"Device {runtime.device}, precision {runtime.precision.name} "
                f"({runtime.precision.reason}), {runtime.world_size} process(es)")
    runtime.log(f"Libraries: {check_library_versions()}")  # recorded in the checkpoint too
    seed_everything(config.seed)
    tokenizer = check_vocab_fits(load_tokenizer(config), config.vocab_size, config)
    dataset = QADataset(config, tokenizer)
    train_indices, val_indices = split_indices(len(dataset), config.val_fraction, config.seed)
    return dataset, train_indices, val_indices, file_sha256(config.tokenizer_filename)


def count_steps(n_train, n_val, config, runtime):
    """(optimizer steps per epoch, steps in total); DDP drops the last, incomplete batch."""
    global_batch = config.batch_size * runtime.world_size
    steps_per_epoch = n_train // global_batch if runtime.distributed else math.ceil(n_train / global_batch)
    if steps_per_epoch == 0:
        raise UserError(f"{n_train} training pairs do not fill one batch of {global_batch}; "
                        f"lower --batch_size")
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    runtime.log(f"Training on {n_train:,} pairs, validating on {n_val:,}; "
                f"{steps_per_epoch:,} steps per epoch, {total_steps:,} in total")
    return steps_per_epoch, total_steps


def prepare_model(config, runtime, total_steps, num_pairs, tokenizer_hash, fresh):
    """A TrainingState: model, AdamW, warmup-cosine schedule, gradient scaler, and the progress
    of the checkpoint it resumes from (unless `fresh`)."""
    model = TransformerModel(config).to(runtime.device)
    n_params = get_num_params(model)
    runtime.log(f"Number of parameters in the model: {n_params:,}")
    if runtime.is_main:  # weights and two AdamW moments, and the new copies beside them in a save
        check_free_space(config.optimizer_filename, int(n_params * 4 * 3 * 2))
        check_free_space(config.log_filename, 1 << 20)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, config))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision.grad_scaler)
    data = {"num_pairs": num_pairs, "val_fraction": config.val_fraction, "batch_size": config.batch_size,
            "world_size": runtime.world_size, "length_grouping": config.length_grouping, "seed": config.seed}
    state = TrainingState(model, optimizer, scheduler, scaler, Progress(), data, tokenizer_hash)
    if not fresh:
        if runtime.is_main:  # mend a save cut between its two renames, before any process reads the files
            adopt_finished_state(config)
        runtime.barrier()
    message = None if fresh else state.resume(config)
    if message:
        runtime.log(message)
    if runtime.distributed:  # dropout masks differ per rank (weights were initialised alike)
        torch.manual_seed(config.seed + runtime.rank + 7919 * state.progress.global_step)
    return state


def rank_loader(dataset, batches, config, runtime):
    """This rank's share of each batch, collated (padded to its longest) by DataLoader workers."""
    mine = [batch[runtime.rank:: runtime.world_size] for batch in batches]
    return DataLoader(BatchView(dataset, mine, config.pad_multiple), batch_size=None, shuffle=False,
                      num_workers=config.dataloader_num_workers, pin_memory=runtime.device.type == "cuda",
                      # its own generator: drawing worker seeds must not move the global RNG (exact resume)
                      generator=torch.Generator())


def save_checkpoint(state, config, runtime, log):
    """The main process saves (support.checkpoint.TrainingState.save); the others wait for it."""
    if runtime.is_main:
        state.save(config)
        log.flush()
    runtime.barrier()


class SaveSchedule:
    """When to save: every config.checkpoint_every steps, and config.checkpoint_minutes after the
    last save (under torchrun all ranks follow the first rank's clock, so they save together)."""

    def __init__(self, config, runtime):
        self.every, self.seconds, self.runtime = config.checkpoint_every, 60 * config.checkpoint_minutes, runtime
        self.last = time.monotonic()

    def due(self, step):
        if self.every and step % self.every == 0:
            return True
        if not self.seconds:
            return False
        late = time.monotonic() - self.last >= self.seconds
        return self.runtime.all_sum(float(late and self.runtime.is_main))[0] > 0

    def saved(self):
        self.last = time.monotonic()


class Throughput:
    """Tokens per second over the last 20 steps or fewer, for the progress bar."""

    def __init__(self):
        self.start, self.tokens, self.steps = time.perf_counter(), 0, 0

    def update(self, tokens):
        now = time.perf_counter()
        self.tokens, self.steps = self.tokens + tokens, self.steps + 1
        rate = self.tokens / max(now - self.start, 1e-9)
        if self.steps % 20 == 0:
            self.start, self.tokens = now, 0
        return rate


def loss_and_perplexity(loss):
    """'loss 2.3026, perplexity 10.00'"""
    return f"loss {loss:.4f}, perplexity {math.exp(min(loss, 50)):.2f}"


def val_columns(val_loss):
    """The log's val_loss and val_ppl columns (empty when there was no validation)."""
    if val_loss is None:
        return {"val_loss": None, "val_ppl": None}
    return {"val_loss": f"{val_loss:.5f}", "val_ppl": f"{math.exp(min(val_loss, 50)):.3f}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true",
                        help="start from scratch even if checkpoints exist (they are overwritten)")
    config, args = parse_cli(parser=parser)
    train_model(config, fresh=args.fresh)


if __name__ == "__main__":
    run_main(main)
