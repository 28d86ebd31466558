"""Security properties that hold for the whole code base, checked on its syntax trees and settings.

- every torch.load passes weights_only=True (no pickled code from a checkpoint ever runs);
- nothing imports pickle, marshal, shelve or dill, and nothing calls eval or exec, except
  tools/notebook.py, which executes the definitions of a notebook (ours, or the one the self-check
  is asked to check, in a throwaway process);
- the chat server listens on localhost by default.
"""

import ast
import glob
import os
import tomllib

import pytest

from helpers import ROOT

SOURCES = sorted(p for folder in ("", "support", "tools", "bench", "tests")
                 for p in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)
                 if "/.venv/" not in p)
# tools/notebook.py runs a notebook's definitions: our own, or those of the notebook the self-check is
# asked to check, in a throwaway process (the checker runs the code it checks).
EXEC_ALLOWED = {os.path.join("tools", "notebook.py")}
UNSAFE_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}


def calls(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def name_of(func):
    """'torch.load' for torch.load(...), 'eval' for eval(...)."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return f"{name_of(func.value)}.{func.attr}"
    return ""


def trees():
    assert len(SOURCES) > 20
    for path in SOURCES:
        with open(path, encoding="utf-8") as f:
            yield os.path.relpath(path, ROOT), ast.parse(f.read(), filename=path)


def test_every_torch_load_passes_weights_only_true():
    loads = 0
    for path, tree in trees():
        for call in calls(tree):
            if name_of(call.func) == "torch.load":
                loads += 1
                keywords = {k.arg: k.value for k in call.keywords}
                assert "weights_only" in keywords, f"{path}:{call.lineno} torch.load without weights_only"
                value = keywords["weights_only"]
                assert isinstance(value, ast.Constant) and value.value is True, f"{path}:{call.lineno}"
    assert loads >= 2  # the check found the loads it is about


def test_no_pickle_imports_and_no_eval_or_exec():
    for path, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & UNSAFE_MODULES, f"{path}:{node.lineno}"
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in UNSAFE_MODULES, f"{path}:{node.lineno}"
        for call in calls(tree):
            if name_of(call.func) in ("eval", "exec", "builtins.eval", "builtins.exec"):
                assert path in EXEC_ALLOWED, f"{path}:{call.lineno} calls {name_of(call.func)}"


def test_chat_server_listens_on_localhost_by_default():
    with open(os.path.join(ROOT, ".streamlit", "config.toml"), "rb") as f:
        server = tomllib.load(f)["server"]
    assert server["address"] in ("localhost", "127.0.0.1")


@pytest.mark.parametrize("call, unsafe", [("torch.load(path)", True), ("torch.load(path, weights_only=False)", True),
                                          ("torch.load(path, weights_only=True)", False)])
def test_the_torch_load_check_can_fail(call, unsafe):
    (node,) = calls(ast.parse(call))
    keywords = {k.arg: k.value for k in node.keywords}
    flagged = not (isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True)
    assert flagged == unsafe
