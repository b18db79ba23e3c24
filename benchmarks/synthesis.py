"""Images/s of the jitted DRAEM synthesis vs a per-sample NumPy implementation.

    python -m benchmarks.synthesis [--batch 8] [--size 256] [--repeats 10]

The NumPy baseline follows the same procedure (DRAEM's ``data_loader.py``) one sample at a time in a
Python loop: NumPy Perlin noise, bilinear rotations by fancy indexing, NumPy versions of the ten
augmenters (3 drawn without replacement), blend, clean with p 0.5. Warm-up (compilation) is
excluded; figures are medians over repeats.
"""

import argparse
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from sspcab_jax.synthesis import SynthesisConfig, synthesize
from sspcab_jax.xla_flags import apply_default_cpu_flags


# --------------------------------------------------------------------------------- NumPy side
def np_rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w, c = img.shape
    t = math.radians(degrees)
    dy, dx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    sx = math.cos(t) * dx - math.sin(t) * dy + (w - 1) / 2
    sy = math.sin(t) * dx + math.cos(t) * dy + (h - 1) / 2
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
    out = np.zeros_like(img)
    for yy, xx, wgt in (
        (y0, x0, (1 - wy) * (1 - wx)),
        (y0, x0 + 1, (1 - wy) * wx),
        (y0 + 1, x0, wy * (1 - wx)),
        (y0 + 1, x0 + 1, wy * wx),
    ):
        ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        out += np.where(ok[..., None], img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0) * wgt
    return out


def np_perlin(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    ry, rx = 2 ** rng.integers(0, 6, size=2)
    angles = rng.uniform(0, 2 * np.pi, (ry + 1, rx + 1))
    grads = np.stack([np.cos(angles), np.sin(angles)], -1)
    gy = np.arange(shape[0]) * ry / shape[0]
    gx = np.arange(shape[1]) * rx / shape[1]
    y0, x0 = gy.astype(int), gx.astype(int)
    ty, tx = (gy - y0)[:, None], (gx - x0)[None, :]

    def dot(dr: int, dc: int) -> np.ndarray:
        g = grads[(y0 + dr)[:, None], (x0 + dc)[None, :]]
        return g[..., 0] * (ty - dr) + g[..., 1] * (tx - dc)

    fy, fx = (6 * ty**5 - 15 * ty**4 + 10 * ty**3), (6 * tx**5 - 15 * tx**4 + 10 * tx**3)
    top = dot(0, 0) * (1 - fx) + dot(0, 1) * fx
    bottom = dot(1, 0) * (1 - fx) + dot(1, 1) * fx
    return math.sqrt(2) * (top * (1 - fy) + bottom * fy)


def _levels(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x * 255 + 0.5), 0, 255).astype(np.int64)


