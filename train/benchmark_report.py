"""The tables of ``train.benchmark``: mean ± std over seeds and paired comparisons.

Files written in the benchmark directory:

* ``results.md``: per category and the mean over categories, each placement's image AUROC,
  pixel AUROC, pixel AP and AUPRO as mean ± sample standard deviation (``ddof=1``) over seeds,
  in %; the published MVTec AD figures beside them (MVTec runs); the paired comparison of each
  placement against the baseline.
* ``results.csv``: the same means and standard deviations (and the published rows).
* ``runs.csv``: one row per finished run.
* ``paired.csv``: the paired comparisons.

The mean over categories is taken per seed (over the seeds finished in every category), then
averaged over seeds: its standard deviation is the seed-to-seed spread of the category mean,
the figure a paper's mean row would move by.
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sspcab_jax.metrics.paired import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, compare_paired

METRICS: tuple[tuple[str, str], ...] = (
    ("image_auroc", "Image AUROC"),
    ("pixel_auroc", "Pixel AUROC"),
    ("pixel_ap", "Pixel AP"),
    ("aupro", "AUPRO"),
)
MEAN = "mean"

# MVTec AD, mean over the 15 categories, in % (image AUROC, pixel AUROC, pixel AP, AUPRO).
PUBLISHED: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("DRAEM, paper (Zavrtanik et al., ICCV 2021, MVTec AD results)", (98.0, 97.3, 68.4, math.nan)),
    ("DRAEM, released checkpoints (VitjanZ/DRAEM README.md)", (98.1, 97.5, 68.9, math.nan)),
    (
        "DRAEM + SSPCAB (Ristea et al., CVPR 2022, MVTec AD results)",
        (98.9, 97.2, 69.9, math.nan),
    ),
)

PAIRED_NOTE = (
    "Differences (placement − {baseline}) per (category, seed) pair, in points. Interval: "
    f"percentile bootstrap 95 % of the mean difference ({BOOTSTRAP_RESAMPLES:,} resamples of "
    f"the pairs, seed {BOOTSTRAP_SEED}). p: two-sided exact sign test over the non-zero "
    "differences (ties dropped)."
)

Cell = Any  # train.benchmark.Cell: (category, placement, seed) with .directory(workdir)

# What a table scores: the detector's figures (fused with local statistics where the run fuses)
# or the network's own map (``model_*`` of fused runs; the plain figures of the others).
SCORES = ("detector", "model")
SCORES_NOTE = {
    "detector": "Scores: what each run's detector scores (its map fused with local statistics "
    "where the run fuses them).",
    "model": "Scores: the network's own map (the `model_*` figures of runs that fuse local "
    "statistics).",
}


def collect(
    workdir: str | pathlib.Path, cells: Sequence[Cell], scores: str = "detector"
) -> dict[Cell, dict[str, float]]:
    """The metrics (in %) of every finished cell (``metrics.json`` present); NaN when absent.

    Args:
      workdir: the benchmark directory.
      cells: the grid.
      scores: one of :data:`SCORES`.
    """
    if scores not in SCORES:
        raise ValueError(f"scores must be one of {SCORES}, got {scores!r}.")
    prefix = "model_" if scores == "model" else ""
    found = {}
    for cell in cells:
        path = cell.directory(workdir) / "metrics.json"
        if path.is_file():
            summary = json.loads(path.read_text())
            found[cell] = {
                m: 100 * float(summary.get(prefix + m, summary.get(m, math.nan)))
                for m, _ in METRICS
            }
    return found


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if math.isfinite(x)], np.float64)
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def summarise(
    results: Mapping[Cell, Mapping[str, float]], cells: Sequence[Cell]
) -> list[dict[str, Any]]:
    """Rows ``{category, placement, seeds, <metric>: (mean, std, n)}``, the mean rows last."""
    categories = list(dict.fromkeys(c.category for c in cells))
    placements = list(dict.fromkeys(c.placement for c in cells))
    seeds = list(dict.fromkeys(c.seed for c in cells))
    rows = []
    for category in categories:
        for placement in placements:
            done = [
                r for c, r in results.items() if (c.category, c.placement) == (category, placement)
            ]
            if done:
                rows.append(_row(category, placement, done))
    for placement in placements:
        per_seed = []
        for seed in seeds:
            runs = [
                results.get(cells[0]._replace(category=c, placement=placement, seed=seed))
                for c in categories
            ]
            if all(r is not None for r in runs):
                per_seed.append({m: float(np.mean([r[m] for r in runs])) for m, _ in METRICS})
        if per_seed:
            rows.append(_row(MEAN, placement, per_seed))
    return rows


def _row(category: str, placement: str, runs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    row: dict[str, Any] = {"category": category, "placement": placement, "seeds": len(runs)}
    for metric, _ in METRICS:
        row[metric] = _mean_std([r[metric] for r in runs])
    return row


def paired(
    results: Mapping[Cell, Mapping[str, float]], cells: Sequence[Cell], baseline: str
) -> list[dict[str, Any]]:
    """Each placement against ``baseline`` over the (category, seed) pairs where both finished."""
    rows = []
    placements = [p for p in dict.fromkeys(c.placement for c in cells) if p != baseline]
    for placement in placements:
        for metric, name in METRICS:
            diffs = []
            for cell, values in results.items():
                if cell.placement != placement:
                    continue
                base = results.get(cell._replace(placement=baseline))
                if base is not None and math.isfinite(values[metric] - base[metric]):
                    diffs.append(values[metric] - base[metric])
            if diffs:
                rows.append(
                    {"placement": placement, "metric": name, **compare_paired(diffs)._asdict()}
                )
    return rows


def _fmt(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return "—"
    return f"{mean:.1f} ± {std:.1f}" if math.isfinite(std) else f"{mean:.1f} (n={n})"


def format_markdown(
    summary: Sequence[Mapping[str, Any]],
    comparisons: Sequence[Mapping[str, Any]],
    *,
    dataset: str,
    baseline: str,
    scores: str = "detector",
) -> str:
    """The Markdown report (see the module docstring)."""
    head = ["category", "placement", "seeds", *(name for _, name in METRICS)]
    lines = [
        "Mean ± sample standard deviation over seeds, in %. The mean row averages the "
        "categories per seed (seeds finished in every category), then over seeds. "
        + SCORES_NOTE[scores],
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in summary:
        name = f"**{MEAN}**" if row["category"] == MEAN else row["category"]
        values = [_fmt(*row[m]) for m, _ in METRICS]
        lines.append(
            f"| {name} | {row['placement']} | {row['seeds']} | " + " | ".join(values) + " |"
        )
    if dataset == "mvtec":
        lines += ["", "Published, MVTec AD mean over the 15 categories, in %:", ""]
        lines += ["| source | " + " | ".join(n for _, n in METRICS) + " |", "|---|---|---|---|---|"]
        for source, values in PUBLISHED:
            cells = ["—" if math.isnan(v) else f"{v:.1f}" for v in values]
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
    if comparisons:
        lines += [
            "",
            f"Paired comparison against `{baseline}`. " + PAIRED_NOTE.format(baseline=baseline),
            "",
        ]
        lines += [
            "| placement | metric | pairs | mean Δ | bootstrap 95 % interval | wins / losses | "
            "sign-test p |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            lines.append(
                f"| {c['placement']} | {c['metric']} | {c['pairs']} | {c['mean']:+.2f} | "
                f"[{c['low']:+.2f}, {c['high']:+.2f}] | {c['wins']} / {c['losses']} | "
                f"{c['sign_p']:.3g} |"
            )
    return "\n".join(lines) + "\n"


def _write_csv(path: pathlib.Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_report(
    workdir: str | pathlib.Path,
    cells: Sequence[Cell],
    *,
    dataset: str,
    baseline: str = "none",
    scores: str = "detector",
) -> str:
    """Collect the finished cells and write every table; returns the Markdown report."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = collect(workdir, cells, scores)
    summary = summarise(results, cells) if results else []
    comparisons = paired(results, cells, baseline)
    report = format_markdown(
        summary, comparisons, dataset=dataset, baseline=baseline, scores=scores
    )
    (workdir / "results.md").write_text(report)
    stats = [f"{m}_{s}" for m, _ in METRICS for s in ("mean", "std")]
    rows = [
        [
            r["category"],
            r["placement"],
            r["seeds"],
            *(f"{x:.4f}" for m, _ in METRICS for x in r[m][:2]),
        ]
        for r in summary
    ]
    if dataset == "mvtec":
        rows += [
            [f"{MEAN} (published)", source, "", *(x for v in values for x in (v, ""))]
            for source, values in PUBLISHED
        ]
    _write_csv(workdir / "results.csv", ["category", "placement", "seeds", *stats], rows)
    _write_csv(
        workdir / "runs.csv",
        ["category", "placement", "seed", *(m for m, _ in METRICS)],
        [[*cell, *(f"{v[m]:.4f}" for m, _ in METRICS)] for cell, v in results.items()],
    )
    _write_csv(
        workdir / "paired.csv",
        ["placement", "metric", "pairs", "mean", "low", "high", "wins", "losses", "sign_p"],
        [list(c.values()) for c in comparisons],
    )
    return report
