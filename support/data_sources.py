"""Where question/answer text comes from: one function, `load_qa_pairs(source, split)`.

`source` (config.dataset) may be
    builtin                     the corpus this project generates itself (support/corpus.py), offline;
                                split "train" or "heldout"
    path/to/pairs.jsonl[.gz]    JSON lines with "question" and "answer" fields
    path/to/pairs.parquet       a Parquet file with columns question, answer
    path/to/pairs.csv           a CSV file with a header row naming question, answer
    path/to/folder              a Hugging Face `save_to_disk` folder (Dataset or DatasetDict)
    odinhg/gooaq-subset         any Hugging Face Hub dataset name (needs internet)

Example: load_qa_pairs("builtin", "train").questions[0] -> "which is larger, 37 or 52?"
"""

import csv
import gzip
import json
import os
from dataclasses import dataclass, field

from support import corpus
from support.errors import UserError

COLUMNS = ("question", "answer")
LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".csv")


class DataError(UserError):
    """A data source that cannot be used as it is; the message names the path and the fix."""


@dataclass
class QAPairs:
    questions: list
    answers: list
    description: str
    dropped: int = field(default=0)  # rows without a question

    def __len__(self):
        return len(self.questions)


def load_qa_pairs(source, split="train"):
    """Load question/answer pairs from `source` (see the module docstring)."""
    if source == corpus.BUILTIN_NAME:
        try:
            rows = corpus.generate(split)
        except ValueError as exc:
            raise DataError(f"built-in corpus: {exc}") from None
        return _clean([r["question"] for r in rows], [r["answer"] for r in rows],
                      f"built-in generated corpus, split {split!r}")
    if os.path.isdir(source):
        return _load_saved_folder(source, split)
    if os.path.isfile(source):
        return _load_file(source)
    if source.endswith(LOCAL_SUFFIXES) or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise DataError(f"data file {source!r} does not exist (working folder: {os.getcwd()}); "
                        "check the path given to --dataset")
    return _load_hub(source, split)


def _load_file(path):
    lower = path.lower()
    if lower.endswith((".jsonl", ".jsonl.gz")):
        questions, answers = _read_jsonl(path)
    elif lower.endswith(".csv"):
        questions, answers = _read_csv(path)
    elif lower.endswith(".parquet"):
        questions, answers = _read_parquet(path)
    else:
        raise DataError(f"data file {path!r} has an unsupported type; use one of "
                        f"{', '.join(LOCAL_SUFFIXES)} or a save_to_disk folder")
    return _clean(questions, answers, f"local file {path}", path)


def _missing_columns_error(path, found):
    return DataError(f"{path!r} needs columns {list(COLUMNS)} but has {sorted(found)}; "
                     "rename the columns or convert the file")


def _read_jsonl(path):
    opener = gzip.open if path.lower().endswith(".gz") else open
    questions, answers = [], []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path!r} line {line_number} is not valid JSON ({exc.msg}); "
                                    "each line must be one JSON object") from None
                if not isinstance(row, dict) or not all(c in row for c in COLUMNS):
                    found = row.keys() if isinstance(row, dict) else [type(row).__name__]
                    raise DataError(f"line {line_number}: "
                                    f"{_missing_columns_error(path, found)}")
                questions.append(row["question"])
                answers.append(row["answer"])
    except UnicodeDecodeError as exc:
        raise DataError(f"{path!r} is not valid UTF-8 text (byte {exc.start} of a line: "
                        f"{exc.reason}); re-save it as UTF-8") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path!r}: {exc}") from None
    return questions, answers


def _read_csv(path):
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            found = reader.fieldnames or []
            if not all(c in found for c in COLUMNS):
                raise _missing_columns_error(path, found)
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path!r} is not valid UTF-8 text ({exc.reason}); re-save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path!r} is not a readable CSV file: {exc}") from None
    return [r["question"] for r in rows], [r["answer"] for r in rows]


def _read_parquet(path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path!r} is not a readable Parquet file: {exc}") from None
    if not all(c in table.column_names for c in COLUMNS):
        raise _missing_columns_error(path, table.column_names)
    return table.column("question").to_pylist(), table.column("answer").to_pylist()


def _from_hf_dataset(dataset, where, split):
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataError(f"{where} has splits {sorted(dataset)}, not {split!r}; "
                            f"choose one with --split")
        dataset = dataset[split]
    if not all(c in dataset.column_names for c in COLUMNS):
        raise _missing_columns_error(where, dataset.column_names)
    return list(dataset["question"]), list(dataset["answer"])


def _load_saved_folder(path, split):
    import datasets

    try:
        dataset = datasets.load_from_disk(path)
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError for foreign folders
        raise DataError(f"folder {path!r} is not a Hugging Face save_to_disk folder ({exc}); "
                        f"pass a data file ({', '.join(LOCAL_SUFFIXES)}) instead") from None
    questions, answers = _from_hf_dataset(dataset, repr(path), split)
    return _clean(questions, answers, f"save_to_disk folder {path}, split {split!r}", path)


def _load_hub(name, split):
    import datasets

    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:  # no network, unknown name, unknown split, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"could not load Hugging Face dataset {name!r} split {split!r} ({reason}). "
            f"No local file or folder named {name!r} exists either. Without internet, pass a "
            f"local file with --dataset path/to/pairs.jsonl.gz or use --dataset builtin") from None
    questions, answers = _from_hf_dataset(dataset, repr(name), split)
    return _clean(questions, answers, f"Hugging Face dataset {name}, split {split!r}", name)


def _clean(questions, answers, description, where=None):
    """Coerce values to text; drop rows whose question is empty (an answer may be empty)."""
    kept_q, kept_a = [], []
    for question, answer in zip(questions, answers):
        question = "" if question is None else str(question)
        if not question.strip():
            continue
        kept_q.append(question)
        kept_a.append("" if answer is None else str(answer))
    if not kept_q:
        raise DataError(f"{where or description!r} has no usable rows (no row with a non-empty "
                        f"question among {len(questions)} rows)")
    return QAPairs(kept_q, kept_a, description, dropped=len(questions) - len(kept_q))
