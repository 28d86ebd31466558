#!/usr/bin/env bash
# The `small` preset on the real stand-in QA corpus, as the README reports it: the machine header,
# the wall-clock minutes of tokenizer and training, train.py's validation losses, then tools/evaluate.py
# on the held-out eval file (scored only, never trained or tuned on), then the README's ten answers
# (greedy, and top-p 0.9 at temperatures 0.5 and 1.0). Files go to temp/small/.
# Arguments are passed to train.py (the README's AVX2 run: --num_epochs 1).
#   bash bench/small_real_corpus.sh
#   bash bench/small_real_corpus.sh --num_epochs 1
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python bench/machine.py "train.py's --precision auto: see its Device line below"
data=../shared/data/qa
start=$(date +%s)
.venv/bin/python tokenizer.py --preset small --dataset "$data/train.jsonl.gz" --model_train_fraction 1 \
    --retrain > /dev/null 2>&1
.venv/bin/python train.py --preset small --dataset "$data/train.jsonl.gz" --model_train_fraction 1 --fresh "$@" \
    2>/dev/null | grep -E "^Device|Training on|validation loss|Mean Epoch"
echo "tokenizer and training: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s wall clock"
.venv/bin/python -m tools.evaluate --preset small --dataset "$data/eval.jsonl.gz" --model_train_fraction 1 2>/dev/null
questions=(
    "What are the symptoms of diabetes?" "What causes high blood pressure?" "How is asthma treated?"
    "What is the capital of France?" "Who developed the theory of relativity?" "What is photosynthesis?"
    "When did World War II end?" "What is (are) Alzheimer's disease?" "How many people live in London?"
    "What is the largest planet in the solar system?")
for settings in "--strategy greedy" "--strategy top-p --top_p 0.9 --temperature 0.5" \
                "--strategy top-p --top_p 0.9 --temperature 1.0"; do
    # shellcheck disable=SC2086  # $settings holds several arguments
    .venv/bin/python inference.py --preset small --max_new_tokens 40 --sample_seed 1 $settings \
        "${questions[@]/#/--question=}" 2>/dev/null
done
