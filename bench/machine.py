"""The machine a benchmark runs on: every script in bench/ prints this first (STYLE.md, "Numbers").

    .venv/bin/python bench/machine.py [PRECISION]

machine: AMD EPYC (family 25 model 17), AVX-512, native bf16 units: yes (avx512_bf16)
torch 2.13.0+cpu, 2 threads of 2 CPUs; no CUDA GPU
precision: fp32

"native bf16 units" is support.runtime.cpu_has_fast_bf16(), the test train.py's --precision auto uses.
"""

import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from support.runtime import cpu_has_fast_bf16, cpu_info  # noqa: E402


def machine_header(precision=None):
    info = cpu_info()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info:
        name += f" (family {info['cpu family']} model {info.get('model', '?')})"
    flags = set(info.get("flags", "").split())
    isa = next((level for flag, level in [("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse", "SSE")]
                if flag in flags), "ISA unknown (no /proc/cpuinfo flags)")
    native = ", ".join(sorted(flags & {"avx512_bf16", "amx_bf16"})) or "no such flag"
    gpu = f"CUDA GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no CUDA GPU"
    lines = [f"machine: {name}, {isa}, native bf16 units: "
             + (f"yes ({native})" if cpu_has_fast_bf16() else "no"),
             f"torch {torch.__version__}, {torch.get_num_threads()} threads of {os.cpu_count()} CPUs; {gpu}"]
    if precision:
        lines.append(f"precision: {precision}")
    return "\n".join(lines)


def print_machine_header(precision=None):
    print(machine_header(precision), flush=True)


if __name__ == "__main__":
    print_machine_header(" ".join(sys.argv[1:]) or None)
