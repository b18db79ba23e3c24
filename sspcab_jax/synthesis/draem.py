"""DRAEM anomaly synthesis on device (DRAEM's `data_loader.py` and `perlin.py`; anomalib's variant).

`synthesize` is a pure function of ``(key, images, sources)``: it jits once for given shapes,
vmaps, and never leaves the device. Per sample it

1. optionally rotates the clean image (p 0.3, U(-90, 90)); the rotated image is the target,
2. picks a source texture uniformly from the pool and applies 3 of the 10 augmenters,
3. draws a Perlin mask M (random resolution, rotated, > 0.5),
4. blends ``I * (1 - M) + opacity * A * M + (1 - opacity) * I * M``,
5. keeps the clean image instead with probability 0.5 (mask 0, label 0); the label is also 0
   when the mask is empty.

All random work is done for every sample, as in the official loader, so the draws of a sample
depend only on its key.
"""

import dataclasses
import logging

import jax
import jax.numpy as jnp

from sspcab_jax.synthesis import augment, perlin, self_source

logger = logging.getLogger(__name__)
_fallback_logged = False


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """Parameters of the DRAEM synthesis; defaults follow the official ``data_loader.py``.

    Attributes:
      clean_prob: probability that a sample is left clean (0.5).
      opacity_range: (low, high) of the anomaly opacity. Officially ``1 - beta`` with
        ``beta = 0.8 * U[0, 1)``, i.e. (0.2, 1.0]; anomalib uses U(0.1, 1.0).
      rotate_prob: probability of rotating the clean image (0.3; anomalib: 0).
      rotate_degrees: that rotation is U(-rotate_degrees, rotate_degrees) (90).
      num_augmenters: source augmenters drawn without replacement (3 of 10).
      perlin_max_log2_res: Perlin resolutions are 2 ** U{0..this} per axis (5).
      perlin_threshold: mask = noise > threshold (0.5).
      perlin_rotate_degrees: the noise is rotated by U(-this, this) (90).
      perlin_source_prob: with a source pool, the probability that a sample's source is a
        Perlin-noise texture (``fallback_texture``) instead of a pool image, before the same
        augmenters (0: the official pool only). DTD spans smooth and fine-grained textures; a
        pool of photographs only has the fine end, and the smooth fields add it back.
      self_source_prob: probability that a sample's source is the clean image itself, rotated,
        zoomed and shifted (:func:`~sspcab_jax.synthesis.self_source.self_texture`, no colour
        augmenters), instead of a pool or Perlin texture (0: the official synthesis). It teaches
        the discriminator that the object's own material in the wrong orientation or scale is
        anomalous.
      fallback_texture: texture used when no source pool is given: 'grey' (anomalib: one Perlin
        field * 0.5 + 0.25 on all channels) or 'colour' (an independent field per channel).
      brightness: brightness augmenter: 'ycrcb' (luma of YCrCb, multiply then add) or
        'official' (imgaug's six colour spaces, random order; see
        :func:`~sspcab_jax.synthesis.augment.brightness_official`).
      loop: if True (default), samples are processed one after another by ``lax.map`` inside
        the compiled program, so only the drawn augmenters and branches run. If False, by
        ``vmap``: ``lax.switch`` then becomes a select that evaluates all ten augmenters at
        each of the three steps (about 10x the work; measured 4x slower on CPU).
    """

    clean_prob: float = 0.5
    opacity_range: tuple[float, float] = (0.2, 1.0)
    rotate_prob: float = 0.3
    rotate_degrees: float = 90.0
    num_augmenters: int = 3
    perlin_max_log2_res: int = 5
    perlin_threshold: float = 0.5
    perlin_rotate_degrees: float = 90.0
    perlin_source_prob: float = 0.0
    self_source_prob: float = 0.0
    fallback_texture: str = "grey"
    brightness: str = "ycrcb"
    loop: bool = True

    def __post_init__(self):
        augment.augmenter_list(self.brightness)  # a bad value fails here, naming the field


