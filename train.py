"""The training loop: `train_model(config)` trains TransformerModel on config.dataset.

    python train.py --preset demo             # small model on the built-in corpus (CPU, minutes)
    python train.py --preset tiny             # the template's tiny CPU model
    python train.py                           # the template's 36M model (GPU: Colab T4 or better)
    python train.py --fresh                   # ignore existing checkpoints and start over
    torchrun --nproc_per_node=2 train.py      # DistributedDataParallel on 2 GPUs (gloo on CPU)

Rerunning the same command after an interruption continues from the last checkpoint: same epoch,
same step, same data order and RNG states, so on CPU in fp32 the final weights equal those of an
uninterrupted run. What it adds to the template's loop:

- precision decided once (utils.choose_precision): CUDA fp16 autocast with a gradient scaler, or
  bf16 where the GPU has it; fp32 on CPUs without native bf16; settable with --precision;
- torch.compile of the training model on CUDA (--compile on|off|auto), falling back to eager
  mode with one message if compilation fails; checkpoints come from the uncompiled module;
- length-aware batching: each batch is padded only to its longest sequence, and similar lengths
  are grouped (--length_grouping); the per-position loss is the same as with fixed padding;
- gradient clipping, warmup then cosine decay, a validation split with loss and perplexity every
  --eval_every steps and at each epoch end;
- a progress bar with loss, learning rate and tokens/s; a CSV log and a loss-curve PNG in temp/;
- checkpoints every --checkpoint_every steps and at every epoch end, written atomically.
"""

import argparse
import csv
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from checkpoint import (atomic_save, atomic_write_json, check_free_space, file_sha256, load_file,
                        model_shape, shape_mismatches, sidecar_filename)
from config import parse_cli
from dataset import IGNORE_INDEX, BatchView, QADataset, epoch_batches, split_indices
from model import TransformerModel
from tokenizer import load_tokenizer
from utils import (UserError, choose_precision, get_num_params, get_rng_state, print_config,
                   resolve_device, run_main, seed_everything, set_rng_state)

STATE_FORMAT = "inf265-train-state-v1"
LOG_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "val_loss", "val_ppl"]


# ----------------------------------------------------------------------------------------------
# Runtime: device, processes, precision, compilation

