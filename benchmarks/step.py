"""DRAEM(+SSPCAB) train-step and inference time, throughput, FLOP/s and peak memory per mode.

    python -m benchmarks.step                      # demo size, single / pmap / mesh
    python -m benchmarks.step --sizes paper,demo --modes single --repeats 2

Sizes: ``paper`` = 256x256, batch 8, widths 128/64 (DRAEM's ``model_unet.py``, README); ``demo`` =
``configs/draem_demo.py`` (64x64, batch 8, widths 16/8). Every (size, mode) runs in a fresh
subprocess so its peak memory is its own: ``device.memory_stats()['peak_bytes_in_use']`` where the
backend reports it (accelerators), else the process's peak RSS (``ru_maxrss``). ``pmap`` and
``mesh`` get ``--devices`` CPU devices through ``--xla_force_host_platform_device_count``.

The step is the library's: the task's ``train_step`` (on-device anomaly synthesis included)
wrapped by ``ParallelRunner.compile_train_step`` (state donated). Compile time is measured
separately (``lower().compile()``), the first run is a warm-up, figures are medians. FLOPs come
from XLA's cost analysis of the compiled step; achieved FLOP/s are compared with
``--peak-gflops`` (default: an estimate for this CPU, stated in the output). Each worker also
checks that steps after the warm-up neither retrace/recompile nor move data between host and
device (``jax.transfer_guard('disallow')``) and prints the result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from sspcab_jax.xla_flags import apply_default_cpu_flags

SIZES = {"paper": (256, 8, 128, 64), "demo": (64, 8, 16, 8)}  # size, batch, recon, disc


def default_peak_gflops() -> float | None:
    """This CPU's estimated FP32 peak (``sspcab_jax.machine``); None when it cannot be told."""
    from sspcab_jax.machine import detect_cpu

    return detect_cpu().peak_gflops


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="demo")
    parser.add_argument("--modes", default="single,pmap,mesh")
    parser.add_argument("--devices", type=int, default=2, help="CPU devices for pmap / mesh")
    parser.add_argument("--placement", default="penultimate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--peak-gflops",
        "--peak_gflops",
        type=float,
        default=None,
        help="FP32 peak to compare with (default: this CPU's estimate, printed in the header)",
    )
    parser.add_argument("--remat", action="store_true", help="Draem(remat=True)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--compile-only", action="store_true", help="print FLOPs and XLA's buffer plan only"
    )
    parser.add_argument("--no-xla-flags", action="store_true", help="skip the default CPU flags")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # "size:mode"
    return parser.parse_args(argv)


def _config(size_name, args):
    from configs import default

    size, batch, recon, disc = SIZES[size_name]
    c = default.get_config()
    c.data.image_size, c.batch_size = size, batch
    c.draem.recon_width, c.draem.disc_width = recon, disc
    c.draem.sspcab_placement = args.placement
    c.dtype = args.dtype
    if args.remat:
        c.draem.remat = True
    return c


