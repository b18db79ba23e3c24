"""The embedded video dataset: a tiny street scene written offline in the real Avenue layout.

A fixed camera looks at a gravel square (the grayscale ``gravel`` photograph that scikit-image
ships, dimmed). Pedestrians -- a body and a head, striped clothing -- walk left or right along
three lanes at 0.6 to 1.2 pixels per frame (at 64 x 64), with a small gait bob. Every frame is
rendered with a one-frame shutter, so motion blur grows with speed, as in a real camera: a
single frame then carries some evidence of speed and direction.

Test videos add one anomalous event each, cycling through three kinds that mirror Avenue's
(Avenue's own: running, wrong direction, thrown objects):

* ``appearance``: a checkered box (an object never seen in training) crossing at walking speed;
* ``speed``: a pedestrian running at 3.5 to 4.5 pixels per frame (strongly blurred);
* ``direction``: a pedestrian walking up or down the frame, across the lanes.

The event's exact pixel mask (blurred footprint >= 0.25) is stored per frame; frame label =
any(mask). The tree is the official Avenue layout, so :func:`~sspcab_jax.data.avenue_videos`
reads it like the real dataset::

    <root>/Avenue Dataset/training_videos/01.avi ..
    <root>/Avenue Dataset/testing_videos/01.avi ..
    <root>/ground_truth_demo/testing_label_mask/1_label.mat ..   (``volLabel``, 1 x T cell)

Videos are H.264 in ``.avi`` (lossy, as the real ones): pixel values differ slightly from the
rendering; masks are exact.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import scipy.io
from skimage import data as skdata

from sspcab_jax.data.atomic import ensure_tree
from sspcab_jax.data.video_io import write_video

ANOMALY_KINDS: tuple[str, ...] = ("appearance", "speed", "direction")

_LANES = (0.4, 0.62, 0.84)  # lane heights (feet) as fractions of the frame height
_MASK_LEVEL = 0.25  # blurred coverage counted as part of the anomalous object
_ENTRIES = ("Avenue Dataset", "ground_truth_demo")
# Recorded in the manifest: bump it whenever the written videos change (old trees are rebuilt).
GENERATOR_VERSION = 1
# A .mat file opens with 116 bytes of free text; savemat stamps the current time there, which
# would make two writes of the same labels differ. MATLAB and scipy ignore this text.
_MAT_HEADER = b"MATLAB 5.0 MAT-file Platform: posix, Created by: sspcab_jax".ljust(116, b"\0")


@dataclasses.dataclass
class _Actor:
    kind: str  # 'walker' or 'box'
    x: float  # centre, pixels
    y: float
    vx: float  # pixels per frame
    vy: float
    shade: float  # clothing brightness
    phase: float  # gait phase
    anomalous: bool = False


def _background(size: int) -> np.ndarray:
    gravel = skdata.gravel().astype(np.float32) / 255.0
    scale = gravel.shape[0] // size
    patch = gravel[: size * scale, : size * scale]
    patch = patch.reshape(size, scale, size, scale).mean(axis=(1, 3))
    return 0.2 + 0.3 * patch  # dim, so that pedestrians stand out


def _coverage(sd: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a signed distance (negative inside), one-pixel ramp."""
    return np.clip(0.5 - sd, 0.0, 1.0)


def _render(actor: _Actor, x: float, y: float, unit: float, grid) -> tuple[np.ndarray, np.ndarray]:
    """``(alpha [H, W], intensity [H, W])`` of one actor centred at ``(x, y)``."""
    yy, xx = grid
    if actor.kind == "box":
        half = 4.5 * unit
        sd = np.maximum(np.abs(xx - x), np.abs(yy - y)) - half
        checker = ((np.floor((xx - x) / (2 * unit)) + np.floor((yy - y) / (2 * unit))) % 2) == 0
        return _coverage(sd), np.where(checker, 0.95, 0.1)
    bob = 0.6 * unit * np.sin(actor.phase)
    body = np.maximum(np.abs(xx - x) - 2.5 * unit, np.abs(yy - (y + bob)) - 5.0 * unit)
    head = np.hypot(xx - x, yy - (y + bob - 7.5 * unit)) - 2.2 * unit
    stripes = 0.12 * np.sign(np.sin((yy - y) / unit * 1.6))
    intensity = np.where(head < body, 0.85, actor.shade + stripes)
    return _coverage(np.minimum(body, head)), intensity


