"""The chat page: ask the trained decoder questions in the browser (Streamlit).

    streamlit run chatbot.py                                   # the default model (temp/)
    streamlit run chatbot.py -- --preset demo                  # the model of `make demo` (temp/demo/)
    streamlit run chatbot.py -- --preset tiny --device cpu     # the tiny CPU model (temp/tiny/)
    streamlit run chatbot.py -- --model_filename run/model.pth --tokenizer_filename run/tokenizer.json
    streamlit run chatbot.py --server.port 8502 -- --preset demo          # Streamlit's own options first
    streamlit run chatbot.py --server.address 0.0.0.0 -- --preset demo    # reachable from other machines
    INF265_CHAT_ARGS="--preset demo" streamlit run chatbot.py            # arguments from the environment

Arguments after `--` are the config's: `--preset`, and `--KEY VALUE` for any key of config.py. When
the environment variable INF265_CHAT_ARGS is set, it is read instead (split like a shell command
line): Streamlit's AppTest runs this script inside pytest, whose sys.argv is pytest's, so the tests
pass their files this way. `.streamlit/config.toml` keeps the server on localhost with no usage
statistics sent (`--server.address` overrides it); the page opens in the browser where there is a
display, and only its address is printed where there is none (servers, Colab, CI). Without a
model, the page says which files to download from a Colab run, or which commands train one here.

The model and tokenizer are loaded once (st.cache_resource); the answer streams token by token
(st.write_stream over tools.answers.AnswerStream), and under each answer a table shows how every
token was sampled and, when asked, a heat map of what the model attended to
(support.probes.attention_weights). The sidebar starts at the configured --top_p and --temperature.
"Compare strategies" answers one question with greedy and top-p at several temperatures side by
side; an empty chat offers example questions the model never trained on. What the model writes and what the user types is shown literally: Markdown, LaTeX
(`$`), HTML and bare links are escaped (escape_markdown), never rendered.
"""

import argparse
import dataclasses
import math
import os
import random
import shlex
import string
import sys

import altair as alt
import streamlit as st
import torch

from config import ConfigError, make_config, parse_cli
from inference import MAX_INPUT_CHARS, SamplingSettings, clean_question, fit_prompt, load_trained_run
from support.checkpoint import sidecar_filename
from support.errors import UserError
from support.probes import attention_weights
from tools.answers import AnswerStream
from utils import get_num_params

# Hack from the course template: Streamlit's file watcher walks every module's __path__, and
# torch.classes' __path__ raises ("Tried to instantiate class '__path__._path'"). An empty list
# gives it nothing to walk.
torch.classes.__path__ = []

ARGS_ENV_VAR = "INF265_CHAT_ARGS"
# What the text box accepts. The model sees at most max_len tokens of question and answer together
# (128 for the default model, so about 64 question tokens, some 250 characters of English); 500
# leaves room for a pasted question, and the page says when the model saw only its end. Streamlit
# cuts longer text to this (the page says so); clean_question's MAX_INPUT_CHARS is higher.
MAX_QUESTION_CHARS = min(500, MAX_INPUT_CHARS)
EMPTY_ANSWER = "(the model gave an empty answer)"
COMPARE_TEMPERATURES = [0.3, 0.5, 0.7, 1.0, 1.5, 2.0]  # the compare mode's top-p columns to choose from
EXAMPLES_SHOWN = 4  # example questions on an empty chat
SAMPLING_LABEL = "How was this answer sampled?"
ATTENTION_LABEL = "What did the model attend to?"

_PUNCTUATION = frozenset(string.punctuation)  # CommonMark lets every ASCII punctuation be escaped
_WORD_JOINER = "\u2060"  # invisible; breaks "http://", "www." and "a@b" so GFM makes no link
_NBSP = "\u00a0"  # leading spaces as no-break spaces never start an indented code block


# ----------------------------------------------------------------------------------------------
# Helpers (pure, tested directly)

