"""Faults during training: SIGKILL at random moments (also in the middle of a checkpoint write), a full
disk and an unwritable checkpoint folder. Nothing is lost beyond the steps since the last checkpoint, and
the resumed run ends exactly where an uninterrupted one does (CPU, fp32, dropout on)."""

import glob
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from support import checkpoint
from support.checkpoint import sidecar_filename
from support.errors import UserError
from support.files import load_file
from helpers import (ROOT, TRAIN, assert_same_weights, cli_args, fresh_copy, poll_until, reference_and_fresh_runs,
                     saved_step, tiny_run_config)
from train import train_model

RANDOM_KILLS = 5  # kills at random steps and random delays after them
SAVE_KILLS = 2  # kills the moment a checkpoint's temporary file appears, i.e. during a write


def checkpoint_step(cfg):
    return saved_step(sidecar_filename(cfg.model_filename))


def temporary_files(cfg):
    return glob.glob(os.path.join(os.path.dirname(cfg.model_filename), "*.tmp-*"))


def kill_when(process, ready):
    """SIGKILL `process` as soon as ready() holds; False if it finished first."""
    killed = poll_until(process, ready, interval=0.001)
    if killed:
        process.send_signal(signal.SIGKILL)
    process.wait()
    return killed


def test_sigkill_at_random_moments_and_during_checkpoint_writes(pairs_folder, tmp_path):
    configs = reference_and_fresh_runs(pairs_folder, tmp_path, checkpoint_every=3)
    command, cfg = TRAIN, configs[1]
    rng = random.Random(2026)
    plan = ["save"] * SAVE_KILLS + ["random"] * RANDOM_KILLS
    rng.shuffle(plan)
    kills, during_write = 0, 0
    for kind in plan:
        start = checkpoint_step(cfg)
        process = subprocess.Popen(command + cli_args(cfg), cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if kind == "save":
            killed = kill_when(process, lambda: bool(temporary_files(cfg)) and checkpoint_step(cfg) > start)
        else:
            target, delay = start + rng.randint(1, 8), rng.uniform(0.0, 0.08)
            killed = kill_when(process, lambda: checkpoint_step(cfg) >= target and (time.sleep(delay) or True))
        if not killed:
            break  # the run finished: nothing left to kill
        kills += 1
        during_write += bool(temporary_files(cfg))
        # What is on disk after the kill is whole, and no older than the last checkpoint seen.
        saved = checkpoint_step(cfg)
        assert saved >= start
        state = load_file(cfg.optimizer_filename)
        assert state["progress"]["global_step"] >= saved  # the training state is written first
        load_file(cfg.model_filename)
    assert kills >= 5 and during_write >= 1, (kills, during_write)
    subprocess.run(command + cli_args(cfg), cwd=ROOT, check=True, capture_output=True)  # resume to the end
    assert not temporary_files(cfg)  # the next save removes what killed writes left behind

    assert_same_weights(configs[0], cfg)
    print(f"{kills} kill points, {during_write} of them during a checkpoint write")


def test_full_disk_is_reported_before_training(pairs_folder, tmp_path, monkeypatch):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 4096})())
    with pytest.raises(UserError, match=r"only 0 MiB free in .* but a checkpoint needs about"):
        train_model(cfg)
    assert not os.path.exists(cfg.model_filename) and not os.path.exists(cfg.log_filename)


def test_unwritable_checkpoint_folder_is_reported_before_training(pairs_folder, tmp_path):
    folder = fresh_copy(pairs_folder, tmp_path)
    (folder / "not-a-folder").write_text("a file where temp/ should be")
    cfg = tiny_run_config(folder, num_epochs=1, model_filename=str(folder / "not-a-folder" / "model.pth"),
                          optimizer_filename=str(folder / "not-a-folder" / "optimizer.pth"))
    with pytest.raises(UserError, match="cannot create folder"):
        train_model(cfg)
    result = subprocess.run([sys.executable, "train.py"] + cli_args(cfg), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "cannot create folder" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_checkpoint_folder_is_reported_before_training(pairs_folder, tmp_path):
    folder = fresh_copy(pairs_folder, tmp_path)
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        cfg = tiny_run_config(folder, num_epochs=1, model_filename=str(locked / "model.pth"),
                              optimizer_filename=str(locked / "optimizer.pth"))
        with pytest.raises(UserError, match="not writable"):
            train_model(cfg)
    finally:
        locked.chmod(0o700)
