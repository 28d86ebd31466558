"""What the self-check checks: each requirement of the assignment, run on anyone's files.

Each check is a function of a `Submission` (the folder and notebook under test) registered with
`@check(name, requires)`. It returns when the code meets the requirement and raises `Failed(got,
first_input)` when it does not: what the code did, and the first input on which it differs from the
assignment's worked example, its formula, or this project's reference implementation. Anything else
the student's code raises is an error of that check. The runner (tools/check/__main__.py) runs every
check in its own process with a time limit, so a crash or an endless loop stops only that check.

Example (in a child process, after `isolate`):  CHECKS["inference.top_p"].run(Submission(folder))
"""

import ast
import copy
import importlib
import os
import sys
import types
from dataclasses import dataclass

import torch
import torch.nn as nn

from support.probes import expected_num_params, future_leak, padding_effect
from tools.notebook import code_cells, load_definitions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this project
MAX_LEN = 24  # QADataset checks: short enough that hand-made pairs hit every boundary
TEMPLATE_DEFAULTS = dict(vocab_size=20_000, embed_size=512, num_heads=8, num_layers=5, dropout_p=0.1,
                         max_len=128)
TEMPLATE_PARAMS = expected_num_params(types.SimpleNamespace(**TEMPLATE_DEFAULTS))  # 36,261,920
TOP_P_LOGITS = [-1.0, 2.0, -3.0, 3.0, -3.0, 0.0, 2.0, 1.0]  # the assignment's worked example
TOP_P_DRAWS, TOP_P_TOLERANCE = 3000, 0.04  # 0.04 is over 4.5 standard errors at 3,000 draws
FP32 = dict(atol=1e-5, rtol=1e-5)
TINY_VOCAB = 40  # the model checks' TransformerModel: vocab 40, embed 16, 2 heads, 2 layers, max_len 12


@dataclass
class Check:
    name: str
    part: str  # "Part 1" or "Part 2"
    requires: str  # the assignment's requirement, in words a student can act on
    run: object


CHECKS = {}  # name -> Check, in the order of the report card


def check(name, requires):
    def register(function):
        part = "Part 1" if name.startswith("notebook.") else "Part 2"
        CHECKS[name] = Check(name, part, requires, function)
        return function
    return register


class Failed(Exception):
    """The code runs but does not do what the assignment requires.

    `faults` lists every requirement broken, as {"requirement", "got", "first_input", "count"}:
    a check reports all the faults it sees in one run (Faults), not only the first.
    """

    def __init__(self, got, first_input="", faults=None):
        super().__init__(got)
        self.got, self.first_input = got, first_input
        self.faults = faults or [dict(requirement="", got=got, first_input=first_input, count=1)]


class Faults:
    """What a check finds on all its inputs, grouped by the requirement each finding breaks: the
    first input of each group and how many inputs broke it. `raise_if_any()` at the end of the check.

    >>> faults = Faults()
    >>> faults.add("[END] is the last target", "the last target is -100", "a long answer")
    >>> faults.add("[END] is the last target", "the last target is -100", "a long question")
    >>> faults.groups["[END] is the last target"]["count"]
    2
    """

    def __init__(self):
        self.groups = {}

    def add(self, requirement, got, first_input=""):
        group = self.groups.setdefault(requirement, dict(requirement=requirement, got=got,
                                                         first_input=first_input, count=0))
        group["count"] += 1

    def raise_if_any(self):
        if not self.groups:
            return
        faults = list(self.groups.values())
        got = "; ".join(f"{f['got']}" + (f" ({f['count']} inputs)" if f["count"] > 1 else "") for f in faults)
        raise Failed(got, faults[0]["first_input"], faults)


class CheckCouldNotRun(Exception):
    """The checker itself cannot run this check on the code given (a signature it cannot fill, a
    problem of its own): said plainly, never counted as the student's error."""


class Skipped(Exception):
    """The files this check needs were not given (no Part 2 folder, no notebook)."""


class MissingCode(Exception):
    """A file, class or function the template names is not there."""


# ----------------------------------------------------------------------------------------------
# The reference (this project's own modules), loaded before the student's folder is put on the path


class Reference:
    """This project's implementation, imported from ROOT before `isolate` hides its module names."""

    def __init__(self, notebook=False):
        import config as config_module
        import dataset
        import model
        import tokenizer

        self.make_config = config_module.make_config
        self.QADataset, self.build_sequence = dataset.QADataset, dataset.build_sequence
        self.DecoderBlock, self.sinusoidal_table = model.DecoderBlock, model.sinusoidal_table
        self.fit_tokenizer = tokenizer.fit_tokenizer
        from support.data_sources import QAPairs
        self.QAPairs = QAPairs
        if notebook:  # Part 1 checks only: our notebook's definitions (imports matplotlib, datasets)
            self.notebook = load_definitions()


def isolate(student_folder, patch_datasets=True):
    """Forget this project's course files (config, dataset, model, ...) and put the student's folder
    first on the import path, so `import dataset` imports theirs. The Reference keeps what it
    already imported; the machinery below the course files (support/) and the checker (tools/)
    stay, as they import none of the course files."""
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if os.path.dirname(path) == ROOT and not name.startswith(("support", "tools", "__main__")):
            del sys.modules[name]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
    if student_folder:
        sys.path.insert(0, student_folder)
    if not patch_datasets:
        return
    # The template loads data with datasets.load_dataset / load_from_disk, from the Hub; here they
    # return the checker's own pairs (Submission.qa_rows), so no network is needed.
    import datasets

    def load_dataset(*args, **kwargs):
        return datasets.DatasetDict({"train": datasets.Dataset.from_list(Submission.qa_rows)})

    def load_from_disk(*args, **kwargs):
        return datasets.Dataset.from_list(Submission.qa_rows)

    datasets.load_dataset, datasets.load_from_disk = load_dataset, load_from_disk


