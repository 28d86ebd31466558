"""dataset.py: the exact QADataset contract of the assignment, on hand-built examples."""

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.data_sources import QAPairs
from dataset import IGNORE_INDEX, QADataset, build_sequence
from tokenizer import encode_batch

SEP, END, PAD = 0, 1, 2


def make_dataset(cfg, tokenizer, rows, max_len):
    cfg.max_len = max_len
    pairs = QAPairs([q for q, _ in rows], [a for _, a in rows], "hand-built")
    return QADataset(cfg, tokenizer, pairs=pairs)


def ids(tokenizer, text):
    return encode_batch(tokenizer, [text])[0]


def test_keys_order_dtypes_and_shapes(tiny_config, tokenizer):
    item = make_dataset(tiny_config, tokenizer, [("hi?", "yo.")], 16)[0]
    assert list(item) == ["source_sequence", "target_sequence", "key_padding_mask"]
    source, target, mask = item.values()
    assert source.dtype == target.dtype == torch.int64 and mask.dtype == torch.bool
    assert source.shape == target.shape == mask.shape == (16,)


def test_short_pair_is_padded(tiny_config, tokenizer):
    q, a = ids(tokenizer, "how many legs does a cat have?"), ids(tokenizer, "four.")
    max_len = len(q) + len(a) + 6
    item = make_dataset(tiny_config, tokenizer, [("how many legs does a cat have?", "four.")], max_len)[0]
    sequence = q + [SEP] + a + [END]
    padded = sequence + [PAD] * (max_len + 1 - len(sequence))
    assert item["source_sequence"].tolist() == padded[:-1]
    assert item["target_sequence"].tolist() == sequence[1:] + [IGNORE_INDEX] * (max_len + 1 - len(sequence))
    assert item["key_padding_mask"].tolist() == [i >= len(sequence) for i in range(max_len)]


def test_sequence_of_exactly_max_len_plus_one_has_no_padding(tiny_config, tokenizer):
    q, a = ids(tokenizer, "what is the capital of norway?"), ids(tokenizer, "oslo.")
    max_len = len(q) + len(a) + 1  # q + [SEP] + a + [END] = max_len + 1 ids
    source, target, mask = make_dataset(tiny_config, tokenizer, [("what is the capital of norway?", "oslo.")],
                                        max_len)[0].values()
    assert source.tolist() == q + [SEP] + a
    assert target.tolist() == q[1:] + [SEP] + a + [END]
    assert not mask.any() and IGNORE_INDEX not in target.tolist()


def test_sequence_of_exactly_max_len_keeps_end_in_source(tiny_config, tokenizer):
    q, a = ids(tokenizer, "what is the capital of norway?"), ids(tokenizer, "oslo.")
    max_len = len(q) + len(a) + 2
    source, target, mask = make_dataset(tiny_config, tokenizer, [("what is the capital of norway?", "oslo.")],
                                        max_len)[0].values()
    assert source.tolist() == q + [SEP] + a + [END]
    assert target.tolist() == q[1:] + [SEP] + a + [END, IGNORE_INDEX]
    assert not mask.any()


def test_overlong_answer_is_cut_and_end_stays_last(tiny_config, tokenizer):
    question, answer = "which is larger, 37 or 52?", "52 is larger than 37. " * 20
    q, a = ids(tokenizer, question), ids(tokenizer, answer)
    max_len = len(q) + 6
    source, target, mask = make_dataset(tiny_config, tokenizer, [(question, answer)], max_len)[0].values()
    assert source.tolist() == q + [SEP] + a[:5]
    assert target.tolist() == q[1:] + [SEP] + a[:5] + [END]
    assert not mask.any()


def test_overlong_question_keeps_its_end_and_sep_and_end_fit(tiny_config, tokenizer):
    question = "how do you spell kalomi? " * 20
    q = ids(tokenizer, question)
    max_len = 12
    source, target, _ = make_dataset(tiny_config, tokenizer, [(question, "k-a-l-o-m-i.")], max_len)[0].values()
    assert source.tolist() == q[-(max_len - 2):] + [SEP, ids(tokenizer, "k-a-l-o-m-i.")[0]]
    assert target.tolist()[-1] == END and target.tolist()[-3] == SEP