def chat_arguments(environ=None, argv=None):
    """The config arguments: $INF265_CHAT_ARGS split like a shell line when set, else argv[1:].

    >>> chat_arguments({"INF265_CHAT_ARGS": "--preset demo --top_p '0.9'"}, ["chatbot.py"])
    ['--preset', 'demo', '--top_p', '0.9']
    """
    environ = os.environ if environ is None else environ
    if environ.get(ARGS_ENV_VAR) is not None:
        return shlex.split(environ[ARGS_ENV_VAR])
    return list((sys.argv if argv is None else argv)[1:])


def escape_markdown(text):
    """Text that st.markdown shows literally, character for character.

    Every ASCII punctuation mark gets a backslash (so no emphasis, links, images, HTML, tables,
    headings, lists, `$` LaTeX or `:emoji:` codes), a line break becomes a hard break, spaces at
    the start of a line become no-break spaces (no code blocks), and an invisible word joiner
    goes inside "://", "www." and after "@" (GFM links bare URLs and e-mails after escaping).
    Each character's output depends only on the text before it, so escaping a growing text gives
    a growing result: a stream can be escaped piece by piece (escaped_stream).
    >>> escape_markdown("**hi** $x$ <b>")
    '\\\\*\\\\*hi\\\\*\\\\* \\\\$x\\\\$ \\\\<b\\\\>'
    """
    text = str(text).replace("\r\n", "\n").replace("\r", "\n")
    out, line_start = [], True
    for i, char in enumerate(text):
        if char == "\n":
            out.append("  \n")  # two spaces: a hard line break, not a paragraph join
            line_start = True
            continue
        if line_start and char in " \t":
            out.append(_NBSP * (4 if char == "\t" else 1))
            continue
        line_start = False
        if char not in _PUNCTUATION:
            out.append(char)
        elif (char == "/" and text[i - 1:i] == ":") or (char == "." and text[i - 3:i].lower() == "www"):
            out.append(_WORD_JOINER + "\\" + char)
        else:
            out.append("\\" + char + (_WORD_JOINER if char == "@" else ""))
    return "".join(out)


def escaped_stream(pieces):
    """Yield escape_markdown of a stream of text pieces, piece by piece (for st.write_stream)."""
    text, shown = "", ""
    for piece in pieces:
        text += piece
        escaped = escape_markdown(text)
        yield escaped[len(shown):]
        shown = escaped


def token_label(tokenizer, token_id, special_names):
    """How a token reads in the sampling table: its text, spaces shown as "␣", specials by name.

    >>> from config import make_config; from tokenizer import fit_tokenizer
    >>> tok = fit_tokenizer(make_config("tiny"), ["hi there"] * 3, vocab_size=270, min_frequency=1)
    >>> token_label(tok, 1, {1: "[END]"}), token_label(tok, tok.token_to_id("Ġthere"), {})
    ('[END]', '␣there')
    """
    if token_id in special_names:
        return special_names[token_id]
    text = tokenizer.decode([token_id])
    if not text or "\ufffd" in text:  # a byte of a multi-byte character: show the BPE symbol
        return tokenizer.id_to_token(token_id) or f"<id {token_id}>"
    visible = {" ": "␣", "\n": "↵", "\t": "⇥"}
    return "".join(visible.get(c) or (c if c.isprintable() else c.encode("unicode_escape").decode())
                   for c in text)


def sampling_table(steps, tokenizer, special_names):
    """Columns of the "How was this answer sampled?" table, one row per generated token."""
    labels = [token_label(tokenizer, step.token_id, special_names) for step in steps]
    return {
        "#": list(range(1, len(steps) + 1)),
        "token": labels,
        "probability": [step.probability for step in steps],
        "nucleus size": [step.nucleus_size for step in steps],
        "top alternatives": [", ".join(f"{token_label(tokenizer, t, special_names)} {p:.2f}"
                                       for t, p in step.alternatives) for step in steps],
    }


