"""The shape of the package: the course's eight files at the top, the project's machinery below them
(support/), its tools above them (tools/). No import (module level or inside a function) runs both ways
between a course file and a folder, and no import cycle exists anywhere."""

import ast
import glob
import os

from helpers import ROOT

COURSE = {"config", "tokenizer", "dataset", "model", "train", "inference", "chatbot", "utils"}
FOLDERS = ("support", "tools")


def module_names():
    """{module name: path} of the course files and of every module in the package folders."""
    names = {os.path.splitext(os.path.basename(p))[0]: p for p in glob.glob(os.path.join(ROOT, "*.py"))}
    for folder in FOLDERS:
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True):
            parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path, name, known):
    """The project modules that `path` (module `name`) imports anywhere in its code."""
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def graph():
    names = module_names()
    return {name: imports_of(path, name, names) for name, path in names.items()}


def home(name):
    """'course' for a course file, else the package folder the module lives in."""
    return "course" if name in COURSE else name.split(".")[0]


def test_the_top_level_holds_exactly_the_course_files():
    assert {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "*.py"))} == COURSE
    assert {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.ipynb"))} == {
        "imdb_sentiment_encoder.ipynb", "gpu_training_colab_notebook.ipynb"}


def test_the_machinery_imports_no_course_file_and_no_tool():
    edges = graph()
    assert len([n for n in edges if n.startswith("support.")]) >= 8  # the walk sees the package
    for name, targets in edges.items():
        if home(name) == "support":
            assert {home(t) for t in targets} <= {"support"}, (name, targets)


def test_no_import_runs_both_ways_between_a_course_file_and_a_folder():
    edges = graph()
    for course_file in COURSE:
        for folder in FOLDERS:
            down = any(home(t) == folder for t in edges[course_file])
            up = any(home(n) == folder and course_file in targets for n, targets in edges.items())
            assert not (down and up), f"{course_file}.py imports {folder}/ and {folder}/ imports {course_file}.py"
    # Only the chat page, at the top, uses a tool.
    assert {c for c in COURSE if any(home(t) == "tools" for t in edges[c])} <= {"chatbot"}


def test_there_is_no_import_cycle_and_the_graph_is_shallow():
    edges = graph()
    depth, visiting = {}, set()

    def floor(name):
        if name in depth:
            return depth[name]
        assert name not in visiting, f"import cycle through {name}"
        visiting.add(name)
        depth[name] = 1 + max((floor(t) for t in edges[name]), default=0)
        visiting.discard(name)
        return depth[name]

    for name in edges:
        floor(name)
    # support/ at the bottom (its errors module first), config and utils, tokenizer, dataset and
    # model, train and inference, the tools, the chat page on top.
    assert max(depth.values()) <= 6, sorted(depth.items(), key=lambda item: item[1])
    assert depth["chatbot"] == max(depth.values())
    assert depth["model"] <= depth["dataset"] and "dataset" not in edges["model"]  # the network needs no data


def test_the_walk_sees_imports_inside_functions(tmp_path):
    """A planted import inside a function of support/ is found (the test above can fail)."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from train import train_model\n    import support.files\n")
    assert imports_of(str(path), "support.probe", {"train", "support.files", "support.probe"}) == {
        "train", "support.files"}
