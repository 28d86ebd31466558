"""gpu_training_colab_notebook.ipynb executes end to end outside Colab (local folder, tiny, built-in)."""

import ast
import csv
import os
import re
import shutil

import nbformat
from nbclient import NotebookClient

from helpers import ROOT


def files_to_upload():
    """The scripts the notebook tells students to upload (its `needed = [...]` list)."""
    notebook = nbformat.read(os.path.join(ROOT, "gpu_training_colab_notebook.ipynb"), as_version=4)
    source = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    return ast.literal_eval(re.search(r"needed = (\[.*?\])", source, re.S).group(1))


def test_colab_notebook_runs_locally_and_resumes(tmp_path, monkeypatch):
    for script in files_to_upload():  # only what a student uploads: a missing script fails here
        shutil.copy(os.path.join(ROOT, script), tmp_path)
    monkeypatch.setenv("INF265_NOTEBOOK_FOLDER", str(tmp_path))
    monkeypatch.setenv("INF265_PRESET", "tiny")
    monkeypatch.setenv("INF265_NOTEBOOK_ARGS", "--dataset builtin --model_train_fraction 0.02 "
                       "--vocab_size 500 --max_steps 12 --checkpoint_every 5 --device cpu --lr 3e-3 --warmup_steps 2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def run():
        notebook = nbformat.read(os.path.join(ROOT, "gpu_training_colab_notebook.ipynb"), as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                         for o in c.get("outputs", []))

    first = run()
    assert "Saved tokenizer to temp/tiny/tokenizer.json" in first
    assert "Stopped after 12 steps" in first
    assert os.path.exists(tmp_path / "temp/tiny/model.pth")
    assert os.path.getsize(tmp_path / "temp/tiny/loss_curve.png") > 10_000
    with open(tmp_path / "temp/tiny/train_log.csv", newline="") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle) if row["loss"]]
    assert len(losses) == 12
    # The notebook really trained: the last steps' loss is clearly below the first steps'.
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses

    monkeypatch.setenv("INF265_NOTEBOOK_ARGS", "--dataset builtin --model_train_fraction 0.02 "
                       "--vocab_size 500 --max_steps 15 --checkpoint_every 5 --device cpu --lr 3e-3 --warmup_steps 2")
    second = run()  # a reconnected session: same cells, continues from the checkpoint
    assert "Using temp/tiny/tokenizer.json" in second
    assert "Resumed from temp/tiny/optimizer.pth" in second and "12 steps in total" in second
