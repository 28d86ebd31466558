"""Import the definitions of imdb_sentiment_encoder.ipynb (Part 1) as a module, without running it.

The notebook is the source of truth for Part 1; tests and benchmarks need its classes and functions but
not its data loading or training. Code cells tagged "definitions" hold only imports, constants and
definitions, so executing just those cells gives a module with everything else left out.

    from imdb_notebook import load_definitions
    nb = load_definitions()
    model = nb.make_model()
"""

import os
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
