"""Training throughput in useful (non-pad) tokens per second, measured in one run on this machine.

    make bench-deps                                  # once: installs transformers (reference only)
    .venv/bin/python bench/bench_train.py            # tiny and default model
    .venv/bin/python bench/bench_train.py --models tiny --steps 20
    .venv/bin/python bench/bench_train.py --models default --steps 4 --profile   # and where the time goes

Three ways to train the same model shape on the same data (the real stand-in QA corpus when
../shared/data is present, else the built-in corpus), each from the same seed:

  this project   train.py's step: length-grouped batches padded to their longest item, the output
                 layer fused with the loss over real positions only (support.fused_loss.linear_cross_entropy,
                 its matmuls in bf16 under bf16 autocast), precision from support.runtime.choose_precision
                 (fp32 on CPUs without bf16 units)
  template       the template's recipe: random batches padded to max_len, fp32,
                 cross_entropy(logits.transpose(1, 2), target)
  HF GPT-2       transformers.GPT2LMHeadModel with the same sizes, fed this project's batches

Useful tokens are target tokens other than -100. Ratios are against this project.
"""

import argparse
import os
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import make_config  # noqa: E402
from dataset import IGNORE_INDEX, QADataset, epoch_batches  # noqa: E402
from machine import print_machine_header  # noqa: E402
from model import TransformerModel  # noqa: E402
from support.data_sources import load_qa_pairs  # noqa: E402
from support.runtime import choose_precision  # noqa: E402
from tokenizer import fit_tokenizer  # noqa: E402
from train import loss_sum_and_count, training_net  # noqa: E402

REAL_CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "qa", "train.jsonl.gz")


def make_tokenizer(cfg, pairs):
    return fit_tokenizer(cfg, (q + " " + a for q, a in zip(pairs.questions, pairs.answers)))


class HFGPT2(torch.nn.Module):
    """GPT2LMHeadModel behind this project's call signature: model(source, padding_mask)."""

    def __init__(self, cfg):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.model = GPT2LMHeadModel(GPT2Config(
            vocab_size=cfg.vocab_size, n_positions=cfg.max_len, n_embd=cfg.embed_size,
            n_layer=cfg.num_layers, n_head=cfg.num_heads, resid_pdrop=cfg.dropout_p,
            embd_pdrop=cfg.dropout_p, attn_pdrop=0.0))

    def forward(self, source, padding_mask=None):
        attention_mask = None if padding_mask is None else (~padding_mask).long()
        return self.model(input_ids=source, attention_mask=attention_mask).logits


def step(model, optimizer, batch, loss_fn, precision):
    """One training step; returns the batch's useful (non -100) target tokens."""
    loss = loss_fn(model, batch, precision)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return int((batch["target_sequence"] != IGNORE_INDEX).sum())


def measure(model, batches, loss_fn, precision, warmup):
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    tokens, start = 0, None
    for i, batch in enumerate(batches):
        if i == warmup:
            tokens, start = 0, time.perf_counter()
        tokens += step(model, optimizer, batch, loss_fn, precision)
    elapsed = time.perf_counter() - start
    return elapsed / (len(batches) - warmup), tokens / elapsed


