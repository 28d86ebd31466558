"""Several chat sessions generating at once on the one cached model (as Streamlit serves two browser tabs)
get exactly the answers they get one after another: generation keeps no shared mutable state."""

import threading

import pytest
import torch

from config import make_config
from helpers import make_tiny_config
from inference import SamplingSettings
from model import TransformerModel
from tokenizer import special_token_ids
from tools.answers import AnswerStream

SESSIONS = 6
QUESTIONS = ["how many legs does a cat have?", "what is the capital of norway?", "which is larger, 37 or 52?",
             "caf\u00e9 \U0001F600 \u65e5\u672c?"]


@pytest.fixture(scope="module")
def shared_model():
    torch.manual_seed(0)
    config = make_tiny_config(vocab_size=400, embed_size=32, num_heads=2, num_layers=2, max_len=48)
    return TransformerModel(config).eval()


def session_settings(session):
    """Each session has its own sampling settings and seed, like its own sidebar."""
    if session % 3 == 0:
        return SamplingSettings("greedy", max_new_tokens=30)
    return SamplingSettings("top-p", p=0.5 + 0.1 * (session % 4), temperature=0.6 + 0.2 * (session % 3),
                            max_new_tokens=30, seed=100 + session)


def answers_of(session, model, tokenizer, ids):
    out = []
    for question in QUESTIONS:
        stream = AnswerStream(model, tokenizer, question, session_settings(session), ids)
        pieces = list(stream)
        out.append(("".join(pieces), stream.token_ids))
    return out


def test_concurrent_sessions_equal_sequential_ones(shared_model, tokenizer):
    ids = special_token_ids(tokenizer, make_config("tiny"))
    sequential = [answers_of(s, shared_model, tokenizer, ids) for s in range(SESSIONS)]

    concurrent, errors = [None] * SESSIONS, []
    start = threading.Barrier(SESSIONS)

    def run(session):
        try:
            start.wait()  # all sessions begin together, so their decoding steps interleave
            concurrent[session] = answers_of(session, shared_model, tokenizer, ids)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors and all(not t.is_alive() for t in threads)
    assert concurrent == sequential
    # The sessions differ from each other, so equality is not trivially true.
    assert len({tuple(tuple(ids) for _, ids in answers) for answers in sequential}) > 1


def test_unseeded_sessions_do_not_touch_the_global_random_state(shared_model, tokenizer):
    """A seeded session draws from its own generator: an unseeded one running meanwhile cannot shift it."""
    ids = special_token_ids(tokenizer, make_config("tiny"))
    seeded = SamplingSettings("top-p", p=0.9, temperature=1.0, max_new_tokens=20, seed=7)
    alone = "".join(AnswerStream(shared_model, tokenizer, "what is the capital of norway?", seeded, ids))
    torch.manual_seed(123)
    unseeded = AnswerStream(shared_model, tokenizer, "how many legs?", SamplingSettings("top-p", max_new_tokens=20),
                            ids)
    interleaved_seeded = AnswerStream(shared_model, tokenizer, "what is the capital of norway?", seeded, ids)
    pieces, other = [], iter(unseeded)
    for piece in interleaved_seeded:
        pieces.append(piece)
        next(other, None)  # one unseeded step between every seeded one
    assert "".join(pieces) == alone
