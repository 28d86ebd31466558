"""Configuration shared by every Part 2 script: `from config import config`.

`config` holds the course template's keys and defaults, so template code (`config.batch_size`,
`vars(config)`) works unchanged. It is a Config: a `types.SimpleNamespace` that can also be
hashed, so `st.cache_resource` and `functools.cache` take it as it is. Four presets exist:

    default   the template's GPT-2-style model (36,261,920 parameters), files in temp/
    tiny      the template's tiny CPU override (vocab 5000, embed 16, 2 heads, 2 layers, ...),
              files in temp/tiny/ so switching presets never mixes tokenizers and checkpoints
    demo      a small model on the built-in generated corpus (runs offline), files in temp/demo/
    small     a 7.3M-parameter model for real questions, 2 epochs: about half an hour on 2 cores of
              an AVX2-only CPU (fp32), well under on CPUs with native bf16 (README), files in temp/small/

Choose a preset without editing this file, and override any key from the command line of every
script:

    python train.py --preset tiny                  # or: INF265_PRESET=tiny python train.py
    python train.py --preset tiny --lr 3e-4 --batch_size 64
    python tokenizer.py --dataset path/to/pairs.jsonl.gz

Invalid values (heads not dividing the embedding size, max_len < 2, top_p outside (0, 1], ...)
fail at start with a message naming the key. `python train.py --help` lists every key with one
line saying what it does. parse_cli returns a new Config; the imported `config` keeps the
defaults (of $INF265_PRESET when set), so scripts pass the parsed config on as an argument.
"""

import argparse
import os
import types

import torch

PRESET_ENV_VAR = "INF265_PRESET"

# The template's keys, in the template's order, then the keys this project adds.
DEFAULTS = {
    "seed": 0,
    "dataset": "odinhg/gooaq-subset",
    "split": "train",
    "device": "cuda" if torch.cuda.is_available() else "cpu",
    "vocab_size": 20_000,
    "min_frequency": 5,
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "end_token": "[END]",
    "pad_token": "[PAD]",
    "tokenizer_filename": "temp/tokenizer.json",
    "embed_size": 512,
    "num_heads": 8,
    "num_layers": 5,
    "dropout_p": 0.1,
    "max_len": 128,
    "model_train_fraction": 1.0,
    "batch_size": 128,
    "dataloader_num_workers": 2,
    "lr": 1e-4,
    "num_epochs": 5,
    "model_filename": "temp/model.pth",
    "optimizer_filename": "temp/optimizer.pth",
    # Added by this project.
    "preset": "default",
    "top_p": 0.95,
    "temperature": 0.7,
    # Training (train.py); see README "Training".
    "precision": "auto",  # auto | fp32 | bf16 | fp16 (auto: see utils.choose_precision)
    "compile": "auto",  # auto | on | off (auto: on for CUDA)
    "weight_decay": 0.01,  # AdamW's default, as the template's optimizer
    "grad_clip": 1.0,  # max gradient norm; 0 turns clipping off
    "lr_schedule": "cosine",  # cosine | constant (both after warmup)
    "warmup_steps": 200,
    "min_lr_ratio": 0.1,  # cosine decays to lr * min_lr_ratio
    "length_grouping": True,  # batch similar lengths together (each batch is padded to its longest)
    "pad_multiple": 8,  # batch length rounded up to a multiple of this (fewer shapes to compile)
    "val_fraction": 0.01,  # held-out share of the loaded data for validation loss
    "eval_every": 500,  # steps between validation runs (0: only at epoch end)
    "eval_max_batches": 50,  # batches per mid-epoch validation (the epoch-end one uses all)
    "checkpoint_every": 0,  # steps between checkpoints (0: by time only; one at every epoch end)
    "checkpoint_minutes": 15.0,  # minutes between checkpoints (0: by steps only); see README "Colab"
    "max_steps": 0,  # stop after this many optimizer steps in total (0: run all epochs)
    "log_filename": "temp/train_log.csv",
    "plot_filename": "temp/loss_curve.png",
}


