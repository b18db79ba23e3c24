import numpy as np
import pytest
import scipy.io
from PIL import Image

from sspcab_jax.data import avenue, images, shanghaitech, video_io

H, W = 32, 48


def _frames(count, offset=0):
    """Flat frames whose brightness encodes their index (robust to lossy codecs)."""
    values = 10 + 20 * (np.arange(count) + offset)
    return np.broadcast_to(values[:, None, None, None], (count, H, W, 3)).astype(np.uint8)


def _frame_index(frames):
    return np.round((frames.reshape(len(frames), -1).mean(axis=1) - 10) / 20).astype(int)


def _save_jpgs(folder, frames):
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:04d}.jpg", quality=95)


def _masks(count, abnormal):
    masks = np.zeros((count, H, W), np.uint8)
    for i in abnormal:
        masks[i, 4:12, 8:20] = 1
    return masks


@pytest.fixture(scope="module")
def avenue_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("avenue")
    base = root / "Avenue Dataset"
    (base / "training_videos").mkdir(parents=True)
    (base / "testing_videos").mkdir(parents=True)
    video_io.write_video(base / "training_videos" / "01.avi", _frames(6))
    video_io.write_video(base / "training_videos" / "02.avi", _frames(5, offset=3))
    video_io.write_video(base / "testing_videos" / "01.avi", _frames(7))
    gt = root / "ground_truth_demo" / "testing_label_mask"
    gt.mkdir(parents=True)
    cells = np.empty((1, 7), dtype=object)
    for i, mask in enumerate(_masks(7, abnormal=(3, 4))):
        cells[0, i] = mask
    scipy.io.savemat(gt / "1_label.mat", {"volLabel": cells})
    return root


def test_avenue_official_layout(avenue_root, tmp_path):
    train = avenue.avenue_videos(avenue_root, "train", cache_dir=tmp_path / "cache")
    assert [v.name for v in train] == ["01", "02"] and [len(v) for v in train] == [6, 5]
    assert list((tmp_path / "cache").glob("*.npy"))
    np.testing.assert_array_equal(_frame_index(train[1].frames(0, 5)), [3, 4, 5, 6, 7])
    (test,) = avenue.avenue_videos(avenue_root, "test", size=(16, 24))
    np.testing.assert_array_equal(test.labels, [0, 0, 0, 1, 1, 0, 0])
    assert test.frames(0, 2).shape == (2, 16, 24, 3)
    mask = test.mask(3, (16, 24))
    assert mask.shape == (16, 24, 1) and mask[2:6, 4:10].min() == 255 and mask.sum() == 255 * 24

    frames = video_io.ClipSource(avenue.avenue_videos(avenue_root, "test"))
    assert len(frames) == 7
    assert frames[4]["label"] == 1 and frames[4]["mask"].max() == 255
    assert frames[5]["mask"].max() == 0 and frames[4]["image"].shape == (H, W, 3)


def test_clips(avenue_root):
    (test,) = avenue.avenue_videos(avenue_root, "test")
    clips = video_io.ClipSource([test], clip_length=3, stride=2)
    assert len(clips) == 3  # starts 0, 2, 4
    clip = clips[1]
    assert clip["image"].shape == (3, H, W, 3)
    np.testing.assert_array_equal(_frame_index(clip["image"]), [2, 3, 4])
    np.testing.assert_array_equal(clip["frame_labels"], [0, 1, 1])
    assert clip["label"] == 1 and clip["frame_index"] == 4 and clip["video"] == "01"
    train = avenue.avenue_videos(avenue_root, "train")
    clips = video_io.ClipSource(train, clip_length=4)
    assert len(clips) == 3 + 2 and clips[4]["video"] == "02" and clips[4]["label"] == 0


