"""Part 1, imdb_sentiment_encoder.ipynb: its definitions against PyTorch's own modules, and the notebook itself.

The definitions (imports, functions, classes, constants) are imported from the notebook by tools/notebook.py
without running its data loading or training. Tolerances: fp32 comparisons use atol = rtol = 1e-5; fp64 ones 1e-10.
"""

import ast
import gzip
import json
import math
import os
import re
import shutil

import nbformat
import pytest
import torch
import torch.nn as nn

from helpers import ODD_TEXTS, write_jsonl
from tools.notebook import NOTEBOOK, definitions, run_notebook

FP32 = dict(atol=1e-5, rtol=1e-5)
FP64 = dict(atol=1e-10, rtol=1e-10)



def lengths_mask(lengths, T):
    """(B,) lengths -> (B, T) bool, True at padding."""
    return torch.arange(T)[None, :] >= torch.tensor(lengths)[:, None]


def reference_attention(ours):
    """nn.MultiheadAttention carrying the weights of our MultiheadAttention."""
    ref = nn.MultiheadAttention(ours.dim, ours.num_heads, batch_first=True, dtype=ours.query.weight.dtype)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        ref.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref


SHAPES = [(2, 5, 8, 2), (3, 7, 12, 3), (1, 1, 16, 4), (4, 33, 96, 4)]  # (B, T, C, H)


@pytest.mark.parametrize("B,T,C,H", SHAPES)
@pytest.mark.parametrize("padding", ["none", "all-false", "random"])
def test_attention_equals_torch_multihead_attention(nb, B, T, C, H, padding):
    torch.manual_seed(B * T + C)
    ours = nb.MultiheadAttention(C, H)
    ref = reference_attention(ours)
    x = torch.randn(B, T, C)
    if padding == "none":
        mask = None
    elif padding == "all-false":
        mask = torch.zeros(B, T, dtype=torch.bool)
    else:
        mask = lengths_mask(torch.randint(1, T + 1, (B,)).tolist(), T)
    expected, expected_weights = ref(x, x, x, key_padding_mask=mask, average_attn_weights=False)
    torch.testing.assert_close(ours(x, x, x, key_padding_mask=mask), expected, **FP32)
    out, weights = ours(x, x, x, key_padding_mask=mask, need_weights=True)
    torch.testing.assert_close(out, expected, **FP32)
    torch.testing.assert_close(weights, expected_weights, **FP32)
    # Cross-attention shapes (a query shorter than the keys) take the separate-projection path.
    query = x[:, :1] + 0.5
    torch.testing.assert_close(ours(query, x, x, key_padding_mask=mask),
                               ref(query, x, x, key_padding_mask=mask)[0], **FP32)


def test_attention_gradients_equal_torch_in_float64(nb):
    torch.manual_seed(0)
    ours = nb.MultiheadAttention(12, 3).double()
    ref = reference_attention(ours)
    x = torch.randn(3, 6, 12, dtype=torch.float64, requires_grad=True)
    mask = lengths_mask([6, 2, 4], 6)
    grad_out = torch.randn(3, 6, 12, dtype=torch.float64)
    (gx_ours, gq_ours) = torch.autograd.grad(ours(x, x, x, key_padding_mask=mask), (x, ours.query.weight), grad_out)
    (gx_ref, gw_ref) = torch.autograd.grad(ref(x, x, x, key_padding_mask=mask)[0], (x, ref.in_proj_weight), grad_out)
    torch.testing.assert_close(gx_ours, gx_ref, **FP64)
    torch.testing.assert_close(gq_ours, gw_ref[:12], **FP64)


def test_attention_backward_passes_gradcheck(nb):
    """Autograd through the textbook attention equals finite differences (float64), padding included."""
    torch.manual_seed(0)
    attention = nb.MultiheadAttention(6, 2).double()
    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    mask = lengths_mask([5, 3], 5)
    assert torch.autograd.gradcheck(lambda x: attention(x, x, x, key_padding_mask=mask), (x,))
    # One query against all keys, as the [CLS]-only last block computes.
    assert torch.autograd.gradcheck(lambda x: attention(x[:, :1], x, x, key_padding_mask=mask), (x,))


def copy_into_encoder_layer(block, layer):
    attention = block.attention
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([attention.query.weight, attention.key.weight,
                                                        attention.value.weight]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]))
        layer.self_attn.out_proj.load_state_dict(attention.out_proj.state_dict())
        layer.linear1.load_state_dict(block.mlp[0].state_dict())
        layer.linear2.load_state_dict(block.mlp[3].state_dict())
        layer.norm1.load_state_dict(block.norm1.state_dict())
        layer.norm2.load_state_dict(block.norm2.state_dict())


