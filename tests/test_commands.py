"""The run commands (evaluate, predict, figures) and restoring a run, on one tiny trained run."""

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
)

from sspcab_jax import Calibration, Detector
from sspcab_jax.data import read_video, write_video
from sspcab_jax.training import evaluation
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.restore import (
    ConfigMismatchError,
    CorruptCheckpointError,
    RunError,
    RunNotFoundError,
    load_run,
)
from sspcab_jax.training.tasks import get_task
from train import cli, evaluate, figures, predict


@pytest.fixture(scope="module")
def run(trained_run):
    """The shared trained run of configs/test.py: ``(workdir, final metrics of training)``."""
    return trained_run


FIGURES = ["roc_pro.png", "score_histogram.png", "worst_cases.png"]


def _figure_names(folder):
    for path in folder.iterdir():
        with Image.open(path) as image:
            assert image.format == "PNG", path
    return sorted(p.name for p in folder.iterdir())


def test_training_writes_figures_and_names_the_folder(trained_run_printed):
    workdir, _, printed = trained_run_printed
    assert _figure_names(workdir / "figures") == FIGURES
    lines = printed.rstrip().splitlines()
    figures_line = lines.index(f"figures: {workdir / 'figures'}")
    # The calibrated verdicts follow the figures line and end the output.
    verdicts_line = next(i for i, line in enumerate(lines) if line.startswith("Verdicts at"))
    assert figures_line < verdicts_line
    assert any(line.startswith("| pixel_f1 |") for line in lines[verdicts_line:])


def _copy_run(workdir, destination):
    """A copy of the run's config and checkpoints (enough for restoring)."""
    shutil.copytree(workdir / "checkpoints", destination / "checkpoints")
    shutil.copy(workdir / "config.json", destination / "config.json")
    return destination


def _sklearn_metrics(workdir):
    """Image and pixel AUROC/AP and image F1-max of the latest state, by scikit-learn.

    The scores and maps come from running the restored model over the test split; the metrics
    are computed here, not by ``sspcab_jax.metrics``.
    """
    config, model, state, _ = load_run(workdir, "latest")
    task = get_task(config)
    _, test_source = build_sources(config, workdir)
    out = evaluation.predict(task, model, state, test_source)
    labels, masks = out["label"].astype(int), (out["mask"] >= 0.5).ravel().astype(int)
    precision, recall, _ = precision_recall_curve(labels, out["score"])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return {
        "image_auroc": roc_auc_score(labels, out["score"]),
        "image_ap": average_precision_score(labels, out["score"]),
        "image_f1_max": f1.max(),
        "pixel_auroc": roc_auc_score(masks, out["anomaly_map"].ravel()),
        "pixel_ap": average_precision_score(masks, out["anomaly_map"].ravel()),
    }


def test_evaluate_writes_the_metrics_of_training(run, capsys):
    workdir, final = run
    path = workdir / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "note": "kept"}))

    shutil.rmtree(workdir / "figures")

    summary = evaluate.main(["evaluate", f"--workdir={workdir}", "--which=best"])

    assert capsys.readouterr().out.splitlines()[-1] == f"figures: {workdir / 'figures'}"
    assert _figure_names(workdir / "figures") == FIGURES
    written = json.loads(path.read_text())
    assert written == {**written, **summary}
    assert written["note"] == "kept"
    assert written["step"] == 4 and written["which"] == "best"
    assert written["model"] == "draem" and written["sspcab_placement"] == "penultimate"
    # Every metric is defined on this split (normal and defective images, defect masks) ...
    assert all(math.isfinite(written[name]) for name in final), written
    # ... equals scikit-learn's on the model's own scores (step 4 is also the latest) ...
    for name, value in _sklearn_metrics(workdir).items():
        assert written[name] == pytest.approx(value, rel=1e-6), name
    # ... and training's final evaluation of the same step.
    for name, value in final.items():
        assert written[name] == pytest.approx(value, rel=1e-6), name


def _write_images(folder):
    """Mixed sizes and formats, one corrupt file, one non-image, one image in a sub-folder."""
    rng = np.random.default_rng(0)
    sizes = {"wide.png": (40, 72, 3), "tall.jpg": (50, 24, 3), "gray.png": (32, 32)}
    for name, shape in sizes.items():
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "sub" / "deep.png")
    return {name: shape[:2] for name, shape in sizes.items()}


