"""Embedded datasets under real faults: SIGKILL mid-write, tampering, two writers at once."""

import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from configs import test as test_config
from sspcab_jax import data
from sspcab_jax.data import synthetic
from sspcab_jax.data.atomic import manifest_path, verify_tree
from sspcab_jax.training.data_setup import build_sources

REPO = pathlib.Path(__file__).resolve().parents[1]
IMAGE = "synthetic-brick"
VIDEO = "synthetic-video"
SMALL_IMAGES = dict(image_size=32, num_train=6, num_test_good=2, num_test_per_defect=2)
SMALL_VIDEOS = dict(num_train=2, num_test=2, num_frames=12, size=32)

# Run in a child process: argv = root, mode, [barrier file].
CHILD = """
import logging, pathlib, sys, time
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from sspcab_jax import data
root, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
if len(sys.argv) > 3:  # start together with the other process
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.005)
if mode == "ensure":
    data.ensure_synthetic_mvtec(root, "brick")
elif mode == "plain":
    data.write_synthetic_mvtec(root, categories=("brick",))
else:
    data.ensure_synthetic_avenue(root, num_train=2, num_test=2, num_frames=12, size=32)
"""


def _child(root, mode, barrier=None):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    args = [sys.executable, "-c", CHILD, str(root), mode] + ([str(barrier)] if barrier else [])
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)


def _kill_when(process, pattern, root, timeout=120.0):
    """SIGKILLs ``process`` as soon as a file matching ``pattern`` exists under ``root``."""
    deadline = time.monotonic() + timeout
    while not any(root.glob(pattern)):
        assert process.poll() is None, f"writer ended before {pattern}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"{pattern} never appeared"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def _files(root, name):
    return json.loads(manifest_path(root, name).read_text())["files"]


def _warnings(caplog):
    return " | ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def _params(**changes):
    """The arguments an image tree is recorded with (small build unless changed)."""
    return {
        "category": "brick",
        "defect_kinds": list(data.DEFECT_KINDS),
        "seed": 0,
        **SMALL_IMAGES,
        "generator_version": synthetic.GENERATOR_VERSION,
        **changes,
    }


FULL_IMAGES = dict(image_size=64, num_train=60, num_test_good=10, num_test_per_defect=10)


@pytest.fixture(scope="module")
def clean_images(tmp_path_factory):
    """A clean default-size build (what the training config writes) and a small one."""
    base = tmp_path_factory.mktemp("clean")
    return (
        data.ensure_synthetic_mvtec(base / "full", "brick"),
        data.ensure_synthetic_mvtec(base / "small", "brick", **SMALL_IMAGES),
    )


@pytest.fixture(scope="module")
def clean_videos(tmp_path_factory):
    return data.ensure_synthetic_avenue(tmp_path_factory.mktemp("videos"), **SMALL_VIDEOS)


def test_clean_build_matches_the_plain_writer_byte_for_byte(clean_images, tmp_path):
    full, _ = clean_images
    plain = data.write_synthetic_mvtec(tmp_path, categories=("brick",))
    listed = sorted(p.relative_to(plain).as_posix() for p in plain.rglob("*") if p.is_file())
    assert sorted(_files(full, IMAGE)) == listed and len(listed) == 170
    for rel in listed:
        assert (full / rel).read_bytes() == (plain / rel).read_bytes(), rel
    assert not list(full.glob(f".{IMAGE}.tmp-*"))


def test_sigkill_mid_write_leaves_nothing_in_place_and_is_rebuilt(clean_images, tmp_path, caplog):
    writer = _child(tmp_path, "ensure")
    _kill_when(writer, f".{IMAGE}.tmp-*/brick/test/*/*.png", tmp_path)
    # The partial tree stayed in its temporary folder; nothing was committed.
    assert list(tmp_path.glob(f".{IMAGE}.tmp-*/brick/train/good/*.png"))
    assert not (tmp_path / "brick").exists() and not manifest_path(tmp_path, IMAGE).exists()
    with caplog.at_level(logging.INFO):
        data.ensure_synthetic_mvtec(tmp_path, "brick")
    assert "left by an interrupted write" in _warnings(caplog)
    assert _files(tmp_path, IMAGE) == _files(clean_images[0], IMAGE)
    assert not list(tmp_path.glob(f".{IMAGE}.tmp-*"))


def test_partial_tree_of_a_killed_plain_writer_is_rebuilt_by_build_sources(
    clean_images, tmp_path, caplog
):
    # The tree an interrupted first run used to leave in place (and then reuse silently).
    writer = _child(tmp_path, "plain")
    _kill_when(writer, "brick/test/scratch/*.png", tmp_path)
    config = test_config.get_config()
    config.data.root = str(tmp_path)
    with caplog.at_level(logging.WARNING):
        _, test = build_sources(config, tmp_path / "run")
    assert "without a manifest" in _warnings(caplog)
    assert len(test) == 60
    assert _files(tmp_path, IMAGE) == _files(clean_images[0], IMAGE)


def test_sigkill_mid_video_write_is_rebuilt(clean_videos, tmp_path, caplog):
    writer = _child(tmp_path, "video")
    _kill_when(writer, f".{VIDEO}.tmp-*/Avenue Dataset/training_videos/*.avi", tmp_path)
    assert not (tmp_path / "Avenue Dataset").exists()
    with caplog.at_level(logging.WARNING):
        data.ensure_synthetic_avenue(tmp_path, **SMALL_VIDEOS)
    assert "left by an interrupted write" in _warnings(caplog)
    # Equal manifests: videos and label files are written byte-identically every time.
    assert _files(tmp_path, VIDEO) == _files(clean_videos, VIDEO)
    assert len(data.avenue_videos(tmp_path, "test")) == 2


