"""The self-check (python -m tools.check): every check passes on this project, and catches planted mistakes.

Each mutant is a copy of this project's own files with one mistake written in (the mistakes the
assignment warns about and that public solutions made); the test names the check that must fail and
words its message must hold. All mutant folders are checked in one run of the checker (--json).
"""

import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from helpers import ROOT

PART2 = ["config.py", "tokenizer.py", "dataset.py", "model.py", "inference.py", "utils.py"]
NOTEBOOK = "imdb_sentiment_encoder.ipynb"

# name: (file, [(this project's text, the mistake)], {check that must fail: words of its message})
MUTANTS = {
    "end-marked-as-padding": ("dataset.py", [('"key_padding_mask": ~real[:, :-1]', '"key_padding_mask": ~real[:, 1:]')],
                              {"dataset.layout": "real token as padding"}),
    "end-dropped-when-truncating": ("dataset.py", [("answer_ids[: budget - 2 - len(question_ids)]",
                                                    "answer_ids[: budget - 1 - len(question_ids)]")],
                                    {"dataset.truncation": "[END] is not among the targets"}),
    "sep-dropped-for-long-question": ("dataset.py", [("keep = budget - 2 - min(len(answer_ids), 1)", "keep = budget")],
                                      {"dataset.truncation": "[SEP] 0 times"}),
    "pad-id-targets": ("dataset.py", [("sequences[:, 1:].masked_fill(~real[:, 1:], IGNORE_INDEX)", "sequences[:, 1:]")],
                       {"dataset.layout": "hold the [PAD] id"}),
    "tensors-one-short": ("dataset.py", [("width=self.max_length)", "width=self.max_length - 1)")],
                          {"dataset.items": "shape (23,), not (24,)"}),
    "keys-out-of-order": ("dataset.py", [("value[0] for key, value in item.items()}",
                                          "value[0] for key, value in reversed(item.items())}")],
                          {"dataset.items": "the keys are ['key_padding_mask'"}),
    "mask-not-bool": ("dataset.py", [("value[0] for key, value in item.items()}", "value[0].long() for key, value in item.items()}")],
                      {"dataset.items": "key_padding_mask has dtype torch.int64"}),
    "float-causal-mask": ("model.py", [("diagonal=1).bool()", "diagonal=1)")],
                          {"model.causal_mask": "not torch.bool", "model.no_future_leak": "a padding mask of all False"}),
    "mask-below-diagonal": ("model.py", [("diagonal=1).bool()", "diagonal=1).bool().T")],
                            {"model.causal_mask": "expected", "model.no_future_leak": "sees the future"}),
    "sin-cos-swapped": ("model.py", [("table[:, 0::2] = torch.sin(angles)", "table[:, 0::2] = torch.cos(angles)"),
                                     ("table[:, 1::2] = torch.cos(angles", "table[:, 1::2] = torch.sin(angles")],
                        {"model.positional_encoding": "sin and cos swapped"}),
    "other-frequencies": ("model.py", [("(-math.log(10000.0) / embed_size)", "(-math.log(10000.0) / (2 * embed_size))")],
                          {"model.positional_encoding": "the formula gives"}),
    "encoding-is-a-parameter": ("model.py", [('self.register_buffer("positional_encoding", sinusoidal_table(max_len, embed_size))',
                                              "self.positional_encoding = nn.Parameter(sinusoidal_table(max_len, embed_size))")],
                                {"model.positional_encoding": "is a parameter"}),
    "fc-out-without-bias": ("model.py", [("nn.Linear(self.embed_size, self.vocab_size)",
                                          "nn.Linear(self.embed_size, self.vocab_size, bias=False)")],
                            {"model.parameters": "36,241,920 parameters (-20,000)"}),
    "pre-norm-block": ("model.py", [("h = self.norm2(x + self.dropout1(attended))", "h = x + self.dropout1(attended)"),
                                    ("return h + self.dropout2(self.ffn(h))", "return h + self.dropout2(self.ffn(self.norm2(h)))")],
                       {"model.block_layout": "standard pre-norm layout"}),
    "not-batch-first": ("model.py", [("nn.MultiheadAttention(embed_size, num_heads, batch_first=True)",
                                      "nn.MultiheadAttention(embed_size, num_heads)")],
                        {"model.block_layout": "batch_first=True"}),
    "greedy-returns-int": ("inference.py", [("return torch.argmax(logits, dim=-1, keepdim=True)",
                                             "return int(torch.argmax(logits))")],
                           {"inference.greedy": "not a one-element tensor"}),
    "top-p-below-p": ("inference.py", [("mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs",
                                        "mass_before = torch.cumsum(sorted_probs, dim=-1)")],
                      {"inference.top_p": "the token that crosses p must be kept"}),
    "top-p-uniform": ("inference.py", [("torch.multinomial(probs, 1, generator=generator)",
                                        "torch.multinomial(torch.ones_like(probs), 1, generator=generator)")],
                      {"inference.top_p": "uniformly"}),
    "top-p-without-temperature": ("inference.py", [("torch.softmax(logits / temperature, dim=-1)",
                                                    "torch.softmax(logits, dim=-1)")],
                                  {"inference.top_p": "the draws hold the tokens [1, 3, 6, 7]"}),
    # The checker survives the student's code: it raises on import, never returns, lacks a function.
    "inference-raises-on-import": ("inference.py", [('"""Decoding', 'raise RuntimeError("broken on purpose")\n"""Decoding')],
                                   {"inference.greedy": "RuntimeError: broken on purpose (at inference.py line 1"}),
    "greedy-never-returns": ("inference.py", [("    return torch.argmax(logits, dim=-1, keepdim=True)",
                                               "    while True:\n        pass")],
                             {"inference.greedy": "did not finish within"}),
    "top-p-missing": ("inference.py", [("def top_p_sampling(", "def top_p_sample(")],
                      {"inference.top_p": "inference.py has no top_p_sampling"}),
    # Part 1: the notebook
    "create-mask-inverted": (NOTEBOOK, [("return sequences == pad_id", "return sequences != pad_id")],
                             {"notebook.create_mask": "expected"}),
    "attention-ignores-padding": (NOTEBOOK, [("if key_padding_mask is not None:", "if False:")],
                                  {"notebook.attention": "padding after lengths [7, 4, 1]"}),
    "attention-unscaled": (NOTEBOOK, [("q @ k.transpose(-2, -1) / math.sqrt(D)", "q @ k.transpose(-2, -1)")],
                           {"notebook.attention": "differs from torch.nn.MultiheadAttention"}),
    "torch-attention-in-part-1": (NOTEBOOK, [("self.attention = MultiheadAttention(dim, num_heads)",
                                              "self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)")],
                                  {"notebook.own_attention": "EncoderBlock (code cell 13) uses MultiheadAttention"}),
    "torch-attention-imported-by-name": (NOTEBOOK, [("import torch.nn as nn\n", "import torch.nn as nn\nfrom torch.nn import MultiheadAttention as TorchAttention\n"),
                                                    ("self.attention = MultiheadAttention(dim, num_heads)",
                                                     "self.attention = TorchAttention(dim, num_heads, batch_first=True)")],
                                         {"notebook.own_attention": "uses MultiheadAttention: self.attention = TorchAttention("}),
    "encoder-post-norm": (NOTEBOOK, [("h = self.norm1(x)  # (B, T, C)", "h = x"),
                                     ("return x + self.mlp(self.norm2(x))",
                                      "x = self.norm1(x)\n        return self.norm2(x + self.mlp(x))")],
                          {"notebook.encoder_block": "post-norm"}),
    "notebook-encoding-is-a-parameter": (NOTEBOOK, [('self.register_buffer("pe", pe)', "self.pe = nn.Parameter(pe)")],
                                         {"notebook.positional_encoding": "is a parameter"}),
    "reviews-without-cls": (NOTEBOOK, [("token_ids = [[cls_idx] + truncate(e.ids, max_length - 1, head)",
                                        "token_ids = [truncate(e.ids, max_length, head)")],
                            {"notebook.dataset": "expected [2,"}),
    "classify-in-training-mode": (NOTEBOOK, [("    model.eval()\n    sequence, mask = encode_review(",
                                              "    sequence, mask = encode_review(")],
                                  {"notebook.classify_review": "call model.eval()"}),
}