def model_card(model, info, config):
    """Lines of plain text describing the loaded model, for the sidebar."""
    shape = info["model_shape"]
    lines = [f"{get_num_params(model):,} parameters",
             f"vocabulary: {shape['vocab_size']:,} tokens",
             f"embed {shape['embed_size']}, {shape['num_heads']} heads, {shape['num_layers']} layers, "
             f"max_len {shape['max_len']}"]
    if info.get("global_step") is not None:
        epoch = info.get("epoch")
        epochs = f", {epoch} epoch{'' if epoch == 1 else 's'} completed" if epoch is not None else ""
        steps = info["global_step"]
        lines.append(f"trained {steps:,} step{'' if steps == 1 else 's'}{epochs}")
    val_loss = info.get("val_loss")
    if isinstance(val_loss, (int, float)) and math.isfinite(val_loss):
        perplexity = math.exp(val_loss) if val_loss < 700 else math.inf
        lines.append(f"validation loss {val_loss:.3f} (perplexity {perplexity:,.1f})")
    versions = info.get("versions")
    if versions:
        lines.append("trained with " + ", ".join(f"{name} {versions[name]}" for name in ("torch", "tokenizers")
                                                   if name in versions))
    lines.append(f"checkpoint: {config.model_filename}")
    return lines


def setup_commands(argv):
    """Shell commands that create the tokenizer and model the page was started for."""
    args = (" " + shlex.join(argv)) if argv else ""
    return (f"# the model this page was started for (the default one is meant for a GPU: train it on Colab)\n"
            f"python tokenizer.py{args}\n"
            f"python train.py{args}\n"
            f"streamlit run chatbot.py{' --' + args if args else ''}\n"
            f"\n"
            f"# or the small demo model on the built-in corpus (CPU, offline):\n"
            f"make demo\n"
            f"streamlit run chatbot.py -- --preset demo")


COLAB_FOLDER = "MyDrive/inf265_project_3"  # where gpu_training_colab_notebook.ipynb trains, on Google Drive


def colab_downloads(config):
    """Lines "Drive file  ->  where this page reads it" for a model trained on Colab with this preset.

    >>> colab_downloads(make_config("tiny"))[0]
    'MyDrive/inf265_project_3/temp/tiny/tokenizer.json  ->  temp/tiny/tokenizer.json'
    """
    colab = make_config(config.preset)  # the notebook writes the preset's own file names
    pairs = [(colab.tokenizer_filename, config.tokenizer_filename), (colab.model_filename, config.model_filename),
             (sidecar_filename(colab.model_filename), sidecar_filename(config.model_filename))]
    return [f"{COLAB_FOLDER}/{drive}  ->  {here}" for drive, here in pairs]


SLIDER_RANGES = {"temperature": (0.1, 2.0), "top_p": (0.1, 1.0)}  # the template's sliders


def slider_starts(config):
    """({"temperature": ..., "top_p": ...} the sidebar's sliders start at, notes): the configured
    values (--temperature, --top_p), clamped into the sliders' ranges with a note saying so.

    >>> slider_starts(make_config(top_p=0.5))
    ({'temperature': 0.7, 'top_p': 0.5}, [])
    >>> slider_starts(make_config(temperature=3.0))[1]
    ['--temperature 3 is outside the slider (0.1 to 2): it starts at 2']
    """
    starts, notes = {}, []
    for key, (low, high) in SLIDER_RANGES.items():
        value = getattr(config, key)
        starts[key] = min(max(value, low), high)
        if starts[key] != value:
            notes.append(f"--{key} {value:g} is outside the slider ({low:g} to {high:g}): it starts at {starts[key]:g}")
    return starts, notes


def file_stamp(path):
    """Modification time of a file (None when missing): part of the cache key, so a model
    retrained while the page runs is loaded again."""
    return os.path.getmtime(path) if os.path.isfile(path) else None


def compare_plans(settings, temperatures, seed):
    """The columns of a comparison: greedy, then top-p at each temperature, all with `seed`.

    >>> [settings_label(s) for s in compare_plans(SamplingSettings(), [0.5, 1.5], seed=7)]
    ['greedy', 'top-p 0.95, temperature 0.5, seed 7', 'top-p 0.95, temperature 1.5, seed 7']
    """
    greedy = dataclasses.replace(settings, strategy="greedy", seed=seed)
    return [greedy] + [dataclasses.replace(settings, strategy="top-p", temperature=t, seed=seed)
                       for t in temperatures]


