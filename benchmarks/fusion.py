"""The model alone, the learning-free baseline and their fusion, on finished runs.

    python -m benchmarks.fusion WORKDIR [WORKDIR ...] [--which latest|best]

For each run (fused or not), the fusion of :mod:`sspcab_jax.detector.local_fusion` is fitted
exactly as ``calibration.fuse_local_statistics`` fits it at the end of training (statistics on
the run's training split, scales on its validation split; nothing is written), and the run's
test split is scored three ways: the model's own map, the baseline's z-scores
(``benchmarks.local_baseline``, fitted on the same training split) and the fused map. Printed:
image AUROC / pixel AUROC / pixel AP / AUPRO of each, then image / pixel AUROC per defect kind.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks import local_baseline, per_kind
from benchmarks.common import machine_line
from sspcab_jax.training import evaluation
from sspcab_jax.training.data_setup import build_split_sources
from sspcab_jax.training.fusion import fit_run_fusion
from sspcab_jax.training.restore import load_run
from sspcab_jax.training.tasks import get_task

DETECTORS = ("model", "baseline", "fused")
FIGURES = ("image_auroc", "pixel_auroc", "pixel_ap", "aupro")


def score_run(workdir: str, which: str = "latest") -> dict[str, dict]:
    """``{detector: {'metrics': ..., 'kinds': {kind: (image, pixel)}}}`` of one run's test split."""
    config, model, state, _ = load_run(workdir, which)
    config.calibration.fuse_local_statistics = True
    task = get_task(config)
    train, val, test = build_split_sources(config, workdir)
    kinds = [test[i]["defect_type"] for i in range(len(test))]
    outputs = {"model": evaluation.predict(task, model, state, test)}
    if not fit_run_fusion(task, model, state, train, val, None):
        raise SystemExit(f"{workdir}: no validation images to scale the fusion on")
    outputs["fused"] = evaluation.predict(task, model, state, test)
    scored = {}
    for name, out in outputs.items():
        table = per_kind.per_kind_auroc(out["score"], out["anomaly_map"], out["mask"], kinds)
        scored[name] = {"metrics": evaluation.compute_metrics(out), "kinds": table}
    baseline = local_baseline.baseline_outputs(config, workdir)
    scored["baseline"] = {
        "metrics": evaluation.compute_metrics(baseline),
        "kinds": per_kind.per_kind_auroc(
            baseline["score"], baseline["anomaly_map"], baseline["mask"], kinds
        ),
    }
    return scored


def _cell(values) -> str:
    return " / ".join(f"{100 * v:.1f}" for v in values)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdirs", nargs="+", help="finished train.main workdirs")
    parser.add_argument("--which", default="latest", choices=("latest", "best"))
    args = parser.parse_args(argv)
    print(machine_line())
    runs = {workdir: score_run(workdir, args.which) for workdir in args.workdirs}
    print("image AUROC / pixel AUROC / pixel AP / AUPRO, in %")
    print("| run | " + " | ".join(DETECTORS) + " |")
    print("|---|" + "---|" * len(DETECTORS))
    for workdir, scored in runs.items():
        cells = [_cell(scored[d]["metrics"][k] for k in FIGURES) for d in DETECTORS]
        print(f"| {workdir} | " + " | ".join(cells) + " |")
    print("\nimage / pixel AUROC per defect kind, in %")
    print("| run | detector | kinds |")
    print("|---|---|---|")
    for workdir, scored in runs.items():
        for d in DETECTORS:
            kinds = scored[d]["kinds"]
            text = ", ".join(f"{k} {_cell(v)}" for k, v in sorted(kinds.items()))
            print(f"| {workdir} | {d} | {text} |")
    means = {d: np.mean([r[d]["metrics"]["pixel_auroc"] for r in runs.values()]) for d in DETECTORS}
    print("\nmean pixel AUROC: " + ", ".join(f"{d} {100 * v:.1f}" for d, v in means.items()))


if __name__ == "__main__":
    main()