BROKEN = ["inference-raises-on-import", "greedy-never-returns", "top-p-missing"]


def make_mutant(folder, file, replacements):
    """Copy this project's Part 2 files (or its notebook) into `folder` with the mistake written in."""
    folder.mkdir()
    for name in ([NOTEBOOK] if file == NOTEBOOK else PART2):
        shutil.copy(os.path.join(ROOT, name), folder / name)
    if file == NOTEBOOK:
        notebook = nbformat.read(folder / NOTEBOOK, as_version=4)
        for old, new in replacements:
            cells = [c for c in notebook.cells if c.cell_type == "code" and old in c.source]
            assert len(cells) == 1 and cells[0].source.count(old) == 1, f"{old!r} is not in exactly one place"
            cells[0].source = cells[0].source.replace(old, new)
        nbformat.write(notebook, folder / NOTEBOOK)
        return
    text = (folder / file).read_text()
    for old, new in replacements:
        assert text.count(old) == 1, f"{old!r} is not in {file} exactly once: update the mutant"
        text = text.replace(old, new)
    (folder / file).write_text(text)


def run_checker(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tools.check", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env=dict(os.environ, **(env or {})))


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """{folder name: report}: the checker run once over this project and every mutant."""
    base = tmp_path_factory.mktemp("mutants")
    for name, (file, replacements, _) in MUTANTS.items():
        make_mutant(base / name, file, replacements)
    # One run for this project and the broken-code mutants (every check), one per group of checks
    # for the other mutants (only the checks of the file they change), to keep the test short.
    groups = {"all": ["this project", *BROKEN]}
    for name, (_, _, expected) in MUTANTS.items():
        if name not in BROKEN:
            groups.setdefault(next(iter(expected)).split(".")[0] + ".", []).append(name)
    reports = {}
    for only, names in groups.items():
        folders = [ROOT if n == "this project" else base / n for n in names]
        result = run_checker(*folders, "--json", "--timeout", "10", *(["--only", only] if only != "all" else []))
        assert result.returncode == 1, result.stderr[-2000:]
        reports.update(zip(names, json.loads(result.stdout)))
    return reports


def statuses(report):
    return {r["check"]: r["status"] for r in report["results"]}


def test_this_project_passes_every_check(reports):
    report = reports["this project"]
    assert report["notebook"] == os.path.join(ROOT, NOTEBOOK) and report["part2"] == ROOT
    assert set(statuses(report).values()) == {"pass"}, [r for r in report["results"] if r["status"] != "pass"]
    assert len(report["results"]) == 18


def test_a_test_cell_may_compare_part_1_attention_with_pytorchs(tmp_path):
    """Only the notebook's classes and functions must avoid torch's attention; a cell that checks
    the student's attention against nn.MultiheadAttention is allowed."""
    make_mutant(tmp_path / "student", NOTEBOOK, [])
    notebook = nbformat.read(tmp_path / "student" / NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("reference = nn.MultiheadAttention(8, 2, batch_first=True)"))
    nbformat.write(notebook, tmp_path / "student" / NOTEBOOK)
    result = run_checker(tmp_path / "student", "--only", "own_attention", "--json")
    assert json.loads(result.stdout)[0]["results"][0]["status"] == "pass", result.stdout


@pytest.mark.parametrize("mutant", MUTANTS)
def test_a_planted_mistake_is_caught_by_its_check(reports, mutant):
    report = reports[mutant]
    by_check = {r["check"]: r for r in report["results"]}
    for check, words in MUTANTS[mutant][2].items():
        result = by_check[check]
        assert result["status"] in ("fail", "error"), result
        assert words in result["got"] + " " + result["first_input"], result
        assert result["requires"] and (result["first_input"] or result["status"] == "error"), result
    assert not report["passed"]


@pytest.mark.parametrize("mutant", BROKEN)
def test_broken_student_code_stops_only_its_own_checks(reports, mutant):
    """An import error, an endless loop or a missing function: an error line for that check, and
    every other check still runs (and passes, since the rest of the files are this project's)."""
    broken = set(MUTANTS[mutant][2])
    for check, status in statuses(reports[mutant]).items():
        if check in broken:
            assert status == "error"
        elif check.startswith("inference."):
            assert status in ("error", "pass")  # the other sampling check shares the file
        else:
            assert status == ("skipped" if check.startswith("notebook.") else "pass"), (check, status)


def test_the_report_card_says_what_is_required_what_happened_and_on_which_input(tmp_path):
    make_mutant(tmp_path / "student", *MUTANTS["top-p-below-p"][:2])
    result = run_checker(tmp_path / "student", "--only", "inference")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("  pass   inference.greedy") for line in lines), result.stdout
    failed = lines.index(next(line for line in lines if line.startswith("  FAIL   inference.top_p")))
    assert lines[failed + 1].strip().startswith("requires: top_p_sampling(logits, p=0.95")
    assert lines[failed + 2].strip().startswith("got:      the draws hold the tokens [1, 3]")
    assert lines[failed + 3].strip().startswith("input:    logits [-1.0, 2.0, -3.0, 3.0")
    assert "1 passed, 1 failed, 0 errors, 0 skipped" in result.stdout