def test_predict_writes_overlays_at_original_size_and_reports_unreadable(run, tmp_path, caplog):
    workdir, _ = run
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    sizes = _write_images(images)

    result = predict.main(
        ["predict", f"--workdir={workdir}", f"--images={images}", f"--out={out}", "--which=latest"]
    )

    assert sorted(result.scores) == sorted(sizes)  # not the sub-folder's image
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays == sorted(n.rsplit(".", 1)[0] + ".png" for n in sizes)
    for name, (height, width) in sizes.items():
        with Image.open(out / "overlays" / (name.rsplit(".", 1)[0] + ".png")) as overlay:
            assert overlay.size == (width, height) and overlay.mode == "RGB"
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "file,score,normalized_score,is_anomalous,defect_pixels"
    assert len(rows) == 1 + len(sizes)
    calibration = json.loads((workdir / "calibration.json").read_text())
    for row in rows[1:]:
        name, score, normalized, flagged, pixels = row.split(",")
        assert float(score) == pytest.approx(result.scores[name]) and 0 <= float(score) <= 1
        assert flagged == str(float(score) > calibration["image_threshold"])
        assert (float(normalized) > 0.5) == (flagged == "True") and 0 <= float(normalized) <= 1
        assert 0 <= int(pixels) <= sizes[name][0] * sizes[name][1]
        assert result.flagged[name] == (flagged == "True")
    skipped = (out / "skipped.txt").read_text()
    assert skipped.startswith("broken.png\t") and "notes.txt\tnot an image file" in skipped
    assert "broken.png" in caplog.text


def test_predict_rejects_empty_and_unreadable_folders(run, tmp_path):
    workdir, _ = run
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(cli.CommandError, match="holds no file.*--recursive"):
        predict.predict_folder(workdir, empty, tmp_path / "out")
    (empty / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(cli.CommandError, match="no readable image.*broken.jpg"):
        predict.predict_folder(workdir, empty, tmp_path / "out")
    with pytest.raises(cli.CommandError, match="not a folder"):
        predict.predict_folder(workdir, tmp_path / "missing", tmp_path / "out")


def test_a_directory_that_is_not_a_run_names_the_fix(run, tmp_path):
    workdir, _ = run
    with pytest.raises(RunNotFoundError, match="not a run directory.*train.main"):
        evaluate.main(["evaluate", f"--workdir={tmp_path}"])
    shutil.copy(workdir / "config.json", tmp_path / "config.json")
    with pytest.raises(RunNotFoundError, match="no checkpoint.*train.main"):
        evaluate.main(["evaluate", f"--workdir={tmp_path}"])
    assert not (tmp_path / "checkpoints").exists()  # looking must not create it


def test_an_edited_width_is_reported_as_a_config_mismatch(run, tmp_path):
    edited = _copy_run(run[0], tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    config["draem"]["recon_width"] = 16
    config["data"]["eval_batch_size"] = 3  # not structural: must not be reported
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigMismatchError, match="does not match") as info:
        evaluate.main(["evaluate", f"--workdir={edited}"])
    message = str(info.value)
    assert "draem.recon_width: 16 in config.json, 8 in the checkpoint" in message
    assert "eval_batch_size" not in message and "checkpoints/4/config" in message


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(run, tmp_path):
    damaged = _copy_run(run[0], tmp_path / "damaged")
    for path in (damaged / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.name != "commit_success.txt":
            path.write_bytes(b"damaged")
    _, _, state, step = load_run(damaged, which="latest")
    assert step == 2 and int(state.step) == 2
    # Readers open checkpoints read-only (the run may still be training): the damaged step is
    # left where it is; a resumed training run moves it aside.
    assert (damaged / "checkpoints" / "4").is_dir()
    assert not (damaged / "checkpoints" / "corrupt").exists()


def _xor_4kib(step_dir):
    """XORs 4 KiB in the middle of the largest file of a checkpoint step (same size)."""
    path = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = (np.frombuffer(data, np.uint8, 4096, middle) ^ 0xA5).tobytes()
    path.write_bytes(bytes(data))


def test_flipped_bytes_fall_back_loudly_then_fail_in_one_line(run, tmp_path, caplog):
    flipped = _copy_run(run[0], tmp_path / "flipped")
    _xor_4kib(flipped / "checkpoints" / "4")
    _, _, state, step = load_run(flipped, which="latest")
    assert step == 2 and int(state.step) == 2
    assert "Checkpoint step 4" in caplog.text and "using step 2 of" in caplog.text
    assert (flipped / "checkpoints" / "4").is_dir()  # readers move nothing

    _xor_4kib(flipped / "checkpoints" / "2")
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "a.png")
    for which in ("latest", "best"):
        with pytest.raises(CorruptCheckpointError, match="the newest .step 4. fails") as info:
            predict.main(
                ["predict", f"--workdir={flipped}", f"--images={images}", f"--out={out}"]
                + [f"--which={which}"]
            )
        assert "\n" not in str(info.value) and "damaged" in str(info.value)
    assert not out.exists()  # no scores (NaN or otherwise) from damaged weights


def test_bad_flags_are_command_errors(run):
    with pytest.raises(cli.CommandError, match="--workdir"):
        evaluate.main(["evaluate"])
    with pytest.raises(cli.CommandError, match="which"):
        evaluate.main(["evaluate", f"--workdir={run[0]}", "--which=newest"])
    with pytest.raises(cli.CommandError, match="one distinct name per run"):
        figures.make_figures([run[0], run[0]], run[0] / "figs", names=["A"])


def test_command_line_errors_exit_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["evaluate", f"--workdir={tmp_path}"])
    with pytest.raises(SystemExit) as info:
        cli.run(evaluate.main)
    assert info.value.code == cli.ERROR_EXIT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not a run directory" in err and "\n" not in err
    # --traceback (any command) shows the error itself instead.
    monkeypatch.setattr("sys.argv", ["evaluate", f"--workdir={tmp_path}", "--traceback"])
    with pytest.raises(RunError, match="not a run directory"):
        cli.run(evaluate.main)