@pytest.mark.parametrize("B,T,C,H", SHAPES)
def test_encoder_block_equals_transformer_encoder_layer(nb, B, T, C, H):
    """Figure 2's block is nn.TransformerEncoderLayer(norm_first=True, activation="gelu")."""
    torch.manual_seed(T)
    block = nb.EncoderBlock(C, H, dropout=0.1)
    layer = nn.TransformerEncoderLayer(C, H, dim_feedforward=4 * C, dropout=0.1, activation="gelu",
                                       batch_first=True, norm_first=True)
    copy_into_encoder_layer(block, layer)
    block.eval()
    layer.eval()
    x = torch.randn(B, T, C)
    lengths = torch.randint(1, T + 1, (B,)).tolist()
    mask = lengths_mask(lengths, T)
    with torch.no_grad():
        ours, expected = block(x, mask=mask), layer(x, src_key_padding_mask=mask)
    for b, n in enumerate(lengths):  # PyTorch's inference fast path may leave padded rows undefined
        torch.testing.assert_close(ours[b, :n], expected[b, :n], **FP32)
    torch.testing.assert_close(block(x, mask=mask, cls_only=True), ours[:, :1], **FP32)


def test_encoder_block_training_gradients_equal_transformer_encoder_layer(nb):
    torch.manual_seed(1)
    block, layer = nb.EncoderBlock(8, 2, dropout=0.0), nn.TransformerEncoderLayer(
        8, 2, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    copy_into_encoder_layer(block, layer)
    x = torch.randn(2, 5, 8, requires_grad=True)
    mask = lengths_mask([5, 3], 5)
    g_ours = torch.autograd.grad(block(x, mask=mask).sum(), x)[0]
    g_ref = torch.autograd.grad(layer(x, src_key_padding_mask=mask).sum(), x)[0]
    torch.testing.assert_close(g_ours, g_ref, **FP32)


@pytest.mark.parametrize("d", [6, 7, 96])
def test_positional_encoding_is_the_papers_formula(nb, d):
    pe = nb.PositionalEncoding(d, 50)
    assert "pe" in dict(pe.named_buffers()) and not list(pe.parameters())
    expected = torch.tensor([[math.sin(pos / 10000 ** (i / d)) if i % 2 == 0 else
                              math.cos(pos / 10000 ** ((i - 1) / d)) for i in range(d)] for pos in range(50)])
    torch.testing.assert_close(pe.pe, expected, atol=1e-5, rtol=0)
    x = torch.randn(2, 9, d)
    torch.testing.assert_close(pe(x), x + expected[:9], atol=1e-5, rtol=0)


def test_create_mask_marks_padding(nb):
    sequences = torch.tensor([[2, 9, 4, 0, 0], [2, 5, 0, 0, 0], [2, 1, 7, 8, 3]])
    assert nb.create_mask(sequences, 0).tolist() == [[False, False, False, True, True],
                                                     [False, False, True, True, True],
                                                     [False] * 5]
    assert nb.create_mask(sequences, 0).dtype == torch.bool


@pytest.fixture(scope="module")
def word_tokenizer(nb):
    texts = ["good film", "bad film", "good good acting", "a bad bad plot"]
    return nb.train_word_tokenizer(texts, vocab_size=50, min_frequency=1)


def test_tokenizer_special_ids_are_the_templates(word_tokenizer):
    assert [word_tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]")] == [0, 1, 2]


def test_imdb_dataset_items_by_hand(nb, word_tokenizer):
    vocab = word_tokenizer.get_vocab()
    good, film, bad, plot = vocab["good"], vocab["film"], vocab["bad"], vocab["plot"]
    dataset = nb.IMDBDataset(["good film", "bad bad bad plot good", "unseen words"], [1, 0, 1],
                             word_tokenizer, max_length=4, pad_idx=0, cls_idx=2)
    assert len(dataset) == 3
    item = dataset[0]
    assert isinstance(item, tuple) and item[0].dtype == torch.long
    assert item[0].tolist() == [2, good, film, 0] and item[1] == 1
    assert dataset[1][0].tolist() == [2, bad, bad, bad] and dataset[1][1] == 0  # truncated to max_length
    assert dataset[2][0].tolist() == [2, 1, 1, 0]  # unknown words are [UNK] = 1
    del plot


def test_head_and_tail_truncation_keeps_both_ends_of_a_long_review(nb, word_tokenizer):
    """The second configuration's promise: a long review keeps its first `head` and its last tokens."""
    vocab = word_tokenizer.get_vocab()
    words = ["good", "film", "bad", "plot", "acting", "a", "good", "bad", "film", "plot"]
    ids = [vocab[w] for w in words]
    assert nb.truncate(ids, 5, head=2) == ids[:2] + ids[-3:]
    assert nb.truncate(ids, 5) == ids[:5]  # the template: the head only
    assert nb.truncate(ids[:4], 5, head=2) == ids[:4]  # short reviews are untouched
    dataset = nb.IMDBDataset([" ".join(words), "good film"], [1, 0], word_tokenizer, max_length=6,
                             pad_idx=0, cls_idx=2, head=2)
    assert dataset[0][0].tolist() == [2] + ids[:2] + ids[-3:]  # [CLS], 2 from the head, 3 from the tail
    assert dataset[1][0].tolist() == [2, vocab["good"], vocab["film"], 0, 0, 0]
    assert dataset.lengths.tolist() == [6, 3]


def test_second_configuration_uses_head_and_tail_and_its_scheduler():
    """The cell of the second configuration builds its datasets with head= and trains with scheduler=."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = [c.source for c in notebook.cells if c.cell_type == "code" and "OneCycleLR" in c.source]
    calls = [n for n in ast.walk(ast.parse(cell)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    datasets = [c for c in calls if c.func.id == "IMDBDataset"]
    assert len(datasets) == 3 and all("head" in {k.arg for k in c.keywords} for c in datasets)
    (training,) = [c for c in calls if c.func.id == "train_model"]
    assert "scheduler" in {k.arg for k in training.keywords}


def test_train_model_steps_the_learning_rate_schedule_once_per_batch(nb, word_tokenizer):
    torch.manual_seed(0)
    texts = ["good film", "bad film", "good good acting", "a bad bad plot"] * 6
    dataset = nb.IMDBDataset(texts, [1, 0, 1, 0] * 6, word_tokenizer, max_length=8, pad_idx=0, cls_idx=2)
    loader = nb.make_loader(dataset, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    model = nb.make_model(vocab_size=word_tokenizer.get_vocab_size(), max_len=8, embedding_dim=8, num_heads=2,
                          num_layers=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    steps = 2 * len(loader)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, pct_start=0.25, total_steps=steps)
    expected = []  # the rate of every step, from a second, identical schedule
    shadow = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1)], lr=1e-3), max_lr=1e-2,
                                                 pct_start=0.25, total_steps=steps)
    for _ in range(steps):
        expected.append(shadow.get_last_lr()[0])
        shadow.optimizer.step()
        shadow.step()
    used = []  # the rate in force at every optimizer step
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    nb.train_model(model, nn.BCELoss(), optimizer, loader, loader, 2, 0, scheduler=scheduler)
    assert used == pytest.approx(expected), "the optimizer did not follow the schedule step by step"


def test_trim_padding_cuts_to_the_longest(nb):
    batch = [(torch.tensor([2, 5, 0, 0]), 1), (torch.tensor([2, 7, 8, 0]), 0)]
    sequences, labels = nb.trim_padding(batch, 0)
    assert sequences.tolist() == [[2, 5, 0], [2, 7, 8]] and labels.tolist() == [1, 0]


def test_more_padding_does_not_change_predictions(nb):
    torch.manual_seed(0)
    model = nb.make_model(vocab_size=100, max_len=64, embedding_dim=16, num_heads=2, num_layers=2).eval()
    lengths = [5, 12, 3, 12]
    sequences = torch.randint(3, 100, (4, 12))
    sequences[:, 0] = 2
    sequences[lengths_mask(lengths, 12)] = 0
    padded = torch.cat([sequences, torch.zeros(4, 40, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short = model(sequences, mask=nb.create_mask(sequences, 0))
        long = model(padded, mask=nb.create_mask(padded, 0))
        single = torch.stack([model(s[None, :n], mask=nb.create_mask(s[None, :n], 0))[0]
                              for s, n in zip(sequences, lengths)])
    torch.testing.assert_close(long, short, **FP32)
    torch.testing.assert_close(single, short, **FP32)
    assert short.shape == (4,)


def test_cls_only_last_block_equals_the_full_computation(nb):
    torch.manual_seed(3)
    model = nb.make_model(vocab_size=50, max_len=16, embedding_dim=12, num_heads=3, num_layers=2).eval()
    sequences = torch.randint(3, 50, (3, 10))
    mask = lengths_mask([10, 4, 7], 10)
    with torch.no_grad():
        x = model.positional_encoding(model.embedding(sequences))
        for encoder in model.encoders:
            x = encoder(x, mask=mask)  # every position, as in the template
        expected = model.sigmoid(model.fc(x[:, 0])).squeeze(-1)
        torch.testing.assert_close(model(sequences, mask=mask), expected, **FP32)


def test_default_model_has_the_templates_parameter_count(nb):
    model = nb.make_model()
    assert nb.count_parameters(model) == 1_295_617
    names = {name for name, _ in model.named_modules()}
    assert {"encoders.0.attention.query", "encoders.0.attention.key", "encoders.0.attention.value",
            "encoders.0.attention.out_proj"} <= names


def test_encoder_block_drops_out_only_in_training(nb):
    torch.manual_seed(0)
    block = nb.EncoderBlock(8, 2, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in block.modules()) == 3  # Figure 2: attention, MLP, MLP out
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        assert torch.equal(block.eval()(x), block(x))
        assert not torch.allclose(block.train()(x), block(x))


def test_bf16_autocast_gives_the_fp32_predictions_within_bf16_precision(nb):
    torch.manual_seed(0)
    model = nb.make_model(vocab_size=100, max_len=64, embedding_dim=32, num_heads=4, num_layers=2).eval()
    sequences = torch.randint(3, 100, (6, 40))
    sequences[:, 0] = 2
    sequences[lengths_mask([40, 30, 12, 5, 40, 21], 40)] = 0
    mask = nb.create_mask(sequences, 0)
    with torch.no_grad():
        fp32 = model(sequences, mask=mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(sequences, mask=mask).float()
    torch.testing.assert_close(bf16, fp32, atol=2e-2, rtol=0)  # bfloat16 keeps about 3 significant digits


def test_graded_sections_use_only_standard_tools():
    """Sections 1 and 2: no custom autograd, ctypes, custom dropout, allocator or denormal settings."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in notebook.cells if c.cell_type == "code"]
    banned = {"Function", "ctypes", "mallopt", "set_flush_denormal", "CDLL"}
    for source in code:
        for node in ast.walk(ast.parse(source)):
            names = {getattr(node, "attr", None), getattr(node, "id", None)} | (
                {alias.name for alias in node.names} if isinstance(node, (ast.Import, ast.ImportFrom)) else set())
            assert not names & banned, ast.unparse(node)
            if isinstance(node, ast.ClassDef):  # every class is a plain module, dataset or sampler
                assert {ast.unparse(b) for b in node.bases} <= {"nn.Module", "Dataset", "Sampler"}, node.name


def test_length_grouped_sampler(nb):
    lengths = torch.randint(1, 300, (1000,)).numpy()
    sampler = nb.LengthGroupedBatchSampler(lengths, 64, shuffle=True, generator=torch.Generator().manual_seed(1),
                                           window=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 16
    assert sorted(i for b in batches for i in b) == list(range(1000))
    again = list(nb.LengthGroupedBatchSampler(lengths, 64, True, torch.Generator().manual_seed(1), window=4))
    assert batches == again
    spread = sum(lengths[b].max() - lengths[b].min() for b in batches) / len(batches)
    assert spread < 0.5 * (lengths.max() - lengths.min())  # batches hold similar lengths
    ordered = [i for b in nb.LengthGroupedBatchSampler(lengths, 64, shuffle=False) for i in b]
    assert list(lengths[ordered]) == sorted(lengths)


def test_classify_review(nb, word_tokenizer):
    torch.manual_seed(0)
    model = nb.make_model(vocab_size=word_tokenizer.get_vocab_size(), max_len=16, embedding_dim=8,
                          num_heads=2, num_layers=1)
    sentiment, p = nb.classify_review("A <b>good</b> film!", model, word_tokenizer, 0, 2, 16)
    assert sentiment in ("positive", "negative") and 0 < p < 1
    assert (sentiment == "positive") == (p > 0.5)
    assert nb.classify_review("", model, word_tokenizer, 0, 2, 16)[0] in ("positive", "negative")


@pytest.mark.parametrize("text", ODD_TEXTS, ids=["empty", "whitespace", "control", "emoji-cjk-rtl", "special",
                                                  "very-long"])
def test_classify_review_takes_any_text(nb, text):
    tokenizer = nb.train_word_tokenizer(["good film", "bad film"] * 10, vocab_size=20, min_frequency=1)
    torch.manual_seed(0)
    model = nb.make_model(vocab_size=tokenizer.get_vocab_size(), max_len=32, embedding_dim=8, num_heads=2,
                          num_layers=1)
    sentiment, p = nb.classify_review(text, model, tokenizer, 0, 2, 32)
    assert sentiment in ("positive", "negative") and 0 < p < 1


def test_preprocessing_is_the_templates(nb):
    assert nb.preprocess_text("Great!<br />10/10 :) Café") == "great!1010  caf"


def test_generated_reviews_are_balanced_and_reproducible(nb):
    reviews = nb.generate_reviews(200, 7)
    assert sum(reviews["label"]) == 100 and reviews == nb.generate_reviews(200, 7)
    assert any("<br />" in t for t in reviews["text"])


def test_local_files_load_and_bad_files_name_the_problem(nb, tmp_path):
    write_jsonl(tmp_path / "train.jsonl.gz", [{"text": "good", "label": 1}, {"text": "bad", "label": 0}])
    write_jsonl(tmp_path / "test.jsonl.gz", [{"text": "fine", "label": 1}])
    train, test, source = nb.load_imdb(str(tmp_path))
    assert train["text"] == ["good", "bad"] and test["label"] == [1] and str(tmp_path) in source
    write_jsonl(tmp_path / "test.jsonl.gz", [{"review": "fine", "label": 1}])
    with pytest.raises(ValueError, match=r"test.jsonl.gz, line 1: expected"):
        nb.load_imdb(str(tmp_path))
    write_jsonl(tmp_path / "test.jsonl.gz", [])
    with pytest.raises(ValueError, match="has no reviews"):
        nb.load_imdb(str(tmp_path))
    os.remove(tmp_path / "test.jsonl.gz")
    with pytest.raises(FileNotFoundError, match="no test.jsonl.gz or test.jsonl"):
        nb.load_imdb(str(tmp_path))


def gz(path, data):
    """Write the bytes `data` gzipped to `path` (well-formed or not)."""
    with gzip.open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("test_bytes, says", [
    (b'{"text": "caf\xe9", "label": 1}\n', "not UTF-8"),
    (b'{"text": "fine", "label": 1\n', "not valid JSON"),
    (b'["fine", 1]\n', "expected"),
    (b'{"text": "fine", "label": "positive"}\n', "expected"),
])
def test_imdb_loading_names_the_bad_line(nb, tmp_path, test_bytes, says):
    gz(tmp_path / "train.jsonl.gz", json.dumps({"text": "good", "label": 1}).encode() + b"\n")
    gz(tmp_path / "test.jsonl.gz", test_bytes)
    with pytest.raises(ValueError, match=rf"test.jsonl.gz, line 1: {says}"):
        nb.load_imdb(str(tmp_path))


def test_imdb_loading_reports_a_truncated_file(nb, tmp_path):
    gz(tmp_path / "train.jsonl.gz", json.dumps({"text": "good", "label": 1}).encode() * 1000)
    data = (tmp_path / "train.jsonl.gz").read_bytes()
    (tmp_path / "train.jsonl.gz").write_bytes(data[: len(data) // 2])
    gz(tmp_path / "test.jsonl.gz", json.dumps({"text": "fine", "label": 1}).encode() + b"\n")
    with pytest.raises(ValueError, match="damaged or truncated"):
        nb.load_imdb(str(tmp_path))


@pytest.mark.parametrize("flags", [None, set(), {"avx2", "avx512f"}, {"avx512f", "avx512_bf16"}, {"amx_bf16"}])
@pytest.mark.parametrize("onednn", [True, False])
def test_notebooks_bf16_rule_is_the_projects(nb, flags, onednn):
    """The notebook carries its own copy of the rule (it stands alone); it must decide as
    support.runtime.cpu_has_fast_bf16 does."""
    from support.runtime import Hardware, cpu_has_fast_bf16

    hardware = Hardware(cpu_flags=None if flags is None else frozenset(flags), onednn_bf16=onednn)
    assert nb.cpu_has_native_bf16(flags, onednn) == cpu_has_fast_bf16(hardware)


def test_notebook_reads_proc_cpuinfo_as_utils_does(nb):
    from support.runtime import cpu_info

    assert nb.read_cpuinfo() == cpu_info()


FORBIDDEN = {"MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer", "scaled_dot_product_attention"}


def test_definitions_do_not_use_pytorchs_attention():
    """The assignment forbids PyTorch's attention modules in Part 1: no attribute access to them in any
    definition, and no loop in the attention."""
    statements = [statement for _, statement in definitions()]
    attention = [s for s in statements if isinstance(s, ast.ClassDef) and s.name == "MultiheadAttention"]
    assert len(attention) == 1
    for statement in statements:
        for node in ast.walk(statement):
            assert not (isinstance(node, ast.Attribute) and node.attr in FORBIDDEN), ast.unparse(node)
            assert not (isinstance(node, ast.alias) and node.name in FORBIDDEN)
    assert not any(isinstance(node, (ast.For, ast.While, ast.comprehension)) for node in ast.walk(attention[0]))


def notebook_text(notebook):
    return "\n".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []))


def test_notebook_runs_end_to_end_in_quick_mode_alone_in_an_empty_folder(tmp_path, monkeypatch, capsys):
    """As in the course's layout: the notebook alone in a folder of its own, nothing of the project beside it."""
    monkeypatch.setenv("INF265_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PYTHONPATH", raising=False)  # the project's modules are not importable
    monkeypatch.delenv("MPLBACKEND", raising=False)  # importing streamlit (chat tests) sets Agg: no inline plots
    alone = tmp_path / "01_encoder_sentiment_classifier"
    alone.mkdir()
    shutil.copy(NOTEBOOK, alone)
    notebook = run_notebook(nbformat.read(alone / os.path.basename(NOTEBOOK), as_version=4), str(alone))
    assert sorted(os.listdir(alone)) == [os.path.basename(NOTEBOOK)]  # it wrote nothing beside itself
    shown = capsys.readouterr()  # make imdb's progress: each cell as it starts, the notebook's own lines and bars
    cells = sum(c.cell_type == "code" for c in notebook.cells)
    assert f"[cell 1/{cells}] import math" in shown.out and f"[cell {cells}/{cells}]" in shown.out
    assert "Epoch 3, Train Loss:" in shown.out and "Epoch 1:" in shown.err  # a line printed, a tqdm bar
    text = notebook_text(notebook)
    assert "Data source: built-in generated reviews (quick mode)" in text
    accuracy = float(re.search(r"Accuracy \(test\): ([0-9.]+)", text).group(1))
    assert accuracy > 0.8, text[-3000:]  # the generated reviews are easy; a broken model stays near 0.5
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # lengths histogram, curves, confusion matrix, attention heat map


def test_committed_notebook_carries_a_full_real_run():
    """The outputs stored in the notebook come from 3 epochs on the real data, and meet the targets."""
    text = notebook_text(nbformat.read(NOTEBOOK, as_version=4))
    assert "Quick mode: False" in text
    assert re.search(r"CPU: .+\. Precision: (bf16 autocast|fp32) \(", text)  # where and how it ran
    assert "Data source: local files" in text or "Data source: Hugging Face Hub" in text
    assert "Train: 25,000  validation: 5,000  test: 20,000" in text
    assert text.count("Number of trainable parameters: 1,295,617") == 2
    epochs = re.findall(r"Epoch (\d), Train Loss: .*, Val Acc\.: ([0-9.]+), time (\d+) s", text)
    assert [e[0] for e in epochs] == ["1", "2", "3"] * 2  # the template run, then the second configuration
    template_test = float(re.search(r"Accuracy \(test\): ([0-9.]+)", text).group(1))
    second_test = float(re.search(r"Accuracy \(test\), second configuration: ([0-9.]+)", text).group(1))
    assert template_test > 0.80  # the template's recipe works
    assert float(epochs[5][1]) >= 0.86 and second_test >= 0.855  # the issue's targets


def test_collapse_streams_keeps_what_jupyter_shows():
    from tools.notebook import collapse_streams

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("")])
    notebook.cells[0].outputs = [nbformat.v4.new_output("stream", name="stderr", text="bar  10%\r"),
                                 nbformat.v4.new_output("stream", name="stderr", text="bar 100%\r\n"),
                                 nbformat.v4.new_output("stream", name="stdout", text="Epoch 1\n"),
                                 nbformat.v4.new_output("stream", name="stderr", text="eval 50%\r    \r"),
                                 nbformat.v4.new_output("stream", name="stdout", text="Epoch 2\n")]
    outputs = collapse_streams(notebook).cells[0].outputs
    assert [(o.name, o.text) for o in outputs] == [("stderr", "bar 100%\n"), ("stdout", "Epoch 1\nEpoch 2\n")]
