"""Paired statistics and the benchmark grid's bookkeeping (no training here)."""

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from configs import draem_demo, draem_mvtec
from sspcab_jax.metrics.paired import bootstrap_interval, compare_paired, sign_test
from train import benchmark, benchmark_report, cli


def test_sign_test_matches_hand_values_and_scipy():
    # 5 positives of 5: p = 2 / 2^5.
    assert sign_test(np.ones(5)) == pytest.approx(0.0625)
    # 4 positives, 1 negative, 2 ties (dropped): p = 2 (1 + 5) / 2^5 = 0.375.
    assert sign_test([1, 2, 3, 4, -1, 0, 0]) == pytest.approx(0.375)
    assert sign_test([0.0, 0.0]) == 1.0 and sign_test([1, -1]) == 1.0
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 15, 40):
        d = rng.normal(0.3, 1.0, n)
        k = int(np.sum(d > 0))
        expected = stats.binomtest(k, n, 0.5, alternative="two-sided").pvalue
        assert sign_test(d) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_matches_the_exact_bootstrap_distribution():
    # Two pairs: the resampled mean is 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5 % and 97.5 % quantiles are exactly 0 and 1.
    assert bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_interval([2.5, 2.5, 2.5]) == (2.5, 2.5)
    # Five pairs: enumerate all 5^5 equally likely resamples (the exact bootstrap
    # distribution); 10,000 random resamples give its quantiles to within ~0.05 (1 sigma).
    d = np.array([-2.0, -0.5, 0.1, 1.0, 4.0])
    exact = np.quantile([np.mean(r) for r in itertools.product(d, repeat=5)], [0.025, 0.975])
    low, high = bootstrap_interval(d)
    assert low == pytest.approx(exact[0], abs=0.15) and high == pytest.approx(exact[1], abs=0.15)
    assert bootstrap_interval(d) == (low, high)  # fixed seed: reproducible
    spread = np.random.default_rng(2).normal(size=30)
    assert bootstrap_interval(spread, seed=1) != bootstrap_interval(spread)
    narrow = bootstrap_interval(d, level=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_compare_paired_counts_and_rejects_no_pairs():
    c = compare_paired([1.0, -2.0, 0.0, 4.0])
    assert (c.pairs, c.mean, c.wins, c.losses) == (4, 0.75, 2, 1)
    assert c.low <= c.mean <= c.high
    with pytest.raises(ValueError, match="at least one pair"):
        compare_paired([])


def test_shards_cover_the_grid_exactly_once():
    cells = benchmark.grid(["a", "b", "c"], ["none", "penultimate", "bottleneck"], [0, 1, 2, 3, 4])
    assert len(cells) == 45 and len(set(cells)) == 45
    for n in (1, 2, 4, 7, 45, 50):
        parts = [benchmark.shard(cells, i, n) for i in range(n)]
        merged = [c for part in parts for c in part]
        assert sorted(merged) == sorted(cells) and len(merged) == len(cells)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert benchmark.parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/2", "x", "1/0", "1"):
        with pytest.raises(cli.CommandError, match="--shard"):
            benchmark.parse_shard(bad)


def test_all_categories_of_the_config_dataset():
    assert len(benchmark.resolve_categories(["all"], draem_mvtec.get_config())) == 15
    demo = benchmark.resolve_categories(["all"], draem_demo.get_config())
    assert demo == ["brick", "grass", "gravel"]
    assert benchmark.resolve_categories(["grass"], draem_demo.get_config()) == ["grass"]
    folder = draem_demo.get_config()
    folder.data.dataset = "folder"
    with pytest.raises(cli.CommandError, match="name them"):
        benchmark.resolve_categories(["all"], folder)


def test_cell_command_sets_the_cell_and_passes_overrides(tmp_path):
    cell = benchmark.Cell("grass", "bottleneck", 3)
    argv = ["benchmark", "--config=configs/draem_mvtec.py:bottle", "--config.total_steps=5"]
    cmd = benchmark.cell_command(
        cell, benchmark.config_argument(argv), tmp_path, benchmark.config_overrides(argv)
    )
    assert cmd[1:4] == ["-m", "train.main", "--config=configs/draem_mvtec.py:bottle"]
    assert f"--workdir={tmp_path / 'grass' / 'bottleneck' / 'seed3'}" in cmd
    assert cmd[-4:] == [
        "--config.total_steps=5",
        "--config.data.category=grass",
        "--config.draem.sspcab_placement=bottleneck",
        "--config.seed=3",
    ]


def _write_metrics(workdir, cell, image_auroc, pixel_auroc=0.9):
    run = cell.directory(workdir)
    run.mkdir(parents=True)
    values = {"image_auroc": image_auroc, "pixel_auroc": pixel_auroc, "pixel_ap": 0.5}
    (run / "metrics.json").write_text(json.dumps(values))


def test_report_means_stds_and_paired_rows(tmp_path):
    cells = benchmark.grid(["a", "b"], ["none", "penultimate"], [0, 1, 2])
    image = {  # image AUROC per (category, placement) over seeds 0, 1, 2
        ("a", "none"): (0.80, 0.82, 0.84),
        ("a", "penultimate"): (0.85, 0.83, 0.90),
        ("b", "none"): (0.70, 0.60, 0.65),
        ("b", "penultimate"): (0.72, 0.66, None),  # seed 2 unfinished
    }
    for cell in cells:
        value = image[(cell.category, cell.placement)][cell.seed]
        if value is not None:
            _write_metrics(tmp_path, cell, value)
    report = benchmark_report.write_report(tmp_path, cells, dataset="mvtec")
    rows = {
        (r["category"], r["placement"]): r
        for r in benchmark_report.summarise(benchmark_report.collect(tmp_path, cells), cells)
    }
    mean, std, n = rows[("a", "none")]["image_auroc"]
    assert (mean, n) == (pytest.approx(82.0), 3) and std == pytest.approx(2.0)
    assert rows[("b", "penultimate")]["seeds"] == 2
    # Mean row: seeds finished in both categories; none: (75, 71, 74.5) -> 73.5 ± 2.18.
    mean, std, n = rows[("mean", "none")]["image_auroc"]
    assert (
        n == 3
        and mean == pytest.approx(73.5)
        and std == pytest.approx(np.std([75, 71, 74.5], ddof=1))
    )
    assert rows[("mean", "penultimate")]["seeds"] == 2
    assert math.isnan(rows[("a", "none")]["aupro"][0])
    # Pairs: a0 +5, a1 +1, a2 +6, b0 +2, b1 +6 (b2 unfinished): 5 wins, p = 0.0625.
    paired = [line for line in report.splitlines() if line.startswith("| penultimate | Image")]
    assert paired and "| 5 | +4.00 |" in paired[0] and "5 / 0 | 0.0625 |" in paired[0]
    assert "82.0 ± 2.0" in report and "98.9" in report and "bootstrap" in report
    assert "sign test" in report
    runs = (tmp_path / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 11 and (tmp_path / "results.csv").is_file()
