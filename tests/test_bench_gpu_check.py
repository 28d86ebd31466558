"""bench/gpu_check.py runs its whole check on a CPU too (on a GPU it is run by hand)."""

import re
import subprocess
import sys

from helpers import ROOT


def test_gpu_check_runs_on_a_cpu_in_auto_then_fp16():
    """As on a GPU: first what --precision auto picks (saying what and why), then fp16 with a scaler."""
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--preset", "tiny",
                             "--dataset", "builtin", "--precision", "auto,fp16", "--compile", "off",
                             "--steps", "2", "--warmup", "1", "--train_steps", "30"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("machine: ")
    blocks = out.split("\nprecision: ")[1:]
    assert len(blocks) == 2, out
    assert re.match(r"--precision auto: (bf16|fp32) \(.+\); GPU: none \(CPU run\)", blocks[0]), blocks[0][:200]
    assert blocks[1].startswith("fp16 (asked for") and "GPU: none (CPU run)" in blocks[1]
    for block in blocks:
        for recipe in ("template recipe", "this project"):
            assert re.search(rf"^{recipe}\s+\d+\.\d+\s+[\d,]+\s+nan\s+[\d,.]+$", block, re.M), block
        assert re.search(r"^this project trains \d+\.\d\dx the template's useful tokens/s$", block, re.M), block
        first, last = map(float, re.search(r"first 10 (\d+\.\d+), of the last 10 (\d+\.\d+)", block).groups())
        assert last < first
        assert "resume: Resumed from" in block and "30 steps in total" in block
    assert "scale 65536" in blocks[1] or re.search(r"scale \d+\.\d+", blocks[1])  # the scaler ran in fp16
