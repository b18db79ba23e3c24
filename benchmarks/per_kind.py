"""Image / pixel AUROC of finished runs per defect kind (each kind against the good images).

    python -m benchmarks.per_kind WORKDIR [WORKDIR ...] [--which latest|best]

A pooled figure hides which defects a model misses: on the embedded dataset one kind alone
(``warp``) held every remaining error of the CPU recipe (docs/recipe.md). Each run's own test
split is predicted by the evaluation code of ``train.evaluate``; the images of one defect
kind (their test sub-folder) and the good ones are then scored with the project's AUROC.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from sspcab_jax import metrics


def per_kind_auroc(
    scores: np.ndarray, maps: np.ndarray, masks: np.ndarray, kinds: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """``{kind: (image AUROC, pixel AUROC)}`` of each defect kind against the good images.

    Args:
      scores: ``[N]`` image scores.
      maps: ``[N, H, W]`` anomaly maps.
      masks: ``[N, H, W]`` ground truth in [0, 1] (a pixel is defective from 0.5).
      kinds: ``N`` defect-type names; ``'good'`` marks the normal images.

    Returns:
      One pair per defect kind, in sorted order of the names.
    """
    kinds = np.asarray(kinds)
    good = kinds == "good"
    if not good.any():
        raise ValueError("per-kind figures need good test images to compare with")
    table = {}
    for kind in sorted(set(kinds.tolist()) - {"good"}):
        chosen = good | (kinds == kind)
        image = metrics.auroc(scores[chosen], kinds[chosen] != "good")
        pixel = metrics.auroc(maps[chosen].reshape(-1), masks[chosen].reshape(-1) >= 0.5)
        table[kind] = (float(image), float(pixel))
    return table


def run_table(workdir: str, which: str = "latest") -> dict[str, tuple[float, float]]:
    """:func:`per_kind_auroc` of a finished run on its own test split."""
    from sspcab_jax.training import evaluation
    from sspcab_jax.training.data_setup import build_split_sources
    from sspcab_jax.training.fusion import attach_saved_fusion
    from sspcab_jax.training.restore import load_run
    from sspcab_jax.training.tasks import get_task

    config, model, state, step = load_run(workdir, which)
    _, _, test = build_split_sources(config, workdir)
    task = attach_saved_fusion(get_task(config), workdir, step)
    outputs = evaluation.predict(task, model, state, test)
    kinds = [test[i]["defect_type"] for i in range(len(test))]
    return per_kind_auroc(outputs["score"], outputs["anomaly_map"], outputs["mask"], kinds)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", help="finished train.main workdirs")
    parser.add_argument("--which", default="latest", choices=("latest", "best"))
    args = parser.parse_args(argv)
    tables = {workdir: run_table(workdir, args.which) for workdir in args.workdirs}
    kinds = sorted({kind for table in tables.values() for kind in table})
    print("image / pixel AUROC per defect kind, in %")
    print("| run | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for workdir, table in tables.items():
        cells = [
            f"{100 * table[k][0]:.1f} / {100 * table[k][1]:.1f}" if k in table else "-"
            for k in kinds
        ]
        print(f"| {workdir} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