def test_without_fork_each_check_runs_in_a_fresh_interpreter(tmp_path):
    """The path Windows and macOS take (a new Python per check), hang included."""
    make_mutant(tmp_path / "hangs", *MUTANTS["greedy-never-returns"][:2])
    result = run_checker(ROOT, tmp_path / "hangs", "--only", "inference.greedy", "--json", "--timeout", "12",
                         env={"INF265_CHECK_NO_FORK": "1"})
    ours, hangs = json.loads(result.stdout)
    assert ours["results"][0]["status"] == "pass" and ours["passed"]
    assert hangs["results"][0]["status"] == "error" and "did not finish within 12 s" in hangs["results"][0]["got"]
    assert result.returncode == 1


def test_a_folder_without_assignment_files_is_an_error(tmp_path):
    """Nothing of this assignment: one entry saying so and what was looked for, exit 1 (it used to
    print 18 skipped checks)."""
    result = run_checker(tmp_path)
    assert result.returncode == 1
    assert "no file of INF265 Project 3 found in" in result.stdout and "checks skipped" not in result.stdout


def test_the_course_layout_is_found(tmp_path):
    """The course repository's layout: Part 1 and Part 2 in their own subfolders, one submission."""
    from tools.check.__main__ import find_submissions

    def found(path):
        (submission,) = find_submissions(path)
        return submission.part2, submission.notebook

    part1, part2 = tmp_path / "01_encoder_sentiment_classifier", tmp_path / "02_decoder_chatbot"
    part1.mkdir()
    part2.mkdir()
    shutil.copy(os.path.join(ROOT, NOTEBOOK), part1 / NOTEBOOK)
    for name in PART2:
        shutil.copy(os.path.join(ROOT, name), part2 / name)
    assert found(tmp_path) == (str(part2), str(part1 / NOTEBOOK))
    assert found(part1 / NOTEBOOK) == (None, str(part1 / NOTEBOOK))
    assert found(part2) == (str(part2), None)


