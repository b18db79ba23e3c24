"""CPU detection from /proc/cpuinfo and sysctl samples; peaks checked against hand-made values."""

import pytest

from sspcab_jax import machine

# Realistic excerpts (keys and flags as the kernel prints them; flag lists shortened).
X86_COMMON = "fpu vme sse sse2 ssse3 sse4_1 sse4_2 popcnt aes xsave avx f16c fma avx2 bmi1 bmi2"
GENOA_FLAGS = X86_COMMON + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_bf16 avx512_vnni"


def x86_block(processor, core, model_name, family, model, mhz, flags, vendor="AuthenticAMD"):
    return (
        f"processor\t: {processor}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
        f"model\t\t: {model}\nmodel name\t: {model_name}\nstepping\t: 1\ncpu MHz\t\t: {mhz}\n"
        f"physical id\t: 0\nsiblings\t: 4\ncore id\t\t: {core}\ncpu cores\t: 2\n"
        f"flags\t\t: {flags}\nbogomips\t: 4800.00\n\n"
    )


# AMD EPYC 9654 (Zen 4, AVX-512), 2 cores with SMT: logical 0/1 on core 0, 2/3 on core 1.
GENOA = "".join(
    x86_block(p, p // 2, "AMD EPYC 9654 96-Core Processor", 25, 17, "2400.000", GENOA_FLAGS)
    for p in range(4)
)
# AMD EPYC 7B13 (Zen 3, AVX2 only), 2 cores, no SMT.
MILAN = "".join(
    x86_block(p, p, "AMD EPYC 7B13 64-Core Processor", 25, 1, "2450.000", X86_COMMON)
    for p in range(2)
)
# The Zen 5 EPYC of benchmarks/README.md (the VM masks the name).
TURIN = "".join(
    x86_block(p, p, "AMD EPYC", 26, 2, "2596.118", GENOA_FLAGS + " avx512_vp2intersect")
    for p in range(2)
)
# Intel Xeon E5-2690 v4 (Broadwell, AVX2 + FMA), 2 cores.
BROADWELL = "".join(
    x86_block(
        p,
        p,
        "Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz",
        6,
        79,
        "2600.000",
        X86_COMMON,
        vendor="GenuineIntel",
    )
    for p in range(2)
)


def arm_block(processor, part, features):
    return (
        f"processor\t: {processor}\nBogoMIPS\t: 2100.00\nFeatures\t: {features}\n"
        f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\n"
        f"CPU part\t: {part}\nCPU revision\t: 1\n\n"
    )


ARM_BASE = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm"
# AWS Graviton3 (Neoverse V1, SVE) and Graviton2 (Neoverse N1, NEON only): no MHz line.
GRAVITON3 = "".join(arm_block(p, "0xd40", ARM_BASE + " sve asimdfhm bf16 i8mm") for p in range(4))
GRAVITON2 = "".join(arm_block(p, "0xd0c", ARM_BASE) for p in range(2))


def test_parse_blocks():
    blocks = machine.parse_cpuinfo(GENOA)
    assert len(blocks) == 4
    assert blocks[3]["core id"] == "1" and blocks[0]["cpu MHz"] == "2400.000"


def test_avx512_epyc_with_smt():
    cpu = machine.from_cpuinfo(GENOA)
    assert cpu.isa == "avx512"
    assert cpu.features == ("avx512f", "avx512_vnni", "avx512_bf16")
    assert (cpu.physical_cores, cpu.logical_cores) == (2, 4)
    assert cpu.flop_per_cycle == 32  # Zen 4: AVX-512 on 2 x 256-bit pipes
    assert cpu.peak_gflops == pytest.approx(2 * 2.4 * 32)  # 153.6
    assert cpu.model == "AMD EPYC 9654 96-Core Processor (family 25, model 17)"
    boosted = machine.from_cpuinfo(GENOA, max_freq_khz="3700000\n")
    assert boosted.clock_source == "cpufreq max"
    assert boosted.peak_gflops == pytest.approx(2 * 3.7 * 32)  # 236.8
    # Affinity to the two SMT siblings of core 0: one core's pipes.
    pinned = machine.from_cpuinfo(GENOA, usable={0, 1})
    assert (pinned.physical_cores, pinned.logical_cores) == (1, 2)
    assert pinned.peak_gflops == pytest.approx(76.8)


def test_avx2_only_epyc():
    cpu = machine.from_cpuinfo(MILAN)
    assert (cpu.isa, cpu.features) == ("avx2", ("avx2", "fma"))
    assert (cpu.physical_cores, cpu.flop_per_cycle) == (2, 32)
    assert cpu.peak_gflops == pytest.approx(2 * 2.45 * 32)  # 156.8


def test_zen5_full_width_and_mobile():
    cpu = machine.from_cpuinfo(TURIN)
    assert cpu.isa == "avx512" and cpu.flop_per_cycle == 64
    assert cpu.peak_gflops == pytest.approx(2 * 2.596118 * 64)  # 332.3
    strix = machine.from_cpuinfo(TURIN.replace("model\t\t: 2\n", "model\t\t: 36\n"))
    assert strix.flop_per_cycle == 32  # family 26 model 0x24: 256-bit datapaths


def test_intel_avx2():
    cpu = machine.from_cpuinfo(BROADWELL)
    assert (cpu.isa, cpu.flop_per_cycle, cpu.physical_cores) == ("avx2", 32, 2)
    assert cpu.peak_gflops == pytest.approx(2 * 2.6 * 32)  # 166.4
    assert "E5-2690 v4" in cpu.summary() and "166 GFLOP/s" in cpu.summary()


def test_x86_isa_levels():
    assert machine.x86_isa(set(X86_COMMON.split()) - {"avx2", "fma"}) == ("avx", ("avx",))
    assert machine.x86_isa({"sse", "sse2"}) == ("sse", ("sse2",))
    sapphire = set(GENOA_FLAGS.split()) | {"avx512_fp16"}
    assert machine.x86_isa(sapphire)[1] == machine.AVX512_SUBSETS
    assert machine.x86_flop_per_cycle("GenuineIntel", 6, 143, "avx512")[0] == 64
    assert machine.x86_flop_per_cycle("AuthenticAMD", 23, 0x01, "avx2")[0] == 16  # Zen 1
    assert machine.x86_flop_per_cycle("AuthenticAMD", 23, 0x31, "avx2")[0] == 32  # Zen 2


def test_arm_sve_and_neon():
    v1 = machine.from_cpuinfo(GRAVITON3, max_freq_khz="2600000")
    assert (v1.isa, v1.features) == ("sve", ("asimd", "sve", "bf16"))
    assert v1.model == "Neoverse V1" and v1.flop_per_cycle == 32
    assert (v1.physical_cores, v1.logical_cores) == (4, 4)
    assert v1.peak_gflops == pytest.approx(4 * 2.6 * 32)  # 332.8
    n1 = machine.from_cpuinfo(GRAVITON2, max_freq_khz="2500000")
    assert (n1.isa, n1.flop_per_cycle) == ("neon", 16)
    assert n1.peak_gflops == pytest.approx(2 * 2.5 * 16)  # 80.0
    no_clock = machine.from_cpuinfo(GRAVITON2)
    assert no_clock.peak_gflops is None and "unknown" in no_clock.summary()


def test_macos_sysctl():
    m1 = {
        "machdep.cpu.brand_string": "Apple M1",
        "hw.physicalcpu": "8",
        "hw.logicalcpu": "8",
        "hw.optional.arm64": "1",
    }
    cpu = machine.from_sysctl(m1.get)
    assert (cpu.model, cpu.isa, cpu.physical_cores) == ("Apple M1", "neon", 8)
    assert cpu.peak_gflops is None  # Apple silicon reports no clock
    intel_mac = {
        "machdep.cpu.brand_string": "Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz",
        "hw.physicalcpu": "6",
        "hw.logicalcpu": "12",
        "hw.cpufrequency_max": "2600000000",
        "hw.optional.avx2_0": "1",
        "hw.optional.fma": "1",
        "hw.optional.avx1_0": "1",
    }
    cpu = machine.from_sysctl(intel_mac.get)
    assert (cpu.isa, cpu.logical_cores) == ("avx2", 12)
    assert cpu.peak_gflops == pytest.approx(6 * 2.6 * 32)  # 499.2


def test_detect_this_machine():
    cpu = machine.detect_cpu()
    assert cpu.isa in ("avx512", "avx2", "avx", "sse", "sve", "neon", "unknown")
    assert 1 <= cpu.physical_cores <= cpu.logical_cores
    assert cpu.summary().startswith("CPU ")
