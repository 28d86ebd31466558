"""The README's bad-input table: every row names tests, and every test it names exists."""

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
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Bad input, faults and security")[1].split("\n## ")[0]
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
