"""model.py: template names and sizes, Fig. 4 layout, causality, padding, checkpoint loading."""

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from config import make_config
from helpers import ROOT, make_tiny_config, small_model
from model import DecoderBlock, KVCache, PositionalEncoding, TransformerModel, sinusoidal_table
from support.probes import attention_weights, check_model, expected_num_params, future_leak, untrained_loss
from utils import get_num_params


def max_future_leak(model, source):
    """The probe as `python model.py` runs it: with no padding mask and with one of all False."""
    def logits(ids, mask):
        return model(ids, mask)

    no_padding = torch.zeros_like(source, dtype=torch.bool)
    return max(future_leak(logits, source, model.vocab_size, mask)[0] for mask in (None, no_padding))

ATOL = 1e-5  # float32 on CPU


def small_config(**overrides):
    values = dict(vocab_size=300, embed_size=24, num_heads=3, max_len=12, dropout_p=0.0)
    return make_tiny_config(**{**values, **overrides})


def test_causal_mask_for_length_4():
    expected = torch.tensor([[False, True, True, True],
                             [False, False, True, True],
                             [False, False, False, True],
                             [False, False, False, False]])
    assert torch.equal(TransformerModel.generate_causal_mask(4), expected)
    assert TransformerModel.generate_causal_mask(4).dtype == torch.bool


def test_parameter_count_at_default_config():
    model = TransformerModel(make_config())
    assert get_num_params(model) == 36_261_920 == expected_num_params(make_config())


def test_parameter_count_of_tiny_preset():
    assert get_num_params(TransformerModel(make_config("tiny"))) == 171_560


def test_template_module_and_buffer_names():
    model = TransformerModel(small_config())
    keys = set(model.state_dict())
    for name in ("embedding.weight", "pos_encoder.positional_encoding", "causal_mask",
                 "fc_out.weight", "fc_out.bias", "layers.0.attention.in_proj_weight",
                 "layers.0.attention.out_proj.weight", "layers.0.norm1.weight", "layers.0.norm2.bias",
                 "layers.0.ffn.0.weight", "layers.0.ffn.2.bias"):
        assert name in keys, name
    for attr in ("embedding", "pos_encoder", "dropout", "layers", "fc_out", "causal_mask"):
        assert hasattr(model, attr)


