"""The checkpoint format: what train.py saves and resumes, and what the chat page reads.

Files of one run (names from config), all written by TrainingState.save:
    model_filename      temp/model.pth      the weights: a plain state_dict, as the template saves it
    optimizer_filename  temp/optimizer.pth  the rest of the training state: optimizer, scheduler,
                                            scaler, Progress, RNG states, and the fingerprint of
                                            the weights in model.pth it belongs to
    model_filename.json temp/model.json     model shape, tokenizer fingerprint, step, val loss,
                                            library versions

The weights are stored once (model.pth): a save of the default 36M model writes 145 MB of weights
and 290 MB of AdamW moments (bench/bench_checkpoint_bytes.py). Read back by TrainingState.resume
(train.py continues a run; a course-template checkpoint is accepted too) and by
inference.load_trained_run (the CLI, the chat page, the tools).

Every file is written in full to a temporary file and renamed into place (support.files).
model.pth and optimizer.pth are both written before either is renamed; a crash between the two
renames leaves the new model.pth beside the finished new training state's temporary file, which
adopt_finished_state recognises by the weights' fingerprint and renames into place before resuming.
"""

import glob
import hashlib
import json
import math
import os
import random
import shutil
from dataclasses import dataclass

import numpy as np
import torch

from support.errors import UserError
from support.files import atomic_write_json, ensure_parent_dir, load_file, replace, write_temporary
from support.runtime import library_versions

STATE_FORMAT = "inf265-train-state-v2"  # v1 held the weights too; resume still reads it
OLD_STATE_FORMATS = ("inf265-train-state-v1",)

# The config keys that fix the shapes of TransformerModel's tensors.
MODEL_KEYS = ("vocab_size", "embed_size", "num_heads", "num_layers", "max_len")


def sidecar_filename(model_filename):
    """temp/model.pth -> temp/model.json"""
    return os.path.splitext(model_filename)[0] + ".json"


def weights_fingerprint(weights):
    """sha256 over a state_dict's names, dtypes, shapes and bytes: ties a training state to the
    model.pth it was saved with."""
    digest = hashlib.sha256()
    for key, tensor in weights.items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
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


def read_sidecar(model_filename):
    """The model.json written beside model.pth, or {} when there is none (a template checkpoint)."""
    path = sidecar_filename(model_filename)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.load(handle)
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}  # the weights are what matters; a broken note about them is not fatal


def shape_from_weights(weights, config):
    """Model shape read off a state_dict, all but num_heads (see head_count_for)."""
    vocab, embed = weights["embedding.weight"].shape
    layers = {int(k.split(".")[1]) for k in weights if k.startswith("layers.")}
    max_len = weights["causal_mask"].shape[0] if "causal_mask" in weights else config.max_len
    return {"vocab_size": int(vocab), "embed_size": int(embed), "num_layers": len(layers),
            "max_len": int(max_len)}


def adopt_finished_state(config):
    """Mend a save that was cut between its two renames: model.pth is then newer than optimizer.pth,
    and the newer training state lies finished in a temporary file, recognised by the weights'
    fingerprint; rename it into place. True if it did. One process only (train.py's main one),
    before any process resumes; a damaged file is left for resume to report."""
    state_path = config.optimizer_filename
    finished = sorted(glob.glob(glob.escape(state_path) + ".tmp-*"))
    if not finished or not (os.path.isfile(state_path) and os.path.isfile(config.model_filename)):
        return False  # nothing to mend: no file is read (the usual case)
    try:
        state = load_file(state_path, "training state")
        if not isinstance(state, dict) or "weights_sha256" not in state:
            return False
        fingerprint = weights_fingerprint(load_file(config.model_filename, "model checkpoint"))
    except UserError:
        return False
    if state["weights_sha256"] == fingerprint:
        return False
    for candidate in finished:
        try:
            newer = load_file(candidate, "training state")
        except UserError:  # cut short while it was written
            continue
        if isinstance(newer, dict) and newer.get("weights_sha256") == fingerprint:
            os.replace(candidate, state_path)
            return True
    return False


# ----------------------------------------------------------------------------------------------
# RNG states: part of the training state, so a resumed run draws what the interrupted one would

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


# ----------------------------------------------------------------------------------------------
# The training state: saved by train.py, read back to resume

