"""Every benchmark names its machine first (bench/machine.py); no timings here."""

import ast
import glob
import os

from bench.machine import machine_header
from helpers import ROOT


def test_header_names_cpu_isa_torch_and_precision():
    header = machine_header("bf16 autocast")
    assert "torch 2." in header
    assert "precision: bf16 autocast" in header
    assert "precision" not in machine_header()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        if names:
            assert names[0] in header
        if any(line.startswith("flags") for line in lines):
            assert any(f", {level}, " in header for level in ("AVX-512", "AVX2", "AVX", "SSE"))


def calls_in_main(path):
    tree = ast.parse(open(path).read())
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main")
    return {node.func.id for node in ast.walk(main) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def test_every_bench_script_prints_the_header_in_main():
    scripts = [p for p in sorted(glob.glob(os.path.join(ROOT, "bench", "*.py"))) if not p.endswith("machine.py")]
    assert len(scripts) >= 5
    missing = [os.path.basename(p) for p in scripts if "print_machine_header" not in calls_in_main(p)]
    assert not missing, f"bench scripts whose main() does not call print_machine_header: {missing}"
    shell = sorted(glob.glob(os.path.join(ROOT, "bench", "*.sh")))
    assert len(shell) >= 2
    for path in shell:
        with open(path) as f:
            assert "bench/machine.py" in f.read(), f"{os.path.basename(path)} prints no machine header"
