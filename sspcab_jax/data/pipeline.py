"""grain pipelines: random-access sources -> NumPy batches, NHWC, float32 in [0, 1].

Any random-access source works (``len`` + ``__getitem__`` returning dicts with an ``image``
``uint8 [..., H, W, 3]``, optional ``mask`` ``uint8 [..., H, W, 1]``, ``label`` and any extra
keys): :class:`~sspcab_jax.data.images.RecordSource`, the TFDS MVTec data source,
:class:`~sspcab_jax.data.video_io.ClipSource`. Batches are dicts::

    image  float32 [B, H, W, 3] in [0, 1]   ([B, T, H, W, 3] for clips)
    mask   float32 [B, H, W, 1] in {0, 1}
    label  int32   [B]
    ...    other keys stacked; bytes become str

Determinism and multi-host: the whole dataset is shuffled with ``seed`` (reshuffled every
epoch), repeated, then process ``p`` of ``P`` keeps positions ``p, p + P, p + 2P, ...``. So the
union over processes of their k-th local batches (``batch_size / P`` each) is exactly the k-th
global batch of a single-process run, and a restored iterator state reproduces the following
batches exactly::

    it = make_train_iterator(source, batch_size=32, image_size=64, seed=0)
    batch = next(it)
    state = it.get_state()          # a small dict; save it with the model checkpoint
    ...
    it = make_train_iterator(source, batch_size=32, image_size=64, seed=0)
    it.set_state(state)             # the next batch is the one after ``batch``
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import grain
import numpy as np

from sspcab_jax.data.images import (
    MASK_RULES,
    RESIZE_METHODS,
    Size,
    as_hw,
    check_choice,
    resize_image,
    resize_mask,
)


def local_batch_size(batch_size: int, process_count: int) -> int:
    """Per-process share of a global batch; raises ValueError unless it divides evenly."""
    if batch_size < 1 or process_count < 1 or batch_size % process_count:
        raise ValueError(
            f"Global batch size {batch_size} must be a positive multiple of the process count "
            f"{process_count}."
        )
    return batch_size // process_count


def _resize_frames(image: np.ndarray, size, fn) -> np.ndarray:
    if image.ndim == 3:
        return fn(image, size)
    return np.stack([fn(frame, size) for frame in image])


def prepare_example(
    example: dict,
    *,
    image_size: Size | None,
    resize: str = "pil",
    mask_rule: str = "nearest",
) -> dict:
    """Resizes and normalises one example (see module docstring for the output keys).

    Args:
      example: ``image`` ``uint8 [H, W, 3]`` or ``[T, H, W, 3]``; optional ``mask``
        ``uint8 [H, W, 1]`` (any value > 0 is anomalous) and ``label``.
      image_size: output ``(height, width)`` or int; None keeps the size.
      resize: image resize method, ``'pil'`` or ``'cv2'`` (see :func:`resize_image`).
      mask_rule: ``'nearest'`` or ``'official'`` (see :func:`resize_mask`).

    Returns:
      ``image`` float32 in [0, 1], ``mask`` float32 ``[H, W, 1]`` in {0, 1}, ``label`` int32,
      other keys unchanged except bytes decoded to str.
    """
    out = {}
    image = np.asarray(example["image"], np.uint8)
    if image.shape[-1] == 1:  # grayscale sources
        image = np.repeat(image, 3, axis=-1)
    size = None if image_size is None else as_hw(image_size)
    if size is not None:
        image = _resize_frames(image, size, functools.partial(resize_image, method=resize))
    out["image"] = image.astype(np.float32) / 255.0
    if "mask" in example:
        mask = np.asarray(example["mask"], np.uint8)
        if mask.ndim == 2:
            mask = mask[..., None]
        if size is not None:
            # Binarised first, as the readers do, so that both rules see {0, 255}.
            mask = np.where(mask > 0, 255, 0).astype(np.uint8)
            mask = _resize_frames(mask, size, functools.partial(resize_mask, rule=mask_rule))
        out["mask"] = (mask > 0).astype(np.float32)
    else:
        out["mask"] = np.zeros(image.shape[-3:-1] + (1,), np.float32)
    out["label"] = np.int32(example.get("label", 0))
    for key, value in example.items():
        if key in out:
            continue
        out[key] = value.decode("utf-8") if isinstance(value, bytes) else value
    return out


def _preparer(image_size: Size | None, resize: str, mask_rule: str):
    # Checked here so that a bad config value fails when the pipeline is built, not in a worker.
    check_choice("data.resize", resize, RESIZE_METHODS)
    check_choice("data.mask_rule", mask_rule, MASK_RULES)
    return functools.partial(
        prepare_example, image_size=image_size, resize=resize, mask_rule=mask_rule
    )


def _read_options(num_threads: int) -> grain.ReadOptions:
    # Elements are whole batches: a small prefetch buffer bounds memory.
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads)


def _maybe_workers(ds: grain.IterDataset, worker_count: int) -> grain.IterDataset:
    if worker_count <= 0:
        return ds
    from absl import flags

    # grain's worker processes read absl flags; outside an absl app they are not parsed yet.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))


def train_dataset(
    source: Sequence,
    *,
    batch_size: int,
    image_size: Size | None,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    num_epochs: int | None = None,
    shuffle: bool = True,
    drop_remainder: bool = True,
    num_threads: int = 4,
    worker_count: int = 0,
    resize: str = "pil",
    mask_rule: str = "nearest",
) -> grain.IterDataset:
    """Training pipeline: shuffled, repeated, sharded per process, batched.

    Args:
      source: random-access source of examples.
      batch_size: global batch size ``B``; each process yields ``B / process_count`` examples.
      image_size: output ``(height, width)`` or int; None keeps the source size.
      seed: shuffle seed (same on every process).
      process_index: this process, usually ``jax.process_index()``.
      process_count: number of processes, usually ``jax.process_count()``.
      num_epochs: passes over the data; None repeats forever.
      shuffle: shuffle (per epoch) or keep the source order.
      drop_remainder: drop a final incomplete batch (only matters for finite ``num_epochs``).
      num_threads: reader threads, each preparing whole batches; order never depends on it.
      worker_count: grain worker processes (0: in-process); batches are identical either way.
      resize: image resize method, ``'pil'`` or ``'cv2'`` (config ``data.resize``).
      mask_rule: mask resize rule, ``'nearest'`` or ``'official'`` (config ``data.mask_rule``).

    Returns:
      A ``grain.IterDataset`` of batches ``{'image': [B/P, H, W, 3], 'mask': [B/P, H, W, 1],
      'label': [B/P], ...}``; ``iter()`` gives a checkpointable ``grain.DatasetIterator``.
    """
    local = local_batch_size(batch_size, process_count)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    if len(source) == 0:
        raise ValueError("The training source is empty.")
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds[process_index::process_count]
    ds = ds.map(_preparer(image_size, resize, mask_rule))
    # Batching the MapDataset (not the IterDataset) makes batch k a fixed set of positions, so
    # grain workers, which each take every n-th element, reproduce the in-process batches.
    ds = ds.batch(local, drop_remainder=drop_remainder)
    return _maybe_workers(ds.to_iter_dataset(_read_options(num_threads)), worker_count)


def make_train_iterator(source: Sequence, **kwargs) -> grain.DatasetIterator:
    """``iter(train_dataset(source, **kwargs))``: has ``get_state()`` / ``set_state(state)``."""
    return iter(train_dataset(source, **kwargs))


def eval_dataset(
    source: Sequence,
    *,
    batch_size: int,
    image_size: Size | None,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 4,
    resize: str = "pil",
    mask_rule: str = "nearest",
) -> grain.IterDataset:
    """Evaluation pipeline: one pass, source order, last batch possibly smaller.

    (Named ``eval_*`` rather than ``test_*`` so that pytest never collects it.)

    With several processes, process ``p`` gets source positions ``p, p + P, ...`` in batches of
    ``batch_size / P``; gather results across processes (or evaluate on one) for metrics.

    ``resize`` and ``mask_rule`` are as in :func:`train_dataset`.

    Returns:
      A finite ``grain.IterDataset`` of batches as in :func:`train_dataset`.
    """
    local = local_batch_size(batch_size, process_count)
    ds = grain.MapDataset.source(source)[process_index::process_count]
    ds = ds.map(_preparer(image_size, resize, mask_rule))
    return ds.batch(local, drop_remainder=False).to_iter_dataset(_read_options(num_threads))


def eval_batches(
    source: Sequence,
    *,
    batch_size: int,
    image_size: Size | None,
    resize: str = "pil",
    mask_rule: str = "nearest",
) -> Iterator[dict]:
    """Iterates the single-process evaluation batches of ``source`` in order."""
    yield from eval_dataset(
        source, batch_size=batch_size, image_size=image_size, resize=resize, mask_rule=mask_rule
    )