def test_students_with_one_part_each_are_not_merged_and_links_are_followed(tmp_path):
    """alice gave only Part 2 and bob only a notebook of another name: two entries, each with its own
    files; a teacher's folder of links to the students' folders is searched too."""
    from tools.check.__main__ import find_submissions

    copy_project(tmp_path / "subs" / "alice", notebook=False)
    (tmp_path / "subs" / "bob").mkdir()
    shutil.copy(os.path.join(ROOT, NOTEBOOK), tmp_path / "subs" / "bob" / "mywork.ipynb")
    (tmp_path / "links").mkdir()
    for name in ("alice", "bob"):
        (tmp_path / "links" / name).symlink_to(tmp_path / "subs" / name)
    for folder in ("subs", "links"):
        found = {os.path.basename(f.path): (f.part2, f.notebook) for f in find_submissions(tmp_path / folder)}
        assert found == {"alice": (str(tmp_path / folder / "alice"), None),
                         "bob": (None, str(tmp_path / folder / "bob" / "mywork.ipynb"))}, found


def test_the_students_own_tokenizer_file_can_be_used(tmp_path):
    """--tokenizer: the QADataset checks run with the given tokenizer.json instead of their own."""
    from tools.check.checks import TOKENIZER_TEXTS
    from config import make_config
    from tokenizer import fit_tokenizer

    path = tmp_path / "tokenizer.json"
    fit_tokenizer(make_config("tiny"), TOKENIZER_TEXTS, vocab_size=600, min_frequency=1).save(str(path))
    result = run_checker(ROOT, "--only", "dataset.", "--tokenizer", path, "--json")
    assert result.returncode == 0, result.stdout[-2000:]
    assert [r["status"] for r in json.loads(result.stdout)[0]["results"]] == ["pass"] * 3
    assert run_checker(ROOT, "--tokenizer", tmp_path / "missing.json").returncode == 2  # argparse: no such file