class Progress:
    """Where training stands; saved in the training-state file."""

    def __init__(self):
        self.epoch = 0  # current epoch (0-based)
        self.step_in_epoch = 0  # batches of this epoch already trained
        self.global_step = 0  # optimizer steps in total
        self.epoch_loss = 0.0  # summed loss and tokens of this epoch, for the epoch mean
        self.epoch_tokens = 0
        self.val_loss = float("nan")

    def advance(self, loss, tokens):
        """Count one optimizer step whose mean loss over `tokens` target tokens was `loss`."""
        self.step_in_epoch += 1
        self.global_step += 1
        self.epoch_loss += loss * tokens
        self.epoch_tokens += tokens

    def epoch_mean(self):
        return self.epoch_loss / max(self.epoch_tokens, 1)

    def next_epoch(self):
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.epoch_loss, self.epoch_tokens = 0.0, 0

    def as_dict(self):
        return dict(vars(self))

    def load(self, saved):
        for key, value in saved.items():
            setattr(self, key, value)


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly where it stopped."""

    model: torch.nn.Module  # the uncompiled model: its keys never carry _orig_mod. or module.
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    progress: Progress
    data: dict  # what fixes the data order (pairs, batch size, seed, ...), to warn when it changed
    tokenizer_sha256: str

    def save(self, config):
        """model.pth (the weights), the training state (everything else, with the weights'
        fingerprint), then model.json. Both .pth files are written in full before either
        replaces its old copy (see the module docstring)."""
        shape, weights = model_shape(config), self.model.state_dict()
        state = {
            "format": STATE_FORMAT,
            "weights_sha256": weights_fingerprint(weights),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": self.progress.as_dict(),
            "data": self.data,
            "rng": get_rng_state(),
            "model_shape": shape,
            "tokenizer_sha256": self.tokenizer_sha256,
            "versions": library_versions(),
        }
        write_temporary(config.optimizer_filename, lambda handle: torch.save(state, handle))
        write_temporary(config.model_filename, lambda handle: torch.save(weights, handle))
        replace(config.model_filename)
        replace(config.optimizer_filename)
        val_loss = self.progress.val_loss
        atomic_write_json({
            "model_shape": shape,
            "tokenizer_filename": config.tokenizer_filename,
            "tokenizer_sha256": self.tokenizer_sha256,
            "dataset": config.dataset,
            "split": config.split,
            "data": self.data,  # pairs used, validation share and seed: which questions it never saw
            "epoch": self.progress.epoch,
            "global_step": self.progress.global_step,
            "val_loss": None if math.isnan(val_loss) else val_loss,
            "parameters": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "versions": state["versions"],  # the libraries that trained it (Colab's, say)
        }, sidecar_filename(config.model_filename))

    def resume(self, config):
        """Load the checkpoint this run should continue from, if any; return a message for the log.

        Accepts this project's training state (and its earlier format, which held the weights
        too), a course-template run (optimizer.pth holding only the optimizer's state_dict) and a
        lone model.pth; refuses another model shape or tokenizer.
        """
        state_path, model_path = config.optimizer_filename, config.model_filename
        start_over = f"delete {model_path!r} and {state_path!r}, or pass --fresh, to start over"
        if not os.path.exists(state_path):
            if os.path.exists(model_path):
                self._load_weights(model_path, config, start_over)
                return f"Loaded weights from {model_path} (no training state found: starting at epoch 1)"
            return None
        state = load_file(state_path, "training state")
        if isinstance(state, dict) and {"state", "param_groups"} <= set(state) and "format" not in state:
            self._load_weights(model_path, config, start_over)
            self.optimizer.load_state_dict(state)
            return (f"Loaded a course-template checkpoint ({model_path}, {state_path}): weights and "
                    f"optimizer restored; the template saves no position, so training starts at epoch 1")
        if not isinstance(state, dict) or state.get("format") not in (STATE_FORMAT, *OLD_STATE_FORMATS):
            raise UserError(f"{state_path!r} is not a training-state file of this project; {start_over}")
        problems = shape_mismatches(state["model_shape"], config)
        if problems:
            raise UserError(f"checkpoint {state_path!r} is for another model shape "
                            f"({'; '.join(problems)}); use the matching --preset, or {start_over}")
        if state["tokenizer_sha256"] != self.tokenizer_sha256:
            raise UserError(f"checkpoint {state_path!r} was trained with a different tokenizer than "
                            f"{config.tokenizer_filename!r}; restore that tokenizer, or {start_over}")
        notes = []
        if "weights_sha256" in state:  # model.pth holds the weights
            state, note = self._state_of_the_weights(state, config, start_over)
            notes += [note] if note else []
        else:  # the earlier format, weights inside
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress.load(state["progress"])
        set_rng_state(state["rng"])
        progress = self.progress
        message = (f"Resumed from {state_path}: epoch {progress.epoch + 1}, step {progress.step_in_epoch} "
                   f"of the epoch, {progress.global_step} steps in total")
        if state["data"] != self.data:
            changed = sorted(k for k in self.data if state["data"].get(k) != self.data[k])
            notes.append(f"note: {', '.join(changed)} changed since the checkpoint, so the rest of this "
                         f"epoch sees a different data order than the interrupted run would have")
        return "\n".join([message, *notes])

    def _state_of_the_weights(self, state, config, start_over):
        """Load model.pth into the model; return (the training state, a note or None). When model.pth
        is not the one this state was saved with (a save cut between its renames, which
        adopt_finished_state mends before resuming; or model.pth copied from another run), training
        goes on from these weights with this state, and the note says the run is no longer exact."""
        weights = self._load_weights(config.model_filename, config, start_over)
        if state["weights_sha256"] == weights_fingerprint(weights):
            return state, None
        path = config.optimizer_filename
        return state, (f"note: {config.model_filename} is not the model.pth that {path} was saved "
                       f"with (it was replaced after that save); training goes on from its weights with "
                       f"the optimizer state and position of {path}, so this run is no longer exactly "
                       f"an uninterrupted one")

    def _load_weights(self, path, config, start_over):
        """Load `path` into the model; returns the state_dict as read."""
        weights = load_file(path, "model checkpoint")
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise UserError(f"model checkpoint {path!r} does not fit config (preset {config.preset}): "
                            f"{' '.join(first[:3])[:300]}; use the matching --preset, or {start_over}") from None
        return weights
