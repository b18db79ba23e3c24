import numpy as np
import pytest
from PIL import Image

from sspcab_jax.data import folder, images


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_train_and_test_with_both_mask_conventions(tmp_path):
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 255, (10, 14, 3), dtype=np.uint8)  # noqa: E731
    mask = np.zeros((10, 14), np.uint8)
    mask[2:5, 3:7] = 255
    _save(tmp_path / "train" / "a.png", img())
    _save(tmp_path / "train" / "sub" / "b.jpg", img())
    _save(tmp_path / "test" / "good" / "g.png", img())
    _save(tmp_path / "test" / "scratch" / "s1.png", img())
    _save(tmp_path / "masks" / "scratch" / "s1_mask.png", mask)  # parallel folder
    _save(tmp_path / "test" / "dent" / "d1.png", img())
    _save(tmp_path / "test" / "dent" / "d1_mask.png", mask)  # suffix, same folder
    _save(tmp_path / "test" / "dent" / "d2.png", img())  # no mask at all

    train = folder.folder_source(tmp_path / "train", "train")
    assert len(train) == 2 and {e["label"] for e in train} == {0}
    test = folder.folder_source(tmp_path / "test", "test", mask_dir=tmp_path / "masks")
    by_name = {e["file_name"]: e for e in test}
    assert sorted(by_name) == sorted(["good/g.png", "scratch/s1.png", "dent/d1.png", "dent/d2.png"])
    assert by_name["good/g.png"]["label"] == 0
    for name in ("scratch/s1.png", "dent/d1.png"):
        assert by_name[name]["label"] == 1
        np.testing.assert_array_equal(by_name[name]["mask"][..., 0], mask)
    assert by_name["dent/d2.png"]["label"] == 1 and by_name["dent/d2.png"]["mask"].max() == 0


def test_folder_errors(tmp_path):
    with pytest.raises(images.DatasetNotFoundError, match="No images found"):
        folder.folder_source(tmp_path / "nothing", "train")
    (tmp_path / "test" / "good").mkdir(parents=True)
    with pytest.raises(images.DatasetNotFoundError, match="good"):
        folder.folder_source(tmp_path / "test", "test")
    _save(tmp_path / "test" / "bad" / "x.png", np.zeros((8, 8, 3), np.uint8))
    _save(tmp_path / "test" / "bad" / "x_mask.png", np.zeros((4, 8), np.uint8))
    with pytest.raises(images.MaskMismatchError, match="x_mask.png"):
        folder.folder_source(tmp_path / "test", "test")
    with pytest.raises(ValueError, match="Unknown split"):
        folder.folder_source(tmp_path / "test", "val")


@pytest.mark.parametrize(
    "dataset,test_dir,label",
    [
        ("folder", "/data/moon/test", "moon"),
        ("folder", "/data/parts_2024", "parts_2024"),
        ("folder", "/data/parts/test/", "parts"),
        ("folder", "", "folder"),
        ("synthetic", "", "grass"),
    ],
)
def test_results_row_is_named_after_the_users_folder(dataset, test_dir, label):
    # A folder run printed the embedded default category ('brick') as its row name.
    from configs import test as test_config
    from sspcab_jax.training.evaluation import results_label

    config = test_config.get_config()
    config.data.dataset, config.data.test_dir, config.data.category = dataset, test_dir, "grass"
    assert results_label(config) == label
