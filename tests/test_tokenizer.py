"""tokenizer.py: the template's pipeline, special-token ids, round trips, typed special tokens."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import assert_one_line_error, run_script, write_jsonl
from tokenizer import (build_tokenizer, encode_batch, load_tokenizer, special_token_ids,
                       train_tokenizer)
from utils import UserError

SPECIAL_IDS = {"sep": 0, "end": 1, "pad": 2, "unk": 3}


def roundtrip(tok, text):
    return tok.decode(encode_batch(tok, [text])[0])


def test_special_token_ids_are_the_templates(tokenizer, tiny_config):
    assert special_token_ids(tokenizer, tiny_config) == SPECIAL_IDS


@pytest.mark.parametrize("text", ["", "hello world", "😀 emoji 🎉", "日本語のテキスト", "한국어",
                                  "café naïve résumé", "مرحبا بالعالم", "tab\tand  spaces",
                                  "ünïcödé ẞ ß", "x" * 500])
def test_round_trip_equals_normalised_text(tokenizer, text):
    # Decoding gives back exactly what the normaliser made of the text: lowercased, accents
    # stripped, control characters removed, spaces around CJK characters.
    assert roundtrip(tokenizer, text) == tokenizer.normalizer.normalize_str(text)


def test_normalisation_lowercases_and_strips_accents(tokenizer):
    assert roundtrip(tokenizer, "Café NAÏVE") == "cafe naive"


def test_unseen_characters_never_become_unk(tokenizer):
    ids = encode_batch(tokenizer, ["😀 日本 ∑ ☃"])[0]
    assert SPECIAL_IDS["unk"] not in ids


@pytest.mark.parametrize("typed", ["[SEP]", "[END]", "[PAD]", "[UNK]", "what is [SEP] and [END]?",
                                   "[sep]", "a[SEP]b"])
def test_typed_special_token_strings_stay_plain_text(tokenizer, typed):
    ids = encode_batch(tokenizer, [typed])[0]
    assert not set(ids) & set(SPECIAL_IDS.values())
    assert roundtrip(tokenizer, typed) == typed.lower()


def test_plain_tokenizers_behaviour_is_the_trap_we_guard_against(tokenizer):
    # Without protect_special_tokens the library maps typed "[SEP]" to id 0.
    tokenizer.encode_special_tokens = False
    try:
        assert 0 in tokenizer.encode("a [SEP] b").ids
    finally:
        tokenizer.encode_special_tokens = True


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_property(tokenizer, text):
    ids = encode_batch(tokenizer, [text])[0]
    assert all(i >= len(SPECIAL_IDS) for i in ids)  # never a special id, never [UNK]
    assert tokenizer.decode(ids) == tokenizer.normalizer.normalize_str(text)


def test_train_save_and_load(tiny_config, tmp_path, capsys):
    tiny_config.dataset = write_jsonl(tmp_path / "pairs.jsonl", [
        {"question": f"what is {i} plus {i}?", "answer": f"{i} plus {i} is {2 * i}."}
        for i in range(200)])
    tiny_config.min_frequency = 2
    trained = train_tokenizer(tiny_config)
    assert "Saved tokenizer to" in capsys.readouterr().out
    loaded = load_tokenizer(tiny_config)
    assert special_token_ids(loaded, tiny_config) == SPECIAL_IDS
    assert loaded.encode_special_tokens  # protection survives loading
    text = "What is 7 plus 7? [SEP]"
    assert encode_batch(loaded, [text]) == encode_batch(trained, [text])
    assert loaded.get_vocab_size() <= tiny_config.vocab_size


def test_template_trained_tokenizer_loads(tiny_config):
    # The template trains without the byte alphabet; its files must load and work here.
    from tokenizers import trainers

    tok = build_tokenizer(tiny_config)
    tok.train_from_iterator(["hello world"] * 10, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["[SEP]", "[END]", "[PAD]", "[UNK]"], show_progress=False))
    tok.save(tiny_config.tokenizer_filename)
    loaded = load_tokenizer(tiny_config)
    assert loaded.decode(encode_batch(loaded, ["hello world"])[0]) == "hello world"


def test_missing_tokenizer_file_says_how_to_create_it(tiny_config):
    with pytest.raises(UserError, match=r"not found; create it with `python tokenizer.py --preset tiny`"):
        load_tokenizer(tiny_config)


def test_corrupt_tokenizer_file_is_reported(tiny_config, tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ', encoding="utf-8")
    with pytest.raises(UserError, match="is not a valid tokenizer file"):
        load_tokenizer(tiny_config)


def test_tokenizer_without_special_tokens_is_rejected(tiny_config):
    from tokenizers import trainers

    tok = build_tokenizer(tiny_config)
    tok.train_from_iterator(["hello"], trainer=trainers.BpeTrainer(vocab_size=300, show_progress=False))
    tok.save(tiny_config.tokenizer_filename)
    with pytest.raises(UserError, match=r"has no \[SEP\] token"):
        load_tokenizer(tiny_config)


def test_encode_batch_matches_single_encodes(tokenizer):
    texts = [f"question number {i}?" for i in range(50)]
    assert encode_batch(tokenizer, texts, batch_size=7) == [tokenizer.encode(t).ids for t in texts]


# --- bad inputs: the tokenizer.py command line (README, "Bad input") ------------------------------

def write(path, data):
    """Write the bytes `data` to `path`; returns the path as a string."""
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name, data, says", [
    ("missing.jsonl", None, "does not exist"),
    ("empty.jsonl", b"", "empty"),
    ("latin1.jsonl", '{"question": "caf\xe9?", "answer": "yes"}\n'.encode("latin-1"), "UTF-8"),
    ("columns.jsonl", b'{"q": "a?", "a": "b"}\n', "question"),
])
def test_tokenizer_script_names_a_bad_data_file(tmp_path, name, data, says):
    path = str(tmp_path / name) if data is None else write(tmp_path / name, data)
    result = run_script("tokenizer.py", "--tiny", "--dataset", path,
                        "--tokenizer_filename", str(tmp_path / "tok.json"))
    assert_one_line_error(result, says)