def _flip(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 16] = bytes(b ^ 0xFF for b in raw[len(raw) // 2 :][:16])
    path.write_bytes(bytes(raw))


def _append(path):
    with open(path, "ab") as f:
        f.write(b"\0" * 7)


TAMPERS = {
    "deleted file": (
        lambda r: (r / "brick/test/hole/001.png").unlink(),
        "1 missing (brick/test/hole/001.png)",
    ),
    "deleted folder": (
        lambda r: shutil.rmtree(r / "brick/ground_truth/warp"),
        "2 missing (brick/ground_truth/warp/000_mask.png, brick/ground_truth/warp/001_mask.png)",
    ),
    "flipped bytes": (
        lambda r: _flip(r / "brick/train/good/003.png"),
        "1 with changed bytes (brick/train/good/003.png)",
    ),
    "grown file": (
        lambda r: _append(r / "brick/ground_truth/stain/001_mask.png"),
        "1 resized (brick/ground_truth/stain/001_mask.png: ",
    ),
    "stray file": (
        lambda r: (r / "brick/test/good/stray.png").write_bytes(b"x"),
        "1 unexpected (brick/test/good/stray.png)",
    ),
    "stray folder": (
        lambda r: (r / "brick/test/dent").mkdir(),
        "1 unexpected (brick/test/dent)",
    ),
    "manifest deleted": (
        lambda r: manifest_path(r, IMAGE).unlink(),
        "without a manifest",
    ),
    "manifest garbled": (
        lambda r: manifest_path(r, IMAGE).write_text("{"),
        "unreadable manifest",
    ),
}


@pytest.mark.parametrize("tamper", TAMPERS)
def test_tampered_tree_is_rebuilt_naming_the_reason(clean_images, tmp_path, caplog, tamper):
    change, reason = TAMPERS[tamper]
    root = tmp_path / "data"
    shutil.copytree(clean_images[1], root)
    assert verify_tree(root, IMAGE, ("brick",), _params()) is None
    change(root)
    with caplog.at_level(logging.WARNING):
        data.ensure_synthetic_mvtec(root, "brick", **SMALL_IMAGES)
    assert reason in _warnings(caplog) and "rebuilding" in _warnings(caplog)
    assert _files(root, IMAGE) == _files(clean_images[1], IMAGE)
    assert sorted(p.name for p in (root / "brick/test").iterdir()) == sorted(
        ["good", *data.DEFECT_KINDS]
    )


def test_tree_written_with_another_seed_is_rebuilt(clean_images, tmp_path, caplog):
    root = tmp_path / "data"
    shutil.copytree(clean_images[1], root)
    with caplog.at_level(logging.WARNING):
        data.ensure_synthetic_mvtec(root, "brick", **{**SMALL_IMAGES, "seed": 1})
    assert "written with other arguments (seed=0, now 1)" in _warnings(caplog)
    rebuilt, clean = _files(root, IMAGE), _files(clean_images[1], IMAGE)
    assert rebuilt.keys() == clean.keys() and rebuilt != clean


def test_tree_of_another_generator_version_is_rebuilt(clean_images, tmp_path, caplog, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(clean_images[1], root)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    with caplog.at_level(logging.WARNING):
        data.ensure_synthetic_mvtec(root, "brick", **SMALL_IMAGES)
    now = synthetic.GENERATOR_VERSION
    assert f"written with other arguments (generator_version={now - 1}, now {now})" in _warnings(
        caplog
    )
    assert json.loads(manifest_path(root, IMAGE).read_text())["params"]["generator_version"] == now


def test_tampered_video_tree_is_rebuilt(clean_videos, tmp_path, caplog):
    root = tmp_path / "data"
    shutil.copytree(clean_videos, root)
    _flip(root / "Avenue Dataset/testing_videos/02.avi")
    (root / "ground_truth_demo/testing_label_mask/1_label.mat").unlink()
    with caplog.at_level(logging.WARNING):
        data.ensure_synthetic_avenue(root, **SMALL_VIDEOS)
    warned = _warnings(caplog)
    assert "1 missing (ground_truth_demo/testing_label_mask/1_label.mat)" in warned
    assert "1 with changed bytes (Avenue Dataset/testing_videos/02.avi)" in warned
    assert _files(root, VIDEO) == _files(clean_videos, VIDEO)


def test_two_concurrent_writers_write_once_and_both_succeed(clean_images, tmp_path):
    root, barrier = tmp_path / "data", tmp_path / "go"
    writers = [_child(root, "ensure", barrier) for _ in range(2)]
    time.sleep(1.0)  # let both import, then release them together
    barrier.touch()
    logs = [w.communicate(timeout=300)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], logs
    wrote = [log for log in logs if "INFO writing the embedded dataset" in log]
    assert len(wrote) == 1, logs
    # The other one found the lock taken, waited, then verified the first one's tree.
    assert sum("written by another process meanwhile" in log for log in logs) == 1, logs
    assert "WARNING" not in "".join(logs)
    assert _files(root, IMAGE) == _files(clean_images[0], IMAGE)
    assert verify_tree(root, IMAGE, ("brick",), _params(**FULL_IMAGES)) is None
    assert not list(root.glob(f".{IMAGE}.tmp-*"))


def test_reusing_a_complete_tree_rewrites_nothing(clean_images, tmp_path, caplog):
    root = tmp_path / "data"
    shutil.copytree(clean_images[0], root)
    (root / f".{IMAGE}.lock").unlink()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    with caplog.at_level(logging.INFO):
        data.ensure_synthetic_mvtec(root, "brick")
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    assert "verified in" in caplog.text and not _warnings(caplog)
    assert not (root / f".{IMAGE}.lock").exists()  # a complete tree needs no write access
