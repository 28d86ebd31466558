"""train.py: schedule, length-aware batching, checkpoints, exact resume after SIGKILL, DDP, compile fallback."""

import csv
import copy
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from config import make_config
from dataset import QADataset, epoch_batches, split_indices
from helpers import (ROOT, TRAIN, assert_same_weights, cli_args, fresh_copy, poll_until, reference_and_fresh_runs,
                     saved_step, tiny_run_config)
from model import TransformerModel
from support.checkpoint import Progress, TrainingState, sidecar_filename
from support.errors import UserError
from support.files import load_file
from support.runtime import Runtime
from tokenizer import load_tokenizer, train_tokenizer
from train import evaluate, lr_factor, train_model, train_step, training_net

def test_lr_schedule_warmup_then_cosine():
    cfg = make_config(warmup_steps=10, min_lr_ratio=0.1)
    assert [round(lr_factor(s, 110, cfg), 3) for s in (0, 5, 9, 10, 60, 110)] == [0.1, 0.6, 1.0, 1.0, 0.55, 0.1]
    flat = make_config(warmup_steps=0, lr_schedule="constant")
    assert lr_factor(0, 10, flat) == lr_factor(9, 10, flat) == 1.0


def test_split_and_epoch_batches_are_deterministic_and_complete():
    train, val = split_indices(1000, 0.05, seed=3)
    assert len(val) == 50 and not set(train) & set(val) and len(train) + len(val) == 1000
    lengths = np.random.default_rng(0).integers(3, 60, 1000)
    a = epoch_batches(train, lengths, 32, seed=0, epoch=1)
    b = epoch_batches(train, lengths, 32, seed=0, epoch=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == sorted(train.tolist())
    c = epoch_batches(train, lengths, 32, seed=0, epoch=2)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_length_grouping_cuts_padding():
    lengths = np.random.default_rng(0).integers(3, 120, 5000)
    indices = np.arange(5000)

    def padded(batches):
        return sum(len(b) * lengths[b].max() for b in batches)

    grouped = padded(epoch_batches(indices, lengths, 64, 0, 0, group_lengths=True))
    plain = padded(epoch_batches(indices, lengths, 64, 0, 0, group_lengths=False))
    assert grouped < 0.7 * plain


def test_trimmed_batch_gives_the_same_per_position_loss_as_fixed_padding(pairs_folder, tmp_path):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), dropout_p=0.0, max_len=64)
    tokenizer = load_tokenizer(cfg)
    dataset = QADataset(cfg, tokenizer)
    torch.manual_seed(0)
    model = TransformerModel(cfg).eval()
    indices = np.argsort(dataset.lengths, kind="stable")[[0, 50, 100, 200, 300]]
    fixed = {k: torch.stack([dataset[i][k] for i in indices]) for k in dataset[0]}
    trimmed = dataset.collate(indices, pad_multiple=8)
    width = trimmed["source_sequence"].shape[1]
    assert width < cfg.max_len  # the test must actually trim
    for key in fixed:  # the trimmed batch is the fixed one cut at `width`
        assert torch.equal(trimmed[key], fixed[key][:, :width])
    assert (fixed["target_sequence"][:, width:] == -100).all()  # only padding was cut
    with torch.no_grad():
        def per_position(batch):
            logits = model(batch["source_sequence"], batch["key_padding_mask"])
            return F.cross_entropy(logits.transpose(1, 2), batch["target_sequence"], reduction="none")

        torch.testing.assert_close(per_position(trimmed), per_position(fixed)[:, :width], atol=1e-5, rtol=1e-5)


def padded_batch_and_model(pairs_folder, tmp_path, **overrides):
    """A tiny run's config, dataset, untrained model and a batch of 6 pairs of different lengths."""
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), **{"dropout_p": 0.0, "max_len": 64, **overrides})
    dataset = QADataset(cfg, load_tokenizer(cfg))
    torch.manual_seed(0)
    model = TransformerModel(cfg)
    indices = np.argsort(dataset.lengths, kind="stable")[[0, 100, 200, 300, 400, 599]]
    batch = dataset.collate(indices, pad_multiple=8)
    assert (batch["target_sequence"] == -100).float().mean() > 0.1  # real padding in the batch
    return cfg, dataset, model, batch


