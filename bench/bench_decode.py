"""Decoding speed of a 100-token answer, default 36M model, on this CPU, measured in one run.

    make bench-deps && .venv/bin/python bench/bench_decode.py [--repeats 3]

  this project     inference.generate with the KV cache (greedy), the path the chat page uses
  template loop    the template's sample_sequence: the whole sequence through the model per token
  HF GPT-2         transformers.GPT2LMHeadModel of the same size, generate(..., use_cache=True)

Weights are random (speed does not depend on them); [END] is disabled so every run makes exactly
100 tokens. Also prints the time to the first streamed piece of text (AnswerStream), which is
what a chat user waits for.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print_machine_header("fp32")
    cfg = make_config(device="cpu", dropout_p=0.0)
    torch.manual_seed(0)
    model = TransformerModel(cfg).eval()
    prompt = torch.randint(4, cfg.vocab_size, (9,)).tolist() + [0]  # a 9-token question + [SEP]
    greedy = SamplingSettings("greedy", max_new_tokens=NEW_TOKENS)

    def ours():
        return [s.token_id for s in generate(model, prompt, NO_END, greedy, use_cache=True)]

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

    firsts = []
    for _ in range(5):
        start = time.perf_counter()
        next(iter(generate(model, prompt, NO_END, greedy)))
        firsts.append(time.perf_counter() - start)
    print(f"time to the first token (prompt + one step): median {sorted(firsts)[2] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
