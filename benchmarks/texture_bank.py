"""Texture-bank refresh: read time of a bank vs the train step, and the step with refreshes.

    python -m benchmarks.texture_bank                  # demo step, bank of 64, refresh every 10
    python -m benchmarks.texture_bank --bank 64 --refresh-every 10 --steps 40 --rounds 3

Writes DTD-like JPEGs (300-640 px, smooth noise; ``--images`` of them) to a temporary folder,
then measures:

* the read time of one bank at the MVTec size (``--paper-bank`` images at 256 x 256, OpenCV
  resize, as ``configs/draem_mvtec.py``) and at the demo size: what a refresh costs the
  background thread;
* the demo train step (``configs/draem_demo.py``) over ``--steps`` steps with a fixed set of
  textures and with the bank refreshed every ``--refresh-every`` steps, alternately, round by
  round, with the 1-minute load average: the step time with refreshes must stay that of the
  fixed textures (the reads overlap the steps).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from sspcab_jax.xla_flags import apply_default_cpu_flags


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--bank", type=int, default=64)
    parser.add_argument("--paper-bank", type=int, default=64)
    parser.add_argument("--refresh-every", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def write_fake_dtd(root, count, seed=0):
    """``count`` JPEGs of DTD's sizes (300-640 px) under ``root/<category>/``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = rng.integers(300, 641, 2)
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((int(w), int(h)), Image.BILINEAR)
        path = os.path.join(root, f"category{i % 8}", f"{i:04d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path, quality=90)


def _median_load(bank, repeats=3):
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        bank.load(r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    args = _parse(argv)
    apply_default_cpu_flags()
    import jax

    from benchmarks.common import block_until_ready, machine_line
    from configs import draem_demo
    from sspcab_jax.data.texture_bank import folder_bank
    from sspcab_jax.training.loop import key_streams
    from sspcab_jax.training.source_feed import SourceFeed
    from sspcab_jax.training.state import init_train_state
    from sspcab_jax.training.tasks import get_task

    print(machine_line())
    with tempfile.TemporaryDirectory() as root:
        write_fake_dtd(root, args.images)
        paper = folder_bank(
            root, bank_size=args.paper_bank, refresh_every=1, size=256, resize="cv2"
        )
        paper_s = _median_load(paper)
        print(
            json.dumps(
                {
                    "paper_bank_images": args.paper_bank,
                    "paper_bank_read_s": round(paper_s, 3),
                    "paper_images_per_s": round(args.paper_bank / paper_s, 1),
                }
            )
        )
        config = draem_demo.get_config()
        size = config.data.image_size
        bank = folder_bank(
            root, bank_size=args.bank, refresh_every=args.refresh_every, size=size, resize="cv2"
        )
        demo_s = _median_load(bank)
        task = get_task(config)
        model = task.create_model()
        step = jax.jit(task.train_step(model, None), donate_argnums=0)
        state = jax.device_put(init_train_state(task, model, key_streams(0)[0]))
        key = key_streams(0)[1]
        batch = {"image": jax.device_put(jax.random.uniform(key, (8, size, size, 3)))}

        def run(feed, first):
            nonlocal state
            start = time.perf_counter()
            for s in range(first, first + args.steps):
                state, _ = step(state, batch, key, feed.at(s))
            block_until_ready(state)
            return (time.perf_counter() - start) / args.steps

        fixed = SourceFeed(jax.device_put, bank.load(0))
        with SourceFeed(jax.device_put, bank) as refreshed:
            run(fixed, 0)  # compile and warm up
            run(refreshed, 0)
            rows = []
            for r in range(args.rounds):
                load = os.getloadavg()[0]
                first = (r + 1) * args.steps
                rows.append((load, run(fixed, first), run(refreshed, first)))
                print(
                    json.dumps(
                        {
                            "round": r,
                            "load_1min": round(load, 2),
                            "step_s_fixed": round(rows[-1][1], 4),
                            "step_s_refreshed": round(rows[-1][2], 4),
                        }
                    )
                )
    step_fixed = statistics.median(x for _, x, _ in rows)
    step_refreshed = statistics.median(x for _, _, x in rows)
    print(
        json.dumps(
            {
                "demo_bank_images": args.bank,
                "demo_bank_read_s": round(demo_s, 3),
                "refresh_every": args.refresh_every,
                "median_step_s_fixed": round(step_fixed, 4),
                "median_step_s_refreshed": round(step_refreshed, 4),
                "read_over_refresh_period": round(demo_s / (args.refresh_every * step_fixed), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
