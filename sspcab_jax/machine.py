"""The CPU this process runs on: model, vector ISA, usable cores and an estimated FP32 peak.

Read from ``/proc/cpuinfo`` on Linux, from ``sysctl`` on macOS, from :mod:`platform` elsewhere;
no JAX import, so :mod:`sspcab_jax.xla_flags` can choose flags by ISA before JAX starts.

The peak is an **estimate**: ``physical cores usable x clock x FP32 FLOP per cycle per core``,
an FMA counted as two FLOPs. The clock is the first of ``cpufreq/cpuinfo_max_freq`` (the highest
boost clock the kernel reports; all-core vector clocks are often lower) and ``cpu MHz`` of
``/proc/cpuinfo`` (the current clock; in a VM usually the nominal one). FP32 FLOP per cycle per
core (``CpuInfo.core`` names the row that applied):

==================================================  =====  ====================================
core                                                FLOP   why
==================================================  =====  ====================================
AMD Zen 5 server/desktop (family 26)                64     2 x 512-bit FMA pipes
AMD Zen 5 mobile (family 26, models 0x20-0x2F,      32     512-bit ops on 256-bit datapaths
0x60-0x6F)
AMD Zen 4 / Zen 3 / Zen 2 (family 25; 23 >= 0x30)   32     2 x 256-bit FMA pipes (Zen 4 splits
                                                           AVX-512 ops into two 256-bit halves)
AMD Zen / Zen+ (family 23 < 0x30), Hygon (24)       16     2 x 128-bit FMA pipes
other x86 with AVX-512                              64     2 x 512-bit FMA units (Xeon Gold
                                                           6xxx / Platinum and later; parts with
                                                           one unit reach 32: an upper bound)
other x86 with AVX2 + FMA (Haswell and later)       32     2 x 256-bit FMA units
x86 with AVX, no FMA                                16     one 256-bit add + one 256-bit mul
x86 with SSE only                                   8      one 128-bit add + one 128-bit mul
Arm Neoverse V1 / V2 / V3, Apple M-series           32     4 x 128-bit (V1: 2 x 256-bit SVE)
Fujitsu A64FX                                       64     2 x 512-bit SVE
other Arm (Neoverse N1/N2, Cortex-A7x, unknown)     16     2 x 128-bit FMA pipes
==================================================  =====  ====================================
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# x86 flags naming the AVX-512 subsets that matter for FP32 / low-precision kernels.
AVX512_SUBSETS = ("avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16")
# Arm: CPU implementer -> {CPU part: (name, FP32 FLOP per cycle per core)}.
ARM_PARTS = {
    0x41: {
        0xD0C: ("Neoverse N1", 16),
        0xD49: ("Neoverse N2", 16),
        0xD8E: ("Neoverse N3", 16),
        0xD40: ("Neoverse V1", 32),
        0xD4F: ("Neoverse V2", 32),
        0xD84: ("Neoverse V3", 32),
    },
    0x46: {0x001: ("A64FX", 64)},
}


@dataclass(frozen=True)
class CpuInfo:
    """What the benchmarks print about the CPU; ``peak_gflops`` is None when the clock is unknown.

    Attributes:
      model: the marketing name (``model name``), e.g. ``'AMD EPYC 9B45'``.
      isa: the widest vector ISA: ``'avx512'``, ``'avx2'`` (AVX2 + FMA), ``'avx'``, ``'sse'``,
        ``'sve'``, ``'neon'`` or ``'unknown'``.
      features: the detected flags behind ``isa`` (e.g. the AVX-512 subsets).
      physical_cores: cores this process may run on (``sched_getaffinity``), SMT siblings once.
      logical_cores: hardware threads this process may run on.
      clock_ghz: the clock used for the peak, or None.
      clock_source: where ``clock_ghz`` came from.
      flop_per_cycle: FP32 FLOP per cycle per core (module table), or None.
      core: the rule of the table that gave ``flop_per_cycle``.
    """

    model: str
    isa: str
    features: tuple[str, ...] = ()
    physical_cores: int = 1
    logical_cores: int = 1
    clock_ghz: float | None = None
    clock_source: str = "unknown"
    flop_per_cycle: int | None = None
    core: str = "unknown"

    @property
    def peak_gflops(self) -> float | None:
        """Estimated FP32 peak of the usable cores, GFLOP/s."""
        if self.clock_ghz is None or self.flop_per_cycle is None:
            return None
        return self.physical_cores * self.clock_ghz * self.flop_per_cycle

    def summary(self) -> str:
        """One line for benchmark headers."""
        peak = self.peak_gflops
        peak_text = (
            f"~{peak:.0f} GFLOP/s FP32 (estimate: {self.physical_cores} cores x "
            f"{self.clock_ghz:.2f} GHz [{self.clock_source}] x {self.flop_per_cycle} "
            f"FLOP/cycle [{self.core}])"
            if peak is not None
            else "unknown (no clock reported; pass the peak by hand)"
        )
        features = f" ({', '.join(self.features)})" if self.features else ""
        return (
            f"CPU {self.model}; ISA {self.isa}{features}; cores {self.physical_cores} physical / "
            f"{self.logical_cores} logical usable; peak {peak_text}"
        )


def parse_cpuinfo(text: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` text -> one ``{key: value}`` per processor block."""
    blocks, current = [], {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return [b for b in blocks if "processor" in b and b["processor"].isdigit()] or blocks


def _int(value: str | None) -> int | None:
    try:
        return int(value, 0) if value is not None else None
    except ValueError:
        return None


def x86_isa(flags: set[str]) -> tuple[str, tuple[str, ...]]:
    """The widest usable x86 vector ISA and the flags that show it."""
    if "avx512f" in flags:
        return "avx512", tuple(f for f in AVX512_SUBSETS if f in flags)
    if "avx2" in flags and "fma" in flags:
        return "avx2", ("avx2", "fma")
    if "avx" in flags:
        return "avx", ("avx",)
    return ("sse", ("sse2",)) if "sse2" in flags else ("unknown", ())


def x86_flop_per_cycle(vendor: str, family: int | None, model: int | None, isa: str):
    """(FP32 FLOP per cycle per core, rule name) for an x86 core; see the module table."""
    if vendor in ("AuthenticAMD", "HygonGenuine") and family is not None:
        model = model or 0
        if family == 26:
            mobile = 0x20 <= model <= 0x2F or 0x60 <= model <= 0x6F
            return (32, "Zen 5 mobile, 256-bit datapaths") if mobile else (64, "Zen 5, 2x512-bit")
        if family == 25:
            return 32, "Zen 3/4, 2x256-bit FMA"
        if family == 23 and model >= 0x30:
            return 32, "Zen 2, 2x256-bit FMA"
        if family in (23, 24):
            return 16, "Zen/Zen+, 2x128-bit FMA"
    by_isa = {
        "avx512": (64, "AVX-512, 2x512-bit FMA assumed"),
        "avx2": (32, "AVX2, 2x256-bit FMA"),
        "avx": (16, "AVX, 256-bit add + mul"),
        "sse": (8, "SSE, 128-bit add + mul"),
    }
    return by_isa.get(isa, (None, "unknown"))


def arm_flop_per_cycle(implementer: int | None, part: int | None):
    """(FP32 FLOP per cycle per core, rule name) for an Arm core; see the module table."""
    if implementer == 0x61:  # Apple
        return 32, "Apple, 4x128-bit"
    name, flop = ARM_PARTS.get(implementer, {}).get(part, ("Arm core, 2x128-bit assumed", 16))
    return flop, name


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def from_cpuinfo(
    text: str,
    usable: set[int] | None = None,
    max_freq_khz: str | None = None,
    machine: str = "",
) -> CpuInfo:
    """Build a :class:`CpuInfo` from ``/proc/cpuinfo`` text.

    Args:
      text: the file's content.
      usable: logical CPU ids this process may use (``os.sched_getaffinity(0)``); all if None.
      max_freq_khz: ``cpufreq/cpuinfo_max_freq`` of the first usable CPU, if the kernel has it.
      machine: ``platform.machine()``, used when the text does not say the architecture.

    Returns:
      The detected CPU; ``peak_gflops`` is None when no clock is known.
    """
    blocks = parse_cpuinfo(text)
    if usable is not None:
        blocks = [b for b in blocks if _int(b.get("processor")) in usable] or blocks
    first = blocks[0] if blocks else {}
    logical = len(blocks) or 1
    cores = {(b.get("physical id"), b["core id"]) for b in blocks if "core id" in b}
    physical = len(cores) if cores else logical
    if max_freq_khz and max_freq_khz.strip().isdigit():
        clock, source = int(max_freq_khz) / 1e6, "cpufreq max"
    elif "cpu MHz" in first:
        clock, source = float(first["cpu MHz"]) / 1e3, "/proc/cpuinfo MHz"
    else:
        clock, source = None, "unknown"
    if "flags" in first:  # x86
        isa, features = x86_isa(set(first["flags"].split()))
        vendor = first.get("vendor_id", "")
        flop, core = x86_flop_per_cycle(
            vendor, _int(first.get("cpu family")), _int(first.get("model")), isa
        )
        model = first.get("model name") or vendor or "x86"
        if "cpu family" in first:  # VMs often mask the name ("AMD EPYC"): family/model tell more
            model += f" (family {first['cpu family']}, model {first.get('model', '?')})"
    elif "Features" in first or machine.lower() in ("aarch64", "arm64"):
        flags = set(first.get("Features", "").split())
        isa = "sve" if "sve" in flags else ("neon" if "asimd" in flags else "unknown")
        features = tuple(f for f in ("asimd", "sve", "sve2", "bf16") if f in flags)
        implementer, part = _int(first.get("CPU implementer")), _int(first.get("CPU part"))
        flop, core = arm_flop_per_cycle(implementer, part)
        default_model = core if implementer in ARM_PARTS else "Arm"
        model = first.get("model name") or default_model
    else:
        isa, features, flop, core = "unknown", (), None, "unknown"
        model = first.get("model name") or platform.processor() or "unknown"
    return CpuInfo(model, isa, features, physical, logical, clock, source, flop, core)


def from_sysctl(sysctl: Callable[[str], str | None]) -> CpuInfo:
    """Build a :class:`CpuInfo` on macOS from ``sysctl -n NAME`` answers (None when absent)."""

    def number(name: str) -> int:
        value = sysctl(name)
        return int(value) if value and value.strip().isdigit() else 0

    model = sysctl("machdep.cpu.brand_string") or "unknown"
    physical = number("hw.physicalcpu") or 1
    logical = number("hw.logicalcpu") or physical
    hertz = number("hw.cpufrequency_max") or number("hw.cpufrequency")
    clock, source = (hertz / 1e9, "sysctl hw.cpufrequency") if hertz else (None, "unknown")
    if number("hw.optional.arm64"):
        bf16 = ("bf16",) if number("hw.optional.arm.FEAT_BF16") else ()
        isa, features, (flop, core) = "neon", ("asimd", *bf16), arm_flop_per_cycle(0x61, None)
    else:
        flags = {"avx512f"} if number("hw.optional.avx512f") else set()
        flags |= {"avx2"} if number("hw.optional.avx2_0") else set()
        flags |= {"fma"} if number("hw.optional.fma") else set()
        flags |= {"avx"} if number("hw.optional.avx1_0") else set()
        flags |= {"sse2"} if number("hw.optional.sse2") else set()
        isa, features = x86_isa(flags)
        flop, core = x86_flop_per_cycle("", None, None, isa)
    return CpuInfo(model, isa, features, physical, logical, clock, source, flop, core)


def _sysctl(name: str) -> str | None:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def detect_cpu() -> CpuInfo:
    """The CPU of this process (cached): ``/proc/cpuinfo``, else ``sysctl``, else ``platform``."""
    text = _read("/proc/cpuinfo")
    if text:
        usable = set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        first = min(usable) if usable else 0
        max_freq = _read(f"/sys/devices/system/cpu/cpu{first}/cpufreq/cpuinfo_max_freq")
        return from_cpuinfo(text, usable, max_freq, platform.machine())
    if platform.system() == "Darwin":
        return from_sysctl(_sysctl)
    count = os.cpu_count() or 1
    name = platform.processor() or platform.machine() or "unknown"
    return CpuInfo(name, "unknown", (), count, count)