def reference_mean_loss_and_grads(model, batch):
    """The assignment's loss: mean cross-entropy over the real (non -100) target tokens."""
    model = copy.deepcopy(model).train()
    logits = model(batch["source_sequence"], padding_mask=batch["key_padding_mask"])
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch["target_sequence"].reshape(-1),
                           ignore_index=-100)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def frozen_step(cfg, model, batch):
    """One training step of train.py with lr 0 (the weights stay put); returns (loss, tokens)."""
    runtime = Runtime(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", enabled=runtime.precision.grad_scaler)
    state = TrainingState(model, optimizer, None, scaler, Progress(), {}, "")
    model.train()
    net, output_layer = training_net(model, runtime)
    return train_step(net, batch, state, output_layer, cfg, runtime)


def test_training_loss_is_the_mean_over_real_target_tokens(pairs_folder, tmp_path):
    cfg, _, model, batch = padded_batch_and_model(pairs_folder, tmp_path, grad_clip=0.0)
    expected_loss, expected_grads = reference_mean_loss_and_grads(model, batch)
    loss, tokens = frozen_step(cfg, model, batch)
    assert tokens == int((batch["target_sequence"] != -100).sum())
    assert loss == pytest.approx(expected_loss, rel=1e-5), "reported loss is not the per-token mean"
    for param, expected in zip(model.parameters(), expected_grads):  # the gradient of that mean
        torch.testing.assert_close(param.grad, expected, atol=1e-6, rtol=1e-4)


def test_gradients_are_clipped_to_grad_clip(pairs_folder, tmp_path):
    cfg, _, model, batch = padded_batch_and_model(pairs_folder, tmp_path, grad_clip=0.01)
    _, expected_grads = reference_mean_loss_and_grads(model, batch)
    full_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in expected_grads]))
    assert full_norm > 0.1  # so clipping at 0.01 must act
    frozen_step(cfg, model, batch)
    grads = [p.grad for p in model.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert norm == pytest.approx(0.01, rel=1e-3), f"gradient norm {norm:.4f} after clipping at 0.01"
    for got, expected in zip(grads, expected_grads):  # same direction, scaled down
        torch.testing.assert_close(got, expected * (0.01 / full_norm), atol=1e-8, rtol=1e-3)


def test_validation_loss_is_computed_without_dropout(pairs_folder, tmp_path):
    cfg, dataset, model, _ = padded_batch_and_model(pairs_folder, tmp_path, dropout_p=0.5, batch_size=8)
    val = np.arange(0, 600, 15)  # 40 pairs, 5 batches
    model.train()
    got = evaluate(model, dataset, val, cfg, Runtime(cfg))
    assert model.training  # evaluation puts training mode back
    model.eval()
    batch = dataset.collate(val, pad_multiple=1)
    with torch.no_grad():
        logits = model(batch["source_sequence"], padding_mask=batch["key_padding_mask"])
        expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["target_sequence"].reshape(-1),
                                   ignore_index=-100).item()
    assert got == pytest.approx(expected, rel=1e-5), "validation loss depends on dropout (train mode?)"


def test_training_lowers_the_loss_and_writes_plain_checkpoints(pairs_folder, tmp_path):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=3, eval_every=20)
    model = train_model(cfg)
    rows = list(csv.DictReader(open(cfg.log_filename)))
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    assert any(r["val_loss"] for r in rows) and os.path.getsize(cfg.plot_filename) > 10_000
    weights = torch.load(cfg.model_filename, weights_only=True)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in weights)
    for key, value in model.state_dict().items():
        assert torch.equal(weights[key], value)
    info = json.load(open(sidecar_filename(cfg.model_filename)))
    assert info["model_shape"]["embed_size"] == 16 and info["epoch"] == 3 and info["val_loss"] > 0


def test_rerun_after_the_last_epoch_does_nothing(pairs_folder, tmp_path, capsys):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1)
    train_model(cfg)
    before = torch.load(cfg.model_filename, weights_only=True)
    train_model(cfg)
    assert "Nothing to do" in capsys.readouterr().out
    after = torch.load(cfg.model_filename, weights_only=True)
    assert all(torch.equal(before[k], after[k]) for k in before)


def wait_for_step(path, step, process, timeout=120):
    return poll_until(process, lambda: saved_step(path) >= step, timeout)