# ----------------------------------------------------------------------------------------------
# Real submissions' cases, each reproduced in a folder of its own (written here, not copied)

def check_json(*args, env=None):
    result = run_checker(*args, "--json", env=env)
    assert result.stdout.strip().startswith("["), result.stderr[-2000:]
    return json.loads(result.stdout)


def result_of(report, check):
    return next(r for r in report["results"] if r["check"] == check)


def test_one_run_names_every_fault_a_check_sees(tmp_path):
    """[END] lost on a long answer and [SEP] lost on a long question: both named, in one run, each with
    its first input and how many inputs show it."""
    make_mutant(tmp_path / "student", "dataset.py",
                MUTANTS["end-dropped-when-truncating"][1] + MUTANTS["sep-dropped-for-long-question"][1])
    (report,) = check_json(tmp_path / "student", "--only", "dataset.truncation")
    result = result_of(report, "dataset.truncation")
    assert result["status"] == "fail"
    faults = {f["requirement"]: f for f in result["faults"]}
    assert "[END] is the last target" in faults and "[SEP] stays in, once" in faults, faults
    assert all(f["first_input"] and f["count"] >= 1 for f in faults.values())
    card = run_checker(tmp_path / "student", "--only", "dataset.truncation").stdout
    assert card.count("got:") >= 2 and "[SEP] 0 times" in card and "[END]" in card


NOTEBOOK_ATTENTION = {
    "no-bias": [("        self.query = nn.Linear(dim, dim)\n        self.key = nn.Linear(dim, dim)\n"
                 "        self.value = nn.Linear(dim, dim)\n        self.out_proj = nn.Linear(dim, dim)",
                 "        self.query = nn.Linear(dim, dim, bias=False)\n        self.key = nn.Linear(dim, dim, bias=False)\n"
                 "        self.value = nn.Linear(dim, dim, bias=False)\n        self.out_proj = nn.Linear(dim, dim, bias=False)")],
    "dropout-parameter": [("    def __init__(self, dim, num_heads):\n", "    def __init__(self, dim, num_heads, dropout):\n"),
                          ("        self.attention = MultiheadAttention(dim, num_heads)",
                           "        self.attention = MultiheadAttention(dim, num_heads, dropout)")],
    "mask-without-default": [("def forward(self, query, key, value, key_padding_mask=None, need_weights=False):",
                              "def forward(self, query, key, value, key_padding_mask, need_weights=False):"),
                             ("        if key_padding_mask is not None:\n", "        if True:\n")],
}


@pytest.mark.parametrize("variant", NOTEBOOK_ATTENTION)
def test_correct_attention_written_another_way_passes(tmp_path, variant):
    """Attention without biases, with a dropout parameter, or with key_padding_mask required: correct,
    so no ERROR (the checker builds its reference to match, and passes a real mask as the template does)."""
    make_mutant(tmp_path / "student", NOTEBOOK, NOTEBOOK_ATTENTION[variant])
    (report,) = check_json(tmp_path / "student", "--only", "notebook.attention", "--only", "encoder_block")
    assert {r["check"]: r["status"] for r in report["results"]} == {
        "notebook.attention": "pass", "notebook.encoder_block": "pass"}, report["results"]


def test_a_signature_the_checker_cannot_fill_is_not_the_students_error(tmp_path):
    make_mutant(tmp_path / "student", NOTEBOOK, [
        ("    def __init__(self, dim, num_heads):\n", "    def __init__(self, dim, num_heads, scale):\n"),
        ("        self.attention = MultiheadAttention(dim, num_heads)", "        self.attention = MultiheadAttention(dim, num_heads, 1.0)")])
    (report,) = check_json(tmp_path / "student", "--only", "notebook.attention")
    result = result_of(report, "notebook.attention")
    assert result["status"] == "not run" and result["got"].startswith("the check could not run: ")
    assert "'scale'" in result["got"] and "MultiheadAttention(dim, num_heads)" in result["got"]
    assert "could not run" in run_checker(tmp_path / "student", "--only", "notebook.attention").stdout