# anomalib's variant (its Perlin anomaly generator): opacity U(0.1, 1.0), no rotation of the clean
# image.
ANOMALIB_CONFIG = SynthesisConfig(opacity_range=(0.1, 1.0), rotate_prob=0.0)


def perlin_texture(key: jax.Array, shape: tuple[int, int], config: SynthesisConfig) -> jax.Array:
    """Source texture made of Perlin noise, for when no texture pool is available.

    Args:
      key: PRNG key.
      shape: static (H, W).
      config: synthesis configuration (`fallback_texture`, `perlin_max_log2_res`).

    Returns:
      [H, W, 3] texture in [0, 1]: ``noise * 0.5 + 0.25``, clipped (anomalib's fallback).
    """
    if config.fallback_texture not in ("grey", "colour"):
        raise ValueError(
            f"fallback_texture must be 'grey' or 'colour', got {config.fallback_texture!r}"
        )
    fields = 1 if config.fallback_texture == "grey" else 3
    noise = jax.vmap(
        lambda k: perlin.random_perlin_noise(k, shape, max_log2_res=config.perlin_max_log2_res)
    )(jax.random.split(key, fields))
    texture = jnp.moveaxis(noise, 0, -1) * 0.5 + 0.25
    return jnp.clip(jnp.broadcast_to(texture, (*shape, 3)), 0.0, 1.0)


def blend(image: jax.Array, texture: jax.Array, mask: jax.Array, opacity: jax.Array) -> jax.Array:
    """Paste ``texture`` into ``image`` under ``mask`` at ``opacity`` (``data_loader.py``).

    ``image * (1 - mask) + opacity * texture * mask + (1 - opacity) * image * mask``; the
    official code writes it with ``beta = 1 - opacity``, the weight kept by the image.

    Args:
      image: [H, W, 3] clean image.
      texture: [H, W, 3] augmented source texture.
      mask: [H, W, 1] anomaly mask in {0, 1}.
      opacity: scalar opacity of the texture.

    Returns:
      [H, W, 3] blended image.
    """
    return image * (1 - mask) + opacity * texture * mask + (1 - opacity) * image * mask


def synthesize_one(
    key: jax.Array,
    image: jax.Array,
    sources: jax.Array | None,
    config: SynthesisConfig = SynthesisConfig(),
) -> dict[str, jax.Array]:
    """Synthesises one training sample; see `synthesize` for the batched form.

    Args:
      key: PRNG key.
      image: [H, W, 3] clean image in [0, 1].
      sources: [S, H, W, 3] pool of source textures in [0, 1], or None for Perlin textures.
      config: synthesis configuration.

    Returns:
      Dict with 'image' [H, W, 3] (clean target), 'augmented' [H, W, 3] (network input),
      'mask' [H, W, 1] in {0, 1} and 'has_anomaly' [] in {0, 1}, all float32.
    """
    shape = image.shape[:2]
    image = image.astype(jnp.float32)
    k_rot, k_angle, k_src, k_aug, k_mask, k_opacity, k_keep = jax.random.split(key, 7)

    angle = jax.random.uniform(
        k_angle, (), minval=-config.rotate_degrees, maxval=config.rotate_degrees
    )
    rotate = jax.random.uniform(k_rot, ()) < config.rotate_prob
    # A real branch under lax.map (skipped 70 % of the time); a select under vmap.
    image = jax.lax.cond(rotate, augment.rotate, lambda x, _: x, image, angle)

    if sources is None:
        texture = perlin_texture(k_src, shape, config)
    else:
        index = jax.random.randint(k_src, (), 0, sources.shape[0])
        source = jax.lax.dynamic_index_in_dim(sources, index, keepdims=False).astype(jnp.float32)
        if config.perlin_source_prob > 0:
            # A key folded from k_src: with the option off, every other draw stays as it was.
            k_pick, k_noise = jax.random.split(jax.random.fold_in(k_src, 1))
            source = jax.lax.cond(
                jax.random.uniform(k_pick, ()) < config.perlin_source_prob,
                lambda: perlin_texture(k_noise, shape, config),
                lambda: source,
            )
        texture = augment.random_augment(
            k_aug,
            source,
            config.num_augmenters,
            augment.augmenter_list(config.brightness),
        )

    if config.self_source_prob > 0:
        # Keys of its own (folded from k_src, apart from the Perlin-source ones): the other
        # draws are those of the official synthesis.
        k_pick, k_self = jax.random.split(jax.random.fold_in(k_src, 2))
        texture = jax.lax.cond(
            jax.random.uniform(k_pick, ()) < config.self_source_prob,
            lambda: self_source.self_texture(k_self, image),
            lambda: texture,
        )

    mask = perlin.perlin_mask(
        k_mask,
        shape,
        threshold=config.perlin_threshold,
        max_log2_res=config.perlin_max_log2_res,
        rotate_degrees=config.perlin_rotate_degrees,
    )
    low, high = config.opacity_range
    # high - (high - low) * U[0, 1): with (0.2, 1.0) this is the official 1 - 0.8 * U[0, 1).
    opacity = high - (high - low) * jax.random.uniform(k_opacity, ())
    blended = blend(image, texture, mask, opacity)

    anomalous = (jax.random.uniform(k_keep, ()) >= config.clean_prob) & (mask.max() > 0)
    return {
        "image": image,
        "augmented": jnp.where(anomalous, blended, image),
        "mask": jnp.where(anomalous, mask, 0.0),
        "has_anomaly": anomalous.astype(jnp.float32),
    }


