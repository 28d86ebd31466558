"""chatbot.py: the chat page run by Streamlit's AppTest on a tiny model trained in a fixture.

The model is trained for one short epoch, so its answers are gibberish: the tests check the page's
mechanics (history, settings reaching the sampler, odd input, escaping, error pages), and compare
seeded answers with tools.answers.AnswerStream run directly.
"""

import json
import os
import shlex
import shutil
import string
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

import config as config_module
from chatbot import (EMPTY_ANSWER, MAX_QUESTION_CHARS, chat_arguments, escape_markdown, escaped_stream,
                     token_label)
from helpers import ROOT, train_tiny_chat_model
from inference import MAX_INPUT_CHARS, SamplingSettings, load_trained_model
from tokenizer import load_tokenizer, special_token_ids
from tools.answers import AnswerStream

PAGE = os.path.join(ROOT, "chatbot.py")
TIMEOUT = 60  # seconds per script run; the first one loads the model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_chat_model(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def loaded(trained):
    """The fixture's model and tokenizer loaded directly, to compute answers without the page."""
    cfg, _ = trained
    tokenizer = load_tokenizer(cfg)
    model, _ = load_trained_model(cfg, "cpu", tokenizer)
    return model, tokenizer, special_token_ids(tokenizer, cfg)


def end_bias_variant(trained, folder, bias):
    """The fixture's model with `bias` added to the [END] logit (+50: always ends, -50: never);
    returns the page's arguments for it."""
    cfg, args = trained
    folder.mkdir()
    for name in ("tokenizer.json", "model.json"):
        shutil.copy(Path(cfg.model_filename).parent / name, folder / name)
    weights = torch.load(cfg.model_filename, weights_only=True)
    weights["fc_out.bias"][special_token_ids(load_tokenizer(cfg), cfg)["end"]] += bias
    torch.save(weights, folder / "model.pth")
    return args + ["--tokenizer_filename", str(folder / "tokenizer.json"),
                   "--model_filename", str(folder / "model.pth")]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """AppTest leaves the page installed as sys.modules["__main__"]; put it back after each test."""
    monkeypatch.setitem(sys.modules, "__main__", sys.modules["__main__"])
    yield


def open_page(monkeypatch, args):
    monkeypatch.setenv("INF265_CHAT_ARGS", shlex.join(args))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ask(at, text):
    at.chat_input[0].set_value(text).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def widget(widgets, label):
    (found,) = [w for w in widgets if w.label == label]
    return found


def roles(at):
    return [message.name for message in at.chat_message]


def shown_text(message):
    """What a chat message displays as its text (its first Markdown element)."""
    return message.markdown[0].value


def direct_answer(loaded, question, **settings):
    """The answer tools.answers.AnswerStream gives with the page's defaults and `settings`."""
    model, tokenizer, ids = loaded
    defaults = dict(strategy="top-p", p=0.95, temperature=0.7, top_k=0, repetition_penalty=1.0,
                    max_new_tokens=min(100, model.max_len))
    stream = AnswerStream(model, tokenizer, question, SamplingSettings(**{**defaults, **settings}), ids,
                          records=True)
    return "".join(stream), stream


# ----------------------------------------------------------------------------------------------
# Escaping: what the model writes and what the user types is shown literally

def unescape(shown, keep_joiners=False):
    """The text st.markdown displays for escape_markdown's output (the CommonMark rules it uses);
    with keep_joiners, the text GFM's autolinking scans."""
    out, i = [], 0
    while i < len(shown):
        if shown[i] == "\\" and i + 1 < len(shown) and shown[i + 1] in string.punctuation:
            out.append(shown[i + 1])
            i += 2
            continue
        out.append(shown[i])
        i += 1
    text = "".join(out).replace("  \n", "\n").replace("\u00a0", " ")
    return text if keep_joiners else text.replace("\u2060", "")


def has_bare_punctuation(shown):
    """True if some ASCII punctuation in `shown` is not backslash-escaped (Markdown could act on it)."""
    i = 0
    while i < len(shown):
        if shown[i] == "\\":
            i += 2
            continue
        if shown[i] in string.punctuation:
            return True
        i += 1
    return False


