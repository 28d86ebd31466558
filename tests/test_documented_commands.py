"""Every command line the README and the modules' docstrings show works as written.

Each command gets a mode (MODES, by its start): run as it is (quick ones with no lasting effect), check
it (a `make` target dry-run with `make -n`; a Python script's `--help`, and every option the command
names present there, every preset a real one, every script or module file there), or skip it with the
reason written beside it. A command naming a preset, option or file that does not exist fails.
"""

import ast
import functools
import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from config import PRESETS
from helpers import ROOT

START = re.compile(r"^(?:[A-Z][A-Z_0-9]*=\S+\s+)*(?:make|python|\.venv/bin/python|streamlit|torchrun|bash|pip|jupyter"
                   r"|git|source \.venv|\.venv\\Scripts)\b")

# (start of the command, mode, why): the first that matches decides. Modes: "run", "check", "skip".
MODES = [
    ("make test", "skip", "the test suite itself"),
    ("python -m pytest", "skip", "the test suite itself"),
    ("python -m venv", "skip", "sets up the machine; the fresh-clone check before each stop runs the set-up"),
    ("source .venv", "skip", "sets up the shell"),
    (".venv\\Scripts", "skip", "Windows"),
    ("pip install", "skip", "installs packages (the README's set-up)"),
    ("make bench-deps", "skip", "installs the benchmarks' reference (transformers)"),
    ("git archive", "skip", "makes the zip a student uploads to Drive; tests/test_colab_notebook.py zips the tree itself"),
    ("jupyter lab", "skip", "starts a JupyterLab server"),
    ("make lab", "skip", "starts a JupyterLab server"),
    ("torchrun", "skip", "several processes; tests/test_train.py::test_ddp_* runs torchrun"),
    ("python model.py --preset tiny", "run", ""),
    ("python model.py", "run", ""),
    (".venv/bin/python bench/machine.py", "run", ""),
    ("make", "check", ""),
    ("", "check", ""),
]


def clean(line):
    line = line.strip()
    return line[:line.index(" #")].rstrip() if " #" in line else line


def documented_commands():
    """(where, command) for every command line in the README's code and the modules' docstrings."""
    found = []
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        found += [("README.md", clean(line)) for line in block.splitlines() if START.match(line.strip())]
    found += [("README.md", clean(code)) for code in re.findall(r"`([^`\n]+)`", readme)
              if START.match(code) and " " in code]
    for path in sorted(p for folder in ("", "support", "tools", "bench")
                       for p in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)):
        doc = ast.get_docstring(ast.parse(open(path, encoding="utf-8").read()), clean=False) or ""
        found += [(os.path.relpath(path, ROOT), clean(line)) for line in doc.splitlines()
                  if line.startswith("    ") and START.match(line.strip())]
    return sorted(set(found))


def mode_of(command):
    for start, mode, why in MODES:
        if command.startswith(start):
            return mode, why
    raise AssertionError(command)  # pragma: no cover - MODES ends with a catch-all


@functools.cache
def help_text(*program):
    """The --help output of a Python script or module (`program` as argv after python)."""
    result = subprocess.run([sys.executable, *program, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(program)} --help failed: {result.stderr[-1000:]}"
    return result.stdout


def python_part(words):
    """(the program, its arguments) of a command's Python part: `python X.py ...`, `python -m M ...`,
    `.venv/bin/python ...`, or `streamlit run chatbot.py -- ...` (the page's arguments after `--`)."""
    if words[:2] == ["streamlit", "run"]:
        args = words[words.index("--") + 1:] if "--" in words else []
        return [words[2]], args
    start = next(i for i, w in enumerate(words) if w.endswith("python"))
    if words[start + 1] == "-m":
        return words[start + 1:start + 3], words[start + 3:]
    return [words[start + 1]], words[start + 2:]


def check_command(command):
    """Raise AssertionError if `command` names a make target, script, module, option or preset that
    does not exist. Placeholders in capitals (PATH, REV) and optional [--parts] are allowed."""
    command = re.sub(r"\s*(>|&&|\|).*$", "", re.sub(r"\[[^]]*]", "", command)).strip()
    words = shlex.split(command)
    while words and re.match(r"^[A-Z][A-Z_0-9]*=", words[0]):  # INF265_DEMO_NO_SERVE=1 make demo
        words = words[1:]
    if words[0] == "make":
        result = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}: {result.stderr.strip()}"
        return
    if words[0] == "bash":
        assert os.path.isfile(os.path.join(ROOT, words[1])), f"{command}: no file {words[1]}"
        return
    program, args = python_part(words)
    if program[0] == "-m":
        module = os.path.join(ROOT, *program[1].split("."))
        assert os.path.isfile(module + ".py") or os.path.isfile(os.path.join(module, "__main__.py")), \
            f"{command}: no module {program[1]}"
    else:
        assert os.path.isfile(os.path.join(ROOT, program[0])), f"{command}: no file {program[0]}"
    if program == ["chatbot.py"]:  # the page's arguments are the config's
        from config import parse_cli

        parse_cli(args)
        return
    shown = help_text(*program)
    for i, word in enumerate(args):
        if word.startswith("--"):
            option = word.split("=")[0]
            assert re.search(rf"(^|[\s,\[]){re.escape(option)}([\s,=\]]|$)", shown, re.M), \
                f"{command}: {' '.join(program)} has no option {option}"
        if word == "--preset":
            assert args[i + 1] in PRESETS, f"{command}: no preset {args[i + 1]!r} (presets: {sorted(PRESETS)})"


COMMANDS = documented_commands()


def test_the_commands_are_found():
    wheres = {where for where, _ in COMMANDS}
    assert len(COMMANDS) >= 60 and {"README.md", "train.py", "chatbot.py", "tools/check/__main__.py"} <= wheres


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w}: {c}" for w, c in COMMANDS])
def test_a_documented_command_works_as_written(where, command):
    mode, why = mode_of(command)
    if mode == "skip":
        pytest.skip(why)
    if mode == "run":
        words = shlex.split(command)
        words[0] = sys.executable
        result = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{where}: {command}\n{result.stderr[-2000:]}"
        return
    check_command(command)


@pytest.mark.parametrize("command", ["python -m tools.evaluate --preset cpu_qa --dataset x.jsonl",
                                     "python train.py --no_such_option 1", "python nowhere.py",
                                     "python -m tools.nothing", "make no-such-target",
                                     "streamlit run chatbot.py -- --preset huge"])
def test_a_wrong_command_fails_the_check(command):
    with pytest.raises((AssertionError, SystemExit, ValueError)):
        check_command(command)
