"""Answers for the chat page: the text streamed piece by piece, and, when asked, how each token
was chosen (the page's "How was this answer sampled?" table).

    stream = AnswerStream(model, tokenizer, "which is larger, 3 or 5?", SamplingSettings(), records=True)
    text = "".join(stream)          # what st.write_stream shows as it comes
    stream.steps                    # a Step per token: probability, nucleus size, alternatives

The tokens are drawn by inference.generate, that is by greedy_sampling and top_p_sampling, the
graded functions; a Step is read afterwards from the logits each token was drawn from, with the
same `nucleus` rule, and only when records=True.
"""

import math
from dataclasses import dataclass, field

import torch

from inference import GREEDY_BELOW_TEMPERATURE, decode_output, generate, nucleus, tokenize_input
from tokenizer import special_token_ids

BANNED_IN_ANSWERS = ("sep", "pad", "unk")  # special tokens the chat page keeps out of answers


@dataclass
class Step:
    """How one token was chosen: for the chat page's "how was this sampled" table."""

    token_id: int
    probability: float  # under the distribution it was drawn from (1.0 for greedy)
    nucleus_size: int  # tokens it was drawn from (1 for greedy)
    alternatives: list = field(default_factory=list)  # [(token_id, probability)], top 5
    model_probability: float = math.nan  # the model's own softmax (temperature 1), for comparing answers


def record(token_id, logits, settings):
    """The Step of `token_id`, drawn from `logits` (the last position's, after the repetition
    penalty and bans, as inference.generate yields them) with `settings`.

    >>> from inference import SamplingSettings
    >>> step = record(3, torch.tensor([-1., 2, -3, 3, -3, 0, 2, 1]), SamplingSettings(p=0.95, temperature=0.7))
    >>> step.nucleus_size, round(step.probability, 3)
    (3, 0.676)
    """
    if settings.strategy == "greedy":
        probability, nucleus_size = 1.0, 1
    else:
        ids, probs = nucleus(logits, settings.p, settings.temperature, settings.top_k)
        probability, nucleus_size = float(probs[ids == token_id].sum()), len(ids)
    logits = logits.float()
    shown = torch.softmax(logits / max(settings.temperature, GREEDY_BELOW_TEMPERATURE), -1)
    top = torch.topk(shown, k=min(5, shown.numel()))
    model_probability = float(torch.softmax(logits, -1)[token_id])
    return Step(token_id, probability, nucleus_size, list(zip(top.indices.tolist(), top.values.tolist())),
                model_probability)


class AnswerStream:
    """Iterate to get the answer's text piece by piece; `token_ids` holds what was generated ([END]
    included), and with records=True (the chat page asks) `steps` how each token was chosen.

    Each piece is the new suffix of decoding all ids so far, held back while it ends in an
    incomplete UTF-8 character (U+FFFD), so multi-byte characters never arrive broken and the
    pieces join to exactly decode_output(ids).
    """

    def __init__(self, model, tokenizer, question, settings, special_ids=None, use_cache=True,
                 ban_special=True, records=False):
        from config import config as default_config

        self.model, self.tokenizer, self.settings = model, tokenizer, settings.check()
        ids = special_ids or special_token_ids(tokenizer, default_config)
        self.sep_id, self.end_id = ids["sep"], ids["end"]
        # [SEP], [PAD], [UNK] would only show as gaps; ban_special=False allows them, so greedy is
        # the assignment's pure argmax over the whole vocabulary.
        self.banned = [ids[k] for k in BANNED_IN_ANSWERS if k in ids] if ban_special else []
        self.prompt = tokenize_input(tokenizer, question, self.sep_id).tolist()
        self.records, self.use_cache = records, use_cache
        self.token_ids, self.steps, self.text = [], [], ""

    def __iter__(self):
        answer = []  # the ids decoded into text: all but [END]
        for token_id, logits in generate(self.model, self.prompt, self.end_id, self.settings,
                                         sep_id=self.sep_id, use_cache=self.use_cache, banned_ids=self.banned):
            self.token_ids.append(token_id)
            if self.records:
                self.steps.append(record(token_id, logits, self.settings))
            if token_id == self.end_id:
                break
            answer.append(token_id)
            text = decode_output(self.tokenizer, answer)
            if text.endswith("\ufffd"):
                continue  # wait for the rest of a multi-byte character
            if len(text) > len(self.text) and text.startswith(self.text):
                piece, self.text = text[len(self.text):], text
                yield piece
        final = decode_output(self.tokenizer, answer)
        if final != self.text:  # a dangling partial character, or a decoder that rewrote text
            piece = final[len(self.text):] if final.startswith(self.text) else final
            self.text = final
            if piece:
                yield piece

    @property
    def finished_by_end(self):
        return bool(self.token_ids) and self.token_ids[-1] == self.end_id
