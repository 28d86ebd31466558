"""Shared fixtures: everything hermetic and offline (a tiny tokenizer trained in memory).

Plain helper functions and constants (ROOT, write_jsonl, make_tiny_config, the tiny training runs)
live in helpers.py; test modules import them from there, never from each other."""

import os

# Hermetic: never reach for the Hugging Face Hub, and fail fast if code tries to.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("INF265_PRESET", None)

import pytest  # noqa: E402

from support import corpus  # noqa: E402
from config import make_config  # noqa: E402
from helpers import make_tiny_config, tiny_run_config, write_jsonl  # noqa: E402
from tokenizer import fit_tokenizer, train_tokenizer  # noqa: E402

CORPUS = [
    "how many legs does a cat have? four, unless it has lost one.",
    "what is the capital of norway? oslo is the capital of norway.",
    "which is larger, 37 or 52? 52 is larger than 37.",
    "how do you spell kalomi? k-a-l-o-m-i.",
    "what is the largest dog breed? the english mastiff is the largest dog breed.",
] * 20


@pytest.fixture
def tiny_config(tmp_path):
    """The tiny preset with every file under a temporary folder and CPU forced."""
    return make_tiny_config(tmp_path)


@pytest.fixture(scope="session")
def tokenizer():
    """A small BPE tokenizer with the template's pipeline, trained in memory."""
    return fit_tokenizer(make_config("tiny"), CORPUS, vocab_size=400, min_frequency=1)


@pytest.fixture(scope="session")
def nb():
    """The Part 1 notebook's definitions as a module (imported once, without running its training)."""
    from tools.notebook import load_definitions

    return load_definitions()


@pytest.fixture(scope="module")
def pairs_folder(tmp_path_factory):
    """600 built-in pairs as a local JSON-lines file, and a tokenizer trained on them."""
    folder = tmp_path_factory.mktemp("run")
    write_jsonl(folder / "pairs.jsonl", corpus.generate("train")[:600])
    cfg = tiny_run_config(folder)
    train_tokenizer(cfg)
    return folder