class Submission:
    """The files under test: a folder with the Part 2 scripts and/or a Part 1 notebook."""

    qa_rows = []  # what the patched datasets.load_dataset returns (see isolate)

    def __init__(self, part2=None, notebook=None, tokenizer_file=None, reference=None):
        self.part2, self.notebook, self.tokenizer_file = part2, notebook, tokenizer_file
        self.ref = reference
        self._notebook_module = None

    def module(self, name):
        if not self.part2:
            raise Skipped("no Part 2 folder given")
        if not os.path.isfile(os.path.join(self.part2, name + ".py")):
            raise MissingCode(f"{name}.py is not in {self.part2}")
        return importlib.import_module(name)

    def get(self, module_name, attribute):
        module = self.module(module_name)
        if not hasattr(module, attribute):
            raise MissingCode(f"{module_name}.py has no {attribute} (the template's name for it)")
        return getattr(module, attribute)

    def config(self, **changes):
        """A copy of the student's `config` (template defaults without config.py), changed."""
        if self.part2 and os.path.isfile(os.path.join(self.part2, "config.py")):
            cfg = copy.copy(self.get("config", "config"))
        else:
            cfg = types.SimpleNamespace(**TEMPLATE_DEFAULTS, sep_token="[SEP]", end_token="[END]",
                                        pad_token="[PAD]", unk_token="[UNK]", split="train",
                                        model_train_fraction=1.0, seed=0)
        for key, value in {"device": "cpu", **changes}.items():
            setattr(cfg, key, value)
        return cfg

    def notebook_module(self):
        if not self.notebook:
            raise Skipped("no Part 1 notebook given")
        if self._notebook_module is None:  # once: class identities must stay the same
            self._notebook_module = load_definitions(self.notebook, strict=False)
        return self._notebook_module

    def notebook_get(self, name):
        module = self.notebook_module()
        if not hasattr(module, name):
            raise MissingCode(f"the notebook defines no {name} (the template's name for it)")
        return getattr(module, name)


# ----------------------------------------------------------------------------------------------
# Words for reports


def show(ids, tokenizer=None, limit=18):
    """Ids as a student reads them, token strings when a tokenizer is given.

    >>> show([7, 0, 9, 1, -100])
    '[7, 0, 9, 1, -100]'
    """
    ids = [int(i) for i in ids]
    words = [("-100" if i == -100 else tokenizer.id_to_token(i) if tokenizer else str(i)) for i in ids]
    words = [w.replace("\u0120", "") or w for w in words]
    more = f", ... ({len(ids)} in all)" if len(words) > limit else ""
    return "[" + ", ".join(words[:limit]) + more + "]"


def close(a, b, tolerance=FP32):
    return a.shape == b.shape and torch.allclose(a, b, **tolerance)


# ----------------------------------------------------------------------------------------------
# Part 2: QADataset


TOKENIZER_TEXTS = [
    "how many legs does a cat have? four, unless it has lost one.",
    "what is the capital of norway? oslo is the capital of norway.",
    "what is the largest dog breed? the english mastiff is the largest dog breed.",
    "cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat cat",
] * 20


def tokenizer_for(sub):
    """The student's tokenizer file when given, else a small BPE tokenizer trained in memory with
    the template's pipeline and special-token order ([SEP]=0, [END]=1, [PAD]=2, [UNK]=3)."""
    if sub.tokenizer_file:
        from tokenizers import Tokenizer
        return Tokenizer.from_file(sub.tokenizer_file)
    tokenizer = sub.ref.fit_tokenizer(sub.ref.make_config("tiny"), TOKENIZER_TEXTS, vocab_size=1000,
                                      min_frequency=1)
    tokenizer.encode_special_tokens = False  # as the template's: typed "[SEP]" becomes the special id
    return tokenizer


def dataset_cases(tokenizer):
    """(name, question, answer): a short pair, the exact boundaries, an empty answer, two long ones."""
    question = "how many legs does a cat have?"
    n_question = len(tokenizer.encode(question).ids)

    def answer_of(n_tokens):  # "cat cat ..." (or another word) with exactly n_tokens ids
        for word in ("cat", "the", "a", "yes", "x"):
            for words in range(0, 4 * MAX_LEN):
                text = " ".join([word] * words)
                if len(tokenizer.encode(text).ids) == n_tokens:
                    return text
        raise RuntimeError(f"the tokenizer makes no answer of exactly {n_tokens} tokens from repeated "
                           "words; the boundary cases need one")

    return [
        ("a short pair", question, "four, unless it has lost one."),
        (f"exactly max_len + 1 = {MAX_LEN + 1} tokens", question, answer_of(MAX_LEN + 1 - n_question - 2)),
        (f"exactly max_len = {MAX_LEN} tokens", question, answer_of(MAX_LEN - n_question - 2)),
        ("an empty answer", question, ""),
        ("a long answer", question, " ".join(["oslo is the capital of norway."] * 4)),
        ("a long question", " ".join(["what is the largest dog breed?"] * 4), "the english mastiff."),
    ]


def built_datasets(sub):
    """(student's QADataset, reference QADataset, cases, tokenizer) on the same pairs."""
    QADataset = sub.get("dataset", "QADataset")
    tokenizer = tokenizer_for(sub)
    cases = dataset_cases(tokenizer)
    Submission.qa_rows = [{"question": q, "answer": a} for _, q, a in cases]
    cfg = sub.config(max_len=MAX_LEN, model_train_fraction=1.0, split="train",
                     dataset=os.path.join(os.getcwd(), "pairs.jsonl"))
    import json
    with open(cfg.dataset, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in Submission.qa_rows)
    theirs = QADataset(cfg, tokenizer)
    ref_cfg = sub.ref.make_config("tiny", max_len=MAX_LEN, model_train_fraction=1.0)
    pairs = sub.ref.QAPairs([q for _, q, _ in cases], [a for _, _, a in cases], "checker pairs")
    ours = sub.ref.QADataset(ref_cfg, tokenizer, pairs=pairs)
    return theirs, ours, cases, tokenizer


