"""Part 1's notebook, imdb_sentiment_encoder.ipynb, from scripts: import its definitions, or run it.

The notebook is the source of truth for Part 1; tests and benchmarks need its classes and functions but
not its data loading or training. Code cells tagged "definitions" hold only imports, constants and
definitions, so executing just those cells gives a module with everything else left out:

    from imdb_notebook import load_definitions
    nb = load_definitions()
    model = nb.make_model()

Run the whole notebook (what `make imdb` and `make imdb-quick` do):

    python imdb_notebook.py                   # full run on the real data, outputs saved into the notebook
    python imdb_notebook.py --quick --output temp/imdb_quick.ipynb   # built-in reviews, under a minute

Progress bars are stored as Jupyter shows them (each bar's last state), not as every redraw.
"""

import argparse
import os
import sys
import time
import types

import nbformat

NOTEBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imdb_sentiment_encoder.ipynb")
TAG = "definitions"


def definition_cells(path=NOTEBOOK):
    """The source of every code cell tagged "definitions", in notebook order."""
    notebook = nbformat.read(path, as_version=4)
    return [cell.source for cell in notebook.cells
            if cell.cell_type == "code" and TAG in cell.get("metadata", {}).get("tags", [])]


def load_definitions(path=NOTEBOOK):
    """Execute the tagged cells of our own notebook in a fresh module and return it."""
    module = types.ModuleType("imdb_sentiment_encoder")
    module.__file__ = path
    for number, source in enumerate(definition_cells(path)):
        # Our own, committed notebook (never user input); compiled per cell so tracebacks name the cell.
        exec(compile(source, f"{os.path.basename(path)}[definitions cell {number}]", "exec"), module.__dict__)
    return module


def collapse_streams(notebook):
    """Merge each cell's consecutive stream outputs and keep what a terminal shows after carriage returns.

    Example: stderr pieces "Epoch 1:  10%\r" and "Epoch 1: 100%\n" become one output "Epoch 1: 100%\n".
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


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run imdb_sentiment_encoder.ipynb and save its outputs.")
    parser.add_argument("--quick", action="store_true", help="built-in generated reviews, small model")
    parser.add_argument("--output", default=NOTEBOOK, help="where to write the executed notebook")
    args = parser.parse_args(argv)
    from nbclient import NotebookClient

    if args.quick:
        os.environ["INF265_QUICK"] = "1"
    os.environ.pop("MPLBACKEND", None)  # let the kernel pick its inline backend, so plots are saved
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    start = time.time()
    print(f"Running {os.path.basename(NOTEBOOK)}{' in quick mode' if args.quick else ''}; "
          "outputs appear when it finishes (the full run: 18 minutes on 2 cores with native bf16, longer in fp32).", flush=True)
    NotebookClient(notebook, timeout=None, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    nbformat.write(collapse_streams(notebook), args.output)
    print(f"Wrote {args.output} after {time.time() - start:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
