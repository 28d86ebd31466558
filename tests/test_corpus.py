"""Tests of the built-in generated corpus (support/corpus.py).

Answers are checked by recomputing them from the question text, and the
held-out property is checked on parsed parameters, not only on question
strings, so a leak through a different phrasing or family is caught.
"""

import hashlib
import json
import re
from collections import Counter

import pytest

from support import corpus

WORD_FAMILIES = ("spell", "count_letters", "first_last")

# Independent copy of the conversions: singular source -> (plural source, target, factor).
UNIT_TABLE = {
    "hour": ("hours", "minutes", 60),
    "minute": ("minutes", "seconds", 60),
    "day": ("days", "hours", 24),
    "week": ("weeks", "days", 7),
    "year": ("years", "months", 12),
    "foot": ("feet", "inches", 12),
    "decade": ("decades", "years", 10),
    "centimeter": ("centimeters", "millimeters", 10),
    "meter": ("meters", "centimeters", 100),
    "dollar": ("dollars", "cents", 100),
    "kilometer": ("kilometers", "meters", 1000),
    "kilogram": ("kilograms", "grams", 1000),
    "liter": ("liters", "milliliters", 1000),
}
PLURAL_TO_SINGULAR = {plural: singular for singular, (plural, _, _) in UNIT_TABLE.items()}


@pytest.fixture(scope="module")
def train():
    return corpus.generate("train", seed=0)


@pytest.fixture(scope="module")
def heldout():
    return corpus.generate("heldout", seed=0)


def words_of(text):
    return re.findall(r"[a-z]+", text)


def numbers_of(text):
    return [int(x) for x in re.findall(r"\d+", text)]


# ------------------------------------------------------- answer recomputation


def check_compare(q, a):
    x, y = numbers_of(q)
    assert x != y and 0 <= x <= 99 and 0 <= y <= 99
    rel = "larger" if "larger" in words_of(q) else "smaller"
    assert (rel == "larger") != ("smaller" in words_of(q))
    winner, loser = (max(x, y), min(x, y)) if rel == "larger" else (min(x, y), max(x, y))
    assert a == f"{winner} is {rel} than {loser}."


def check_spell(q, a):
    m = re.fullmatch(r"((?:[a-z]-)+[a-z])\.", a)
    assert m, a
    word = m.group(1).replace("-", "")
    assert word in words_of(q)
    assert "-".join(word) + "." == a


def check_count(q, a):
    m = re.fullmatch(r"([a-z]+) has (\d+) letters\.", a)
    assert m, a
    word = m.group(1)
    assert word in words_of(q)
    assert int(m.group(2)) == len(word)


def check_first_last(q, a):
    m = re.fullmatch(r"the (first|last) letter of ([a-z]+) is ([a-z])\.", a)
    assert m, a
    position, word, letter = m.groups()
    q_words = set(words_of(q))
    assert word in q_words
    asks_first = bool(q_words & {"first", "start", "begin"})
    asks_last = bool(q_words & {"last", "end"})
    assert asks_first != asks_last
    assert position == ("first" if asks_first else "last")
    assert letter == (word[0] if asks_first else word[-1])


def check_arithmetic(q, a):
    m = re.search(r"(\d+) (plus|minus) (\d+)", q)
    assert m, q
    x, op, y = int(m.group(1)), m.group(2), int(m.group(3))
    assert 0 <= x <= 20 and 0 <= y <= 20
    result = x + y if op == "plus" else x - y
    assert result >= 0
    assert a == f"{x} {op} {y} is {result}."


def check_units(q, a):
    m = re.fullmatch(r"(\d+) ([a-z]+) is (\d+) ([a-z]+)\.", a)
    assert m, a
    n, source, value, target = int(m.group(1)), m.group(2), int(m.group(3)), m.group(4)
    assert 1 <= n <= 12
    singular = source if source in UNIT_TABLE else PLURAL_TO_SINGULAR[source]
    plural, expected_target, factor = UNIT_TABLE[singular]
    assert source == (singular if n == 1 else plural)
    assert target == expected_target
    assert value == n * factor
    assert numbers_of(q) == [n]
    assert source in words_of(q) and target in words_of(q)


CHECKERS = {
    "compare": check_compare,
    "spell": check_spell,
    "count_letters": check_count,
    "first_last": check_first_last,
    "arithmetic": check_arithmetic,
    "units": check_units,
}


def test_checkers_cover_every_family():
    assert sorted(CHECKERS) == sorted(corpus.families())


@pytest.mark.parametrize("split", corpus.SPLITS)
def test_answers_are_correct_by_recomputation(split):
    rows = corpus.generate(split, seed=0)
    for row in rows:
        CHECKERS[row["family"]](row["question"], row["answer"])