# One line per key, shown by --help.
HELP = {
    "seed": "seed of every random choice (weights, data order, dropout)",
    "dataset": "question-answer source: a Hugging Face dataset name, a local .jsonl/.jsonl.gz/.csv/"
               ".json file or folder, or 'builtin' (generated, offline)",
    "split": "split of the dataset to train on",
    "device": "cpu, cuda, cuda:N or mps",
    "vocab_size": "size of the BPE vocabulary, special tokens included",
    "min_frequency": "a pair must occur this often to become a BPE merge",
    "unk_token": "the unknown-token string",
    "sep_token": "the separator between question and answer",
    "end_token": "the end-of-answer token",
    "pad_token": "the padding token",
    "tokenizer_filename": "where tokenizer.py saves the tokenizer and the other scripts read it",
    "embed_size": "width of the model (embedding and every block)",
    "num_heads": "attention heads per block (must divide embed_size)",
    "num_layers": "decoder blocks",
    "dropout_p": "dropout probability in training",
    "max_len": "longest sequence (question, [SEP] and answer) the model reads",
    "model_train_fraction": "share of the dataset's pairs to use (1.0: all)",
    "batch_size": "pairs per optimizer step (per process under torchrun)",
    "dataloader_num_workers": "processes that collate batches (0: in the training process)",
    "lr": "peak learning rate of AdamW",
    "num_epochs": "passes over the training pairs",
    "model_filename": "the trained weights (a plain state_dict)",
    "optimizer_filename": "the training state besides the weights (optimizer, position, RNG), for resuming",
    "preset": "the preset these values started from",
    "top_p": "top-p sampling: keep the most likely tokens up to this probability mass",
    "temperature": "divide the logits by this before sampling (below 1: more conservative)",
    "precision": "auto, fp32, bf16 or fp16 (auto: bf16 on GPUs of compute capability 8.0 or "
                 "higher, fp16 with a gradient scaler on older ones such as the T4; bf16 on CPUs "
                 "whose flags show native bf16 units, else fp32)",
    "compile": "torch.compile the training model: auto (on for CUDA), on or off",
    "weight_decay": "AdamW's weight decay",
    "grad_clip": "largest gradient norm (0: no clipping)",
    "lr_schedule": "cosine or constant, after the warmup",
    "warmup_steps": "steps of linear warmup from lr / warmup_steps to lr",
    "min_lr_ratio": "the cosine schedule ends at lr * min_lr_ratio",
    "length_grouping": "batch pairs of similar length together (each batch is padded to its longest)",
    "pad_multiple": "round each batch's length up to a multiple of this (fewer shapes to compile)",
    "val_fraction": "held-out share of the pairs for the validation loss",
    "eval_every": "steps between validation runs (0: only at each epoch end)",
    "eval_max_batches": "batches per mid-epoch validation (the epoch-end one uses all)",
    "checkpoint_every": "steps between checkpoints (0: off; one is also saved at every epoch end)",
    "checkpoint_minutes": "minutes of training between checkpoints (0: off); each save of the default "
                          "model writes 435 MB, to Google Drive on Colab",
    "max_steps": "stop after this many optimizer steps in total (0: run all epochs)",
    "log_filename": "CSV log of every step",
    "plot_filename": "loss-curve PNG written when training ends",
}


class Config(types.SimpleNamespace):
    """The configuration: attributes as in the template, plus equality and a hash by value.

    >>> make_config("tiny") == make_config("tiny"), hash(make_config("tiny")) == hash(make_config("tiny"))
    (True, True)
    """

    def __hash__(self):
        return hash(tuple(sorted(vars(self).items())))


def _files_under(folder):
    return {
        "tokenizer_filename": f"{folder}/tokenizer.json",
        "model_filename": f"{folder}/model.pth",
        "optimizer_filename": f"{folder}/optimizer.pth",
        "log_filename": f"{folder}/train_log.csv",
        "plot_filename": f"{folder}/loss_curve.png",
    }


