"""Where and how training runs: device, precision, processes under torchrun, compilation.

    from support.runtime import Runtime
    runtime = Runtime(config)      # logs nothing; train.py logs runtime.precision.reason once
    net = runtime.wrap(model)      # DistributedDataParallel under torchrun, then torch.compile

The precision is decided here and nowhere else (choose_precision), from what the hardware has
natively (Hardware, which tests fake); so are the library versions a run records.
"""

import itertools
import os
import platform
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from support.errors import UserError


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


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of bf16 units
BF16_GPU_CAPABILITY = (8, 0)  # Ampere (A100, RTX 30xx) and newer compute bf16 natively


@dataclass(frozen=True)
class Hardware:
    """What the machine reports about itself: the facts the precision choice rests on.

    read_hardware() reads them; tests write one by hand to stand for a T4, a Mac or a Windows
    laptop. cpu_flags is None where the system does not list them (no /proc/cpuinfo).
    """

    system: str = "Linux"  # platform.system(): Linux, Darwin (macOS), Windows, ...
    machine: str = "x86_64"  # platform.machine(): x86_64, arm64 (Apple silicon), AMD64, ...
    cpu_flags: frozenset | None = None
    onednn_bf16: bool = False  # PyTorch's CPU kernels (oneDNN) can run bf16 at all
    gpu_name: str | None = None  # the CUDA GPU, when training on one
    gpu_capability: tuple | None = None  # its compute capability, (7, 5) for a T4


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


def read_hardware(device="cpu"):
    """This machine's Hardware; the GPU fields are filled when `device` is a CUDA device."""
    info = cpu_info()
    try:
        onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        onednn = False
    device = torch.device(device)
    gpu_name = gpu_capability = None
    if device.type == "cuda" and torch.cuda.is_available():
        gpu_name = torch.cuda.get_device_name(device)
        gpu_capability = tuple(torch.cuda.get_device_capability(device))
    return Hardware(platform.system(), platform.machine(),
                    frozenset(info["flags"].split()) if "flags" in info else None,
                    onednn, gpu_name, gpu_capability)


def cpu_has_fast_bf16(hardware=None):
    """True only where the CPU is known to have native bf16 units (AVX-512 BF16 or AMX) that
    oneDNN uses: the CPU's flags must say so. Where the system shows no flags (macOS, Windows)
    the answer is no: oneDNN alone also says yes on AVX-512 CPUs without bf16 units (Skylake,
    Ice Lake, Tiger Lake), where bf16 is emulated and about 20x slower than fp32.

    >>> cpu_has_fast_bf16(Hardware("Linux", cpu_flags=frozenset({"avx512f", "avx512_bf16"}), onednn_bf16=True))
    True
    >>> cpu_has_fast_bf16(Hardware("Windows", "AMD64", cpu_flags=None, onednn_bf16=True))
    False
    """
    hardware = hardware or read_hardware()
    return bool(hardware.onednn_bf16 and hardware.cpu_flags and hardware.cpu_flags & NATIVE_BF16_FLAGS)


def choose_precision(device, requested="auto", hardware=None):
    """The one place where training precision is decided, with the reason (logged once).

    auto: CUDA -> bf16 on compute capability 8.0 or higher (A100, L4, H100), else fp16 with a
                  gradient scaler (T4 7.5, V100 7.0: no bf16 units there, only emulation);
          CPU  -> bf16 autocast only where the CPU's flags show native bf16 units; elsewhere
                  (no such flag, macOS, Windows, anything unknown) fp32, because emulated bf16
                  is about 20x slower than fp32 (bench/bench_cpu_choices.py);
          mps  -> fp32.
    `hardware` (a Hardware) replaces what this machine reports; tests fake machines with it.
    >>> choose_precision("cuda", hardware=Hardware(gpu_name="Tesla T4", gpu_capability=(7, 5))).name
    'fp16'
    """
    device = torch.device(device)
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            why = ("asked for: fp16 autocast with a gradient scaler on the CPU, the code path of a T4 "
                   "GPU (for checking it; slower than fp32 on CPUs without fp16 units)")
        else:
            why = "asked for"
    else:
        hardware = hardware or read_hardware(device)
        requested, why = _auto_precision(device, hardware)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    return Precision(requested, dtype, autocast=requested != "fp32",
                     grad_scaler=requested == "fp16", reason=why)