def test_checker_rejects_wrong_answers():
    with pytest.raises(AssertionError):
        check_compare("which is larger, 37 or 52?", "37 is larger than 52.")
    with pytest.raises(AssertionError):
        check_spell("how do you spell kalomi?", "k-a-l-o-m.")
    with pytest.raises(AssertionError):
        check_units("how many minutes are in 3 hours?", "3 hours is 120 minutes.")
    with pytest.raises(AssertionError):
        check_arithmetic("what is 7 plus 5?", "7 plus 5 is 13.")


# ---------------------------------------------------------------- determinism


def digest(rows):
    # Comparing digests keeps a failure fast: pytest would otherwise diff
    # megabytes of rows.
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


@pytest.mark.parametrize("split", corpus.SPLITS)
def test_same_seed_is_byte_identical(split):
    assert digest(corpus.generate(split, seed=3)) == digest(corpus.generate(split, seed=3))


@pytest.mark.parametrize("split", corpus.SPLITS)
def test_different_seeds_differ(split):
    assert digest(corpus.generate(split, seed=0)) != digest(corpus.generate(split, seed=1))


def test_different_seeds_hold_out_different_parameters():
    keys0 = {param_key(r) for r in corpus.generate("heldout", seed=0)}
    keys1 = {param_key(r) for r in corpus.generate("heldout", seed=1)}
    assert keys0 != keys1


def test_generation_does_not_touch_global_rng():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    corpus.generate("train", seed=0, size=500)
    corpus.generate("heldout", seed=0)
    assert random.random() == expected


# ---------------------------------------------------------- held-out property


def param_key(row):
    """The parameter tuple a row was rendered from (phrasing-independent)."""
    q, a, family = row["question"], row["answer"], row["family"]
    if family == "compare":
        return family, frozenset(numbers_of(q))
    if family in WORD_FAMILIES:
        # Word families share one held-out pool of words.
        if family == "spell":
            return "word", a.rstrip(".").replace("-", "")
        return "word", re.search(r"([a-z]+) (?:has|is [a-z]\.$)", a).group(1)
    if family == "arithmetic":
        m = re.search(r"(\d+) (plus|minus) (\d+)", q)
        return family, (m.group(2), int(m.group(1)), int(m.group(3)))
    if family == "units":
        n, source = re.match(r"(\d+) ([a-z]+)", a).groups()
        return family, (PLURAL_TO_SINGULAR.get(source, source), int(n))
    raise AssertionError(family)


def test_param_key_extracts_words():
    row = {"question": "what is the last letter of kalomi?",
           "answer": "the last letter of kalomi is i.", "family": "first_last"}
    assert param_key(row) == ("word", "kalomi")
    row = {"question": "count the letters in kalo.", "answer": "kalo has 4 letters.",
           "family": "count_letters"}
    assert param_key(row) == ("word", "kalo")


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_heldout_question_or_parameter_in_train(seed):
    train_rows = corpus.generate("train", seed=seed)
    heldout_rows = corpus.generate("heldout", seed=seed)
    train_questions = {r["question"] for r in train_rows}
    assert not train_questions & {r["question"] for r in heldout_rows}
    held_keys = {param_key(r) for r in heldout_rows}
    train_keys = {param_key(r) for r in train_rows}
    assert not held_keys & train_keys


def test_no_heldout_question_in_train_under_any_phrasing(train, heldout):
    train_questions = {r["question"] for r in train}
    for row in heldout:
        key = param_key(row)
        if row["family"] in WORD_FAMILIES:
            param = (key[1],)
        elif row["family"] == "compare":
            param = tuple(sorted(key[1]))
        elif row["family"] == "units":
            param = (list(UNIT_TABLE).index(key[1][0]), key[1][1])
        else:
            param = key[1]
        renderings = corpus.render_all(row["family"], param)
        assert (row["question"], row["answer"]) in renderings
        assert not train_questions & {q for q, _ in renderings}


def test_heldout_words_never_appear_in_training_text(train, heldout):
    held_words = {param_key(r)[1] for r in heldout if r["family"] in WORD_FAMILIES}
    assert len(held_words) >= 8
    train_tokens = set()
    for row in train:
        for text in (row["question"], row["answer"]):
            # Spelled-out answers are joined back so "k-a-l-o" counts as "kalo".
            for token in re.findall(r"[a-z]+(?:-[a-z]+)*", text):
                train_tokens.add(token.replace("-", ""))
    assert not held_words & train_tokens