def test_an_error_in_a_notebook_cell_quotes_its_line(tmp_path):
    make_mutant(tmp_path / "student", NOTEBOOK, [
        ("        B, Tq, C = query.shape\n", "        B, Tq, C = query.shape\n        raise ValueError('attention not done')\n")])
    (report,) = check_json(tmp_path / "student", "--only", "notebook.attention")
    got = result_of(report, "notebook.attention")["got"]
    assert got.startswith("ValueError: attention not done (at imdb_sentiment_encoder.ipynb[cell ")
    assert got.endswith("raise ValueError('attention not done'))"), got


def test_a_pair_cut_one_token_short_is_explained_as_it_is(tmp_path):
    """[END] second-to-last and one [PAD] after it: [END] is trained; the words must say so."""
    make_mutant(tmp_path / "student", "dataset.py", [("    budget = max_len + 1\n", "    budget = max_len\n")])
    (report,) = check_json(tmp_path / "student", "--only", "dataset.truncation")
    result = result_of(report, "dataset.truncation")
    ends = [f for f in result["faults"] if f["requirement"] == "[END] is the last target"]
    assert ends and "followed by 1 [PAD]" in ends[0]["got"] and "[END] is trained" in ends[0]["got"], result
    assert "never learns to stop" not in result["got"]


def test_a_positional_table_built_in_a_method_is_checked_by_its_values(tmp_path):
    """No PositionalEncoding class: the table the model adds (what reaches its first block with the
    token embeddings zeroed) is compared with the paper's formula, and this one is off."""
    make_mutant(tmp_path / "student", "model.py", [
        ("class PositionalEncoding(nn.Module):", "class _TableModule(nn.Module):"),
        ("        self.pos_encoder = PositionalEncoding(self.embed_size, self.max_len)",
         "        self.register_buffer(\"pe\", self.table(self.max_len, self.embed_size))"),
        ("        x = self.dropout(self.pos_encoder(self.embedding(x), start))  # (B, T, C)",
         "        x = self.dropout(self.embedding(x) + self.pe[start:end])  # (B, T, C)"),
        ("    @staticmethod\n    def generate_causal_mask(seq_len):",
         "    @staticmethod\n    def table(max_len, d):\n"
         "        angles = torch.arange(max_len)[:, None] / 10000 ** (torch.arange(d)[None, :] / d)\n"
         "        return torch.where(torch.arange(d) % 2 == 0, angles.sin(), angles.cos() + 1)\n\n"
         "    @staticmethod\n    def generate_causal_mask(seq_len):")])
    (report,) = check_json(tmp_path / "student", "--only", "model.positional_encoding", "--only", "model.padding")
    result = result_of(report, "model.positional_encoding")
    assert result["status"] == "fail" and "differs from the paper's formula by up to" in result["got"], result
    assert "what reaches its first block" in result["first_input"]
    assert result_of(report, "model.padding")["status"] == "pass"


# --- teacher mode ---------------------------------------------------------------------------------

def copy_project(folder, part2=True, notebook=True):
    folder.mkdir(parents=True)
    for name in (PART2 if part2 else []) + ([NOTEBOOK] if notebook else []):
        shutil.copy(os.path.join(ROOT, name), folder / name)
    return folder


def test_a_path_that_is_not_a_submission_gets_its_own_entry_and_the_rest_are_checked(tmp_path):
    report_pdf = tmp_path / "report.pdf"
    report_pdf.write_bytes(b"%PDF-1.4 a report")
    reports = check_json(ROOT, report_pdf, tmp_path / "nonexistent", "--only", "inference.greedy")
    assert [r["path"] for r in reports] == [ROOT, str(report_pdf), str(tmp_path / "nonexistent")]
    assert reports[0]["passed"] and result_of(reports[0], "inference.greedy")["status"] == "pass"
    assert reports[1]["problem"].startswith("not a submission:") and not reports[1]["passed"]
    assert reports[2]["problem"].startswith("no such file or folder") and "a submission folder holds" in reports[2]["problem"]


