"""Decoding: sampling functions, a KV-cached decode loop, and streaming text for the chat page.

    python inference.py --preset demo                         # greedy and top-p answers
    python inference.py --preset demo --question "which is larger, 12 or 7?"
    python inference.py --strategy top-p --top_p 0.9 --temperature 0.8 --question "..."

The template's functions keep their names and contracts: greedy_sampling, top_p_sampling (each
returns a one-element tensor on the logits' device), sample_sequence (returns a list of ints,
[END] included when generated), tokenize_input and decode_output. Sampling functions are pure:
randomness comes only from an optional torch.Generator, so a seed gives the same answer.

Decoding reuses each layer's keys and values (model.KVCache, passed to the model's own forward)
instead of rerunning the whole sequence for every new token; the logits equal full recomputation
(tested). The chat page and this script draw every token with greedy_sampling or top_p_sampling.
"""

import argparse
import math
from dataclasses import dataclass, field

import torch

from model import KVCache

MAX_INPUT_CHARS = 2000  # typed text is cut to this before tokenization (the page allows less)
BANNED_IN_ANSWERS = ("sep", "pad", "unk")  # special tokens the chat page keeps out of answers
GREEDY_BELOW_TEMPERATURE = 1e-3  # below this, logits / temperature can overflow: use argmax


# ----------------------------------------------------------------------------------------------
# Sampling: small pure functions over the last position's logits, shape (vocab,)

def greedy_sampling(logits, generator=None):
    """The most likely token, as a one-element tensor on the logits' device.

    >>> greedy_sampling(torch.tensor([-1., 2., -3., 3.]))
    tensor([3])
    """
    return torch.argmax(logits, dim=-1, keepdim=True)


def nucleus(logits, p=0.95, temperature=0.7, top_k=0):
    """(token ids, probabilities) the top-p rule keeps, most likely first, renormalised.

    Temperature scales the logits before the softmax; tokens are kept in descending order of
    probability up to *and including* the one whose cumulative mass reaches p (the assignment's
    rule), and at most top_k of them when top_k > 0.
    >>> ids, probs = nucleus(torch.tensor([-1., 2, -3, 3, -3, 0, 2, 1]), p=0.95, temperature=0.7)
    >>> ids.tolist()
    [3, 1, 6]
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"top-p must be in (0, 1], got {p}")
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top-k must be >= 0, got {top_k}")
    logits = logits.detach().float().cpu()
    if temperature < GREEDY_BELOW_TEMPERATURE:
        return greedy_sampling(logits), torch.ones(1)
    probs = torch.softmax(logits / temperature, dim=-1)
    sorted_probs, sorted_ids = torch.sort(probs, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    keep = int((mass_before < p).sum().clamp(min=1))  # the first token is always kept
    if top_k:
        keep = min(keep, top_k)
    kept = sorted_probs[:keep]
    return sorted_ids[:keep], kept / kept.sum()


def top_p_sampling(logits, p=0.95, temperature=0.7, generator=None, top_k=0):
    """Draw from the top-p nucleus in proportion to the renormalised probabilities.

    Returns a one-element tensor on the logits' device. p or temperature near 0 give the greedy
    token, never NaN.
    """
    ids, probs = nucleus(logits, p, temperature, top_k)
    choice = torch.multinomial(probs, 1, generator=generator)
    return ids[choice].to(logits.device)


def apply_repetition_penalty(logits, previous_ids, penalty):
    """Make tokens already generated less likely (CTRL's rule: divide positive logits, multiply
    negative ones). penalty 1.0 changes nothing.

    >>> apply_repetition_penalty(torch.tensor([2., -2., 1.]), [0, 1], 2.0)
    tensor([ 1., -4.,  1.])
    """
    if penalty == 1.0 or not len(previous_ids):
        return logits
    if penalty <= 0:
        raise ValueError(f"repetition penalty must be > 0, got {penalty}")
    logits = logits.clone()
    seen = torch.as_tensor(sorted(set(int(i) for i in previous_ids)), device=logits.device)
    values = logits[seen]
    logits[seen] = torch.where(values > 0, values / penalty, values * penalty)
    return logits


@dataclass(frozen=True)
class SamplingSettings:
    strategy: str = "top-p"  # "greedy" or "top-p"
    p: float = 0.95
    temperature: float = 0.7
    top_k: int = 0  # 0: no limit
    repetition_penalty: float = 1.0  # 1.0: off
    max_new_tokens: int = 100
    seed: int | None = None  # None: a fresh random draw each time

    def check(self):
        if self.strategy not in ("greedy", "top-p"):
            raise ValueError(f"unknown sampling strategy {self.strategy!r}; use 'greedy' or 'top-p'")
        if self.max_new_tokens < 1:
            raise ValueError(f"max answer length must be >= 1, got {self.max_new_tokens}")
        nucleus(torch.zeros(2), self.p, self.temperature, self.top_k)  # validates the numbers
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition penalty must be > 0, got {self.repetition_penalty}")
        return self

    def generator(self):
        if self.seed is None:
            return None
        return torch.Generator().manual_seed(int(self.seed))


@dataclass
class Step:
    """How one token was chosen: for the chat page's "how was this sampled" table."""

    token_id: int
    probability: float  # under the distribution it was drawn from (1.0 for greedy)
    nucleus_size: int  # tokens it was drawn from (1 for greedy)
    alternatives: list = field(default_factory=list)  # [(token_id, probability)], top 5
    model_probability: float = math.nan  # the model's own softmax (temperature 1), for comparing answers


