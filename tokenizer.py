"""Text to ids: train, save and load the byte-level BPE tokenizer of the course template.

    python tokenizer.py                       # train temp/tokenizer.json on config.dataset if missing
    python tokenizer.py --preset tiny         # the tiny CPU preset (temp/tiny/tokenizer.json)
    python tokenizer.py --preset demo         # the built-in generated corpus, offline
    python tokenizer.py --dataset pairs.jsonl.gz --retrain

The pipeline is the template's, so a tokenizer.json trained by the template loads here and vice
versa: BertNormalizer (lowercases, strips accents, removes control characters), byte-level
pre-tokenizer and decoder, BPE with the special tokens [SEP], [END], [PAD], [UNK] as ids 0..3.
One addition: the 256 byte symbols are always in the vocabulary, so any text (emoji, CJK) encodes
without [UNK].

Trap: by default `tokenizers` turns the text "[SEP]" typed by a user into the special id 0. Every
tokenizer this module returns has `encode_special_tokens = True`, so typed text stays text and
special ids only ever come from the code that builds sequences.
"""

import argparse
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm.auto import tqdm

from config import parse_cli
from support.data_sources import load_qa_pairs
from support.errors import UserError
from support.files import ensure_parent_dir
from utils import print_config, run_main


def special_tokens(config):
    """The special tokens in the template's order, which fixes their ids: [SEP]=0 ... [UNK]=3."""
    return [config.sep_token, config.end_token, config.pad_token, config.unk_token]


def example_to_text(example):
    """Question and answer joined by a space: the text the tokenizer learns from (template)."""
    return example["question"] + " " + example["answer"]


def build_tokenizer(config):
    """An untrained tokenizer with the template's pipeline."""
    tokenizer = Tokenizer(models.BPE(unk_token=config.unk_token))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def fit_tokenizer(config, texts, length=None, vocab_size=None, min_frequency=None, show_progress=False):
    """A tokenizer with the template's pipeline trained on `texts` (any iterable of strings).

    The 256 byte symbols are always in the vocabulary; the result encodes typed special-token
    strings as text. train_tokenizer uses it; tests and benchmarks train small ones in memory.
    """
    tokenizer = build_tokenizer(config)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size or config.vocab_size,
        min_frequency=config.min_frequency if min_frequency is None else min_frequency,
        special_tokens=special_tokens(config),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    return protect_special_tokens(tokenizer)


def train_tokenizer(config):
    """Train on config.dataset (whole split, as the template) and save to config.tokenizer_filename."""
    ensure_parent_dir(config.tokenizer_filename)  # fail before training, not after
    pairs = load_qa_pairs(config.dataset, config.split)
    print(f"Combining strings from {pairs.description} ({len(pairs):,} pairs)...")
    texts = (example_to_text({"question": q, "answer": a}) for q, a in zip(pairs.questions, pairs.answers))
    tokenizer = fit_tokenizer(config, tqdm(texts, total=len(pairs), desc="Reading pairs", unit=" pairs"),
                              length=len(pairs), show_progress=True)
    tokenizer.save(config.tokenizer_filename)
    print(f"Saved tokenizer to {config.tokenizer_filename}")
    return tokenizer


def protect_special_tokens(tokenizer):
    """Make typed "[SEP]"/"[END]" encode as plain text (see the module docstring)."""
    tokenizer.encode_special_tokens = True
    return tokenizer


def load_tokenizer(config):
    """Load config.tokenizer_filename and check that it has the special tokens the code needs."""
    path = config.tokenizer_filename
    if not os.path.isfile(path):
        raise UserError(f"tokenizer file {path!r} not found; create it with "
                        f"`python tokenizer.py --preset {config.preset}`")
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as exc:  # the Rust side raises a bare Exception for malformed JSON
        raise UserError(f"{path!r} is not a valid tokenizer file ({exc}); delete it and run "
                        f"`python tokenizer.py --preset {config.preset}`") from None
    special_token_ids(tokenizer, config, where=path)
    return protect_special_tokens(tokenizer)