def test_a_folder_of_students_is_split_never_mixed(tmp_path):
    copy_project(tmp_path / "subs" / "alice")
    copy_project(tmp_path / "subs" / "bob", notebook=False)
    reports = check_json(tmp_path / "subs", "--only", "inference.greedy", "--only", "notebook.create_mask")
    by_path = {os.path.basename(r["path"]): r for r in reports}
    assert set(by_path) == {"alice", "bob"}
    assert by_path["alice"]["notebook"] == str(tmp_path / "subs" / "alice" / NOTEBOOK)
    assert by_path["bob"]["notebook"] is None and by_path["bob"]["part2"] == str(tmp_path / "subs" / "bob")
    assert result_of(by_path["bob"], "notebook.create_mask")["status"] == "skipped"


def test_the_course_layout_is_found_deep_and_two_candidates_are_refused(tmp_path):
    repo = tmp_path / "repo"
    copy_project(repo / "assignments" / "src" / "project_3" / "01_encoder_sentiment_classifier", part2=False)
    copy_project(repo / "assignments" / "src" / "project_3" / "02_decoder_chatbot", notebook=False)
    copy_project(repo / ".venv" / "lib" / "site-packages" / "somepackage")  # never looked into
    (report,) = check_json(repo, "--only", "inference.greedy")
    assert report["part2"].endswith(os.path.join("project_3", "02_decoder_chatbot"))
    assert report["notebook"].endswith(os.path.join("01_encoder_sentiment_classifier", NOTEBOOK))
    copy_project(repo / "assignments" / "src" / "project_3" / "02_decoder_chatbot" / "backup", notebook=False)
    (report,) = check_json(repo, "--only", "inference.greedy")
    assert "holds 2 Part 2 folders that could each be the submission" in report["problem"] and not report["results"]


def test_a_folder_of_another_assignment_says_nothing_of_this_one_was_found(tmp_path):
    other = tmp_path / "project_3_2024"
    other.mkdir()
    for name, text in (("config.py", "hidden_size = 128\n"), ("model.py", "class LSTMModel:\n    pass\n"),
                       ("utils.py", "def accuracy():\n    pass\n"), ("train.py", "print('training')\n")):
        (other / name).write_text(text)
    result = run_checker(other)
    assert result.returncode == 1
    assert "no file of INF265 Project 3 found in" in result.stdout and "looked for" in result.stdout


def test_numbers_are_tidy_and_words_agree(tmp_path):
    make_mutant(tmp_path / "student", *MUTANTS["top-p-uniform"][:2])
    (report,) = check_json(tmp_path / "student", "--only", "inference.top_p")
    got = result_of(report, "inference.top_p")["got"]
    assert "frequencies [" in got and not re.search(r"\d\.\d{4,}", got), got
    card = run_checker(copy_project(tmp_path / "part2-only", notebook=False), "--only", "notebook.dataset").stdout
    assert "Part 1: 1 check skipped" in card
    (report,) = check_json(ROOT, "--only", "dataset")
    assert [r["check"] for r in report["results"]] == ["dataset.items", "dataset.layout", "dataset.truncation"]


def test_an_exception_in_the_checkers_own_code_is_never_the_students_when_checking_this_project():
    """Checking this project itself (make check), the checker's frames in support/ and tools/ lie
    under the folder checked; they still do not count as the student's code."""
    from support.probes import expected_num_params
    from tools.check.__main__ import Task, where_raised

    try:
        expected_num_params(None)  # raises in support/probes.py
    except AttributeError as exc:
        raised = exc.with_traceback(exc.__traceback__.tb_next)  # without this test's own frame
    assert where_raised(raised, Task("model.parameters", ROOT, None, None)) is None
    from model import TransformerModel

    try:
        TransformerModel.generate_causal_mask("four")  # raises in model.py, a file of the folder checked
    except TypeError as exc:
        raised = exc.with_traceback(exc.__traceback__.tb_next)
    assert where_raised(raised, Task("model.parameters", ROOT, None, None)).startswith(" (at model.py line ")
