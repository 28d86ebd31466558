"""Probes of a model instance: what `python model.py` asserts, what the self-check measures on
anyone's model, and what the chat page shows. Each takes the model (or a function giving its
logits), never the code that built it.

    from support.probes import future_leak, padding_effect
    future_leak(lambda ids, mask: model(ids, mask), ids, model.vocab_size)   # 0.0 for a causal model
"""

import math

import torch
import torch.nn.functional as F


def expected_num_params(config):
    """Closed-form parameter count of the course's TransformerModel (Fig. 4 blocks on
    nn.MultiheadAttention with biases, no weight tying).

    >>> from types import SimpleNamespace
    >>> expected_num_params(SimpleNamespace(embed_size=512, vocab_size=20_000, num_layers=5))
    36261920
    """
    d, v, L = config.embed_size, config.vocab_size, config.num_layers
    attention = 3 * d * d + 3 * d + d * d + d  # in_proj + out_proj, with biases
    mlp = d * 4 * d + 4 * d + 4 * d * d + d
    norms = 2 * 2 * d
    return v * d + (d * v + v) + L * (attention + mlp + norms)


def untrained_loss(vocab_size):
    """Expected cross-entropy of an untrained TransformerModel: ln(V) + 1/6.

    fc_out's default initialisation, U(-1/sqrt(d), 1/sqrt(d)), gives every logit a variance of
    d * 1/(3d) = 1/3 over the d unit-variance LayerNorm features, and for logits ~ N(0, s^2) the
    expected cross-entropy of a random target is ln(V) + s^2/2 (tests/test_model.py checks this within
    0.15 for the default, tiny and demo presets). A uniform model would score exactly ln(V).
    >>> round(untrained_loss(20_000), 3)
    10.07
    """
    return math.log(vocab_size) + 1 / 6


@torch.no_grad()
def future_leak(logits, ids, vocab_size, padding_mask=None, low=4, every=1):
    """(largest change, t): how much the logits at positions <= t move when every token after t
    is replaced, at the t (every `every`-th) where they move most. 0.0 for a causal model.

    `logits(ids, padding_mask)` gives (B, T, vocab) logits; replacement tokens stay in
    [low, vocab_size) (ids below `low` are the special tokens). Check with a padding mask too:
    without one, nn.MultiheadAttention honours the is_causal hint and never reads attn_mask, so a
    broken causal mask only shows once a padding mask is passed.
    """
    base = logits(ids, padding_mask)
    worst, where = 0.0, 0
    for t in range(0, ids.size(1) - 1, every):
        changed = ids.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] - low + 1) % (vocab_size - low) + low
        change = float((logits(changed, padding_mask)[:, :t + 1] - base[:, :t + 1]).abs().max())
        if change > worst:
            worst, where = change, t
    return worst, where


@torch.no_grad()
def padding_effect(logits, real_ids, pad_id, n_pad):
    """Largest change of the real positions' logits when `n_pad` [PAD] tokens are appended and
    marked in the padding mask (inf when the padded logits are not finite). real_ids (1, n)."""
    n = real_ids.size(1)
    padded = torch.cat([real_ids, torch.full((1, n_pad), pad_id, dtype=real_ids.dtype)], dim=1)
    mask = torch.arange(n + n_pad)[None, :] >= n  # (1, n + n_pad), True at padding
    alone, with_pads = logits(real_ids, None), logits(padded, mask)[:, :n]
    return float((with_pads - alone).abs().nan_to_num(float("inf")).max())


def check_model(model, config, source, target, padding_mask, pad_id):
    """What `python model.py` asserts of an untrained `model`, on one (1, T) example; returns the
    measured values.

    The parameter count of the closed form; logits of shape (1, T, vocab_size); an untrained loss
    within 0.5 of ln(V) + 1/6 (per-token losses spread with a standard deviation of about 0.6, so
    over >= 12 targets 0.5 is about 3 standard errors: a missing LayerNorm or logits scaled by 2
    land outside); no change at positions <= t when later tokens change (with and without a
    padding mask); no change of real positions when padding is appended.
    """
    report = {}
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_params == expected_num_params(config), (n_params, expected_num_params(config))
    report["parameters"] = n_params

    model.eval()
    with torch.no_grad():
        out = model(source, padding_mask)
    assert out.shape == (*source.shape, config.vocab_size), out.shape
    report["output shape"] = tuple(out.shape)
    report["untrained loss"] = F.cross_entropy(out.transpose(1, 2), target).item()
    expected = untrained_loss(config.vocab_size)
    assert abs(report["untrained loss"] - expected) < 0.5, (report["untrained loss"], expected)

    def logits(ids, mask):
        return model(ids, mask)

    no_padding = torch.zeros_like(source, dtype=torch.bool)
    every = max(1, (source.size(1) - 1) // 8)  # 8 cut points: enough, and quick for the 36M model
    report["future leak"] = max(future_leak(logits, source, config.vocab_size, mask, every=every)[0]
                                for mask in (None, no_padding))
    assert report["future leak"] < 1e-4, report["future leak"]
    real = source[:, : int((~padding_mask).sum())] if padding_mask is not None else source
    real = real[:, : max(1, min(real.size(1), model.max_len - 1))]  # leave room for padding
    report["padding effect"] = padding_effect(logits, real, pad_id, model.max_len - real.size(1))
    assert report["padding effect"] < 1e-4, report["padding effect"]
    return report


@torch.no_grad()
def attention_weights(model, ids):
    """What every head attended to, for one sequence: (num_layers, num_heads, T, T), row t the
    weights of position t over positions 0..t (each row sums to 1, zero above the diagonal).

    A separate pass for looking (the chat page's attention view): it follows the model's forward
    block by block and asks each block's own nn.MultiheadAttention for its weights, which training
    and decoding never compute (need_weights=False there).
    """
    was_training = model.training
    model.eval()
    x = torch.as_tensor(ids, device=model.causal_mask.device).view(1, -1)  # (1, T)
    mask = model.causal_mask[:x.size(1), :x.size(1)]  # (T, T)
    h = model.dropout(model.pos_encoder(model.embedding(x)))  # (1, T, C)
    maps = []
    for layer in model.layers:
        normed = layer.norm1(h)
        _, weights = layer.attention(normed, normed, normed, attn_mask=mask, need_weights=True,
                                     average_attn_weights=False)  # (1, H, T, T)
        maps.append(weights[0])
        h = layer(h, mask)  # (1, T, C)
    model.train(was_training)
    return torch.stack(maps)  # (L, H, T, T)
