"""Configuration shared by every Part 2 script: `from config import config`.

`config` holds the course template's keys and defaults, so template code (`config.batch_size`,
`vars(config)`, `config.tokenizer_filename = ...`) works unchanged. It is a Config: a
`types.SimpleNamespace` that can also be hashed, so `st.cache_resource` and `functools.cache` take
it as it is. Every key is written once, in KEYS: its default (which fixes its type), one line of
help and the rule its value must meet; the command line, the validation and the defaults are all
built from that table. Four presets exist:

    default   the template's GPT-2-style model (36,261,920 parameters), files in temp/
    tiny      the template's tiny CPU override (vocab 5000, embed 16, 2 heads, 2 layers, ...),
              files in temp/tiny/ so switching presets never mixes tokenizers and checkpoints
    demo      a small model on the built-in generated corpus (runs offline), files in temp/demo/
    small     a 7.3M-parameter model for real questions, 2 epochs: about half an hour on 2 cores of
              an AVX2-only CPU (fp32), well under on CPUs with native bf16, files in temp/small/

Choose a preset without editing this file, and override any key from the command line of every
script:

    python train.py --preset tiny                  # or: INF265_PRESET=tiny python train.py
    python train.py --preset tiny --lr 3e-4 --batch_size 64
    python tokenizer.py --dataset path/to/pairs.jsonl.gz

Invalid values (heads not dividing the embedding size, max_len < 2, top_p outside (0, 1], ...)
fail at start with a message naming the key. `python train.py --help` lists every key with its
line of help. parse_cli returns a new Config; the imported `config` keeps the defaults (of
$INF265_PRESET when set), so scripts pass the parsed config on as an argument.
"""

import argparse
import os
import types
from dataclasses import dataclass

import torch

PRESET_ENV_VAR = "INF265_PRESET"


class ConfigError(ValueError):
    """A configuration value the scripts cannot run with; the message names the key."""


@dataclass(frozen=True)
class Rule:
    """What a value must be: `accepts(value)` is True, else the error says "must <says>"."""

    accepts: object
    says: str


def integer(at_least, why=""):
    return Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= at_least,
                f"must be an integer >= {at_least}{why}")


def number(low, high=None, low_open=False, high_open=False, why=""):
    """A number in the interval from low to high; open ends excluded. number(0, 1, low_open=True)
    is (0, 1]."""
    def accepts(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        above = v > low if low_open else v >= low
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    if high is None:
        says = f"must be {'>' if low_open else '>='} {low:g}{why}"
    else:
        says = f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}{why}"
    return Rule(accepts, says)


def one_of(*choices):
    return Rule(lambda v: v in choices, f"must be one of {', '.join(map(str, choices))}")


TEXT = Rule(lambda v: isinstance(v, str) and v != "", "must be a non-empty string")
DEVICE = Rule(lambda v: isinstance(v, str) and v.split(":")[0] in ("cpu", "cuda", "mps"),
              "must be 'cpu', 'cuda', 'cuda:N' or 'mps'")


@dataclass(frozen=True)
class Key:
    """One configuration key: its default value (which fixes its type), one line of help shown by
    --help, and the rule a value must meet (None: any value of the type)."""

    default: object
    help: str
    rule: Rule = None