def _composite(frame, actor: _Actor, unit: float, grid) -> np.ndarray:
    """Draws the actor with a one-frame shutter; returns its blurred coverage ``[H, W]``."""
    speed = float(np.hypot(actor.vx, actor.vy))
    taps = max(1, int(np.ceil(2 * speed / unit)))
    alpha_sum = np.zeros_like(frame)
    colour_sum = np.zeros_like(frame)
    for t in (np.arange(taps) + 0.5) / taps - 0.5:
        x, y = actor.x + t * actor.vx, actor.y + t * actor.vy
        alpha, intensity = _render(actor, x, y, unit, grid)
        alpha_sum += alpha
        colour_sum += alpha * intensity
    alpha = alpha_sum / taps
    colour = colour_sum / np.maximum(alpha_sum, 1e-6)
    frame *= 1.0 - alpha
    frame += alpha * colour
    return alpha


def _walker(rng: np.random.Generator, size: int, unit: float, x: float | None = None) -> _Actor:
    lane = _LANES[rng.integers(len(_LANES))] * size + rng.uniform(-1.0, 1.0) * unit
    direction = 1.0 if rng.random() < 0.5 else -1.0
    speed = rng.uniform(0.6, 1.2) * unit
    if x is None:  # enter from the side it walks away from
        x = -4.0 * unit if direction > 0 else size + 4.0 * unit
    return _Actor(
        "walker", x, lane - 5.0 * unit, direction * speed, 0.0, rng.uniform(0.45, 0.75), 0.0
    )


def _anomaly(kind: str, rng: np.random.Generator, size: int, unit: float) -> _Actor:
    direction = 1.0 if rng.random() < 0.5 else -1.0
    start = -6.0 * unit if direction > 0 else size + 6.0 * unit
    y = rng.uniform(0.35, 0.7) * size
    if kind == "appearance":
        actor = _Actor("box", start, y, direction * rng.uniform(0.8, 1.1) * unit, 0.0, 0.0, 0.0)
    elif kind == "speed":
        actor = _walker(rng, size, unit)
        actor.vx = np.sign(actor.vx) * rng.uniform(3.5, 4.5) * unit
    elif kind == "direction":
        x = rng.uniform(0.25, 0.75) * size
        top, bottom = -8.0 * unit, size + 8.0 * unit
        actor = _Actor("walker", x, top if direction > 0 else bottom, 0.0, direction, 0.6, 0.0)
        actor.vy *= rng.uniform(0.9, 1.2) * unit
    else:
        raise ValueError(f"Unknown anomaly kind {kind!r}; expected one of {ANOMALY_KINDS}.")
    actor.anomalous = True
    return actor


def _inside(actor: _Actor, size: int, unit: float) -> bool:
    margin = 10.0 * unit
    return -margin < actor.x < size + margin and -margin < actor.y < size + margin