def case_input(case, tokenizer):
    name, question, answer = case
    n_q, n_a = len(tokenizer.encode(question).ids), len(tokenizer.encode(answer).ids)
    return (f"{name}: question {question!r} ({n_q} tokens), answer {answer!r} ({n_a} tokens), "
            f"max_len {MAX_LEN}")


KEYS = ["source_sequence", "target_sequence", "key_padding_mask"]


@check("dataset.items", "QADataset(config, tokenizer)[i] is a dict with the keys source_sequence, "
       "target_sequence, key_padding_mask in this order (train.py unpacks .values()); int64, int64 "
       "and bool tensors, each of shape (max_len,)")
def check_dataset_items(sub):
    theirs, _, cases, tokenizer = built_datasets(sub)
    if len(theirs) != len(cases):
        raise Failed(f"len(dataset) is {len(theirs)} for {len(cases)} pairs (model_train_fraction 1.0)")
    faults = Faults()
    for i, case in enumerate(cases):
        item = theirs[i]
        where = case_input(case, tokenizer)
        if not isinstance(item, dict):
            faults.add("an item is a dict", f"an item is a {type(item).__name__}, not a dict", where)
            continue
        if list(item) != KEYS:
            faults.add("the keys in the template's order", f"the keys are {list(item)}", where)
        for key, dtype in zip(KEYS, (torch.int64, torch.int64, torch.bool)):
            value = item.get(key)
            if not torch.is_tensor(value):
                faults.add(f"{key} is a tensor", f"{key} is a {type(value).__name__}, not a tensor", where)
                continue
            if value.dtype != dtype:
                faults.add(f"{key} is {dtype}", f"{key} has dtype {value.dtype}, not {dtype}", where)
            if tuple(value.shape) != (MAX_LEN,):
                faults.add(f"{key} has shape (max_len,)",
                           f"{key} has shape {tuple(value.shape)}, not ({MAX_LEN},) = (max_len,)", where)
    faults.raise_if_any()


@check("dataset.layout", "the sequence is question ids, [SEP], answer ids, [END], then [PAD] up to "
       "max_len + 1 ids; source = sequence[:-1], target = sequence[1:] with -100 exactly at padding "
       "targets; key_padding_mask True exactly where the source is [PAD] (a short pair, pairs of "
       "exactly max_len and max_len + 1 tokens, an empty answer)")
def check_dataset_layout(sub):
    theirs, ours, cases, tokenizer = built_datasets(sub)
    pad = tokenizer.token_to_id("[PAD]")
    faults = Faults()
    for i, case in enumerate(cases[:4]):
        got, expected = theirs[i], ours[i]
        for key in KEYS:
            a, b = torch.as_tensor(got[key]), expected[key]
            if a.shape == b.shape and torch.equal(a.long(), b.long()):
                continue
            if a.shape != b.shape:
                faults.add(f"{key} has shape (max_len,)", f"{key} has shape {tuple(a.shape)}, not ({MAX_LEN},)",
                           case_input(case, tokenizer))
                continue
            position = int((a.long() != b.long()).nonzero()[0])
            window = slice(max(0, position - 3), position + 6)
            shown = (lambda t: t[window].tolist()) if key == "key_padding_mask" else (
                lambda t: show(t[window], tokenizer))
            hint = layout_hint(key, a, b, expected, pad)
            faults.add(f"{key} as the assignment lays it out" + (f": {hint}" if hint else ""),
                       f"{key} differs from position {position}: at positions {window.start}.."
                       f"{min(window.stop, MAX_LEN) - 1} expected {shown(b)}, got {shown(a)}"
                       + (f". {hint}" if hint else ""), case_input(case, tokenizer))
    faults.raise_if_any()


def layout_hint(key, got, expected, item, pad):
    """The known mistake a difference looks like, in words."""
    real_target = item["target_sequence"] != -100
    if key == "target_sequence" and (got[~real_target] == pad).any():
        return f"Padding targets hold the [PAD] id {pad}; set them to -100 so the loss ignores them"
    if key == "key_padding_mask":
        extra = got.bool() & ~expected.bool()
        if extra.any():
            return ("The mask marks a real token as padding (the [END] position?); only [PAD] "
                    "positions of the source may be True")
    if key == "target_sequence" and (expected[got == -100] != -100).any():
        return "-100 is set at real targets ([END] is a real target: the model learns to stop there)"
    return ""


@check("dataset.truncation", "a pair longer than max_len + 1 tokens is cut so that [SEP] stays in "
       "and [END] is still the last target: no padding, no -100, question tokens before [SEP], "
       "the start of the answer after it")
def check_dataset_truncation(sub):
    theirs, _, cases, tokenizer = built_datasets(sub)
    sep, end = tokenizer.token_to_id("[SEP]"), tokenizer.token_to_id("[END]")
    faults = Faults()
    for i, case in list(enumerate(cases))[4:]:
        item, where = theirs[i], case_input(case, tokenizer)
        source, target = item["source_sequence"].long(), item["target_sequence"].long()
        if target.shape != (MAX_LEN,) or source.shape != (MAX_LEN,):
            faults.add("the tensors have shape (max_len,)", f"target_sequence has shape {tuple(target.shape)}", where)
            continue
        sequence = source.tolist() + target[-1:].tolist()
        whole = show(sequence, tokenizer, limit=MAX_LEN + 1)
        if sequence.count(sep) != 1:
            faults.add("[SEP] stays in, once", f"the sequence holds [SEP] {sequence.count(sep)} times: {whole}", where)
        if int(target[-1]) != end:
            faults.add("[END] is the last target", end_explanation(target, end, tokenizer), where)
        if bool(item["key_padding_mask"].any()) or bool((target == -100).any()):
            faults.add("a full-length pair has no padding",
                       f"a full-length pair has padding or -100 targets: {show(target, tokenizer)}", where)
        if sep in sequence:
            question_ids, answer_ids = (tokenizer.encode(text).ids for text in case[1:])
            before, after = sequence[:sequence.index(sep)], sequence[sequence.index(sep) + 1:-1]
            if end in after:
                after = after[:after.index(end)]
            if not _is_sublist(before, question_ids) or after != answer_ids[:len(after)]:
                faults.add("question tokens, [SEP], the answer's start, [END]",
                           f"the kept tokens are not question tokens, [SEP], the start of the answer, [END]: {whole}",
                           where)
    faults.raise_if_any()


