"""Run a few DRAEM steps in one parallel mode on a fixed global batch; save the parameters.

Usage: python tests/scripts/parallel_agreement.py MODES OUT_PREFIX [coordinator num_processes id]
MODES is a comma-separated list of parallel modes; each writes OUT_PREFIX<mode>.npz.
Run with XLA_FLAGS=--xla_force_host_platform_device_count=N for several CPU devices.
"""

import sys

import jax
import numpy as np

from sspcab_jax.training.parallel import ParallelRunner, compile_in_step, initialize_distributed

# Float64: see the comment in run(); set before any array is created.
jax.config.update("jax_enable_x64", True)


def main(modes, out_prefix, coordinator=None, num_processes=1, process_id=0):
    initialize_distributed(coordinator, int(num_processes), int(process_id))
    for mode in modes.split(","):
        run(mode, f"{out_prefix}{mode}.npz")


def run(mode, out):
    from configs import test as test_config
    from sspcab_jax.training.loop import key_streams
    from sspcab_jax.training.state import init_train_state
    from sspcab_jax.training.tasks import get_task

    config = test_config.get_config()
    config.batch_size = 8
    config.parallel = mode
    # Plain SGD: Adam's first step is lr * sign(g), so rounding noise on parameters whose true
    # gradient is zero (conv biases before BatchNorm) would become full-size updates.
    config.optimizer = "sgd"
    config.learning_rate = 0.1
    # In float64: the deep BatchNorm stack amplifies float32 rounding so much that merely
    # reordering the batch changes gradients by ~1e-3; float64 shows the modes do the same math.
    config.dtype = config.param_dtype = "float64"
    runner = ParallelRunner(mode)
    task = get_task(config)
    model = task.create_model(bn_axis_name=runner.axis_name)
    init_key, synth_key = key_streams(config.seed)
    state = init_train_state(task, model, init_key)
    step = runner.compile_train_step(task.train_step(model, runner.axis_name))
    rng = np.random.default_rng(0)
    steps = int(__import__("os").environ.get("AGREE_STEPS", 3))
    images = rng.uniform(size=(steps, config.batch_size, 32, 32, 3))
    share = config.batch_size // jax.process_count()
    lo = jax.process_index() * share
    device_state = runner.put_replicated(state)
    key = runner.put_key(synth_key)
    for i in range(images.shape[0]):
        batch = runner.put_batch({"image": images[i, lo : lo + share]})
        if i == 0:
            step = compile_in_step(step, device_state, batch, key, None)
            device_state, metrics = step(device_state, batch, key, None)
            continue
        # After the first step nothing may move between devices (the state, key and
        # anomaly sources stay where they were placed).
        with jax.transfer_guard_device_to_device("disallow"):
            device_state, metrics = step(device_state, batch, key, None)
    host = runner.to_host(device_state)
    flat = {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(
            {"params": host.params, "batch_stats": host.batch_stats}
        )
    }
    flat["loss"] = np.asarray(runner.to_host(metrics)["total"])
    if jax.process_index() == 0:
        np.savez(out, **flat)


if __name__ == "__main__":
    main(*sys.argv[1:])
