"""demo.py (the README's main job) and checkpoint.load_trained_model, on a tiny fast run."""

import json
import os
import subprocess
import sys

import pytest
import torch

from checkpoint import load_trained_model, sidecar_filename
from config import make_config
from model import TransformerModel
from tokenizer import train_tokenizer
from utils import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo_args(folder):
    return ["--model_train_fraction", "0.02", "--num_epochs", "1", "--vocab_size", "400",
            "--embed_size", "32", "--num_layers", "1", "--eval_every", "0",
            "--tokenizer_filename", str(folder / "tokenizer.json"),
            "--model_filename", str(folder / "model.pth"),
            "--optimizer_filename", str(folder / "optimizer.pth"),
            "--log_filename", str(folder / "log.csv"), "--plot_filename", str(folder / "loss.png")]


def test_demo_trains_answers_and_reports_accuracy_without_serving(tmp_path):
    out = subprocess.run([sys.executable, "demo.py", "--no-serve", *demo_args(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "== Training the tokenizer" in out.stdout and "== Training the demo model" in out.stdout
    assert "Held-out questions" in out.stdout and "greedy:" in out.stdout and "top-p:" in out.stdout
    assert "Greedy exact-answer accuracy on all 590 held-out questions" in out.stdout
    assert "streamlit run chatbot.py -- --preset demo" in out.stdout
    info = json.load(open(sidecar_filename(str(tmp_path / "model.pth"))))
    assert info["epoch"] == 1

    again = subprocess.run([sys.executable, "demo.py", "--no-serve", *demo_args(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "== Using the trained model" in again.stdout  # no retraining


@pytest.fixture
def saved_model(tmp_path):
    cfg = make_config("tiny", device="cpu", vocab_size=400, dataset="builtin", model_train_fraction=0.01,
                      tokenizer_filename=str(tmp_path / "tokenizer.json"),
                      model_filename=str(tmp_path / "model.pth"))
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