def end_explanation(target, end, tokenizer):
    """What happened to [END] in a long pair's target, in words true for this target."""
    ids = target.tolist()
    if end not in ids:
        return (f"[END] is not among the targets ({show(target, tokenizer, limit=MAX_LEN)}): the model never "
                "learns to stop on long pairs")
    position = len(ids) - 1 - ids[::-1].index(end)
    after = ids[position + 1:]
    padding = sum(t == -100 or t == tokenizer.token_to_id("[PAD]") for t in after)
    if padding == len(after):
        return (f"[END] is target {position + 1} of {len(ids)}, followed by {len(after)} [PAD] "
                f"(target -100): [END] is trained, but the pair is cut {len(after)} token"
                f"{'s' if len(after) > 1 else ''} shorter than max_len + 1, so the last "
                f"{'positions' if len(after) > 1 else 'position'} of every long pair "
                f"{'are' if len(after) > 1 else 'is'} padding")
    return (f"[END] is target {position + 1} of {len(ids)} and real tokens follow it "
            f"({show(after, tokenizer)}): the model learns to go on after [END]")


def _is_sublist(part, whole):
    return any(whole[i:i + len(part)] == part for i in range(len(whole) - len(part) + 1))


# ----------------------------------------------------------------------------------------------
# Part 2: the model


def tiny_model(sub, **changes):
    TransformerModel = sub.get("model", "TransformerModel")
    cfg = sub.config(vocab_size=TINY_VOCAB, embed_size=16, num_heads=2, num_layers=2, dropout_p=0.1, max_len=12,
                     **changes)
    torch.manual_seed(0)
    return TransformerModel(cfg).eval(), cfg


def causal_mask_of(sub):
    """generate_causal_mask as the template has it: a method of TransformerModel (or a function)."""
    module = sub.module("model")
    if hasattr(module, "generate_causal_mask"):
        return module.generate_causal_mask
    model, _ = tiny_model(sub)
    if not hasattr(model, "generate_causal_mask"):
        raise MissingCode("model.py has no generate_causal_mask (a method of TransformerModel)")
    return model.generate_causal_mask


@check("model.causal_mask", "generate_causal_mask(n) is an (n, n) bool tensor, True strictly above "
       "the diagonal (True = may not attend); a float mask is added to the scores and lets the "
       "future leak")
def check_causal_mask(sub):
    generate = causal_mask_of(sub)
    for n in (1, 2, 5):
        mask = generate(n)
        expected = torch.ones(n, n).triu(diagonal=1).bool()
        if not torch.is_tensor(mask) or mask.dtype != torch.bool:
            kind = mask.dtype if torch.is_tensor(mask) else type(mask).__name__
            raise Failed(f"generate_causal_mask({n}) has dtype {kind}, not torch.bool (add .bool())",
                         f"seq_len {n}")
        if mask.shape != expected.shape or not torch.equal(mask, expected):
            raise Failed(f"generate_causal_mask({n}) is {mask.int().tolist()}, expected "
                         f"{expected.int().tolist()}", f"seq_len {n}")


@check("model.positional_encoding", "the table the model adds to its token embeddings is PE[pos, 2i] = "
       "sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d)), wherever it is built (a "
       "PositionalEncoding module, a method, a buffer of the model), stored with register_buffer (not a parameter)")
def check_positional_encoding(sub):
    PositionalEncoding = getattr(sub.module("model"), "PositionalEncoding", None)
    if PositionalEncoding is not None:  # the template's module, checked on its own too
        check_sinusoid(PositionalEncoding, sub.ref.sinusoidal_table)
    model, cfg = tiny_model(sub)
    d, max_len = cfg.embed_size, cfg.max_len
    where = (f"TransformerModel(vocab {TINY_VOCAB}, embed {d}, max_len {max_len}) in eval mode with its token "
             f"embeddings zeroed: what reaches its first block, for {max_len} tokens")
    refuse_a_trainable_table(model, max_len * d, where)
    compare_table(added_table(model, max_len), sub.ref.sinusoidal_table(max_len, d), where)


def refuse_a_trainable_table(module, size, where):
    if any(p.numel() == size and p.requires_grad for p in module.parameters()):
        raise Failed("the table is a parameter: the optimizer changes it; store it with register_buffer", where)


def added_table(model, length):
    """What `model` adds to its token embeddings at positions 0..length-1: the input of its first
    block (a forward pre-hook on layers[0]) with every embedding row zeroed, in eval mode."""
    layers = getattr(model, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise MissingCode("TransformerModel has no layers (the template's ModuleList of DecoderBlocks)")
    seen = []
    hook = layers[0].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0] if args else next(iter(kwargs.values()))), with_kwargs=True)
    try:
        with torch.no_grad():
            for embedding in (m for m in model.modules() if isinstance(m, nn.Embedding)):
                embedding.weight.zero_()
            logits_of(model, torch.randint(4, TINY_VOCAB, (1, length)))
    finally:
        hook.remove()
    return seen[0][0]  # (length, d)