def _np_equalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    q = _levels(x)
    out = np.empty_like(x)
    for c in range(3):
        h = np.bincount(q[..., c].ravel(), minlength=256)
        nz = h[h > 0]
        step = (nz.sum() - nz[-1]) // 255 if len(nz) > 1 else 0
        lut = np.arange(256) if step == 0 else (step // 2 + np.cumsum(h) - h) // step
        out[..., c] = np.minimum(lut, 255)[q[..., c]] / 255
    return out


def _np_autocontrast(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    q = _levels(x)
    cutoff = rng.integers(0, 21)
    out = np.empty_like(x)
    for c in range(3):
        h = np.bincount(q[..., c].ravel(), minlength=256)
        cut = h.sum() * cutoff // 100
        lo = np.argmax(np.cumsum(h) > cut)
        hi = 255 - np.argmax(np.cumsum(h[::-1]) > cut)
        if hi <= lo:
            out[..., c] = q[..., c] / 255
            continue
        lut = np.clip(np.floor((np.arange(256) - lo) * 255 / (hi - lo)), 0, 255)
        out[..., c] = lut[q[..., c]] / 255
    return out


def _np_hue_sat(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dh, ds = rng.uniform(-50, 50, 2) / 255
    mx, mn = x.max(-1), x.min(-1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    hue = (
        np.where(
            mx == r, (g - b) / safe % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)
        )
        / 6
    )
    hue = (np.where(delta > 0, hue, 0) + dh) % 1
    sat = np.clip(np.where(mx > 0, delta / np.where(mx > 0, mx, 1), 0) + ds, 0, 1)
    k = (np.array([5, 3, 1]) + hue[..., None] * 6) % 6
    return mx[..., None] * (1 - sat[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def _np_sharpness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = x.shape[:2]
    smooth = (sum(p[i : i + h, j : j + w] for i in range(3) for j in range(3)) + 4 * x) / 13
    smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = x[0], x[-1], x[:, 0], x[:, -1]
    return np.clip(smooth + rng.uniform(0, 2) * (x - smooth), 0, 1)


def _np_brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    y = x @ np.array([0.299, 0.587, 0.114])
    y2 = np.clip(y * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30) / 255, 0, 1)
    return np.clip(x + (y2 - y)[..., None], 0, 1)


def _np_solarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t = rng.uniform(32, 128) / 255
    return np.where(x >= t, 1 - x, x) if rng.random() < 0.5 else x


def _np_posterize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (_levels(x) & (255 << (8 - rng.integers(1, 9)) & 255)) / 255


NP_AUGMENTERS = (
    lambda x, r: x ** r.uniform(0.5, 2.0, 3),
    _np_brightness,
    _np_sharpness,
    _np_hue_sat,
    _np_solarize,
    _np_posterize,
    lambda x, r: 1 - x,
    _np_autocontrast,
    _np_equalize,
    lambda x, r: np_rotate(x, r.uniform(-45, 45)),
)


def np_synthesize_one(rng: np.random.Generator, image: np.ndarray, sources: np.ndarray) -> dict:
    if rng.random() < 0.3:
        image = np_rotate(image, rng.uniform(-90, 90))
    texture = sources[rng.integers(len(sources))]
    for i in rng.choice(10, 3, replace=False):
        texture = NP_AUGMENTERS[i](texture, rng)
    noise = np_rotate(np_perlin(rng, image.shape[:2])[..., None], rng.uniform(-90, 90))
    mask = (noise > 0.5).astype(np.float32)
    opacity = 1 - 0.8 * rng.random()
    blended = image * (1 - mask) + opacity * texture * mask + (1 - opacity) * image * mask
    if rng.random() < 0.5 or not mask.any():
        return {"image": image, "augmented": image, "mask": 0 * mask, "has_anomaly": 0.0}
    return {"image": image, "augmented": blended, "mask": mask, "has_anomaly": 1.0}


# --------------------------------------------------------------------------------- timing
def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--sources", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    apply_default_cpu_flags()  # before the first computation starts the backend

    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, 3)
    images = rng.random(shape, dtype=np.float32)
    sources = rng.random((args.sources, *shape[1:]), dtype=np.float32)

    np_seconds = _median_seconds(
        lambda: [np_synthesize_one(rng, im, sources) for im in images], args.repeats
    )
    np_rate = args.batch / np_seconds

    images_d, sources_d = jnp.asarray(images), jnp.asarray(sources)
    from benchmarks.common import machine_line

    print(machine_line())
    print(f"backend {jax.default_backend()}, batch {args.batch}, {args.size}x{args.size}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, load {os.getloadavg()[0]:.2f}")
    print(f"numpy per-sample          {np_rate:9.1f} images/s")
    for loop in (True, False):
        config = SynthesisConfig(loop=loop)
        fn = jax.jit(lambda k, x, s, c=config: synthesize(k, x, s, config=c))
        jax.block_until_ready(fn(jax.random.key(0), images_d, sources_d))  # compile
        keys = iter(jax.random.split(jax.random.key(1), args.repeats))
        seconds = _median_seconds(
            lambda f=fn, ks=keys: jax.block_until_ready(f(next(ks), images_d, sources_d)),
            args.repeats,
        )
        rate = args.batch / seconds
        mode = "lax.map" if loop else "vmap"
        print(f"jax jit ({mode:7s})         {rate:9.1f} images/s   {rate / np_rate:6.1f}x numpy")


if __name__ == "__main__":
    main()
