"""Default XLA flags for CPU runs, applied before JAX initialises its backend.

XLA's own CPU emitters are slow on the convolutions that dominate DRAEM (the backward pass above
all); routing dot fusions and reductions through YNNPACK
(``--xla_cpu_experimental_ynn_fusion_type=dot,reduce``) makes a DRAEM train step markedly faster on
x86 CPUs (``benchmarks/README.md`` has the figures). The value replaces XLA's own default list,
which has ``reduce`` but not ``dot``: without ``reduce`` every BatchNorm statistic becomes a slow
tree of window reductions. The flags are chosen per detected vector ISA
(:data:`CPU_FLAGS_BY_ISA`, :func:`sspcab_jax.machine.detect_cpu`).

Rules:

* A flag the user already set in ``XLA_FLAGS`` is never overridden: only flags whose name is
  absent are appended.
* Nothing is added when ``JAX_PLATFORMS`` names an accelerator first (``cuda``, ``gpu``, ``tpu``,
  ``rocm``) or when ``SSPCAB_JAX_NO_CPU_FLAGS`` is set to a non-empty value.
* XLA reads ``XLA_FLAGS`` once, when the first backend starts: call
  :func:`apply_default_cpu_flags` before anything runs a JAX computation (importing ``jax`` is
  fine); later calls change nothing and return False.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

# Each entry: (flag name, value). See benchmarks/README.md for what each one changes.
DEFAULT_CPU_FLAGS: tuple[tuple[str, str], ...] = (
    ("--xla_cpu_experimental_ynn_fusion_type", "dot,reduce"),
)
# Default flags per vector ISA (``sspcab_jax.machine.CpuInfo.isa``); an ISA without a row gets
# DEFAULT_CPU_FLAGS. Tuned on AVX-512 (Zen 5); the AVX2 row is the same setting until a
# measurement on an AVX2 machine shows a better one (benchmarks/README.md, per ISA).
CPU_FLAGS_BY_ISA: dict[str, tuple[tuple[str, str], ...]] = {
    "avx512": DEFAULT_CPU_FLAGS,
    "avx2": DEFAULT_CPU_FLAGS,
}
ACCELERATOR_PLATFORMS = ("cuda", "gpu", "tpu", "rocm")
OPT_OUT_VARIABLE = "SSPCAB_JAX_NO_CPU_FLAGS"


def default_cpu_flags(isa: str | None = None) -> str:
    """The default CPU flags for ``isa`` as one ``XLA_FLAGS`` string.

    Args:
      isa: a vector ISA name as :func:`sspcab_jax.machine.detect_cpu` reports it
        (``'avx512'``, ``'avx2'``, ``'neon'``, ...); this machine's when None.
    """
    if isa is None:
        from sspcab_jax.machine import detect_cpu

        isa = detect_cpu().isa
    flags = CPU_FLAGS_BY_ISA.get(isa, DEFAULT_CPU_FLAGS)
    return " ".join(f"{name}={value}" for name, value in flags)


def _flag_names(flags: str) -> set[str]:
    return {token.split("=", 1)[0] for token in flags.split() if token.startswith("--")}


def merge_flags(user_flags: str, defaults: str) -> str:
    """``user_flags`` plus every flag of ``defaults`` whose name it does not set already.

    Args:
      user_flags: an ``XLA_FLAGS`` value (may be empty).
      defaults: flags to add, ``--name=value`` separated by spaces.

    Returns:
      The merged ``XLA_FLAGS`` value; the user's settings win.
    """
    present = _flag_names(user_flags)
    extra = [t for t in defaults.split() if t.split("=", 1)[0] not in present]
    return " ".join(part for part in (user_flags.strip(), " ".join(extra)) if part)


def _backend_started() -> bool:
    """Whether JAX has started a backend, i.e. has already read ``XLA_FLAGS``."""
    if "jax" not in sys.modules:
        return False
    # JAX has no public query that does not start the backends itself (jax.devices() and
    # jax.extend.backend.backends() do), hence the private one; tests/test_xla_flags.py fails if a
    # JAX release drops it.
    try:
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:  # a JAX without it: cannot tell, so the flags are set as if not started
        return False
    return backends_are_initialized()


def wants_cpu_flags(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the default CPU flags apply under ``environ`` (platform and opt-out rules)."""
    environ = os.environ if environ is None else environ
    if environ.get(OPT_OUT_VARIABLE):
        return False
    platforms = environ.get("JAX_PLATFORMS", "").lower().split(",")
    return platforms[0].strip() not in ACCELERATOR_PLATFORMS


def apply_default_cpu_flags(environ: MutableMapping[str, str] | None = None) -> bool:
    """Add this CPU's default flags (:data:`CPU_FLAGS_BY_ISA`) to ``XLA_FLAGS`` in ``environ``.

    Args:
      environ: the environment to update; ``os.environ`` by default (a child process started
        afterwards inherits the flags).

    Returns:
      True when ``XLA_FLAGS`` now holds the defaults and JAX has not started a backend yet
      (so they take effect in this process), False otherwise.
    """
    is_process_env = environ is None
    environ = os.environ if environ is None else environ
    if not wants_cpu_flags(environ):
        return False
    if is_process_env and _backend_started():
        return False
    environ["XLA_FLAGS"] = merge_flags(environ.get("XLA_FLAGS", ""), default_cpu_flags())
    return True
