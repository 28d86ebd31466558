"""Decoding speed of a 100-token answer, default 36M model, on this CPU, measured in one run.

    make bench-deps && .venv/bin/python bench/bench_decode.py [--repeats 3]

  this project     inference.generate with the KV cache (greedy), the path the chat page uses
  template loop    the template's sample_sequence: the whole sequence through the model per token
  HF GPT-2         transformers.GPT2LMHeadModel of the same size, generate(..., use_cache=True)

Weights are random (speed does not depend on them); [END] is disabled so every run makes exactly
100 tokens. Also prints the time to the first streamed piece of text (AnswerStream), which is
what a chat user waits for, and the physical bound of decoding here: one token reads every
weight once (all but the embedding table, of which it reads one row) plus the cached keys and
values, so tokens/s cannot exceed the memory read bandwidth (measured: the best of 5 sums over a
1 GiB tensor) divided by those bytes.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import make_config  # noqa: E402
from inference import SamplingSettings, generate  # noqa: E402
from machine import print_machine_header  # noqa: E402
from model import TransformerModel  # noqa: E402

NEW_TOKENS = 100
NO_END = -1  # an id no token has: generation runs to NEW_TOKENS


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def read_bandwidth(gib=1.0, repeats=5):
    """Bytes per second torch reads from memory here (best of `repeats` sums over `gib` GiB)."""
    data = torch.ones(int(gib * 2**30) // 4)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def bytes_per_token(model, context):
    """Bytes one decoding step reads: every weight but the embedding table (one row of it), and
    the keys and values of `context` cached positions in every layer."""
    weights = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                  if name != "embedding.weight") + model.embed_size * 4
    return weights + 2 * model.num_layers * context * model.embed_size * 4


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile(dynamic=True) of the model on the cached path")
    args = parser.parse_args()
    print_machine_header("fp32")
    cfg = make_config(device="cpu", dropout_p=0.0)
    torch.manual_seed(0)
    model = TransformerModel(cfg).eval()
    prompt = torch.randint(4, cfg.vocab_size, (9,)).tolist() + [0]  # a 9-token question + [SEP]
    greedy = SamplingSettings("greedy", max_new_tokens=NEW_TOKENS)

    def ours():
        return [token_id for token_id, _ in generate(model, prompt, NO_END, greedy, use_cache=True)]

    def template_loop():  # the template's loop: the whole sequence again for every token
        sequence = torch.tensor([prompt])
        with torch.no_grad():
            for _ in range(NEW_TOKENS):
                token = model(sequence)[0, -1].argmax().view(1, 1)
                sequence = torch.cat([sequence, token], dim=1)
        return sequence[0, len(prompt):].tolist()

    rows = []
    t_ours, ids_ours = timed(ours, args.repeats)
    rows.append(("this project (KV cache)", t_ours))
    if args.compile:  # the same decode loop over the compiled model (the first call compiles)
        compiled = torch.compile(model, dynamic=True)
        start = time.perf_counter()
        ids_compiled = [token_id for token_id, _ in generate(compiled, prompt, NO_END, greedy, use_cache=True)]
        print(f"torch.compile(dynamic=True): first answer (compiling) {time.perf_counter() - start:.0f} s")
        t_compiled, ids_compiled = timed(lambda: [token_id for token_id, _ in generate(compiled, prompt, NO_END, greedy)],
                                         args.repeats)
        assert ids_compiled == ids_ours, "compiled and eager decoding disagree"
        rows.append(("this project, compiled", t_compiled))
    t_template, ids_template = timed(template_loop, args.repeats)
    assert ids_ours == ids_template, "cached and uncached greedy decoding disagree"
    rows.append(("template loop", t_template))
    try:
        from transformers import GPT2Config, GPT2LMHeadModel

        hf = GPT2LMHeadModel(GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.max_len,
                                        n_embd=cfg.embed_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
                                        bos_token_id=None, eos_token_id=None)).eval()
        hf_prompt = torch.tensor([prompt])

        def hf_generate():
            with torch.no_grad():
                return hf.generate(hf_prompt, attention_mask=torch.ones_like(hf_prompt), do_sample=False,
                                   max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, use_cache=True,
                                   pad_token_id=2)

        t_hf, out = timed(hf_generate, args.repeats)
        assert out.shape[1] == len(prompt) + NEW_TOKENS
        rows.append(("HF GPT-2 generate (cache)", t_hf))
    except ImportError:
        print("transformers is not installed (make bench-deps): skipping the HF GPT-2 reference")

    print(f"default model ({sum(p.numel() for p in model.parameters()):,} parameters), "
          f"{NEW_TOKENS} new tokens after a {len(prompt)}-token prompt, best of {args.repeats}")
    print(f"{'':28s} {'seconds':>8s} {'tokens/s':>9s} {'this project is':>16s}")
    for name, seconds in rows:
        print(f"{name:28s} {seconds:8.3f} {NEW_TOKENS / seconds:9.1f} {seconds / t_ours:15.2f}x")

    bandwidth = read_bandwidth()
    per_token = bytes_per_token(model, context=len(prompt) + NEW_TOKENS // 2)
    bound = bandwidth / per_token
    print(f"physical bound: {per_token / 1e6:.0f} MB read per token / {bandwidth / 1e9:.1f} GB/s "
          f"measured read bandwidth = {bound:.0f} tokens/s; this project reaches "
          f"{NEW_TOKENS / t_ours:.1f} tokens/s, {NEW_TOKENS / t_ours / bound:.0%} of it")

    firsts = []
    for _ in range(5):
        start = time.perf_counter()
        next(iter(generate(model, prompt, NO_END, greedy)))
        firsts.append(time.perf_counter() - start)
    print(f"time to the first token (prompt + one step): median {sorted(firsts)[2] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
