"""The bad-input table of docs/DETAILS.md: every row names tests, and every test it names exists. The README:
a user guide of at most 3,000 words whose first 60 lines give the five tasks' commands, no measurement table."""

import ast
import fnmatch
import os
import re

from helpers import ROOT


def functions_of(filename):
    with open(os.path.join(ROOT, "tests", filename), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_bad_input_row_names_tests_that_exist():
    details = open(os.path.join(ROOT, "docs", "DETAILS.md"), encoding="utf-8").read()
    section = details.split("## Bad input, faults and security")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| entry point")
            and not line.startswith("| ---")]
    assert len(rows) >= 14
    checked = 0
    for row in rows:
        cell = row.rstrip(" |").rsplit(" | ", 1)[-1]
        current, names = None, []
        for file_part, test_part in re.findall(r"`(?:(test_\w+\.py))?::([\w*]+)", cell):
            current = file_part or current
            names.append((current, test_part))
        assert names, f"row without a test: {row[:80]}"
        for filename, pattern in names:
            assert filename, f"test without a file in: {row[:80]}"
            matches = fnmatch.filter(functions_of(filename), pattern)
            assert matches, f"{filename}::{pattern} named in the README does not exist"
            checked += 1
    assert checked >= 40


def readme():
    return open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def test_the_readme_is_a_user_guide():
    text = readme()
    assert len(text.split()) <= 3000
    first = "\n".join(text.splitlines()[:60])
    for command in ("make imdb", "gpu_training_colab_notebook.ipynb", "streamlit run chatbot.py", "python model.py",
                    "python -m tools.check"):
        assert command in first, f"{command!r} is not in the README's first 60 lines"
    assert "make demo" in first and "make test" in first and "python -m venv .venv" in first
    # Figures live in docs/MEASURED.md: no table in the README has a column of measurements.
    for line in text.splitlines():
        if line.startswith("| ") and line.count("|") > 2:
            assert not re.search(r"\b(tok/s|s/step|seconds|minutes|MB|GB|%)\s*\|", line), line
    assert "docs/MEASURED.md" in text and os.path.isfile(os.path.join(ROOT, "docs", "MEASURED.md"))