def worker(args):
    """Measure one (size, mode); print one JSON line."""
    import resource
    import statistics
    import time

    import jax
    import numpy as np

    from sspcab_jax.training.loop import key_streams
    from sspcab_jax.training.parallel import ParallelRunner
    from sspcab_jax.training.state import create_model, create_train_state
    from sspcab_jax.training.steps import draem_eval_step
    from sspcab_jax.training.tasks import get_task

    size_name, mode = args.worker.split(":")
    config = _config(size_name, args)
    runner = ParallelRunner(mode)
    model = create_model(config, bn_axis_name=runner.axis_name)
    init_key, synth_key = key_streams(0)
    state = runner.put_replicated(create_train_state(config, model, init_key))
    size, batch = config.data.image_size, config.batch_size
    images = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
    placed = runner.put_batch({"image": images})
    if mode == "pmap":  # put the reshaped batch on the devices once, as a data pipeline would
        placed = jax.device_put(placed, runner.pmap_sharding())
    key = runner.put_key(synth_key)  # placed once, not re-sent every step

    traces = []
    pure_step = get_task(config).train_step(model, runner.axis_name)

    def counted(*a):
        traces.append(1)
        return pure_step(*a)

    step = runner.compile_train_step(counted)

    start = time.perf_counter()
    compiled = step.lower(state, placed, key, None).compile()
    compile_s = time.perf_counter() - start
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan")))
    mem = compiled.memory_analysis()
    plan_gib = None
    if mem is not None:  # XLA's buffer plan: live temporaries + arguments + outputs - donated
        plan = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        plan_gib = round((plan - mem.alias_size_in_bytes) / 2**30, 2)
        temp_gib = round(mem.temp_size_in_bytes / 2**30, 2)
    if args.compile_only:
        print(
            json.dumps(
                {
                    "size": size_name,
                    "mode": mode,
                    "remat": args.remat,
                    "gflop_per_step": round(flops / 1e9, 1),
                    "plan_gib": plan_gib,
                    "temp_gib": temp_gib,
                    "compile_s": round(compile_s, 1),
                }
            )
        )
        return

    def run_steps(state):
        state, metrics = step(state, placed, key, None)  # warm-up through the jitted entry point
        jax.block_until_ready(metrics)
        traces_before = len(traces)
        times = []
        for _ in range(max(args.repeats, 2)):
            t0 = time.perf_counter()
            state, metrics = step(state, placed, key, None)
            jax.block_until_ready(metrics)
            times.append(time.perf_counter() - t0)
        return state, metrics, traces_before, times

    # Warm-up and timed steps double as the transfer check: all run with every implicit
    # transfer (host<->device, device<->device) forbidden, inside ONE guard context, because
    # pmap's cache is keyed on it: entering a new context between calls would retrace.
    try:
        with jax.transfer_guard("disallow"):
            state, metrics, traces_before, times = run_steps(state)
        guard = "ok"
    except Exception as error:  # noqa: BLE001 - reported, not hidden
        guard = f"FAIL: {str(error).splitlines()[0][:100]}"
        state, metrics, traces_before, times = run_steps(state)
    step_s = statistics.median(times)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stats = jax.devices()[0].memory_stats() or {}
    peak_device = stats.get("peak_bytes_in_use")
    total_loss = float(np.asarray(metrics["total"]).ravel()[0])

    host_state = runner.to_host(state)
    infer = jax.jit(lambda s, x: draem_eval_step(s, x, model=model)["anomaly_map"])
    dev_images = jax.device_put(images)
    jax.block_until_ready(infer(host_state, dev_images))
    infer_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(infer(host_state, dev_images))
        infer_times.append(time.perf_counter() - t0)
    infer_s = statistics.median(infer_times)

    result = {
        "size": size_name,
        "mode": mode,
        "devices": jax.device_count(),
        "compile_s": round(compile_s, 1),
        "step_s": round(step_s, 4),
        "images_per_s": round(batch / step_s, 2),
        "infer_ms_per_image": round(1e3 * infer_s / batch, 2),
        "gflop_per_step": round(flops * (jax.device_count() if mode == "pmap" else 1) / 1e9, 1),
        "traces": len(traces),
        "retraces_after_warmup": len(traces) - traces_before,
        "transfer_guard": guard,
        "peak_device_gib": round(peak_device / 2**30, 2) if peak_device else None,
        "peak_rss_gib": round(peak_rss / 2**30, 2),
        "buffer_plan_gib": plan_gib,
        "loss_finite": bool(np.isfinite(total_loss)),
        "load": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result), flush=True)


def _run_worker(size_name, mode, args):
    env = dict(os.environ)
    if mode != "single":
        flag = f"--xla_force_host_platform_device_count={args.devices}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    cmd = [sys.executable, "-m", "benchmarks.step", "--worker", f"{size_name}:{mode}"]
    cmd += ["--repeats", str(args.repeats), "--placement", args.placement, "--dtype", args.dtype]
    cmd += ["--remat"] if args.remat else []
    cmd += ["--compile-only"] if args.compile_only else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        return {"size": size_name, "mode": mode, "error": proc.stderr.strip()[-400:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if args.compile_only:
        print(json.dumps(result), flush=True)
        return None
    return result


def main(argv=None):
    args = _parse(argv)
    if not args.no_xla_flags:
        apply_default_cpu_flags()  # inherited by every worker
    if args.worker:
        worker(args)
        return
    from benchmarks.common import machine_line

    print(machine_line())
    print(f"placement {args.placement}; remat={args.remat}")
    if args.peak_gflops is None:
        args.peak_gflops = default_peak_gflops() or float("nan")
        origin = "this CPU's estimate"
    else:
        origin = "--peak-gflops"
    print(f"peak assumed {args.peak_gflops:.0f} GFLOP/s ({origin})")
    head = "size   mode    dev compile_s  step_s  img/s  infer_ms/img  GFLOP/step  GFLOP/s  "
    print(head + "%peak  peak_mem_GiB  no-retrace/no-transfer  load")
    for size_name in args.sizes.split(","):
        for mode in args.modes.split(","):
            r = _run_worker(size_name, mode, args)
            if r is None:
                continue
            if "error" in r:
                print(f"{size_name:6s} {mode:7s} FAILED: {r['error']}", flush=True)
                continue
            achieved, peak = r["gflop_per_step"] / r["step_s"], args.peak_gflops
            retraces = r["retraces_after_warmup"]
            mem = r["peak_device_gib"] or r["peak_rss_gib"]
            kind = "device" if r["peak_device_gib"] else "RSS"
            guard = r["transfer_guard"]
            check = "ok" if not r["retraces_after_warmup"] and guard == "ok" else "FAIL"
            print(
                f"{size_name:6s} {mode:7s} {r['devices']:3d} {r['compile_s']:9.1f} "
                f"{r['step_s']:7.3f} {r['images_per_s']:6.1f} {r['infer_ms_per_image']:13.2f} "
                f"{r['gflop_per_step']:11.1f} {achieved:8.1f} {100 * achieved / peak:5.1f}"
                f"  {mem:6.2f} ({kind})  {check} (retraces={retraces})  {r['load']:.2f}",
                flush=True,
            )
            print(f"       XLA buffer plan {r['buffer_plan_gib']} GiB", flush=True)
            if guard != "ok":
                print(f"       transfer guard: {guard}", flush=True)


if __name__ == "__main__":
    main()
