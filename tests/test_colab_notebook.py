"""gpu_training_colab_notebook.ipynb executes end to end outside Colab, from the project uploaded as one
folder (or its zip), with its settings overridden in a cell of the test's own (tiny, built-in data)."""

import ast
import csv
import os
import shutil
import subprocess
import sys
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from helpers import ROOT

NOTEBOOK = os.path.join(ROOT, "gpu_training_colab_notebook.ipynb")
TINY_ARGS = ["--dataset", "builtin", "--model_train_fraction", "0.02", "--vocab_size", "500", "--checkpoint_every",
             "5", "--device", "cpu", "--lr", "3e-3", "--warmup_steps", "2"]


def project_files():
    """The files of the project as a clone has them (tracked, or new and not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    return [name for name in listed if name and os.path.isfile(os.path.join(ROOT, name))]


def upload(folder, leave_out=()):
    """Copy the project into `folder`, as a student uploads it to Drive."""
    for name in project_files():
        if name not in leave_out:
            os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
            shutil.copy(os.path.join(ROOT, name), os.path.join(folder, name))


def settings_cell_index(notebook):
    return next(i for i, cell in enumerate(notebook.cells) if cell.source.startswith("# @title Settings"))


def run(folder, extra="", **settings):
    """Execute the notebook with `settings` assigned (and `extra` run) in a cell after its settings cell,
    the kernel started in `folder`; returns the text of its outputs."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    override = "\n".join([*(f"{name} = {value!r}" for name, value in settings.items()), extra])
    notebook.cells.insert(settings_cell_index(notebook) + 1, nbformat.v4.new_code_cell(override))
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_settings_are_one_form_cell_of_literals_and_the_last_cell_flushes_drive():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    form = notebook.cells[settings_cell_index(notebook)].source
    for name in ("PRESET", "NUM_EPOCHS", "PRECISION", "START_OVER"):
        assert any(line.startswith(f"{name} = ") and "# @param" in line for line in form.splitlines()), name
    for node in ast.parse(form).body:  # Colab's form editor needs plain literal values
        assert isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.List)), ast.unparse(node)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert "drive.flush_and_unmount()" in code[-1] and "display(Image(" in code[-2]
    assert not any("os.environ" in source for source in code)  # settings live in the form, not the environment


def test_colab_notebook_runs_from_an_uploaded_zip_and_resumes(tmp_path):
    staging = tmp_path / "staging"
    upload(staging)
    with zipfile.ZipFile(tmp_path / "inf265_project_3.zip", "w") as archive:  # the folder zipped, as a file manager does
        for name in project_files():
            archive.write(staging / name, f"inf265_project_3/{name}")
    folder = tmp_path / "inf265_project_3"
    settings = dict(LOCAL_FOLDER=str(folder), PRESET="tiny", NUM_EPOCHS=1, PRECISION="fp32",
                    EXTRA_ARGS=TINY_ARGS + ["--max_steps", "12"])
    first = run(tmp_path, **settings)
    assert f"unpacked {folder}.zip" in first
    assert "Libraries: python " in first and "torch 2." in first and "tokenizers " in first and "datasets " in first
    assert "Saved tokenizer to temp/tiny/tokenizer.json" in first
    assert "Stopped after 12 steps" in first
    assert os.path.exists(folder / "temp/tiny/model.pth")
    assert os.path.getsize(folder / "temp/tiny/loss_curve.png") > 10_000
    with open(folder / "temp/tiny/train_log.csv", newline="") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle) if row["loss"]]
    assert len(losses) == 12
    # The notebook really trained: the last steps' loss is clearly below the first steps'.
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses

    second = run(tmp_path, **{**settings, "EXTRA_ARGS": TINY_ARGS + ["--max_steps", "15"]})  # reconnected
    assert "unpacked" not in second and "Using temp/tiny/tokenizer.json" in second
    assert "Resumed from temp/tiny/optimizer.pth" in second and "12 steps in total" in second

    third = run(tmp_path, **{**settings, "START_OVER": True, "EXTRA_ARGS": TINY_ARGS + ["--max_steps", "3"]})
    assert "Resumed from" not in third and "Stopped after 3 steps" in third


def test_colab_notebook_names_a_file_that_was_not_uploaded(tmp_path):
    upload(tmp_path, leave_out={"support/data_sources.py"})
    with pytest.raises(CellExecutionError, match=r"has no support/data_sources\(\.py\): it is not the whole project"):
        run(tmp_path, LOCAL_FOLDER=str(tmp_path), PRESET="tiny", EXTRA_ARGS=TINY_ARGS)


def test_colab_notebook_refuses_libraries_older_than_supported(tmp_path):
    """As an old Colab torch would be: here the oldest supported torch is raised to 99.0 instead."""
    upload(tmp_path)
    with pytest.raises(CellExecutionError, match=r"torch .* is older than this project supports \(99\.0 or newer\)"):
        run(tmp_path, extra="import support.runtime\nsupport.runtime.OLDEST_SUPPORTED['torch'] = '99.0'",
            LOCAL_FOLDER=str(tmp_path),
            PRESET="tiny", EXTRA_ARGS=TINY_ARGS)


def test_a_zip_made_by_git_archive_unpacks_too(tmp_path):
    """git archive puts the files at the top of the zip (no folder around them): the notebook's unpacking
    cell, run here on its own, gives the same folder."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (unpack,) = [cell.source for cell in notebook.cells if "zipfile.ZipFile" in cell.source]
    with zipfile.ZipFile(tmp_path / "inf265_project_3.zip", "w") as archive:
        archive.writestr("config.py", "x = 1\n")
        archive.writestr("support/errors.py", "y = 2\n")
    result = subprocess.run([sys.executable, "-c", f"LOCAL_FOLDER = {str(tmp_path / 'inf265_project_3')!r}\n{unpack}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "unpacked" in result.stdout, result.stderr
    assert (tmp_path / "inf265_project_3" / "config.py").read_text() == "x = 1\n"
    assert (tmp_path / "inf265_project_3" / "support" / "errors.py").exists()
