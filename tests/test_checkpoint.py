"""support/checkpoint.py: loading checkpoints saved by other layouts of the same model; what a save writes
(the weights once), how a save cut at any point resumes, when saves happen, stale temporary files."""

import glob
import itertools
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import train
from config import make_config
from helpers import ROOT, assert_same_weights, fresh_copy, make_tiny_config, tiny_run_config
from inference import load_trained_model
from model import TransformerModel
from support import checkpoint, files
from support.checkpoint import OLD_STATE_FORMATS, weights_fingerprint
from support.errors import UserError
from train import train_model


def course_reference_table(max_len, d):
    """The positional table of the course's reference solution (odinhg/decoder-answer-bot,
    model.py): column pair i turns at 10000^(2 * (i // 2) / d), not the paper's 10000^(2i / d)."""
    position = torch.arange(max_len).unsqueeze(1)  # (T, 1)
    pair = torch.arange(d // 2).unsqueeze(0)  # (1, d/2)
    angles = position / torch.pow(10000, 2 * (pair // 2) / d)  # (T, d/2)
    table = torch.zeros(max_len, d)
    table[:, 0::2], table[:, 1::2] = torch.sin(angles), torch.cos(angles)
    return table


def reference_checkpoint(tmp_path):
    """(config, the model the checkpoint was saved from, its state_dict in the reference layout)."""
    cfg = make_tiny_config(tmp_path)
    torch.manual_seed(0)
    saved_from = TransformerModel(cfg).eval()
    saved_from.pos_encoder.positional_encoding.copy_(course_reference_table(cfg.max_len, cfg.embed_size))
    weights = saved_from.state_dict()
    weights["positional_encoding"] = weights.pop("pos_encoder.positional_encoding")  # a buffer of the model
    torch.save(weights, cfg.model_filename)  # and no model.json, as the reference saves
    return cfg, saved_from, weights


def test_a_checkpoint_in_the_course_reference_layout_loads_with_its_own_table(tmp_path):
    cfg, saved_from, weights = reference_checkpoint(tmp_path)
    ours = TransformerModel(cfg).pos_encoder.positional_encoding
    assert not torch.allclose(weights["positional_encoding"], ours, atol=1e-3)  # so loading it matters
    model, info = load_trained_model(cfg)
    torch.testing.assert_close(model.pos_encoder.positional_encoding, weights["positional_encoding"])
    ids = torch.randint(4, cfg.vocab_size, (2, cfg.max_len))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), saved_from(ids))
    plain = TransformerModel(cfg)  # the template's own way of loading works too
    plain.load_state_dict(torch.load(cfg.model_filename, weights_only=True))
    torch.testing.assert_close(plain.pos_encoder.positional_encoding, weights["positional_encoding"])


def test_tensor_names_of_another_model_are_named_in_the_error(tmp_path):
    cfg, _, weights = reference_checkpoint(tmp_path)
    weights["lm_head.weight"] = weights.pop("fc_out.weight")
    torch.save(weights, cfg.model_filename)
    with pytest.raises(UserError, match="names its tensors differently") as error:
        load_trained_model(cfg)
    assert "missing: fc_out.weight" in str(error.value) and "not in model.py: lm_head.weight" in str(error.value)
    assert "--num_heads" not in str(error.value)  # not a head-count problem


# ----------------------------------------------------------------------------------------------
# What a save writes: the weights once, and a pair model.pth/optimizer.pth that always matches

def test_a_save_stores_the_weights_once(pairs_folder, tmp_path):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1, max_steps=3)
    model = train_model(cfg)
    weights = torch.load(cfg.model_filename, weights_only=True)
    state = torch.load(cfg.optimizer_filename, weights_only=True)
    assert "model" not in state and state["weights_sha256"] == weights_fingerprint(weights)
    assert weights_fingerprint(model.state_dict()) == state["weights_sha256"]
    # The state holds AdamW's two moments per weight, and small things: about twice model.pth, not three times.
    assert os.path.getsize(cfg.optimizer_filename) < 2.3 * os.path.getsize(cfg.model_filename)
    assert state["versions"]["torch"] == str(torch.__version__)


def interrupted_between_the_renames(cfg, monkeypatch, at_save):
    """Train `cfg`, killed (KeyboardInterrupt) at save number `at_save` after model.pth was replaced
    and before optimizer.pth was."""
    real_replace, calls = checkpoint.replace, []

    def replace(path):
        if path == cfg.optimizer_filename:
            calls.append(path)
            if len(calls) == at_save:
                raise KeyboardInterrupt
        real_replace(path)

    monkeypatch.setattr(checkpoint, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg)
    monkeypatch.setattr(checkpoint, "replace", real_replace)


def test_a_save_cut_between_its_two_renames_resumes_exactly(pairs_folder, tmp_path, monkeypatch, capsys):
    configs = []
    for name in ("straight", "cut"):
        (tmp_path / name).mkdir()
        configs.append(tiny_run_config(fresh_copy(pairs_folder, tmp_path / name), num_epochs=1,
                                       checkpoint_every=6, dropout_p=0.1, val_fraction=0.05))
    straight, cut = configs
    train_model(straight)
    interrupted_between_the_renames(cut, monkeypatch, at_save=2)
    state = torch.load(cut.optimizer_filename, weights_only=True)
    weights = torch.load(cut.model_filename, weights_only=True)
    assert state["progress"]["global_step"] == 6  # the first save's state ...
    assert state["weights_sha256"] != weights_fingerprint(weights)  # ... beside the second save's weights
    assert glob.glob(cut.optimizer_filename + ".tmp-*")  # and the second state, written in full
    capsys.readouterr()
    train_model(cut)
    out = capsys.readouterr().out
    assert "12 steps in total" in out and "no longer exactly" not in out  # the finished state was adopted
    assert_same_weights(straight, cut)
    assert not glob.glob(cut.optimizer_filename + ".tmp-*")


