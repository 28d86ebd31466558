"""The network: a GPT-2-style decoder on `torch.nn.MultiheadAttention` (course template, Fig. 4).

    python model.py                  # sanity checks of the default 36,261,920-parameter model
    python model.py --preset tiny    # the same checks on the tiny CPU model

The checks assert (they do not just print): the parameter count, the output shape, an untrained
loss near ln(vocab_size), that no information flows from future tokens, and that padding does not
change the logits of real positions. They run offline on the built-in generated corpus unless
--dataset names another source.

Module and buffer names are the template's (and the course reference's), so checkpoints trained
with the template load here, including those saved from a `torch.compile`d model whose keys
carry `_orig_mod.`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal_table(max_len, embed_size):
    """The sinusoidal positional encoding of "Attention Is All You Need", shape (max_len, embed).

    PE[pos, 2i] = sin(pos / 10000^(2i/d)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/d)).
    >>> sinusoidal_table(2, 4)[1]
    tensor([0.8415, 0.5403, 0.0100, 0.9999])
    """
    position = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    frequency = torch.exp(torch.arange(0, embed_size, 2, dtype=torch.float64)
                          * (-math.log(10000.0) / embed_size))  # (ceil(d/2),)
    angles = position * frequency  # (T, ceil(d/2))
    table = torch.zeros(max_len, embed_size, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : embed_size // 2])  # odd d has one cosine fewer
    return table.float()


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to token embeddings (computed once, no loops)."""

    def __init__(self, embed_size, max_len):
        super().__init__()
        # Persistent, as in the template, so the key pos_encoder.positional_encoding is in
        # template checkpoints; a loader hook accepts it in (max_len, d) or (1, max_len, d).
        self.register_buffer("positional_encoding", sinusoidal_table(max_len, embed_size))
        self.register_load_state_dict_pre_hook(_reshape_positional_encoding)

    def forward(self, x, start=0):
        # x: (B, T, C), the embeddings of positions start, ..., start + T - 1
        return x + self.positional_encoding[start:start + x.size(1)].to(x.dtype)  # (B, T, C)


def _reshape_positional_encoding(module, state_dict, prefix, *args):
    key = prefix + "positional_encoding"
    ours = module.positional_encoding
    if key in state_dict and state_dict[key].shape != ours.shape and state_dict[key].numel() == ours.numel():
        state_dict[key] = state_dict[key].reshape(ours.shape)