def test_figures_writes_maps_and_roc_pngs(run, tmp_path):
    workdir, _ = run
    out = tmp_path / "figs"
    written = figures.main(
        [
            "figures",
            f"--runs={workdir},{workdir}",
            "--names=DRAEM,DRAEM+SSPCAB",
            f"--out={out}",
            "--num=3",
        ]
    )
    assert sorted(p.name for p in written) == ["anomaly_maps_brick.png", "roc_brick.png"]
    # Panels are 2 in at 100 dpi: 4 columns (image, truth, two runs) x 3 rows; ROC 2 panels.
    expected = {"anomaly_maps_brick.png": (800, 600), "roc_brick.png": (800, 400)}
    for path in written:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == expected[path.name]


def test_predict_tiles_outlines_defects_and_summarises(run, tmp_path, capsys):
    workdir, _ = run
    run_copy = _copy_run(workdir, tmp_path / "run")
    # Thresholds below every value: all images flagged, every pixel defective.
    everything = Calibration(-1.0, -1.0, -2.0, 1.0, -2.0, 1.0, "false_alarm_rate", "f1")
    everything.save(run_copy)
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    sizes = _write_images(images)

    result = predict.main(
        ["predict", f"--workdir={run_copy}", f"--images={images}", f"--out={out}"]
        + ["--tile_size=16", "--tile_overlap=4"]
    )

    assert all(result.flagged.values()) and sorted(result.flagged) == sorted(sizes)
    printed = capsys.readouterr().out
    assert "3 of 3 flagged anomalous: score > -1" in printed and "false_alarm_rate" in printed
    for name, (height, width) in sizes.items():
        row = [r for r in (out / "predictions.csv").read_text().splitlines() if r.startswith(name)]
        assert row[0].endswith(f",True,{height * width}")
        with Image.open(out / "overlays" / (name.rsplit(".", 1)[0] + ".png")) as overlay:
            pixels = np.asarray(overlay)
        # The whole image is the mask: its border is the outline, the inside is not painted.
        assert (pixels[0] == 255).all() and (pixels[:, -1] == 255).all()
        assert not (pixels[1:-1, 1:-1] == 255).all(axis=-1).all()


def test_predict_without_calibration_says_so(run, tmp_path, capsys):
    workdir, _ = run
    run_copy = _copy_run(workdir, tmp_path / "run")
    for stored in (run_copy / "checkpoints").glob("*/calibration.json"):
        stored.unlink()  # the copy in the checkpoint would calibrate the detector
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    _write_images(images)

    result = predict.predict_folder(run_copy, images, out)

    assert result.flagged is None
    assert "uncalibrated" in capsys.readouterr().out and "train.calibrate" in result_note(run_copy)
    assert (out / "predictions.csv").read_text().splitlines()[1].endswith(",,,")


def test_predict_scores_a_video_frame_by_frame(run, tmp_path, capsys):
    workdir, _ = run
    video, out = tmp_path / "line.avi", tmp_path / "out"
    write_video(video, np.random.default_rng(1).integers(0, 256, (7, 48, 64, 3), dtype=np.uint8))

    predict.main(
        ["predict", f"--workdir={workdir}", f"--images={video}", f"--out={out}", "--which=latest"]
        + ["--batch_size=4", "--write_video", "--noprogress"]
    )

    # The same frames in one call of the same detector, without streaming or padding.
    expected = Detector.from_workdir(workdir, which="latest")(read_video(video))
    rows = [r.split(",") for r in (out / "predictions.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [f"line.avi#frame={t:06d}" for t in range(7)]
    np.testing.assert_allclose([float(r[1]) for r in rows], expected.score, atol=1e-5)
    assert [r[3] == "True" for r in rows] == expected.is_anomalous.tolist()
    assert all((float(r[2]) > 0.5) == (r[3] == "True") for r in rows)
    assert [int(r[4]) for r in rows] == expected.defect_mask.sum(axis=(1, 2)).tolist()
    assert read_video(out / "overlays" / "line.avi").shape == (7, 48, 64, 3)
    assert "scored 0 image(s) and 7 frame(s) of 1 video(s)" in capsys.readouterr().out


def result_note(workdir):
    return Detector.from_workdir(workdir).calibration.note
