"""Small helpers shared by the scripts, and the one place where device and seeding are decided.

    from utils import get_num_params, print_config, resolve_device, seed_everything, run_main
"""

import os
import random
import sys

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


def ensure_parent_dir(path):
    """Create the folder a file will be written to; fail early and clearly if we cannot."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {folder!r} for {path!r}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise UserError(f"folder {folder!r} is not writable; cannot save {path!r}")
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
