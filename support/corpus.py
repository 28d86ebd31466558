"""Built-in generated question -> answer corpus.

The project makes this corpus itself from templates (no text is copied from
anywhere), so the whole pipeline can train and evaluate offline.  It is
designed to be *learnable and checkable* by a small decoder transformer:
every answer is short, exact and deterministic, and most answers are built by
copying, selecting or looking up tokens that appear in the question.

Families (all text is lowercase ASCII; the answer template is fixed per
family, the question has 2-3 phrasings so the model sees paraphrases):

``compare``
    "which is larger, 37 or 52?" -> "52 is larger than 37."
    (also "smaller"; numbers 0..99, a != b)
``spell``
    "how do you spell kalomi?" -> "k-a-l-o-m-i."
``count_letters``
    "how many letters are in the word kalomi?" -> "kalomi has 6 letters."
``first_last``
    "what is the first letter of kalomi?" -> "the first letter of kalomi is k."
    (also the last letter)
``arithmetic``
    "what is 7 plus 5?" -> "7 plus 5 is 12."
    (operands 0..20; minus only when the result is not negative)
``units``
    "how many minutes are in 3 hours?" -> "3 hours is 180 minutes."
    (n in 1..12, singular for n == 1: "1 hour is 60 minutes."; 13 unit
    pairs: hours, minutes, days, weeks, years, feet, decades, centimeters,
    meters, dollars, kilometers, kilograms, liters -> the next smaller unit)

By default the train split has 48,000 rows mixed 22/20/14/16/16/12 percent
in the order above, so the families whose held-out items need real
generalisation (arithmetic, units) stay a minority; the held-out split has
about 590 rows (one random phrasing per held-out item; both the first and
the last letter for each held-out word).

The pseudo-words of the three word families are concatenations of 2-4
consonant-vowel syllables from a fixed inventory (7 consonants x 4 vowels).
The word list is built with a fixed internal seed, so it is the same for
every split seed; words that collide with a template word are dropped.

Held-out rule
-------------
For each parameter pool (number pairs for ``compare``, pseudo-words for the
three word families, ``(op, a, b)`` for ``arithmetic``, ``(unit, n)`` for
``units``) the whole parameter space is enumerated, shuffled with a local
``random.Random`` derived from ``seed`` and about 5% of it (at least 8
items) is held out.  Training rows are rendered only from the remaining
parameters, held-out rows only from held-out ones, so no held-out question
string (under any phrasing) and no held-out parameter ever appears in
training.  The *pieces* of held-out items (numbers, syllables, units) do
appear in training, so a held-out question is a new combination of known
pieces.  Details that keep the held-out set learnable:

* ``compare`` holds out the unordered pair: neither order nor either of
  "larger"/"smaller" is trained for it.
* a pseudo-word is held out as a whole: it never appears in any training
  question or answer of any family (its spelling included).
* ``arithmetic`` holds out ordered tuples; "a plus b" is only held out when
  "b plus a" stays in training, so held-out sums are reachable through
  commutativity.  Held-out differences must really be generalised, which is
  why arithmetic is a minority of the corpus.
* ``units`` holds out ``(unit, n)`` only when another unit pair with the same
  factor keeps ``n`` in training ("7 hours" is held out only while
  "7 minutes is 420 seconds." is trained), so the answer number has been
  seen.  Unit pairs with a unique factor (days->hours, weeks->days) are
  therefore training-only.

Worked example: ``generate("train", seed=0)`` returns rows such as
``{"question": "spell the word riterelo.", "answer": "r-i-t-e-r-e-l-o.",
"family": "spell"}``.  ``generate("heldout", seed=0)`` contains
``"how many letters does bomo have?" -> "bomo has 4 letters."``; "bomo" is
a held-out word for seed 0, so no training row of any family mentions it,
but its syllables "bo" and "mo" occur in many training words and the model
is expected to spell, count and index it from those pieces.  A model's
decoded output " Bomo has 4 letters " scores as correct under
:func:`is_correct`.

Use :func:`generate` for rows and :func:`is_correct` to score a model's
decoded output against a reference answer (case, whitespace and trailing
punctuation insensitive).  :func:`pseudo_words` and :func:`render_all` expose
the word list and every phrasing of one item for tests and inspection.
"""

from __future__ import annotations

import random
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Callable, Hashable

BUILTIN_NAME = "builtin"
SPLITS = ("train", "heldout")

DEFAULT_TRAIN_SIZE = 48_000
HELDOUT_FRACTION = 0.05
MIN_HELDOUT = 8

