"""inference.py: sampling on hand-written logits, the decode loop, KV-cache parity; streaming and the
per-token records of tools/answers.py."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from config import make_config
from helpers import ODD_TEXTS, assert_one_line_error, make_tiny_config, run_script, small_model
from inference import (SamplingSettings, choose_token, decode_output, fit_prompt, generate, greedy_sampling,
                       nucleus, sample_sequence, tokenize_input, top_p_sampling)
from model import TransformerModel
from tokenizer import special_token_ids
from tools.answers import AnswerStream, record

ASSIGNMENT_LOGITS = torch.tensor([-1.0, 2, -3, 3, -3, 0, 2, 1])
SEP, END = 0, 1


def test_greedy_returns_a_one_element_tensor_on_the_logits_device():
    token = greedy_sampling(ASSIGNMENT_LOGITS)
    assert token.shape == (1,) and token.item() == 3 and token.device == ASSIGNMENT_LOGITS.device


def test_assignment_top_p_example_keeps_exactly_3_1_6():
    ids, probs = nucleus(ASSIGNMENT_LOGITS, p=0.95, temperature=0.7)
    assert ids.tolist() == [3, 1, 6]
    full = torch.softmax(ASSIGNMENT_LOGITS / 0.7, -1)
    assert full[[3, 1, 6]].sum() >= 0.95 > full[[3, 1]].sum()  # the PDF rounds it to 0.951
    torch.testing.assert_close(probs, full[[3, 1, 6]] / full[[3, 1, 6]].sum())


def test_top_p_draws_only_from_the_nucleus_in_proportion():
    generator = torch.Generator().manual_seed(0)
    draws = [top_p_sampling(ASSIGNMENT_LOGITS, 0.95, 0.7, generator).item() for _ in range(3000)]
    assert set(draws) == {3, 1, 6}
    share_3 = draws.count(3) / len(draws)
    assert abs(share_3 - 0.643 / 0.951) < 0.03  # proportional, not uniform (which would be 1/3)


def test_same_seed_same_draw():
    a = [top_p_sampling(ASSIGNMENT_LOGITS, 0.95, 1.5, torch.Generator().manual_seed(7)).item() for _ in range(5)]
    b = [top_p_sampling(ASSIGNMENT_LOGITS, 0.95, 1.5, torch.Generator().manual_seed(7)).item() for _ in range(5)]
    assert a == b


@pytest.mark.parametrize("p, temperature", [(1e-9, 0.7), (0.95, 1e-9), (1e-6, 1e-6), (0.5, 1e-4)])
def test_tiny_p_or_temperature_equals_greedy(p, temperature):
    for seed in range(5):
        token = top_p_sampling(ASSIGNMENT_LOGITS * 50, p, temperature, torch.Generator().manual_seed(seed))
        assert token.item() == 3


@pytest.mark.parametrize("p, temperature", [(0.0, 0.7), (1.1, 0.7), (-0.1, 0.7), (0.9, 0.0), (0.9, -1.0)])
def test_out_of_range_settings_are_refused(p, temperature):
    with pytest.raises(ValueError):
        top_p_sampling(ASSIGNMENT_LOGITS, p, temperature)


def test_top_k_limits_the_nucleus():
    ids, _ = nucleus(ASSIGNMENT_LOGITS, p=1.0, temperature=1.0, top_k=2)
    assert ids.tolist() in ([3, 1], [3, 6])
    ids, _ = nucleus(ASSIGNMENT_LOGITS, p=1.0, temperature=1.0)
    assert len(ids) == 8


def test_repetition_penalty_steers_away_from_seen_tokens():
    settings_ = SamplingSettings(strategy="greedy", repetition_penalty=10.0)
    assert choose_token(ASSIGNMENT_LOGITS, settings_, previous_ids=[3])[0] in (1, 6)
    assert choose_token(ASSIGNMENT_LOGITS, SamplingSettings(strategy="greedy"))[0] == 3


@settings(max_examples=200, deadline=None)
@given(logits=st.lists(st.floats(-1e4, 1e4, allow_nan=False), min_size=1, max_size=40),
       p=st.floats(1e-12, 1.0), temperature=st.floats(1e-12, 100.0), seed=st.integers(0, 2**31))
def test_sampling_always_returns_a_valid_id(logits, p, temperature, seed):
    logits = torch.tensor(logits)
    token = top_p_sampling(logits, p, temperature, torch.Generator().manual_seed(seed))
    assert 0 <= token.item() < len(logits)


class MockModel(torch.nn.Module):
    """Emits a fixed script of tokens: logits put all mass on script[position]."""

    def __init__(self, script, vocab=10, max_len=16):
        super().__init__()
        self.script, self.vocab, self.max_len = script, vocab, max_len
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.layers = []

    def forward(self, x, padding_mask=None):
        logits = torch.full((x.size(0), x.size(1), self.vocab), -10.0)
        for t in range(x.size(1)):
            logits[:, t, self.script[min(t, len(self.script) - 1)]] = 10.0
        return logits


def test_decode_loop_stops_at_end():
    model = MockModel(script=[5, 5, 5, 7, 8, END, 9])
    out = sample_sequence(torch.tensor([4, 4, SEP]), model, "greedy", 16, "cpu", END, use_cache=False)
    assert out == [5, 7, 8, END]  # script[2:] (the last prompt position predicts), [END] included


def test_decode_loop_respects_max_len():
    model = MockModel(script=[6] * 20)
    out = sample_sequence(torch.tensor([4, 4, SEP]), model, "greedy", 8, "cpu", END, use_cache=False)
    assert len(out) == 5  # 3 prompt tokens + 5 new = max_len 8


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown sampling strategy"):
        sample_sequence(torch.tensor([4, SEP]), MockModel([1]), "beam", 8, "cpu", END)


def test_cached_and_uncached_greedy_give_identical_tokens():
    model = small_model(seed=3)
    prompt = torch.randint(4, 300, (6,)).tolist() + [SEP]
    cached = sample_sequence(torch.tensor(prompt), model, "greedy", 20, "cpu", END, use_cache=True)
    plain = sample_sequence(torch.tensor(prompt), model, "greedy", 20, "cpu", END, use_cache=False)
    assert cached == plain and len(cached) == 20 - len(prompt)


def test_cached_top_p_with_a_seed_matches_uncached():
    model = small_model(seed=4)
    prompt = torch.randint(4, 300, (5,)).tolist() + [SEP]
    runs = [sample_sequence(torch.tensor(prompt), model, "top-p", 20, "cpu", END, p=0.9, temperature=1.0,
                            generator=torch.Generator().manual_seed(11), use_cache=c) for c in (True, False)]
    assert runs[0] == runs[1]


def test_fit_prompt_truncates_from_the_left_and_keeps_sep():
    assert fit_prompt([5, 6, 7, 8, 9, SEP], SEP, max_len=8, max_new_tokens=4) == [7, 8, 9, SEP]
    assert fit_prompt([5, SEP], SEP, max_len=8, max_new_tokens=4) == [5, SEP]
    model = small_model()
    long_prompt = list(range(4, 60)) + [SEP]
    steps = list(generate(model, long_prompt, END, SamplingSettings("greedy", max_new_tokens=5), sep_id=SEP))
    assert len(steps) == 5


def test_steps_record_how_each_token_was_chosen():
    """Each Step (tools.answers.record over the logits generate yields) equals what recomputing the
    distribution from the full sequence gives."""
    model = small_model(seed=5)
    ids = [7, 8, SEP]
    settings_ = SamplingSettings("top-p", p=0.5, temperature=0.8, seed=1, max_new_tokens=6)
    steps = [record(token_id, logits, settings_) for token_id, logits in generate(model, ids, END, settings_)]
    assert len(steps) == 6
    for step in steps:
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0, -1]
        top = torch.topk(torch.softmax(logits / 0.8, -1), 5)  # the five most likely, after temperature
        assert [t for t, _ in step.alternatives] == top.indices.tolist()
        assert [p for _, p in step.alternatives] == pytest.approx(top.values.tolist(), abs=1e-5)
        kept, kept_probs = nucleus(logits, p=0.5, temperature=0.8)
        assert step.nucleus_size == len(kept) and step.token_id in kept.tolist()
        assert step.probability == pytest.approx(kept_probs[kept.tolist().index(step.token_id)].item(), abs=1e-5)
        ids.append(step.token_id)


def test_records_are_computed_only_when_asked(monkeypatch, tokenizer):
    """Decoding for text alone (the demo's accuracy, the CLI) builds no Step; the chat page asks."""
    import tools.answers

    calls = []
    monkeypatch.setattr(tools.answers, "record", lambda *args: calls.append(args))
    settings_ = SamplingSettings("greedy", max_new_tokens=5)
    ids = {"sep": SEP, "end": END}
    quiet = AnswerStream(small_model(vocab_size=400), tokenizer, "hi?", settings_, ids)  # records: not asked
    text = "".join(quiet)
    assert not calls and not quiet.steps and quiet.token_ids
    shown = AnswerStream(small_model(vocab_size=400), tokenizer, "hi?", settings_, ids, records=True)
    assert "".join(shown) == text  # the same answer, now with a record per token
    assert len(calls) == len(shown.token_ids) == len(quiet.token_ids)


def test_streamed_pieces_join_to_the_one_shot_decode_with_multibyte_text(tokenizer):
    answer_ids = tokenizer.encode("caf\u00e9 \U0001F600 \u65e5\u672c \u0645\u0631\u062d\u0628\u0627").ids
    prompt_len = len(tokenize_input(tokenizer, "hi?", SEP))
    # Byte-level ids: the emoji alone is 4 single-byte tokens, so partial characters do occur.
    assert any("\ufffd" in decode_output(tokenizer, answer_ids[:i]) for i in range(len(answer_ids)))
    model = MockModel(script=[0] * (prompt_len - 1) + answer_ids + [END], vocab=400, max_len=64)
    stream = AnswerStream(model, tokenizer, "hi?", SamplingSettings("greedy", max_new_tokens=60),
                          {"sep": SEP, "end": END}, use_cache=False)
    pieces = list(stream)
    assert all("\ufffd" not in piece for piece in pieces)  # never half a character
    assert "".join(pieces) == decode_output(tokenizer, answer_ids) == stream.text
    assert stream.finished_by_end and len(pieces) > 3


def test_banned_special_tokens_are_never_chosen():
    logits = torch.tensor([9.0, 0.0, 8.0, 7.0, 1.0])  # [SEP], [END], [PAD], [UNK] would win
    for strategy in ("greedy", "top-p"):
        settings_ = SamplingSettings(strategy, p=1.0, temperature=5.0, seed=0)
        for seed in range(20):
            token_id, _ = choose_token(logits, settings_, torch.Generator().manual_seed(seed), banned_ids=[0, 2, 3])
            assert token_id in (1, 4)


def test_repetition_penalty_must_be_positive():
    with pytest.raises(ValueError, match="repetition penalty must be > 0"):
        SamplingSettings(repetition_penalty=0.0).check()
    from inference import apply_repetition_penalty

    with pytest.raises(ValueError, match="repetition penalty must be > 0"):
        apply_repetition_penalty(ASSIGNMENT_LOGITS, [3], 0.0)


def test_a_single_new_token_is_a_valid_answer_length():
    settings_ = SamplingSettings("greedy", max_new_tokens=1).check()
    assert len(list(generate(small_model(), [7, 8, SEP], END, settings_))) == 1
    with pytest.raises(ValueError, match="max answer length must be >= 1"):
        SamplingSettings("greedy", max_new_tokens=0).check()


def test_an_answer_cut_by_the_length_limit_is_not_finished_by_end(tokenizer):
    prompt_len = len(tokenize_input(tokenizer, "hi?", SEP))
    model = MockModel(script=[0] * (prompt_len - 1) + [60] * 20, vocab=400, max_len=64)  # never [END]
    stream = AnswerStream(model, tokenizer, "hi?", SamplingSettings("greedy", max_new_tokens=3),
                          {"sep": SEP, "end": END}, use_cache=False)
    list(stream)
    assert len(stream.token_ids) == 3 and not stream.finished_by_end


def test_answer_stream_finds_the_special_ids_itself(tokenizer):
    prompt_len = len(tokenize_input(tokenizer, "hi?", SEP))
    model = MockModel(script=[0] * (prompt_len - 1) + [60, 61, END], vocab=400, max_len=64)
    stream = AnswerStream(model, tokenizer, "hi?", SamplingSettings("greedy", max_new_tokens=10), use_cache=False)
    assert "".join(stream) == decode_output(tokenizer, [60, 61]) and stream.finished_by_end


# --- bad inputs: sample_sequence and the streaming generator -------------------------------------
# (README, "Bad input": functions raise ValueError with a message that says what is wrong.)

@pytest.fixture(scope="module")
def small():
    """An untrained tiny model (one layer) whose vocabulary fits the conftest tokenizer."""
    torch.manual_seed(0)
    return TransformerModel(make_tiny_config(vocab_size=400, embed_size=16, num_heads=2, num_layers=1,
                                             max_len=24)).eval()


@pytest.mark.parametrize("max_len", [0, -5])
def test_sample_sequence_refuses_max_len_below_one(small, max_len):
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        sample_sequence([5, 0], small, "greedy", max_len, "cpu", end_id=1)


def test_sample_sequence_refuses_an_empty_prompt(small):
    with pytest.raises(ValueError, match="input_sequence is empty"):
        sample_sequence([], small, "greedy", 10, "cpu", end_id=1)


@pytest.mark.parametrize("p, temperature, max_new", [(0.0, 0.7, 5), (1.5, 0.7, 5), (0.9, 0.0, 5), (0.9, -1, 5),
                                                     (0.9, 0.7, 0)])
def test_streaming_generator_refuses_out_of_range_settings(small, tokenizer, p, temperature, max_new):
    with pytest.raises(ValueError):
        AnswerStream(small, tokenizer, "hi?", SamplingSettings("top-p", p, temperature, max_new_tokens=max_new))


@pytest.mark.parametrize("text", ODD_TEXTS, ids=["empty", "whitespace", "control", "emoji-cjk-rtl", "special",
                                                  "very-long"])
def test_streaming_generator_answers_any_text(small, tokenizer, text):
    ids = special_token_ids(tokenizer, make_config("tiny"))
    prompt = tokenize_input(tokenizer, text, ids["sep"])
    assert prompt[-1] == ids["sep"] and (prompt[:-1] != ids["sep"]).all()  # typed [SEP] is plain text
    stream = AnswerStream(small, tokenizer, text, SamplingSettings("top-p", seed=0, max_new_tokens=10), ids)
    answer = "".join(stream)
    assert isinstance(answer, str) and answer == stream.text
    assert not {ids["sep"], ids["pad"], ids["unk"]} & set(stream.token_ids)


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=60), st.integers(0, 2**31 - 1))
def test_streamed_pieces_join_to_the_one_shot_answer(small, tokenizer, question, seed):
    ids = special_token_ids(tokenizer, make_config("tiny"))
    stream = AnswerStream(small, tokenizer, question, SamplingSettings("top-p", temperature=1.5, seed=seed,
                                                                       max_new_tokens=12), ids)
    pieces = list(stream)
    answer_ids = [t for t in stream.token_ids if t != ids["end"]]
    assert "".join(pieces) == tokenizer.decode(answer_ids)
    assert all(pieces)


# --- bad inputs: the inference.py command line -----------------------------------------------------
# (README, "Bad input": one line on stderr and exit status 2, never a traceback.)

@pytest.mark.parametrize("args, says", [(["--top_p", "0"], "top_p"), (["--temperature", "-1"], "temperature"),
                                        (["--max_new_tokens", "0"], "max answer length")])
def test_inference_script_refuses_bad_sampling_settings(tmp_path, args, says):
    assert_one_line_error(run_script("inference.py", "--tiny", *args), says)


@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_inference_script_names_a_bad_checkpoint(tmp_path, tokenizer, small, damage):
    tokenizer.save(str(tmp_path / "tok.json"))
    model_path = tmp_path / "model.pth"
    if damage != "missing":
        torch.save(small.state_dict(), model_path)
        data = model_path.read_bytes()
        model_path.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"\x00garbage")
    result = run_script("inference.py", "--tiny", "--vocab_size", "400", "--embed_size", "16", "--num_layers", "1",
                        "--max_len", "24", "--tokenizer_filename", str(tmp_path / "tok.json"),
                        "--model_filename", str(model_path), "--question", "hi?")
    assert_one_line_error(result, str(model_path))