class Runtime:
    """Where and how this process trains; under torchrun, one of several ranks."""

    def __init__(self, config):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.distributed = self.world_size > 1
        device = resolve_device(config.device)
        if self.distributed:
            if device.type == "cuda":
                device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(device)
            else:  # several CPU processes would fight over the same cores
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.world_size))
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.device = device
        self.precision = choose_precision(device, config.precision)
        self.is_main = self.rank == 0

    def log(self, message):
        if self.is_main:
            tqdm.write(message)

    def all_sum(self, *values):
        """Sum floats over all ranks (identity in a single process)."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def close(self):
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def compile_choice(config, device):
    if config.compile == "auto":
        return device.type == "cuda"
    return config.compile == "on"


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule and loss

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


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ W.T + b, target_i), with the gradients computed chunk by chunk.

    Never materialises the (N, vocab) logits, their log-softmax or the zero-filled gradient
    buffer that F.cross_entropy's backward needs; per chunk: logits -> log-sum-exp -> softmax in
    place -> minus one-hot = dloss/dlogits -> gradients of hidden, W and b. fp32 only.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk_rows):
        grad_hidden = torch.empty_like(hidden)  # (N, C)
        grad_weight = torch.zeros_like(weight)  # (V, C)
        grad_bias = torch.zeros_like(bias)  # (V,)
        loss = hidden.new_zeros(())
        for start in range(0, hidden.size(0), chunk_rows):
            h, t = hidden[start:start + chunk_rows], target[start:start + chunk_rows, None]
            logits = torch.addmm(bias, h, weight.t())  # (n, V)
            lse = torch.logsumexp(logits, dim=1, keepdim=True)  # (n, 1)
            loss += (lse - logits.gather(1, t)).sum()
            probs = logits.sub_(lse).exp_()  # softmax, in place
            probs.scatter_add_(1, t, torch.full_like(t, -1, dtype=probs.dtype))  # minus one-hot
            torch.mm(probs, weight, out=grad_hidden[start:start + chunk_rows])
            grad_weight.addmm_(probs.t(), h)
            grad_bias += probs.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, grad_bias * grad_loss, None, None


def linear_cross_entropy(hidden, linear, target, chunk_rows=2048):
    """Summed cross-entropy of `linear(hidden)` against `target`, skipping ignored positions.

    hidden (B, T, C), target (B, T). Equal to
    F.cross_entropy(linear(hidden).reshape(-1, V), target.reshape(-1), reduction="sum")
    (tests check the loss and all gradients), but faster on a CPU: only real target positions
    go through the output layer, and no (B*T, V) log-softmax or gradient buffer is allocated.
    """
    keep = target.reshape(-1) != IGNORE_INDEX
    rows = hidden.reshape(-1, hidden.size(-1))[keep]  # (N, C)
    return _LinearCrossEntropy.apply(rows, linear.weight, linear.bias, target.reshape(-1)[keep], chunk_rows)


def loss_sum_and_count(model, batch, precision, device, vocab_size, output_layer=None):
    """Summed cross-entropy over real target tokens, and their number.

    With `output_layer` (the uncompiled model's fc_out) and fp32 while gradients are on, the
    model returns hidden states and linear_cross_entropy computes the output layer and the loss
    together; otherwise the model returns logits and F.cross_entropy scores them.
    """
    source, target, padding_mask = (t.to(device, non_blocking=True) for t in batch.values())
    n_tokens = (target != IGNORE_INDEX).sum()
    fused = output_layer is not None and not precision.autocast and torch.is_grad_enabled()
    with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.autocast):
        out = model(source, padding_mask=padding_mask, return_hidden=fused)  # (B, T, C or vocab)
    if fused:
        return linear_cross_entropy(out, output_layer, target), n_tokens
    # (B*T, vocab) is contiguous; the template's logits.transpose(1, 2) makes log_softmax run
    # over a strided dimension: 1.4x-1.6x slower tiny-model steps (bench/bench_cpu_choices.py).
    loss = F.cross_entropy(out.float().reshape(-1, vocab_size), target.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
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
        loss, n = loss_sum_and_count(model, dataset.collate(batch, config.pad_multiple),
                                     runtime.precision, runtime.device, config.vocab_size)
        total, count = total + loss.item(), count + n.item()
    total, count = runtime.all_sum(total, count)
    model.train(was_training)
    return total / max(count, 1.0)


# ----------------------------------------------------------------------------------------------
# Checkpoints and resume

class Progress:
    """Where training stands; saved in the training-state file."""

    def __init__(self):
        self.epoch = 0  # current epoch (0-based)
        self.step_in_epoch = 0  # batches of this epoch already trained
        self.global_step = 0  # optimizer steps in total
        self.epoch_loss = 0.0  # summed loss and tokens of this epoch, for the epoch mean
        self.epoch_tokens = 0
        self.val_loss = float("nan")

    def as_dict(self):
        return dict(vars(self))

    def load(self, saved):
        for key, value in saved.items():
            setattr(self, key, value)


def save_checkpoint(config, model, optimizer, scheduler, scaler, progress, data_info, tokenizer_hash):
    """Training state first (weights included, so it is self-consistent), then model.pth."""
    state = {
        "format": STATE_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "progress": progress.as_dict(),
        "data": data_info,
        "rng": get_rng_state(),
        "model_shape": model_shape(config),
        "tokenizer_sha256": tokenizer_hash,
    }
    atomic_save(state, config.optimizer_filename)
    atomic_save(model.state_dict(), config.model_filename)
    atomic_write_json({
        "model_shape": model_shape(config),
        "tokenizer_filename": config.tokenizer_filename,
        "tokenizer_sha256": tokenizer_hash,
        "dataset": config.dataset,
        "epoch": progress.epoch,
        "global_step": progress.global_step,
        "val_loss": None if math.isnan(progress.val_loss) else progress.val_loss,
        "parameters": get_num_params(model),
    }, sidecar_filename(config.model_filename))


def resume(config, model, optimizer, scheduler, scaler, progress, data_info, tokenizer_hash):
    """Load the checkpoint this run should continue from, if any; return a message for the log."""
    state_path, model_path = config.optimizer_filename, config.model_filename
    start_over = (f"delete {model_path!r} and {state_path!r}, or pass --fresh, to start over")
    if not os.path.exists(state_path):
        if os.path.exists(model_path):
            _load_weights(model, load_file(model_path, "model checkpoint"), model_path, config, start_over)
            return f"Loaded weights from {model_path} (no training state found: starting at epoch 1)"
        return None
    state = load_file(state_path, "training state")
    if isinstance(state, dict) and {"state", "param_groups"} <= set(state) and "format" not in state:
        # A template run: optimizer.pth holds only optimizer.state_dict(), model.pth the weights.
        _load_weights(model, load_file(model_path, "model checkpoint"), model_path, config, start_over)
        optimizer.load_state_dict(state)
        return (f"Loaded a course-template checkpoint ({model_path}, {state_path}): weights and "
                f"optimizer restored; the template saves no position, so training starts at epoch 1")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{state_path!r} is not a training-state file of this project; {start_over}")
    problems = shape_mismatches(state["model_shape"], config)
    if problems:
        raise UserError(f"checkpoint {state_path!r} is for another model shape "
                        f"({'; '.join(problems)}); use the matching --preset, or {start_over}")
    if state["tokenizer_sha256"] != tokenizer_hash:
        raise UserError(f"checkpoint {state_path!r} was trained with a different tokenizer than "
                        f"{config.tokenizer_filename!r}; restore that tokenizer, or {start_over}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    progress.load(state["progress"])
    set_rng_state(state["rng"])
    message = (f"Resumed from {state_path}: epoch {progress.epoch + 1}, step {progress.step_in_epoch} "
               f"of the epoch, {progress.global_step} steps in total")
    if state["data"] != data_info:
        changed = sorted(k for k in data_info if state["data"].get(k) != data_info[k])
        message += (f"\nnote: {', '.join(changed)} changed since the checkpoint, so the rest of this "
                    f"epoch sees a different data order than the interrupted run would have")
    return message


def _load_weights(model, weights, path, config, start_over):
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserError(f"model checkpoint {path!r} does not fit config (preset {config.preset}): "
                        f"{' '.join(first[:3])[:300]}; use the matching --preset, or {start_over}") from None


# ----------------------------------------------------------------------------------------------
# Log and plot

class CsvLog:
    """Appends rows to config.log_filename; on resume, drops rows after the resumed step."""

    def __init__(self, path, resume_step, enabled):
        self.path, self.enabled, self.rows = path, enabled, []
        if not enabled:
            return
        if resume_step and os.path.exists(path):
            with open(path, newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        self.handle = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=LOG_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(self.rows)

    def write(self, **row):
        if self.enabled:
            row = {k: ("" if v is None else v) for k, v in row.items()}
            self.rows.append(row)
            self.writer.writerow(row)

    def flush(self):
        if self.enabled:
            self.handle.flush()

    def close(self):
        if self.enabled:
            self.handle.close()


def plot_loss_curve(rows, path):
    """Training loss (smoothed) and validation loss against steps, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = [r for r in rows if r.get("loss") not in ("", None)]
    if not trained:
        return None
    steps = np.array([int(r["step"]) for r in trained])
    loss = np.array([float(r["loss"]) for r in trained])
    smooth = np.empty_like(loss)
    for i, value in enumerate(loss):  # exponential moving average, as TensorBoard shows it
        smooth[i] = value if i == 0 else 0.98 * smooth[i - 1] + 0.02 * value
    val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r.get("val_loss") not in ("", None)]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8, label="training loss")
    ax.plot(steps, smooth, color="tab:blue", label="training loss (smoothed)")
    if val:
        ax.plot(*zip(*val), "o-", color="tab:orange", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title("Training progress")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    if runtime.is_main:
        print_config(config)
    runtime.log(f"Device {runtime.device}, precision {runtime.precision.name} "
                f"({runtime.precision.reason}), {runtime.world_size} process(es)")
    seed_everything(config.seed)

    tokenizer = load_tokenizer(config)
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise UserError(f"tokenizer {config.tokenizer_filename!r} has {tokenizer.get_vocab_size()} "
                        f"tokens but config.vocab_size={config.vocab_size}; use the preset it was "
                        f"trained for, or retrain it with `python tokenizer.py --retrain`")
    tokenizer_hash = file_sha256(config.tokenizer_filename)

    model = TransformerModel(config).to(runtime.device)
    n_params = get_num_params(model)
    runtime.log(f"Number of parameters in the model: {n_params:,}")
    if runtime.is_main:  # weights + training state (weights and two AdamW moments), with margin
        check_free_space(config.optimizer_filename, int(n_params * 4 * 5 * 1.2))
        check_free_space(config.log_filename, 1 << 20)

    dataset = QADataset(config, tokenizer)
    train_indices, val_indices = split_indices(len(dataset), config.val_fraction, config.seed)
    global_batch = config.batch_size * runtime.world_size
    drop_last = runtime.distributed  # every rank needs a share of every batch
    steps_per_epoch = (len(train_indices) // global_batch if drop_last
                       else math.ceil(len(train_indices) / global_batch))
    if steps_per_epoch == 0:
        raise UserError(f"{len(train_indices)} training pairs do not fill one batch of "
                        f"{global_batch}; lower --batch_size")
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    runtime.log(f"Training on {len(train_indices):,} pairs, validating on {len(val_indices):,}; "
                f"{steps_per_epoch:,} steps per epoch, {total_steps:,} in total")

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.precision.grad_scaler)
    progress = Progress()
    data_info = {"num_pairs": len(dataset), "val_fraction": config.val_fraction,
                 "batch_size": config.batch_size, "world_size": runtime.world_size,
                 "length_grouping": config.length_grouping, "seed": config.seed}
    if not fresh:
        message = resume(config, model, optimizer, scheduler, scaler, progress, data_info,
                         tokenizer_hash)
        if message:
            runtime.log(message)
    if runtime.distributed:  # dropout masks differ per rank (weights were initialised alike)
        torch.manual_seed(config.seed + runtime.rank + 7919 * progress.global_step)

    if progress.epoch >= config.num_epochs or (config.max_steps and progress.global_step >= config.max_steps):
        runtime.log(f"Nothing to do: the checkpoint already has {progress.epoch} epoch(s), "
                    f"{progress.global_step} steps. Raise --num_epochs/--max_steps or pass --fresh.")
        return model

    train_module = model
    if runtime.distributed:
        from torch.nn.parallel import DistributedDataParallel

        train_module = DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    compiled = torch.compile(train_module) if compile_choice(config, runtime.device) else None

    log = CsvLog(config.log_filename, progress.global_step, runtime.is_main)
    loss_value = float("nan")
    model.train()
    try:
        for epoch in range(progress.epoch, config.num_epochs):
            progress.epoch = epoch
            batches = epoch_batches(train_indices, dataset.lengths, global_batch, config.seed, epoch,
                                    config.length_grouping)[:steps_per_epoch]
            mine = [b[runtime.rank:: runtime.world_size] for b in batches[progress.step_in_epoch:]]
            loader = DataLoader(
                BatchView(dataset, mine, config.pad_multiple), batch_size=None, shuffle=False,
                num_workers=config.dataloader_num_workers, pin_memory=runtime.device.type == "cuda",
                # its own generator: drawing worker seeds must not move the global RNG (exact resume)
                generator=torch.Generator())
            bar = tqdm(total=len(batches), initial=progress.step_in_epoch, disable=not runtime.is_main,
                       desc=f"[{epoch + 1:02d} | {config.num_epochs:02d}]", unit="step", dynamic_ncols=True)
            last_time, last_tokens = time.perf_counter(), 0
            for batch in loader:
                loss_value, tokens, compiled = _train_step(
                    batch, model, train_module, compiled, optimizer, scaler, config, runtime)
                scheduler.step()
                progress.step_in_epoch += 1
                progress.global_step += 1
                progress.epoch_loss += loss_value * tokens
                progress.epoch_tokens += tokens
                last_tokens += tokens
                now = time.perf_counter()
                rate = last_tokens / max(now - last_time, 1e-9)
                lr = scheduler.get_last_lr()[0]
                bar.set_postfix_str(f"loss {loss_value:.4f}, lr {lr:.2e}, {rate:,.0f} tok/s")
                bar.update()
                if progress.step_in_epoch % 20 == 0:
                    last_time, last_tokens = now, 0
                val_loss = None
                if config.eval_every and progress.global_step % config.eval_every == 0:
                    val_loss = evaluate(model, dataset, val_indices, config, runtime, config.eval_max_batches)
                    progress.val_loss = val_loss
                log.write(step=progress.global_step, epoch=epoch + 1, loss=f"{loss_value:.5f}",
                          lr=f"{lr:.3e}", tokens_per_s=f"{rate:.0f}",
                          val_loss=None if val_loss is None else f"{val_loss:.5f}",
                          val_ppl=None if val_loss is None else f"{math.exp(min(val_loss, 50)):.3f}")
                if val_loss is not None:
                    bar.write(f"step {progress.global_step}: validation loss {val_loss:.4f}, "
                              f"perplexity {math.exp(min(val_loss, 50)):.2f}")
                stop = bool(config.max_steps) and progress.global_step >= config.max_steps
                if (config.checkpoint_every and progress.global_step % config.checkpoint_every == 0) or stop:
                    _checkpoint(config, model, optimizer, scheduler, scaler, progress, data_info,
                                tokenizer_hash, runtime, log)
                if stop:
                    break
            bar.close()
            if progress.step_in_epoch < len(batches):  # stopped by max_steps
                runtime.log(f"Stopped after {progress.global_step} steps (--max_steps).")
                break
            mean = progress.epoch_loss / max(progress.epoch_tokens, 1)
            progress.val_loss = evaluate(model, dataset, val_indices, config, runtime)
            runtime.log(f"Mean Epoch Cross-Entropy Loss: {mean:.4f}; validation loss "
                        f"{progress.val_loss:.4f}, perplexity {math.exp(min(progress.val_loss, 50)):.2f}")
            log.write(step=progress.global_step, epoch=epoch + 1, loss=None, lr=None, tokens_per_s=None,
                      val_loss=f"{progress.val_loss:.5f}", val_ppl=f"{math.exp(min(progress.val_loss, 50)):.3f}")
            progress.epoch, progress.step_in_epoch = epoch + 1, 0
            progress.epoch_loss, progress.epoch_tokens = 0.0, 0
            _checkpoint(config, model, optimizer, scheduler, scaler, progress, data_info,
                        tokenizer_hash, runtime, log)
    finally:
        log.close()
    if runtime.is_main:
        path = plot_loss_curve(log.rows, config.plot_filename)
        if path:
            runtime.log(f"Saved loss curve to {path} and the log to {config.log_filename}")
    return model


