"""Ids to training tensors: `QADataset(config, tokenizer)`.

    python dataset.py --preset demo        # print one example (offline, built-in corpus)
    python dataset.py                      # the course dataset (needs the tokenizer in temp/)

Each pair becomes  question ids + [SEP] + answer ids + [END] + [PAD]...  of length max_len + 1,
built from ids (never by pasting "[SEP]" into strings). Item i is a dict, keys in this order
(train.py unpacks `.values()`):

    source_sequence   sequence[:-1]                         int64 (max_len,)
    target_sequence   sequence[1:], -100 where it is [PAD]  int64 (max_len,)
    key_padding_mask  True where source_sequence is [PAD]   bool  (max_len,)

Too long: the answer is cut so that [END] stays the last real token. If even the question does not
fit beside [SEP], one answer token and [END], the question keeps its last tokens (generation
truncates prompts from the left too), so [SEP] and [END] are always there.

Example with max_len 8, question ids [7, 8], answer ids [9]:
    sequence = [7, 8, SEP, 9, END, PAD, PAD, PAD, PAD]
    source   = [7, 8, SEP, 9, END, PAD, PAD, PAD]
    target   = [8, SEP, 9, END, -100, -100, -100, -100]
    mask     = [F, F, F, F, F, T, T, T]
"""

import numpy as np
import torch
from torch.utils.data import Dataset

from config import parse_cli
from support.data_sources import load_qa_pairs
from tokenizer import encode_batch, load_tokenizer, special_token_ids
from utils import print_config, run_main

IGNORE_INDEX = -100  # CrossEntropyLoss's default ignore_index


def build_sequence(question_ids, answer_ids, sep_id, end_id, max_len):
    """question + [SEP] + answer + [END], at most max_len + 1 ids, [END] always last.

    >>> build_sequence([7, 8, 9, 10], [11, 12, 13], sep_id=0, end_id=1, max_len=6)
    [7, 8, 9, 10, 0, 11, 1]
    >>> build_sequence([7, 8, 9, 10, 11], [12], sep_id=0, end_id=1, max_len=4)
    [10, 11, 0, 12, 1]
    """
    budget = max_len + 1
    if len(question_ids) + len(answer_ids) + 2 > budget:
        # Keep the question whole if [SEP], one answer token and [END] still fit; otherwise keep
        # its end, as generation truncates prompts from the left.
        keep = budget - 2 - min(len(answer_ids), 1)
        question_ids = question_ids[max(0, len(question_ids) - keep):]
        answer_ids = answer_ids[: budget - 2 - len(question_ids)]
    return [*question_ids, sep_id, *answer_ids, end_id]


class QADataset(Dataset):
    """Question/answer pairs of config.dataset as fixed-length training tensors.

    Tokenizes once, in batches, when built; `pairs` (a support.data_sources.QAPairs) skips loading
    config.dataset, which tests use for hand-built examples.
    """

    def __init__(self, config, tokenizer, pairs=None):
        pairs = pairs if pairs is not None else load_qa_pairs(config.dataset, config.split)
        # The template keeps the first fraction of the rows, unshuffled.
        n = max(1, int(config.model_train_fraction * len(pairs)))
        questions, answers = pairs.questions[:n], pairs.answers[:n]
        print(f"Loaded dataset of size {n} with columns ['question', 'answer'] "
              f"from {pairs.description}")

        self.tokenizer = tokenizer
        self.max_length = config.max_len
        ids = special_token_ids(tokenizer, config)
        self.pad_id, self.sep_id, self.end_id = ids["pad"], ids["sep"], ids["end"]

        encoded = encode_batch(tokenizer, questions + answers)
        sequences = [build_sequence(q, a, self.sep_id, self.end_id, self.max_length)
                     for q, a in zip(encoded[:n], encoded[n:])]
        # One flat int32 array plus offsets: ~4 bytes a token instead of a Python list per pair.
        self.lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=n)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.tokens = np.fromiter((t for s in sequences for t in s), dtype=np.int32,
                                  count=int(self.offsets[-1]))

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, idx):
        item = self.collate(np.array([idx]), width=self.max_length)
        return {key: value[0] for key, value in item.items()}

    def collate(self, indices, pad_multiple=8, width=None):
        """A batch padded only to its longest item (rounded up to pad_multiple, at most max_len).

        Same keys as an item, tensors (B, T) with T <= max_len (T = width when given). Because
        attention is causal and every dropped position is padding with target -100, the loss at
        each kept position is exactly what fixed padding to max_len gives (tests check this).
        """
        lengths = self.lengths[indices]
        if width is None:
            longest = int(min(lengths.max(), self.max_length))  # source positions holding tokens
            width = min(self.max_length, -(-longest // pad_multiple) * pad_multiple)
        sequences = np.full((len(indices), width + 1), self.pad_id, dtype=np.int64)
        for row, (idx, length) in enumerate(zip(indices, lengths)):
            start, n = self.offsets[idx], min(length, width + 1)
            sequences[row, :n] = self.tokens[start:start + n]
        sequences = torch.from_numpy(sequences)
        positions = torch.arange(width + 1)
        real = positions[None, :] < torch.from_numpy(lengths)[:, None]  # (B, T+1)
        target = sequences[:, 1:].masked_fill(~real[:, 1:], IGNORE_INDEX)
        return {
            "source_sequence": sequences[:, :-1],
            "target_sequence": target,
            "key_padding_mask": ~real[:, :-1],
        }


def split_indices(n, val_fraction, seed):
    """(train, validation) index arrays: a seeded random share of the data held out.

    >>> [len(part) for part in split_indices(1000, 0.01, seed=0)]
    [990, 10]
    """
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def epoch_batches(indices, lengths, batch_size, seed, epoch, group_lengths=True, window=64):
    """The batches of one epoch, as lists of dataset indices; the same for the same arguments.

    The order is a permutation seeded by (seed, epoch), so a resumed run can rebuild it and skip
    the batches it already did. With group_lengths, each window of `window` batches is sorted by
    length before it is cut into batches (so a batch needs little padding) and the batches are
    shuffled again.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = np.asarray(indices)[torch.randperm(len(indices), generator=generator).numpy()]
    if group_lengths:
        span = batch_size * window
        order = np.concatenate([
            chunk[np.argsort(-lengths[chunk], kind="stable")]
            for chunk in np.array_split(order, range(span, len(order), span))
        ]) if len(order) else order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_lengths:
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in shuffled]
    return batches


class BatchView(Dataset):
    """Ready-made batches as dataset items, so a DataLoader (batch_size=None) can prefetch them."""

    def __init__(self, dataset, batches, pad_multiple=8):
        self.dataset, self.batches, self.pad_multiple = dataset, batches, pad_multiple

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.dataset.collate(self.batches[i], self.pad_multiple)


def main():
    config, _ = parse_cli(description=__doc__)
    print_config(config)
    tokenizer = load_tokenizer(config)
    dataset = QADataset(config, tokenizer)
    idx = min(1, len(dataset) - 1)  # the template shows item 1
    source, target, key_padding_mask = dataset[idx].values()
    print(f"Source shape: {source.shape}\nTarget shape: {target.shape}\n"
          f"Key padding mask shape: {key_padding_mask.shape}")
    print(f"Source: {source}\nTarget: {target}\nKey padding mask: {key_padding_mask}")
    print(f"Decoded source: {tokenizer.decode(source.tolist(), skip_special_tokens=False)}")
    real_target = target[target != IGNORE_INDEX].tolist()
    print(f"Decoded target: {tokenizer.decode(real_target, skip_special_tokens=False)}")


if __name__ == "__main__":
    run_main(main)
