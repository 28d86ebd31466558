"""Checkpoint files: written atomically, read with `weights_only=True`, checked against the config.

Files of one run (names from config):
    model_filename      temp/model.pth      plain state_dict, as the template saves it
    optimizer_filename  temp/optimizer.pth  the whole training state (see train.py): weights,
                                            optimizer, scheduler, scaler, position, RNG states
    model_filename.json temp/model.json     model shape, tokenizer fingerprint, step, val loss

A write goes to a temporary file in the same folder, is flushed to disk, then renamed over the old
file, so a crash during a save leaves the previous checkpoint intact. Every read uses
`torch.load(..., weights_only=True)`: no pickled code is ever run.
"""

import hashlib
import json
import os
import shutil

import torch

from utils import UserError, ensure_parent_dir

# The config keys that fix the shapes of TransformerModel's tensors.
MODEL_KEYS = ("vocab_size", "embed_size", "num_heads", "num_layers", "max_len")


def sidecar_filename(model_filename):
    """temp/model.pth -> temp/model.json"""
    return os.path.splitext(model_filename)[0] + ".json"


def _replace_atomically(path, write):
    ensure_parent_dir(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"could not write {path!r}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path):
    """torch.save to `path` so that readers see the old file or the new one, never half of one."""
    _replace_atomically(path, lambda handle: torch.save(obj, handle))


def atomic_write_json(obj, path):
    _replace_atomically(path, lambda handle: handle.write(json.dumps(obj, indent=2).encode()))


def load_file(path, what="checkpoint"):
    """torch.load(path, weights_only=True) with one-line errors for missing or damaged files."""
    if not os.path.isfile(path):
        raise UserError(f"{what} {path!r} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle with code in it, random bytes, ...
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what} {path!r} is damaged or not a PyTorch checkpoint ({reason}); "
                        f"delete it (or pass --fresh to train.py) and train again") from None


def file_sha256(path):
    """Fingerprint of a file (the tokenizer), to tell whether a checkpoint was trained with it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_shape(config):
    return {key: getattr(config, key) for key in MODEL_KEYS}


def shape_mismatches(saved, config):
    """['embed_size: checkpoint 16, config 512', ...] for every shape key that differs."""
    return [f"{key}: checkpoint {saved[key]}, config {getattr(config, key)}"
            for key in MODEL_KEYS if key in saved and saved[key] != getattr(config, key)]


def check_free_space(path, needed_bytes):
    """Fail before training, not after an hour, when the checkpoint folder cannot hold a save."""
    folder = os.path.dirname(os.path.abspath(ensure_parent_dir(path)))
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise UserError(f"only {free / 2**20:.0f} MiB free in {folder!r} but a checkpoint needs "
                        f"about {needed_bytes / 2**20:.0f} MiB; free some space or point "
                        f"--model_filename/--optimizer_filename elsewhere")