def settings_label(settings):
    """The settings a comparison column was answered with, in one line."""
    if settings.strategy == "greedy":
        parts = ["greedy"]
    else:
        parts = [f"top-p {settings.p:g}", f"temperature {settings.temperature:g}", f"seed {settings.seed}"]
        if settings.top_k:
            parts.append(f"top-k {settings.top_k}")
    if settings.repetition_penalty != 1.0:
        parts.append(f"repetition penalty {settings.repetition_penalty:g}")
    return ", ".join(parts)


def mean_token_probability(steps):
    """Mean of the probability the model itself (temperature 1) gave each token of an answer.

    >>> from tools.answers import Step
    >>> mean_token_probability([Step(5, 1.0, 1, [], 0.5), Step(1, 1.0, 1, [], 0.25)])
    0.375
    """
    return sum(step.model_probability for step in steps) / len(steps) if steps else math.nan


@st.cache_data(show_spinner="Finding example questions...", max_entries=4)
def example_questions(source, split, val_fraction, seed, num_pairs=None, model_train_fraction=1.0):
    """(questions the model did not train on, what it was trained on), or ([], reason) when the
    data source is not on this machine (a Hub name) or cannot be read.

    The built-in corpus has its own held-out split; for any other source the questions come from
    the validation share train.py held out of the first num_pairs pairs (model.json records it;
    else model_train_fraction of them).
    """
    from dataset import split_indices
    from support.corpus import BUILTIN_NAME
    from support.data_sources import load_qa_pairs

    if source != BUILTIN_NAME and not os.path.exists(source):  # a Hub name: never downloaded for examples
        return [], f"{source} (no example questions: the page does not download the data)"
    try:
        if source == BUILTIN_NAME:
            trained_on = load_qa_pairs(source, "train").description
            pool = load_qa_pairs(source, "heldout").questions
            where = "held-out questions of the built-in corpus"
        else:
            pairs = load_qa_pairs(source, split)
            trained_on = pairs.description
            n = num_pairs or max(1, int(model_train_fraction * len(pairs)))
            _, held_out = split_indices(n, val_fraction, seed)
            pool = [pairs.questions[i] for i in held_out]
            where = "questions of the validation share, not trained on"
    except (UserError, OSError, ValueError) as exc:
        return [], f"{source} (no example questions: {exc})"
    picked = random.Random(seed).sample(pool, min(EXAMPLES_SHOWN, len(pool)))
    return picked, f"{trained_on}; examples: {where}"


def attention_chart(weights, labels):
    """A heat map of one query position's attention, (layers, heads, keys), over `labels`."""
    layers, heads, keys = weights.shape
    rows = [{"layer and head": f"layer {l + 1}, head {h + 1}", "token": labels[k],
             "weight": float(weights[l, h, k])}
            for l in range(layers) for h in range(heads) for k in range(keys)]
    order = [f"layer {l + 1}, head {h + 1}" for l in range(layers) for h in range(heads)]
    return alt.Chart(alt.Data(values=rows)).mark_rect().encode(
        x=alt.X("token:N", sort=labels, title=None, axis=alt.Axis(labelAngle=-60)),
        y=alt.Y("layer and head:N", sort=order, title=None),
        color=alt.Color("weight:Q", scale=alt.Scale(domain=[0, 1], scheme="blues")),
        tooltip=["layer and head:N", "token:N", alt.Tooltip("weight:Q", format=".3f")],
    ).properties(height=max(150, 28 * layers * heads))


@st.cache_resource(show_spinner="Loading the model and tokenizer...", max_entries=4)
def load_chat_model(config, stamps):
    """(model, tokenizer, info, special ids) for `config`.

    Cached per config (which holds the file paths) and file stamps. Raises UserError when a file
    is missing, damaged, or the tokenizer and model do not belong together.
    """
    return load_trained_run(config)


