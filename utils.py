"""Small helpers of every script, as in the course template, plus seeding and one-line errors.

    from utils import get_num_params, print_config, seed_everything, run_main
"""

import random
import sys

import numpy as np
import torch

from support.errors import UserError


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