def test_escape_markdown_shows_formatting_literally():
    text = "**bold** [x](http://e) <b>$x$</b>"
    shown = escape_markdown(text)
    assert shown == r"\*\*bold\*\* \[x\]\(http\:" + "\u2060" + r"\/\/e\) \<b\>\$x\$\<\/b\>"
    assert unescape(shown) == text


@pytest.mark.parametrize("text", [
    "# heading\n- item\n1. one\n> quote\n| a | b |\n|---|---|",
    "    indented code\n\n\tand a tab",
    "<script>alert(1)</script> <img src=x onerror=alert(1)> &amp;",
    "![image](http://e/x.png) www.example.com a@b.com :smile: :red[x] $$x^2$$ ~~s~~ `c`",
    "[SEP] [END] emoji 😀 中文 עברית \\ back\\slash",
])
def test_escape_markdown_leaves_nothing_for_markdown_to_act_on(text):
    shown = escape_markdown(text)
    assert not has_bare_punctuation(shown)
    assert "\n    " not in shown and "\n\t" not in shown and not shown.startswith(" ")
    scanned = unescape(shown, keep_joiners=True)
    assert not any(link in scanned for link in ("://", "www.", "a@b"))  # GFM would make links


TEXT = st.text(st.characters(blacklist_characters="\r\t\u00a0\u2060"), max_size=60)


@given(TEXT, st.integers(0, 60))
def test_escape_markdown_round_trips_and_grows_with_its_input(text, cut):
    shown = escape_markdown(text)
    assert unescape(shown) == text
    assert not has_bare_punctuation(shown)
    # Escaping a prefix gives a prefix: a stream can be escaped piece by piece.
    assert shown.startswith(escape_markdown(text[:cut]))


def test_escaped_stream_joins_to_the_escaped_text():
    pieces = ["**a", "*", " http", ":", "//x", "\n", "  www", ".e.com $"]
    assert "".join(escaped_stream(pieces)) == escape_markdown("".join(pieces))


def test_arguments_come_from_the_environment_when_set():
    argv = ["chatbot.py", "--preset", "demo"]
    assert chat_arguments({}, argv) == ["--preset", "demo"]
    assert chat_arguments({"INF265_CHAT_ARGS": "--model_filename 'a b/model.pth'"}, argv) == [
        "--model_filename", "a b/model.pth"]
    assert chat_arguments({"INF265_CHAT_ARGS": ""}, argv) == []


# ----------------------------------------------------------------------------------------------
# The page

def test_the_sliders_start_at_the_configured_top_p_and_temperature(monkeypatch, trained, loaded):
    """--top_p 0.5 --temperature 1.2 reach the sidebar, and the first answer is drawn with them; a value
    outside a slider's range starts at its end, with a note."""
    at = open_page(monkeypatch, trained[1] + ["--top_p", "0.5", "--temperature", "1.2"])
    assert widget(at.sidebar.slider, "Top-p").value == pytest.approx(0.5)
    assert widget(at.sidebar.slider, "Temperature").value == pytest.approx(1.2)
    widget(at.sidebar.number_input, "Seed").set_value(4)
    ask(at, "how many legs does a cat have?")
    expected, _ = direct_answer(loaded, "how many legs does a cat have?", seed=4, p=0.5, temperature=1.2)
    assert at.session_state.messages[-1]["content"] == expected
    hot = open_page(monkeypatch, trained[1] + ["--temperature", "3"])
    assert widget(hot.sidebar.slider, "Temperature").value == pytest.approx(2.0)
    assert any("--temperature 3 is outside the slider" in unescape(c.value) for c in hot.sidebar.caption)


def test_sidebar_has_the_template_controls_and_the_model_card(monkeypatch, trained, loaded):
    shared = dict(vars(config_module.config))
    at = open_page(monkeypatch, trained[1])
    assert vars(config_module.config) == shared  # browser tabs run the page in parallel threads
    assert [t.value for t in at.title] == ["Cursed Chatbot"]
    strategy = widget(at.sidebar.selectbox, "Sampling strategy")
    assert strategy.options == ["greedy", "top-p"] and strategy.value == "top-p"
    assert widget(at.sidebar.slider, "Temperature").value == pytest.approx(0.7)
    assert widget(at.sidebar.slider, "Top-p").value == pytest.approx(0.95)
    assert widget(at.sidebar.slider, "Max answer length").value == 32  # min(100, max_len)
    assert widget(at.sidebar.slider, "Repetition penalty").value == 1.0
    assert widget(at.sidebar.number_input, "Seed").value == 0
    assert widget(at.sidebar.number_input, "Top-k").value == 0
    assert widget(at.sidebar.button, "Clear chat history")
    card = unescape(" ".join(m.value for m in at.sidebar.markdown))
    model = loaded[0]
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in card
    assert "vocabulary: 300 tokens" in card and "embed 16, 2 heads, 2 layers, max_len 32" in card
    saved = json.loads((Path(trained[0].model_filename).parent / "model.json").read_text())
    assert f"trained {saved['global_step']} step" in card
    assert f"validation loss {saved['val_loss']:.3f}" in card and "perplexity" in card
    assert f"checkpoint: {trained[0].model_filename}" in card