def test_empty_answer(tiny_config, tokenizer):
    q = ids(tokenizer, "hi?")
    source, target, mask = make_dataset(tiny_config, tokenizer, [("hi?", "")], 8)[0].values()
    assert source.tolist()[: len(q) + 2] == q + [SEP, END]
    assert target.tolist()[: len(q) + 1] == q[1:] + [SEP, END]
    assert target.tolist()[len(q) + 1:] == [IGNORE_INDEX] * (8 - len(q) - 1)


def test_build_sequence_hand_worked():
    assert build_sequence([7, 8], [9], SEP, END, max_len=8) == [7, 8, SEP, 9, END]
    assert build_sequence([7, 8, 9, 10], [11, 12, 13], SEP, END, max_len=6) == [7, 8, 9, 10, SEP, 11, END]
    assert build_sequence([7, 8, 9, 10, 11], [12], SEP, END, max_len=4) == [10, 11, SEP, 12, END]
    assert build_sequence([7, 8, 9], [], SEP, END, max_len=2) == [9, SEP, END]
    assert build_sequence([7], [], SEP, END, max_len=2) == [7, SEP, END]
    assert build_sequence([7, 8, 9], [10, 11], SEP, END, max_len=2) == [SEP, 10, END]


@settings(max_examples=300, deadline=None)
@given(q=st.lists(st.integers(4, 99), min_size=1, max_size=40),
       a=st.lists(st.integers(4, 99), max_size=40), max_len=st.integers(2, 48))
def test_build_sequence_invariants(q, a, max_len):
    seq = build_sequence(q, a, SEP, END, max_len)
    assert len(seq) <= max_len + 1
    assert seq[-1] == END and seq.count(END) == 1 and seq.count(SEP) == 1
    sep = seq.index(SEP)
    assert seq[:sep] == q[len(q) - sep:]  # a suffix of the question
    assert seq[sep + 1:-1] == a[: len(seq) - sep - 2]  # a prefix of the answer
    if a:
        assert sep + 2 < len(seq)  # at least one answer token survives
    if len(q) + len(a) + 2 <= max_len + 1:
        assert seq == q + [SEP] + a + [END]  # nothing is cut when it fits


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.text(min_size=1, max_size=30).filter(str.strip), st.text(max_size=30)),
                     min_size=1, max_size=4),
       max_len=st.integers(2, 24))
def test_item_invariants(tiny_config, tokenizer, rows, max_len):
    dataset = make_dataset(tiny_config, tokenizer, rows, max_len)
    for i in range(len(dataset)):
        source, target, mask = dataset[i].values()
        real = int(dataset.lengths[i])
        assert source.shape == target.shape == mask.shape == (max_len,)
        assert (target == IGNORE_INDEX).tolist() == [j >= real - 1 for j in range(max_len)]
        assert mask.tolist() == [j >= real for j in range(max_len)]
        assert (source[mask] == PAD).all() and not (source[~mask] == PAD).any()
        assert target[real - 2] == END  # [END] is the last real token
        m = min(real, max_len)  # real tokens in the source
        assert (target[: m - 1] == source[1:m]).all()  # shifted by one


def test_fraction_keeps_the_first_rows_like_the_template(tiny_config, tokenizer):
    tiny_config.model_train_fraction = 0.5
    rows = [(f"question {i}?", f"answer {i}.") for i in range(10)]
    dataset = make_dataset(tiny_config, tokenizer, rows, 16)
    assert len(dataset) == 5
    first = dataset[0]["source_sequence"].tolist()
    assert first[: first.index(SEP)] == ids(tokenizer, "question 0?")


def test_typed_special_tokens_in_data_never_become_special_ids(tiny_config, tokenizer):
    dataset = make_dataset(tiny_config, tokenizer, [("what is [SEP]?", "[END] is a token [PAD].")], 32)
    source = dataset[0]["source_sequence"].tolist()
    assert source.count(SEP) == 1 and source.count(END) == 1


def test_loads_config_dataset_when_no_pairs_given(tiny_config, tokenizer):
    tiny_config.dataset = "builtin"
    tiny_config.model_train_fraction = 0.01
    dataset = QADataset(tiny_config, tokenizer)
    assert len(dataset) > 10 and dataset[0]["source_sequence"].shape == (tiny_config.max_len,)
