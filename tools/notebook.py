"""Part 1's notebook from scripts: import its definitions (ours or anyone's), or run it whole.

    python -m tools.notebook                     # full run on the real data, outputs saved into the notebook
    python -m tools.notebook --quick --output temp/imdb_quick.ipynb    # built-in reviews, about a minute

`make imdb` and `make imdb-quick` run these, printing which cell runs and the notebook's own lines and
progress bars as they come. Tests, benchmarks and the self-check need the
notebook's classes and functions but not its data loading or training:

    from tools.notebook import load_definitions
    nb = load_definitions()                      # this project's notebook
    model = nb.make_model()

load_definitions keeps each code cell's imports, functions, classes and plain constants and leaves
every other statement out (data loading, training, plots), so it works on any student's notebook
too (tools/check). Progress bars are stored as Jupyter shows them (each bar's last state).
"""

import argparse
import ast
import linecache
import os
import sys
import time
import types

import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "imdb_sentiment_encoder.ipynb")


def code_cells(path=NOTEBOOK):
    """The source of every code cell, with Jupyter's `!shell` and `%magic` lines left out."""
    notebook = nbformat.read(path, as_version=4)
    return ["\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("!", "%")))
            for cell in notebook.cells if cell.cell_type == "code"]


def definitions(path=NOTEBOOK):
    """[(code cell number, statement)] of every import, function, class and plain constant (an
    assignment to names without a call in it) of the notebook, in order.

    Example: a cell `MAX_LENGTH = 256` and `def create_mask(...)` is kept, `model = train(...)` is not.
    """
    kept = []
    for number, source in enumerate(code_cells(path)):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        kept += [(number, node) for node in tree.body if _is_definition(node)]
    return kept


def _is_definition(node):
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        no_calls = not any(isinstance(n, ast.Call) for n in ast.walk(node.value))
        return all(isinstance(t, ast.Name) for t in targets) and no_calls
    return False


def load_definitions(path=NOTEBOOK, strict=True):
    """The notebook's definitions (see `definitions`) executed in a fresh module, which is returned.

    A constant that cannot be computed without the rest of the notebook (`LR = 2e-3 if QUICK
    else 1e-3`) is left out. An import, function or class that fails raises when `strict`; the
    self-check passes strict=False, so that one broken cell of a student's does not hide the rest.
    """
    module = types.ModuleType("notebook_definitions")
    module.__file__ = path
    for number, source in enumerate(code_cells(path)):  # so that tracebacks quote the cells' lines
        linecache.cache[f"{path}[cell {number}]"] = (len(source), None, source.splitlines(True), path)
    for number, node in definitions(path):
        code = compile(ast.Module(body=[node], type_ignores=[]), f"{path}[cell {number}]", "exec")
        try:
            exec(code, module.__dict__)  # a notebook's own definitions, run in this process on purpose
        except Exception:  # noqa: BLE001 - see the docstring
            if strict and not isinstance(node, (ast.Assign, ast.AnnAssign)):
                raise
    return module


def collapse_streams(notebook):
    """Merge each cell's consecutive stream outputs and keep what a terminal shows after carriage returns.

    Example: stderr pieces "Epoch 1:  10%\\r" and "Epoch 1: 100%\\n" become one output "Epoch 1: 100%\\n".
    """
    for cell in [c for c in notebook.cells if c.cell_type == "code"] * 2:  # twice: merge what the first pass left
        merged = []
        for output in cell.get("outputs", []):
            if (output.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == output.name):
                merged[-1].text += output.text
            else:
                merged.append(output)
        for output in merged:
            if output.output_type == "stream":
                lines = [line.split("\r")[-1] for line in output.text.replace("\r\n", "\n").split("\n")]
                output.text = "\n".join(line for line in lines if line.strip() or line == lines[-1])
        cell.outputs = [o for o in merged if o.output_type != "stream" or o.text.strip()]
    return notebook


def run_notebook(notebook, folder):
    """Execute `notebook` (an nbformat notebook) with `folder` as its working folder, printing which
    cell runs and, as they come, the lines the notebook prints and its progress bars."""
    from nbclient import NotebookClient

    class ShowingProgress(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] == "stream":  # print(), tqdm's bars (stderr, redrawn with \r)
                stream = sys.stderr if msg["content"]["name"] == "stderr" else sys.stdout
                stream.write(msg["content"]["text"])
                stream.flush()
            return super().output(outs, msg, display_id, cell_index)

    code = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]

    def announce(cell, cell_index):
        first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
        print(f"\n[cell {code.index(cell_index) + 1}/{len(code)}] {first[:90]}", flush=True)

    ShowingProgress(notebook, timeout=None, kernel_name="python3", on_cell_execute=announce,
                    resources={"metadata": {"path": folder}}).execute()
    return notebook


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run imdb_sentiment_encoder.ipynb and save its outputs.")
    parser.add_argument("--quick", action="store_true", help="built-in generated reviews, small model")
    parser.add_argument("--output", default=NOTEBOOK, help="where to write the executed notebook")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["INF265_QUICK"] = "1"
    os.environ.pop("MPLBACKEND", None)  # let the kernel pick its inline backend, so plots are saved
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.time()
    print(f"Running {os.path.basename(NOTEBOOK)}{' in quick mode' if args.quick else ''} (the full run: "
          f"about 18 minutes on 2 cores with native bf16, longer in fp32); cells and progress as they run.",
          flush=True)
    run_notebook(notebook, os.path.dirname(NOTEBOOK))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    nbformat.write(collapse_streams(notebook), args.output)
    print(f"\nWrote {args.output} after {time.time() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