def test_an_answer_appears_and_history_keeps_both_turns(monkeypatch, trained, loaded):
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.number_input, "Seed").set_value(3)
    ask(at, "which is larger, 12 or 7?")
    expected, _ = direct_answer(loaded, "which is larger, 12 or 7?", seed=3)
    assert expected  # a non-empty answer, so the check below can fail
    assert roles(at) == ["user", "assistant"]
    assert shown_text(at.chat_message[0]) == escape_markdown("which is larger, 12 or 7?")
    assert shown_text(at.chat_message[1]) == escape_markdown(expected)

    ask(at, "how do you spell kalomi?")
    at.run()  # a rerun without input replays the history
    assert roles(at) == ["user", "assistant", "user", "assistant"]
    assert [m["content"] for m in at.session_state.messages][::2] == [
        "which is larger, 12 or 7?", "how do you spell kalomi?"]
    assert shown_text(at.chat_message[1]) == escape_markdown(expected)
    assert [e.label for e in at.expander] == ["How was this answer sampled?", "What did the model attend to?"] * 2


def test_clear_chat_history_empties_it(monkeypatch, trained):
    at = open_page(monkeypatch, trained[1])
    ask(at, "what is 2 plus 2?")
    assert len(at.chat_message) == 2
    widget(at.sidebar.button, "Clear chat history").click().run()
    assert at.session_state.messages == [] and len(at.chat_message) == 0


@pytest.mark.parametrize("strategy, seed", [("greedy", 5), ("top-p", 7)])
def test_seeded_answer_equals_answer_stream_run_directly(monkeypatch, trained, loaded, strategy, seed):
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.selectbox, "Sampling strategy").set_value(strategy)
    widget(at.sidebar.number_input, "Seed").set_value(seed)
    widget(at.sidebar.slider, "Temperature").set_value(1.3)
    ask(at, "how many legs does a cat have?")
    expected, stream = direct_answer(loaded, "how many legs does a cat have?", strategy=strategy,
                                     seed=seed, temperature=1.3)
    answer = at.session_state.messages[-1]
    assert answer["content"] == expected
    assert [s.token_id for s in answer["steps"]] == [s.token_id for s in stream.steps]
    table = at.dataframe[0].value
    assert list(table["nucleus size"]) == [s.nucleus_size for s in stream.steps]
    if strategy == "greedy":
        assert set(table["probability"]) == {1.0}
    ask(at, "how many legs does a cat have?")  # the same seed repeats the answer
    assert at.session_state.messages[-1]["content"] == expected


@pytest.mark.parametrize("label, kind, value, setting", [
    ("Top-p", "slider", 0.3, "p"),
    ("Top-k", "number_input", 2, "top_k"),
    ("Repetition penalty", "slider", 2.0, "repetition_penalty"),
])
def test_each_sampling_control_reaches_the_sampler(monkeypatch, trained, loaded, label, kind, value, setting):
    question = "how many legs does a cat have?"
    # A seed for which this setting changes the answer, so that a page ignoring it must fail.
    seed = next(s for s in range(1, 50)
                if direct_answer(loaded, question, seed=s, temperature=1.3)[0]
                != direct_answer(loaded, question, seed=s, temperature=1.3, **{setting: value})[0])
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.number_input, "Seed").set_value(seed)
    widget(at.sidebar.slider, "Temperature").set_value(1.3)
    widget(getattr(at.sidebar, kind), label).set_value(value)
    ask(at, question)
    expected, _ = direct_answer(loaded, question, seed=seed, temperature=1.3, **{setting: value})
    assert at.session_state.messages[-1]["content"] == expected, f"the {label} control is ignored"