def synthesize(
    key: jax.Array,
    images: jax.Array,
    sources: jax.Array | None = None,
    *,
    config: SynthesisConfig = SynthesisConfig(),
) -> dict[str, jax.Array]:
    """DRAEM anomaly synthesis for a batch, on device (as ``data_loader.py``, per sample).

    Each sample uses its own key from ``jax.random.split(key, B)`` and picks a source texture
    uniformly from the pool. Jit with the config closed over or marked static.

    Args:
      key: PRNG key.
      images: [B, H, W, 3] clean normal images in [0, 1].
      sources: [S, H, W, 3] anomaly-source textures in [0, 1] (same H, W), or None to fall back
        to Perlin-noise textures (logged once).
      config: synthesis configuration.

    Returns:
      Dict with 'image' [B, H, W, 3] (clean target, possibly rotated), 'augmented'
      [B, H, W, 3] (network input), 'mask' [B, H, W, 1] in {0, 1} and 'has_anomaly' [B]
      in {0, 1}, all float32.
    """
    return synthesize_from_keys(
        jax.random.split(key, images.shape[0]), images, sources, config=config
    )


def synthesize_from_keys(
    keys: jax.Array,
    images: jax.Array,
    sources: jax.Array | None = None,
    *,
    config: SynthesisConfig = SynthesisConfig(),
) -> dict[str, jax.Array]:
    """:func:`synthesize` with one given key per sample.

    Data-parallel training hands each device the keys of its own samples of the global batch, so
    a sample is synthesised identically whichever device holds it.

    Args:
      keys: [B] PRNG keys, one per image.
      images: [B, H, W, 3] clean normal images in [0, 1].
      sources: [S, H, W, 3] anomaly-source textures in [0, 1], or None.
      config: synthesis configuration.

    Returns:
      As :func:`synthesize`.
    """
    global _fallback_logged
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    if sources is None:
        if not _fallback_logged:
            # Runs while tracing, so a jitted caller logs once, not once per step.
            logger.warning(
                "No anomaly-source textures given: using %s Perlin-noise textures.",
                config.fallback_texture,
            )
            _fallback_logged = True
    elif sources.ndim != 4 or sources.shape[1:] != images.shape[1:]:
        raise ValueError(
            f"sources must be [S, {', '.join(map(str, images.shape[1:]))}], got {sources.shape}"
        )

    if keys.shape[:1] != images.shape[:1]:
        raise ValueError(f"need one key per image: {keys.shape[0]} keys, {images.shape[0]} images")

    def one(args: tuple[jax.Array, jax.Array]) -> dict[str, jax.Array]:
        return synthesize_one(args[0], args[1], sources, config)

    if config.loop:
        return jax.lax.map(one, (keys, images))
    return jax.vmap(one)((keys, images))
