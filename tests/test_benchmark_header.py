"""Benchmark headers name the CPU, its ISA, cores, estimated peak and the XLA flags in effect."""

import pytest

from benchmarks import step
from benchmarks.common import machine_line
from sspcab_jax import machine


def test_header_lines(monkeypatch):
    cpu = machine.CpuInfo("Test CPU 9000", "avx2", ("avx2", "fma"), 4, 8, 3.0, "cpufreq max", 32)
    monkeypatch.setattr(machine, "detect_cpu", lambda: cpu)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    monkeypatch.delenv("SSPCAB_JAX_NO_CPU_FLAGS", raising=False)
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    versions, cpu_line, flags = machine_line().splitlines()
    assert '"jax": ' in versions and '"device": ' in versions
    assert cpu_line.startswith("CPU Test CPU 9000; ISA avx2 (avx2, fma); cores 4 physical / 8")
    assert "~384 GFLOP/s" in cpu_line  # 4 cores x 3.0 GHz x 32 FLOP/cycle
    assert flags.startswith("XLA_FLAGS='--xla_cpu_max_isa=AVX2'; project defaults for avx2: ")
    assert "ynn_fusion_type=dot,reduce" in flags


def test_step_peak_defaults_to_the_estimate():
    assert step._parse([]).peak_gflops is None  # filled from detect_cpu() when printing
    assert step._parse(["--peak_gflops", "100"]).peak_gflops == 100.0
    assert step._parse(["--peak-gflops", "50"]).peak_gflops == 50.0
    estimate = machine.detect_cpu().peak_gflops
    assert step.default_peak_gflops() == (pytest.approx(estimate) if estimate else None)