def test_sigkill_then_resume_ends_equal_to_an_uninterrupted_run(pairs_folder, tmp_path):
    configs = reference_and_fresh_runs(pairs_folder, tmp_path, checkpoint_every=7)
    command = TRAIN

    killed_at = []
    for target_step in (9, 40, 62):  # mid-epoch, in epoch 2, and again after a resume
        process = subprocess.Popen(command + cli_args(configs[1]), cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait_for_step(sidecar_filename(configs[1].model_filename), target_step, process):
            time.sleep(0.05)  # land somewhere in the steps after the checkpoint
            process.send_signal(signal.SIGKILL)
            killed_at.append(target_step)
        process.wait()
    assert len(killed_at) >= 2, "the run finished before it could be killed"
    subprocess.run(command + cli_args(configs[1]), cwd=ROOT, check=True, capture_output=True)

    assert_same_weights(configs[0], configs[1])
    state = load_file(configs[1].optimizer_filename)
    assert state["progress"]["epoch"] == 2


def test_max_steps_on_an_epochs_last_step_stops_there_and_saves_once(pairs_folder, tmp_path, monkeypatch, capsys):
    """--max_steps equal to the steps of one epoch: one epoch trained, one save, no step of the next."""
    import support.checkpoint

    saves, real_save = [], support.checkpoint.TrainingState.save
    monkeypatch.setattr(support.checkpoint.TrainingState, "save",
                        lambda state, config: saves.append(state.progress.global_step) or real_save(state, config))
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=3, checkpoint_every=0, val_fraction=0.05)
    per_epoch = math.ceil(len(split_indices(600, 0.05, cfg.seed)[0]) / cfg.batch_size)
    cfg.max_steps = per_epoch
    train_model(cfg)
    assert saves == [per_epoch], saves
    assert f"Stopped after {per_epoch} steps" in capsys.readouterr().out
    assert load_file(cfg.optimizer_filename)["progress"]["global_step"] == per_epoch


def test_resume_with_another_model_shape_names_the_files(pairs_folder, tmp_path):
    folder = fresh_copy(pairs_folder, tmp_path)
    train_model(tiny_run_config(folder, num_epochs=1))
    with pytest.raises(UserError, match=r"another model shape \(embed_size: checkpoint 16, config 32\).*--fresh"):
        train_model(tiny_run_config(folder, embed_size=32, num_epochs=2))


def test_resume_with_another_tokenizer_is_refused(pairs_folder, tmp_path):
    folder = fresh_copy(pairs_folder, tmp_path)
    cfg = tiny_run_config(folder, num_epochs=1)
    train_model(cfg)
    cfg.vocab_size = 350
    train_tokenizer(cfg)  # fewer merges, same file name
    cfg.vocab_size, cfg.num_epochs = 400, 2
    with pytest.raises(UserError, match="trained with a different tokenizer"):
        train_model(cfg)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_training_state_is_reported(pairs_folder, tmp_path, damage):
    folder = fresh_copy(pairs_folder, tmp_path)
    cfg = tiny_run_config(folder, num_epochs=1)
    train_model(cfg)
    data = open(cfg.optimizer_filename, "rb").read()
    with open(cfg.optimizer_filename, "wb") as handle:
        handle.write(data[: len(data) // 2] if damage == "truncate" else b"not a checkpoint")
    cfg.num_epochs = 2
    with pytest.raises(UserError, match="is damaged or not a PyTorch checkpoint"):
        train_model(cfg)


def test_template_checkpoint_resumes_weights_and_optimizer(pairs_folder, tmp_path, capsys):
    folder = fresh_copy(pairs_folder, tmp_path)
    cfg = tiny_run_config(folder, num_epochs=1)
    model = TransformerModel(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    model(torch.randint(4, 300, (2, 8))).sum().backward()
    optimizer.step()
    # What the template's train.py writes: a compiled model's state_dict and the raw optimizer state.
    torch.save(torch.compile(model).state_dict(), cfg.model_filename)
    torch.save(optimizer.state_dict(), cfg.optimizer_filename)
    train_model(cfg)
    assert "course-template checkpoint" in capsys.readouterr().out


def test_compile_failure_falls_back_to_eager_once(pairs_folder, tmp_path, monkeypatch, capsys):
    class Broken(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Broken())
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1, compile="on")
    train_model(cfg)
    out = capsys.readouterr().out
    assert out.count("torch.compile failed (RuntimeError: no C++ compiler found)") == 1
    assert os.path.exists(cfg.model_filename)


def test_compile_failure_in_the_backward_pass_falls_back_to_eager(pairs_folder, tmp_path, monkeypatch, capsys):
    """Inductor compiles the backward pass at the first backward() (where a T4 fails on bf16 code):
    that failure too falls back to eager, once, and the step is trained, not lost."""
    import functools

    import torch._dynamo
    from torch._dynamo.backends.common import aot_autograd

    def backward_compiler(graph, inputs):
        raise RuntimeError("ptxas fatal: '.bf16' requires .target sm_80 or higher")

    backend = aot_autograd(fw_compiler=lambda graph, inputs: graph.forward, bw_compiler=backward_compiler)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), num_epochs=1, max_steps=12, compile="on",
                          dropout_p=0.0)
    torch._dynamo.reset()
    try:
        train_model(cfg)
    finally:
        torch._dynamo.reset()
    out = capsys.readouterr().out
    assert out.count("torch.compile failed (RuntimeError: ptxas fatal: '.bf16' requires .target sm_80") == 1, out
    losses = logged_losses(cfg)
    assert len(losses) == 12 and np.mean(losses[-3:]) < np.mean(losses[:3])  # every step trained