def special_token_ids(tokenizer, config, where="the tokenizer"):
    """{'sep': 0, 'end': 1, 'pad': 2, 'unk': 3} for a template tokenizer; errors if one is missing."""
    ids = {}
    for name, token in zip(("sep", "end", "pad", "unk"), special_tokens(config)):
        ids[name] = tokenizer.token_to_id(token)
        if ids[name] is None:
            raise UserError(f"{where} has no {token} token; it was not trained by tokenizer.py. "
                            f"Delete it and run `python tokenizer.py --preset {config.preset}`")
    return ids


def check_vocab_fits(tokenizer, vocab_size, config, model_filename=None):
    """`tokenizer`, if its vocabulary fits a model of `vocab_size` rows; else a UserError saying
    what to do. A tokenizer of exactly vocab_size tokens fits (the template's trainer makes one).

    >>> from config import make_config
    >>> tok = fit_tokenizer(make_config("tiny"), ["hi there"] * 3, vocab_size=270, min_frequency=1)
    >>> check_vocab_fits(tok, 265, make_config("tiny"))
    Traceback (most recent call last):
    ...
    support.errors.UserError: tokenizer 'temp/tiny/tokenizer.json' has 266 tokens but config.vocab_size=265; ...
    """
    size = tokenizer.get_vocab_size()
    if size <= vocab_size:
        return tokenizer
    if model_filename:  # a trained model: the two files come from different runs
        raise UserError(f"tokenizer {config.tokenizer_filename!r} has {size} tokens but model "
                        f"{model_filename!r} only {vocab_size}: they come from different runs; use the "
                        f"tokenizer the model was trained with")
    raise UserError(f"tokenizer {config.tokenizer_filename!r} has {size} tokens but config.vocab_size="
                    f"{vocab_size}; use the preset it was trained for, or retrain it with "
                    f"`python tokenizer.py --preset {config.preset} --retrain`")


def encode_batch(tokenizer, texts, batch_size=16_384, desc="Tokenizing"):
    """Ids of many texts (no special tokens added), in batches with a progress bar.

    >>> from config import make_config
    >>> tok = fit_tokenizer(make_config("tiny"), ["hi there"] * 3, vocab_size=270, min_frequency=1)
    >>> ids = encode_batch(tok, ["hi there", ""]); ids, [tok.id_to_token(i) for i in ids[0]]
    ([[261, 265], []], ['hi', 'Ġthere'])
    """
    protect_special_tokens(tokenizer)
    ids = []
    with tqdm(total=len(texts), desc=desc, unit=" texts", disable=len(texts) < batch_size) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            ids.extend(e.ids for e in tokenizer.encode_batch_fast(chunk, add_special_tokens=False))
            bar.update(len(chunk))
    return ids


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--retrain", action="store_true", help="train even if the file exists")
    config, args = parse_cli(parser=parser)
    print_config(config)
    if args.retrain or not os.path.exists(config.tokenizer_filename):
        tokenizer = train_tokenizer(config)
    else:
        print(f"Loading existing tokenizer {config.tokenizer_filename} (use --retrain to replace it)")
        tokenizer = load_tokenizer(config)
    print(f"Vocabulary size: {tokenizer.get_vocab_size()}")

    ids = special_token_ids(tokenizer, config)
    question, answer = "How many legs does a cat have?", "Five, unless it has lost one."
    # Built from ids, not by typing "[SEP]" into the text: typed special tokens stay plain text.
    sequence = (encode_batch(tokenizer, [question])[0] + [ids["sep"]]
                + encode_batch(tokenizer, [answer])[0] + [ids["end"]])
    print(f"Question: {question}\nAnswer: {answer}")
    print(f"Ids: {sequence}")
    print(f"Decoded: {tokenizer.decode(sequence, skip_special_tokens=False)}")


if __name__ == "__main__":
    run_main(main)
