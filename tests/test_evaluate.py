"""tools/evaluate.py: cross-entropy per answer token and perplexity of a trained model on any file."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from config import Config
from dataset import QADataset, build_sequence
from helpers import assert_one_line_error, run_script, train_tiny_chat_model, write_jsonl
from inference import load_trained_model
from support import corpus
from support.data_sources import load_qa_pairs
from tokenizer import encode_batch, load_tokenizer, special_token_ids
from tools.evaluate import score


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(config, model, tokenizer, a held-out JSON-lines file of 40 pairs) of a tiny trained run."""
    folder = tmp_path_factory.mktemp("evaluate")
    cfg, _ = train_tiny_chat_model(folder)
    tokenizer = load_tokenizer(cfg)
    model, _ = load_trained_model(cfg, "cpu", tokenizer)
    heldout = write_jsonl(folder / "heldout.jsonl", corpus.generate("heldout")[:40])
    return cfg, model, tokenizer, heldout


def one_pair_at_a_time(model, tokenizer, cfg, pairs):
    """Summed -log p of answer tokens and [END] given the question, and their count, pair by pair
    without padding or batching: the definition evaluate.score must meet."""
    ids = special_token_ids(tokenizer, cfg)
    questions, answers = encode_batch(tokenizer, pairs.questions), encode_batch(tokenizer, pairs.answers)
    total, count = 0.0, 0
    with torch.no_grad():
        for q, a in zip(questions, answers):
            sequence = torch.tensor([build_sequence(q, a, ids["sep"], ids["end"], model.max_len)])
            log_probs = F.log_softmax(model(sequence[:, :-1]), dim=-1)[0]  # (T, vocab)
            sep_at = sequence[0].tolist().index(ids["sep"])
            for position in range(sep_at, sequence.size(1) - 1):  # predicts answer tokens, then [END]
                total -= log_probs[position, sequence[0, position + 1]].item()
                count += 1
    return total, count


def test_answer_loss_is_the_cross_entropy_of_answer_tokens_given_the_question(run):
    cfg, model, tokenizer, heldout = run
    pairs = load_qa_pairs(heldout)
    dataset = QADataset(Config(**{**vars(cfg), "model_train_fraction": 1.0}), tokenizer, pairs=pairs)
    assert len(dataset) == 40
    sums = score(model, dataset, special_token_ids(tokenizer, cfg)["sep"], batch_size=7, device="cpu",
                 progress=False)
    expected_total, expected_count = one_pair_at_a_time(model, tokenizer, cfg, pairs)
    assert sums["answer"][1] == expected_count
    assert sums["answer"][0] == pytest.approx(expected_total, rel=1e-4)
    # every target token: the question's too, as train.py's validation loss counts them
    assert sums["all"][1] == int((dataset.collate(np.arange(len(dataset)))["target_sequence"] != -100).sum())
    assert sums["all"][1] > sums["answer"][1]


def test_the_command_prints_loss_and_perplexity_of_a_file(run):
    cfg, _, tokenizer, heldout = run
    result = run_script("-m", "tools.evaluate", "--preset", "tiny", "--device", "cpu", "--dataset", heldout,
                        "--tokenizer_filename", cfg.tokenizer_filename, "--model_filename", cfg.model_filename,
                        "--batch_size", "16")
    assert result.returncode == 0, result.stderr[-2000:]
    found = dict(re.findall(r"(answer|all) tokens\s+[\d,]+ tokens\s+cross-entropy (\d+\.\d+)", result.stdout))
    perplexity = dict(re.findall(r"(answer|all) tokens.*perplexity ([\d,]+\.\d+)", result.stdout))
    assert set(found) == {"answer", "all"} and "40 pairs" in result.stdout, result.stdout
    for name in found:
        assert float(perplexity[name].replace(",", "")) == pytest.approx(math.exp(float(found[name])), rel=1e-3)
    expected, count = one_pair_at_a_time(*(run[1], tokenizer, cfg), load_qa_pairs(heldout))
    assert float(found["answer"]) == pytest.approx(expected / count, abs=1e-4)


def test_a_missing_file_or_a_tokenizer_of_another_run_is_one_clear_line(run, tmp_path):
    cfg, _, _, heldout = run
    files = ["--tokenizer_filename", cfg.tokenizer_filename, "--model_filename", cfg.model_filename]
    result = run_script("-m", "tools.evaluate", "--preset", "tiny", "--dataset", str(tmp_path / "nope.jsonl"), *files)
    assert_one_line_error(result, "nope.jsonl", "does not exist")
    result = run_script("-m", "tools.evaluate", "--preset", "tiny", "--dataset", heldout, *files[:2],
                        "--model_filename", str(tmp_path / "none.pth"))
    assert_one_line_error(result, "no trained model", "none.pth")
    other = load_tokenizer(cfg)
    other.add_tokens(["zzz"])  # one more token: another run's tokenizer
    other.save(str(tmp_path / "other.json"))
    result = run_script("-m", "tools.evaluate", "--preset", "tiny", "--dataset", heldout, "--tokenizer_filename",
                        str(tmp_path / "other.json"), "--model_filename", cfg.model_filename)
    assert_one_line_error(result, "other.json", "different")
