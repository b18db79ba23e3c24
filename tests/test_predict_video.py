"""train.predict on video files and mixed folders, with detectors built from a brightness rule.

The detector's map is the frame's brightness and its score the brightest pixel, so a frame is
anomalous exactly when it shows the bright square written into it: the expected verdicts are
known without running the detector.
"""

import io
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from sspcab_jax.data import read_video, write_video
from sspcab_jax.detector import Calibration, Detector
from train import predict
from train.predict_inputs import gather

SIZE = 64
DEFECT_FRAMES = (2, 3, 7)
SQUARE = 16  # side of the bright square; the mask should cover about SQUARE**2 pixels


def _frames(count=10, defects=DEFECT_FRAMES):
    """``uint8 [count, 64, 64, 3]`` dim frames; ``defects`` show a white square."""
    frames = np.full((count, SIZE, SIZE, 3), 40, np.uint8)
    frames[..., 1] = 60  # not grey: a grayscale detector has to convert
    for t in defects:
        top = 8 + 4 * (t % 5)
        frames[t, top : top + SQUARE, 24 : 24 + SQUARE] = 255
    return frames


def _brightness_detector(channels=3, batch_size=4, traces=None, calibrated=True):
    """Map: mean over channels (luma for a grayscale model); score: its maximum."""

    def model_fn(images):
        if traces is not None:
            traces.append(images.shape)  # runs once per compilation
        amap = jnp.mean(images, axis=-1)
        return amap, jnp.max(amap, axis=(1, 2))

    calibration = (
        Calibration(0.5, 0.5, 0.1, 0.3, 0.1, 0.3, "false_alarm_rate", "false_alarm_rate")
        if calibrated
        else Calibration.unavailable("built from parts")
    )
    return Detector(model_fn, 32, calibration, channels=channels, batch_size=batch_size)


def _rows(out):
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "file,score,normalized_score,is_anomalous,defect_pixels"
    return [line.split(",") for line in lines[1:]]


@pytest.mark.parametrize("channels", [3, 1])
def test_one_row_per_frame_and_the_defect_frames_flagged(tmp_path, channels):
    write_video(tmp_path / "clip.avi", _frames())
    traces = []
    detector = _brightness_detector(channels, batch_size=4, traces=traces)

    result = predict.predict_inputs(detector, gather(tmp_path / "clip.avi"), tmp_path / "out")

    rows = _rows(tmp_path / "out")
    assert [r[0] for r in rows] == [f"clip.avi#frame={t:06d}" for t in range(10)]
    flagged = [t for t, r in enumerate(rows) if r[3] == "True"]
    assert flagged == list(DEFECT_FRAMES)
    for name, score, normalized, verdict, pixels in rows:
        assert (float(normalized) > 0.5) == (verdict == "True") == (float(score) > 0.5)
        assert result.flagged[name] == (verdict == "True")
        # The mask is the square (up to codec and resizing blur at its edges), else empty.
        expected = SQUARE**2 if verdict == "True" else 0
        assert abs(int(pixels) - expected) <= 2 * SQUARE, (name, pixels)
    # 10 frames in batches of 4: the last 2 are padded to 4, so one compilation only.
    assert traces == [(4, 32, 32, channels)]
    assert result.skipped == []