# The template's keys, in the template's order, then the keys this project adds.
KEYS = {
    "seed": Key(0, "seed of every random choice (weights, data order, dropout)", integer(0)),
    "dataset": Key("odinhg/gooaq-subset", "question-answer source: a Hugging Face dataset name, a local "
                   ".jsonl/.jsonl.gz/.csv/.json file or folder, or 'builtin' (generated, offline)", TEXT),
    "split": Key("train", "split of the dataset to train on", TEXT),
    "device": Key("cuda" if torch.cuda.is_available() else "cpu", "cpu, cuda, cuda:N or mps", DEVICE),
    "vocab_size": Key(20_000, "size of the BPE vocabulary, special tokens included",
                      integer(260, " (256 byte symbols + 4 special tokens)")),
    "min_frequency": Key(5, "a pair must occur this often to become a BPE merge", integer(1)),
    "unk_token": Key("[UNK]", "the unknown-token string", TEXT),
    "sep_token": Key("[SEP]", "the separator between question and answer", TEXT),
    "end_token": Key("[END]", "the end-of-answer token", TEXT),
    "pad_token": Key("[PAD]", "the padding token", TEXT),
    "tokenizer_filename": Key("temp/tokenizer.json",
                              "where tokenizer.py saves the tokenizer and the other scripts read it", TEXT),
    "embed_size": Key(512, "width of the model (embedding and every block)", integer(1)),
    "num_heads": Key(8, "attention heads per block (must divide embed_size)", integer(1)),
    "num_layers": Key(5, "decoder blocks", integer(1)),
    "dropout_p": Key(0.1, "dropout probability in training", number(0, 1, high_open=True)),
    "max_len": Key(128, "longest sequence (question, [SEP] and answer) the model reads",
                   integer(2, " (one question token and [SEP] at least)")),
    "model_train_fraction": Key(1.0, "share of the dataset's pairs to use (1.0: all)", number(0, 1, low_open=True)),
    "batch_size": Key(128, "pairs per optimizer step (per process under torchrun)", integer(1)),
    "dataloader_num_workers": Key(2, "processes that collate batches (0: in the training process)", integer(0)),
    "lr": Key(1e-4, "peak learning rate of AdamW", number(0, low_open=True)),
    "num_epochs": Key(5, "passes over the training pairs", integer(0)),
    "model_filename": Key("temp/model.pth", "the trained weights (a plain state_dict)", TEXT),
    "optimizer_filename": Key("temp/optimizer.pth", "the training state besides the weights (optimizer, "
                              "position, RNG), for resuming", TEXT),
    # Added by this project.
    "preset": Key("default", "the preset these values started from"),  # checked against PRESETS below
    "top_p": Key(0.95, "top-p sampling: keep the most likely tokens up to this probability mass",
                 number(0, 1, low_open=True)),
    "temperature": Key(0.7, "divide the logits by this before sampling (below 1: more conservative)",
                       number(0, low_open=True, why=" (use --top_p or greedy decoding for deterministic "
                                                        "answers)")),
    # Training (train.py); see README "Training".
    "precision": Key("auto", "auto, fp32, bf16 or fp16 (auto: bf16 on GPUs of compute capability 8.0 or "
                     "higher, fp16 with a gradient scaler on older ones such as the T4; bf16 on CPUs whose "
                     "flags show native bf16 units, else fp32)", one_of("auto", "fp32", "bf16", "fp16")),
    "compile": Key("auto", "torch.compile the training model: auto (on for CUDA), on or off",
                   one_of("auto", "on", "off")),
    "fused_loss": Key("auto", "compute the output layer and the loss together (support/fused_loss.py): auto "
                      "(on in fp32 and bf16, off under fp16's gradient scaler), on or off (the plain "
                      "F.cross_entropy of the logits)", one_of("auto", "on", "off")),
    "weight_decay": Key(0.01, "AdamW's weight decay (its default, as the template's optimizer)", number(0)),
    "grad_clip": Key(1.0, "largest gradient norm (0: no clipping)", number(0)),
    "lr_schedule": Key("cosine", "cosine or constant, after the warmup", one_of("cosine", "constant")),
    "warmup_steps": Key(200, "steps of linear warmup from lr / warmup_steps to lr", integer(0)),
    "min_lr_ratio": Key(0.1, "the cosine schedule ends at lr * min_lr_ratio", number(0, 1)),
    "length_grouping": Key(True, "batch pairs of similar length together (each batch is padded to its longest)"),
    "pad_multiple": Key(8, "round each batch's length up to a multiple of this (fewer shapes to compile)",
                        integer(1)),
    "val_fraction": Key(0.01, "held-out share of the pairs for the validation loss", number(0, 1, high_open=True)),
    "eval_every": Key(500, "steps between validation runs (0: only at each epoch end)", integer(0)),
    "eval_max_batches": Key(50, "batches per mid-epoch validation (the epoch-end one uses all)", integer(0)),
    "checkpoint_every": Key(0, "steps between checkpoints (0: off; one is also saved at every epoch end)",
                            integer(0)),
    "checkpoint_minutes": Key(15.0, "minutes of training between checkpoints (0: off); each save of the "
                              "default model writes 435 MB, to Google Drive on Colab",
                              number(0, why=" (0: save by --checkpoint_every steps only)")),
    "max_steps": Key(0, "stop after this many optimizer steps in total (0: run all epochs)", integer(0)),
    "log_filename": Key("temp/train_log.csv", "CSV log of every step", TEXT),
    "plot_filename": Key("temp/loss_curve.png", "loss-curve PNG written when training ends", TEXT),
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
    # loss further (docs/MEASURED.md). 3.6 % of the course's GooAQ subset is about 31,000 pairs;
    # with a file of your own, pass --dataset FILE --model_train_fraction 1.
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
    # 91.4 % held-out accuracy on CPUs with bf16 units, 90.0 % on an AVX2 one, against 57 % with a
    # vocabulary of 1,000 (docs/MEASURED.md).
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


def check_value(key, value):
    """`value` if it meets KEYS[key].rule, else ConfigError naming the key (a ValueError).

    >>> check_value("top_p", 1.5)
    Traceback (most recent call last):
    ...
    config.ConfigError: config.top_p=1.5 must be in (0, 1]
    """
    rule = KEYS[key].rule
    if rule is not None and not rule.accepts(value):
        raise ConfigError(f"config.{key}={value!r} {rule.says}")
    return value


def validate_config(cfg):
    """Check `cfg` and raise ConfigError naming the first bad key.

    >>> validate_config(make_config(num_heads=7))
    Traceback (most recent call last):
    ...
    config.ConfigError: config.num_heads=7 must divide config.embed_size=512 ...
    """
    for key in KEYS:
        check_value(key, getattr(cfg, key))
    if cfg.embed_size % cfg.num_heads != 0:
        raise ConfigError(f"config.num_heads={cfg.num_heads} must divide config.embed_size={cfg.embed_size} "
                          f"(try --num_heads {_nearest_divisor(cfg.embed_size, cfg.num_heads)})")
    tokens = [cfg.sep_token, cfg.end_token, cfg.pad_token, cfg.unk_token]
    if len(set(tokens)) != 4:
        raise ConfigError(f"config.sep_token={cfg.sep_token!r} and the end, pad and unk tokens must be four "
                          f"distinct strings, got {tokens}")
    if cfg.preset not in PRESETS:
        raise ConfigError(f"config.preset={cfg.preset!r} is not one of {sorted(PRESETS)}")
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
    unknown = sorted(set(overrides) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known keys: {sorted(KEYS)}")
    defaults = {key: spec.default for key, spec in KEYS.items()}
    return validate_config(Config(**{**defaults, **PRESETS[preset], "preset": preset, **overrides}))


def parse_value(key, text):
    """Parse a command-line string into the type of the key's default.

    >>> parse_value("vocab_size", "20_000"), parse_value("lr", "3e-4"), parse_value("dataset", "x")
    (20000, 0.0003, 'x')
    """
    kind = type(KEYS[key].default)
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
    for key, spec in KEYS.items():
        if key == "preset":
            continue
        flags = [f"--{key}"] + ([f"--{key.replace('_', '-')}"] if "_" in key else [])
        group.add_argument(*flags, dest=f"config_{key}", metavar=type(spec.default).__name__.upper(),
                           default=None, help=f"{spec.help} (default {spec.default!r})")
    return parser


def config_from_args(args):
    """Build the config an argparse namespace (from add_config_arguments) asks for."""
    preset = args.preset or os.environ.get(PRESET_ENV_VAR) or "default"
    overrides = {}
    for key in KEYS:
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