def check_sinusoid(PositionalEncoding, table_of):
    d, max_len, T = 16, 50, 20
    encoding = PositionalEncoding(d, max_len)
    where = f"PositionalEncoding({d}, {max_len}) on zeros of shape (2, {T}, {d})"
    refuse_a_trainable_table(encoding, max_len * d, where)
    if not any(b.numel() == max_len * d for b in encoding.buffers()):
        raise Failed("no buffer holds the (max_len, embed_size) table; store it with register_buffer", where)
    added = encoding(torch.zeros(2, T, d))
    compare_table(added[0] if added.dim() == 3 else added, table_of(max_len, d)[:T], where)


def compare_table(added, expected, where):
    """Failed unless `added` (T, d) is the paper's table `expected`, naming the mix-up when it is one."""
    T, d = expected.shape
    if added.shape != expected.shape:
        raise Failed(f"the table has shape {tuple(added.shape)}, not ({T}, {d})", where)
    if close(added.float(), expected, dict(atol=1e-4, rtol=1e-4)):
        return
    for name, variant in sinusoid_variants(T, d).items():
        if close(added.float(), variant, dict(atol=1e-4, rtol=1e-4)):
            raise Failed(f"the table is {name}", where)
    difference = (added.float() - expected).abs()
    pos, dim = (int(i) for i in (difference > 1e-4).nonzero()[0])
    raise Failed(f"the table differs from the paper's formula by up to {float(difference.max()):.3f}: PE[{pos}, {dim}] "
                 f"is {float(added[pos, dim]):.5f}, the formula gives {float(expected[pos, dim]):.5f}", where)