PRESETS = {
    "default": {},
    # The template ships this override commented out; here it is one flag away.
    "tiny": {
        "vocab_size": 5000,
        "embed_size": 16,
        "num_heads": 2,
        "num_layers": 2,
        "batch_size": 32,
        "num_epochs": 1,
        "max_len": 32,
        "model_train_fraction": 0.1,
        **_files_under("temp/tiny"),
    },
    # Real questions on a CPU in about half an hour on 2 cores: an epoch takes about 16 minutes in
    # fp32 on an AVX2-only CPU, much less with native bf16 units, where --num_epochs 3 lowers the
    # loss further (README, "A model trained on real questions"). 3.6 % of the course's GooAQ subset
    # is about 31,000 pairs; with a file of your own, pass --dataset FILE --model_train_fraction 1.
    "small": {
        "vocab_size": 8000,
        "embed_size": 256,
        "num_heads": 4,
        "num_layers": 4,
        "max_len": 128,
        "model_train_fraction": 0.036,
        "batch_size": 32,
        "dataloader_num_workers": 0,
        "lr": 1e-3,
        "num_epochs": 2,
        "warmup_steps": 200,
        "val_fraction": 0.02,
        "eval_every": 300,
        **_files_under("temp/small"),
    },
    # Small enough to train on a laptop CPU in minutes, on data the project generates itself.
    # A vocabulary of 360 keeps pseudo-words and numbers as single letters and digits (only the
    # template words merge), so spelling, counting and comparing generalise to held-out questions:
    # 90.0 % held-out accuracy against 57 % with a vocabulary of 1,000 (README, "Measured").
    "demo": {
        "dataset": "builtin",
        "vocab_size": 360,
        "min_frequency": 2,
        "embed_size": 128,
        "num_heads": 4,
        "num_layers": 3,
        "dropout_p": 0.0,
        "max_len": 64,
        "batch_size": 64,
        "dataloader_num_workers": 0,
        "lr": 2e-3,
        "num_epochs": 5,
        **_files_under("temp/demo"),
    },
}


class ConfigError(ValueError):
    """A configuration value the scripts cannot run with; the message names the key."""


