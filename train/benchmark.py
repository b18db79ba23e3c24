"""Train and evaluate every (category, placement, seed) of a grid, then tabulate mean ± std.

    python -m train.benchmark --config=configs/draem_mvtec.py --categories=all
        --placements=none,penultimate,bottleneck --seeds=0,1,2 --workdir=runs/mvtec
        [--shard=i/n] [--collect_only] [--scores=detector|model]
        [--config.data.root=ROOT --config.<field>=...]

Each cell trains with ``python -m train.main`` in its own process (memory is returned to the
system between runs) in ``<workdir>/<category>/<placement>/seed<k>``, with
``--config.data.category``, ``--config.draem.sspcab_placement`` and ``--config.seed`` set and
every ``--config.*`` override passed on. A finished cell (``metrics.json`` present) is
collected, not retrained; an interrupted one resumes from its checkpoints. ``--categories=all``
is every category of the config's dataset (MVTec AD's 15, the embedded dataset's 3).
``--shard=i/n`` trains only the cells whose grid index is ``i`` modulo ``n`` (cells are
ordered by category, placement, seed), so ``n`` processes or hosts split the grid exactly once.
``results.md`` / ``results.csv`` / ``runs.csv`` are written from every finished cell of the
grid (``--collect_only`` only writes them); see :mod:`train.benchmark_report`. ``--scores=model``
tabulates the network's own map of runs that fuse local statistics (``model_*`` in their
``metrics.json``): the figure to compare SSPCAB placements on, since the fusion adds the same
learning-free map to every placement.
"""

from __future__ import annotations

import logging
import pathlib
import subprocess
import sys
from collections.abc import Sequence
from typing import NamedTuple

import ml_collections
from absl import flags
from ml_collections import config_flags

from sspcab_jax.data.mvtec import CATEGORIES as MVTEC_CATEGORIES
from sspcab_jax.data.synthetic import SYNTHETIC_CATEGORIES
from sspcab_jax.models.draem import PLACEMENTS
from train import benchmark_report, cli

logger = logging.getLogger(__name__)

DATASET_CATEGORIES = {"mvtec": MVTEC_CATEGORIES, "synthetic": SYNTHETIC_CATEGORIES}


class Cell(NamedTuple):
    """One run of the grid."""

    category: str
    placement: str
    seed: int

    def directory(self, workdir: str | pathlib.Path) -> pathlib.Path:
        """``<workdir>/<category>/<placement>/seed<k>``."""
        return pathlib.Path(workdir) / self.category / self.placement / f"seed{self.seed}"


def grid(categories: Sequence[str], placements: Sequence[str], seeds: Sequence[int]) -> list[Cell]:
    """Every cell, ordered by category, then placement, then seed."""
    return [Cell(c, p, int(s)) for c in categories for p in placements for s in seeds]


def parse_shard(text: str) -> tuple[int, int]:
    """``'i/n'`` -> ``(i, n)`` with ``0 <= i < n``; raises CommandError naming the fix."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise cli.CommandError(f"--shard={text!r}: expected i/n with 0 <= i < n, e.g. 0/4.")
    return index, count


def shard(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` of ``count``: grid positions ``index``, ``index + n``, ..."""
    return list(cells[index::count])


def resolve_categories(requested: Sequence[str], config: ml_collections.ConfigDict) -> list[str]:
    """``requested``, or every category of the config's dataset for ``['all']``."""
    if list(requested) != ["all"]:
        return list(requested)
    dataset = config.data.dataset
    if dataset not in DATASET_CATEGORIES:
        raise cli.CommandError(
            f"--categories=all: the categories of dataset {dataset!r} are not known; name them, "
            "e.g. --categories=a,b."
        )
    return list(DATASET_CATEGORIES[dataset])


def config_overrides(argv: Sequence[str]) -> list[str]:
    """The ``--config.<field>=<value>`` arguments of ``argv``, passed on to every run."""
    return [a for a in argv if a.startswith("--config.")]


def run_overrides(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, argv: Sequence[str]
) -> list[str]:
    """:func:`config_overrides`; the embedded dataset is written once for all runs."""
    overrides = config_overrides(argv)
    if config.data.dataset == "synthetic" and not config.data.root:
        overrides = [f"--config.data.root={pathlib.Path(workdir) / 'data'}", *overrides]
    return overrides