def test_heldout_pieces_are_seen_in_training(train, heldout):
    train_words = {param_key(r)[1] for r in train if r["family"] in WORD_FAMILIES}
    train_syllables = {w[i:i + 2] for w in train_words for i in range(0, len(w), 2)}
    train_numbers = {n for r in train if r["family"] == "compare"
                     for n in numbers_of(r["question"])}
    for row in heldout:
        key = param_key(row)
        if key[0] == "word":
            word = key[1]
            assert {word[i:i + 2] for i in range(0, len(word), 2)} <= train_syllables
        elif row["family"] == "compare":
            assert key[1] <= train_numbers


def test_heldout_arithmetic_and_units_are_reachable(train, heldout):
    train_keys = {param_key(r) for r in train}
    train_unit_answers = {numbers_of(r["answer"])[1] for r in train if r["family"] == "units"}
    for row in heldout:
        if row["family"] == "arithmetic":
            op, x, y = param_key(row)[1]
            if op == "plus":
                assert ("arithmetic", ("plus", y, x)) in train_keys
        if row["family"] == "units":
            assert numbers_of(row["answer"])[1] in train_unit_answers


def test_pseudo_words_are_built_from_syllables():
    words = corpus.pseudo_words()
    assert len(words) == len(set(words)) >= 500
    assert words == corpus.pseudo_words()
    for word in words:
        assert re.fullmatch(r"(?:[bklmnrt][aeio]){2,4}", word), word


# ----------------------------------------------------------- size and balance


def test_every_family_in_both_splits(train, heldout):
    assert set(corpus.families()) == {r["family"] for r in train}
    assert set(corpus.families()) == {r["family"] for r in heldout}
    counts = Counter(r["family"] for r in heldout)
    assert min(counts.values()) >= 5


def test_sizes(train, heldout):
    assert 30_000 <= len(train) <= 60_000
    assert 300 <= len(heldout) <= 1_500


@pytest.mark.parametrize("size", [None, 600, 12_345])
def test_no_family_dominates_train(size):
    rows = corpus.generate("train", seed=0, size=size)
    counts = Counter(r["family"] for r in rows)
    assert max(counts.values()) <= 0.4 * len(rows)


@pytest.mark.parametrize("size", [0, 1, 100, 12_345])
def test_size_sets_train_rows(size):
    assert len(corpus.generate("train", seed=0, size=size)) == size


def test_heldout_does_not_depend_on_size(heldout):
    assert digest(corpus.generate("heldout", seed=0, size=10)) == digest(heldout)


def test_train_covers_before_repeating(train):
    # Far fewer duplicates than rows: parameters/phrasings are covered evenly.
    duplicates = len(train) - len({(r["question"], r["answer"]) for r in train})
    assert duplicates < 0.5 * len(train)


# ----------------------------------------------------------------- text shape


@pytest.mark.parametrize("split", corpus.SPLITS)
def test_text_is_lowercase_ascii_single_line(split):
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789 ,.?:-")
    for row in corpus.generate(split, seed=0):
        assert set(row) == {"question", "answer", "family"}
        for text in (row["question"], row["answer"]):
            assert text and set(text) <= allowed, text
            assert "[" not in text and "]" not in text and "\n" not in text
            assert text == text.lower() == text.strip()
            assert "  " not in text


def test_answers_survive_normalisation(heldout):
    for row in heldout:
        assert corpus.is_correct(row["answer"], row["answer"])
        assert corpus.is_correct(row["answer"].upper() + " ", row["answer"])


# -------------------------------------------------------------------- scoring


def test_is_correct_examples():
    assert corpus.is_correct("52 is larger than 37.", " 52 IS larger than 37 ")
    assert corpus.is_correct("52  is larger\tthan 37 !", "52 is larger than 37.")
    assert corpus.is_correct("k-a-l-o-m-i", "k-a-l-o-m-i.")
    assert not corpus.is_correct("53 is larger than 37.", "52 is larger than 37.")
    assert not corpus.is_correct("52 is larger than 37. extra", "52 is larger than 37.")
    assert not corpus.is_correct("", "52 is larger than 37.")


def test_normalize_answer():
    assert corpus.normalize_answer("  Kalomi   HAS 6 letters.?! ") == "kalomi has 6 letters"
    assert corpus.normalize_answer("Café.") == "cafe"
    assert corpus.normalize_answer("...") == ""


# ----------------------------------------------------------------------- API


def test_constants():
    assert corpus.BUILTIN_NAME == "builtin"
    assert corpus.SPLITS == ("train", "heldout")
    assert len(corpus.families()) == len(set(corpus.families())) >= 5


def test_unknown_split_raises():
    with pytest.raises(ValueError, match="heldout"):
        corpus.generate("validation")


def test_bad_size_raises():
    with pytest.raises(ValueError):
        corpus.generate("train", size=-1)
