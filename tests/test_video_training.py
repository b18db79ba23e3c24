"""The auto-encoder ablation end to end: every variant trains, runs, table, score curves."""

import csv
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import autoencoder_variants
from sspcab_jax import data
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.state import init_train_state
from sspcab_jax.training.tasks import get_task
from train import ablation, plot_scores

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "autoencoder_demo.py"
# Narrow widths (SE needs >= 8 channels) and 32x32 frames: each variant compiles in ~1 s.
TINY = {
    "total_steps": 3,
    "batch_size": 4,
    "checkpoint_every_steps": 3,
    "log_every_steps": 1,
    "autoencoder.encoder_widths": (8, 8, 8),
    "autoencoder.decoder_widths": (8, 8, 8),
    "data.image_size": 32,
    "data.eval_batch_size": 16,
    "data.synthetic_video.num_train": 2,
    "data.synthetic_video.num_test": 3,
    "data.synthetic_video.num_frames": 16,
    "data.synthetic_video.size": 32,
}


def _tiny_config(variant):
    return ablation.variant_config(DEMO, variant, TINY)


@pytest.mark.parametrize(
    "variant", autoencoder_variants.TABLE1_VARIANTS + autoencoder_variants.EXTRA_VARIANTS
)
def test_every_variant_takes_training_steps(variant):
    config = _tiny_config(variant)
    task = get_task(config)
    model = task.create_model()
    state = init_train_state(task, model, jax.random.key(0))
    step = jax.jit(task.train_step(model, None))
    images = jax.random.uniform(jax.random.key(1), task.input_shape(batch_size=2))
    for _ in range(2):
        state, terms = step(state, {"image": images}, jax.random.key(2), None)
    assert int(state.step) == 2 and np.isfinite(float(terms["total"]))
    # The SSPCAB loss is sown exactly when a block is placed.
    assert (float(terms["sspcab"]) > 0) == bool(config.autoencoder.sspcab_positions)
    blocks = {k for k in state.params if k.startswith("sspcab_")}
    assert blocks == {f"sspcab_{p}" for p in config.autoencoder.sspcab_positions}


def test_clip_variant_trains_on_clips_from_the_reader(tmp_path):
    config = _tiny_config("late_3d")
    train, _ = build_sources(config, tmp_path)
    iterator = data.make_train_iterator(train, batch_size=2, image_size=32, seed=0)
    task = get_task(config)
    batch = {"image": task.to_model_input(next(iterator)["image"])}
    assert batch["image"].shape == (2, autoencoder_variants.CLIP_LENGTH, 32, 32, 1)
    model = task.create_model()
    state = init_train_state(task, model, jax.random.key(0))
    step = jax.jit(task.train_step(model, None))
    state, terms = step(state, jax.tree_util.tree_map(jnp.asarray, batch), jax.random.key(0), None)
    assert "sspcab_late" in state.params and float(terms["sspcab"]) > 0


@pytest.fixture(scope="module")
def ablation_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ablation")
    overrides = dict(TINY, best_metric="micro_auc")
    ablation.run_variants(DEMO, ["none", "late"], workdir, overrides)
    return workdir


def _sklearn_frame_aucs(npz_path, key="scores"):
    """``(micro, macro)`` AUC of saved frame scores by scikit-learn: micro over all frames,
    macro the mean over the videos that have both normal and abnormal frames."""
    from sklearn.metrics import roc_auc_score

    saved = np.load(npz_path)
    videos = range(len(saved["videos"]))
    scores = [saved[f"{key}_{i}"] for i in videos]
    labels = [saved[f"labels_{i}"] for i in videos]
    micro = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    pairs = zip(scores, labels, strict=True)
    per_video = [roc_auc_score(y, s) for s, y in pairs if 0 < y.sum() < len(y)]
    assert per_video, "no video with both classes: the macro AUC would be undefined"
    return micro, float(np.mean(per_video))