def test_a_model_pth_from_elsewhere_trains_on_and_says_the_run_is_not_exact(pairs_folder, tmp_path, capsys):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1, max_steps=4)
    train_model(cfg)
    weights = torch.load(cfg.model_filename, weights_only=True)
    weights["fc_out.bias"] += 1.0  # not the weights the training state was saved with
    torch.save(weights, cfg.model_filename)
    cfg.max_steps = 6
    capsys.readouterr()
    model = train_model(cfg)
    out = capsys.readouterr().out
    assert "is not the model.pth that" in out and "no longer exactly" in out and "4 steps in total" in out
    assert model is not None


def test_the_earlier_state_format_with_the_weights_inside_still_resumes(pairs_folder, tmp_path, capsys):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1, max_steps=4)
    train_model(cfg)
    state = torch.load(cfg.optimizer_filename, weights_only=True)
    weights = torch.load(cfg.model_filename, weights_only=True)
    del state["weights_sha256"]
    state.update(format=OLD_STATE_FORMATS[0], model=weights)
    torch.save(state, cfg.optimizer_filename)
    torch.save({k: v * 0 for k, v in weights.items()}, cfg.model_filename)  # v1 resumed from the state's copy
    cfg.max_steps = 5
    capsys.readouterr()
    model = train_model(cfg)
    assert "4 steps in total" in capsys.readouterr().out
    assert model.fc_out.weight.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# When to save: by elapsed time (the default) or by steps

def test_checkpoints_are_saved_by_elapsed_training_time(pairs_folder, tmp_path, monkeypatch):
    """A clock that advances 40 s per look and --checkpoint_minutes 2: a save every third step."""
    clock = itertools.count(0, 40)
    monkeypatch.setattr(train.time, "monotonic", lambda: next(clock))
    steps_at_save = []
    real_save = checkpoint.TrainingState.save

    def save(state, config):
        steps_at_save.append(state.progress.global_step)
        real_save(state, config)

    monkeypatch.setattr(checkpoint.TrainingState, "save", save)
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1, max_steps=10, checkpoint_every=0,
                          checkpoint_minutes=2.0)
    train.train_model(cfg)
    assert steps_at_save == [3, 6, 9, 10], steps_at_save  # 10: the last step (max_steps) is always saved


def test_the_default_schedule_is_by_time():
    cfg = make_config()
    assert cfg.checkpoint_minutes == 15.0 and cfg.checkpoint_every == 0


# ----------------------------------------------------------------------------------------------
# Temporary files of killed writers, on Windows too

def test_stale_temporaries_are_removed_without_os_kill_on_windows(tmp_path, monkeypatch):
    """On Windows os.kill(pid, 0) sends CTRL_C_EVENT to that process: never call it there."""
    path = str(tmp_path / "model.pth")
    dead, alive = tmp_path / "model.pth.tmp-999999", tmp_path / "model.pth.tmp-888888"
    dead.write_bytes(b"left by a killed writer")
    alive.write_bytes(b"still being written")

    def no_kill(pid, sig):
        raise AssertionError("os.kill called on Windows")

    real_remove = os.remove

    def remove(name):  # Windows refuses to remove a file another process has open
        if name == str(alive):
            raise PermissionError(13, "The process cannot access the file")
        real_remove(name)

    monkeypatch.setattr(files, "ON_WINDOWS", True)
    monkeypatch.setattr(files.os, "kill", no_kill)
    monkeypatch.setattr(files.os, "remove", remove)
    files._remove_stale_temporaries(path)
    assert not dead.exists() and alive.exists()


def test_stale_temporaries_of_running_writers_are_kept_on_posix(tmp_path):
    path = str(tmp_path / "model.pth")
    mine = tmp_path / f"model.pth.tmp-{os.getppid()}"  # a process that runs: our parent
    mine.write_bytes(b"x")
    gone = tmp_path / "model.pth.tmp-999999999"
    gone.write_bytes(b"x")
    files._remove_stale_temporaries(path)
    assert mine.exists() and not gone.exists()


# ----------------------------------------------------------------------------------------------
# Brought home from Colab: only the files a student downloads

def test_the_downloaded_files_alone_load_and_answer_as_in_training(pairs_folder, tmp_path):
    """model.pth, model.json and tokenizer.json copied into an empty folder's temp/ (no training state,
    no data) give the answers the trained model gives, and model.json names the libraries that trained it."""
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1)
    train_model(cfg)
    home = tmp_path / "laptop"
    (home / "temp").mkdir(parents=True)
    for name in (cfg.model_filename, cfg.model_filename.replace(".pth", ".json"), cfg.tokenizer_filename):
        shutil.copy(name, home / "temp")
    info = json.load(open(home / "temp" / "model.json"))
    assert info["versions"]["torch"] == str(torch.__version__) and info["versions"]["tokenizers"]

    def answers(folder, model_filename, tokenizer_filename):
        result = subprocess.run(
            [sys.executable, os.path.join(ROOT, "inference.py"), "--preset", "tiny", "--device", "cpu",
             "--vocab_size", str(cfg.vocab_size), "--model_filename", model_filename,
             "--tokenizer_filename", tokenizer_filename, "--strategy", "greedy",
             "--question", "how many legs does a cat have?", "--question", "which is larger, 3 or 5?"],
            cwd=folder, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return [line for line in result.stdout.splitlines() if "Answer:" in line]

    at_home = answers(home, "temp/model.pth", "temp/tokenizer.json")
    assert len(at_home) == 2
    assert at_home == answers(tmp_path, cfg.model_filename, cfg.tokenizer_filename)
