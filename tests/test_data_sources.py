"""support/data_sources.py: every kind of source loads; every bad source gives a clear error."""

import csv
import gzip
import json

import pytest

from support.data_sources import DataError, load_qa_pairs
from helpers import ROOT, write_jsonl

ROWS = [{"question": "what is 1 plus 1?", "answer": "2."},
        {"question": "Café?", "answer": "Ünïcode answer 😀"}]


def write_csv(path, rows, fieldnames=("question", "answer")):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def assert_rows(pairs):
    assert pairs.questions == [r["question"] for r in ROWS]
    assert pairs.answers == [r["answer"] for r in ROWS]


def test_jsonl(tmp_path):
    assert_rows(load_qa_pairs(write_jsonl(tmp_path / "a.jsonl", ROWS)))


def test_jsonl_gz(tmp_path):
    assert_rows(load_qa_pairs(write_jsonl(tmp_path / "a.jsonl.gz", ROWS)))


def test_csv(tmp_path):
    assert_rows(load_qa_pairs(write_csv(tmp_path / "a.csv", ROWS)))


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{**r, "extra": 1} for r in ROWS]), tmp_path / "a.parquet")
    assert_rows(load_qa_pairs(str(tmp_path / "a.parquet")))


def test_save_to_disk_dataset_and_datasetdict(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "single"))
    assert_rows(load_qa_pairs(str(tmp_path / "single")))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    assert_rows(load_qa_pairs(str(tmp_path / "dict"), "train"))
    with pytest.raises(DataError, match=r"has splits \['train'\], not 'test'"):
        load_qa_pairs(str(tmp_path / "dict"), "test")


def test_builtin_train_and_heldout_are_disjoint():
    train, heldout = load_qa_pairs("builtin", "train"), load_qa_pairs("builtin", "heldout")
    assert len(train) > 1000 and len(heldout) > 100
    assert not set(train.questions) & set(heldout.questions)


def test_builtin_unknown_split():
    with pytest.raises(DataError, match="heldout"):
        load_qa_pairs("builtin", "validation")


def test_rows_without_question_are_dropped_and_counted(tmp_path):
    rows = ROWS + [{"question": "  ", "answer": "x"}, {"question": None, "answer": "y"},
                   {"question": "q?", "answer": None}]
    pairs = load_qa_pairs(write_jsonl(tmp_path / "a.jsonl", rows))
    assert len(pairs) == 3 and pairs.dropped == 2 and pairs.answers[-1] == ""


def test_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nope.jsonl.gz")
    with pytest.raises(DataError, match=r"nope\.jsonl\.gz' does not exist"):
        load_qa_pairs(path)


def test_missing_column_lists_columns_found(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"needs columns \['question', 'answer'\] but has \['answer', 'prompt'\]"):
        load_qa_pairs(path)
    path = write_csv(tmp_path / "a.csv", [{"q": "x", "a": "y"}], fieldnames=("q", "a"))
    with pytest.raises(DataError, match=r"a\.csv' needs columns .* but has \['a', 'q'\]"):
        load_qa_pairs(path)


@pytest.mark.parametrize("name, content", [("empty.jsonl", ""), ("blank.jsonl", "\n\n"),
                                           ("empty.csv", "question,answer\n")])
def test_empty_file(tmp_path, name, content):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="has no usable rows"):
        load_qa_pairs(str(tmp_path / name))


def test_non_utf8_bytes(tmp_path):
    (tmp_path / "bad.jsonl").write_bytes(b'{"question": "caf\xe9?", "answer": "x"}\n')
    with pytest.raises(DataError, match="is not valid UTF-8"):
        load_qa_pairs(str(tmp_path / "bad.jsonl"))


def test_invalid_json_line_names_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"question": "a", "answer": "b"}\n{"question": \n',
                                        encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_qa_pairs(str(tmp_path / "bad.jsonl"))


def test_truncated_gzip(tmp_path):
    data = gzip.compress(("".join(json.dumps(r) + "\n" for r in ROWS) * 100).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read"):
        load_qa_pairs(str(tmp_path / "cut.jsonl.gz"))


def test_unsupported_file_type(tmp_path):
    (tmp_path / "pairs.txt").write_text("q a\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported type"):
        load_qa_pairs(str(tmp_path / "pairs.txt"))


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    with pytest.raises(DataError, match="is not a Hugging Face save_to_disk folder"):
        load_qa_pairs(str(tmp_path))


def test_unreachable_hub_dataset_suggests_local_files():
    # conftest sets HF_HUB_OFFLINE, as on a machine without internet.
    with pytest.raises(DataError, match=r"could not load Hugging Face dataset 'someone/missing'.*--dataset builtin"):
        load_qa_pairs("someone/missing")


def test_real_stand_in_corpus_loads_if_present():
    import os

    path = os.path.join(ROOT, "..", "shared", "data", "qa", "train.jsonl.gz")
    if not os.path.exists(path):
        pytest.skip("../shared/data is not beside this checkout")
    pairs = load_qa_pairs(path)
    assert len(pairs) == 30758 and pairs.dropped == 0