def profile(name, model, batches, loss_fn, precision, row_limit=12):
    """Where the time goes: torch.profiler's operators over two steps after one warm-up step."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step(model, optimizer, batches[0], loss_fn, precision)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[1:3]:
            step(model, optimizer, batch, loss_fn, precision)
    print(f"\n{name}: operators by self CPU time over 2 steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit))


def ours_loss(model, batch, precision):
    """Exactly train.py's loss (train.training_net): in fp32 and bf16 the model's hidden states,
    then the output layer fused with the loss; in fp16 logits and F.cross_entropy."""
    runtime = SimpleNamespace(device=torch.device("cpu"), precision=precision, wrap=lambda module: module)
    net, output_layer = training_net(model, runtime)
    loss_sum, n_tokens = loss_sum_and_count(net, batch, runtime, model.vocab_size, output_layer)
    return loss_sum / n_tokens


def template_loss(model, batch, precision):
    source, target, mask = batch.values()
    return F.cross_entropy(model(source, padding_mask=mask).transpose(1, 2), target)


def plain_loss(model, batch, precision):
    """The usual contiguous cross-entropy over logits (for the HF reference)."""
    source, target, mask = batch.values()
    with torch.autocast("cpu", dtype=precision.dtype, enabled=precision.autocast):
        logits = model(source, padding_mask=mask).float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1))


def bench(preset, pairs, steps, warmup, with_hf, with_profile=False):
    cfg = make_config(preset, device="cpu", model_train_fraction=1.0)
    tokenizer = make_tokenizer(cfg, pairs)
    dataset = QADataset(cfg, tokenizer, pairs=pairs)
    indices = torch.arange(len(dataset)).numpy()
    n = steps + warmup
    ours = [dataset.collate(b, cfg.pad_multiple) for b in
            epoch_batches(indices, dataset.lengths, cfg.batch_size, cfg.seed, 0, True)[:n]]
    fixed = [{k: torch.stack([dataset[int(i)][k] for i in b]) for k in dataset[0]} for b in
             epoch_batches(indices, dataset.lengths, cfg.batch_size, cfg.seed, 0, False)[:n]]
    precision = choose_precision("cpu", cfg.precision)
    print(f"\n{preset}: embed {cfg.embed_size}, {cfg.num_heads} heads, {cfg.num_layers} layers, "
          f"vocab {cfg.vocab_size}, max_len {cfg.max_len}, batch {cfg.batch_size}; "
          f"{steps} timed steps after {warmup} warm-up; precision {precision.name}")
    rows = []
    torch.manual_seed(0)
    rows.append(("this project", *measure(TransformerModel(cfg), ours, ours_loss, precision, warmup)))
    torch.manual_seed(0)
    fp32 = choose_precision("cpu", "fp32")
    rows.append(("template recipe", *measure(TransformerModel(cfg), fixed, template_loss, fp32, warmup)))
    if with_hf:
        torch.manual_seed(0)
        rows.append(("HF GPT-2, same batches", *measure(HFGPT2(cfg), ours, plain_loss, precision, warmup)))
    base = rows[0][2]
    print(f"{'':24s} {'s/step':>8s} {'useful tok/s':>13s} {'this project is':>16s}")
    for name, per_step, rate in rows:
        print(f"{name:24s} {per_step:8.3f} {rate:13,.0f} {base / rate:15.2f}x")
    print(f"time per 100 steps, this project: {100 * rows[0][1] / 60:.1f} min")
    if with_profile:
        torch.manual_seed(0)
        profile("this project", TransformerModel(cfg), ours, ours_loss, precision)
        if with_hf:
            torch.manual_seed(0)
            profile("HF GPT-2, same batches", HFGPT2(cfg), ours, plain_loss, precision)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=REAL_CORPUS if os.path.exists(REAL_CORPUS) else "builtin")
    parser.add_argument("--models", nargs="+", default=["tiny", "default"], choices=["tiny", "demo", "default"])
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 30 tiny/demo, 4 default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile", action="store_true",
                        help="then profile two steps of this project and of HF GPT-2 (torch.profiler)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    ours = choose_precision("cpu", make_config(device="cpu").precision).name
    print_machine_header(f"{ours} for this project and HF GPT-2 (support.runtime.choose_precision), fp32 for the template")
    try:
        import transformers  # noqa: F401
        with_hf = True
    except ImportError:
        with_hf = False
        print("transformers is not installed (make bench-deps): skipping the HF GPT-2 reference")
    pairs = load_qa_pairs(args.dataset, "train")
    print(f"data: {pairs.description} ({len(pairs):,} pairs)")
    for preset in args.models:
        bench(preset, pairs, args.steps or (4 if preset == "default" else 30), args.warmup, with_hf,
              args.profile)


if __name__ == "__main__":
    main()
