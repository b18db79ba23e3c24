"""The ten DRAEM anomaly-source augmenters, in JAX (the imgaug list of DRAEM's `data_loader.py`).

Every augmenter is a pure function ``(key, image) -> image`` on one ``[H, W, 3]`` float image
in [0, 1]; outputs stay in [0, 1]. They jit with static shapes and vmap over a batch.
`random_augment` applies three distinct augmenters in random order, as the official
`imgaug.Sequential` of three drawn without replacement.

Deviations from imgaug (documented here once, each function repeats its own):

* Images are RGB floats, not BGR uint8; 8-bit operations (posterize, autocontrast, equalize)
  quantise to 256 levels first, so they are exact on 8-bit inputs.
* Brightness: ``brightness`` (the default, ``synthesis.brightness='ycrcb'``) changes the luma
  of YCrCb only; ``brightness_official`` (``'official'``) is imgaug's six-colour-space
  version (see :mod:`sspcab_jax.synthesis.colour_spaces`).
* The rotation keeps the image size, rotates about the centre, bilinear, fill 0.
"""

from collections.abc import Callable, Sequence

import dm_pix
import jax
import jax.numpy as jnp

from sspcab_jax.synthesis import colour_spaces
from sspcab_jax.synthesis.geometry import materialize, rotate

Augmenter = Callable[[jax.Array, jax.Array], jax.Array]


# Deterministic building blocks (tested against PIL / NumPy).
def to_levels(image: jax.Array) -> jax.Array:
    """Rounds a [0, 1] float image to int32 8-bit levels 0..255 (same shape)."""
    return materialize(jnp.clip(jnp.floor(image * 255.0 + 0.5), 0, 255).astype(jnp.int32))


def channel_histograms(levels: jax.Array) -> jax.Array:
    """Per-channel 256-bin histograms of an int32 [H, W, C] level image -> [C, 256] int32."""
    channels = levels.shape[-1]
    index = levels.reshape(-1, channels) + 256 * jnp.arange(channels, dtype=jnp.int32)
    counts = jnp.bincount(index.reshape(-1), length=256 * channels)
    return counts.reshape(channels, 256).astype(jnp.int32)


def apply_luts(levels: jax.Array, luts: jax.Array) -> jax.Array:
    """Maps int32 [H, W, C] levels through per-channel [C, 256] tables; returns [0, 1] floats."""
    channels = levels.shape[-1]
    # The tables are built from cumulative sums and divisions; unmaterialised, XLA fuses that
    # arithmetic into the per-pixel lookup and redoes it for every pixel. A reduction is not
    # fused into its consumers (a one-element scatter is, once rewritten as an update-slice):
    # ~2x faster equalize on CPU.
    table = jnp.stack([luts.T, jnp.zeros_like(luts.T)]).sum(axis=0)  # [256, C]
    out = table[levels, jnp.arange(channels)]
    return out.astype(jnp.float32) / 255.0


def posterize_bits(image: jax.Array, bits: jax.Array | int) -> jax.Array:
    """Keeps the ``bits`` high bits of each 8-bit level (PIL ``ImageOps.posterize``).

    Args:
      image: [H, W, C] image in [0, 1].
      bits: integer in 1..8 (may be traced).

    Returns:
      [H, W, C] image in [0, 1] on the 8-bit grid.
    """
    drop = 8 - jnp.asarray(bits, jnp.int32)
    keep_mask = jnp.left_shift(jnp.int32(255), drop) & 255
    return (to_levels(image) & keep_mask).astype(jnp.float32) / 255.0


