"""Small helpers shared by the scripts, and the one place where device and seeding are decided.

    from utils import get_num_params, print_config, resolve_device, seed_everything, run_main
"""

import os
import random
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import torch


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
    else:
        why = "asked for"
    if requested == "fp16" and device.type == "cpu":
        raise UserError("precision fp16 is not supported on CPU; use --precision fp32 or bf16")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    return Precision(requested, dtype, autocast=requested != "fp32",
                     grad_scaler=requested == "fp16", reason=why)


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
