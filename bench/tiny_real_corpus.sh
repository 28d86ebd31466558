#!/usr/bin/env bash
# The tiny preset on the real stand-in QA corpus: training and validation loss after a fixed
# number of steps (train.py prints them), after the machine header. Files go to temp/bench-tiny/.
#   bash bench/tiny_real_corpus.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python bench/machine.py "train.py's --precision auto: see its Device line below"
steps=${1:-1000}
data=../shared/data/qa/train.jsonl.gz
files=(--tokenizer_filename temp/bench-tiny/tokenizer.json --model_filename temp/bench-tiny/model.pth
       --optimizer_filename temp/bench-tiny/optimizer.pth --log_filename temp/bench-tiny/train_log.csv
       --plot_filename temp/bench-tiny/loss_curve.png)
.venv/bin/python tokenizer.py --preset tiny --dataset "$data" "${files[@]}" > /dev/null 2>&1
.venv/bin/python train.py --preset tiny --dataset "$data" --model_train_fraction 1.0 --num_epochs 10 \
    --max_steps "$steps" --eval_every "$((steps / 4))" --fresh "${files[@]}" 2>/dev/null \
    | grep -E "^Device|Training on|validation loss|Stopped|Mean Epoch"