def _auto_precision(device, hardware):
    """(precision name, reason) that --precision auto picks on `hardware`."""
    if device.type == "cuda":
        major, minor = hardware.gpu_capability or (0, 0)
        gpu = f"{hardware.gpu_name or 'CUDA GPU'} (compute capability {major}.{minor})"
        if (major, minor) >= BF16_GPU_CAPABILITY:
            return "bf16", f"{gpu} has native bf16"
        return "fp16", (f"{gpu} has no native bf16 (that needs compute capability 8.0 or higher): "
                        f"fp16 autocast with a gradient scaler")
    if device.type != "cpu":
        return "fp32", f"{device.type}: fp32"
    if cpu_has_fast_bf16(hardware):
        return "bf16", f"CPU has native bf16 units ({', '.join(sorted(hardware.cpu_flags & NATIVE_BF16_FLAGS))})"
    if hardware.cpu_flags:
        units = "oneDNN cannot use its bf16 units" if hardware.cpu_flags & NATIVE_BF16_FLAGS else \
            "CPU has no native bf16 units (no avx512_bf16 or amx_bf16 flag)"
        return "fp32", f"{units}: bf16 would be emulated, about 20x slower than fp32"
    system = {"Darwin": "macOS", "": "this system"}.get(hardware.system, hardware.system)
    why = (f"{system} does not show whether the CPU has native bf16 units, so fp32 "
           f"(--precision bf16 asks for bf16; it is about 20x slower where it is emulated)")
    if hardware.system == "Darwin" and hardware.machine == "arm64":
        why += "; on Apple silicon, --device mps trains on the Mac's GPU"
    return "fp32", why


# ----------------------------------------------------------------------------------------------
# Library versions: the ones a model was trained with (Colab's, say) go into its checkpoint

# The oldest releases with what this code calls: torch.amp.GradScaler for any device (torch 2.3),
# Tokenizer.encode_batch_fast (tokenizers 0.20), Dataset.from_list (datasets 2.14). Only the
# versions in requirements.txt are tested.
OLDEST_SUPPORTED = {"torch": "2.3", "tokenizers": "0.20", "datasets": "2.14"}


def version_tuple(version):
    """'2.9.0+cu126' -> (2, 9, 0)

    >>> version_tuple("2.9.0+cu126"), version_tuple("0.20") < version_tuple("0.19.1")
    ((2, 9, 0), False)
    """
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def library_versions():
    """{'python': '3.11.7', 'torch': '2.13.0+cpu', 'tokenizers': ..., 'datasets': ...}"""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "torch": str(torch.__version__)}  # a plain str: weights_only
    for name in ("tokenizers", "datasets"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_library_versions(versions=None):
    """One line naming the versions in use; UserError when one is older than OLDEST_SUPPORTED.

    >>> check_library_versions({"python": "3.12.1", "torch": "2.1.0", "tokenizers": "0.22.1", "datasets": "4.0.0"})
    Traceback (most recent call last):
    ...
    support.errors.UserError: torch 2.1.0 is older than this project supports (2.3 or newer): ...
    """
    versions = versions or library_versions()
    problems, names = [], []
    for name, oldest in OLDEST_SUPPORTED.items():
        if versions[name] == "not installed":
            problems.append(f"{name} is not installed")
        elif version_tuple(versions[name]) < version_tuple(oldest):
            problems.append(f"{name} {versions[name]} is older than this project supports ({oldest} or newer)")
        else:
            continue
        names.append(name)
    if problems:
        raise UserError(f"{'; '.join(problems)}: install a newer one with `pip install -U {' '.join(names)}` "
                        f"(in Colab, then Runtime > Restart session)")
    return ", ".join(f"{name} {value}" for name, value in versions.items())


# ----------------------------------------------------------------------------------------------
# The training process: device, ranks under torchrun, compilation

class Runtime:
    """Where and how this process trains; under torchrun, one of several ranks."""

    def __init__(self, config, hardware=None):
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
        self.precision = choose_precision(device, config.precision, hardware)
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
        return CompiledOrEager(module, self.log, self.distributed) if self.compile else module

    def close(self):
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


class CompiledOrEager:
    """torch.compile(module), and the way back to `module` itself when compiling fails (no C++
    compiler, bf16 code for a GPU older than sm_80, ...).

    Inductor compiles the forward pass at the first call and the backward pass at the first
    backward, so a failure can surface in either: train.train_step runs both through run_step,
    which says once what failed and runs the step again without compilation. Not under torchrun:
    DistributedDataParallel may already have reduced some gradients of the failed backward, and
    the other processes would not retry with this one, so there the run stops and says to pass
    --compile off. Running out of memory is not a compiler failure and is raised as it is.
    """

    def __init__(self, module, log, distributed=False):
        self.module, self.compiled, self.log, self.distributed = module, torch.compile(module), log, distributed

    def __call__(self, *args, **kwargs):
        net = self.module if self.compiled is None else self.compiled  # (not `or`: bool() calls len())
        return net(*args, **kwargs)

    def run_step(self, step):
        """step() (forward and backward through this module); if the compiled code fails
        anywhere in it, log the cause once and run step() again eagerly."""
        if self.compiled is None:
            return step()
        try:
            return step()
        except OUT_OF_MEMORY:
            raise
        except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager mode
            first_line = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            cause = f"{type(exc).__name__}: {first_line}"
            if self.distributed:
                raise UserError(f"torch.compile failed ({cause}); under torchrun the step cannot be rerun "
                                f"without it, so rerun with --compile off") from exc
            self.log(f"torch.compile failed ({cause}); continuing without compilation")
            self.compiled = None
        return step()


OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
