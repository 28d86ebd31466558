"""The main job, `make demo`: a working answer bot on this machine in about five minutes, offline.

    python -m tools.demo                 # train if needed, show answers, then serve the chat page
    python -m tools.demo --no-serve      # everything but the server (or INF265_DEMO_NO_SERVE=1)
    python -m tools.demo --port 8600     # another port; the page listens on localhost only
    python -m tools.demo --num_epochs 5  # any config key, as in every script (preset: demo)

Steps: train the tokenizer on the built-in generated corpus if temp/demo/ has none; train the
demo model, or finish an interrupted training run (rerunning resumes); answer a few held-out
questions (never seen in training) with greedy and top-p decoding and print the exact-answer
accuracy on all of them; start `streamlit run chatbot.py` on localhost and print its address.
"""

import argparse
import os
import subprocess
import sys
import time

import torch

from config import parse_cli
from inference import SamplingSettings, load_trained_run
from support import corpus
from support.checkpoint import read_sidecar
from tokenizer import special_token_ids, train_tokenizer
from tools.answers import AnswerStream
from train import train_model
from utils import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where chatbot.py lies


def evaluate_heldout(model, tokenizer, config, rows=None, show=0):
    """Greedy exact-answer accuracy on the built-in held-out questions: (right, total, per family).

    per family maps each family to its accuracy, a fraction between 0 and 1.
    """
    ids = special_token_ids(tokenizer, config)
    rows = rows if rows is not None else corpus.generate("heldout", seed=config.seed)
    greedy = SamplingSettings("greedy", max_new_tokens=model.max_len)
    right, per_family = 0, {}
    for i, row in enumerate(rows):
        answer = "".join(AnswerStream(model, tokenizer, row["question"], greedy, ids))
        ok = corpus.is_correct(answer, row["answer"])
        right += ok
        done, total = per_family.get(row["family"], (0, 0))
        per_family[row["family"]] = (done + ok, total + 1)
        if i < show:
            print(f"  {'ok ' if ok else 'NO '} {row['question']}  ->  {answer}")
    return right, len(rows), {k: a / n for k, (a, n) in per_family.items()}


def show_answers(model, tokenizer, config, questions):
    ids = special_token_ids(tokenizer, config)
    for question in questions:
        print(f"Question: {question}")
        for strategy in ("greedy", "top-p"):
            settings = SamplingSettings(strategy, config.top_p, config.temperature, seed=config.seed)
            answer = "".join(AnswerStream(model, tokenizer, question, settings, ids))
            print(f"  {strategy:>6}: {answer}")


def serve(config, port):
    """Run the chat page on localhost until Ctrl-C."""
    chat_args = ["--preset", config.preset, "--tokenizer_filename", config.tokenizer_filename,
                 "--model_filename", config.model_filename, "--device", config.device]
    command = [sys.executable, "-m", "streamlit", "run", "chatbot.py", "--server.address", "localhost",
               "--server.port", str(port), "--", *chat_args]  # the browser opens where there is a display
    print(f"\nChat page: http://localhost:{port}  (Ctrl-C to stop)", flush=True)
    try:
        subprocess.run(command, check=False, cwd=ROOT)
    except KeyboardInterrupt:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-serve", action="store_true", help="do not start the chat page")
    parser.add_argument("--port", type=int, default=8501)
    argv = sys.argv[1:]
    if not any(a == "--preset" or a.startswith("--preset=") or a == "--tiny" for a in argv):
        argv = ["--preset", "demo", *argv]
    config, args = parse_cli(argv, parser=parser)
    no_serve = args.no_serve or os.environ.get("INF265_DEMO_NO_SERVE") == "1"
    start = time.perf_counter()

    if not os.path.exists(config.tokenizer_filename):
        print(f"== Training the tokenizer on {config.dataset} ==")
        train_tokenizer(config)
    info = read_sidecar(config.model_filename)
    if not os.path.exists(config.model_filename) or info.get("epoch", 0) < config.num_epochs:
        print("== Training the demo model (rerun to resume if interrupted) ==")
        train_model(config)
    else:
        print(f"== Using the trained model {config.model_filename} (epoch {info['epoch']}, "
              f"validation loss {info.get('val_loss') or float('nan'):.4f}); delete it to retrain ==")

    model, tokenizer, info, _ = load_trained_run(config)
    for note in info["notes"]:
        print(note)
    torch.manual_seed(config.seed)
    if config.dataset == corpus.BUILTIN_NAME:
        rows = corpus.generate("heldout", seed=config.seed)
        print("\n== Held-out questions (never seen in training) ==")
        show_answers(model, tokenizer, config, [r["question"] for r in rows[::120]])
        print(f"\n== Greedy exact-answer accuracy on all {len(rows)} held-out questions ==")
        right, total, per_family = evaluate_heldout(model, tokenizer, config, rows)
        print(f"accuracy {right / total:.1%} ({right}/{total}; "
              + ", ".join(f"{k} {v:.0%}" for k, v in sorted(per_family.items())) + ")")
    else:
        show_answers(model, tokenizer, config, ["what is the largest dog breed?"])
    print(f"\nDemo ready in {time.perf_counter() - start:.0f} s.")
    if no_serve:
        print(f"To chat: streamlit run chatbot.py -- --preset {config.preset}")
    else:
        serve(config, args.port)


if __name__ == "__main__":
    run_main(main)