# ----------------------------------------------------------------------------------------------
# The page

@dataclasses.dataclass
class Loaded:
    model: torch.nn.Module
    tokenizer: object
    special_ids: dict


def show_message(message, loaded, index):
    """Replay one message of the history (the live answer is streamed instead, then this)."""
    with st.chat_message(message["role"]):
        if "compare" in message:
            for column, answer in zip(st.columns(len(message["compare"])), message["compare"]):
                with column:
                    st.markdown(f"**{escape_markdown(answer['label'])}**")
                    if answer["content"]:
                        st.markdown(escape_markdown(answer["content"]))
                    show_details(answer, loaded)
            return
        if message["role"] == "user" or message["content"]:
            st.markdown(escape_markdown(message["content"]))
        show_details(message, loaded, index)


def show_details(message, loaded, index=None):
    """Everything under a message's text: notes, and for answers how they were sampled (and,
    for a chat answer at position `index` of the history, what the model attended to)."""
    if message["role"] == "assistant" and not message["content"]:
        st.markdown(f"*{EMPTY_ANSWER}*")
    for note in message.get("notes", []):
        st.caption(note)
    if message["role"] != "assistant":
        return
    if "label" in message:  # a column of a comparison
        st.caption(f"mean token probability {mean_token_probability(message['steps']):.2f}",
                   help="the mean of the probability the model gave each token it wrote "
                        "(its own softmax, temperature 1): high for greedy, lower for hot samples")
    show_sampling(message["steps"], loaded.tokenizer, loaded.special_ids)
    if index is not None and message["steps"]:
        show_attention(message, loaded, index)


def show_attention(message, loaded, index):
    """A heat map of what the model attended to when it chose one token of the answer, per layer
    and head: a separate forward pass (support.probes.attention_weights), only when asked for."""
    with st.expander(ATTENTION_LABEL):
        if not st.toggle("Show attention", key=f"attention-{index}",
                         help="one more pass of the model over the question and this answer, "
                              "reading every block's attention weights"):
            return
        names = {i: loaded.tokenizer.id_to_token(i) for i in loaded.special_ids.values()}
        ids = (message["context"] + [step.token_id for step in message["steps"]])[:loaded.model.max_len]
        labels = [f"{n}: {token_label(loaded.tokenizer, t, names)}" for n, t in enumerate(ids)]
        answer_positions = list(range(len(message["context"]), len(ids)))
        chosen = answer_positions[0]
        if len(answer_positions) > 1:
            chosen = st.select_slider("Answer token", answer_positions, format_func=lambda n: labels[n],
                                      key=f"attention-token-{index}")
        query = chosen - 1  # the position whose output chose this token
        weights = attention_weights(loaded.model, ids)  # (L, H, T, T)
        st.caption(escape_markdown(f"To choose {labels[chosen]}, position {labels[query]} attended to "
                                   f"these tokens (rows: layers and heads; each row sums to 1)."))
        st.altair_chart(attention_chart(weights[:, :, query, :query + 1], labels[:query + 1]),
                        width="stretch")


def show_sampling(steps, tokenizer, special_ids):
    with st.expander(SAMPLING_LABEL):
        if not steps:
            st.caption("No token was generated.")
            return
        names = {token_id: tokenizer.id_to_token(token_id) for token_id in special_ids.values()}
        table = sampling_table(steps, tokenizer, names)
        st.dataframe(table, hide_index=True, column_config={
            "probability": st.column_config.ProgressColumn(
                "probability", format="%.3f", min_value=0.0, max_value=1.0,
                help="of the chosen token, under the distribution it was drawn from "
                     "(top-p: the renormalised nucleus; greedy: always 1)"),
            "nucleus size": st.column_config.NumberColumn(
                "nucleus size", help="how many tokens it was drawn from (greedy: 1)"),
            "top alternatives": st.column_config.TextColumn(
                "top alternatives", help="the five most likely tokens after temperature"),
        })
        # Labels carry the position so a token chosen twice gets two bars.
        chart = {"token": [f"{n}: {label}" for n, label in zip(table["#"], table["token"])],
                 "probability": table["probability"]}
        st.bar_chart(chart, x="token", y="probability", sort=False, height=220)