def autocontrast_cutoff(image: jax.Array, cutoff: jax.Array | int) -> jax.Array:
    """PIL ``ImageOps.autocontrast(cutoff)`` per channel on the 8-bit levels.

    ``floor(n * cutoff / 100)`` pixels are removed from each end of each channel's histogram;
    the remaining range [lo, hi] is stretched to [0, 255] with a truncating lookup table as
    PIL's (computed exactly in integers; PIL's doubles differ by one level on rare entries).
    A channel with ``hi <= lo`` is left unchanged.

    Args:
      image: [H, W, C] image in [0, 1].
      cutoff: integer percentage (may be traced).

    Returns:
      [H, W, C] image in [0, 1].
    """
    levels = to_levels(image)
    hist = channel_histograms(levels)  # [C, 256]
    total = hist.sum(axis=-1, keepdims=True)
    cut = (total * jnp.asarray(cutoff, jnp.int32)) // 100
    bins = jnp.arange(256, dtype=jnp.int32)
    # After PIL removes `cut` pixels from the low end, the first bin still populated is the
    # first whose cumulative count exceeds `cut`; symmetrically for the high end.
    lo = jnp.min(jnp.where(jnp.cumsum(hist, -1) > cut, bins, 255), axis=-1)
    upper_cum = jnp.cumsum(hist[:, ::-1], -1)[:, ::-1]
    hi = jnp.max(jnp.where(upper_cum > cut, bins, 0), axis=-1)
    span = jnp.maximum(hi - lo, 1)[:, None]
    # Exact integer floor((i - lo) * 255 / (hi - lo)); PIL evaluates it in doubles and lands
    # one level lower where rounding puts an exact integer just below it.
    stretched = jnp.clip(jnp.floor_divide((bins[None] - lo[:, None]) * 255, span), 0, 255)
    luts = jnp.where((hi > lo)[:, None], stretched, bins[None])
    return apply_luts(levels, luts)


