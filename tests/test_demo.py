"""tools/demo.py (the README's main job) and inference.load_trained_model, on a tiny fast run."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from config import make_config
from helpers import ROOT, make_tiny_config
from inference import SamplingSettings, load_trained_model
from model import TransformerModel
from support import corpus
from support.checkpoint import sidecar_filename
from support.errors import UserError
from tokenizer import load_tokenizer, special_token_ids, train_tokenizer
from tools import demo
from tools.answers import AnswerStream


def demo_args(folder):
    return ["--model_train_fraction", "0.02", "--num_epochs", "1", "--vocab_size", "400",
            "--embed_size", "32", "--num_layers", "1", "--eval_every", "0",
            "--tokenizer_filename", str(folder / "tokenizer.json"),
            "--model_filename", str(folder / "model.pth"),
            "--optimizer_filename", str(folder / "optimizer.pth"),
            "--log_filename", str(folder / "log.csv"), "--plot_filename", str(folder / "loss.png")]


def test_demo_trains_answers_and_reports_accuracy_without_serving(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.demo", "--no-serve", *demo_args(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "== Training the tokenizer" in out.stdout and "== Training the demo model" in out.stdout
    assert "Held-out questions" in out.stdout and "greedy:" in out.stdout and "top-p:" in out.stdout
    assert "Greedy exact-answer accuracy on all 590 held-out questions" in out.stdout
    assert "streamlit run chatbot.py -- --preset demo" in out.stdout
    info = json.load(open(sidecar_filename(str(tmp_path / "model.pth"))))
    assert info["epoch"] == 1

    # The accuracy printed is the one we count ourselves with the trained model.
    printed = re.search(r"accuracy (\d+\.\d)% \((\d+)/(\d+);", out.stdout)
    assert printed, out.stdout[-1000:]
    cfg = make_config("demo", device="cpu", vocab_size=400, embed_size=32, num_layers=1,
                      tokenizer_filename=str(tmp_path / "tokenizer.json"),
                      model_filename=str(tmp_path / "model.pth"))
    tokenizer = load_tokenizer(cfg)
    model, _ = load_trained_model(cfg, "cpu", tokenizer)
    ids = special_token_ids(tokenizer, cfg)
    rows = corpus.generate("heldout", seed=cfg.seed)
    greedy = SamplingSettings("greedy", max_new_tokens=model.max_len)
    right = sum(corpus.is_correct("".join(AnswerStream(model, tokenizer, r["question"], greedy, ids)), r["answer"])
                for r in rows)
    assert (int(printed[2]), int(printed[3])) == (right, len(rows)) == (right, 590)
    assert float(printed[1]) == round(100 * right / 590, 1)

    again = subprocess.run([sys.executable, "-m", "tools.demo", "--no-serve", *demo_args(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "== Using the trained model" in again.stdout  # no retraining


def test_heldout_accuracy_counts_exactly_the_right_answers(monkeypatch):
    """With answers known in advance (every third one right), the accuracy is exactly that share."""
    rows = corpus.generate("heldout", seed=0)

    class ScriptedAnswers:
        def __init__(self, model, tokenizer, question, settings, ids):
            n = [r["question"] for r in rows].index(question)
            self.answer = rows[n]["answer"] if n % 3 == 0 else "no idea"

        def __iter__(self):
            yield self.answer

    monkeypatch.setattr(demo, "AnswerStream", ScriptedAnswers)
    monkeypatch.setattr(demo, "special_token_ids", lambda tokenizer, config: {})
    model = type("Model", (), {"max_len": 64})()
    right, total, per_family = demo.evaluate_heldout(model, None, make_config("demo"), rows)
    assert (right, total) == (len(range(0, len(rows), 3)), len(rows))
    for family in {r["family"] for r in rows}:
        numbers = [i for i, r in enumerate(rows) if r["family"] == family]
        assert per_family[family] == pytest.approx(sum(i % 3 == 0 for i in numbers) / len(numbers))


@pytest.fixture
def saved_model(tmp_path):
    cfg = make_tiny_config(tmp_path, vocab_size=400, dataset="builtin", model_train_fraction=0.01)
    tokenizer = train_tokenizer(cfg)
    torch.manual_seed(0)
    model = TransformerModel(cfg)
    torch.save(model.state_dict(), cfg.model_filename)
    return cfg, tokenizer, model


def test_template_checkpoint_without_model_json_loads_with_its_own_shape(saved_model):
    cfg, tokenizer, model = saved_model
    torch.save(torch.compile(model).state_dict(), cfg.model_filename)  # template keys
    other_preset = make_config("default", device="cpu", tokenizer_filename=cfg.tokenizer_filename,
                               model_filename=cfg.model_filename, num_heads=2)
    loaded, info = load_trained_model(other_preset, "cpu", tokenizer)
    assert info["model_shape"]["embed_size"] == 16 and info["model_shape"]["vocab_size"] == 400
    assert info["model_shape"]["num_heads"] == 2 and "assuming num_heads=2 (from --num_heads)" in info["notes"][0]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_missing_model_says_how_to_train(saved_model):
    cfg, tokenizer, _ = saved_model
    os.remove(cfg.model_filename)
    with pytest.raises(UserError, match=r"no trained model at .*python train.py --preset tiny"):
        load_trained_model(cfg, "cpu", tokenizer)


def test_tokenizer_larger_than_model_vocabulary_is_refused(saved_model):
    cfg, tokenizer, _ = saved_model
    small = make_config("tiny", device="cpu", vocab_size=300, model_filename=cfg.model_filename)
    torch.save(TransformerModel(small).state_dict(), cfg.model_filename)
    with pytest.raises(UserError, match="has 400 tokens but model .* only 300"):
        load_trained_model(cfg, "cpu", tokenizer)


def test_optimizer_file_passed_as_model_is_refused(saved_model, tmp_path):
    cfg, tokenizer, model = saved_model
    torch.save(torch.optim.AdamW(model.parameters()).state_dict(), cfg.model_filename)
    with pytest.raises(UserError, match="holds no TransformerModel weights"):
        load_trained_model(cfg, "cpu", tokenizer)


# ----------------------------------------------------------------------------------------------
# A checkpoint without model.json: the head count is never silently wrong

@pytest.fixture
def tiny_template_checkpoint(tmp_path):
    """Weights of the tiny preset's shape (2 heads) saved as the template does: no model.json."""
    cfg = make_tiny_config(tmp_path)
    torch.manual_seed(0)
    model = TransformerModel(cfg).eval()
    torch.save(model.state_dict(), cfg.model_filename)
    return cfg, model