@pytest.mark.parametrize("strategy, graded", [("greedy", "greedy_sampling"), ("top-p", "top_p_sampling")])
def test_the_page_draws_every_token_with_the_graded_sampling_function(monkeypatch, trained, strategy, graded):
    import inference

    drawn, original = [], getattr(inference, graded)

    def recording(logits, *args, **kwargs):
        token = original(logits, *args, **kwargs)
        drawn.append(int(token))
        return token

    monkeypatch.setattr(inference, graded, recording)
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.selectbox, "Sampling strategy").set_value(strategy)
    widget(at.sidebar.number_input, "Seed").set_value(7)
    ask(at, "how many legs does a cat have?")
    steps = at.session_state.messages[-1]["steps"]
    assert steps and [step.token_id for step in steps] == drawn, f"the page does not draw with {graded}"


def test_token_labels_make_spaces_bytes_and_special_tokens_visible(loaded):
    _, tokenizer, ids = loaded
    decodes = {tokenizer.decode([i]): i for i in range(tokenizer.get_vocab_size())}
    assert token_label(tokenizer, ids["end"], {ids["end"]: "[END]"}) == "[END]"
    assert token_label(tokenizer, tokenizer.token_to_id("Ġs"), {}) == "␣s"
    assert token_label(tokenizer, decodes["\t"], {}) == "⇥"
    assert token_label(tokenizer, decodes["\n"], {}) == "↵"
    assert token_label(tokenizer, decodes["\x1f"], {}) == "\\x1f"
    continuation = tokenizer.token_to_id("ò")  # one byte of a multi-byte character
    assert tokenizer.decode([continuation]) == "\ufffd"
    assert token_label(tokenizer, continuation, {}) == "ò"


def test_sampling_table_shows_every_token_and_its_alternatives(monkeypatch, trained, loaded):
    model, tokenizer, ids = loaded
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.number_input, "Seed").set_value(11)
    ask(at, "spell tovan")
    steps = at.session_state.messages[-1]["steps"]
    table = at.dataframe[0].value
    assert list(table["#"]) == list(range(1, len(steps) + 1))
    assert list(table["token"]) == [token_label(tokenizer, s.token_id, {}) for s in steps]
    assert list(table["probability"]) == pytest.approx([s.probability for s in steps])
    assert all(len(s.alternatives) == 5 for s in steps)
    first = steps[0].alternatives
    assert table["top alternatives"][0] == ", ".join(
        f"{token_label(tokenizer, t, {})} {p:.2f}" for t, p in first)
    at.run()
    assert len(at.dataframe) == 1 and len(at.get("vega_lite_chart")) == 1  # replayed


@pytest.mark.parametrize("question", [
    "emoji 😀🚀 and 中文问题 and עברית?",
    "[SEP] [END] what comes after [SEP]?",
    "**bold** [x](http://e) <b>$x$</b>",
    "control \x00\x07\x1b[31mred\x1b[0m and right-to-left \u202eoverride?",
])
def test_odd_questions_are_answered_and_shown_literally(monkeypatch, trained, loaded, question):
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.number_input, "Seed").set_value(2)
    ask(at, question)
    assert roles(at) == ["user", "assistant"]
    assert shown_text(at.chat_message[0]) == escape_markdown(question)
    assert unescape(shown_text(at.chat_message[0])) == question
    expected, stream = direct_answer(loaded, question, seed=2)
    assert at.session_state.messages[-1]["content"] == expected and stream.steps


@pytest.mark.parametrize("blank", ["   ", " \n\t  "])
def test_a_blank_question_gets_a_warning_and_no_answer(monkeypatch, trained, blank):
    at = open_page(monkeypatch, trained[1])
    ask(at, blank)
    assert any("Type a question first" in w.value for w in at.warning)
    assert at.session_state.messages == [] and len(at.chat_message) == 0


def test_a_very_long_question_is_cut_and_the_page_says_so(monkeypatch, trained):
    at = open_page(monkeypatch, trained[1])
    ask(at, "why " * 1000)
    question = at.session_state.messages[0]["content"]
    assert question == ("why " * 1000)[:MAX_QUESTION_CHARS].strip()
    assert MAX_QUESTION_CHARS <= MAX_INPUT_CHARS
    notes = " ".join(c.value for c in at.chat_message[0].caption)
    assert f"Questions are cut at {MAX_QUESTION_CHARS} characters" in notes
    assert "The model saw only the last 15 tokens" in notes  # max_len 32: 16 for the answer, [SEP]
    assert roles(at) == ["user", "assistant"]
    ask(at, "why?")
    assert at.chat_message[2].caption == []  # a short question gets no note


