import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sspcab_jax.data import images, mvtec


def _write_mvtec(root: Path, category: str = "bottle", gray: bool = False) -> Path:
    """Tiny real-layout tree: 3 train, 2 test/good, 2 test/broken (+masks), 1 test/crack."""
    rng = np.random.default_rng(0)
    shape = (12, 16) if gray else (12, 16, 3)

    def save(rel, array):
        path = root / category / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    for i in range(3):
        save(f"train/good/{i:03d}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    for i in range(2):
        save(f"test/good/{i:03d}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    for defect, count in (("broken", 2), ("crack", 1)):
        for i in range(count):
            save(f"test/{defect}/{i:03d}.png", rng.integers(0, 255, shape, dtype=np.uint8))
            mask = np.zeros((12, 16), np.uint8)
            mask[2 + i : 6 + i, 3:9] = 255
            save(f"ground_truth/{defect}/{i:03d}_mask.png", mask)
    return root


def test_list_mvtec_counts_labels_masks(tmp_path):
    root = _write_mvtec(tmp_path)
    train = mvtec.list_mvtec(root, "bottle", "train")
    test = mvtec.list_mvtec(root, "bottle", "test")
    assert len(train) == 3 and all(r.label == 0 and r.mask_path is None for r in train)
    assert [r.defect_type for r in test] == ["broken", "broken", "crack", "good", "good"]
    assert [r.label for r in test] == [1, 1, 1, 0, 0]
    source = mvtec.mvtec_source(root, "bottle", "test")
    example = source[1]
    assert example["image"].shape == (12, 16, 3) and example["mask"].shape == (12, 16, 1)
    assert example["mask"][3:7, 3:9].min() == 255 and example["mask"].sum() == 255 * 24
    assert source[3]["mask"].max() == 0
    assert example["file_name"] == str(Path("bottle/test/broken/001.png"))


def test_errors(tmp_path, caplog):
    with pytest.raises(images.DatasetNotFoundError, match="mvtec_anomaly_detection.tar.xz"):
        mvtec.list_mvtec(tmp_path / "nowhere", "bottle", "train")
    (tmp_path / "empty" / "bottle" / "train" / "good").mkdir(parents=True)
    with pytest.raises(images.DatasetNotFoundError, match="missing or empty"):
        mvtec.list_mvtec(tmp_path / "empty", "bottle", "train")
    with pytest.raises(ValueError, match="Unknown MVTec AD category 'bottel'"):
        mvtec.list_mvtec(tmp_path, "bottel", "train")

    root = _write_mvtec(tmp_path / "data")
    bad = root / "bottle" / "train" / "good" / "001.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(
        images.CorruptImageError, match=r"001.png.*--config\.data\.skip_corrupt=True"
    ):
        mvtec.list_mvtec(root, "bottle", "train")
    with caplog.at_level(logging.WARNING):
        kept = mvtec.list_mvtec(root, "bottle", "train", skip_corrupt=True)
    assert len(kept) == 2 and "001.png" in caplog.text

    Image.fromarray(np.zeros((5, 5), np.uint8)).save(
        root / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    )
    with pytest.raises(images.MaskMismatchError, match="000_mask.png"):
        mvtec.list_mvtec(root, "bottle", "test")
    (root / "bottle" / "ground_truth" / "crack" / "000_mask.png").unlink()
    with pytest.raises(images.DatasetNotFoundError, match="000_mask.png"):
        mvtec.list_mvtec(root, "bottle", "test")


@pytest.mark.parametrize("category,gray", [("bottle", False), ("grid", True)])
def test_tfds_builder_array_record_roundtrip(tmp_path, category, gray):
    import tensorflow_datasets as tfds

    root = _write_mvtec(tmp_path / "manual", category, gray=gray)
    data_dir = tmp_path / "tfds"
    test = mvtec.mvtec_tfds_source(category, "test", data_dir=data_dir, manual_dir=root)
    train = mvtec.mvtec_tfds_source(category, "train", data_dir=data_dir, manual_dir=root)
    assert len(train) == 3 and len(test) == 5
    assert list((data_dir / "mvtec_ad" / category).glob("*/*.array_record*"))
    reference = {r.file_name: r for r in mvtec.list_mvtec(root, category, "test")}
    for i in range(len(test)):
        example = test[i]
        record = reference[example["file_name"].decode()]
        assert example["image"].shape == (12, 16, 3) and example["image"].dtype == np.uint8
        np.testing.assert_array_equal(example["image"], images.read_image(record.image_path))
        assert example["label"] == record.label
        assert example["defect_type"].decode() == record.defect_type
        expected = (
            np.zeros((12, 16, 1), np.uint8)
            if record.mask_path is None
            else images.read_mask(record.mask_path)
        )
        np.testing.assert_array_equal(example["mask"], expected)
    # Once prepared, the generic TFDS entry point reads it too (builder registered on import).
    again = tfds.data_source(f"mvtec_ad/{category}", split="test", data_dir=str(data_dir))
    assert len(again) == 5


def test_builder_configs_and_instructions():
    from sspcab_jax.data.builders.mvtec_ad import MvtecAd

    assert [c.name for c in MvtecAd.BUILDER_CONFIGS] == list(mvtec.CATEGORIES)
    assert len(mvtec.CATEGORIES) == 15
    assert (
        "<root>/bottle/ground_truth/broken_large/000_mask.png"
        in MvtecAd.MANUAL_DOWNLOAD_INSTRUCTIONS
    )


def test_tfds_missing_manual_dir_names_instructions(tmp_path):
    # TFDS reports a missing manual folder with an AssertionError.
    with pytest.raises(
        AssertionError, match=r"(?s)Manual directory .*none.*mvtec_anomaly_detection.tar.xz"
    ):
        mvtec.mvtec_tfds_source(
            "bottle", "train", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "none"
        )