def test_annotated_video_has_every_frame_and_the_verdict_strip(tmp_path):
    write_video(tmp_path / "clip.avi", _frames())
    out = tmp_path / "out"

    predict.predict_inputs(
        _brightness_detector(channels=1), gather(tmp_path), out, write_video=True
    )

    annotated = read_video(out / "overlays" / "clip.avi")
    assert annotated.shape == (10, SIZE, SIZE, 3)
    strip = annotated[:, 1:5, 40:].astype(int).mean(axis=(1, 2))  # right of the text
    red_strip = (strip[:, 0] > strip[:, 1] + 80) & (strip[:, 0] > 150)
    green_strip = (strip[:, 1] > strip[:, 0] + 60) & (strip[:, 1] > 100)
    assert np.flatnonzero(red_strip).tolist() == list(DEFECT_FRAMES)
    assert np.flatnonzero(green_strip).tolist() == [t for t in range(10) if t not in DEFECT_FRAMES]
    # The defect mask is outlined in white around the square of frame 2 (rows 16..31).
    column = annotated[2, :, 24 + SQUARE // 2].astype(int)
    white = np.flatnonzero(column.min(axis=-1) > 200)
    assert white.min() == pytest.approx(16, abs=2) and white.max() == pytest.approx(31, abs=2)


def test_uncalibrated_annotation_is_grey_on_every_frame(tmp_path):
    write_video(tmp_path / "clip.avi", _frames())
    out = tmp_path / "out"

    result = predict.predict_inputs(
        _brightness_detector(calibrated=False), gather(tmp_path), out, write_video=True
    )

    assert result.flagged is None and len(result.scores) == 10
    strip = read_video(out / "overlays" / "clip.avi")[:, 1:5, 40:].astype(int).mean(axis=(1, 2))
    # Grey strip and white text: no colour, as there is no verdict.
    assert (np.ptp(strip, axis=1) < 10).all() and (strip.mean(axis=1) > 80).all()


def _corrupt_folder(folder):
    """Two good inputs and three broken ones, all real files."""
    folder.mkdir()
    Image.fromarray(_frames(1, defects=(0,))[0]).save(folder / "good.png")
    Image.fromarray(_frames(1, defects=(0,))[0]).save(folder / "cut.png")
    data = (folder / "cut.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])  # truncated PNG
    write_video(folder / "clip.avi", _frames())
    write_video(folder / "cut.avi", _frames())
    data = (folder / "cut.avi").read_bytes()
    (folder / "cut.avi").write_bytes(data[: len(data) // 2])  # truncated video
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4096))


def test_unreadable_files_are_listed_and_the_rest_is_scored(tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    _corrupt_folder(folder)

    result = predict.predict_inputs(_brightness_detector(), gather(folder), out)

    assert [name for name, _ in result.skipped] == ["cut.avi", "cut.png", "noise.mp4"]
    assert "Cannot decode video" in dict(result.skipped)["cut.avi"]
    names = [r[0] for r in _rows(out)]
    assert names == [f"clip.avi#frame={t:06d}" for t in range(10)] + ["good.png"]
    assert result.flagged["good.png"]
    listed = (out / "skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == ["cut.avi", "cut.png", "noise.mp4"]
    printed = capsys.readouterr().out
    assert "scored 1 image(s) and 10 frame(s) of 1 video(s)" in printed and "(3 skipped)" in printed
    for name in ("cut.avi", "cut.png", "noise.mp4"):
        assert f"  {name}: " in printed


def test_a_video_failing_part_way_keeps_its_first_frames(tmp_path, monkeypatch):
    from sspcab_jax.data import CorruptImageError
    from train import predict_video

    write_video(tmp_path / "clip.avi", _frames())
    real = predict_video.iter_video

    def fails_after_one_chunk(path, chunk_size, **kwargs):
        yield next(real(path, chunk_size, **kwargs))
        raise CorruptImageError(f"Cannot decode video {path}: broken stream")

    monkeypatch.setattr(predict_video, "iter_video", fails_after_one_chunk)
    result = predict.predict_inputs(_brightness_detector(), gather(tmp_path), tmp_path / "out")

    assert len(_rows(tmp_path / "out")) == 4
    ((name, why),) = result.skipped
    assert name == "clip.avi" and "broken stream" in why and "after 4 frame(s)" in why


def test_glob_and_single_image(tmp_path):
    folder = tmp_path / "in"
    _corrupt_folder(folder)
    detector = _brightness_detector(calibrated=False)

    by_glob = predict.predict_inputs(detector, gather(str(folder / "g*.png")), tmp_path / "a")
    single = predict.predict_inputs(detector, gather(folder / "good.png"), tmp_path / "b")

    assert list(by_glob.scores) == list(single.scores) == ["good.png"]
    assert by_glob.flagged is None and _rows(tmp_path / "a")[0][2:] == ["", "", ""]
    with pytest.raises(predict.cli.CommandError, match="matches no file"):
        gather(str(folder / "*.jpg"))


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bar_only_on_a_terminal_and_when_asked(tmp_path, monkeypatch, progress):
    write_video(tmp_path / "clip.avi", _frames())
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    predict.predict_inputs(
        _brightness_detector(), gather(tmp_path), tmp_path / "a", progress=progress
    )
    assert ("10/10" in terminal.getvalue()) == progress
    # Not a terminal: quiet even when asked.
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    predict.predict_inputs(_brightness_detector(), gather(tmp_path), tmp_path / "b")
    assert sys.stderr.getvalue() == ""


def test_command_flags_reach_the_detector_and_the_video(tmp_path, monkeypatch):
    write_video(tmp_path / "clip.avi", _frames())
    asked = {}

    def from_workdir(workdir, **kwargs):
        asked.update(kwargs, workdir=workdir)
        detector = _brightness_detector(batch_size=kwargs["batch_size"])
        detector.step = 0
        return detector

    monkeypatch.setattr(Detector, "from_workdir", staticmethod(from_workdir))
    out = tmp_path / "out"
    result = predict.main(
        ["predict", "--workdir=run", f"--images={tmp_path / 'clip.avi'}", f"--out={out}"]
        + ["--batch_size=3", "--write_video", "--noprogress", "--which=latest"]
    )

    assert asked == dict(
        workdir="run", which="latest", tile_size=None, tile_overlap=0, batch_size=3
    )
    assert len(result.scores) == 10 and read_video(out / "overlays" / "clip.avi").shape[0] == 10
    with pytest.raises(predict.cli.CommandError, match="--batch_size must be >= 1"):
        predict.main(
            ["predict", "--workdir=run", f"--images={tmp_path}", f"--out={out}"]
            + ["--batch_size=0"]
        )
