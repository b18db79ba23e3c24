"""K seeds of the demo DRAEM in one program (``jax.vmap`` of the train step) vs K one by one.

    python -m benchmarks.vmap_seeds                    # K = 3 seeds, 10 steps, 3 rounds
    python -m benchmarks.vmap_seeds --seeds 5 --steps 20 --rounds 4

The step is the library's (the task's ``train_step`` of ``configs/draem_demo.py``: 64x64,
batch 8, widths 16 / 8, anomaly synthesis on the device). Sequential: one jitted step per seed,
K states trained in turn. Batched: ``jax.jit(jax.vmap(step))`` over the stacked parameters,
optimiser states, batches and synthesis keys of the K seeds (the textures are shared). Both
start from the same K initial states, and the batched run's seed ``k`` is checked against the
sequential one after the timed steps. The two are timed alternately in one process, round by
round, with the 1-minute load average before each round, so that a change of machine load
hits both; figures are seed-steps per second.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from sspcab_jax.xla_flags import apply_default_cpu_flags


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per seed and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--placement", default="penultimate")
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    apply_default_cpu_flags()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.common import block_until_ready, machine_line
    from configs import draem_demo
    from sspcab_jax.training.loop import key_streams
    from sspcab_jax.training.state import init_train_state
    from sspcab_jax.training.tasks import get_task

    config = draem_demo.get_config()
    config.draem.sspcab_placement = args.placement
    task = get_task(config)
    model = task.create_model()
    step = task.train_step(model, None)
    sources = jnp.asarray(task.anomaly_sources())
    k, b, size = args.seeds, config.batch_size, config.data.image_size
    states = [init_train_state(task, model, key_streams(s)[0]) for s in range(k)]
    keys = [key_streams(s)[1] for s in range(k)]
    rng = np.random.default_rng(0)
    batches = jnp.asarray(rng.random((k, b, size, size, 3), dtype=np.float32))

    sequential = jax.jit(step, donate_argnums=0)
    batched = jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None)), donate_argnums=0)
    # One tree structure for all (each init builds its own optimiser object, static metadata).
    treedef = jax.tree.structure(states[0])
    leaves = [jax.tree.leaves(s) for s in states]
    seq_states = [jax.device_put(jax.tree.unflatten(treedef, x)) for x in leaves]
    vm_state = jax.tree.unflatten(treedef, [jnp.stack(x) for x in zip(*leaves, strict=True)])
    vm_keys = jnp.stack(keys)

    def run_sequential(n):
        losses = []
        for i in range(k):
            for _ in range(n):
                seq_states[i], metrics = sequential(
                    seq_states[i], {"image": batches[i]}, keys[i], sources
                )
            losses.append(metrics["total"])
        block_until_ready(seq_states)
        return np.asarray(losses)

    def run_batched(n):
        nonlocal vm_state
        for _ in range(n):
            vm_state, metrics = batched(vm_state, {"image": batches}, vm_keys, sources)
        block_until_ready(vm_state)
        return np.asarray(metrics["total"])

    start = time.perf_counter()
    seq_loss = run_sequential(1)
    compile_seq = time.perf_counter() - start
    start = time.perf_counter()
    vm_loss = run_batched(1)
    compile_vm = time.perf_counter() - start
    # Same K initial states, batches and keys: the first step's losses must agree. (Parameters
    # after it need not: Adam's first update is lr * sign(g), so rounding noise on gradients
    # that are ~0, e.g. conv biases before BatchNorm, becomes a full-size step either way.)
    np.testing.assert_allclose(vm_loss, seq_loss, rtol=1e-4)
    print(machine_line())
    print(json.dumps({"first_step_s": {"sequential": compile_seq, "vmap": compile_vm}}))
    rows = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        run_sequential(args.steps)
        seq = time.perf_counter() - start
        start = time.perf_counter()
        run_batched(args.steps)
        vm = time.perf_counter() - start
        rows.append((load, k * args.steps / seq, k * args.steps / vm))
        print(
            json.dumps(
                {
                    "round": r,
                    "load_1min": round(load, 2),
                    "sequential_seed_steps_per_s": round(rows[-1][1], 2),
                    "vmap_seed_steps_per_s": round(rows[-1][2], 2),
                    "vmap_speedup": round(rows[-1][2] / rows[-1][1], 3),
                }
            )
        )
    ratios = sorted(v / s for _, s, v in rows)
    print(json.dumps({"seeds": k, "median_vmap_speedup": round(ratios[len(ratios) // 2], 3)}))


if __name__ == "__main__":
    main()