def test_an_empty_answer_says_so(monkeypatch, trained, tmp_path):
    at = open_page(monkeypatch, end_bias_variant(trained, tmp_path / "ends", +50.0))
    ask(at, "anything?")
    answer = at.session_state.messages[-1]
    assert answer["content"] == "" and len(answer["steps"]) == 1
    assert [m.value for m in at.chat_message[1].markdown] == [f"*{EMPTY_ANSWER}*"]
    assert list(at.dataframe[0].value["token"]) == ["[END]"]


def test_an_answer_cut_at_max_length_says_so(monkeypatch, trained, tmp_path):
    at = open_page(monkeypatch, end_bias_variant(trained, tmp_path / "never", -50.0))
    widget(at.sidebar.slider, "Max answer length").set_value(3)
    ask(at, "anything?")
    assert len(at.session_state.messages[-1]["steps"]) == 3
    assert [c.value for c in at.chat_message[1].caption] == ["Cut at the max answer length (3 tokens)."]
    widget(at.sidebar.slider, "Max answer length").set_value(32)
    ask(at, "anything?")
    assert "context (32 tokens, question included) is full" in at.chat_message[3].caption[0].value


# ----------------------------------------------------------------------------------------------
# Missing or mismatched files: what to run, never a stack trace

def assert_setup_page(at, says, commands):
    assert not at.exception
    assert any(says in e.value for e in at.error), [e.value for e in at.error]
    code = "\n".join(c.value for c in at.code)
    for command in commands:
        assert command in code
    assert "make demo" in code and "streamlit run chatbot.py -- --preset demo" in code
    # and how to bring home a model trained on Colab
    assert "MyDrive/inf265_project_3/temp/tiny/model.pth  ->  " in code and "model.json" in code
    assert len(at.chat_input) == 0  # the page stopped before the chat


def test_checkpoint_without_model_json_says_which_head_count_it_assumed(monkeypatch, trained, loaded, tmp_path):
    cfg, args = trained
    for name in ("tokenizer.json", "model.pth"):  # the template's files: no model.json
        shutil.copy(Path(cfg.model_filename).parent / name, tmp_path / name)
    at = open_page(monkeypatch, args + ["--model_filename", str(tmp_path / "model.pth"),
                                        "--tokenizer_filename", str(tmp_path / "tokenizer.json")])
    assert len(at.warning) == 1, "the page does not say which head count it assumed"
    warning = unescape(at.warning[0].value)
    assert "model.json' is missing" in warning and "assuming num_heads=2" in warning
    assert "--num_heads N" in warning
    widget(at.sidebar.number_input, "Seed").set_value(3)
    ask(at, "which is larger, 12 or 7?")  # the same model as the fixture's: the same answer
    assert at.session_state.messages[-1]["content"] == direct_answer(loaded, "which is larger, 12 or 7?", seed=3)[0]


def test_missing_checkpoint_shows_the_commands_to_train(monkeypatch, trained, tmp_path):
    args = trained[1][:-1] + [str(tmp_path / "none" / "model.pth")]
    at = open_page(monkeypatch, args)
    assert_setup_page(at, "no trained model", [f"python train.py {shlex.join(args)}",
                                               f"python tokenizer.py {shlex.join(args)}"])


def test_missing_tokenizer_shows_the_commands(monkeypatch, tmp_path):
    args = ["--preset", "tiny", "--tokenizer_filename", str(tmp_path / "tokenizer.json"),
            "--model_filename", str(tmp_path / "model.pth")]
    at = open_page(monkeypatch, args)
    assert_setup_page(at, "not found", [f"python tokenizer.py {shlex.join(args)}"])


def test_tokenizer_of_another_run_is_refused(monkeypatch, trained, tokenizer, tmp_path):
    tokenizer.save(str(tmp_path / "other.json"))  # conftest's: 400 tokens, the model has 300
    args = trained[1] + ["--tokenizer_filename", str(tmp_path / "other.json")]
    at = open_page(monkeypatch, args)
    assert_setup_page(at, "different runs", [])


