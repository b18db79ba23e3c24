"""DRAEM+SSPCAB (penultimate) train step and inference: sspcab_jax vs PyTorch, one process.

    python -m benchmarks.compare_torch [--quick] [--repeats 3] [--cases train128,train256,infer256]
    python -m benchmarks.compare_torch --memory        # peak RSS, each framework in a fresh process

Both sides run the same work: forward of both networks, L2 + SSIM + focal + 0.1 * SSPCAB loss,
backward, Adam update (train); eval-mode forward and softmax (inference), on the same
pre-synthesised batch (anomaly synthesis is excluded: PyTorch does it in data-loader workers; see
``benchmarks/step.py`` for our full step with synthesis). The two are timed alternately, one JAX
call then one PyTorch call per repeat, so load changes on a shared machine hit both; figures are
medians, warm-up and compilation excluded (compile time printed separately). Both use
``--threads`` CPU threads (``torch.set_num_threads``; XLA uses every core it is given, so run
with as many cores as threads). The PyTorch model is ``benchmarks/torch_draem.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from sspcab_jax.xla_flags import apply_default_cpu_flags

CASES = ("train128", "train256", "infer256")


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths 16/8 instead of 128/64")
    parser.add_argument("--widths", default=None, help="recon,disc (default 128,64)")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="PyTorch channels_last")
    parser.add_argument("--no-xla-flags", action="store_true", help="skip the default CPU flags")
    parser.add_argument("--memory", action="store_true", help="peak RSS of each side (train256)")
    parser.add_argument("--child", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.widths is None:
        args.widths = "16,8" if args.quick else "128,64"
    args.recon, args.disc = (int(w) for w in args.widths.split(","))
    return args


def _data(batch, size):
    import numpy as np

    rng = np.random.default_rng(0)
    clean = rng.random((batch, size, size, 3), dtype=np.float32)
    mask = (rng.random((batch, size, size, 1)) > 0.7).astype(np.float32)
    augmented = np.where(mask > 0, rng.random(clean.shape, dtype=np.float32), clean)
    return augmented, clean, mask


class JaxSide:
    """Our model and a jitted train step / inference on pre-synthesised inputs."""

    def __init__(self, recon, disc):
        import jax

        from configs import default
        from sspcab_jax.layers import SSPCAB_LOSS_COLLECTION, self_supervised_loss
        from sspcab_jax.losses import draem_loss
        from sspcab_jax.models import anomaly_map
        from sspcab_jax.training.state import create_model, create_train_state

        self.jax = jax
        config = default.get_config()
        config.draem.recon_width, config.draem.disc_width = recon, disc
        config.draem.sspcab_placement = "penultimate"
        config.data.image_size = 64
        model = create_model(config)
        self.state = create_train_state(config, model, jax.random.key(0))

        def train(state, augmented, clean, mask):
            def loss_fn(params):
                (rec, logits), mutated = model.apply(
                    {"params": params, "batch_stats": state.batch_stats},
                    augmented,
                    train=True,
                    mutable=["batch_stats", SSPCAB_LOSS_COLLECTION],
                )
                terms = draem_loss(
                    rec, clean, logits, mask, sspcab_loss=self_supervised_loss(mutated)
                )
                return terms["total"], (terms["total"], mutated["batch_stats"])

            grads, (loss, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
            return state.apply_gradients(grads=grads, batch_stats=stats), loss

        def infer(state, images):
            _, logits = model.apply(
                {"params": state.params, "batch_stats": state.batch_stats}, images, train=False
            )
            return anomaly_map(logits)

        self._train = jax.jit(train, donate_argnums=0)
        self._infer = jax.jit(infer)

    def prepare(self, case, arrays):
        """Put inputs on the device, compile; returns compile seconds."""
        self.inputs = [self.jax.device_put(a) for a in arrays]
        fn = self._train if case.startswith("train") else self._infer
        start = time.perf_counter()
        self.compiled = fn.lower(self.state, *self.inputs).compile()
        seconds = time.perf_counter() - start
        self.run(case)  # warm-up
        return seconds

    def run(self, case):
        if case.startswith("train"):
            self.state, out = self.compiled(self.state, *self.inputs)
        else:
            out = self.compiled(self.state, self.inputs[0])
        out.block_until_ready()


class TorchSide:
    """The PyTorch model (``benchmarks/torch_draem.py``), its train step and inference."""

    def __init__(self, recon, disc, threads, channels_last):
        import torch

        from benchmarks.torch_draem import TorchDraem, make_inference, make_train_step

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.channels_last = channels_last
        self.model = TorchDraem(recon, disc, sspcab=True)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._train = make_train_step(self.model)
        self._infer = make_inference(self.model)

    def prepare(self, case, arrays):
        fmt = self.torch.channels_last if self.channels_last else self.torch.contiguous_format
        self.inputs = [
            self.torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=fmt)
            for a in arrays
        ]
        self.run(case)  # warm-up
        return 0.0

    def run(self, case):
        if case.startswith("train"):
            self._train(*self.inputs)
        else:
            self._infer(self.inputs[0])


def _time(side, case):
    start = time.perf_counter()
    side.run(case)
    return time.perf_counter() - start


def compare(args):
    """Alternate JAX and PyTorch calls per case; print medians and the ratio."""
    import jax
    import torch

    from benchmarks.common import machine_line

    print(machine_line())
    print(
        f"torch {torch.__version__}, threads {args.threads}, widths {args.recon}/{args.disc}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, load {os.getloadavg()[0]:.2f}"
    )
    ours = JaxSide(args.recon, args.disc)
    theirs = TorchSide(args.recon, args.disc, args.threads, args.channels_last)
    print(f"{'case':10s} {'jax s':>8s} {'torch s':>8s} {'jax/torch':>9s} {'compile s':>9s}")
    for case in args.cases.split(","):
        size = int(case[5:])
        arrays = _data(args.batch, size)
        if case.startswith("infer"):
            arrays = arrays[:1]
        compile_s = ours.prepare(case, arrays)
        theirs.prepare(case, arrays)
        times = {"jax": [], "torch": []}
        for _ in range(args.repeats):
            times["jax"].append(_time(ours, case))
            times["torch"].append(_time(theirs, case))
        tj, tt = statistics.median(times["jax"]), statistics.median(times["torch"])
        print(
            f"{case:10s} {tj:8.3f} {tt:8.3f} {tj / tt:9.2f} {compile_s:9.1f}   "
            f"(b{args.batch}, {args.repeats} repeats, load {os.getloadavg()[0]:.2f})",
            flush=True,
        )
    del jax


def child(args):
    """One framework, two train steps at ``--size``; prints its peak RSS as JSON."""
    arrays = _data(args.batch, args.size)
    if args.child == "jax":
        side = JaxSide(args.recon, args.disc)
    else:
        side = TorchSide(args.recon, args.disc, args.threads, args.channels_last)
    side.prepare("train", arrays)
    side.run("train")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GiB
    print(json.dumps({"framework": args.child, "size": args.size, "peak_rss_gib": round(rss, 2)}))


def memory(args):
    """Peak RSS of a train step at 256x256 for each framework, each in a fresh process."""
    for framework in ("jax", "torch"):
        cmd = [sys.executable, "-m", "benchmarks.compare_torch", "--child", framework]
        cmd += ["--widths", args.widths, "--batch", str(args.batch), "--size", "256"]
        cmd += ["--threads", str(args.threads)] + (["--no-xla-flags"] if args.no_xla_flags else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1], flush=True)


def main(argv=None):
    args = _parse(argv)
    if not args.no_xla_flags:
        apply_default_cpu_flags()
    if args.child:
        child(args)
    elif args.memory:
        memory(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