@pytest.mark.parametrize("max_len, d", [(7, 8), (5, 6), (4, 5)])
def test_positional_encoding_equals_the_papers_formula(max_len, d):
    expected = torch.zeros(max_len, d)
    for pos in range(max_len):
        for i in range(d):
            angle = pos / 10000 ** (2 * (i // 2) / d)
            expected[pos, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    torch.testing.assert_close(sinusoidal_table(max_len, d), expected, atol=1e-6, rtol=0)
    pe = PositionalEncoding(d, max_len)
    assert "positional_encoding" in dict(pe.named_buffers())
    x = torch.randn(2, 3, d)
    torch.testing.assert_close(pe(x), x + expected[:3], atol=1e-6, rtol=0)


def manual_block(block, x, pad):
    """Fig. 4 written out by hand from the block's own weights, with explicit per-head attention."""
    B, T, C = x.shape
    H = block.attention.num_heads
    a = F.layer_norm(x, (C,), block.norm1.weight, block.norm1.bias)
    q, k, v = (a @ block.attention.in_proj_weight.T + block.attention.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
    scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)  # (B, H, T, T)
    blocked = torch.triu(torch.ones(T, T, dtype=torch.bool), 1) | pad[:, None, None, :]
    weights = scores.masked_fill(blocked, float("-inf")).softmax(-1)
    attended = (weights @ v).transpose(1, 2).reshape(B, T, C)
    attended = block.attention.out_proj(attended)
    h = F.layer_norm(x + attended, (C,), block.norm2.weight, block.norm2.bias)
    return h + block.ffn[2](F.gelu(block.ffn[0](h)))


def test_decoder_block_is_figure_4():
    torch.manual_seed(0)
    block = DecoderBlock(24, 3, dropout=0.1).eval()
    x = torch.randn(2, 6, 24)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    mask = TransformerModel.generate_causal_mask(6)
    with torch.no_grad():
        torch.testing.assert_close(block(x, mask, pad), manual_block(block, x, pad), atol=ATOL, rtol=1e-4)
        torch.testing.assert_close(block(x, mask, None), manual_block(block, x, torch.zeros(2, 6, dtype=torch.bool)),
                                   atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("branch", ["attention", "mlp"])
def test_each_residual_branch_has_its_dropout(branch):
    """Fig. 4 puts a Dropout on both residual branches. With the other branch silenced (its last
    linear layer zeroed), training-mode outputs must still be random and eval-mode ones not."""
    torch.manual_seed(0)
    block = DecoderBlock(24, 3, dropout=0.5)
    silenced = block.ffn[2] if branch == "attention" else block.attention.out_proj
    with torch.no_grad():
        silenced.weight.zero_()
        silenced.bias.zero_()
    x = torch.randn(2, 6, 24)
    mask = TransformerModel.generate_causal_mask(6)
    with torch.no_grad():
        block.eval()
        assert torch.equal(block(x, mask), block(x, mask))
        block.train()
        first, second = block(x, mask), block(x, mask)
    assert not torch.allclose(first, second), f"no dropout on the {branch} branch in training mode"
    # Without dropout the same block is deterministic in training mode too (so the randomness
    # above is the dropout's, not something else's).
    block.dropout1.p = block.dropout2.p = 0.0
    with torch.no_grad():
        assert torch.equal(block(x, mask), block(x, mask))


def test_no_information_from_future_tokens():
    torch.manual_seed(0)
    model = TransformerModel(small_config()).eval()
    source = torch.randint(4, 300, (1, 12))
    with torch.no_grad():
        assert max_future_leak(model, source) < ATOL


@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
def test_future_leak_check_catches_a_float_mask():
    # The template pitfall: a float 0/1 mask is added to the scores and lets the future through.
    torch.manual_seed(0)
    model = TransformerModel(small_config()).eval()
    model.causal_mask = model.causal_mask.float()
    with torch.no_grad():
        assert max_future_leak(model, torch.randint(4, 300, (1, 12))) > 1e-3


def test_padded_batch_equals_each_sequence_alone():
    torch.manual_seed(0)
    model = TransformerModel(small_config()).eval()
    lengths = [12, 7, 3]
    sequences = [torch.randint(4, 300, (n,)) for n in lengths]
    batch = torch.full((3, 12), 2)
    for i, s in enumerate(sequences):
        batch[i, : len(s)] = s
    mask = torch.arange(12)[None, :] >= torch.tensor(lengths)[:, None]
    with torch.no_grad():
        out = model(batch, mask)
        assert not out.isnan().any()
        for i, s in enumerate(sequences):
            alone = model(s[None])
            torch.testing.assert_close(out[i, : len(s)], alone[0], atol=ATOL, rtol=1e-4)


def test_training_mode_with_padding_has_finite_gradients():
    model = TransformerModel(small_config(dropout_p=0.1)).train()
    source = torch.randint(4, 300, (4, 12))
    mask = torch.zeros(4, 12, dtype=torch.bool)
    mask[1:, 6:] = True
    logits = model(source, mask)
    F.cross_entropy(logits.transpose(1, 2), source).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_longer_than_max_len_is_a_clear_error():
    model = TransformerModel(small_config())
    with pytest.raises(ValueError, match="longer than max_len=12"):
        model(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_checkpoint_with_wrapper_prefix_loads(prefix):
    torch.manual_seed(0)
    trained = TransformerModel(small_config())
    state = {prefix + k: v for k, v in trained.state_dict().items()}
    fresh = TransformerModel(small_config())
    fresh.load_state_dict(state)  # strict
    for key, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_state_dict_of_a_compiled_model_loads_into_a_plain_one():
    torch.manual_seed(0)
    trained = TransformerModel(small_config())
    compiled_state = torch.compile(trained).state_dict()  # what template train.py saves
    assert all(k.startswith("_orig_mod.") for k in compiled_state)
    torch.manual_seed(1)
    plain = TransformerModel(small_config())
    plain.load_state_dict(compiled_state)
    for key, value in trained.state_dict().items():
        assert torch.equal(plain.state_dict()[key], value), key


def test_positional_encoding_saved_with_a_batch_dimension_loads():
    state = TransformerModel(small_config()).state_dict()
    table = state["pos_encoder.positional_encoding"]
    state["pos_encoder.positional_encoding"] = (table + 1.0).unsqueeze(0)  # (1, max_len, d), changed
    model = TransformerModel(small_config())
    model.load_state_dict(state)
    loaded = model.pos_encoder.positional_encoding
    assert loaded.shape == table.shape and torch.equal(loaded, table + 1.0)


def test_a_state_dict_without_the_positional_table_loads_non_strictly():
    state = TransformerModel(small_config()).state_dict()
    del state["pos_encoder.positional_encoding"]  # a buffer: the model rebuilds it
    result = TransformerModel(small_config()).load_state_dict(state, strict=False)
    assert result.missing_keys == ["pos_encoder.positional_encoding"]


def test_checkpoint_of_another_shape_is_refused():
    state = TransformerModel(small_config()).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        TransformerModel(small_config(vocab_size=400)).load_state_dict(state)


def test_check_model_passes_on_an_untrained_model():
    cfg = small_config()
    torch.manual_seed(0)
    model = TransformerModel(cfg)
    source = torch.randint(4, 300, (1, 12))
    target = torch.cat([source[:, 1:], torch.full((1, 1), -100)], dim=1)
    report = check_model(model, cfg, source, target, None, pad_id=2)
    assert report["parameters"] == expected_num_params(cfg)
    assert abs(report["untrained loss"] - untrained_loss(300)) < 0.5  # the bound check_model asserts


def test_untrained_loss_check_catches_a_model_off_its_initial_scale():
    cfg = small_config()
    torch.manual_seed(0)
    model = TransformerModel(cfg)
    with torch.no_grad():
        model.fc_out.weight.mul_(3.0)  # logits 3x too large: loss about ln V + 1.5
    source = torch.randint(4, 300, (1, 12))
    target = torch.cat([source[:, 1:], torch.full((1, 1), -100)], dim=1)
    with pytest.raises(AssertionError):
        check_model(model, cfg, source, target, None, pad_id=2)


@pytest.mark.parametrize("preset", ["default", "tiny", "demo"])
def test_untrained_loss_is_near_ln_vocab_plus_a_sixth(preset):
    """The closed form behind check_model's bound, over many random targets (sd of the mean ~0.02)."""
    cfg = make_config(preset, device="cpu", max_len=min(64, make_config(preset).max_len))
    torch.manual_seed(0)
    model = TransformerModel(cfg).eval()
    source = torch.randint(4, cfg.vocab_size, (8, cfg.max_len))
    target = torch.randint(4, cfg.vocab_size, (8, cfg.max_len))
    with torch.no_grad():
        loss = F.cross_entropy(model(source).reshape(-1, cfg.vocab_size), target.reshape(-1)).item()
    assert abs(loss - untrained_loss(cfg.vocab_size)) < 0.15


def test_a_tokenizer_that_fills_the_vocabulary_exactly_fits(tmp_path):
    """A tokenizer of exactly vocab_size tokens fits the model; one token more does not
    (tokenizer.check_vocab_fits, the one check train.py and the loader of a trained run use)."""
    from support.errors import UserError
    from tokenizer import check_vocab_fits, train_tokenizer

    cfg = make_config("tiny", device="cpu", dataset="builtin", model_train_fraction=0.01, vocab_size=300,
                      tokenizer_filename=str(tmp_path / "tokenizer.json"))
    tokenizer = train_tokenizer(cfg)
    size = tokenizer.get_vocab_size()
    assert check_vocab_fits(tokenizer, size, cfg) is tokenizer
    with pytest.raises(UserError, match=f"has {size} tokens but config.vocab_size={size - 1}"):
        check_vocab_fits(tokenizer, size - 1, cfg)


def test_python_model_py_runs_its_assertions_offline(tmp_path):
    out = subprocess.run([sys.executable, "model.py", "--preset", "tiny"],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert "Number of parameters in the model: 171,560" in out.stdout
    assert "All model checks passed." in out.stdout


# ----------------------------------------------------------------------------------------------
# Decoding with a KV cache: the model's own forward, one token at a time

def test_kv_cache_logits_equal_full_recomputation_at_every_step():
    """Tolerance: float32 on a CPU; the cached path sums the same products in another order."""
    model = small_model()
    ids = torch.randint(4, 300, (2, 20))
    cache = KVCache(len(model.layers))
    with torch.no_grad():
        full = model(ids)
        got = [model(ids[:, :7], cache=cache)]  # a prompt, then one token at a time
        for t in range(7, 20):
            got.append(model(ids[:, t:t + 1], cache=cache))
    torch.testing.assert_close(torch.cat(got, dim=1), full, atol=1e-5, rtol=1e-5)




def test_cached_attention_is_the_blocks_own_multihead_attention():
    """A block's cached path, fed a whole sequence into an empty cache, equals nn.MultiheadAttention."""
    torch.manual_seed(0)
    block = DecoderBlock(24, 3, dropout=0.0).eval()
    x = torch.randn(2, 9, 24)
    mask = TransformerModel.generate_causal_mask(9)
    with torch.no_grad():
        torch.testing.assert_close(block(x, mask, cache=KVCache(1).layers[0]), block(x, mask), atol=ATOL, rtol=ATOL)


def test_the_cache_keeps_every_layers_keys_and_values_of_every_position():
    model = small_model()
    cache = KVCache(model.num_layers)
    with torch.no_grad():
        model(torch.randint(4, 300, (1, 5)), cache=cache)
        model(torch.randint(4, 300, (1, 1)), cache=cache)
    assert len(cache) == 6 and len(cache.layers) == 2
    assert all(layer.keys.shape == layer.values.shape == (1, 3, 6, 8) for layer in cache.layers)


def test_a_cache_takes_no_padding_mask():
    model = small_model()
    with pytest.raises(ValueError, match="cache takes no padding mask"):
        model(torch.randint(4, 300, (1, 5)), torch.zeros(1, 5, dtype=torch.bool), cache=KVCache(2))


def test_the_cache_refuses_more_tokens_than_max_len_and_says_how_many():
    model = small_model()  # max_len 20
    cache = KVCache(len(model.layers))
    with torch.no_grad():
        model(torch.randint(4, 300, (1, 15)), cache=cache)
        with pytest.raises(ValueError, match=r"21 tokens \(15 cached \+ 6 new\) is longer than max_len=20"):
            model(torch.randint(4, 300, (1, 6)), cache=cache)


def test_attention_weights_are_each_heads_softmax_over_allowed_positions():
    """support.probes.attention_weights (the chat page's attention view): rows sum to 1 over positions
    0..t, are zero on later ones, and equal softmax(q k^T / sqrt(d)) written out from the first
    block's own weights; the model is left in the mode it was in."""
    model = small_model(seed=4).train()
    ids = torch.randint(4, 300, (9,))
    weights = attention_weights(model, ids)
    assert weights.shape == (2, 3, 9, 9) and model.training
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 9), atol=1e-5, rtol=1e-5)
    allowed = ~model.causal_mask[:9, :9]
    assert torch.all(weights[..., ~allowed] == 0) and torch.all(weights[..., allowed] > 0)
    block = model.layers[0]
    with torch.no_grad():
        x = block.norm1(model.pos_encoder(model.embedding(ids[None])))  # eval: no dropout
        q, k, _ = torch.nn.functional.linear(x, block.attention.in_proj_weight,
                                              block.attention.in_proj_bias).chunk(3, dim=-1)
        q, k = (t.view(1, 9, 3, 8).transpose(1, 2) for t in (q, k))  # (1, H, T, D)
        scores = (q @ k.transpose(-2, -1) / 8 ** 0.5).masked_fill(model.causal_mask[:9, :9], float("-inf"))
    torch.testing.assert_close(weights[0], scores.softmax(-1)[0], atol=1e-5, rtol=1e-5)