@pytest.mark.parametrize("args, says", [(["--preset", "tiny", "--num_heads", "7"], "num_heads"),
                                        (["--no_such_option", "1"], "cannot read the arguments")])
def test_bad_arguments_show_an_error(monkeypatch, args, says):
    at = open_page(monkeypatch, args)
    assert any(says.replace("_", "\\_") in e.value for e in at.error), [e.value for e in at.error]
    assert len(at.chat_input) == 0


# ----------------------------------------------------------------------------------------------
# The page as a teaching instrument: compare strategies, attention, example questions

def test_compare_mode_answers_once_per_column_with_its_settings(monkeypatch, trained, loaded):
    question = "how many legs does a cat have?"
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.number_input, "Seed").set_value(5)
    widget(at.sidebar.toggle, "Compare strategies").set_value(True).run()
    widget(at.sidebar.multiselect, "Temperatures to compare").set_value([0.5, 1.5])
    ask(at, question)
    (answer,) = [m for m in at.session_state.messages if m["role"] == "assistant"]
    columns = answer["compare"]
    assert [c["label"] for c in columns] == ["greedy", "top-p 0.95, temperature 0.5, seed 5",
                                             "top-p 0.95, temperature 1.5, seed 5"]
    expected = [direct_answer(loaded, question, strategy="greedy"),
                direct_answer(loaded, question, temperature=0.5, seed=5),
                direct_answer(loaded, question, temperature=1.5, seed=5)]
    assert [c["content"] for c in columns] == [text for text, _ in expected]
    assert len({c["content"] for c in columns}) > 1  # the columns really differ
    shown = [c.value for c in at.chat_message[1].caption if c.value.startswith("mean token probability")]
    means = [sum(s.model_probability for s in stream.steps) / len(stream.steps) for _, stream in expected]
    assert shown == [f"mean token probability {m:.2f}" for m in means]
    bold = [m.value for m in at.chat_message[1].markdown if m.value.startswith("**")]
    assert bold == [f"**{escape_markdown(c['label'])}**" for c in columns]  # each column's settings shown
    at.run()  # replayed from the history the same way
    assert [m.value for m in at.chat_message[1].markdown if m.value.startswith("**")] == bold


def test_compare_mode_without_a_seed_draws_one_and_shows_it(monkeypatch, trained, loaded):
    question = "which is larger, 12 or 7?"
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.toggle, "Compare strategies").set_value(True)
    ask(at, question)
    columns = at.session_state.messages[-1]["compare"]
    seeds = {c["label"].rsplit("seed ", 1)[1] for c in columns[1:]}
    assert len(columns) == 4 and len(seeds) == 1 and int(seeds.pop()) >= 1
    seed = int(columns[1]["label"].rsplit("seed ", 1)[1])
    assert columns[3]["content"] == direct_answer(loaded, question, temperature=1.5, seed=seed)[0]


def vega_specs(at):
    return [e.proto.spec for e in at.get("vega_lite_chart")]


def test_attention_view_is_computed_only_when_asked_and_shows_every_layer_and_head(monkeypatch, trained, loaded):
    import support.probes as probes_module

    calls, original = [], probes_module.attention_weights

    def counting(model, ids):
        calls.append(list(ids))
        return original(model, ids)

    monkeypatch.setattr(probes_module, "attention_weights", counting)
    at = open_page(monkeypatch, trained[1])
    widget(at.sidebar.number_input, "Seed").set_value(3)
    ask(at, "which is larger, 12 or 7?")
    assert calls == [] and not any("layer 1, head 1" in spec for spec in vega_specs(at))
    at.toggle(key="attention-1").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    answer = at.session_state.messages[1]
    assert calls[-1] == (answer["context"] + [s.token_id for s in answer["steps"]])[:32]
    (spec,) = [spec for spec in vega_specs(at) if "layer 1, head 1" in spec]
    assert "layer 2, head 2" in spec  # the tiny model: 2 layers of 2 heads, all shown
    assert any("attended to these tokens" in c.value for c in at.chat_message[1].caption)
    assert len(answer["steps"]) > 1  # seed 3 gives a longer answer: pick its second token
    second = len(answer["context"]) + 1
    at.select_slider(key="attention-token-1").set_value(second).run()
    assert not at.exception
    label = token_label(loaded[1], answer["steps"][1].token_id, {})
    assert any(f"To choose {second}: {label}, position {second - 1}:" in unescape(c.value)
               for c in at.chat_message[1].caption)


