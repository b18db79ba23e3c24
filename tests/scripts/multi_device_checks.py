"""Checks of ParallelRunner that only mean something on several devices, in one process.

Usage: XLA_FLAGS=--xla_force_host_platform_device_count=4 \
    python tests/scripts/multi_device_checks.py OUT.json

Writes ``{check name: "ok" or the failure's traceback}`` to OUT.json; tests/test_training.py
runs it once and reports each check as its own test. One process for all checks: starting JAX
and compiling cost seconds each time.
"""

import json
import sys
import traceback

import jax
import numpy as np

from sspcab_jax.training.parallel import ParallelRunner

DEVICES = 4


def check_batch_size(mode):
    """A global batch that does not split over the 4 devices is refused in one line."""
    runner = ParallelRunner(mode)
    runner.check_batch_size(DEVICES)
    runner.check_batch_size(2 * DEVICES)
    if mode == "single":
        runner.check_batch_size(DEVICES + 2)  # one device takes any batch
        return
    try:
        runner.check_batch_size(DEVICES + 2)
    except ValueError as error:
        expected = f"batch_size=6 must be divisible by the {DEVICES} devices of parallel='{mode}'"
        assert expected in str(error), str(error)
    else:
        raise AssertionError(f"batch_size=6 accepted by parallel={mode!r} on {DEVICES} devices")


def check_no_retrace_and_no_transfer(mode, legacy_key):
    """Placed once, the state and run key match what the step returns: the second call reuses
    the first call's trace (pmap keys its cache on the input shardings) and nothing is copied
    between devices."""
    runner = ParallelRunner(mode)
    traces = []

    def step(state, batch, key, sources):
        traces.append(1)
        noise = jax.random.uniform(key, state["w"].shape)
        return {"w": state["w"] + noise}, {"total": batch["x"].sum()}

    compiled = runner.compile_train_step(step)
    state = runner.put_replicated({"w": np.zeros(3, np.float32)})
    key = runner.put_key(jax.random.PRNGKey(7) if legacy_key else jax.random.key(7))
    batch = runner.put_batch({"x": np.ones((2 * DEVICES, 4), np.float32)})
    if mode != "single":  # the branch under test really spreads over the devices
        # pmap takes its batch as host arrays [devices, B / devices, ...].
        placed = [state["w"], key] + ([batch["x"]] if mode == "mesh" else [])
        assert all(len(a.sharding.device_set) == DEVICES for a in placed), mode
    state, _ = compiled(state, batch, key, None)
    with jax.transfer_guard_device_to_device("disallow"):
        for _ in range(2):
            state, metrics = compiled(state, batch, key, None)
    assert len(traces) == 1, f"traced {len(traces)} times"
    assert float(np.asarray(runner.to_host(metrics)["total"])) == 2 * DEVICES * 4 / (
        DEVICES if mode == "pmap" else 1
    )
    expected = sum(jax.random.uniform(jax.random.key(7), (3,)) for _ in range(3))
    np.testing.assert_allclose(runner.to_host(state)["w"], expected, rtol=1e-6)


CHECKS = {
    f"batch_size_{mode}": (check_batch_size, (mode,)) for mode in ("single", "pmap", "mesh")
} | {
    f"no_retrace_{mode}_{'legacy' if legacy else 'typed'}_key": (
        check_no_retrace_and_no_transfer,
        (mode, legacy),
    )
    for mode in ("single", "pmap", "mesh")
    for legacy in (False, True)
}


def main(out):
    results = {"device_count": jax.device_count()}
    for name, (check, args) in CHECKS.items():
        try:
            check(*args)
            results[name] = "ok"
        except Exception:  # every failure is reported, the other checks still run
            results[name] = traceback.format_exc()
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])