def render_video(
    rng: np.random.Generator,
    *,
    num_frames: int,
    size: int,
    walkers: int = 3,
    anomaly: str | None = None,
    anomaly_start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Renders one video of the scene.

    Args:
      rng: the video's random generator.
      num_frames: frames ``T``.
      size: frame side (a multiple of 16 keeps the codec from rescaling).
      walkers: pedestrians on screen at any time (each leaving one is replaced).
      anomaly: one of :data:`ANOMALY_KINDS`, or None for a normal video.
      anomaly_start: frame at which the anomalous actor enters.

    Returns:
      ``(frames uint8 [T, size, size, 3], masks bool [T, size, size])``.
    """
    unit = size / 64.0  # every length is designed at 64 x 64 and scales with the frame
    grid = np.mgrid[:size, :size].astype(np.float32)
    background = _background(size)
    actors = [_walker(rng, size, unit, x=rng.uniform(0.1, 0.9) * size) for _ in range(walkers)]
    odd = None
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    masks = np.zeros((num_frames, size, size), bool)
    for t in range(num_frames):
        if anomaly is not None and t == anomaly_start:
            odd = _anomaly(anomaly, rng, size, unit)
        frame = background.copy()
        for actor in [*actors, *([odd] if odd is not None else [])]:
            alpha = _composite(frame, actor, unit, grid)
            if actor.anomalous:
                masks[t] = alpha >= _MASK_LEVEL
            actor.x += actor.vx
            actor.y += actor.vy
            actor.phase += 0.5 * float(np.hypot(actor.vx, actor.vy)) / unit
        actors = [a if _inside(a, size, unit) else _walker(rng, size, unit) for a in actors]
        if odd is not None and not _inside(odd, size, unit):
            odd = None  # one event per video
        noise = rng.normal(0.0, 0.01, frame.shape)  # sensor noise
        frames[t] = (np.clip(frame + noise, 0, 1) * 255 + 0.5).astype(np.uint8)[..., None]
    return frames, masks


def write_synthetic_avenue(
    root: str | os.PathLike,
    *,
    num_train: int = 4,
    num_test: int = 3,
    num_frames: int = 64,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Writes the embedded video dataset in the official Avenue layout (see module docstring).

    Args:
      root: folder to write into (created); it will hold ``Avenue Dataset`` and
        ``ground_truth_demo``, i.e. it is the ``root`` that ``avenue_videos`` expects.
      num_train: normal training videos.
      num_test: test videos; video ``i`` carries anomaly kind ``ANOMALY_KINDS[i % 3]``.
      num_frames: frames per video.
      size: frame side in pixels (multiple of 16).
      seed: everything is a deterministic function of it.

    Returns:
      ``root`` as a Path.
    """
    if size % 16 or size < 32:
        raise ValueError(f"size must be a multiple of 16 and >= 32, got {size}.")
    if num_frames < 8:
        raise ValueError(f"num_frames must be >= 8 for an event to fit, got {num_frames}.")
    root = Path(root)
    base = root / "Avenue Dataset"
    gt_dir = root / "ground_truth_demo" / "testing_label_mask"
    for folder in (base / "training_videos", base / "testing_videos", gt_dir):
        folder.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(seed).spawn(num_train + num_test)
    for i in range(num_train):
        frames, _ = render_video(np.random.default_rng(seeds[i]), num_frames=num_frames, size=size)
        write_video(base / "training_videos" / f"{i + 1:02d}.avi", frames)
    for i in range(num_test):
        rng = np.random.default_rng(seeds[num_train + i])
        # The event starts in the first third, so every test video has both classes.
        start = int(rng.integers(num_frames // 8, num_frames // 3))
        kind = ANOMALY_KINDS[i % len(ANOMALY_KINDS)]
        frames, masks = render_video(
            rng, num_frames=num_frames, size=size, anomaly=kind, anomaly_start=start
        )
        write_video(base / "testing_videos" / f"{i + 1:02d}.avi", frames)
        cells = np.empty((1, num_frames), dtype=object)
        for t, mask in enumerate(masks):
            cells[0, t] = mask.astype(np.uint8)
        # Avenue's label files drop the leading zero: 01.avi -> 1_label.mat.
        _savemat(gt_dir / f"{i + 1}_label.mat", {"volLabel": cells})
    return root


def _savemat(path: Path, variables: dict) -> None:
    """``scipy.io.savemat`` with a fixed header text, so equal contents give equal bytes."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    raw = bytearray(buffer.getvalue())
    raw[: len(_MAT_HEADER)] = _MAT_HEADER
    path.write_bytes(bytes(raw))


def ensure_synthetic_avenue(
    root: str | os.PathLike,
    *,
    num_train: int = 4,
    num_test: int = 3,
    num_frames: int = 64,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Writes the embedded video dataset atomically, or verifies the complete copy there.

    ``Avenue Dataset`` and ``ground_truth_demo`` are written into a temporary folder and renamed
    into ``root``; ``<root>/.synthetic-video.manifest.json``, written last, records every file's
    size and SHA-256. A partial, altered or differently generated tree is rebuilt with a warning
    saying what was wrong (see :mod:`sspcab_jax.data.atomic`).

    Args:
      root: folder that holds (or will hold) the two folders, as ``avenue_videos`` expects.
      num_train: normal training videos.
      num_test: test videos, one anomalous event each.
      num_frames: frames per video.
      size: frame side in pixels (multiple of 16).
      seed: everything is a deterministic function of it.

    Returns:
      ``root`` as a Path.
    """
    kwargs = dict(
        num_train=num_train, num_test=num_test, num_frames=num_frames, size=size, seed=seed
    )
    return ensure_tree(
        root,
        "synthetic-video",
        _ENTRIES,
        {**kwargs, "generator_version": GENERATOR_VERSION},
        lambda folder: write_synthetic_avenue(folder, **kwargs),
    )