def choose_token(logits, settings, generator=None, previous_ids=(), banned_ids=()):
    """One decoding decision over the last position's logits, made by greedy_sampling or
    top_p_sampling; returns a Step recording it.

    The repetition penalty is applied first, and `banned_ids` (the chat page passes [SEP], [PAD],
    [UNK]) can never be chosen: an answer made of them would only show as gaps. The record is
    read off the same `nucleus` rule that top_p_sampling draws from.
    """
    logits = apply_repetition_penalty(logits, previous_ids, settings.repetition_penalty)
    if len(banned_ids):
        logits = logits.clone()
        logits[list(banned_ids)] = float("-inf")
    if settings.strategy == "greedy":
        token_id, probability, nucleus_size = int(greedy_sampling(logits)), 1.0, 1
    else:
        token_id = int(top_p_sampling(logits, settings.p, settings.temperature, generator, settings.top_k))
        ids, probs = nucleus(logits, settings.p, settings.temperature, settings.top_k)
        probability, nucleus_size = float(probs[ids == token_id].sum()), len(ids)
    shown = torch.softmax(logits.float() / max(settings.temperature, GREEDY_BELOW_TEMPERATURE), -1)
    top = torch.topk(shown, k=min(5, shown.numel()))
    model_probability = float(torch.softmax(logits.float(), -1)[token_id])
    return Step(token_id, probability, nucleus_size, list(zip(top.indices.tolist(), top.values.tolist())),
                model_probability)


# ----------------------------------------------------------------------------------------------
# The decode loop

