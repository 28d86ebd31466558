"""Plain helpers and constants shared by the test modules (`from helpers import ...`); fixtures live in
conftest.py. No test module imports another."""

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from config import make_config
from inference import MAX_INPUT_CHARS
from support import corpus
from tokenizer import train_tokenizer
from train import train_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root
TRAIN = [sys.executable, "train.py"]
# Text a user may type: the streaming generator and the IMDb classifier must answer all of it.
ODD_TEXTS = ["", "   \t\n ", "\x00\x07\x1b[31mred\x1b[0m\r\u202e", "emoji 😀🚀 中文问题 עברית مرحبا",
             "[SEP] [END] [PAD] [UNK] what?", "x" * (10 * MAX_INPUT_CHARS)]


# --- files and configs --------------------------------------------------------------------------

def write_jsonl(path, rows):
    """Write `rows` as JSON lines (gzipped when the name ends in .gz); returns the path as a string."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)


def make_tiny_config(folder=None, **overrides):
    """The tiny preset on the CPU with `overrides`; with `folder`, every file a run writes lies in it."""
    files = {} if folder is None else dict(
        tokenizer_filename=str(Path(folder) / "tokenizer.json"), model_filename=str(Path(folder) / "model.pth"),
        optimizer_filename=str(Path(folder) / "optimizer.pth"), log_filename=str(Path(folder) / "log.csv"),
        plot_filename=str(Path(folder) / "loss.png"))
    return make_config("tiny", **{"device": "cpu", **files, **overrides})


def small_model(seed=0, **overrides):
    """A seeded, untrained model in eval mode: vocabulary 300, embed 24, 3 heads, 2 layers, max_len 20."""
    from model import TransformerModel

    values = dict(vocab_size=300, embed_size=24, num_heads=3, num_layers=2, max_len=20, dropout_p=0.1)
    torch.manual_seed(seed)
    return TransformerModel(make_tiny_config(**{**values, **overrides})).eval()


# --- scripts run as a user runs them ------------------------------------------------------------

def run_script(*args):
    """Run `python *args` in the repository root; returns the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result, *needles):
    """The script failed with exit status 2 and one `error:` line on stderr naming every needle."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    for needle in needles:
        assert needle in message, message


# --- tiny training runs -------------------------------------------------------------------------

def tiny_run_config(folder, **overrides):
    """A tiny CPU fp32 run on built-in pairs, every file under `folder`."""
    values = dict(dataset=str(folder / "pairs.jsonl"), vocab_size=400, min_frequency=2,
                  embed_size=16, num_heads=2, num_layers=2, max_len=32, batch_size=16,
                  model_train_fraction=1.0, dataloader_num_workers=0, lr=3e-3, num_epochs=2,
                  precision="fp32", compile="off", warmup_steps=5, eval_every=0, checkpoint_every=10)
    return make_tiny_config(folder, **{**values, **overrides})


def cli_args(cfg):
    """The command-line options that make train.py run `cfg` (a tiny_run_config)."""
    keys = ["device", "dataset", "vocab_size", "min_frequency", "embed_size", "num_heads",
            "num_layers", "max_len", "batch_size", "model_train_fraction", "dataloader_num_workers",
            "lr", "num_epochs", "precision", "compile", "warmup_steps", "eval_every",
            "checkpoint_every", "tokenizer_filename", "model_filename", "optimizer_filename",
            "log_filename", "plot_filename", "dropout_p", "val_fraction"]
    return [arg for k in keys for arg in (f"--{k}", str(getattr(cfg, k)))]


def fresh_copy(pairs_folder, tmp_path):
    """Copy the pairs_folder fixture's pairs and tokenizer into `tmp_path` (no checkpoint); returns it."""
    for name in ("pairs.jsonl", "tokenizer.json"):
        (tmp_path / name).write_bytes((pairs_folder / name).read_bytes())
    return tmp_path


def poll_until(process, ready, timeout=120, interval=0.02):
    """True as soon as ready() holds while `process` runs; False if it ends (or time runs out) first."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if ready():
            return True
        time.sleep(interval)
    return False


def saved_step(path):
    """global_step in a model.json, 0 while there is none (or it is being replaced)."""
    try:
        return json.load(open(path))["global_step"]
    except (OSError, ValueError, KeyError):
        return 0


def reference_and_fresh_runs(pairs_folder, tmp_path, checkpoint_every):
    """Two equal run configs (dropout on): the first trained to the end as the reference, the second fresh."""
    folders = [fresh_copy(pairs_folder, tmp_path / name) for name in ("straight", "killed")
               if (tmp_path / name).mkdir() or True]
    configs = [tiny_run_config(f, num_epochs=2, checkpoint_every=checkpoint_every, dropout_p=0.1,
                               val_fraction=0.05) for f in folders]
    subprocess.run(TRAIN + cli_args(configs[0]), cwd=ROOT, check=True, capture_output=True)
    return configs


def assert_same_weights(cfg_a, cfg_b):
    """The two runs' saved model weights are bit-for-bit equal."""
    a = torch.load(cfg_a.model_filename, weights_only=True)
    b = torch.load(cfg_b.model_filename, weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def train_tiny_chat_model(folder):
    """A tokenizer and a model trained for one short epoch on 80 built-in pairs, under `folder`.

    Returns (config, chat arguments for the page).
    """
    folder = Path(folder)
    rows = corpus.generate("train")[:80]
    cfg = make_tiny_config(folder, dataset=write_jsonl(folder / "pairs.jsonl", rows), vocab_size=300,
                           min_frequency=1, max_len=32, batch_size=32, num_epochs=1, val_fraction=0.2,
                           warmup_steps=1, lr=3e-3, precision="fp32", compile="off",
                           dataloader_num_workers=0)
    train_tokenizer(cfg)
    train_model(cfg)
    return cfg, page_arguments(cfg)


def page_arguments(cfg):
    """The chat page's command-line arguments (INF265_CHAT_ARGS) for the model `cfg` describes."""
    return ["--preset", "tiny", "--device", "cpu", "--vocab_size", str(cfg.vocab_size),
            "--tokenizer_filename", cfg.tokenizer_filename, "--model_filename", cfg.model_filename]
