"""Bad inputs at the entry points the other test files do not cover (README: "Bad input").

Scripts must answer with one line on stderr and exit status 2, never a traceback; functions raise
ValueError or UserError with a message that says what is wrong and how to fix it.
"""

import gzip
import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from config import make_config
from inference import MAX_INPUT_CHARS, AnswerStream, SamplingSettings, sample_sequence, tokenize_input
from model import TransformerModel
from tokenizer import special_token_ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ODD_TEXTS = ["", "   \t\n ", "\x00\x07\x1b[31mred\x1b[0m\r\u202e", "emoji 😀🚀 中文问题 עברית مرحبا",
             "[SEP] [END] [PAD] [UNK] what?", "x" * (10 * MAX_INPUT_CHARS)]


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return TransformerModel(make_config("tiny", device="cpu", vocab_size=400, embed_size=16, num_heads=2,
                                        num_layers=1, max_len=24)).eval()


def run_script(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    for needle in needles:
        assert needle in message, message


# --- sample_sequence and the streaming generator ----------------------------------------------

@pytest.mark.parametrize("max_len", [0, -5])
def test_sample_sequence_refuses_max_len_below_one(small, max_len):
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        sample_sequence([5, 0], small, "greedy", max_len, "cpu", end_id=1)


def test_sample_sequence_refuses_an_empty_prompt(small):
    with pytest.raises(ValueError, match="input_sequence is empty"):
        sample_sequence([], small, "greedy", 10, "cpu", end_id=1)


@pytest.mark.parametrize("p, temperature, max_new", [(0.0, 0.7, 5), (1.5, 0.7, 5), (0.9, 0.0, 5), (0.9, -1, 5),
                                                     (0.9, 0.7, 0)])
def test_streaming_generator_refuses_out_of_range_settings(small, tokenizer, p, temperature, max_new):
    with pytest.raises(ValueError):
        AnswerStream(small, tokenizer, "hi?", SamplingSettings("top-p", p, temperature, max_new_tokens=max_new))


@pytest.mark.parametrize("text", ODD_TEXTS, ids=["empty", "whitespace", "control", "emoji-cjk-rtl", "special",
                                                  "very-long"])
def test_streaming_generator_answers_any_text(small, tokenizer, text):
    ids = special_token_ids(tokenizer, make_config("tiny"))
    prompt = tokenize_input(tokenizer, text, ids["sep"])
    assert prompt[-1] == ids["sep"] and (prompt[:-1] != ids["sep"]).all()  # typed [SEP] is plain text
    stream = AnswerStream(small, tokenizer, text, SamplingSettings("top-p", seed=0, max_new_tokens=10), ids)
    answer = "".join(stream)
    assert isinstance(answer, str) and answer == stream.text
    assert not {ids["sep"], ids["pad"], ids["unk"]} & {s.token_id for s in stream.steps}


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=60), st.integers(0, 2**31 - 1))
def test_streamed_pieces_join_to_the_one_shot_answer(small, tokenizer, question, seed):
    ids = special_token_ids(tokenizer, make_config("tiny"))
    stream = AnswerStream(small, tokenizer, question, SamplingSettings("top-p", temperature=1.5, seed=seed,
                                                                       max_new_tokens=12), ids)
    pieces = list(stream)
    answer_ids = [s.token_id for s in stream.steps if s.token_id != ids["end"]]
    assert "".join(pieces) == tokenizer.decode(answer_ids)
    assert all(pieces)


# --- the scripts' command lines -----------------------------------------------------------------

def write(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name, data, says", [
    ("missing.jsonl", None, "does not exist"),
    ("empty.jsonl", b"", "empty"),
    ("latin1.jsonl", '{"question": "caf\xe9?", "answer": "yes"}\n'.encode("latin-1"), "UTF-8"),
    ("columns.jsonl", b'{"q": "a?", "a": "b"}\n', "question"),
])
def test_tokenizer_script_names_a_bad_data_file(tmp_path, name, data, says):
    path = str(tmp_path / name) if data is None else write(tmp_path / name, data)
    result = run_script("tokenizer.py", "--tiny", "--dataset", path,
                        "--tokenizer_filename", str(tmp_path / "tok.json"))
    assert_one_line_error(result, says)


@pytest.mark.parametrize("args, says", [(["--top_p", "0"], "top_p"), (["--temperature", "-1"], "temperature"),
                                        (["--max_new_tokens", "0"], "max answer length")])
def test_inference_script_refuses_bad_sampling_settings(tmp_path, args, says):
    assert_one_line_error(run_script("inference.py", "--tiny", *args), says)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_inference_script_names_a_bad_checkpoint(tmp_path, tokenizer, small, damage):
    tokenizer.save(str(tmp_path / "tok.json"))
    model_path = tmp_path / "model.pth"
    if damage != "missing":
        torch.save(small.state_dict(), model_path)
        data = model_path.read_bytes()
        model_path.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x00garbage")
    result = run_script("inference.py", "--tiny", "--vocab_size", "400", "--embed_size", "16", "--num_layers", "1",
                        "--max_len", "24", "--tokenizer_filename", str(tmp_path / "tok.json"),
                        "--model_filename", str(model_path), "--question", "hi?")
    assert_one_line_error(result, str(model_path))


# --- the IMDb notebook's data loading -----------------------------------------------------------


def gz(path, data):
    with gzip.open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("test_bytes, says", [
    (b'{"text": "caf\xe9", "label": 1}\n', "not UTF-8"),
    (b'{"text": "fine", "label": 1\n', "not valid JSON"),
    (b'["fine", 1]\n', "expected"),
    (b'{"text": "fine", "label": "positive"}\n', "expected"),
])
def test_imdb_loading_names_the_bad_line(nb, tmp_path, test_bytes, says):
    gz(tmp_path / "train.jsonl.gz", json.dumps({"text": "good", "label": 1}).encode() + b"\n")
    gz(tmp_path / "test.jsonl.gz", test_bytes)
    with pytest.raises(ValueError, match=rf"test.jsonl.gz, line 1: {says}"):
        nb.load_imdb(str(tmp_path))


def test_imdb_loading_reports_a_truncated_file(nb, tmp_path):
    gz(tmp_path / "train.jsonl.gz", json.dumps({"text": "good", "label": 1}).encode() * 1000)
    data = (tmp_path / "train.jsonl.gz").read_bytes()
    (tmp_path / "train.jsonl.gz").write_bytes(data[: len(data) // 2])
    gz(tmp_path / "test.jsonl.gz", json.dumps({"text": "fine", "label": 1}).encode() + b"\n")
    with pytest.raises(ValueError, match="damaged or truncated"):
        nb.load_imdb(str(tmp_path))


@pytest.mark.parametrize("text", ODD_TEXTS, ids=["empty", "whitespace", "control", "emoji-cjk-rtl", "special",
                                                  "very-long"])
def test_classify_review_takes_any_text(nb, text):
    tokenizer = nb.train_word_tokenizer(["good film", "bad film"] * 10, vocab_size=20, min_frequency=1)
    torch.manual_seed(0)
    model = nb.make_model(vocab_size=tokenizer.get_vocab_size(), max_len=32, embedding_dim=8, num_heads=2,
                          num_layers=1)
    sentiment, p = nb.classify_review(text, model, tokenizer, 0, 2, 32)
    assert sentiment in ("positive", "negative") and 0 < p < 1
