"""Run a list of auto-encoder variants and write the Table-1-shaped results table.

    python -m train.ablation --config=configs/autoencoder_avenue.py --workdir=DIR
        --variants=none,early,middle,late,early+middle,early+late,middle+late,early+middle+late
        [--config.data.root=ROOT --config.<field>=...]

Each variant runs in ``DIR/<variant>`` (``get_config(variant)`` of the config file, then the
``--config.*`` overrides); a finished variant (``metrics.json`` present) is skipped and a killed
one resumes from its checkpoints. The table (supplementary Table 1: early / middle / late ticks,
micro AUC, macro AUC, RBDC, TBDC, in %) goes to ``DIR/results.md`` and ``DIR/results.csv``.
Without ``--config`` nothing is trained: the finished runs under ``DIR`` (those of
``--variants``, or every sub-folder with a ``metrics.json``) are collected into the table.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from sspcab_jax.models.autoencoder import POSITIONS
from sspcab_jax.training.video_eval import VIDEO_METRICS as METRICS
from train import cli

HEADER = ("variant", *POSITIONS, "M", "3D", "micro AUC", "macro AUC", "RBDC", "TBDC")

logger = logging.getLogger(__name__)


def variant_config(
    config_file: str | pathlib.Path, variant: str, overrides: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """``get_config(variant)`` of ``config_file`` with dotted-path ``overrides`` applied."""
    path = pathlib.Path(str(config_file).split(":", 1)[0])  # drop a ``file:arg`` argument
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} does not exist.")
    spec = importlib.util.spec_from_file_location(f"_ablation_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    for path, value in overrides.items():
        parent, _, leaf = path.rpartition(".")
        node = config
        for key in parent.split(".") if parent else ():
            node = node[key]
        if leaf not in node:
            raise ValueError(f"--config.{path}: the config has no field {path!r}.")
        node[leaf] = value
    return config


def run_variants(
    config_file: str | pathlib.Path,
    variants: Sequence[str],
    workdir: str | pathlib.Path,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Trains and evaluates each unfinished variant in ``workdir/<variant>``.

    The decoded-video cache is shared by all variants (``workdir/video_cache``) unless
    ``data.cache_dir`` is set.
    """
    from sspcab_jax.training.loop import train_and_evaluate

    workdir = pathlib.Path(workdir)
    for variant in variants:
        run_dir = workdir / variant
        if (run_dir / "metrics.json").is_file():
            logger.info("%s: finished, collecting %s", variant, run_dir / "metrics.json")
            continue
        config = variant_config(config_file, variant, overrides or {})
        if not config.data.get("cache_dir", ""):
            config.data.cache_dir = str(workdir / "video_cache")
        if config.data.dataset == "synthetic_video" and not config.data.root:
            config.data.root = str(workdir / "data")  # one copy of the embedded set for all
        logger.info("%s: training in %s", variant, run_dir)
        train_and_evaluate(config, run_dir)


def collect(workdir: str | pathlib.Path, variants: Sequence[str] | None = None) -> list[dict]:
    """Rows of the results table from ``workdir/<variant>/metrics.json``.

    Args:
      workdir: the ablation directory.
      variants: run folders in table order; None takes every sub-folder with a ``metrics.json``.

    Returns:
      One dict per run: ``variant``, ``positions`` (tuple), ``masked_centre``, ``spatial_dims``
      and the metrics in [0, 1] (NaN when missing).

    Raises:
      FileNotFoundError: a requested variant has no ``metrics.json`` (it has not finished).
    """
    workdir = pathlib.Path(workdir)
    if variants is None:
        variants = sorted(p.parent.name for p in workdir.glob("*/metrics.json"))
    rows = []
    for variant in variants:
        path = workdir / variant / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: run {variant!r} has not finished. Train it with --config "
                f"(it resumes), or leave it out of --variants."
            )
        summary = json.loads(path.read_text())
        rows.append(
            {
                "variant": variant,
                "positions": tuple(summary.get("sspcab_positions", ())),
                "masked_centre": int(summary.get("masked_centre", 1)),
                "spatial_dims": int(summary.get("spatial_dims", 2)),
                **{m: float(summary.get(m, math.nan)) for m in METRICS},
            }
        )
    return rows


def _cells(row: Mapping[str, Any], tick: str) -> list[str]:
    m = row["masked_centre"]
    return [
        row["variant"],
        *[tick if p in row["positions"] else "" for p in POSITIONS],
        f"{m}x{m}" if row["positions"] else "",
        tick if row["spatial_dims"] == 3 else "",
    ]


def _percent(value: float, digits: int) -> str:
    return "—" if not math.isfinite(value) else f"{100 * value:.{digits}f}"


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table: ticks, then micro/macro AUC (one decimal) and RBDC/TBDC (two), in %."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        values = [_percent(row[m], 1 if "auc" in m else 2) for m in METRICS]
        lines.append("| " + " | ".join(_cells(row, "x") + values) + " |")
    return "\n".join(lines) + "\n"


def write_tables(workdir: str | pathlib.Path, rows: Sequence[Mapping[str, Any]]) -> str:
    """Writes ``results.md`` and ``results.csv`` (full-precision %) in ``workdir``.

    Returns:
      The Markdown table.
    """
    workdir = pathlib.Path(workdir)
    table = format_markdown(rows)
    (workdir / "results.md").write_text(table)
    with open(workdir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow(_cells(row, "1") + [f"{100 * row[m]:.4f}" for m in METRICS])
    return table


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.ablation``."""
    # Variant configs take their variant from --variants, not from ``--config=file:arg``.
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Config file with get_config(variant).",
        flag_values=flag_values,
        sys_argv=list(argv),
    )
    flags.DEFINE_list(
        "variants",
        [],
        "Variants (none,early,...,late_m3), comma-separated.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "workdir", None, "Ablation directory (one sub-folder per variant).", flag_values=flag_values
    )
    flags.mark_flags_as_required(["workdir"], flag_values=flag_values)


def main(argv: Sequence[str]) -> str:
    """Command entry: ``main(["ablation", "--workdir=DIR", ...])``; returns the Markdown table."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    variants, workdir = args.variants or None, pathlib.Path(args.workdir)
    if args.config is not None:
        if not variants:
            raise cli.CommandError("--variants is required with --config.")
        overrides = config_flags.get_override_values(args["config"])
        run_variants(config_flags.get_config_filename(args["config"]), variants, workdir, overrides)
    table = write_tables(workdir, collect(workdir, variants))
    print(table)
    return table


if __name__ == "__main__":
    cli.run(main)
