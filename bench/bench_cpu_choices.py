"""Why training on a CPU defaults to fp32, no torch.compile, and a contiguous cross-entropy.

    .venv/bin/python bench/bench_cpu_choices.py

Measured in one run on this machine, each against the alternative on the same batches:
  bf16 autocast vs fp32            (demo model, 64 x 24 tokens)
  torch.compile vs eager           (tiny model, three sequence lengths; compile time shown apart)
  template's logits.transpose(1, 2) cross-entropy vs a contiguous reshape (tiny model)
"""

import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import make_config  # noqa: E402
from machine import print_machine_header  # noqa: E402
from model import TransformerModel  # noqa: E402


def time_steps(model, forward, batches, loss_kind="reshape", bf16=False, repeats=3):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(x, pad):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = forward(x, padding_mask=pad)
        out = out.float()
        if loss_kind == "transpose":
            loss = F.cross_entropy(out.transpose(1, 2), x)
        else:
            loss = F.cross_entropy(out.reshape(-1, out.size(-1)), x.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for x, pad in batches:  # warm-up (and compilation)
        step(x, pad)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        for x, pad in batches:
            step(x, pad)
    return warm, (time.perf_counter() - start) / (repeats * len(batches))


def batches_for(cfg, batch, lengths):
    out = []
    for length in lengths:
        x = torch.randint(4, cfg.vocab_size, (batch, length))
        pad = torch.zeros(batch, length, dtype=torch.bool)
        pad[::2, length // 2:] = True
        out.append((x, pad))
    return out


def main():
    print_machine_header("fp32, and bf16 autocast in the demo-model comparison")
    torch.manual_seed(0)

    demo = make_config("demo", device="cpu")
    model = TransformerModel(demo)
    batches = batches_for(demo, 64, [24])
    _, fp32 = time_steps(model, model, batches)
    _, bf16 = time_steps(model, model, batches, bf16=True, repeats=1)
    verdict = f"{bf16 / fp32:.1f}x slower" if bf16 > fp32 else f"{fp32 / bf16:.1f}x faster"
    print(f"demo model step: fp32 {fp32 * 1000:.0f} ms, bf16 autocast {bf16 * 1000:.0f} ms -> bf16 is {verdict}")

    tiny = make_config("tiny", device="cpu")
    model = TransformerModel(tiny)
    batches = batches_for(tiny, 32, [16, 32, 24])
    _, contiguous = time_steps(model, model, batches)
    _, transposed = time_steps(model, model, batches, loss_kind="transpose")
    print(f"tiny model step: contiguous cross-entropy {contiguous * 1000:.1f} ms, template's transposed "
          f"{transposed * 1000:.1f} ms -> {transposed / contiguous:.2f}x")
    eager_warm, eager = time_steps(model, model, batches)
    compiled = torch.compile(model)
    compile_warm, compiled_step = time_steps(model, compiled, batches)
    print(f"tiny model step: eager {eager * 1000:.1f} ms, compiled {compiled_step * 1000:.1f} ms "
          f"({eager / compiled_step:.2f}x); first steps incl. compilation {compile_warm:.0f} s "
          f"(eager {eager_warm:.1f} s)")


if __name__ == "__main__":
    main()