_CONSONANTS = "bklmnrt"
_VOWELS = "aeio"
# (syllables per word, how many such words); all 2-syllable words would be
# 784, a sample keeps every word frequent enough in training.
_WORD_SHAPES = ((2, 300), (3, 600), (4, 600))
# Fixed so the vocabulary is identical for every split seed.
_WORDLIST_SEED = 1_000_003

_NUMBER_MAX = 99
_ARITH_MAX = 20
_UNIT_N_MAX = 12

# (singular, plural, target plural, factor).  Factors are shared by at least
# two pairs where possible, which is what makes held-out units learnable.
_UNITS = (
    ("hour", "hours", "minutes", 60),
    ("minute", "minutes", "seconds", 60),
    ("day", "days", "hours", 24),
    ("week", "weeks", "days", 7),
    ("year", "years", "months", 12),
    ("foot", "feet", "inches", 12),
    ("decade", "decades", "years", 10),
    ("centimeter", "centimeters", "millimeters", 10),
    ("meter", "meters", "centimeters", 100),
    ("dollar", "dollars", "cents", 100),
    ("kilometer", "kilometers", "meters", 1000),
    ("kilogram", "kilograms", "grams", 1000),
    ("liter", "liters", "milliliters", 1000),
)

_COMPARE_QUESTIONS = (
    "which is {rel}, {a} or {b}?",
    "which number is {rel}: {a} or {b}?",
    "of {a} and {b}, which is {rel}?",
)
_SPELL_QUESTIONS = (
    "how do you spell {w}?",
    "what is the spelling of {w}?",
    "spell the word {w}.",
)
_COUNT_QUESTIONS = (
    "how many letters are in the word {w}?",
    "how many letters does {w} have?",
    "count the letters in {w}.",
)
_FIRST_QUESTIONS = (
    "what is the first letter of {w}?",
    "which letter does {w} start with?",
    "what letter does {w} begin with?",
)
_LAST_QUESTIONS = (
    "what is the last letter of {w}?",
    "which letter does {w} end with?",
    "what letter is at the end of {w}?",
)
_ARITH_QUESTIONS = (
    "what is {a} {op} {b}?",
    "how much is {a} {op} {b}?",
    "can you tell me what {a} {op} {b} is?",
)
_UNIT_QUESTIONS = (
    "how many {to} are in {n} {frm}?",
    "convert {n} {frm} to {to}.",
    "{n} {frm} is how many {to}?",
)

QA = tuple[str, str]


@dataclass(frozen=True)
class _Family:
    name: str
    pool: str
    weight: float
    # render(param, variant, phrasing) -> (question, answer); variants give
    # different answers (e.g. larger/smaller), phrasings the same answer.
    render: Callable[[tuple, int, int], QA]
    n_variants: int
    n_phrasings: int = 3
    heldout_per_param: int = 1


# ---------------------------------------------------------------- parameters


def _template_words() -> set[str]:
    templates = (
        _COMPARE_QUESTIONS + _SPELL_QUESTIONS + _COUNT_QUESTIONS
        + _FIRST_QUESTIONS + _LAST_QUESTIONS + _ARITH_QUESTIONS
        + _UNIT_QUESTIONS
    )
    text = " ".join(templates) + " larger smaller plus minus has letters is than"
    text += " " + " ".join(" ".join(u[:3]) for u in _UNITS)
    return set(re.findall(r"[a-z]+", re.sub(r"\{[a-z]+\}", " ", text)))


def pseudo_words() -> list[str]:
    """The fixed pseudo-word vocabulary (independent of the split seed)."""
    syllables = [c + v for c in _CONSONANTS for v in _VOWELS]
    rng = random.Random(_WORDLIST_SEED)
    # Otherwise a pseudo-word could be indistinguishable from template text.
    reserved = _template_words()
    words: list[str] = []
    for n_syllables, count in _WORD_SHAPES:
        chosen: set[str] = set()
        while len(chosen) < count:
            word = "".join(rng.choice(syllables) for _ in range(n_syllables))
            if word not in reserved:
                chosen.add(word)
        words.extend(sorted(chosen))
    return words


def _pool_params(pool: str) -> list[tuple]:
    if pool == "pairs":
        return [(a, b) for a in range(_NUMBER_MAX + 1) for b in range(a + 1, _NUMBER_MAX + 1)]
    if pool == "words":
        return [(w,) for w in pseudo_words()]
    if pool == "arith":
        r = range(_ARITH_MAX + 1)
        plus = [("plus", a, b) for a in r for b in r]
        minus = [("minus", a, b) for a in r for b in r if a >= b]
        return plus + minus
    if pool == "units":
        return [(u, n) for u in range(len(_UNITS)) for n in range(1, _UNIT_N_MAX + 1)]
    raise KeyError(pool)