def _checkpoint(config, model, optimizer, scheduler, scaler, progress, data_info, tokenizer_hash,
                runtime, log):
    if runtime.is_main:
        save_checkpoint(config, model, optimizer, scheduler, scaler, progress, data_info, tokenizer_hash)
        log.flush()
    if runtime.distributed:
        dist.barrier()


def _train_step(batch, model, train_module, compiled, optimizer, scaler, config, runtime):
    """One optimizer step; returns (mean loss, real target tokens, compiled module or None).

    The loss is summed and divided by the token count of the *global* batch (times the number of
    ranks, because DDP averages gradients), so several processes compute exactly the gradient
    one process computes for the same global batch.
    """
    for attempt in ("compiled", "eager"):
        module = compiled if (compiled is not None and attempt == "compiled") else train_module
        try:
            loss_sum, n_tokens = loss_sum_and_count(module, batch, runtime.precision, runtime.device,
                                                    config.vocab_size, output_layer=model.fc_out)
            global_loss, global_tokens = runtime.all_sum(loss_sum.item(), n_tokens.item())
            loss = loss_sum * runtime.world_size / max(global_tokens, 1.0)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            break
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager mode
            if module is not compiled or compiled is None:
                raise
            runtime.log(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                        f"continuing without compilation")
            compiled = None
            optimizer.zero_grad(set_to_none=True)
    if config.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return global_loss / max(global_tokens, 1.0), int(global_tokens), compiled


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true",
                        help="start from scratch even if checkpoints exist (they are overwritten)")
    config, args = parse_cli(parser=parser)
    train_model(config, fresh=args.fresh)


if __name__ == "__main__":
    run_main(main)