def sinusoid_variants(max_len, d):
    """Tables that look right but are not the paper's, by the mistake that makes them."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float64)
    angles = pos / 10000 ** (i / d)
    interleave = lambda first, second: torch.stack([first, second], -1).reshape(max_len, d).float()  # noqa: E731
    per_column = pos / 10000 ** (torch.arange(d, dtype=torch.float64) / d)
    alternating = torch.where(torch.arange(d) % 2 == 0, per_column.sin(), per_column.cos()).float()
    return {
        "the paper's with sin and cos swapped (cos at even dimensions)": interleave(angles.cos(), angles.sin()),
        "sin of all frequencies then cos of all frequencies (halves, not interleaved)":
            torch.cat([angles.sin(), angles.cos()], 1).float(),
        "built with exponent j/d for column j (the paper uses 2i/d for columns 2i and 2i+1)": alternating,
    }


@check("model.parameters", f"TransformerModel at the template's default config has {TEMPLATE_PARAMS:,} "
       "parameters (embedding 10,240,000; each of 5 blocks 3,152,384; fc_out 10,260,000)")
def check_parameter_count(sub):
    TransformerModel = sub.get("model", "TransformerModel")
    model = TransformerModel(sub.config(**TEMPLATE_DEFAULTS))
    count = sum(p.numel() for p in model.parameters())
    if count != TEMPLATE_PARAMS:
        parts = ", ".join(f"{name} {sum(p.numel() for p in child.parameters()):,}"
                          for name, child in model.named_children() if any(True for _ in child.parameters()))
        raise Failed(f"{count:,} parameters ({count - TEMPLATE_PARAMS:+,}): {parts}",
                     "vocab_size 20000, embed_size 512, num_heads 8, num_layers 5, max_len 128")


def logits_of(model, x, padding_mask=None):
    with torch.no_grad():
        out = model(x) if padding_mask is None else model(x, padding_mask=padding_mask)
    out = out[0] if isinstance(out, tuple) else out
    if out.shape != (*x.shape, TINY_VOCAB):
        raise Failed(f"the model returns shape {tuple(out.shape)} for ids of shape {tuple(x.shape)}; "
                     f"logits must be (B, T, vocab_size) = (B, T, {TINY_VOCAB})")
    return out


@check("model.no_future_leak", "the logits at position t depend only on tokens 0..t, with no padding "
       "mask and with one (a float causal mask leaks once a padding mask is passed)")
def check_no_future_leak(sub):
    model, _ = tiny_model(sub)
    torch.manual_seed(1)
    x = torch.randint(4, TINY_VOCAB, (2, 10))
    for label, mask in (("no padding mask", None), ("a padding mask of all False",
                                                     torch.zeros(2, 10, dtype=torch.bool))):
        leak, t = future_leak(lambda ids, m: logits_of(model, ids, m), x, TINY_VOCAB, mask)
        if leak > 1e-5:
            raise Failed(f"changing tokens {t + 1}..9 changes the logits at positions 0..{t} by up to "
                         f"{leak:.3g}: the model sees the future (is the causal mask bool?)",
                         f"2 random sequences of 10 tokens, {label}, eval mode")


@check("model.padding", "[PAD] tokens after a question, marked in the padding mask, do not change "
       "the logits of the real positions")
def check_padding(sub):
    model, cfg = tiny_model(sub)
    torch.manual_seed(2)
    real = torch.randint(4, TINY_VOCAB, (1, 6))
    difference = padding_effect(lambda ids, m: logits_of(model, ids, m), real, pad_id=2, n_pad=4)
    if difference > FP32["atol"] + FP32["rtol"]:
        raise Failed(f"the real positions' logits change by up to {difference:.3g} when 4 [PAD] are "
                     "appended and masked", "1 sequence of 6 random tokens, then 4 x [PAD], eval mode")


@check("model.block_layout", "DecoderBlock follows Figure 4 (GPT-2 style): h = LN2(x + "
       "Dropout(MHA(LN1(x)))), out = h + Dropout(MLP(h)), MLP = Linear(d, 4d), GELU, Linear(4d, d), "
       "with torch.nn.MultiheadAttention(batch_first=True)")
def check_block_layout(sub):
    DecoderBlock = sub.get("model", "DecoderBlock")
    d, T = 16, 6
    torch.manual_seed(3)
    block = DecoderBlock(d, 2, 0.1).eval()
    attention, norms, linears = block_parts(block, nn.MultiheadAttention, d, figure=4)
    x = torch.randn(2, T, d)
    mask = torch.ones(T, T).triu(diagonal=1).bool()
    with torch.no_grad():
        got = block(x, mask, None)
    where = f"a DecoderBlock({d}, 2, 0.1) in eval mode, x of shape (2, {T}, {d}), causal mask, no padding"
    if not attention.batch_first:
        raise Failed("nn.MultiheadAttention is built without batch_first=True, so (B, T, C) input is read "
                     "as (T, B, C)", where)
    ours = sub.ref.DecoderBlock(d, 2, 0.0).eval()
    ours.attention.load_state_dict(attention.state_dict())
    ours.ffn[0].load_state_dict(linears[0].state_dict())
    ours.ffn[2].load_state_dict(linears[1].state_dict())
    for first, second in (norms, norms[::-1]):
        ours.norm1.load_state_dict(first.state_dict())
        ours.norm2.load_state_dict(second.state_dict())
        with torch.no_grad():
            if close(got, ours(x, mask, None)):
                return
    layout = which_layout(x, lambda h: attention(h, h, h, attn_mask=mask, need_weights=False)[0],
                          norms, linears, got)
    raise Failed({
        "pre-norm": "the block computes the standard pre-norm layout, out = s + MLP(LN2(s)) with s = x + "
                    "MHA(LN1(x)); Figure 4 puts LN2 on the residual stream: h = LN2(x + MHA(LN1(x))), "
                    "out = h + MLP(h)",
        "post-norm": "the block computes the post-norm layout of the original Transformer, LN(x + MHA(x)); "
                     "Figure 4 normalises before attention: h = LN2(x + MHA(LN1(x))), out = h + MLP(h)",
        "": "the output matches neither Figure 4 nor the usual pre-norm or post-norm layouts (check the "
            "residual connections, the LayerNorms and the MLP's GELU)"}[layout], where)


def block_parts(block, attention_type, d, figure):
    """(the attention module, the two LayerNorms, the MLP's Linear(d, 4d) and Linear(4d, d)) of a
    block, with random LayerNorm weights so that their order matters; Failed if it has others."""
    attentions = [m for m in block.modules() if isinstance(m, attention_type)]
    inside = {id(m) for a in attentions for m in a.modules()}
    norms = [m for m in block.modules() if isinstance(m, nn.LayerNorm)]
    linears = [m for m in block.modules() if isinstance(m, nn.Linear) and id(m) not in inside]
    shapes = sorted(tuple(m.weight.shape) for m in linears)
    if len(attentions) != 1 or len(norms) != 2 or shapes != [(d, 4 * d), (4 * d, d)]:
        raise Failed(f"{type(block).__name__}({d}, ...) holds {len(attentions)} {attention_type.__name__}, "
                     f"{len(norms)} LayerNorms and other Linear weights of shapes {shapes}; Figure {figure} "
                     f"has 1, 2 and Linear({d}, {4 * d}), Linear({4 * d}, {d})")
    with torch.no_grad():
        for norm in norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_()
    linears.sort(key=lambda m: m.weight.shape[0], reverse=True)  # Linear(d, 4d) first
    return attentions[0], norms, linears


def which_layout(x, mha, norms, linears, got):
    """"pre-norm", "post-norm" or "" : the usual layout the block's output `got` matches, computed
    from its own parts (`mha(h)` its attention over h), with either LayerNorm first."""
    def mlp(h):
        return linears[1](nn.functional.gelu(linears[0](h)))

    with torch.no_grad():
        for ln1, ln2 in (norms, norms[::-1]):
            s = x + mha(ln1(x))
            if close(got, s + mlp(ln2(s))):  # Figure 2 (Part 1), GPT-2's own layout
                return "pre-norm"
            h = ln1(x + mha(x))
            if close(got, ln2(h + mlp(h))):  # the original Transformer
                return "post-norm"
    return ""


# ----------------------------------------------------------------------------------------------
# Part 2: sampling


@check("inference.greedy", "greedy_sampling(logits) returns the id of the largest logit as a tensor "
       "with one element (the caller uses .view(1, 1) and .item())")
def check_greedy(sub):
    greedy = sub.get("inference", "greedy_sampling")
    generator = torch.Generator().manual_seed(4)
    for trial in range(5):
        logits = torch.randn(50, generator=generator)
        token = greedy(logits)
        where = f"logits = torch.randn(50) (trial {trial}), argmax {int(logits.argmax())}"
        if not torch.is_tensor(token) or token.numel() != 1:
            kind = f"a tensor of shape {tuple(token.shape)}" if torch.is_tensor(token) else type(token).__name__
            raise Failed(f"greedy_sampling returns {kind}, not a one-element tensor", where)
        if token.is_floating_point() or int(token.view(1, 1)) != int(logits.argmax()):
            raise Failed(f"greedy_sampling returns {token!r}", where)


@check("inference.top_p", f"top_p_sampling(logits, p=0.95, temperature=0.7) on the worked example "
       f"{TOP_P_LOGITS} keeps exactly {{3, 1, 6}} (the token that crosses p is kept) and draws each in "
       f"proportion to its renormalised probability (3: 0.676, 1 and 6: 0.162 each; {TOP_P_DRAWS:,} "
       f"seeded draws, each frequency within +-{TOP_P_TOLERANCE})")
def check_top_p(sub):
    top_p = sub.get("inference", "top_p_sampling")
    import random

    import numpy as np
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    logits = torch.tensor(TOP_P_LOGITS)
    where = f"logits {TOP_P_LOGITS}, p 0.95, temperature 0.7, {TOP_P_DRAWS:,} draws"
    counts = torch.zeros(len(TOP_P_LOGITS))
    for _ in range(TOP_P_DRAWS):
        token = top_p(logits.clone(), 0.95, 0.7)
        if not torch.is_tensor(token) or token.numel() != 1:
            raise Failed(f"top_p_sampling returns {token!r}, not a one-element tensor", where)
        counts[int(token.view(-1)[0])] += 1
    drawn = sorted(int(i) for i in counts.nonzero().view(-1))
    if drawn != [1, 3, 6]:
        hint = (" (only tokens whose cumulative mass stays below p: the token that crosses p must be kept)"
                if drawn == [1, 3] else "")
        raise Failed(f"the draws hold the tokens {drawn}{hint}", where)
    probabilities = torch.softmax(logits / 0.7, dim=0)[[3, 1, 6]]
    expected, observed = probabilities / probabilities.sum(), counts[[3, 1, 6]] / TOP_P_DRAWS
    if (observed - expected).abs().max() > TOP_P_TOLERANCE:
        raise Failed(f"tokens 3, 1, 6 are drawn with frequencies {[round(p, 3) for p in observed.tolist()]}, not "
                     f"{[round(p, 3) for p in expected.tolist()]}"
                     + (" (uniformly, not in proportion to their probabilities)"
                        if (observed - 1 / 3).abs().max() < TOP_P_TOLERANCE else ""), where)


# ----------------------------------------------------------------------------------------------
# Part 1: the notebook


@check("notebook.create_mask", "create_mask(sequences, pad_id) returns a (B, T) bool tensor, True "
       "exactly at padding")
def check_create_mask(sub):
    create_mask = sub.notebook_get("create_mask")
    sequences = torch.tensor([[2, 9, 7, 0, 0], [2, 5, 0, 0, 0], [2, 4, 6, 8, 3]])
    for pad_id in (0, 1):
        ids = sequences if pad_id == 0 else sequences.masked_fill(sequences == 0, 1)
        mask = create_mask(ids, pad_id)
        expected = ids == pad_id
        if not torch.is_tensor(mask) or mask.dtype != torch.bool or not torch.equal(mask, expected):
            raise Failed(f"got {mask!r}, expected {expected.tolist()}", f"sequences {ids.tolist()}, pad_id {pad_id}")


@check("notebook.attention", "MultiheadAttention(dim, num_heads)(query, key, value, key_padding_mask) "
       "equals torch.nn.MultiheadAttention carrying the same weights (query, key, value, out_proj), with "
       "and without padding; padded keys get no attention")
def check_notebook_attention(sub):
    Attention = sub.notebook_get("MultiheadAttention")
    torch.manual_seed(5)
    ours = build(Attention, "MultiheadAttention(dim, num_heads)", 12, 3).eval()
    reference = attention_reference(ours, 12, 3)
    x = torch.randn(3, 7, 12)
    lengths = [7, 4, 1]
    faults = Faults()
    # Called as the template's EncoderBlock calls it: with a padding mask, all False when nothing is padded.
    for label, mask in (("no padding (a mask of all False)", torch.zeros(3, 7, dtype=torch.bool)),
                        (f"padding after lengths {lengths}", torch.arange(7)[None, :] >= torch.tensor(lengths)[:, None])):
        with torch.no_grad():
            got = ours(x, x, x, mask)
            got = got[0] if isinstance(got, tuple) else got
            expected = reference(x, x, x, key_padding_mask=mask, need_weights=False)[0]
        if not close(got, expected):
            difference = float((got - expected).abs().nan_to_num(float("inf")).max())
            faults.add(f"equal to torch.nn.MultiheadAttention with {label.split(' (')[0]}",
                       f"the output differs from torch.nn.MultiheadAttention by up to {difference:.3g}",
                       f"MultiheadAttention(12, 3), x of shape (3, 7, 12), {label}")
    faults.raise_if_any()


NEUTRAL = {"dropout": 0.0, "dropout_p": 0.0, "p": 0.0, "drop": 0.0, "attn_dropout": 0.0, "dropout_rate": 0.0,
           "bias": True, "batch_first": True}  # constructor parameters beyond the template's, and a harmless value


def build(Class, template, *args):
    """Class(*args) as the template calls it (`template`: its signature, "MultiheadAttention(dim,
    num_heads)"); a required parameter beyond those that has a neutral value (a dropout
    probability: 0) is filled, any other is a check that cannot run, said plainly."""
    import inspect

    try:
        parameters = list(inspect.signature(Class).parameters.values())
    except (TypeError, ValueError):  # no signature to read: call it as the template does
        return Class(*args)
    extra = {}
    for parameter in parameters[len(args):]:
        if parameter.default is not inspect.Parameter.empty or parameter.kind in (
                inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if parameter.name not in NEUTRAL:
            shown = ", ".join(p.name for p in parameters)
            raise CheckCouldNotRun(f"{Class.__name__}({shown}) needs {parameter.name!r} beyond the template's "
                                   f"signature {template}, and the check cannot tell what to pass; give it a "
                                   f"default value")
        extra[parameter.name] = NEUTRAL[parameter.name]
    return Class(*args, **extra)


def attention_reference(ours, dim, heads):
    """torch.nn.MultiheadAttention carrying the weights of the student's attention; a bias the
    student's layers do not have is zero there (the same as none)."""
    layers = [getattr(ours, name, None) for name in ("query", "key", "value", "out_proj")]
    missing = [n for n, layer in zip(("query", "key", "value", "out_proj"), layers) if not isinstance(layer, nn.Linear)]
    if missing:
        raise MissingCode(f"MultiheadAttention needs nn.Linear layers named query, key, value and out_proj, as "
                          f"the template names them; it has no {', '.join(missing)}")
    reference = nn.MultiheadAttention(dim, heads, batch_first=True).eval()

    def bias(layer):
        return layer.bias if layer.bias is not None else torch.zeros(layer.out_features)

    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([layer.weight for layer in layers[:3]]))
        reference.in_proj_bias.copy_(torch.cat([bias(layer) for layer in layers[:3]]))
        reference.out_proj.weight.copy_(layers[3].weight)
        reference.out_proj.bias.copy_(bias(layers[3]))
    return reference