def _coverage_key(pool: str, param: tuple) -> Hashable | None:
    """Items sharing a key must keep one member in training; None = free."""
    if pool == "arith" and param[0] == "plus":
        return ("plus", min(param[1:]), max(param[1:]))
    if pool == "units":
        unit, n = param
        return (_UNITS[unit][3], n)
    return None


def _split_pool(pool: str, seed: int) -> tuple[list[tuple], list[tuple]]:
    """(train params, held-out params) of one pool for this seed."""
    params = _pool_params(pool)
    rng = random.Random(f"{BUILTIN_NAME}:{seed}:split:{pool}")
    order = params[:]
    rng.shuffle(order)
    target = max(MIN_HELDOUT, round(HELDOUT_FRACTION * len(params)))
    remaining: dict[Hashable, int] = {}
    for p in params:
        key = _coverage_key(pool, p)
        if key is not None:
            remaining[key] = remaining.get(key, 0) + 1
    held: set[tuple] = set()
    for p in order:
        if len(held) >= target:
            break
        key = _coverage_key(pool, p)
        if key is not None:
            if remaining[key] <= 1:
                continue
            remaining[key] -= 1
        held.add(p)
    train = [p for p in params if p not in held]
    heldout = [p for p in order if p in held]
    return train, heldout


# ----------------------------------------------------------------- rendering


def _render_compare(param: tuple, variant: int, phrasing: int) -> QA:
    lo, hi = param
    a, b = (lo, hi) if variant % 2 == 0 else (hi, lo)
    rel, winner, loser = ("larger", hi, lo) if variant < 2 else ("smaller", lo, hi)
    question = _COMPARE_QUESTIONS[phrasing].format(rel=rel, a=a, b=b)
    return question, f"{winner} is {rel} than {loser}."


def _render_spell(param: tuple, variant: int, phrasing: int) -> QA:
    (w,) = param
    return _SPELL_QUESTIONS[phrasing].format(w=w), "-".join(w) + "."


def _render_count(param: tuple, variant: int, phrasing: int) -> QA:
    (w,) = param
    return _COUNT_QUESTIONS[phrasing].format(w=w), f"{w} has {len(w)} letters."


def _render_first_last(param: tuple, variant: int, phrasing: int) -> QA:
    (w,) = param
    if variant == 0:
        return _FIRST_QUESTIONS[phrasing].format(w=w), f"the first letter of {w} is {w[0]}."
    return _LAST_QUESTIONS[phrasing].format(w=w), f"the last letter of {w} is {w[-1]}."


def _render_arithmetic(param: tuple, variant: int, phrasing: int) -> QA:
    op, a, b = param
    result = a + b if op == "plus" else a - b
    question = _ARITH_QUESTIONS[phrasing].format(a=a, op=op, b=b)
    return question, f"{a} {op} {b} is {result}."


def _render_units(param: tuple, variant: int, phrasing: int) -> QA:
    unit, n = param
    singular, plural, target, factor = _UNITS[unit]
    frm = singular if n == 1 else plural
    question = _UNIT_QUESTIONS[phrasing].format(n=n, frm=frm, to=target)
    return question, f"{n} {frm} is {n * factor} {target}."


def render_all(family: str, param: tuple) -> list[QA]:
    """Every (question, answer) rendering of one parameter of a family."""
    fam = _family(family)
    return [fam.render(param, v, k) for v in range(fam.n_variants) for k in range(fam.n_phrasings)]


# Weights keep the hard-to-generalise families (arithmetic, units) a minority.
_FAMILIES = (
    _Family("compare", "pairs", 0.22, _render_compare, n_variants=4),
    _Family("spell", "words", 0.20, _render_spell, n_variants=1),
    _Family("count_letters", "words", 0.14, _render_count, n_variants=1),
    _Family("first_last", "words", 0.16, _render_first_last, n_variants=2, heldout_per_param=2),
    _Family("arithmetic", "arith", 0.16, _render_arithmetic, n_variants=1),
    _Family("units", "units", 0.12, _render_units, n_variants=1),
)


def _family(name: str) -> _Family:
    for fam in _FAMILIES:
        if fam.name == name:
            return fam
    raise ValueError(f"unknown family {name!r}; valid families: {', '.join(families())}")


def families() -> list[str]:
    """Family names, in a fixed order."""
    return [f.name for f in _FAMILIES]


# ---------------------------------------------------------------- generation


