"""requirements.txt declares every third-party module the runtime code imports (the course files, the
project's modules and the Part 1 notebook), and requirements-test.txt what only the tests import."""

import ast
import glob
import json
import os
import re
import sys
from importlib.metadata import packages_distributions

from helpers import ROOT

# Imported by the Colab notebook only, which Colab provides.
COLAB_ONLY = {"google", "IPython"}


def declared(filename):
    """Normalised distribution names listed in a requirements file."""
    names = set()
    for line in open(os.path.join(ROOT, filename)):
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[=<>!~\[; ]", line)[0].lower().replace("_", "-"))
    return names


def imported_modules(sources):
    """Top-level modules imported anywhere in `sources` (module level or inside functions)."""
    modules = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules


def notebook_sources(path):
    cells = json.load(open(path))["cells"]
    return ["\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in cells if c["cell_type"] == "code"]


def python_files(*folders):
    return [p for folder in folders for p in glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)
            if "/.venv/" not in p]


def third_party(modules):
    """The modules not in the standard library nor the project's own: {module: its distributions}."""
    own = {os.path.splitext(os.path.basename(p))[0] for p in python_files("")} | set(os.listdir(ROOT))
    distributions = packages_distributions()
    return {m: {d.lower().replace("_", "-") for d in distributions.get(m, [m])}
            for m in modules if m not in sys.stdlib_module_names and m not in own and m not in COLAB_ONLY}


def runtime_sources():
    files = [p for p in python_files("") if not p.startswith((os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")))]
    sources = [open(p).read() for p in files]
    for notebook in glob.glob(os.path.join(ROOT, "*.ipynb")):
        sources += notebook_sources(notebook)
    return sources


def test_every_module_the_runtime_imports_is_in_requirements_txt():
    needed = third_party(imported_modules(runtime_sources()))
    assert {"torch", "streamlit", "altair", "sklearn"} <= set(needed)  # the walk sees the real imports
    runtime = declared("requirements.txt")
    missing = {m: d for m, d in needed.items() if not d & runtime}
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_test_only_packages_are_in_requirements_test_txt():
    runtime, tests = declared("requirements.txt"), declared("requirements-test.txt")
    needed = third_party(imported_modules(open(p).read() for p in python_files("tests")))
    missing = {m: d for m, d in needed.items() if not d & (runtime | tests)}
    assert not missing, f"imported by the tests but in neither requirements file: {missing}"
    assert {"pytest", "hypothesis", "selenium"} <= tests and not {"pytest", "hypothesis", "selenium"} & runtime
