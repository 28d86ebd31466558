"""The network: a GPT-2-style decoder on `torch.nn.MultiheadAttention` (course template, Fig. 4).

    python model.py                  # sanity checks of the default 36,261,920-parameter model
    python model.py --preset tiny    # the same checks on the tiny CPU model

The checks assert (they do not just print): the parameter count, the output shape, an untrained
loss near ln(vocab_size), that no information flows from future tokens, and that padding does not
change the logits of real positions (support/probes.py, shared with the self-check). They need
no data and no tokenizer: the example is random token ids.

Module and buffer names are the template's (and the course reference's), so checkpoints trained
with the template load here, including those saved from a `torch.compile`d model whose keys
carry `_orig_mod.` (support/compat.py renames them as they load).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from support.compat import reshape_positional_encoding_hook, standardize_keys_hook


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
        self.register_load_state_dict_pre_hook(reshape_positional_encoding_hook)

    def forward(self, x, start=0):
        # x: (B, T, C), the embeddings of positions start, ..., start + T - 1
        return x + self.positional_encoding[start:start + x.size(1)].to(x.dtype)  # (B, T, C)


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
        self.register_load_state_dict_pre_hook(standardize_keys_hook)  # template/compiled checkpoints

    def forward(self, x, padding_mask=None, cache=None):
        # x: (B, T) token ids; padding_mask: (B, T) bool, True at [PAD], or None.
        # cache: a KVCache when decoding; x then holds only the positions after the cached ones.
        return self.fc_out(self.hidden_states(x, padding_mask, cache))  # (B, T, vocab)

    def hidden_states(self, x, padding_mask=None, cache=None):
        """The last block's output (B, T, C): forward without fc_out. The optional fused loss
        (support/fused_loss.py) computes fc_out and the loss together from these."""
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


# ----------------------------------------------------------------------------------------------
# `python model.py`: sanity checks that assert

PAD_ID = 2  # the template tokenizer's [PAD]


def main():
    import argparse

    from config import parse_cli
    from support.probes import check_model, untrained_loss
    from utils import get_num_params, print_config, seed_everything

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    config, _ = parse_cli(parser=parser)
    print_config(config)
    seed_everything(config.seed)
    model = TransformerModel(config)
    print(f"Number of parameters in the model: {get_num_params(model):,}")

    # One example of max_len random tokens: real for the first three quarters, then [PAD].
    sequence = torch.randint(4, config.vocab_size, (1, config.max_len + 1))  # (1, T + 1)
    real = max(1, 3 * config.max_len // 4)
    sequence[0, real + 1:] = PAD_ID
    source, target = sequence[:, :-1], sequence[:, 1:].clone()  # (1, T) each
    target[0, real:] = -100
    padding_mask = torch.arange(config.max_len)[None, :] >= real  # (1, T), True at [PAD]
    report = check_model(model, config, source, target, padding_mask, PAD_ID)
    print(f"Output shape: {list(report['output shape'])}")
    print(f"Untrained loss: {report['untrained loss']:.4f} (expected ln(vocab_size) + 1/6 = "
          f"{untrained_loss(config.vocab_size):.4f})")
    print(f"Max logit change at positions <= t when tokens after t change: {report['future leak']:.2e}")
    print(f"Max logit change of real positions when padded: {report['padding effect']:.2e}")
    print("All model checks passed.")


if __name__ == "__main__":
    from utils import run_main

    run_main(main)