def question_notes(typed, question, stream, max_len):
    """Captions for a question that was cut before the model saw it."""
    notes = []
    if len(typed) >= MAX_QUESTION_CHARS:  # Streamlit cuts longer text to max_chars, silently
        notes.append(f"Questions are cut at {MAX_QUESTION_CHARS} characters (the text box's "
                     f"limit); yours reached it, so its end may be missing.")
    seen = fit_prompt(stream.prompt, stream.sep_id, max_len, stream.settings.max_new_tokens)
    if len(seen) < len(stream.prompt):
        notes.append(f"The model saw only the last {len(seen) - 1} tokens of your question: its "
                     f"context holds {max_len} tokens for question and answer together.")
    return notes


def answer_notes(stream, max_len):
    """Captions for an answer that stopped before the model wrote [END]."""
    if stream.finished_by_end or not stream.steps:
        return []
    if len(stream.steps) >= stream.settings.max_new_tokens:
        return [f"Cut at the max answer length ({stream.settings.max_new_tokens} tokens)."]
    return [f"Cut because the model's context ({max_len} tokens, question included) is full."]


def main():
    st.title("Cursed Chatbot")

    argv = chat_arguments()
    parser = argparse.ArgumentParser(prog="streamlit run chatbot.py --", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        config, _ = parse_cli(argv, parser=parser)
    except ConfigError as exc:
        st.error(escape_markdown(f"error: {exc}"))
        st.stop()
    except SystemExit:  # argparse printed the problem (or --help) to the terminal
        st.error(escape_markdown(f"cannot read the arguments {shlex.join(argv)!r}; "
                                 f"the terminal running streamlit says why"))
        st.stop()

    try:
        model, tokenizer, info, special_ids = load_chat_model(
            config, (file_stamp(config.tokenizer_filename), file_stamp(config.model_filename)))
    except UserError as exc:
        st.error(escape_markdown(f"Cannot start the chat: {exc}"))
        st.markdown("**Trained on Colab?** Download these files from Google Drive and save them here "
                    "(paths relative to the repository folder), then reload the page:")
        st.code("\n".join(colab_downloads(config)), language="text")
        st.markdown("**Or create them on this machine**, in the repository folder:")
        st.code(setup_commands(argv), language="bash")
        st.stop()

    for note in info["notes"]:  # e.g. the head count assumed for a checkpoint without model.json
        st.warning(escape_markdown(note))
    if "messages" not in st.session_state:
        st.session_state.messages = []
    loaded = Loaded(model, tokenizer, special_ids)

    with st.sidebar:
        strategy = st.selectbox("Sampling strategy", ["greedy", "top-p"], index=1)
        greedy = strategy == "greedy"
        ban_special = st.checkbox(
            "Never write [SEP], [PAD] or [UNK]", value=True,
            help="These tokens would only show as gaps, so the page keeps them out of answers, also "
                 "for greedy. Untick for the assignment's pure greedy: the argmax over every token.")
        start, notes = slider_starts(config)
        temperature = st.slider("Temperature", *SLIDER_RANGES["temperature"], start["temperature"])
        top_p = st.slider("Top-p", *SLIDER_RANGES["top_p"], start["top_p"], disabled=greedy,
                          help="keep the most likely tokens up to this much probability mass")
        for note in notes:
            st.caption(escape_markdown(note))
        max_new_tokens = st.slider("Max answer length", 1, model.max_len, min(100, model.max_len),
                                   help="in tokens; the question and the answer together also "
                                        f"stop at the model's max_len ({model.max_len})")
        seed = st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1,
                               help="0 or empty: a new random answer every time; any other "
                                    "number repeats the same answer")
        top_k = st.number_input("Top-k", min_value=0, max_value=model.vocab_size, value=0, step=1,
                                disabled=greedy, help="draw only from the k most likely tokens; 0: off")
        repetition_penalty = st.slider("Repetition penalty", 1.0, 2.0, 1.0, step=0.05,
                                       help="make tokens already in the answer less likely; 1.0: off")
        compare = st.toggle("Compare strategies",
                            help="answer each question with greedy and with top-p at several "
                                 "temperatures, side by side (Top-p, Top-k, seed and the limits as set above)")
        temperatures = st.multiselect("Temperatures to compare", COMPARE_TEMPERATURES, default=[0.5, 1.0, 1.5],
                                      disabled=not compare, help="one top-p column for each")
        if st.button("Clear chat history"):
            st.session_state.messages = []
        with st.container(border=True):
            st.markdown("**Model**  \n" + escape_markdown("\n".join(model_card(model, info, config))))

    settings = SamplingSettings(strategy=strategy, p=top_p, temperature=temperature,
                                top_k=int(top_k), repetition_penalty=repetition_penalty,
                                max_new_tokens=max_new_tokens, seed=int(seed) if seed else None)

    data = info.get("data") or {}  # model.json: the pairs, validation share and seed it was trained with
    examples, trained_on = example_questions(
        info.get("dataset") or config.dataset, info.get("split") or config.split,
        data.get("val_fraction", config.val_fraction), data.get("seed", config.seed),
        data.get("num_pairs"), config.model_train_fraction)
    st.caption(escape_markdown(f"Trained on {trained_on}."))
    for index, message in enumerate(st.session_state.messages):
        show_message(message, loaded, index)

    typed = st.chat_input("Type your question...", max_chars=MAX_QUESTION_CHARS)
    clicked = st.session_state.pop("example_question", None)
    if typed is None and clicked is None and not st.session_state.messages and examples:
        st.markdown("Try one of these, or type your own:")
        for n, example in enumerate(examples):
            if st.button(escape_markdown(example), key=f"example-{n}"):
                # Asked in a fresh run without the buttons, so the answer's elements keep their
                # places on later runs (an expander that moved would close).
                st.session_state.example_question = example
                st.rerun()
    typed = typed if typed is not None else clicked
    if typed is None:
        return
    question = clean_question(typed)
    if not question:
        st.warning("Type a question first: the message was empty or only spaces.")
        return

    if compare:  # one shared seed, shown in every column, so each answer can be repeated
        plans = compare_plans(settings, temperatures, settings.seed or random.randrange(1, 2**31))
    else:
        plans = [settings]
    streams = [AnswerStream(model, tokenizer, question, plan, special_ids, ban_special=ban_special, records=True)
               for plan in plans]
    asked = {"role": "user", "content": question,
             "notes": question_notes(typed, question, streams[0], model.max_len)}
    st.session_state.messages.append(asked)
    show_message(asked, loaded, len(st.session_state.messages) - 1)
    with st.chat_message("assistant"):
        if not compare:
            st.write_stream(escaped_stream(streams[0]))
            answer = answer_record(streams[0], model.max_len)
            st.session_state.messages.append(answer)
            show_details(answer, loaded, len(st.session_state.messages) - 1)
            return
        answers = []
        for column, stream in zip(st.columns(len(streams)), streams):
            with column:  # streamed one column after the other; Streamlit's Stop cancels as usual
                st.markdown(f"**{escape_markdown(settings_label(stream.settings))}**")
                st.write_stream(escaped_stream(stream))
                answers.append({**answer_record(stream, model.max_len), "label": settings_label(stream.settings)})
                show_details(answers[-1], loaded)
        st.session_state.messages.append({"role": "assistant", "content": "", "compare": answers})


def answer_record(stream, max_len):
    """What the history keeps of an answer: its text, how each token was chosen, the notes, and
    the ids the model saw before it (for the attention view)."""
    context = fit_prompt(stream.prompt, stream.sep_id, max_len, stream.settings.max_new_tokens)
    return {"role": "assistant", "content": stream.text, "steps": list(stream.steps),
            "notes": answer_notes(stream, max_len), "context": context}


if __name__ == "__main__":
    main()