def test_wrong_head_count_loads_silently_and_changes_the_answers(tiny_template_checkpoint):
    """Why the head count needs care: 4 heads load the 2-head weights without complaint."""
    cfg, model = tiny_template_checkpoint
    wrong = TransformerModel(make_config("tiny", device="cpu", num_heads=4)).eval()
    wrong.load_state_dict(torch.load(cfg.model_filename, weights_only=True))
    ids = torch.randint(4, 5000, (1, 10))
    with torch.no_grad():
        assert not torch.allclose(wrong(ids), model(ids), atol=1e-3)


def test_head_count_of_the_preset_is_used_and_said(tiny_template_checkpoint):
    cfg, model = tiny_template_checkpoint
    loaded, info = load_trained_model(cfg, "cpu")
    assert loaded.num_heads == 2 and info["model_shape"]["num_heads"] == 2
    (note,) = info["notes"]
    assert "model.json' is missing" in note and "assuming num_heads=2" in note
    assert "preset 'tiny'" in note and "--num_heads N" in note
    ids = torch.randint(4, 5000, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model(ids))


def test_head_count_from_the_command_line_is_used_and_said(tiny_template_checkpoint):
    cfg, _ = tiny_template_checkpoint
    other = make_config("default", device="cpu", model_filename=cfg.model_filename, num_heads=4)
    loaded, info = load_trained_model(other, "cpu")
    assert loaded.num_heads == 4 and "assuming num_heads=4 (from --num_heads)" in info["notes"][0]


def test_two_plausible_head_counts_give_a_message_not_a_guess(tiny_template_checkpoint):
    cfg, _ = tiny_template_checkpoint
    default = make_config("default", device="cpu", model_filename=cfg.model_filename)
    with pytest.raises(UserError, match=r"preset 'default' says num_heads=8, but the weights have the shape "
                                        r"of preset 'tiny', which has 2 heads; pass --num_heads 2"):
        load_trained_model(default, "cpu")


def test_weights_of_no_preset_ask_for_the_head_count(tmp_path):
    cfg = make_config("tiny", device="cpu", vocab_size=400, model_filename=str(tmp_path / "model.pth"))
    torch.save(TransformerModel(cfg).state_dict(), cfg.model_filename)
    assert load_trained_model(cfg, "cpu")[0].num_heads == 2  # the config describes these weights
    default = make_config("default", device="cpu", model_filename=cfg.model_filename)
    with pytest.raises(UserError, match=r"fit no preset to take it from: pass --num_heads N .*1, 2, 4, 8, 16\)"):
        load_trained_model(default, "cpu")


def test_inference_script_says_which_head_count_it_assumed(tiny_template_checkpoint, tmp_path):
    cfg, _ = tiny_template_checkpoint
    train_tokenizer(make_config("tiny", dataset="builtin", model_train_fraction=0.01,
                                tokenizer_filename=cfg.tokenizer_filename))
    out = subprocess.run([sys.executable, "inference.py", "--preset", "tiny", "--device", "cpu",
                          "--model_filename", cfg.model_filename, "--tokenizer_filename", cfg.tokenizer_filename,
                          "--question", "hi?", "--strategy", "greedy", "--max_new_tokens", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "assuming num_heads=2 (from the config, preset 'tiny'" in out.stdout and "--num_heads N" in out.stdout
