"""Texture bank: every DTD image drawn over refreshes, background reads, bitwise resume."""

import math
import pathlib
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from configs import test as test_config
from sspcab_jax.data import DatasetNotFoundError, dtd_texture_bank
from sspcab_jax.data.images import list_images
from sspcab_jax.data.texture_bank import bank_indices
from sspcab_jax.training import loop
from sspcab_jax.training.checkpoint import Checkpointer
from sspcab_jax.training.data_setup import build_anomaly_sources
from sspcab_jax.training.source_feed import SourceFeed
from sspcab_jax.training.state import create_model, create_train_state

COUNT = 10  # images in the fake DTD


@pytest.fixture(scope="module")
def fake_dtd(tmp_path_factory):
    """DTD's layout, ``images/<category>/<name>.png``; image ``i`` is the constant ``20 * i``."""
    root = tmp_path_factory.mktemp("dtd") / "images"
    for i in range(COUNT):
        path = root / ("banded", "dotted", "woven")[i % 3] / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24 + i, 20, 3), 20 * i, np.uint8)).save(path)
    return root


def _ids(bank_images):
    """Image ids of a loaded bank ``[B, H, W, 3]`` in [0, 1] (constant images)."""
    values = np.round(bank_images.reshape(len(bank_images), -1) * 255 / 20)
    assert (values == values[:, :1]).all()
    return [int(v) for v in values[:, 0]]


def test_bank_indices_walk_every_image_deterministically():
    for count, size in ((10, 4), (10, 10), (7, 3), (5, 8)):
        banks = [bank_indices(count, size, r, seed=3) for r in range(math.ceil(count / size) + 1)]
        assert all(len(b) == size and b.min() >= 0 and b.max() < count for b in banks)
        assert set(np.concatenate(banks)) == set(range(count))
        # Consecutive banks tile one endless stream of permutations: every run of `count`
        # positions starting at a multiple of `count` is a permutation.
        stream = np.concatenate([bank_indices(count, size, r, seed=3) for r in range(count)])
        for e in range(len(stream) // count):
            assert sorted(stream[e * count : (e + 1) * count]) == list(range(count))
        np.testing.assert_array_equal(bank_indices(count, size, 1, 3), banks[1])
    assert not np.array_equal(bank_indices(10, 4, 0, 3), bank_indices(10, 4, 0, 4))
    with pytest.raises(ValueError, match="bank_size"):
        bank_indices(10, 0, 0, 0)


def test_refreshed_banks_hold_different_images_and_all_of_them(fake_dtd):
    bank = dtd_texture_bank(
        size=8, bank_size=4, refresh_every=2, folder=fake_dtd, use_tfds=False, seed=1
    )
    assert bank.count == COUNT and bank.refresh_of(5) == 2
    banks = [bank.load(r) for r in range(4)]
    assert all(b.shape == (4, 8, 8, 3) and b.dtype == np.float32 for b in banks)
    ids = [_ids(b) for b in banks]
    assert all(ids[r] != ids[r + 1] for r in range(3))
    assert set(sum(ids, [])) == set(range(COUNT))  # ceil(10 / 4) + 1 refreshes cover all
    id_of = [int(p.stem) for p in list_images(fake_dtd, recursive=True)]
    assert ids == [[id_of[i] for i in bank.indices(r)] for r in range(4)]


def test_feed_switches_banks_at_refresh_steps_and_after_jumps(fake_dtd):
    bank = dtd_texture_bank(
        size=8, bank_size=4, refresh_every=2, folder=fake_dtd, use_tfds=False, seed=1
    )
    with SourceFeed(np.asarray, bank) as feed:
        first = feed.at(0)
        assert feed.at(1) is first and _ids(first) == _ids(bank.load(0))
        assert _ids(feed.at(2)) == _ids(bank.load(1))  # the bank read in the background
        assert _ids(feed.at(7)) == _ids(bank.load(3))  # a jump (resume) reads it directly
    fixed = np.zeros((2, 8, 8, 3), np.float32)
    with SourceFeed(np.asarray, fixed) as feed:
        assert feed.at(0) is feed.at(500)


def _bank_config(folder, refresh_every=1):
    config = test_config.get_config()
    config.data.anomaly_sources = "dtd"
    config.data.anomaly_source_dir = str(folder)
    config.data.texture_bank_size = 3
    config.data.texture_refresh_every = refresh_every
    config.keep_checkpoints = 3
    return config


def test_config_builds_a_bank_or_stops_without_dtd(fake_dtd, tmp_path):
    bank = build_anomaly_sources(_bank_config(fake_dtd))
    assert bank.count == COUNT and bank.bank_size == 3 and bank.size == (32, 32)
    with pytest.raises(DatasetNotFoundError, match="dtd-r1.0.1"):
        build_anomaly_sources(_bank_config(tmp_path / "missing"))
    auto = _bank_config(tmp_path / "missing")
    auto.data.anomaly_sources = "auto"
    assert build_anomaly_sources(auto) is None  # 'auto' falls back to Perlin, as without a bank


def _final_leaves(workdir):
    config = test_config.get_config()
    target = create_train_state(config, create_model(config), jax.random.key(0))
    with Checkpointer(pathlib.Path(workdir) / "checkpoints", keep_latest=10) as ckpt:
        restored = ckpt.restore(target)
    tree = {"params": restored.state.params, "stats": restored.state.batch_stats}
    return restored.step, jax.tree.leaves(tree)


def test_resume_reloads_the_same_banks_bitwise(fake_dtd, tmp_path):
    full = tmp_path / "full"
    loop.train_and_evaluate(_bank_config(fake_dtd), full)
    # The same run killed after its step-2 checkpoint: resumes with bank 2, then 3.
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoints" / "4")
    (resumed / "metrics.json").unlink()
    loop.train_and_evaluate(_bank_config(fake_dtd), resumed)
    step_a, leaves_a = _final_leaves(full)
    step_b, leaves_b = _final_leaves(resumed)
    assert step_a == step_b == 4
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The refreshes matter: one bank throughout trains to other weights.
    fixed = tmp_path / "one_bank"
    loop.train_and_evaluate(_bank_config(fake_dtd, refresh_every=1000), fixed)
    _, leaves_c = _final_leaves(fixed)
    assert any(not np.array_equal(a, c) for a, c in zip(leaves_a, leaves_c, strict=True))


def test_tfds_dtd_bank_over_all_splits_via_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        bank = dtd_texture_bank(
            size=8, bank_size=5, refresh_every=1, data_dir=tmp_path, split="all", seed=2
        )
        images = bank.load(2)
    assert bank.count == 12 and images.shape == (5, 8, 8, 3)  # 3 splits x 4
    assert 0.0 <= images.min() and images.max() <= 1.0