class DecoderBlock(nn.Module):
    """One block of the assignment's Fig. 4 ("GPT-2 style"):

        h   = LN2(x + Dropout(MHA(LN1(x))))
        out = h + Dropout(MLP(h)),   MLP = Linear(d, 4d) -> GELU -> Linear(4d, d)
    """

    def __init__(self, embed_size, num_heads, dropout):
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_size, num_heads, batch_first=True)
        self.norm1 = nn.LayerNorm(embed_size)
        self.norm2 = nn.LayerNorm(embed_size)
        self.ffn = nn.Sequential(
            nn.Linear(embed_size, 4 * embed_size),
            nn.GELU(),
            nn.Linear(4 * embed_size, embed_size),
        )
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x, attn_mask, padding_mask=None, cache=None):
        # x: (B, T, C); attn_mask: (T, T) bool, True = may not attend (future);
        # padding_mask: (B, T) bool, True = [PAD] key to ignore, or None at inference.
        # note: both masks must be bool; a float mask is *added* to the scores (template pitfall).
        # cache: a LayerCache when decoding; then attn_mask is (T, S), S = cached + T positions.
        normed = self.norm1(x)
        if cache is None:
            attended, _ = self.attention(normed, normed, normed, attn_mask=attn_mask,
                                         key_padding_mask=padding_mask, need_weights=False,
                                         is_causal=True)  # (B, T, C)
        else:
            attended = self.cached_attention(normed, attn_mask, cache)  # (B, T, C)
        h = self.norm2(x + self.dropout1(attended))  # (B, T, C)
        return h + self.dropout2(self.ffn(h))  # (B, T, C)

    def cached_attention(self, x, attn_mask, cache):
        """self.attention(x, x, x) for new positions only, reading earlier keys and values from
        `cache` and appending the new ones to it (decoding; inference.generate).

        nn.MultiheadAttention cannot hand back its keys and values, so this writes out what it
        computes, with its own weights: in_proj_weight stacks the query, key and value
        projections, out_proj joins the heads. Equal to full recomputation (tests/test_model.py).
        """
        B, T, C = x.shape
        H = self.attention.num_heads
        q, k, v = F.linear(x, self.attention.in_proj_weight,
                           self.attention.in_proj_bias).chunk(3, dim=-1)  # (B, T, C) each
        q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
        k, v = cache.append(k, v)  # (B, H, S, C/H)
        # note: a bool mask means the opposite here: True = *may* attend.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=~attn_mask)  # (B, H, T, C/H)
        return self.attention.out_proj(out.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class LayerCache:
    """One layer's keys and values of every position decoded so far, (B, H, S, C/H) each."""

    def __init__(self):
        self.keys = self.values = None

    def append(self, k, v):
        """Add the new positions' keys and values; return those of all positions."""
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v

    def __len__(self):
        return 0 if self.keys is None else self.keys.size(2)


class KVCache:
    """What decoding keeps between steps so that each new token runs through the model alone.

    >>> model = TransformerModel(__import__("config").make_config("tiny"))
    >>> cache = KVCache(model.num_layers)
    >>> model(torch.tensor([[5, 6, 7]]), cache=cache).shape, len(cache)  # the prompt
    (torch.Size([1, 3, 5000]), 3)
    >>> model(torch.tensor([[8]]), cache=cache).shape, len(cache)  # then one token at a time
    (torch.Size([1, 1, 5000]), 4)
    """

    def __init__(self, num_layers):
        self.layers = [LayerCache() for _ in range(num_layers)]

    def __len__(self):
        return len(self.layers[0])


class TransformerModel(nn.Module):
    """Token embedding + positional encoding -> decoder blocks -> logits over the vocabulary."""

    def __init__(self, config):
        super().__init__()
        self.embed_size = config.embed_size
        self.num_layers = config.num_layers
        self.vocab_size = config.vocab_size
        self.max_len = config.max_len
        self.dropout_p = config.dropout_p
        self.num_heads = config.num_heads
        self.device = config.device

        self.embedding = nn.Embedding(self.vocab_size, self.embed_size)
        self.pos_encoder = PositionalEncoding(self.embed_size, self.max_len)
        self.dropout = nn.Dropout(self.dropout_p)
        self.layers = nn.ModuleList(
            DecoderBlock(self.embed_size, self.num_heads, self.dropout_p)
            for _ in range(self.num_layers)
        )
        self.fc_out = nn.Linear(self.embed_size, self.vocab_size)
        self.register_buffer("causal_mask", self.generate_causal_mask(self.max_len))
        self.register_load_state_dict_pre_hook(_standardize_keys_hook)

    def forward(self, x, padding_mask=None, cache=None):
        # x: (B, T) token ids; padding_mask: (B, T) bool, True at [PAD], or None.
        # cache: a KVCache when decoding; x then holds only the positions after the cached ones.
        return self.fc_out(self.hidden_states(x, padding_mask, cache))  # (B, T, vocab)

    def hidden_states(self, x, padding_mask=None, cache=None):
        """The last block's output (B, T, C): forward without fc_out. Training in fp32 and bf16
        computes fc_out and the loss together from these (fused_loss.py), never holding the
        (B, T, vocab) logits."""
        start = 0 if cache is None else len(cache)
        end = start + x.size(1)
        if end > self.max_len:
            cached = f" ({start} cached + {x.size(1)} new)" if start else ""
            raise ValueError(f"sequence of {end} tokens{cached} is longer than max_len={self.max_len}")
        if cache is not None and padding_mask is not None:
            raise ValueError("decoding with a cache takes no padding mask")
        attn_mask = self.causal_mask[start:end, :end]  # (T, S): position start + i sees 0..start + i
        x = self.dropout(self.pos_encoder(self.embedding(x), start))  # (B, T, C)
        for i, layer in enumerate(self.layers):
            x = layer(x, attn_mask, padding_mask, None if cache is None else cache.layers[i])  # (B, T, C)
        return x

    @staticmethod
    def generate_causal_mask(seq_len):
        """(seq_len, seq_len) bool, True strictly above the diagonal = "may not attend".

        >>> TransformerModel.generate_causal_mask(3)
        tensor([[False,  True,  True],
                [False, False,  True],
                [False, False, False]])
        """
        return torch.triu(torch.ones(seq_len, seq_len), diagonal=1).bool()


@torch.no_grad()
def attention_weights(model, ids):
    """What every head attended to, for one sequence: (num_layers, num_heads, T, T), row t the
    weights of position t over positions 0..t (each row sums to 1, zero above the diagonal).

    A separate pass for looking (the chat page's attention view): it follows hidden_states block
    by block and asks each block's own nn.MultiheadAttention for its weights, which training and
    decoding never compute (need_weights=False there).
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


WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DistributedDataParallel


def unwrap_key(key):
    """A state_dict key without the prefixes torch.compile and DDP add.

    >>> unwrap_key("module._orig_mod.fc_out.weight")
    'fc_out.weight'
    """
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def standardize_keys(state_dict, prefix=""):
    """Rename, in place, the keys of other layouts of this same model to this file's names:

    - `_orig_mod.` and `module.`, added by torch.compile (the template's train.py saves the
      compiled model) and by DistributedDataParallel, are dropped;
    - a top-level `positional_encoding` (the course's reference solution keeps the table in the
      model itself, not in a PositionalEncoding module) becomes `pos_encoder.positional_encoding`,
      so the table the model was trained with is the one loaded.
    >>> standardize_keys({"_orig_mod.positional_encoding": 0, "fc_out.bias": 1})
    {'fc_out.bias': 1, 'pos_encoder.positional_encoding': 0}
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = unwrap_key(key[len(prefix):])
        if rest == "positional_encoding":
            rest = "pos_encoder.positional_encoding"
        if prefix + rest != key:
            state_dict[prefix + rest] = state_dict.pop(key)
    return state_dict


def _standardize_keys_hook(module, state_dict, prefix, *args):
    """load_state_dict hook: template, compiled, DDP and reference checkpoints load directly."""
    standardize_keys(state_dict, prefix)


def expected_num_params(config):
    """Closed-form parameter count of TransformerModel(config).

    >>> from config import make_config; expected_num_params(make_config())
    36261920
    """
    d, v, L = config.embed_size, config.vocab_size, config.num_layers
    attention = 3 * d * d + 3 * d + d * d + d  # in_proj + out_proj, with biases
    mlp = d * 4 * d + 4 * d + 4 * d * d + d
    norms = 2 * 2 * d
    return v * d + (d * v + v) + L * (attention + mlp + norms)


# ----------------------------------------------------------------------------------------------
# Sanity checks (`python model.py`): each one asserts.

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


def check_model(model, config, source, target, padding_mask, pad_id):
    """Run every sanity check on an untrained `model` with one (1, T) example; return a report."""
    from utils import get_num_params

    report = {}
    n_params = get_num_params(model)
    assert n_params == expected_num_params(config), (n_params, expected_num_params(config))
    report["parameters"] = n_params

    model.eval()
    with torch.no_grad():
        logits = model(source, padding_mask)
        assert logits.shape == (*source.shape, config.vocab_size), logits.shape
        report["output shape"] = tuple(logits.shape)

        loss = F.cross_entropy(logits.transpose(1, 2), target).item()
        expected = untrained_loss(config.vocab_size)
        # Per-token losses of an untrained model spread with a standard deviation of about 0.6
        # (the logits' own), so over the >= 12 targets of one example 0.5 is about 3 standard
        # errors; a model that is not at its initial scale (a missing LayerNorm, logits scaled by
        # 2) or that has learnt something lands outside.
        assert abs(loss - expected) < 0.5, (loss, expected)
        report["untrained loss"] = loss

        report["future leak"] = _max_future_leak(model, source)
        assert report["future leak"] < 1e-4, report["future leak"]
        report["padding effect"] = _max_padding_effect(model, source, padding_mask, pad_id)
        assert report["padding effect"] < 1e-4, report["padding effect"]
    return report


def _max_future_leak(model, source):
    """Largest change of logits at positions <= t when tokens after t change, over several t.

    Checked with and without a padding mask: with none, nn.MultiheadAttention honours the
    is_causal hint and never reads attn_mask, so a broken mask only shows with a padding mask.
    """
    no_padding = torch.zeros_like(source, dtype=torch.bool)
    worst = 0.0
    for padding_mask in (None, no_padding):
        base = model(source, padding_mask)
        for t in range(0, source.size(1) - 1, max(1, (source.size(1) - 1) // 8)):
            changed = source.clone()
            changed[0, t + 1:] = (changed[0, t + 1:] + 1) % model.vocab_size
            out = model(changed, padding_mask)
            worst = max(worst, (out[0, : t + 1] - base[0, : t + 1]).abs().max().item())
    return worst


def _max_padding_effect(model, source, padding_mask, pad_id):
    """Largest change of real positions' logits when the example is padded (or padded further)."""
    real = source[:, : int((~padding_mask).sum())] if padding_mask is not None else source
    n = real.size(1)
    base = model(real)
    extra = model.max_len - n
    if extra == 0:  # no room to pad: compare against a shorter, padded version instead
        real, n, extra = real[:, :-1], n - 1, 1
        base = model(real)
    padded = torch.cat([real, torch.full((1, extra), pad_id, dtype=real.dtype)], dim=1)
    mask = torch.arange(model.max_len).unsqueeze(0) >= n
    out = model(padded, mask)
    return (out[0, :n] - base[0, :n]).abs().max().item()


def main():
    import argparse

    from config import parse_cli
    from utils import get_num_params, print_config, seed_everything

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    config, args = parse_cli(parser=parser)
    print_config(config)
    seed_everything(config.seed)
    model = TransformerModel(config)
    print(f"Number of parameters in the model: {get_num_params(model):,}")

    # The checks are about the model, so they use the built-in corpus unless --dataset is given.
    dataset = _example_dataset(config, config.dataset if args.config_dataset else "builtin")
    item = dataset[int(dataset.lengths.argmax())]  # the longest example exercises most positions
    source, target, padding_mask = (t.unsqueeze(0) for t in item.values())
    report = check_model(model, config, source, target, padding_mask, dataset.pad_id)
    print(f"Output shape: {list(report['output shape'])}")
    print(f"Untrained loss: {report['untrained loss']:.4f} (expected ln(vocab_size) + 1/6 = "
          f"{untrained_loss(config.vocab_size):.4f})")
    print(f"Max logit change at positions <= t when tokens after t change: "
          f"{report['future leak']:.2e}")
    print(f"Max logit change of real positions when padded: {report['padding effect']:.2e}")
    print("All model checks passed.")


def _example_dataset(config, source):
    """A small QADataset from `source`, with the saved tokenizer or a temporary one."""
    import os

    from data_sources import load_qa_pairs
    from dataset import QADataset
    from tokenizer import fit_tokenizer, load_tokenizer
    from utils import UserError

    pairs = load_qa_pairs(source, config.split)
    pairs.questions, pairs.answers = pairs.questions[:64], pairs.answers[:64]
    if os.path.isfile(config.tokenizer_filename):
        tokenizer = load_tokenizer(config)
        print(f"Tokenizer: {config.tokenizer_filename}")
    else:  # trained in memory, so `python model.py` needs no earlier step
        tokenizer = fit_tokenizer(config, pairs.questions + pairs.answers,
                                  vocab_size=min(config.vocab_size, 1000), min_frequency=0)
        print(f"Tokenizer: none at {config.tokenizer_filename}; trained a temporary one in memory")
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise UserError(f"tokenizer {config.tokenizer_filename!r} has {tokenizer.get_vocab_size()} "
                        f"tokens but config.vocab_size={config.vocab_size}; retrain it with "
                        f"`python tokenizer.py --preset {config.preset} --retrain`")
    return QADataset(config, tokenizer, pairs=pairs)


if __name__ == "__main__":
    from utils import run_main

    run_main(main)
