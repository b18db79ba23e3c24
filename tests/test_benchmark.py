"""``train.benchmark`` end to end: a tiny grid, a killed run resumed, shards, collect-only."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from configs import test as test_config
from train import benchmark

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path.home() / ".cache/sspcab_jax"))
    return env


def _benchmark(argv):
    return subprocess.run(
        [sys.executable, "-m", "train.benchmark", *argv],
        env=_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_tiny_grid_resumes_a_killed_run_and_splits_into_shards(tmp_path):
    work = tmp_path / "bench"
    argv = [
        "--config=configs/test.py",
        "--categories=brick",
        "--placements=none,penultimate",
        "--seeds=0",
        f"--workdir={work}",
        "--config.total_steps=3",
        "--config.checkpoint_every_steps=1",
    ]
    cells = benchmark.grid(["brick"], ["none", "penultimate"], [0])
    killed = cells[0]
    command = benchmark.cell_command(
        killed,
        "configs/test.py",
        work,
        benchmark.run_overrides(test_config.get_config(), work, ["benchmark", *argv]),
    )
    proc = subprocess.Popen(
        command, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (killed.directory(work) / "checkpoints" / "1").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed.directory(work) / "metrics.json").exists(), "finished before the kill"

    first = _benchmark([*argv, "--shard=0/2"])  # cell 0 only
    assert first.returncode == 0, first.stderr[-3000:]
    done = [c for c in cells if (c.directory(work) / "metrics.json").is_file()]
    assert done == [cells[0]]
    history = json.loads((killed.directory(work) / "config.json").read_text())["history"]
    assert history and history[0]["step"] >= 1  # resumed from its checkpoint, not restarted
    assert "| brick | none | 1 |" in (work / "results.md").read_text()

    second = _benchmark([*argv, "--shard=1/2"])
    assert second.returncode == 0, second.stderr[-3000:]
    assert all((c.directory(work) / "metrics.json").is_file() for c in cells)
    for cell in cells:
        metrics = json.loads((cell.directory(work) / "metrics.json").read_text())
        assert metrics["step"] == 3 and metrics["sspcab_placement"] == cell.placement
        config = json.loads((cell.directory(work) / "config.json").read_text())
        assert config["seed"] == cell.seed and config["data"]["root"] == str(work / "data")
    report = (work / "results.md").read_text()
    assert "| **mean** | penultimate | 1 |" in report
    assert "| penultimate | Image AUROC | 1 |" in report
    assert report == second.stdout[: len(report)] or report.strip() in second.stdout

    logs = {c: (c.directory(work) / "train.log").stat().st_mtime for c in cells}
    (work / "results.md").unlink()
    again = _benchmark([*argv, "--collect_only"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert (work / "results.md").read_text() == report
    assert logs == {c: (c.directory(work) / "train.log").stat().st_mtime for c in cells}


def test_scores_pick_the_detector_or_the_models_own_figures(tmp_path):
    from train import benchmark_report

    cells = benchmark.grid(["brick"], ["none", "penultimate"], [0])
    fused = {"image_auroc": 1.0, "pixel_auroc": 0.9, "pixel_ap": 0.5, "aupro": 0.8}
    model = {f"model_{k}": v - 0.25 for k, v in fused.items()}
    for cell, summary in zip(cells, [{**fused, **model}, fused], strict=True):
        cell.directory(tmp_path).mkdir(parents=True)
        (cell.directory(tmp_path) / "metrics.json").write_text(json.dumps(summary))
    detector = benchmark_report.collect(tmp_path, cells, "detector")
    own = benchmark_report.collect(tmp_path, cells, "model")
    assert detector[cells[0]]["pixel_auroc"] == pytest.approx(90.0)
    assert own[cells[0]]["pixel_auroc"] == pytest.approx(65.0)  # model_pixel_auroc
    assert own[cells[1]]["pixel_auroc"] == pytest.approx(90.0)  # an unfused run's own map
    report = benchmark_report.write_report(tmp_path, cells, dataset="synthetic", scores="model")
    assert "the network's own map" in report and "| brick | none | 1 | 75.0 (n=1) |" in report
    with pytest.raises(ValueError, match="scores must be one of"):
        benchmark_report.collect(tmp_path, cells, "fused")