def validate_config(cfg):
    """Check `cfg` and raise ConfigError naming the first bad key.

    >>> validate_config(make_config(num_heads=7))
    Traceback (most recent call last):
    ...
    config.ConfigError: config.num_heads=7 must divide config.embed_size=512 ...
    """
    def fail(key, why):
        raise ConfigError(f"config.{key}={getattr(cfg, key)!r} {why}")

    for key in ("vocab_size", "embed_size", "num_heads", "num_layers", "batch_size", "min_frequency"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(key, "must be a positive integer")
    if cfg.embed_size % cfg.num_heads != 0:
        fail("num_heads", f"must divide config.embed_size={cfg.embed_size} "
             f"(try --num_heads {_nearest_divisor(cfg.embed_size, cfg.num_heads)})")
    if not isinstance(cfg.max_len, int) or cfg.max_len < 2:
        fail("max_len", "must be an integer >= 2 (one question token and [SEP] at least)")
    # 256 byte-level symbols plus the four special tokens must fit in the vocabulary.
    if cfg.vocab_size < 260:
        fail("vocab_size", "must be at least 260 (256 byte symbols + 4 special tokens)")
    if not 0.0 <= cfg.dropout_p < 1.0:
        fail("dropout_p", "must be in [0, 1)")
    if not 0.0 < cfg.model_train_fraction <= 1.0:
        fail("model_train_fraction", "must be in (0, 1]")
    if not 0.0 < cfg.top_p <= 1.0:
        fail("top_p", "must be in (0, 1]")
    if not cfg.temperature > 0.0:
        fail("temperature", "must be > 0 (use --top_p or greedy decoding for deterministic answers)")
    if not cfg.lr > 0.0:
        fail("lr", "must be > 0")
    if not isinstance(cfg.num_epochs, int) or cfg.num_epochs < 0:
        fail("num_epochs", "must be an integer >= 0")
    if not isinstance(cfg.dataloader_num_workers, int) or cfg.dataloader_num_workers < 0:
        fail("dataloader_num_workers", "must be an integer >= 0")
    if cfg.device.split(":")[0] not in ("cpu", "cuda", "mps"):
        fail("device", "must be 'cpu', 'cuda', 'cuda:N' or 'mps'")
    tokens = [cfg.sep_token, cfg.end_token, cfg.pad_token, cfg.unk_token]
    if len(set(tokens)) != 4 or not all(tokens):
        fail("sep_token", "and end/pad/unk tokens must be four distinct non-empty strings")
    if cfg.preset not in PRESETS:
        fail("preset", f"is not one of {sorted(PRESETS)}")
    choices = {"precision": ("auto", "fp32", "bf16", "fp16"), "compile": ("auto", "on", "off"),
               "lr_schedule": ("cosine", "constant")}
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            fail(key, f"must be one of {', '.join(allowed)}")
    for key in ("warmup_steps", "eval_every", "eval_max_batches", "checkpoint_every", "max_steps",
                "pad_multiple"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (key == "pad_multiple"):
            fail(key, "must be an integer >= " + ("1" if key == "pad_multiple" else "0"))
    if isinstance(cfg.checkpoint_minutes, bool) or not cfg.checkpoint_minutes >= 0:
        fail("checkpoint_minutes", "must be >= 0 (0: save by --checkpoint_every steps only)")
    if not 0.0 <= cfg.val_fraction < 1.0:
        fail("val_fraction", "must be in [0, 1)")
    if not 0.0 <= cfg.min_lr_ratio <= 1.0:
        fail("min_lr_ratio", "must be in [0, 1]")
    if cfg.grad_clip < 0 or cfg.weight_decay < 0:
        fail("grad_clip" if cfg.grad_clip < 0 else "weight_decay", "must be >= 0")
    return cfg


def _nearest_divisor(n, k):
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


def make_config(preset="default", **overrides):
    """A fresh, validated config: template defaults, then the preset, then `overrides`.

    >>> make_config("tiny", lr=3e-4).embed_size, make_config("tiny", lr=3e-4).lr
    (16, 0.0003)
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    unknown = sorted(set(overrides) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(DEFAULTS)}")
    values = {**DEFAULTS, **PRESETS[preset], "preset": preset, **overrides}
    return validate_config(Config(**values))


def parse_value(key, text):
    """Parse a command-line string into the type of the key's default.

    >>> parse_value("vocab_size", "20_000"), parse_value("lr", "3e-4"), parse_value("dataset", "x")
    (20000, 0.0003, 'x')
    """
    kind = type(DEFAULTS[key])
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        return kind(text)
    except ValueError:
        raise ConfigError(f"config.{key}: cannot read {text!r} as {kind.__name__}") from None


def add_config_arguments(parser):
    """Add --preset/--tiny and one --KEY option per config key to an argparse parser."""
    group = parser.add_argument_group("configuration (see config.py)")
    group.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help=f"preset to start from (default: ${PRESET_ENV_VAR} or 'default')")
    group.add_argument("--tiny", dest="preset", action="store_const", const="tiny",
                       help="shorthand for --preset tiny")
    for key, default in DEFAULTS.items():
        if key == "preset":
            continue
        flags = [f"--{key}"] + ([f"--{key.replace('_', '-')}"] if "_" in key else [])
        group.add_argument(*flags, dest=f"config_{key}", metavar=type(default).__name__.upper(),
                           default=None, help=f"{HELP[key]} (default {default!r})")
    return parser


def config_from_args(args):
    """Build the config an argparse namespace (from add_config_arguments) asks for."""
    preset = args.preset or os.environ.get(PRESET_ENV_VAR) or "default"
    overrides = {}
    for key in DEFAULTS:
        text = getattr(args, f"config_{key}", None)
        if text is not None:
            overrides[key] = parse_value(key, text)
    return make_config(preset, **overrides)


def parse_cli(argv=None, description=None, parser=None):
    """Parse a script's command line: (a new Config, the argparse namespace).

    The imported `config` is left as it is; the script passes the returned one on. The namespace
    carries the script's own extra options.
    """
    parser = parser or argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    return config_from_args(args), args


config = make_config(os.environ.get(PRESET_ENV_VAR) or "default")