def test_examples_on_an_empty_chat_are_held_out_questions_and_clicking_one_asks_it(monkeypatch, trained, loaded):
    from dataset import split_indices
    from support.data_sources import load_qa_pairs

    cfg = trained[0]
    at = open_page(monkeypatch, trained[1])
    pairs = load_qa_pairs(cfg.dataset)
    _, validation = split_indices(int(cfg.model_train_fraction * len(pairs)), cfg.val_fraction, cfg.seed)
    held_out = {pairs.questions[i] for i in validation}
    buttons = [b for b in at.button if b.key and b.key.startswith("example-")]
    assert 1 <= len(buttons) <= 4 and all(unescape(b.label) in held_out for b in buttons)
    assert any(cfg.dataset in unescape(c.value) for c in at.caption)  # what it was trained on
    question = unescape(buttons[0].label)
    buttons[0].click().run()
    assert not at.exception
    assert [m["content"] for m in at.session_state.messages][:1] == [question]
    assert roles(at) == ["user", "assistant"]
    at.run()
    assert not [b for b in at.button if b.key and b.key.startswith("example-")]  # gone once asked


def test_builtin_examples_are_questions_the_model_never_saw():
    from chatbot import example_questions
    from support import corpus

    questions, trained_on = example_questions("builtin", "train", 0.01, 0)
    heldout = {r["question"] for r in corpus.generate("heldout")}
    train = {r["question"] for r in corpus.generate("train")}
    assert len(questions) == 4 and set(questions) <= heldout and not set(questions) & train
    assert "built-in" in trained_on and "held-out" in trained_on


def test_an_unreadable_data_source_gives_no_examples_and_says_why():
    from chatbot import example_questions

    questions, trained_on = example_questions("/nowhere/pairs.jsonl", "train", 0.01, 0)
    assert questions == [] and "no example questions" in trained_on
    questions, trained_on = example_questions("odinhg/gooaq-subset", "train", 0.01, 0)  # never downloaded
    assert questions == [] and "does not download" in trained_on


def test_a_damaged_data_file_gives_no_examples_and_says_why(tmp_path):
    from chatbot import example_questions

    (tmp_path / "pairs.jsonl").write_text("not json\n")
    questions, trained_on = example_questions(str(tmp_path / "pairs.jsonl"), "train", 0.01, 0)
    assert questions == [] and "pairs.jsonl" in trained_on and "no example questions" in trained_on


@pytest.mark.parametrize("banned", [True, False])
def test_the_special_token_switch_decides_whether_greedy_may_pick_unk(monkeypatch, trained, loaded, tmp_path, banned):
    """A model whose most likely token is always [UNK]: the page keeps it out unless told not to."""
    cfg, args = trained
    unk = loaded[2]["unk"]
    variant = tmp_path / "unk"
    variant.mkdir()
    for name in ("tokenizer.json", "model.json"):
        shutil.copy(Path(cfg.model_filename).parent / name, variant / name)
    weights = torch.load(cfg.model_filename, weights_only=True)
    weights["fc_out.bias"][unk] += 50
    torch.save(weights, variant / "model.pth")
    at = open_page(monkeypatch, args + ["--tokenizer_filename", str(variant / "tokenizer.json"),
                                        "--model_filename", str(variant / "model.pth")])
    widget(at.sidebar.selectbox, "Sampling strategy").set_value("greedy")
    switch = widget(at.sidebar.checkbox, "Never write [SEP], [PAD] or [UNK]")
    assert switch.value is True and "pure greedy" in switch.help
    switch.set_value(banned)
    ask(at, "what is 2 plus 2?")
    chosen = [s.token_id for s in at.session_state.messages[-1]["steps"]]
    assert chosen and (unk not in chosen if banned else chosen[0] == unk)


def test_the_page_has_no_deploy_button_and_keeps_the_template_title():
    import tomllib

    with open(os.path.join(ROOT, ".streamlit", "config.toml"), "rb") as f:
        settings = tomllib.load(f)
    assert settings["client"]["toolbarMode"] == "minimal"  # hides "Deploy" (checked in a browser too)