FORBIDDEN = ("MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer",
             "multi_head_attention_forward")


@check("notebook.own_attention", "Part 1's attention is written from scratch: the notebook's classes and "
       "functions use no torch.nn.MultiheadAttention, nn.TransformerEncoder(Layer) or "
       "F.multi_head_attention_forward (a test cell may compare against them)")
def check_own_attention(sub):
    if not sub.notebook:
        raise Skipped("no Part 1 notebook given")
    trees = []
    for number, source in enumerate(code_cells(sub.notebook)):
        try:
            trees.append((number, source, ast.parse(source)))
        except SyntaxError:
            continue
    imported = {alias.asname or alias.name: alias.name for _, _, tree in trees for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) for alias in node.names if alias.name in FORBIDDEN}
    for number, source, tree in trees:
        for definition in (n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))):
            for node in ast.walk(definition):
                used = (node.attr if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN else
                        imported.get(node.id) if isinstance(node, ast.Name) else None)
                if used:
                    line = source.splitlines()[node.lineno - 1].strip()
                    raise Failed(f"{definition.name} (code cell {number}) uses {used}: {line}",
                                 f"the notebook's code cell {number}")


@check("notebook.encoder_block", "EncoderBlock follows Figure 2 (pre-norm): s = x + Dropout(MHA(LN1(x))), "
       "out = s + MLP(LN2(s)), MLP = Linear(d, 4d), GELU, Dropout, Linear(4d, d), Dropout")