def equalize(image: jax.Array) -> jax.Array:
    """PIL ``ImageOps.equalize`` per channel on the 8-bit levels.

    PIL's table: ``step = (n - count of the last populated bin) // 255``;
    ``lut[i] = (step // 2 + sum(hist[:i])) // step``. Channels with one populated bin or
    ``step == 0`` are unchanged. Entries are clipped to 255.

    Args:
      image: [H, W, C] image in [0, 1].

    Returns:
      [H, W, C] image in [0, 1].
    """
    levels = to_levels(image)
    hist = channel_histograms(levels)  # [C, 256]
    bins = jnp.arange(256, dtype=jnp.int32)
    populated = hist > 0
    last = jnp.max(jnp.where(populated, bins, 0), axis=-1)
    last_count = jnp.take_along_axis(hist, last[:, None], axis=-1)[:, 0]
    step = (hist.sum(-1) - last_count) // 255
    safe_step = jnp.maximum(step, 1)[:, None]
    exclusive = jnp.cumsum(hist, -1) - hist
    lut = jnp.clip((safe_step // 2 + exclusive) // safe_step, 0, 255)
    identity = (populated.sum(-1) <= 1) | (step == 0)
    luts = jnp.where(identity[:, None], bins[None], lut)
    return apply_luts(levels, luts)


def sharpen(image: jax.Array, factor: jax.Array | float) -> jax.Array:
    """PIL ``ImageEnhance.Sharpness``: blend with the 3x3 SMOOTH-filtered image.

    The smoothing kernel is [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13; the one-pixel border keeps
    the original values, as PIL's filter does. ``factor`` 0 gives the smoothed image, 1 the
    original, 2 a sharpened one.

    Args:
      image: [H, W, C] image in [0, 1].
      factor: blend factor (may be traced).

    Returns:
      [H, W, C] image in [0, 1].
    """
    height, width = image.shape[:2]
    padded = jnp.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    neighbours = sum(
        padded[1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
    )
    smooth = (neighbours + 4.0 * image) / 13.0
    rows = jnp.arange(height)[:, None, None]
    cols = jnp.arange(width)[None, :, None]
    border = (rows == 0) | (rows == height - 1) | (cols == 0) | (cols == width - 1)
    degenerate = jnp.where(border, image, smooth)
    return jnp.clip(degenerate + factor * (image - degenerate), 0.0, 1.0)


def shift_hue_saturation(image: jax.Array, hue: jax.Array, saturation: jax.Array) -> jax.Array:
    """Adds to hue (fraction of a turn, wraps) and saturation (clipped) in HSV.

    Args:
      image: [H, W, 3] RGB image in [0, 1].
      hue: scalar hue shift in turns.
      saturation: scalar additive saturation shift.

    Returns:
      [H, W, 3] RGB image in [0, 1].
    """
    hsv = dm_pix.rgb_to_hsv(image)
    h = jnp.mod(hsv[..., 0] + hue, 1.0)
    s = jnp.clip(hsv[..., 1] + saturation, 0.0, 1.0)
    rgb = dm_pix.hsv_to_rgb(jnp.stack([h, s, hsv[..., 2]], axis=-1))
    return jnp.clip(rgb, 0.0, 1.0)


# The ten keyed augmenters; parameter ranges are those data_loader.py passes to imgaug 0.4.
def gamma_contrast(key: jax.Array, image: jax.Array) -> jax.Array:
    """GammaContrast: ``x ** gamma``, gamma ~ U(0.5, 2.0) drawn per channel. [H, W, 3]."""
    gamma = jax.random.uniform(key, (image.shape[-1],), minval=0.5, maxval=2.0)
    # exp(gamma * log x) is ~4x faster than jnp.power on CPU; log 0 = -inf gives 0 as wanted.
    return jnp.exp(gamma * jnp.log(image))


def brightness(key: jax.Array, image: jax.Array) -> jax.Array:
    """MultiplyAndAddToBrightness: luma ``Y * U(0.8, 1.2) + U(-30, 30) / 255``. [H, W, 3].

    Applied to Y of YCrCb with Cr, Cb fixed; since every RGB channel depends on Y with weight
    1, this adds ``Y' - Y`` to each channel (imgaug draws one of six colour spaces).
    """
    k_mul, k_add = jax.random.split(key)
    mul = jax.random.uniform(k_mul, (), minval=0.8, maxval=1.2)
    add = jax.random.uniform(k_add, (), minval=-30.0, maxval=30.0) / 255.0
    luma = image @ jnp.array([0.299, 0.587, 0.114], image.dtype)
    new_luma = jnp.clip(luma * mul + add, 0.0, 1.0)
    return jnp.clip(image + (new_luma - luma)[..., None], 0.0, 1.0)


def sharpness(key: jax.Array, image: jax.Array) -> jax.Array:
    """pillike.EnhanceSharpness with factor ~ U(0, 2). [H, W, 3]."""
    return sharpen(image, jax.random.uniform(key, (), minval=0.0, maxval=2.0))


def hue_saturation(key: jax.Array, image: jax.Array) -> jax.Array:
    """AddToHueAndSaturation(-50, 50), per channel: independent hue and saturation shifts.

    imgaug maps a value v in [-255, 255] to a hue shift of v / 255 of a turn (via OpenCV's
    0..180 hue) and adds v / 255 to the saturation. [H, W, 3].
    """
    shifts = jax.random.uniform(key, (2,), minval=-50.0, maxval=50.0) / 255.0
    return shift_hue_saturation(image, shifts[0], shifts[1])


def solarize(key: jax.Array, image: jax.Array) -> jax.Array:
    """Solarize, p = 0.5: invert values >= threshold ~ U(32, 128) / 255. [H, W, 3]."""
    k_apply, k_threshold = jax.random.split(key)
    threshold = jax.random.uniform(k_threshold, (), minval=32.0, maxval=128.0) / 255.0
    return jnp.where(jax.random.bernoulli(k_apply, 0.5), dm_pix.solarize(image, threshold), image)


def posterize(key: jax.Array, image: jax.Array) -> jax.Array:
    """Posterize (UniformColorQuantizationToNBits), nb_bits ~ U{1, ..., 8}. [H, W, 3]."""
    return posterize_bits(image, jax.random.randint(key, (), 1, 9))


def invert(key: jax.Array, image: jax.Array) -> jax.Array:
    """Invert with p = 1: ``1 - x``. The key is unused. [H, W, 3]."""
    del key
    return 1.0 - image


def autocontrast(key: jax.Array, image: jax.Array) -> jax.Array:
    """pillike.Autocontrast, integer cutoff ~ U{0, ..., 20} percent. [H, W, 3]."""
    return autocontrast_cutoff(image, jax.random.randint(key, (), 0, 21))


def equalize_augmenter(key: jax.Array, image: jax.Array) -> jax.Array:
    """pillike.Equalize (no parameters; the key is unused). [H, W, 3]."""
    del key
    return equalize(image)


def affine_rotate(key: jax.Array, image: jax.Array) -> jax.Array:
    """Affine rotate by U(-45, 45) degrees about the centre, bilinear, fill 0. [H, W, 3]."""
    return rotate(image, jax.random.uniform(key, (), minval=-45.0, maxval=45.0))


# The order of the list in data_loader.py.
AUGMENTERS: tuple[Augmenter, ...] = (
    gamma_contrast,
    brightness,
    sharpness,
    hue_saturation,
    solarize,
    posterize,
    invert,
    autocontrast,
    equalize_augmenter,
    affine_rotate,
)
BRIGHTNESS_VARIANTS: tuple[str, ...] = ("ycrcb", "official")


def augmenter_list(brightness_variant: str = "ycrcb") -> tuple[Augmenter, ...]:
    """:data:`AUGMENTERS` with the brightness augmenter chosen by ``synthesis.brightness``.

    Args:
      brightness_variant: ``'ycrcb'`` (:func:`brightness`) or ``'official'``
        (:func:`~sspcab_jax.synthesis.colour_spaces.brightness_official`).

    Returns:
      The ten augmenters in ``data_loader.py``'s order.
    """
    if brightness_variant not in BRIGHTNESS_VARIANTS:
        raise ValueError(
            f"synthesis.brightness={brightness_variant!r} is invalid: expected one of "
            f"{list(BRIGHTNESS_VARIANTS)}."
        )
    if brightness_variant == "ycrcb":
        return AUGMENTERS
    return tuple(colour_spaces.brightness_official if a is brightness else a for a in AUGMENTERS)


def random_augment(
    key: jax.Array,
    image: jax.Array,
    num: int = 3,
    augmenters: Sequence[Augmenter] = AUGMENTERS,
) -> jax.Array:
    """Applies ``num`` distinct augmenters drawn without replacement, in random order.

    A permutation of the augmenter indices picks them; ``lax.switch`` dispatches, so one
    compilation serves every key. Under ``vmap`` the switch evaluates every branch and selects;
    under ``lax.map`` only the drawn branch runs.

    Args:
      key: PRNG key.
      image: [H, W, 3] image in [0, 1].
      num: how many augmenters to apply (3 in DRAEM's ``data_loader.py``).
      augmenters: the pool to draw from.

    Returns:
      [H, W, 3] augmented image in [0, 1].
    """
    if not 0 <= num <= len(branches := tuple(augmenters)):
        raise ValueError(f"num must be in [0, {len(branches)}], got {num}")
    if num == 0:  # the loop body would index an empty key array while tracing
        return image
    k_order, k_apply = jax.random.split(key)
    order = jax.random.permutation(k_order, len(branches))[:num]
    step_keys = jax.random.split(k_apply, num)

    def step(i: jax.Array, image: jax.Array) -> jax.Array:
        return jax.lax.switch(order[i], branches, step_keys[i], image)

    # A loop rather than unrolled steps: the ten branches are compiled once, not `num` times.
    return jax.lax.fori_loop(0, num, step, image)