def test_video_runs_write_metrics_and_frame_scores(ablation_dir):
    for variant, positions in (("none", []), ("late", ["late"])):
        summary = json.loads((ablation_dir / variant / "metrics.json").read_text())
        micro, macro = _sklearn_frame_aucs(ablation_dir / variant / "frame_scores.npz")
        assert summary["micro_auc"] == pytest.approx(micro, rel=1e-6), variant
        assert summary["macro_auc"] == pytest.approx(macro, rel=1e-6), variant
        # Both region metrics are defined: the test videos have annotated regions.
        assert np.isfinite([summary["rbdc"], summary["tbdc"]]).all(), (variant, summary)
        assert summary["placement"] == variant and summary["sspcab_positions"] == positions
        assert summary["video_eval"]["sigma"] == 2.0 and summary["step"] == 3
        scores = np.load(ablation_dir / variant / "frame_scores.npz")
        assert list(scores["videos"]) == ["01", "02", "03"] and scores["scores_0"].shape == (16,)
        # Video runs get the histogram of the frame scores they were evaluated on.
        figures = ablation_dir / variant / "figures"
        assert [p.name for p in figures.iterdir()] == ["score_histogram.png"], variant
    # One copy of the embedded set and of the decoded frames serves every variant.
    assert (ablation_dir / "data" / "Avenue Dataset").is_dir()
    assert not (ablation_dir / "late" / "data").exists()


def test_results_table_and_resume(ablation_dir):
    before = (ablation_dir / "late" / "metrics.json").stat().st_mtime_ns
    ablation.run_variants(DEMO, ["none", "late"], ablation_dir, TINY)  # finished: skipped
    assert (ablation_dir / "late" / "metrics.json").stat().st_mtime_ns == before
    table = ablation.write_tables(ablation_dir, ablation.collect(ablation_dir, ["none", "late"]))
    lines = table.splitlines()
    assert lines[0].startswith("| variant | early | middle | late |") and len(lines) == 4
    assert lines[3].startswith("| late |  |  | x | 1x1 |")
    rows = list(csv.DictReader(open(ablation_dir / "results.csv")))
    assert [r["variant"] for r in rows] == ["none", "late"] and rows[1]["late"] == "1"
    summary = json.loads((ablation_dir / "late" / "metrics.json").read_text())
    assert float(rows[1]["RBDC"]) == pytest.approx(100 * summary["rbdc"], abs=1e-3)
    with pytest.raises(FileNotFoundError, match="has not finished"):
        ablation.collect(ablation_dir, ["none", "early"])


def test_collect_only_command_line(ablation_dir):
    (ablation_dir / "results.md").unlink()
    result = subprocess.run(
        [sys.executable, "-m", "train.ablation", f"--workdir={ablation_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| late |" in result.stdout and (ablation_dir / "results.md").is_file()


def test_score_curves_of_two_runs(ablation_dir, tmp_path):
    runs = [ablation_dir / "none", ablation_dir / "late"]
    out = plot_scores.plot_runs(runs, "02", tmp_path / "fig.png", names=["AE", "AE+SSPCAB"])
    with Image.open(out) as figure:
        assert figure.size == (800, 300)  # viz.plot_frame_scores: 8 x 3 in at 100 dpi
        colours = {rgb for _, rgb in figure.convert("RGB").getcolors(maxcolors=1 << 16)}
    # Both runs' curves are drawn, in matplotlib's first two cycle colours.
    assert {(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)} <= colours
    with pytest.raises(KeyError, match="'01', '02', '03'"):
        plot_scores.plot_runs(runs, "99", tmp_path / "x.png")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.plot_scores",
            f"--runs={runs[0]},{runs[1]}",
            "--video=01",
            f"--out={tmp_path / 'cli.png'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "cli.png").is_file()


def test_evaluate_command_reproduces_a_video_runs_metrics(ablation_dir, tmp_path):
    import shutil

    from train import evaluate

    run = tmp_path / "late"
    shutil.copytree(ablation_dir / "late", run)
    trained = json.loads((run / "metrics.json").read_text())
    (run / "frame_scores.npz").unlink()
    shutil.rmtree(run / "figures")
    values = evaluate.evaluate_run(run, which="latest")
    assert (run / "figures" / "score_histogram.png").is_file()
    # The frame scores evaluate wrote again, scored by scikit-learn.
    for suffix, key in (("", "scores"), ("_raw", "raw")):
        micro, macro = _sklearn_frame_aucs(run / "frame_scores.npz", key)
        assert values[f"micro_auc{suffix}"] == pytest.approx(micro, rel=1e-6)
        assert values[f"macro_auc{suffix}"] == pytest.approx(macro, rel=1e-6)
    for metric in ("micro_auc", "macro_auc", "rbdc", "tbdc"):
        assert np.isfinite(values[metric]), metric
        np.testing.assert_allclose(values[metric], trained[metric], rtol=1e-6)
    assert json.loads((run / "metrics.json").read_text())["placement"] == "late"