def fit_prompt(prompt_ids, sep_id, max_len, max_new_tokens):
    """Cut an overlong prompt from the left, keeping its final [SEP], so an answer fits.

    Room is kept for min(max_new_tokens, max_len // 2) answer tokens.
    >>> fit_prompt([5, 6, 7, 8, 9, 0], sep_id=0, max_len=8, max_new_tokens=4)
    [7, 8, 9, 0]
    """
    room = max(1, min(max_new_tokens, max_len // 2))
    limit = max_len - room
    if len(prompt_ids) <= limit:
        return list(prompt_ids)
    question = [t for t in prompt_ids[:-1]] if prompt_ids[-1] == sep_id else list(prompt_ids)
    return question[len(question) - (limit - 1):] + [sep_id] if limit > 1 else [sep_id]


@torch.no_grad()
def generate(model, prompt_ids, end_id, settings, generator=None, sep_id=None, use_cache=True,
             banned_ids=()):
    """Yield a Step per new token until [END], max_new_tokens, or the model's max_len.

    `prompt_ids` is a list of ints ending in [SEP]; with sep_id it is cut from the left if needed
    (fit_prompt). Draws come from `generator`, else from one seeded with settings.seed.
    """
    settings.check()
    model.eval()
    device = next(model.parameters()).device
    if sep_id is not None:
        prompt_ids = fit_prompt(prompt_ids, sep_id, model.max_len, settings.max_new_tokens)
    if len(prompt_ids) >= model.max_len:
        return
    generator = generator if generator is not None else settings.generator()
    sequence = torch.tensor([prompt_ids], dtype=torch.long, device=device)  # (1, T)
    cache = KVCache(len(model.layers)) if use_cache else None
    pending, new_ids = sequence, []
    while len(new_ids) < settings.max_new_tokens and sequence.size(1) < model.max_len:
        if use_cache:  # only the new tokens run through the model; earlier ones are in the cache
            logits = model(pending, cache=cache)[0, -1]
        else:  # the template's way: the whole sequence again for every token
            logits = model(sequence)[0, -1]
        step = choose_token(logits, settings, generator, new_ids, banned_ids)
        yield step
        new_ids.append(step.token_id)
        if step.token_id == end_id:
            return
        pending = torch.tensor([[step.token_id]], device=device)
        sequence = torch.cat([sequence, pending], dim=1)


def sample_sequence(input_sequence, model, strategy, max_len, device, end_id, p=0.95,
                    temperature=0.7, generator=None, top_k=0, repetition_penalty=1.0, use_cache=True):
    """The template's decode loop: new token ids (a list of ints, [END] included if generated).

    Stops at [END] or when the sequence reaches `max_len` tokens (prompt included), as the
    template does. The keyword arguments from `generator` on are this project's additions.
    """
    prompt = [int(t) for t in torch.as_tensor(input_sequence).view(-1)]
    if max_len <= 0:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if not prompt:
        raise ValueError("input_sequence is empty; it needs at least the [SEP] token (see tokenize_input)")
    settings = SamplingSettings(strategy=strategy, p=p, temperature=temperature, top_k=top_k,
                                repetition_penalty=repetition_penalty,
                                max_new_tokens=max(1, min(max_len, model.max_len) - len(prompt)))
    model.to(device)
    return [step.token_id for step in generate(model, prompt, end_id, settings, generator,
                                               use_cache=use_cache)]


# ----------------------------------------------------------------------------------------------
# Text in, text out

def clean_question(text):
    """Typed text as the model should see it: at most MAX_INPUT_CHARS, outer whitespace removed."""
    return str(text)[:MAX_INPUT_CHARS].strip()


def tokenize_input(tokenizer, text, sep_id):
    """Ids of the question followed by [SEP], a 1-D tensor (template). Typed "[SEP]" stays text."""
    from tokenizer import encode_batch

    ids = encode_batch(tokenizer, [clean_question(text)])[0]
    return torch.tensor(ids + [sep_id], dtype=torch.long)


def decode_output(tokenizer, tokens):
    """Text of generated ids; special tokens ([END]) are left out (template)."""
    return tokenizer.decode([int(t) for t in tokens])


class AnswerStream:
    """Iterate to get the answer's text piece by piece; `steps` records how each token was chosen.

    Each piece is the new suffix of decoding all ids so far, held back while it ends in an
    incomplete UTF-8 character (U+FFFD), so multi-byte characters never arrive broken and the
    pieces join to exactly decode_output(ids). With a trained model (the demo's answers this):

        "".join(AnswerStream(model, tokenizer, "which is larger, 3 or 5?", SamplingSettings()))
    """

    def __init__(self, model, tokenizer, question, settings, special_ids=None, use_cache=True,
                 ban_special=True):
        from tokenizer import special_token_ids
        from config import config as default_config

        self.model, self.tokenizer, self.settings = model, tokenizer, settings.check()
        ids = special_ids or special_token_ids(tokenizer, default_config)
        self.sep_id, self.end_id = ids["sep"], ids["end"]
        # [SEP], [PAD], [UNK] would only show as gaps; ban_special=False allows them, so greedy is
        # the assignment's pure argmax over the whole vocabulary.
        self.banned = [ids[k] for k in BANNED_IN_ANSWERS if k in ids] if ban_special else []
        self.prompt = tokenize_input(tokenizer, question, self.sep_id).tolist()
        self.ids, self.steps, self.text, self.use_cache = [], [], "", use_cache

    def __iter__(self):
        for step in generate(self.model, self.prompt, self.end_id, self.settings, sep_id=self.sep_id,
                             use_cache=self.use_cache, banned_ids=self.banned):
            self.steps.append(step)
            if step.token_id == self.end_id:
                break
            self.ids.append(step.token_id)
            text = decode_output(self.tokenizer, self.ids)
            if text.endswith("\ufffd"):
                continue  # wait for the rest of a multi-byte character
            if len(text) > len(self.text) and text.startswith(self.text):
                piece, self.text = text[len(self.text):], text
                yield piece
        final = decode_output(self.tokenizer, self.ids)
        if final != self.text:  # a dangling partial character, or a decoder that rewrote text
            piece = final[len(self.text):] if final.startswith(self.text) else final
            self.text = final
            if piece:
                yield piece

    @property
    def finished_by_end(self):
        return bool(self.steps) and self.steps[-1].token_id == self.end_id


def main():
    from checkpoint import load_trained_model
    from config import parse_cli
    from tokenizer import load_tokenizer, special_token_ids
    from utils import UserError, resolve_device

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--question", action="append", help="a question (repeatable)")
    parser.add_argument("--strategy", choices=["greedy", "top-p", "both"], default="both")
    parser.add_argument("--max_new_tokens", type=int, default=100)
    parser.add_argument("--top_k", type=int, default=0)
    parser.add_argument("--repetition_penalty", type=float, default=1.0)
    parser.add_argument("--sample_seed", type=int, default=None,
                        help="seed for top-p sampling (default: a fresh draw each time)")
    config, args = parse_cli(parser=parser)
    strategies = ["greedy", "top-p"] if args.strategy == "both" else [args.strategy]
    try:  # refuse bad sampling settings before loading anything
        all_settings = {strategy: SamplingSettings(strategy, config.top_p, config.temperature, args.top_k,
                                                   args.repetition_penalty, args.max_new_tokens,
                                                   args.sample_seed).check()
                        for strategy in strategies}
    except ValueError as exc:
        raise UserError(str(exc)) from None
    device = resolve_device(config.device)
    tokenizer = load_tokenizer(config)
    model, info = load_trained_model(config, device, tokenizer)
    for note in info["notes"]:
        print(note)
    ids = special_token_ids(tokenizer, config)
    questions = args.question or _default_questions(config)
    for strategy in strategies:
        label = "Greedy sampling:" if strategy == "greedy" else (
            f"Top-p sampling (p={config.top_p}, temperature={config.temperature}):")
        print(label)
        for question in questions:
            answer = "".join(AnswerStream(model, tokenizer, question, all_settings[strategy], ids))
            print(f"\tQuestion: {question}\n\tAnswer: {answer}")


def _default_questions(config):
    if config.dataset == "builtin":
        import corpus

        return [row["question"] for row in corpus.generate("heldout")[::150]]
    return ["what is the largest dog breed?"]  # the template's example


if __name__ == "__main__":
    from utils import run_main

    run_main(main)