def test_compile_fallback_is_refused_under_torchrun_and_out_of_memory_is_not_a_compiler_failure(monkeypatch):
    """Under DDP the other processes would not rerun the step: stop and say --compile off. Running out
    of memory is raised as it is, never retried without compilation."""
    from support.runtime import OUT_OF_MEMORY, CompiledOrEager

    monkeypatch.setattr(torch, "compile", lambda module, **kw: module)
    logged = []

    def failing(error):
        def step():
            raise error
        return step

    with pytest.raises(UserError, match=r"torch.compile failed \(RuntimeError: ptxas\).*--compile off"):
        CompiledOrEager(torch.nn.Linear(2, 2), logged.append, distributed=True).run_step(failing(RuntimeError("ptxas")))
    with pytest.raises(OUT_OF_MEMORY):
        CompiledOrEager(torch.nn.Linear(2, 2), logged.append).run_step(failing(OUT_OF_MEMORY("CUDA out of memory")))
    assert logged == []
    single, attempts = CompiledOrEager(torch.nn.Linear(2, 2), logged.append), []

    def fails_once():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("no C++ compiler")
        return 7

    assert single.run_step(fails_once) == 7 and len(attempts) == 2  # in one process: rerun eagerly
    assert len(logged) == 1 and single.compiled is None


def test_tokenizer_larger_than_config_vocab_is_refused(pairs_folder, tmp_path):
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), vocab_size=300)
    with pytest.raises(UserError, match="has 400 tokens but config.vocab_size=300"):
        train_model(cfg)


def test_ddp_with_two_gloo_processes_matches_one_process(pairs_folder, tmp_path):
    """2 processes x batch 8 must follow 1 process x batch 16 (same global batches)."""
    # Validation every 6 steps on 60 pairs: 8 batches of 8 under DDP, 4 per rank, so a rank's own
    # loss differs from the loss over all of them.
    shared = dict(dropout_p=0.0, num_epochs=1, grad_clip=1.0, eval_every=6, val_fraction=0.1)
    single = tiny_run_config(fresh_copy(pairs_folder, tmp_path / "one") if (tmp_path / "one").mkdir() is None else None,
                             batch_size=16, **shared)
    double = tiny_run_config(fresh_copy(pairs_folder, tmp_path / "two") if (tmp_path / "two").mkdir() is None else None,
                             batch_size=8, **shared)
    extra = ["--max_steps", "12"]
    subprocess.run([sys.executable, "train.py"] + cli_args(single) + extra, cwd=ROOT, check=True,
                   capture_output=True)
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr", "127.0.0.1", "--master_port", str(port), "train.py"]
                         + cli_args(double) + extra,
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]

    def losses(cfg, column="loss"):
        return [float(r[column]) for r in csv.DictReader(open(cfg.log_filename)) if r[column]]

    one, two = losses(single), losses(double)
    assert len(one) == len(two) == 12
    print(f"max relative loss difference, 2 processes vs 1: {np.max(np.abs(np.subtract(two, one)) / one):.2e}")
    np.testing.assert_allclose(two, one, rtol=2e-4)  # float summation order differs across ranks
    val_one, val_two = losses(single, "val_loss"), losses(double, "val_loss")
    assert len(val_one) == len(val_two) == 2
    np.testing.assert_allclose(val_two, val_one, rtol=2e-4,
                               err_msg="DDP validation loss is not the loss over all processes")


