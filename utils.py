"""Small helpers shared by the scripts, and the one place where device and seeding are decided.

    from utils import get_num_params, print_config, resolve_device, seed_everything, run_main

Sections: helpers of every script; device and precision; the training process (Runtime: device,
DDP ranks, compilation); the training log (CSV and loss-curve PNG); RNG states and files.
"""

import csv
import os
import random
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm


class UserError(Exception):
    """Something the user can fix (a missing file, a bad value). Scripts print it in one line."""


def get_num_params(model):
    """Number of trainable parameters, as the template counts them."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def print_config(config):
    """Print every config entry, as the template does."""
    print("Using configuration:")
    for key, value in vars(config).items():
        print(f"\t{key}: {value}")
    print("*" * 100)


def seed_everything(seed):
    """Seed Python, NumPy and torch (all devices) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name):
    """Turn config.device into a torch.device, failing clearly if it is not available here.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"config.device={name!r} but no CUDA GPU is visible; use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"config.device={name!r} but Apple MPS is not available; use --device cpu")
    return device


@dataclass(frozen=True)
class Precision:
    """How the training step runs: autocast dtype (None = plain fp32) and gradient scaling."""

    name: str  # "fp32", "bf16" or "fp16"
    dtype: torch.dtype
    autocast: bool
    grad_scaler: bool
    reason: str


def cpu_info():
    """The first processor's fields of /proc/cpuinfo ("model name", "flags", ...); {} elsewhere."""
    info = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip() and info:
                    break
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_has_fast_bf16():
    """True when the CPU has native bf16 units (AVX-512 BF16 or AMX) and oneDNN uses them.

    oneDNN's own check also says yes on AVX-512 CPUs without bf16 units (Skylake, Ice Lake),
    where bf16 is emulated, so the CPU's flags are read too where the system shows them.
    """
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    flags = set(cpu_info().get("flags", "").split())
    return onednn and (not flags or bool(flags & {"avx512_bf16", "amx_bf16"}))


def choose_precision(device, requested="auto"):
    """The one place where training precision is decided, with the reason (logged once).

    auto: CUDA -> bf16 if the GPU supports it, else fp16 with a gradient scaler (a T4);
          CPU  -> bf16 autocast only with native bf16 units; without them bf16 matmuls are
                  emulated: about 20x slower than fp32 on an AVX2 CPU (bench/bench_cpu_choices.py).
    >>> choose_precision(torch.device("cpu"), "fp32").name
    'fp32'
    """
    device = torch.device(device)
    if requested == "auto":
        if device.type == "cuda":
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
            why = "CUDA GPU " + ("supports bf16" if requested == "bf16" else "lacks bf16: fp16 with gradient scaling")
        elif device.type == "cpu" and cpu_has_fast_bf16():
            requested, why = "bf16", "CPU has native bf16 units"
        else:
            requested, why = "fp32", f"{device.type} without fast bf16"
    elif requested == "fp16" and device.type == "cpu":
        why = ("asked for: fp16 autocast with a gradient scaler on the CPU, the code path of a T4 "
               "GPU (for checking it; slower than fp32 on CPUs without fp16 units)")
    else:
        why = "asked for"
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    return Precision(requested, dtype, autocast=requested != "fp32",
                     grad_scaler=requested == "fp16", reason=why)


# ----------------------------------------------------------------------------------------------
# The training process: device, ranks under torchrun, compilation

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
        self.compile = device.type == "cuda" if config.compile == "auto" else config.compile == "on"
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

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def wrap(self, module):
        """`module` as this process trains it: in DistributedDataParallel under torchrun, then
        compiled when config.compile asks for it (CompiledOrEager)."""
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            module = DistributedDataParallel(
                module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return CompiledOrEager(module, self.log) if self.compile else module

    def close(self):
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


class CompiledOrEager:
    """Call torch.compile(module); if compiling fails (no C++ compiler, an unsupported GPU, ...),
    say so once and call `module` itself from then on."""

    def __init__(self, module, log):
        self.module, self.compiled, self.log = module, torch.compile(module), log

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager mode
                self.log(f"torch.compile failed ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); continuing without compilation")
                self.compiled = None
        return self.module(*args, **kwargs)


# ----------------------------------------------------------------------------------------------
# The training log: one CSV row per step, and the loss curve

LOG_FIELDS = ["step", "epoch", "loss", "lr", "tokens_per_s", "val_loss", "val_ppl"]


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
# RNG states and files

def get_rng_state():
    """Every RNG state training touches, as plain data that torch.load(weights_only=True) accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def ensure_parent_dir(path):
    """Create the folder a file will be written to; fail early and clearly if we cannot."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder!r} for {path!r}: {exc.strerror}") from None
    try:  # a real write, not os.access: that says yes to root on read-only mounts
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"folder {folder!r} is not writable ({exc.strerror}); cannot save {path!r}") from None
    return path


def run_main(main):
    """Run a script's main(); user errors become one line on stderr and exit status 2."""
    from config import ConfigError

    try:
        main()
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