def check_encoder_block(sub):
    EncoderBlock = sub.notebook_get("EncoderBlock")
    Attention = sub.notebook_get("MultiheadAttention")
    d, T = 12, 6
    torch.manual_seed(6)
    block = build(EncoderBlock, "EncoderBlock(dim, num_heads, dropout=0.1)", d, 3).eval()
    attention, norms, linears = block_parts(block, Attention, d, figure=2)
    x = torch.randn(2, T, d)
    mask = torch.arange(T)[None, :] >= torch.tensor([T, 4])[:, None]
    where = f"EncoderBlock({d}, 3) in eval mode, x of shape (2, {T}, {d}), padding after lengths [{T}, 4]"
    with torch.no_grad():
        got = block(x, mask=mask)

    def mha(h):
        out = attention(h, h, h, mask)
        return out[0] if isinstance(out, tuple) else out

    layout = which_layout(x, mha, norms, linears, got)
    if layout == "post-norm":
        raise Failed("the block is post-norm, LN(x + MHA(x)); Figure 2 normalises first: "
                     "s = x + MHA(LN1(x)), out = s + MLP(LN2(s))", where)
    if layout != "pre-norm":
        raise Failed("the output is not Figure 2's s + MLP(LN2(s)) with s = x + MHA(LN1(x))", where)


@check("notebook.positional_encoding", "PositionalEncoding(embed_size, max_len) adds the sinusoidal "
       "table of the paper (sin at even, cos at odd dimensions, 10000^(2i/d)), built without loops "
       "and stored with register_buffer")
def check_notebook_positional_encoding(sub):
    check_sinusoid(sub.notebook_get("PositionalEncoding"), sub.ref.sinusoidal_table)


def word_tokenizer(sub):
    """A word-level tokenizer as the template trains it ([PAD]=0, [UNK]=1, [CLS]=2)."""
    texts = ["a great film i loved it", "a boring film i hated it", "the plot was great"] * 5
    return sub.ref.notebook.train_word_tokenizer(texts, vocab_size=100, min_frequency=1)


@check("notebook.dataset", "IMDBDataset(texts, labels, tokenizer, max_length, pad_idx, cls_idx)[i] is a "
       "tuple (ids, label): ids of length max_length, [CLS] first, then the review's ids, padded with "
       "[PAD] or truncated")
def check_imdb_dataset(sub):
    IMDBDataset = sub.notebook_get("IMDBDataset")
    tokenizer = word_tokenizer(sub)
    texts = ["a great film", "the plot was great i loved it a great great film"]
    dataset = IMDBDataset(texts, [1, 0], tokenizer, 8, 0, 2)
    for i, text in enumerate(texts):
        where = f"review {text!r}, max_length 8, pad_idx 0, cls_idx 2"
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise Failed(f"an item is {type(item).__name__}, not a tuple (ids, label)", where)
        ids, label = item
        words = tokenizer.encode(text).ids
        expected = ([2] + words + [0] * 8)[:8]
        if not torch.is_tensor(ids) or ids.tolist() != expected:
            raise Failed(f"ids are {ids!r}, expected {expected}", where)
        if int(label) != [1, 0][i]:
            raise Failed(f"the label is {label!r}, not {[1, 0][i]}", where)


@check("notebook.classify_review", "classify_review(review, model, tokenizer, pad_idx, cls_idx, "
       "max_length) returns (sentiment, probability) with the probability in [0, 1], in eval mode "
       "(the same review gives the same answer twice)")
def check_classify_review(sub):
    classify_review = sub.notebook_get("classify_review")
    SentimentTransformer = sub.notebook_get("SentimentTransformer")
    tokenizer = word_tokenizer(sub)
    torch.manual_seed(7)
    model = SentimentTransformer(tokenizer.get_vocab_size(), 16, 12, 3, 1, 0, dropout=0.5)
    review = "A great film, I loved it!"
    where = f"review {review!r}, an untrained SentimentTransformer (dropout 0.5) left in training mode"
    answers = [classify_review(review, model.train(), tokenizer, 0, 2, 16) for _ in range(3)]
    first = answers[0]
    if not isinstance(first, (tuple, list)) or len(first) != 2:
        raise Failed(f"classify_review returns {first!r}, not (sentiment, probability)", where)
    probability = float(first[1])
    if not 0.0 <= probability <= 1.0:
        raise Failed(f"the probability is {probability}", where)
    if any(float(a[1]) != probability for a in answers):
        raise Failed(f"the same review gives {[round(float(a[1]), 4) for a in answers]}: call model.eval() "
                     "so dropout is off", where)