@pytest.mark.parametrize("chunk_rows", [3, 2048])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_cross_entropy_equals_cross_entropy_of_logits(chunk_rows, dtype):
    """Equal to the plain code, in fp32 and as the plain code runs under bf16 autocast."""
    from support.fused_loss import linear_cross_entropy

    torch.manual_seed(0)
    layer = torch.nn.Linear(12, 50)
    hidden = torch.randn(3, 7, 12, requires_grad=True)
    target = torch.randint(0, 50, (3, 7))
    target[1, 4:] = -100
    target[2, :] = -100

    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
        logits = layer(hidden)  # (3, 7, 50)
    expected = F.cross_entropy(logits.float().reshape(-1, 50), target.reshape(-1), reduction="sum")
    grads = torch.autograd.grad(expected * 0.5, [hidden, layer.weight, layer.bias])
    got = linear_cross_entropy(hidden, layer, target, chunk_rows=chunk_rows, dtype=dtype)
    got_grads = torch.autograd.grad(got * 0.5, [hidden, layer.weight, layer.bias])
    if dtype == torch.float32:
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-6)
        for g, e in zip(got_grads, grads):
            torch.testing.assert_close(g, e, atol=1e-6, rtol=1e-5)
    else:  # the same bf16 logits; gradients summed in fp32 here, rounded to bf16 there
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
        for g, e in zip(got_grads, grads):
            assert g.dtype == e.dtype == torch.float32
            torch.testing.assert_close(g, e, atol=1e-2 * e.abs().max().item(), rtol=0)


def test_bf16_training_step_is_the_mean_loss_of_the_autocast_logits(pairs_folder, tmp_path):
    """Under bf16 train.py fuses the output layer with the loss; its loss and gradients are those
    of the plain code under bf16 autocast (logits, then .float(), then F.cross_entropy)."""
    cfg, _, model, batch = padded_batch_and_model(pairs_folder, tmp_path, grad_clip=0.0, precision="bf16")
    assert training_net(model, Runtime(cfg))[1] is model.fc_out  # the fused path
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected_loss, expected_grads = reference_mean_loss_and_grads(model, batch)
    loss, tokens = frozen_step(cfg, model, batch)
    assert tokens == int((batch["target_sequence"] != -100).sum())
    assert loss == pytest.approx(expected_loss, rel=5e-6)  # the same bf16 logits, softmax in fp32
    for param, expected in zip(model.parameters(), expected_grads):
        torch.testing.assert_close(param.grad, expected, atol=1e-2 * expected.abs().max().item() + 1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------
# fp16 with a gradient scaler, on the CPU: the code path a Colab T4 runs

def logged_losses(cfg):
    return [float(row["loss"]) for row in csv.DictReader(open(cfg.log_filename)) if row["loss"]]


def test_fp16_training_follows_fp32_over_a_few_steps(pairs_folder, tmp_path):
    runs = {}
    for precision in ("fp32", "fp16"):
        (tmp_path / precision).mkdir()
        runs[precision] = tiny_run_config(fresh_copy(pairs_folder, tmp_path / precision), precision=precision,
                                          dropout_p=0.0, num_epochs=1, max_steps=10)
        train_model(runs[precision])
    fp32, fp16 = logged_losses(runs["fp32"]), logged_losses(runs["fp16"])
    assert len(fp16) == 10 and fp16[-1] < fp16[0] - 0.3
    np.testing.assert_allclose(fp16, fp32, atol=0.02)  # fp16 logits: about 3 significant digits
    assert "scale" in load_file(runs["fp16"].optimizer_filename)["scaler"]  # the scaler was on, and saved


def fp16_step_parts(pairs_folder, tmp_path, scaler, lr=1e-2, **overrides):
    """(config, model, batch, TrainingState, train_step's other arguments) of an fp16 tiny run."""
    cfg, _, model, batch = padded_batch_and_model(pairs_folder, tmp_path, precision="fp16", **overrides)
    runtime = Runtime(cfg)
    assert runtime.precision.autocast and runtime.precision.grad_scaler
    state = TrainingState(model, torch.optim.AdamW(model.parameters(), lr=lr), None, scaler, Progress(), {}, "")
    net, output_layer = training_net(model, runtime)
    assert output_layer is None  # under a gradient scaler the scaled gradients flow through fc_out
    return cfg, model, batch, state, (output_layer, cfg, runtime), net


def test_an_fp16_step_with_inf_gradients_is_skipped_and_training_goes_on(pairs_folder, tmp_path):
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)  # scaled fp16 gradients overflow
    cfg, model, batch, state, rest, net = fp16_step_parts(pairs_folder, tmp_path, scaler)
    before = copy.deepcopy(model.state_dict())
    train_step(net, batch, state, *rest)
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in before.items()), "inf step applied"
    assert scaler.get_scale() == 2.0**39  # backed off
    for _ in range(40):  # the scale halves at every overflow until the gradients fit
        loss, _ = train_step(net, batch, state, *rest)
        if not torch.equal(before["fc_out.weight"], model.fc_out.weight):
            break
    assert not torch.equal(before["fc_out.weight"], model.fc_out.weight), "training never went on"
    assert math.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())


