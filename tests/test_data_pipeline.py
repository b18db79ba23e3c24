import itertools

import numpy as np
import pytest

from sspcab_jax.data import mvtec, pipeline, synthetic, video_io


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return synthetic.write_synthetic_mvtec(
        tmp_path_factory.mktemp("syn"),
        categories=("brick",),
        image_size=32,
        num_train=10,
        num_test_good=2,
        num_test_per_defect=1,
    )


@pytest.fixture(scope="module")
def train_source(root):
    return mvtec.mvtec_source(root, "brick", "train", categories=None)


def _names(batches):
    return [list(b["file_name"]) for b in batches]


def _train(source, **kwargs):
    args = dict(batch_size=4, image_size=16, seed=0, num_threads=2)
    args.update(kwargs)
    return pipeline.make_train_iterator(source, **args)


def test_train_batches_shapes_and_determinism(train_source):
    batches = list(itertools.islice(_train(train_source), 6))  # 24 examples: crosses epochs
    batch = batches[0]
    assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.float32
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["mask"].shape == (4, 16, 16, 1) and batch["label"].shape == (4,)
    assert batch["label"].dtype == np.int32
    names = sum(_names(batches), [])
    assert sorted(names[:10]) == sorted(r.file_name for r in train_source.records)  # 1 epoch
    assert names[:10] != names[10:20]  # reshuffled per epoch
    again = list(itertools.islice(_train(train_source), 6))
    assert _names(again) == _names(batches)
    np.testing.assert_array_equal(again[5]["image"], batches[5]["image"])
    other = list(itertools.islice(_train(train_source, seed=1), 6))
    assert _names(other) != _names(batches)


def test_iterator_state_resumes_exactly(train_source):
    it = _train(train_source)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(4)]
    resumed = _train(train_source)
    resumed.set_state(state)
    got = [next(resumed) for _ in range(4)]
    assert _names(got) == _names(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_multi_process_split_reassembles_global_batches(train_source):
    global_batches = _names(itertools.islice(_train(train_source), 5))
    per_process = [
        _names(itertools.islice(_train(train_source, process_index=p, process_count=2), 5))
        for p in range(2)
    ]
    for k in range(5):
        assert len(per_process[0][k]) == len(per_process[1][k]) == 2
        assert sorted(per_process[0][k] + per_process[1][k]) == sorted(global_batches[k])
    with pytest.raises(ValueError, match="multiple of the process count"):
        _train(train_source, batch_size=5, process_count=2)


def test_finite_epochs_and_drop_remainder(train_source):
    batches = list(_train(train_source, num_epochs=1))
    assert len(batches) == 2  # 10 examples, batch 4, remainder dropped
    batches = list(_train(train_source, num_epochs=1, drop_remainder=False, shuffle=False))
    assert [len(b["label"]) for b in batches] == [4, 4, 2]


def test_eval_batches_in_order_with_aligned_masks(root):
    source = mvtec.mvtec_source(root, "brick", "test", categories=None)
    batches = list(pipeline.eval_batches(source, batch_size=3, image_size=(16, 16)))
    assert [len(b["label"]) for b in batches] == [3, 3, 1]
    names = sum(_names(batches), [])
    assert names == [r.file_name for r in source.records]
    labels = np.concatenate([b["label"] for b in batches])
    np.testing.assert_array_equal(labels, [r.label for r in source.records])
    masks = np.concatenate([b["mask"] for b in batches])
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert all(masks[i].any() == bool(labels[i]) for i in range(len(labels)))


def test_tfds_and_clip_sources_through_pipeline(root, tmp_path):
    import shutil

    manual = tmp_path / "manual"
    shutil.copytree(root / "brick", manual / "carpet")  # any MVTec name for the builder config
    tfds_source = mvtec.mvtec_tfds_source(
        "carpet", "test", data_dir=tmp_path / "tfds", manual_dir=manual
    )
    (batch,) = list(pipeline.eval_batches(tfds_source, batch_size=8, image_size=16))
    assert batch["image"].shape == (7, 16, 16, 3)
    assert isinstance(batch["file_name"][0], str) and sorted(batch["file_name"])[0].startswith(
        "carpet/test/"
    )

    frames = np.repeat(np.arange(0, 240, 30, dtype=np.uint8)[:, None, None, None], 16, axis=1)
    frames = np.repeat(np.repeat(frames, 16, axis=2), 3, axis=3)  # [8, 16, 16, 3]
    paths = []
    for i, frame in enumerate(frames):
        path = tmp_path / "frames" / f"{i:03d}.png"
        path.parent.mkdir(exist_ok=True)
        from PIL import Image

        Image.fromarray(frame).save(path)
        paths.append(path)
    clips = video_io.ClipSource([video_io.Video("v", frame_paths=paths)], clip_length=3)
    batch = next(_train(clips, batch_size=2, image_size=8, shuffle=False))
    assert batch["image"].shape == (2, 3, 8, 8, 3) and batch["mask"].shape == (2, 8, 8, 1)
    np.testing.assert_allclose(batch["image"][1, :, 0, 0, 0] * 255, [30, 60, 90], atol=1e-3)


def test_worker_processes_give_identical_resumable_batches(train_source):
    reference = _names(itertools.islice(_train(train_source), 4))
    it = _train(train_source, worker_count=2)
    try:
        first = _names(next(it) for _ in range(2))
        state = it.get_state()
        rest = _names(next(it) for _ in range(2))
    finally:
        it.close()
    assert first + rest == reference
    resumed = _train(train_source, worker_count=2)
    try:
        resumed.set_state(state)
        assert _names(next(resumed) for _ in range(2)) == rest
    finally:
        resumed.close()
