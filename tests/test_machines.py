"""The machines students use, faked: what each reports decides the training precision (support.runtime.Hardware).

A Colab T4 (compute capability 7.5) must train in fp16 with a gradient scaler, not in emulated bf16;
a laptop whose system shows no CPU flags (macOS, Windows) in fp32, not in emulated bf16. Nothing here
needs the machine it fakes.
"""

import pytest
import torch

from support import runtime
from support.runtime import Hardware, choose_precision, cpu_has_fast_bf16

SKYLAKE = frozenset({"fpu", "avx2", "avx512f", "avx512bw"})  # AVX-512 without bf16 units
ZEN4 = frozenset({"avx2", "avx512f", "avx512_bf16"})
SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "amx_bf16", "amx_tile"})


@pytest.mark.parametrize("name,capability,expected", [
    ("Tesla V100-SXM2-16GB", (7, 0), "fp16"),
    ("Tesla T4", (7, 5), "fp16"),
    ("NVIDIA A100-SXM4-40GB", (8, 0), "bf16"),
    ("NVIDIA L4", (8, 9), "bf16"),
    ("NVIDIA H100 80GB HBM3", (9, 0), "bf16"),
])
def test_cuda_precision_follows_the_compute_capability(name, capability, expected):
    precision = choose_precision("cuda", "auto", Hardware(gpu_name=name, gpu_capability=capability))
    assert precision.name == expected
    assert precision.grad_scaler == (expected == "fp16") and precision.autocast
    # The log names the GPU and its capability, and says why.
    assert name in precision.reason and f"{capability[0]}.{capability[1]}" in precision.reason
    assert ("no native bf16" in precision.reason) == (expected == "fp16")


@pytest.mark.parametrize("hardware,expected,says", [
    (Hardware("Linux", cpu_flags=ZEN4, onednn_bf16=True), "bf16", "native bf16 units (avx512_bf16)"),
    (Hardware("Linux", cpu_flags=SAPPHIRE_RAPIDS, onednn_bf16=True), "bf16", "(amx_bf16)"),
    (Hardware("Linux", cpu_flags=SKYLAKE, onednn_bf16=True), "fp32", "no avx512_bf16 or amx_bf16 flag"),
    (Hardware("Linux", cpu_flags=ZEN4, onednn_bf16=False), "fp32", "oneDNN cannot use"),
    (Hardware("Linux", "aarch64", cpu_flags=None, onednn_bf16=True), "fp32", "Linux does not show"),
    (Hardware("Darwin", "arm64", cpu_flags=None, onednn_bf16=True), "fp32", "--device mps"),
    (Hardware("Darwin", "x86_64", cpu_flags=None, onednn_bf16=True), "fp32", "macOS does not show"),
    (Hardware("Windows", "AMD64", cpu_flags=None, onednn_bf16=True), "fp32", "--precision bf16"),
    (Hardware("", "", cpu_flags=None, onednn_bf16=True), "fp32", "this system does not show"),
], ids=["zen4", "amx", "skylake", "no-onednn", "linux-arm", "mac-arm", "mac-intel", "windows", "unknown"])
def test_cpu_precision_is_bf16_only_with_native_units_shown_by_the_flags(hardware, expected, says):
    precision = choose_precision("cpu", "auto", hardware)
    assert precision.name == expected and not precision.grad_scaler
    assert says in precision.reason, precision.reason
    assert cpu_has_fast_bf16(hardware) == (expected == "bf16")
    assert ("--device mps" in precision.reason) == (hardware.system == "Darwin" and hardware.machine == "arm64")


def test_asked_for_precision_is_kept_whatever_the_hardware():
    t4 = Hardware(gpu_name="Tesla T4", gpu_capability=(7, 5))
    assert choose_precision("cuda", "bf16", t4).name == "bf16"
    assert choose_precision("cpu", "fp16", t4).grad_scaler
    assert choose_precision("cpu", "fp32").reason == "asked for"


def test_the_real_machine_is_read_from_proc_cpuinfo(monkeypatch):
    """read_hardware feeds the same rule: oneDNN's yes is not enough without the flag."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(runtime, "cpu_info", lambda: {"flags": " ".join(SKYLAKE)})
    assert not cpu_has_fast_bf16()
    assert choose_precision(torch.device("cpu"), "auto").name == "fp32"
    monkeypatch.setattr(runtime, "cpu_info", lambda: {"flags": " ".join(ZEN4)})
    assert cpu_has_fast_bf16()
    monkeypatch.setattr(runtime, "cpu_info", lambda: {})  # no /proc/cpuinfo (macOS, Windows): fp32
    assert not cpu_has_fast_bf16()
    assert runtime.read_hardware().cpu_flags is None


def test_runtime_takes_the_faked_hardware():
    from config import make_config

    machine = runtime.Runtime(make_config("tiny", device="cpu"), Hardware("Windows", "AMD64", onednn_bf16=True))
    assert machine.precision.name == "fp32" and "Windows" in machine.precision.reason