def _quotas(total: int) -> list[int]:
    """Split total rows over families by weight (largest remainder)."""
    weight_sum = sum(f.weight for f in _FAMILIES)
    exact = [total * f.weight / weight_sum for f in _FAMILIES]
    quotas = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (quotas[i] - exact[i], i))
    for i in by_remainder[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _row(question: str, answer: str, family: str) -> dict:
    return {"question": question, "answer": answer, "family": family}


def _train_rows(family: _Family, params: list[tuple], quota: int, rng: random.Random) -> list[dict]:
    per_param = family.n_variants * family.n_phrasings
    space = len(params) * per_param
    rows: list[dict] = []
    # Sample indices of the (parameter, variant, phrasing) space without
    # replacement, so everything is covered once before anything repeats,
    # and render only what is used.
    while len(rows) < quota and space:
        for index in rng.sample(range(space), min(space, quota - len(rows))):
            param_index, rest = divmod(index, per_param)
            variant, phrasing = divmod(rest, family.n_phrasings)
            q, a = family.render(params[param_index], variant, phrasing)
            rows.append(_row(q, a, family.name))
    return rows


def _heldout_rows(family: _Family, params: list[tuple], rng: random.Random) -> list[dict]:
    rows = []
    for p in params:
        count = min(family.heldout_per_param, family.n_variants)
        for variant in sorted(rng.sample(range(family.n_variants), count)):
            q, a = family.render(p, variant, rng.randrange(family.n_phrasings))
            rows.append(_row(q, a, family.name))
    return rows


def _check_args(split: str, seed: int, size: int | None) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ValueError(f"size must be None or a non-negative int, got {size!r}")


def generate(split: str = "train", seed: int = 0, size: int | None = None) -> list[dict]:
    """Rows {"question", "answer", "family"} of one split, deterministic.

    ``seed`` decides which parameters are held out and the order of rows.
    ``size`` sets the number of train rows (None = DEFAULT_TRAIN_SIZE); the
    held-out split is fixed by the seed and ignores ``size``.  Unknown split
    -> ValueError naming the valid splits.
    """
    _check_args(split, seed, size)
    splits = {pool: _split_pool(pool, seed) for pool in dict.fromkeys(f.pool for f in _FAMILIES)}
    rows: list[dict] = []
    if split == "heldout":
        for family in _FAMILIES:
            rng = random.Random(f"{BUILTIN_NAME}:{seed}:heldout:{family.name}")
            rows.extend(_heldout_rows(family, splits[family.pool][1], rng))
        return rows
    total = DEFAULT_TRAIN_SIZE if size is None else size
    for family, quota in zip(_FAMILIES, _quotas(total)):
        rng = random.Random(f"{BUILTIN_NAME}:{seed}:train:{family.name}")
        rows.extend(_train_rows(family, splits[family.pool][0], quota, rng))
    # Interleave families so any prefix of the split stays balanced.
    random.Random(f"{BUILTIN_NAME}:{seed}:train:order").shuffle(rows)
    return rows


# ------------------------------------------------------------------- scoring


def normalize_answer(text: str) -> str:
    """Canonical form for exact-match checking of model outputs.

    Lowercases, strips accents, collapses whitespace and drops trailing
    '.', '!' and '?', because the model decodes lowercased BPE text and may
    or may not emit the final period.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    text = " ".join(text.split())
    return text.rstrip(".!? ")


def is_correct(prediction: str, reference: str) -> bool:
    """Exact match after :func:`normalize_answer` on both sides."""
    return normalize_answer(prediction) == normalize_answer(reference)


# ---------------------------------------------------------------------- main


def main() -> None:
    start = time.perf_counter()
    by_split = {split: generate(split) for split in SPLITS}
    elapsed = time.perf_counter() - start
    print(f"corpus {BUILTIN_NAME!r}, seed 0, generated in {elapsed:.3f} s")
    print(f"{'family':<15}" + "".join(f"{s:>10}" for s in SPLITS))
    for name in families():
        counts = [sum(r["family"] == name for r in by_split[s]) for s in SPLITS]
        print(f"{name:<15}" + "".join(f"{c:>10}" for c in counts))
    print(f"{'total':<15}" + "".join(f"{len(by_split[s]):>10}" for s in SPLITS))
    for split in SPLITS:
        print(f"\nexamples ({split}):")
        seen: set[str] = set()
        for row in by_split[split]:
            if row["family"] not in seen:
                seen.add(row["family"])
                print(f"  [{row['family']}] {row['question']} -> {row['answer']}")


if __name__ == "__main__":
    main()
