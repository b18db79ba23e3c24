"""Default CPU XLA flags: added only where the user has not set them, never for accelerators."""

import os

import jax

from sspcab_jax.xla_flags import apply_default_cpu_flags, default_cpu_flags, merge_flags


def test_merge_keeps_user_values():
    user = "--xla_cpu_experimental_ynn_fusion_type=eltwise --xla_force_host_platform_device_count=4"
    merged = merge_flags(user, "--xla_cpu_experimental_ynn_fusion_type=dot --xla_other=1")
    assert merged == user + " --xla_other=1"
    assert merge_flags("", "--a=1") == "--a=1"


def test_apply_to_an_environment():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert apply_default_cpu_flags(env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {default_cpu_flags()}"
    assert apply_default_cpu_flags(env)  # idempotent
    assert env["XLA_FLAGS"].count("ynn_fusion_type") == 1


def test_skipped_for_accelerators_and_opt_out():
    for env in (
        {"JAX_PLATFORMS": "cuda"},
        {"JAX_PLATFORMS": "tpu,cpu"},
        {"SSPCAB_JAX_NO_CPU_FLAGS": "1"},
    ):
        assert not apply_default_cpu_flags(env)
        assert "XLA_FLAGS" not in env
    env = {"JAX_PLATFORMS": "cpu"}
    assert apply_default_cpu_flags(env) and env["XLA_FLAGS"] == default_cpu_flags()


def test_process_environment_left_alone_once_a_backend_runs(monkeypatch):
    # XLA has read XLA_FLAGS when the first backend started: adding flags then changes nothing.
    jax.devices()
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    monkeypatch.delenv("JAX_PLATFORMS", raising=False)
    monkeypatch.delenv("SSPCAB_JAX_NO_CPU_FLAGS", raising=False)
    assert not apply_default_cpu_flags()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"


def test_flags_follow_the_detected_isa(monkeypatch):
    from sspcab_jax import machine, xla_flags

    assert default_cpu_flags("avx512") == "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"
    assert default_cpu_flags("avx2") == "--xla_cpu_experimental_ynn_fusion_type=dot,reduce"
    assert default_cpu_flags("neon") == default_cpu_flags("avx512")  # no row: the defaults
    table = {"avx512": (("--a", "512"),), "avx2": (("--a", "2"),)}
    monkeypatch.setattr(xla_flags, "CPU_FLAGS_BY_ISA", table)
    assert default_cpu_flags("avx2") == "--a=2"
    detected = machine.CpuInfo(model="test", isa="avx2")
    monkeypatch.setattr(machine, "detect_cpu", lambda: detected)
    env = {}
    assert apply_default_cpu_flags(env) and env["XLA_FLAGS"] == "--a=2"
    monkeypatch.setattr(machine, "detect_cpu", lambda: machine.CpuInfo("test", isa="avx512"))
    assert default_cpu_flags() == "--a=512"
