"""config.py: template keys and defaults, presets, command-line overrides, validation."""

import os
import subprocess
import sys

import pytest

from config import KEYS, ConfigError, config_from_args, make_config, parse_cli, parse_value
from helpers import ROOT

TEMPLATE_DEFAULTS = {
    "seed": 0, "dataset": "odinhg/gooaq-subset", "split": "train", "vocab_size": 20000,
    "min_frequency": 5, "unk_token": "[UNK]", "sep_token": "[SEP]", "end_token": "[END]",
    "pad_token": "[PAD]", "tokenizer_filename": "temp/tokenizer.json", "embed_size": 512,
    "num_heads": 8, "num_layers": 5, "dropout_p": 0.1, "max_len": 128,
    "model_train_fraction": 1.0, "batch_size": 128, "dataloader_num_workers": 2, "lr": 1e-4,
    "num_epochs": 5, "model_filename": "temp/model.pth", "optimizer_filename": "temp/optimizer.pth",
}


def test_defaults_are_the_templates():
    cfg = make_config()
    for key, value in TEMPLATE_DEFAULTS.items():
        assert getattr(cfg, key) == value, key
    assert cfg.device in ("cpu", "cuda")


def test_template_keys_come_first_in_template_order():
    assert list(KEYS)[: len(TEMPLATE_DEFAULTS) + 1] == (
        list(TEMPLATE_DEFAULTS)[:3] + ["device"] + list(TEMPLATE_DEFAULTS)[3:])


def test_tiny_preset_is_the_templates_override_with_its_own_files():
    cfg = make_config("tiny")
    assert (cfg.vocab_size, cfg.embed_size, cfg.num_heads, cfg.num_layers, cfg.batch_size,
            cfg.num_epochs, cfg.max_len, cfg.model_train_fraction) == (5000, 16, 2, 2, 32, 1, 32, 0.1)
    assert cfg.tokenizer_filename == "temp/tiny/tokenizer.json"
    assert cfg.model_filename == "temp/tiny/model.pth"
    assert cfg.lr == 1e-4  # untouched keys keep the template default


def test_demo_preset_runs_offline():
    assert make_config("demo").dataset == "builtin"


def test_environment_variable_selects_preset_without_editing_the_file():
    env = {**os.environ, "INF265_PRESET": "tiny"}
    out = subprocess.run([sys.executable, "-c", "from config import config; print(config.embed_size)"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "16"


def test_cli_overrides_any_key_and_leaves_the_imported_config_alone():
    from config import config

    before = dict(vars(config))
    cfg, _ = parse_cli(["--preset", "tiny", "--lr", "3e-4", "--batch-size", "7",
                        "--dataset", "pairs.jsonl"])
    assert (cfg.lr, cfg.batch_size, cfg.dataset, cfg.embed_size) == (3e-4, 7, "pairs.jsonl", 16)
    assert config is not cfg and vars(config) == before == vars(make_config())


def test_every_key_has_one_line_of_help(capsys):
    with pytest.raises(SystemExit):
        parse_cli(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for key in KEYS:
        if key != "preset":
            assert f"--{key} " in shown and " ".join(KEYS[key].help.split()) in shown, key


def test_a_config_can_be_hashed_and_cached_as_it_is():
    import functools

    calls = []

    @functools.cache
    def load(cfg):
        calls.append(cfg)
        return cfg.embed_size

    assert load(make_config("tiny")) == load(make_config("tiny")) == 16 and len(calls) == 1
    assert load(make_config("tiny", lr=1e-3)) == 16 and len(calls) == 2  # any changed value: a new entry
    assert hash(make_config("tiny")) != hash(make_config("tiny", lr=1e-3))


def test_tiny_flag_is_shorthand():
    cfg, _ = parse_cli(["--tiny"])
    assert cfg.preset == "tiny" and cfg.embed_size == 16


def test_cli_preset_wins_over_environment(monkeypatch):
    monkeypatch.setenv("INF265_PRESET", "tiny")
    assert parse_cli([])[0].preset == "tiny"
    assert parse_cli(["--preset", "default"])[0].embed_size == 512


@pytest.mark.parametrize("overrides, key", [
    ({"num_heads": 7}, "num_heads"),
    ({"embed_size": 30, "num_heads": 4}, "num_heads"),
    ({"max_len": 1}, "max_len"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"temperature": 0.0}, "temperature"),
    ({"vocab_size": 100}, "vocab_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"dropout_p": 1.0}, "dropout_p"),
    ({"model_train_fraction": 0.0}, "model_train_fraction"),
    ({"device": "tpu"}, "device"),
    ({"lr": -1.0}, "lr"),
    ({"pad_token": "[SEP]"}, "sep_token"),
])
def test_invalid_values_fail_naming_the_key(overrides, key):
    with pytest.raises(ConfigError, match=rf"config\.{key}="):
        make_config(**overrides)


def test_top_p_of_one_is_valid():
    assert make_config(top_p=1.0).top_p == 1.0


def test_unknown_key_and_preset_are_rejected():
    with pytest.raises(ConfigError, match="unknown config key"):
        make_config(vocab=5)
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("huge")


def test_parse_value_types():
    assert parse_value("vocab_size", "20_000") == 20000
    assert parse_value("lr", "1e-3") == 1e-3
    with pytest.raises(ConfigError, match="config.lr"):
        parse_value("lr", "fast")


def test_bad_cli_value_gives_one_line_error_and_exit_2():
    out = subprocess.run([sys.executable, "model.py", "--num_heads", "7"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: config.num_heads=7 must divide config.embed_size=512 (try --num_heads 8)"]


def test_config_from_args_ignores_unset_options():
    import argparse

    from config import add_config_arguments

    args = add_config_arguments(argparse.ArgumentParser()).parse_args(["--max_len", "64"])
    cfg = config_from_args(args)
    assert cfg.max_len == 64 and cfg.vocab_size == 20000


def test_every_key_is_written_once():
    """One table (KEYS) holds each key's default, help and rule: no other table lists the keys again,
    in config.py or anywhere else in the project."""
    import ast
    import glob

    for path in [os.path.join(ROOT, p) for p in ("config.py", "train.py", "chatbot.py", "inference.py")] + glob.glob(
            os.path.join(ROOT, "support", "*.py")) + glob.glob(os.path.join(ROOT, "tools", "**", "*.py"), recursive=True):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if keys & set(KEYS) and len(keys & set(KEYS)) > len(KEYS) // 2:
                    assert path.endswith("config.py") and len(keys) == len(KEYS), (path, node.lineno)
    source = open(os.path.join(ROOT, "config.py")).read()
    for key in KEYS:
        assert source.count(f'    "{key}": Key(') == 1, key


def test_sampling_settings_are_checked_by_the_configs_rules():
    """--top_p and --temperature have one rule each (config.KEYS), which the sampler applies too."""
    from inference import SamplingSettings, top_p_sampling

    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match=r"config\.top_p=.* must be in \(0, 1\]"):
            make_config(top_p=bad)
        with pytest.raises(ConfigError, match=r"config\.top_p=.* must be in \(0, 1\]"):
            SamplingSettings(p=bad).check()
        with pytest.raises(ConfigError, match=r"config\.top_p="):
            import torch
            top_p_sampling(torch.zeros(3), bad, 0.7)
