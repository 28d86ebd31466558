"""Decoding: the sampling functions, the decode loop, and loading a trained run.

    python inference.py --preset demo                         # greedy and top-p answers
    python inference.py --preset demo --question "which is larger, 12 or 7?"
    python inference.py --strategy top-p --top_p 0.9 --temperature 0.8 --question "..."

The template's functions keep their names and contracts: greedy_sampling, top_p_sampling (each
returns a one-element tensor on the logits' device), sample_sequence (returns a list of ints,
[END] included when generated), tokenize_input and decode_output. Sampling functions are pure:
randomness comes only from an optional torch.Generator, so a seed gives the same answer.

sample_sequence runs generate, which reuses each layer's keys and values (model.KVCache, passed
to the model's own forward) instead of rerunning the whole sequence for every new token; the
logits equal full recomputation (tested). generate yields each token with the logits it was
drawn from; the chat page (tools/answers.py) reads from them how the token was chosen, when it
shows that. load_trained_run is the one loader of a trained run (model.pth, model.json,
tokenizer.json): this script, the chat page and the tools call it.
"""

import argparse
import os
import types
from dataclasses import dataclass

import torch

from config import KEYS, PRESETS, check_value, parse_cli
from model import KVCache, TransformerModel
from support.checkpoint import read_sidecar, shape_from_weights, sidecar_filename
from support.compat import standardize_keys
from support.errors import UserError
from support.files import file_sha256, load_file
from support.runtime import resolve_device
from tokenizer import check_vocab_fits, encode_batch, load_tokenizer, special_token_ids
from utils import run_main

MAX_INPUT_CHARS = 2000  # typed text is cut to this before tokenization (the page allows less)
GREEDY_BELOW_TEMPERATURE = 1e-3  # below this, logits / temperature can overflow: use argmax


# ----------------------------------------------------------------------------------------------
# Sampling: small pure functions over the last position's logits, shape (vocab,)

def greedy_sampling(logits, generator=None):
    """The most likely token, as a one-element tensor on the logits' device.

    >>> greedy_sampling(torch.tensor([-1., 2., -3., 3.]))
    tensor([3])
    """
    return torch.argmax(logits, dim=-1, keepdim=True)


def top_p_sampling(logits, p=0.95, temperature=0.7, generator=None, top_k=0):
    """Draw from the top-p nucleus in proportion to the renormalised probabilities.

    Returns a one-element tensor on the logits' device. p or temperature near 0 give the greedy
    token, never NaN.
    """
    ids, probs = nucleus(logits, p, temperature, top_k)  # the kept tokens, most likely first
    choice = torch.multinomial(probs, 1, generator=generator)
    return ids[choice].to(logits.device)


def nucleus(logits, p=0.95, temperature=0.7, top_k=0):
    """(token ids, probabilities) the top-p rule keeps, most likely first, renormalised.

    Temperature scales the logits before the softmax; tokens are kept in descending order of
    probability up to *and including* the one whose cumulative mass reaches p (the assignment's
    rule), and at most top_k of them when top_k > 0.
    >>> ids, probs = nucleus(torch.tensor([-1., 2, -3, 3, -3, 0, 2, 1]), p=0.95, temperature=0.7)
    >>> ids.tolist()
    [3, 1, 6]
    """
    check_sampling(p, temperature, top_k)
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


def check_sampling(p, temperature, top_k=0):
    """ValueError unless p is in (0, 1] and temperature > 0 (config.py's rules for --top_p and
    --temperature) and top_k >= 0."""
    check_value("top_p", p)
    check_value("temperature", temperature)
    if top_k < 0:
        raise ValueError(f"top-k must be >= 0, got {top_k}")


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
    """How to choose each token of an answer (the CLI's options, the chat page's sidebar)."""

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
        check_sampling(self.p, self.temperature, self.top_k)
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition penalty must be > 0, got {self.repetition_penalty}")
        return self

    def generator(self):
        if self.seed is None:
            return None
        return torch.Generator().manual_seed(int(self.seed))