def test_avenue_liu_mirror(tmp_path):
    base = tmp_path / "avenue"
    _save_jpgs(base / "training" / "frames" / "01", _frames(4))
    _save_jpgs(base / "testing" / "frames" / "01", _frames(6))
    _save_jpgs(base / "testing" / "frames" / "02", _frames(5))
    gt = np.empty((1, 2), dtype=object)
    gt[0, 0] = np.array([[2], [3]])  # frames 2..3 (1-based, inclusive)
    gt[0, 1] = np.array([[1, 5], [1, 5]])
    scipy.io.savemat(base / "avenue.mat", {"gt": gt})
    (train,) = avenue.avenue_videos(tmp_path, "train")
    assert len(train) == 4 and train.labels is None
    test = avenue.avenue_videos(tmp_path, "test")
    np.testing.assert_array_equal(test[0].labels, [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(test[1].labels, [1, 0, 0, 0, 1])
    np.testing.assert_array_equal(_frame_index(test[0].frames(0, 6)), np.arange(6))


def test_shanghaitech_layout(tmp_path):
    base = tmp_path / "shanghaitech"
    (base / "training" / "videos").mkdir(parents=True)
    video_io.write_video(base / "training" / "videos" / "01_001.avi", _frames(5))
    _save_jpgs(base / "testing" / "frames" / "01_0014", _frames(6))
    (base / "testing" / "test_frame_mask").mkdir(parents=True)
    (base / "testing" / "test_pixel_mask").mkdir(parents=True)
    np.save(base / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 0, 1, 1, 1, 0]))
    np.save(base / "testing" / "test_pixel_mask" / "01_0014.npy", _masks(6, abnormal=(2, 3, 4)))
    (train,) = shanghaitech.shanghaitech_videos(tmp_path, "train")
    assert train.name == "01_001" and len(train) == 5
    (test,) = shanghaitech.shanghaitech_videos(base, "test")
    source = video_io.ClipSource([test])
    assert [int(e["label"]) for e in source] == [0, 0, 1, 1, 1, 0]
    assert [int(e["mask"].max() > 0) for e in source] == [0, 0, 1, 1, 1, 0]


def test_video_errors(tmp_path, avenue_root):
    with pytest.raises(images.DatasetNotFoundError, match="Avenue_Dataset.zip"):
        avenue.avenue_videos(tmp_path / "nothing", "train")
    with pytest.raises(images.DatasetNotFoundError, match="test_frame_mask"):
        shanghaitech.shanghaitech_videos(tmp_path, "test")
    # Label count disagreeing with the frame count is caught at listing time.
    base = tmp_path / "shanghaitech" / "testing"
    _save_jpgs(base / "frames" / "01_0001", _frames(3))
    (base / "test_frame_mask").mkdir(parents=True)
    np.save(base / "test_frame_mask" / "01_0001.npy", np.zeros(4, np.int64))
    with pytest.raises(ValueError, match="4 frame labels for 3 frames"):
        shanghaitech.shanghaitech_videos(tmp_path, "test")
    (base / "test_pixel_mask").mkdir(parents=True)
    np.save(base / "test_pixel_mask" / "01_0001.npy", np.zeros((3, 5, 5), np.uint8))
    np.save(base / "test_frame_mask" / "01_0001.npy", np.zeros(3, np.int64))
    (test,) = shanghaitech.shanghaitech_videos(tmp_path, "test")
    with pytest.raises(images.MaskMismatchError, match="01_0001"):
        video_io.ClipSource([test])[0]
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    with pytest.raises(images.CorruptImageError, match="broken.avi"):
        video_io.read_video(broken)


def test_streamed_chunks_and_chunked_writing_keep_every_frame(tmp_path):
    path = tmp_path / "ten.avi"
    with video_io.VideoWriter(path, fps=10) as writer:
        writer.append(_frames(4))  # a chunk ...
        writer.append(_frames(6, offset=4)[0])  # ... one frame ...
        writer.append(_frames(5, offset=5))  # ... and the rest: indices 0..9
    chunks = list(video_io.iter_video(path, 4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert _frame_index(np.concatenate(chunks)).tolist() == list(range(10))
    np.testing.assert_array_equal(np.concatenate(chunks), video_io.read_video(path))
    assert video_io.video_info(path) == (10.0, 10)
    small = next(video_io.iter_video(path, 3, size=(16, 24)))
    assert small.shape == (3, 16, 24, 3) and small.dtype == np.uint8
    with pytest.raises(ValueError, match="chunk_size"):
        next(video_io.iter_video(path, 0))
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(path.read_bytes()[:200])
    for read in (video_io.video_info, lambda p: next(video_io.iter_video(p, 4))):
        with pytest.raises(images.CorruptImageError, match="cut.avi: Could not load"):
            read(truncated)
