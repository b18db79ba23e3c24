"""The embedded video set and the video datasets wired into the training config."""

import numpy as np
import pytest
from PIL import Image

from configs import autoencoder_avenue, autoencoder_demo, autoencoder_shanghaitech
from sspcab_jax import data
from sspcab_jax.data import avenue, video_io
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.tasks import validate_config

SIZE = 32


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_video")
    return data.write_synthetic_avenue(root, num_train=2, num_test=3, num_frames=16, size=SIZE)


def test_synthetic_video_is_a_real_avenue_tree(synthetic_root):
    assert sorted(p.name for p in (synthetic_root / "Avenue Dataset" / "testing_videos").iterdir())
    assert (synthetic_root / "ground_truth_demo" / "testing_label_mask" / "3_label.mat").is_file()
    train = avenue.avenue_videos(synthetic_root, "train")
    test = avenue.avenue_videos(synthetic_root, "test")
    assert [v.name for v in train] == ["01", "02"] and [len(v) for v in train] == [16, 16]
    assert [v.name for v in test] == ["01", "02", "03"]
    for video in test:
        # Every test video has both classes, and labels are exactly any(mask).
        assert 0 < video.labels.sum() < len(video)
        masks = np.stack([video.mask(t, (SIZE, SIZE))[..., 0] for t in range(len(video))])
        np.testing.assert_array_equal(masks.reshape(len(video), -1).any(axis=1), video.labels)
    frames = train[0].frames(0, 16)
    assert frames.shape == (16, SIZE, SIZE, 3) and frames.std() > 5  # not blank


def test_synthetic_video_is_deterministic_and_anomalies_differ(tmp_path):
    rng = np.random.default_rng(3)
    a, mask_a = data.synthetic_video.render_video(
        rng, num_frames=12, size=SIZE, anomaly="speed", anomaly_start=2
    )
    b, mask_b = data.synthetic_video.render_video(
        np.random.default_rng(3), num_frames=12, size=SIZE, anomaly="speed", anomaly_start=2
    )
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(mask_a, mask_b)
    assert not mask_a[:2].any() and mask_a[2:].any()
    with pytest.raises(ValueError, match="multiple of 16"):
        data.write_synthetic_avenue(tmp_path, size=40)
    with pytest.raises(ValueError, match="anomaly kind"):
        data.synthetic_video.render_video(rng, num_frames=8, size=SIZE, anomaly="dance")


def _video_config(module, dataset, root, tmp_path, variant="late"):
    config = module.get_config(variant)
    config.data.dataset = dataset
    config.data.root = str(root)
    config.data.image_size = 16
    config.data.cache_dir = str(tmp_path / "cache")
    validate_config(config)
    return config


def test_avenue_config_builds_frame_sources(synthetic_root, tmp_path):
    config = _video_config(autoencoder_avenue, "avenue", synthetic_root, tmp_path)
    train, test = build_sources(config, tmp_path)
    assert isinstance(train, data.ClipSource) and len(train) == 32 and len(test) == 48
    example = test[5]
    assert example["image"].shape == (16, 16, 3) and example["mask"].shape == (16, 16, 1)
    assert example["video"] == "01" and example["frame_index"] == 5
    config.data.frame_stride = 4
    train, _ = build_sources(config, tmp_path)
    assert len(train) == 8


def test_clip_variant_builds_clip_sources(synthetic_root, tmp_path):
    config = _video_config(autoencoder_avenue, "avenue", synthetic_root, tmp_path, "late_3d")
    train, test = build_sources(config, tmp_path)
    t = config.data.clip_length
    assert train[0]["image"].shape == (t, 16, 16, 3)
    assert len(test) == 3 * (16 - t + 1)


def test_missing_avenue_root_says_how_to_get_it(tmp_path):
    config = autoencoder_avenue.get_config("none")
    with pytest.raises(data.DatasetNotFoundError, match="--config.data.root"):
        build_sources(config, tmp_path)
    config.data.root = str(tmp_path / "nowhere")
    with pytest.raises(data.DatasetNotFoundError, match="Avenue_Dataset.zip"):
        build_sources(config, tmp_path)


@pytest.fixture(scope="module")
def shanghaitech_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sht")
    base = root / "shanghaitech"
    (base / "training" / "videos").mkdir(parents=True)
    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    video_io.write_video(base / "training" / "videos" / "01_001.avi", np.zeros((6, 32, 48, 3)))
    test = base / "testing"
    (test / "frames" / "01_0014").mkdir(parents=True)
    for i, frame in enumerate(frames[:5]):
        Image.fromarray(frame).save(test / "frames" / "01_0014" / f"{i:03d}.jpg")
    (test / "test_frame_mask").mkdir()
    (test / "test_pixel_mask").mkdir()
    masks = np.zeros((5, 32, 48), np.uint8)
    masks[2:4, 8:20, 10:30] = 1
    np.save(test / "test_frame_mask" / "01_0014.npy", masks.reshape(5, -1).any(1).astype(int))
    np.save(test / "test_pixel_mask" / "01_0014.npy", masks)
    return root


def test_shanghaitech_config_builds_sources(shanghaitech_root, tmp_path):
    config = _video_config(
        autoencoder_shanghaitech, "shanghaitech", shanghaitech_root, tmp_path, "none"
    )
    train, test = build_sources(config, tmp_path)
    assert len(train) == 6 and len(test) == 5
    assert test[2]["label"] == 1 and test[2]["mask"].any() and not test[0]["mask"].any()
    assert test[2]["image"].shape == (16, 16, 3)


def test_demo_config_writes_the_embedded_set(tmp_path):
    config = autoencoder_demo.get_config("none")
    config.data.synthetic_video.update(num_train=1, num_test=1, num_frames=8, size=32)
    config.data.image_size = 16
    train, test = build_sources(config, tmp_path)
    assert (tmp_path / "data" / "Avenue Dataset" / "training_videos" / "01.avi").is_file()
    assert len(train) == 8 and test[0]["image"].shape == (16, 16, 3)


@pytest.mark.parametrize(
    "field,value",
    [
        ("data.clip_length", 4),  # single-frame variant
        ("video_eval.pad_each_video", True),  # without normalise
        ("video_eval.frame_score", "median"),
        ("model", "draem"),
    ],
)
def test_bad_video_config_names_the_field(field, value):
    config = autoencoder_demo.get_config("late")
    parent, _, leaf = field.rpartition(".")
    (config[parent] if parent else config)[leaf] = value
    with pytest.raises(ValueError, match=f"config.{field}="):
        validate_config(config)


def test_variant_names():
    config = autoencoder_demo.get_config("early+middle+late")
    assert config.autoencoder.sspcab_positions == ("early", "middle", "late")
    config = autoencoder_demo.get_config("late_m3")
    assert config.autoencoder.masked_centre == 3 and config.autoencoder.spatial_dims == 2
    config = autoencoder_demo.get_config("late_3d")
    assert config.autoencoder.spatial_dims == 3 and config.data.clip_length > 1
    for bad in ("late+early", "top", "late+late", ""):
        with pytest.raises(ValueError, match="Unknown variant"):
            autoencoder_demo.get_config(bad)