def config_argument(argv: Sequence[str]) -> str:
    """The value of ``--config`` as given (``file`` or ``file:arg``), for the runs' commands."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    raise cli.CommandError("--config=FILE is required.")


def cell_command(
    cell: Cell, config_file: str, workdir: str | pathlib.Path, overrides: Sequence[str] = ()
) -> list[str]:
    """The ``train.main`` command line that trains (or resumes) ``cell``."""
    return [
        sys.executable,
        "-m",
        "train.main",
        f"--config={config_file}",
        f"--workdir={cell.directory(workdir)}",
        *overrides,
        f"--config.data.category={cell.category}",
        f"--config.draem.sspcab_placement={cell.placement}",
        f"--config.seed={cell.seed}",
    ]


def run_cells(
    cells: Sequence[Cell], config_file: str, workdir: pathlib.Path, overrides: Sequence[str]
) -> list[Cell]:
    """Train every unfinished cell in turn; returns the cells whose run failed.

    Each run's output is appended to ``<cell>/train.log``.
    """
    failed = []
    for i, cell in enumerate(cells, start=1):
        run_dir = cell.directory(workdir)
        if (run_dir / "metrics.json").is_file():
            logger.info("[%d/%d] %s: finished, collected", i, len(cells), run_dir)
            continue
        resumed = (run_dir / "checkpoints").is_dir()
        logger.info("[%d/%d] %s: %s", i, len(cells), run_dir, "resuming" if resumed else "training")
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "ab") as log:
            code = subprocess.call(
                cell_command(cell, config_file, workdir, overrides),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if code != 0:
            logger.error("%s failed (exit %d); see %s", run_dir, code, run_dir / "train.log")
            failed.append(cell)
    return failed


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.benchmark``."""
    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file.", flag_values=flag_values, sys_argv=list(argv)
    )
    flags.DEFINE_list(
        "categories", ["all"], "Categories, comma-separated, or 'all'.", flag_values=flag_values
    )
    flags.DEFINE_list(
        "placements",
        ["none", "penultimate", "bottleneck"],
        f"SSPCAB placements {PLACEMENTS}, comma-separated ('none' is the paired baseline).",
        flag_values=flag_values,
    )
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds, comma-separated.", flag_values=flag_values)
    flags.DEFINE_string(
        "workdir", None, "Benchmark directory (one run per cell).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "shard", "0/1", "i/n: train only grid cells i, i+n, i+2n, ...", flag_values=flag_values
    )
    flags.DEFINE_bool(
        "collect_only", False, "Write the tables from finished runs.", flag_values=flag_values
    )
    flags.DEFINE_enum(
        "scores",
        "detector",
        list(benchmark_report.SCORES),
        "'detector': the figures each run's detector scores (fused with local statistics where "
        "the run fuses them); 'model': the network's own map, e.g. to compare SSPCAB placements.",
        flag_values=flag_values,
    )
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def _check_grid(placements: Sequence[str], seeds: Sequence[str]) -> list[int]:
    bad = [p for p in placements if p not in PLACEMENTS]
    if bad or not placements:
        raise cli.CommandError(f"--placements={','.join(placements)}: use some of {PLACEMENTS}.")
    try:
        return [int(s) for s in seeds]
    except ValueError:
        raise cli.CommandError(f"--seeds={','.join(seeds)}: use integers, e.g. 0,1,2.") from None


def main(argv: Sequence[str]) -> str:
    """Command entry: ``main(["benchmark", "--config=...", "--workdir=DIR", ...])``.

    Returns:
      The Markdown report (also written to ``<workdir>/results.md``).
    """
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    seeds = _check_grid(args.placements, args.seeds)
    index, count = parse_shard(args.shard)
    config, config_file = args.config, config_argument(argv)
    categories = resolve_categories(args.categories, config)
    workdir = pathlib.Path(args.workdir)
    overrides = run_overrides(config, workdir, argv)
    cells = grid(categories, args.placements, seeds)
    failed = []
    if not args.collect_only:
        mine = shard(cells, index, count)
        logger.info("shard %d/%d: %d of %d runs", index, count, len(mine), len(cells))
        failed = run_cells(mine, config_file, workdir, overrides)
    report = benchmark_report.write_report(
        workdir, cells, dataset=config.data.dataset, baseline="none", scores=args.scores
    )
    print(report)
    if failed:
        names = ", ".join(str(c.directory(workdir)) for c in failed)
        raise cli.CommandError(f"{len(failed)} run(s) failed (see their train.log): {names}")
    return report


if __name__ == "__main__":
    cli.run(main)
