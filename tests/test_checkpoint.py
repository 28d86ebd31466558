"""checkpoint.py: loading checkpoints saved by other layouts of the same model."""

import pytest
import torch

from checkpoint import load_trained_model
from helpers import make_tiny_config
from model import TransformerModel
from utils import UserError


def course_reference_table(max_len, d):
    """The positional table of the course's reference solution (odinhg/decoder-answer-bot,
    model.py): column pair i turns at 10000^(2 * (i // 2) / d), not the paper's 10000^(2i / d)."""
    position = torch.arange(max_len).unsqueeze(1)  # (T, 1)
    pair = torch.arange(d // 2).unsqueeze(0)  # (1, d/2)
    angles = position / torch.pow(10000, 2 * (pair // 2) / d)  # (T, d/2)
    table = torch.zeros(max_len, d)
    table[:, 0::2], table[:, 1::2] = torch.sin(angles), torch.cos(angles)
    return table


def reference_checkpoint(tmp_path):
    """(config, the model the checkpoint was saved from, its state_dict in the reference layout)."""
    cfg = make_tiny_config(tmp_path)
    torch.manual_seed(0)
    saved_from = TransformerModel(cfg).eval()
    saved_from.pos_encoder.positional_encoding.copy_(course_reference_table(cfg.max_len, cfg.embed_size))
    weights = saved_from.state_dict()
    weights["positional_encoding"] = weights.pop("pos_encoder.positional_encoding")  # a buffer of the model
    torch.save(weights, cfg.model_filename)  # and no model.json, as the reference saves
    return cfg, saved_from, weights


def test_a_checkpoint_in_the_course_reference_layout_loads_with_its_own_table(tmp_path):
    cfg, saved_from, weights = reference_checkpoint(tmp_path)
    ours = TransformerModel(cfg).pos_encoder.positional_encoding
    assert not torch.allclose(weights["positional_encoding"], ours, atol=1e-3)  # so loading it matters
    model, info = load_trained_model(cfg)
    torch.testing.assert_close(model.pos_encoder.positional_encoding, weights["positional_encoding"])
    ids = torch.randint(4, cfg.vocab_size, (2, cfg.max_len))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), saved_from(ids))
    plain = TransformerModel(cfg)  # the template's own way of loading works too
    plain.load_state_dict(torch.load(cfg.model_filename, weights_only=True))
    torch.testing.assert_close(plain.pos_encoder.positional_encoding, weights["positional_encoding"])


def test_tensor_names_of_another_model_are_named_in_the_error(tmp_path):
    cfg, _, weights = reference_checkpoint(tmp_path)
    weights["lm_head.weight"] = weights.pop("fc_out.weight")
    torch.save(weights, cfg.model_filename)
    with pytest.raises(UserError, match="names its tensors differently") as error:
        load_trained_model(cfg)
    assert "missing: fc_out.weight" in str(error.value) and "not in model.py: lm_head.weight" in str(error.value)
    assert "--num_heads" not in str(error.value)  # not a head-count problem
