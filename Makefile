# Two commands do everything: `make demo` (the main job) and `make test` (the test suite).
# Each creates the local virtual environment .venv on first use: requirements.txt (what running
# needs), and for the tests requirements-test.txt too. Without make, README "Set up" gives the
# same steps as plain commands (Windows included).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-requirements
TESTED := $(VENV)/.installed-test-requirements

.PHONY: demo test venv lab check bench-deps clean-venv imdb imdb-quick

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

$(TESTED): $(STAMP) requirements-test.txt
	$(PY) -m pip install --quiet -r requirements-test.txt
	@touch $(TESTED)

venv: $(STAMP)

# Train (or resume) the demo model, show held-out answers, then serve the chat page on localhost.
# INF265_DEMO_NO_SERVE=1 make demo stops before the server; DEMO_ARGS passes options to tools/demo.py.
demo: $(STAMP)
	$(PY) -m tools.demo $(DEMO_ARGS)

test: $(TESTED)
	$(PY) -m pytest

# Open the Part 1 notebook in JupyterLab (installed into .venv the first time).
lab: $(STAMP)
	@$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install --quiet jupyterlab
	$(PY) -m jupyterlab imdb_sentiment_encoder.ipynb

# Part 1: run the IMDb notebook in place on the real data (18 minutes on 2 cores with native bf16, longer in fp32), or every cell
# on built-in generated reviews in 1 to 2 minutes, written to temp/imdb_quick.ipynb.
imdb: $(STAMP)
	$(PY) -m tools.notebook

imdb-quick: $(STAMP)
	$(PY) -m tools.notebook --quick --output temp/imdb_quick.ipynb

# The self-check of an implementation of the assignment: make check DIR=path/to/their/folder
# (this project itself by default; several folders: DIR="subs/*"; CHECK_ARGS="--json" for grading).
DIR ?= .
check: $(STAMP)
	$(PY) -m tools.check $(DIR) $(CHECK_ARGS)

# Only the benchmarks need these (a reference implementation to measure against).
bench-deps: $(STAMP)
	$(PY) -m pip install --quiet -r requirements-bench.txt

clean-venv:
	rm -rf $(VENV)