def test_fp16_gradients_are_clipped_after_unscaling(pairs_folder, tmp_path):
    scaler = torch.amp.GradScaler("cpu")  # scale 65536
    cfg, model, batch, state, rest, net = fp16_step_parts(pairs_folder, tmp_path, scaler, lr=0.0, grad_clip=0.01)
    train_step(net, batch, state, *rest)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()]))
    assert norm == pytest.approx(0.01, rel=1e-3), f"gradient norm {norm:.3g} (clipped before unscaling?)"


def test_an_interrupted_fp16_run_resumes_its_gradient_scale_and_ends_equal(pairs_folder, tmp_path, monkeypatch):
    import functools

    import train

    # A scale that doubles every 2 steps (until an overflow halves it), so the scale at the
    # checkpoint differs from a new scaler's and a resume that forgot it would train differently.
    monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(torch.amp.GradScaler, growth_interval=2))
    configs = []
    for name in ("straight", "interrupted"):
        (tmp_path / name).mkdir()
        configs.append(tiny_run_config(fresh_copy(pairs_folder, tmp_path / name), precision="fp16",
                                       dropout_p=0.1, num_epochs=1, checkpoint_every=6, val_fraction=0.05))
    straight, interrupted = configs
    train_model(straight)

    real_step, calls = train.train_step, []

    def killed_at_step_9(*args, **kwargs):
        calls.append(1)
        if len(calls) == 9:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", killed_at_step_9)
    with pytest.raises(KeyboardInterrupt):
        train_model(interrupted)
    saved = load_file(interrupted.optimizer_filename)
    assert saved["progress"]["global_step"] == 6 and saved["scaler"]["scale"] != 65536.0
    monkeypatch.setattr(train, "train_step", real_step)
    train_model(interrupted)
    assert load_file(straight.optimizer_filename)["scaler"] == load_file(interrupted.optimizer_filename)["scaler"]
    assert_same_weights(straight, interrupted)


# ----------------------------------------------------------------------------------------------
# torch.compile with batches of varying length

def test_compiled_training_recompiles_a_bounded_number_of_times(pairs_folder, tmp_path, monkeypatch):
    """Each batch is padded to its longest pair (rounded up to pad_multiple), so one epoch sees
    several lengths; after the first new length torch marks the length dynamic and compiles no more."""
    import functools

    import torch._dynamo
    from torch._dynamo.testing import CompileCounterWithBackend

    import train

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("inductor")  # the default backend, counted
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=counter))
    real_step, seen = train.train_step, []

    def recording_step(net, batch, *args, **kwargs):
        result = real_step(net, batch, *args, **kwargs)
        seen.append((batch["source_sequence"].size(1), counter.frame_count))
        return result

    monkeypatch.setattr(train, "train_step", recording_step)
    cfg = tiny_run_config(fresh_copy(pairs_folder, tmp_path), compile="on", num_epochs=1, max_steps=14,
                          max_len=64, pad_multiple=2, length_grouping=False, dropout_p=0.0)
    try:
        train_model(cfg)
    finally:
        torch._dynamo.reset()
    lengths = [length for length, _ in seen]
    assert len(set(lengths)) >= 3, lengths  # the epoch really had batches of several lengths
    first = seen[0][1]
    assert first >= 1, "nothing was compiled"
    second_length = next(i for i, (length, _) in enumerate(seen) if length != lengths[0])
    assert counter.frame_count <= 2 * first, (seen, "recompiled for more than one new length")
    assert all(frames == seen[second_length][1] for _, frames in seen[second_length:]), seen
    logged = logged_losses(cfg)
    assert np.mean(logged[-3:]) < np.mean(logged[:3])  # and it trained