def choose_token(logits, settings, generator=None, previous_ids=(), banned_ids=()):
    """One decoding decision over the last position's logits: (token id, the logits it was drawn
    from), by greedy_sampling or top_p_sampling.

    The repetition penalty is applied first, and `banned_ids` (the chat page passes [SEP], [PAD],
    [UNK]) can never be chosen: an answer made of them would only show as gaps.
    """
    logits = apply_repetition_penalty(logits, previous_ids, settings.repetition_penalty)
    if len(banned_ids):
        logits = logits.clone()
        logits[list(banned_ids)] = float("-inf")
    if settings.strategy == "greedy":
        return int(greedy_sampling(logits)), logits
    return int(top_p_sampling(logits, settings.p, settings.temperature, generator, settings.top_k)), logits


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
    """Yield (token id, the logits it was drawn from) per new token until [END], max_new_tokens,
    or the model's max_len.

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
            logits = model(pending, cache=cache)[0, -1]  # (vocab,)
        else:  # the template's way: the whole sequence again for every token
            logits = model(sequence)[0, -1]  # (vocab,)
        token_id, drawn_from = choose_token(logits, settings, generator, new_ids, banned_ids)
        yield token_id, drawn_from
        new_ids.append(token_id)
        if token_id == end_id:
            return
        pending = torch.tensor([[token_id]], device=device)  # (1, 1)
        sequence = torch.cat([sequence, pending], dim=1)  # (1, T + 1)


def sample_sequence(input_sequence, model, strategy, max_len, device, end_id, p=0.95,
                    temperature=0.7, generator=None, top_k=0, repetition_penalty=1.0, use_cache=True,
                    banned_ids=()):
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
    return [token_id for token_id, _ in generate(model, prompt, end_id, settings, generator,
                                                 use_cache=use_cache, banned_ids=banned_ids)]


# ----------------------------------------------------------------------------------------------
# Text in, text out

def clean_question(text):
    """Typed text as the model should see it: at most MAX_INPUT_CHARS, outer whitespace removed."""
    return str(text)[:MAX_INPUT_CHARS].strip()


def tokenize_input(tokenizer, text, sep_id):
    """Ids of the question followed by [SEP], a 1-D tensor (template). Typed "[SEP]" stays text."""
    ids = encode_batch(tokenizer, [clean_question(text)])[0]
    return torch.tensor(ids + [sep_id], dtype=torch.long)


def decode_output(tokenizer, tokens):
    """Text of generated ids; special tokens ([END]) are left out (template)."""
    return tokenizer.decode([int(t) for t in tokens])


# ----------------------------------------------------------------------------------------------
# Loading a trained run: model.pth (with model.json beside it) and tokenizer.json

def load_trained_run(config, device=None):
    """(model in eval mode, tokenizer, info from model.json, special-token ids) for `config`'s files,
    on config.device unless `device` is given: the one loader of a trained run."""
    device = resolve_device(config.device if device is None else device)
    tokenizer = load_tokenizer(config)
    model, info = load_trained_model(config, device, tokenizer)
    return model, tokenizer, info, special_token_ids(tokenizer, config)


def load_trained_model(config, device="cpu", tokenizer=None):
    """(model in eval mode on `device`, info dict) from config.model_filename.

    The model's shape comes from model.json, or from the weights themselves for a template
    checkpoint, so a chat page started with another preset still builds the right model; then
    info["notes"] says which head count was assumed and why (head_count_for). A tokenizer whose
    vocabulary does not fit the model, or that is not the one the model was trained with, is
    refused with a message saying what to do.
    """
    path = config.model_filename
    if not os.path.isfile(path):
        raise UserError(f"no trained model at {path!r}; train one with "
                        f"`python train.py --preset {config.preset}` (or `make demo`), or download "
                        f"model.pth, model.json and tokenizer.json from your Colab run's temp/ folder")
    weights = load_file(path, "model checkpoint")
    if not isinstance(weights, dict) or not any(k.endswith("embedding.weight") for k in weights):
        raise UserError(f"{path!r} holds no TransformerModel weights; use model.pth, not optimizer.pth")
    weights = standardize_keys(dict(weights))
    info = read_sidecar(path)
    shape, notes = info.get("model_shape"), []
    if not shape:  # a template checkpoint: no model.json beside it
        shape = shape_from_weights(weights, config)
    cfg = types.SimpleNamespace(**{**vars(config), **shape})
    if tokenizer is not None:
        check_vocab_fits(tokenizer, cfg.vocab_size, config, model_filename=path)
        expected = info.get("tokenizer_sha256")
        if expected and os.path.isfile(config.tokenizer_filename) and file_sha256(config.tokenizer_filename) != expected:
            raise UserError(f"model {path!r} was trained with a different tokenizer than "
                            f"{config.tokenizer_filename!r}; use the tokenizer.json of the same run")
    if "num_heads" not in shape:
        cfg.num_heads, note = head_count_for(shape, config)
        shape, notes = {**shape, "num_heads": cfg.num_heads}, [note]
    model = TransformerModel(cfg)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise UserError(f"model checkpoint {path!r} names its tensors differently from model.py "
                        f"(missing: {', '.join(missing[:4]) or 'none'}{' ...' if len(missing) > 4 else ''}; "
                        f"not in model.py: {', '.join(unexpected[:4]) or 'none'}"
                        f"{' ...' if len(unexpected) > 4 else ''}): it was saved from a model whose "
                        f"modules have other names; rename its keys to model.py's, or retrain")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # tensors of other shapes than the model.json beside them says
        reason = " ".join(str(exc).split())[:300]
        raise UserError(f"model checkpoint {path!r} does not fit the model shape in "
                        f"{sidecar_filename(path)!r} ({reason}); use the model.json saved with "
                        f"these weights, or retrain") from None
    return model.to(device).eval(), {**info, "model_shape": shape, "notes": notes}


def head_count_for(shape, config):
    """(num_heads, note saying where it came from) for weights of `shape` without model.json.

    The weights cannot tell the head count: the attention's projection matrices have the same
    shape for 4 or 8 heads, and a model built with the wrong count loads without complaint and
    answers nonsense. So the count comes from --num_heads when given, else from the preset whose
    shape the weights have; when the config's preset and the weights disagree, or no preset fits,
    a UserError asks for --num_heads rather than guessing.
    """
    def preset_value(preset, key):
        return PRESETS[preset].get(key, KEYS[key].default)

    def fits(values):
        return all(values(key) == shape[key] for key in shape)

    missing = f"{sidecar_filename(config.model_filename)!r} is missing, so the head count is not in the checkpoint"
    divisors = [n for n in range(1, shape["embed_size"] + 1) if shape["embed_size"] % n == 0]
    how = (f"pass --num_heads N with the count used in training (N divides embed_size "
           f"{shape['embed_size']}: {', '.join(map(str, divisors))})")
    heads = config.num_heads
    if heads != preset_value(config.preset, "num_heads"):
        source = "--num_heads"
    elif fits(lambda key: getattr(config, key)):
        source = f"the config, preset {config.preset!r}, whose model shape these weights have"
    else:
        presets = [name for name in PRESETS if fits(lambda key: preset_value(name, key))]
        if not presets:
            raise UserError(f"{missing}, and the weights (embed {shape['embed_size']}, "
                            f"{shape['num_layers']} layers, vocabulary {shape['vocab_size']}) fit no "
                            f"preset to take it from: {how}")
        other = preset_value(presets[0], "num_heads")
        if other != heads:
            raise UserError(f"{missing}: preset {config.preset!r} says num_heads={heads}, but the "
                            f"weights have the shape of preset {presets[0]!r}, which has {other} heads; "
                            f"pass --num_heads {other} if that is how it was trained, or {how}")
        source = f"preset {presets[0]!r}, whose shape these weights have"
    note = (f"note: {missing}: assuming num_heads={heads} (from {source}); if the model was "
            f"trained with another head count its answers are wrong: {how}")
    return heads, note


# ----------------------------------------------------------------------------------------------
# `python inference.py`: answers with greedy and top-p sampling, as the template's main

def main():
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
        for strategy in strategies:
            SamplingSettings(strategy, config.top_p, config.temperature, args.top_k, args.repetition_penalty,
                             args.max_new_tokens).check()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    model, tokenizer, info, ids = load_trained_run(config)
    for note in info["notes"]:
        print(note)
    device = next(model.parameters()).device
    for strategy in strategies:
        print("Greedy sampling:" if strategy == "greedy" else
              f"Top-p sampling (p={config.top_p}, temperature={config.temperature}):")
        generator = None if args.sample_seed is None else torch.Generator().manual_seed(args.sample_seed)
        for question in args.question or _default_questions(config):
            prompt = tokenize_input(tokenizer, question, ids["sep"]).tolist()
            prompt = fit_prompt(prompt, ids["sep"], model.max_len, args.max_new_tokens)
            answer = sample_sequence(torch.tensor(prompt), model, strategy, len(prompt) + args.max_new_tokens,
                                     device, ids["end"], p=config.top_p, temperature=config.temperature,
                                     generator=generator, top_k=args.top_k,
                                     repetition_penalty=args.repetition_penalty,
                                     banned_ids=[ids["sep"], ids["pad"], ids["unk"]])
            print(f"\tQuestion: {question}\n\tAnswer: {decode_output(tokenizer, answer)}")


def _default_questions(config):
    if config.dataset == "builtin":
        from support import corpus

        return [row["question"] for row in corpus.generate("heldout")[::150]]
    return ["what is the largest dog breed?"]  # the template's example


if __name__ == "__main__":
    run_main(main)
