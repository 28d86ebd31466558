"""bench/gpu_check.py runs its whole check on a CPU too (on a GPU it is run by hand)."""

import re
import subprocess
import sys

from helpers import ROOT


def test_gpu_check_runs_on_a_cpu_in_fp16():
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--preset", "tiny",
                             "--dataset", "builtin", "--precision", "fp16", "--compile", "off",
                             "--steps", "2", "--warmup", "1", "--train_steps", "30"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "GPU: none (CPU run)" in out and "precision: fp16" in out
    for recipe in ("template recipe", "this project"):
        assert re.search(rf"^{recipe}\s+\d+\.\d+\s+[\d,]+\s+nan\s+[\d,.]+$", out, re.M), out
    assert re.search(r"^this project trains \d+\.\d\dx the template's useful tokens/s$", out, re.M), out
    first, last = map(float, re.search(r"first 10 (\d+\.\d+), of the last 10 (\d+\.\d+)", out).groups())
    assert last < first
    assert "resume: Resumed from" in out and "30 steps in total" in out
