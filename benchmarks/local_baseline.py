"""Image / pixel AUROC of the learning-free local-statistics baseline, per category.

    python -m benchmarks.local_baseline [--categories brick,gravel,grass] [--image_size 64]
    python -m benchmarks.local_baseline --dataset mvtec --root ROOT --categories wood
    python -m benchmarks.local_baseline --dataset folder --root ROOT --categories moon,ihc

The baseline (:mod:`sspcab_jax.baselines`) z-scores each pixel's 7x7 local mean and standard
deviation against the same training images a ``train.main`` run with the same data fields
trains on (the validation share held out too), and is scored by the same metric code
(:func:`sspcab_jax.training.evaluation.compute_metrics`) on the same test split, so its rows
compare directly with a trained model's ``metrics.json``. The embedded dataset is written under
``--workdir`` (default: a temporary folder) as ``train.main`` would.
"""

import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks.common import machine_line
from configs import draem_demo
from sspcab_jax import data
from sspcab_jax.baselines import fit_local_statistics, local_statistics_scores
from sspcab_jax.training.data_setup import build_split_sources
from sspcab_jax.training.evaluation import compute_metrics


def _load(source, config) -> dict[str, np.ndarray]:
    d = config.data
    batches = list(
        data.eval_batches(
            source,
            batch_size=d.eval_batch_size,
            image_size=d.image_size,
            resize=d.resize,
            mask_rule=d.mask_rule,
        )
    )
    return {k: np.concatenate([b[k] for b in batches]) for k in ("image", "mask", "label")}


def baseline_outputs(config, workdir: str, window: int = 7) -> dict[str, np.ndarray]:
    """The baseline fitted on ``config``'s training split, scored on its test split.

    Returns:
      ``{'score' [N], 'anomaly_map' [N, H, W], 'label' [N], 'mask' [N, H, W]}``.
    """
    train, _, test = build_split_sources(config, workdir)
    stats = fit_local_statistics(_load(train, config)["image"], window=window)
    test_batch = _load(test, config)
    maps, scores = local_statistics_scores(stats, test_batch["image"])
    return {
        "score": scores,
        "anomaly_map": maps,
        "label": test_batch["label"],
        "mask": test_batch["mask"][..., 0],
    }


def evaluate_category(config, workdir: str, window: int = 7) -> dict[str, float]:
    """Metrics of the baseline fitted on ``config``'s training split, on its test split."""
    return compute_metrics(baseline_outputs(config, workdir, window))


def category_config(dataset: str, root: str, category: str, image_size: int, seed: int = 0):
    """``configs/draem_demo.py`` pointed at one category of a synthetic, MVTec or folder tree.

    For ``dataset='folder'``, ``root`` holds one MVTec-layout tree per category (e.g. the
    held-out set of :mod:`benchmarks.heldout`).
    """
    config = draem_demo.get_config()
    config.seed = seed
    config.data.dataset = dataset
    config.data.category = category
    config.data.image_size = image_size
    if dataset == "folder":
        base = os.path.join(root, category)
        config.data.train_dir = os.path.join(base, "train")
        config.data.test_dir = os.path.join(base, "test")
        config.data.mask_dir = os.path.join(base, "ground_truth")
    else:
        config.data.root = root
    return config


def run(
    dataset: str,
    root: str,
    categories,
    image_size: int,
    *,
    window: int = 7,
    seed: int = 0,
    workdir: str = "",
) -> dict[str, dict[str, float]]:
    """Prints (and returns) the baseline's metrics table over ``categories``."""
    print(machine_line())
    print("| category | image AUROC | pixel AUROC | AUPRO | seconds |")
    print("|---|---:|---:|---:|---:|")
    workdir = workdir or tempfile.mkdtemp(prefix="local_baseline_")
    results = {}
    for category in categories:
        config = category_config(dataset, root, category, image_size, seed)
        start = time.perf_counter()
        m = results[category] = evaluate_category(config, workdir, window)
        print(
            f"| {category} | {100 * m['image_auroc']:.1f} | {100 * m['pixel_auroc']:.1f} | "
            f"{100 * m['aupro']:.1f} | {time.perf_counter() - start:.1f} |"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic", choices=("synthetic", "mvtec", "folder"))
    parser.add_argument("--root", default="", help="dataset root ('' for synthetic: workdir)")
    parser.add_argument("--categories", default="brick,gravel,grass")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--window", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="")
    args = parser.parse_args()
    run(
        args.dataset,
        args.root,
        args.categories.split(","),
        args.image_size,
        window=args.window,
        seed=args.seed,
        workdir=args.workdir,
    )


if __name__ == "__main__":
    main()
