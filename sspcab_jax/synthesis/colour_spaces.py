"""OpenCV's 8-bit colour conversions and imgaug's ``MultiplyAndAddToBrightness``, in JAX.

imgaug 0.4's ``MultiplyAndAddToBrightness`` (in DRAEM's ``data_loader.py`` augmenter list with
``mul=(0.8, 1.2), add=(-30, 30)``) converts a ``uint8`` image with ``cv2.cvtColor`` to one of
six colour spaces drawn uniformly, takes its brightness channel, applies ``Multiply`` and
``Add`` in random order (``random_order=True``) and converts back:

=========  =============  ==================
space      channel        OpenCV 8-bit range
=========  =============  ==================
YCrCb      0 (Y)          0..255
HSV        2 (V)          H 0..180
HLS        1 (L)          H 0..180
Lab        0 (L)          L * 255 / 100
Luv        0 (L)          L * 255 / 100
YUV        0 (Y)          0..255
=========  =============  ==================

On ``uint8`` ``Multiply`` is the table ``floor(clip(v * mul, 0, 255))`` (float32 product) with
``mul ~ U(0.8, 1.2)``; ``Add`` is ``clip(v + round(add), 0, 255)`` with ``add ~ U(-30, 30)``
rounded half to even. Here the conversions are the floating-point formulas of OpenCV's
documentation, rounded to 8-bit levels after each conversion as OpenCV's ``uint8`` output is;
OpenCV computes some of them (YCrCb, YUV, HSV, Lab) in fixed point, so a level can differ by
one or two (the tests measure it against OpenCV's values).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

SPACES: tuple[str, ...] = ("YCrCb", "HSV", "HLS", "Lab", "Luv", "YUV")
BRIGHTNESS_CHANNEL: dict[str, int] = {"YCrCb": 0, "HSV": 2, "HLS": 1, "Lab": 0, "Luv": 0, "YUV": 0}

# sRGB (D65) <-> XYZ, as OpenCV's cvtColor documentation.
_RGB_TO_XYZ = jnp.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_XYZ_TO_RGB = jnp.array(
    [
        [3.240479, -1.53715, -0.498535],
        [-0.969256, 1.875991, 0.041556],
        [0.055648, -0.204043, 1.057311],
    ]
)
_WHITE_X, _WHITE_Z = 0.950456, 1.088754
_LUV_UN, _LUV_VN = 0.19793943, 0.46831096
_EPS = 1e-12


def _levels(x: jax.Array) -> jax.Array:
    """Rounds to 8-bit levels (half to even, as OpenCV's saturate_cast) and clips."""
    return jnp.clip(jnp.round(x), 0.0, 255.0)


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    return x[..., 0], x[..., 1], x[..., 2]


# --- YCrCb / YUV: linear, 128-centred chroma. ------------------------------------------------
def _luma(r, g, b):
    return 0.299 * r + 0.587 * g + 0.114 * b


def rgb_to_ycrcb(rgb: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB levels -> YCrCb levels (unrounded)."""
    r, g, b = _split(rgb)
    y = _luma(r, g, b)
    return jnp.stack([y, (r - y) * 0.713 + 128.0, (b - y) * 0.564 + 128.0], -1)


def ycrcb_to_rgb(ycc: jax.Array) -> jax.Array:
    """``[..., 3]`` YCrCb levels -> RGB levels (unrounded)."""
    y, cr, cb = _split(ycc)
    cr, cb = cr - 128.0, cb - 128.0
    return jnp.stack([y + 1.403 * cr, y - 0.714 * cr - 0.344 * cb, y + 1.773 * cb], -1)


def rgb_to_yuv(rgb: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB levels -> YUV levels (unrounded)."""
    r, g, b = _split(rgb)
    y = _luma(r, g, b)
    return jnp.stack([y, 0.492 * (b - y) + 128.0, 0.877 * (r - y) + 128.0], -1)


def yuv_to_rgb(yuv: jax.Array) -> jax.Array:
    """``[..., 3]`` YUV levels -> RGB levels (unrounded)."""
    y, u, v = _split(yuv)
    u, v = u - 128.0, v - 128.0
    return jnp.stack([y + 1.140 * v, y - 0.395 * u - 0.581 * v, y + 2.032 * u], -1)


# --- HSV / HLS: hue in OpenCV's 8-bit 0..180 (degrees / 2). ---------------------------------
def _hue_and_range(rgb: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r, g, b = _split(rgb / 255.0)
    high = jnp.max(rgb, -1) / 255.0
    low = jnp.min(rgb, -1) / 255.0
    span = high - low
    safe = jnp.where(span > 0, span, 1.0)
    hue = jnp.where(
        high == r,
        60.0 * (g - b) / safe,
        jnp.where(high == g, 120.0 + 60.0 * (b - r) / safe, 240.0 + 60.0 * (r - g) / safe),
    )
    hue = jnp.where(span > 0, jnp.mod(hue, 360.0), 0.0)
    return hue / 2.0, high, low


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB levels (integers) -> 8-bit HSV (H 0..180, S and V 0..255).

    OpenCV's 8-bit integer arithmetic (12-bit fixed-point division tables), so H and S are the
    levels ``cvtColor`` gives; already rounded.
    """
    r, g, b = (c.astype(jnp.int32) for c in _split(rgb))
    high = jnp.maximum(jnp.maximum(r, g), b)
    diff = high - jnp.minimum(jnp.minimum(r, g), b)
    shift, half = 12, 1 << 11
    # OpenCV's tables: round((255 << 12) / v) and round((180 << 12) / (6 d)), 0 at 0.
    sdiv = jnp.where(high > 0, jnp.round((255 << shift) / jnp.maximum(high, 1)), 0)
    hdiv = jnp.where(diff > 0, jnp.round((180 << shift) / (6.0 * jnp.maximum(diff, 1))), 0)
    sat = (diff * sdiv.astype(jnp.int32) + half) >> shift
    hue = jnp.where(high == r, g - b, jnp.where(high == g, b - r + 2 * diff, r - g + 4 * diff))
    hue = (hue * hdiv.astype(jnp.int32) + half) >> shift
    hue = jnp.where(hue < 0, hue + 180, hue)
    return jnp.stack([hue, sat, high], -1).astype(jnp.float32)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """8-bit HSV -> RGB levels (unrounded)."""
    h, s, v = _split(hsv)
    h, s, v = h * 2.0, s / 255.0, v / 255.0
    k = jnp.mod(jnp.array([5.0, 3.0, 1.0]) + h[..., None] / 60.0, 6.0)
    ramp = jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
    return (v[..., None] - v[..., None] * s[..., None] * ramp) * 255.0


def rgb_to_hls(rgb: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB levels -> 8-bit HLS (H 0..180, L and S 0..255), unrounded."""
    hue, high, low = _hue_and_range(rgb)
    light = (high + low) / 2.0
    total = jnp.where(light < 0.5, high + low, 2.0 - high - low)
    sat = jnp.where(high > low, (high - low) / jnp.maximum(total, _EPS), 0.0)
    return jnp.stack([hue, light * 255.0, sat * 255.0], -1)


def hls_to_rgb(hls: jax.Array) -> jax.Array:
    """8-bit HLS -> RGB levels (unrounded)."""
    h, light, s = _split(hls)
    h, light, s = h * 2.0, light / 255.0, s / 255.0
    a = (s * jnp.minimum(light, 1.0 - light))[..., None]
    k = jnp.mod(jnp.array([0.0, 8.0, 4.0]) + h[..., None] / 30.0, 12.0)
    ramp = jnp.clip(jnp.minimum(k - 3.0, 9.0 - k), -1.0, 1.0)
    return (light[..., None] - a * ramp) * 255.0


# --- Lab / Luv: through linear sRGB and XYZ. ------------------------------------------------
def _linear_rgb(rgb: jax.Array) -> jax.Array:
    c = rgb / 255.0
    return jnp.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _gamma_rgb(linear: jax.Array) -> jax.Array:
    c = jnp.clip(linear, 0.0, 1.0)
    return jnp.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055) * 255.0


def _lightness(y: jax.Array) -> jax.Array:
    return jnp.where(y > 0.008856, 116.0 * jnp.cbrt(y) - 16.0, 903.3 * y)


def _inverse_lightness(lightness: jax.Array) -> jax.Array:
    return jnp.where(lightness > 7.9996, ((lightness + 16.0) / 116.0) ** 3, lightness / 903.3)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB levels -> 8-bit Lab (L * 255 / 100, a + 128, b + 128), unrounded."""
    xyz = _linear_rgb(rgb) @ _RGB_TO_XYZ.T
    x, y, z = _split(xyz)
    x, z = x / _WHITE_X, z / _WHITE_Z

    def f(t):
        return jnp.where(t > 0.008856, jnp.cbrt(t), 7.787 * t + 16.0 / 116.0)

    lightness = _lightness(y) * 255.0 / 100.0
    return jnp.stack([lightness, 500.0 * (f(x) - f(y)) + 128.0, 200.0 * (f(y) - f(z)) + 128.0], -1)


def lab_to_rgb(lab: jax.Array) -> jax.Array:
    """8-bit Lab -> RGB levels (unrounded)."""
    lightness, a, b = _split(lab)
    lightness = lightness * 100.0 / 255.0
    y = _inverse_lightness(lightness)
    fy = jnp.where(lightness > 7.9996, (lightness + 16.0) / 116.0, 7.787 * y + 16.0 / 116.0)

    def f_inv(t):
        return jnp.where(t > 6.0 / 29.0, t**3, (t - 16.0 / 116.0) / 7.787)

    x = f_inv((a - 128.0) / 500.0 + fy) * _WHITE_X
    z = f_inv(fy - (b - 128.0) / 200.0) * _WHITE_Z
    return _gamma_rgb(jnp.stack([x, y, z], -1) @ _XYZ_TO_RGB.T)


def rgb_to_luv(rgb: jax.Array) -> jax.Array:
    """``[..., 3]`` RGB levels -> 8-bit Luv, unrounded.

    8-bit scaling: ``L * 255 / 100``, ``(u + 134) * 255 / 354``, ``(v + 140) * 255 / 262``.
    """
    x, y, z = _split(_linear_rgb(rgb) @ _RGB_TO_XYZ.T)
    lightness = _lightness(y)
    denom = jnp.maximum(x + 15.0 * y + 3.0 * z, _EPS)
    u = 13.0 * lightness * (4.0 * x / denom - _LUV_UN)
    v = 13.0 * lightness * (9.0 * y / denom - _LUV_VN)
    return jnp.stack(
        [lightness * 255.0 / 100.0, (u + 134.0) * 255.0 / 354.0, (v + 140.0) * 255.0 / 262.0], -1
    )


def luv_to_rgb(luv: jax.Array) -> jax.Array:
    """8-bit Luv -> RGB levels (unrounded), in OpenCV's form (``vp`` clamped to +-0.25)."""
    lightness, u, v = _split(luv)
    lightness = lightness * 100.0 / 255.0
    u = u * 354.0 / 255.0 - 134.0
    v = v * 262.0 / 255.0 - 140.0
    y = jnp.where(lightness >= 8.0, ((lightness + 16.0) / 116.0) ** 3, lightness / 903.3)
    up = 3.0 * (u + lightness * 13.0 * _LUV_UN)
    denom = v + lightness * 13.0 * _LUV_VN
    vp = jnp.clip(0.25 / jnp.where(denom == 0, _EPS, denom), -0.25, 0.25)
    x = y * 3.0 * up * vp
    z = y * ((12.0 * 13.0 * lightness - up) * vp - 5.0)
    return _gamma_rgb(jnp.stack([x, y, z], -1) @ _XYZ_TO_RGB.T)


CONVERSIONS: dict[str, tuple[Callable, Callable]] = {
    "YCrCb": (rgb_to_ycrcb, ycrcb_to_rgb),
    "HSV": (rgb_to_hsv, hsv_to_rgb),
    "HLS": (rgb_to_hls, hls_to_rgb),
    "Lab": (rgb_to_lab, lab_to_rgb),
    "Luv": (rgb_to_luv, luv_to_rgb),
    "YUV": (rgb_to_yuv, yuv_to_rgb),
}


def to_space(rgb_levels: jax.Array, space: str) -> jax.Array:
    """``[..., 3]`` RGB levels 0..255 -> the 8-bit levels OpenCV's ``cvtColor`` gives."""
    return _levels(CONVERSIONS[space][0](rgb_levels))


def from_space(levels: jax.Array, space: str) -> jax.Array:
    """8-bit levels of ``space`` -> RGB levels 0..255 (rounded, as ``cvtColor`` to uint8)."""
    return _levels(CONVERSIONS[space][1](levels))


def multiply_add_levels(
    channel: jax.Array, mul: jax.Array, add: jax.Array, mul_first: jax.Array
) -> jax.Array:
    """The uint8 ``Multiply`` and ``Add`` tables of imgaug on a channel of levels, in either order.

    Args:
      channel: levels 0..255 (any shape).
      mul: scalar factor; the table is ``floor(clip(v * mul, 0, 255))`` in float32.
      add: scalar integer offset; the table is ``clip(v + add, 0, 255)``.
      mul_first: scalar bool: multiply then add, or add then multiply.

    Returns:
      Levels 0..255, same shape.
    """

    def multiply(v):
        return jnp.floor(jnp.clip(v.astype(jnp.float32) * mul.astype(jnp.float32), 0.0, 255.0))

    def plus(v):
        return jnp.clip(v + add, 0.0, 255.0)

    return jnp.where(mul_first, plus(multiply(channel)), multiply(plus(channel)))


def brightness_in_space(
    rgb_levels: jax.Array, space: str, mul: jax.Array, add: jax.Array, mul_first: jax.Array
) -> jax.Array:
    """One colour space of ``MultiplyAndAddToBrightness`` on RGB levels ``[..., 3]``."""
    channel = BRIGHTNESS_CHANNEL[space]
    converted = to_space(rgb_levels, space)
    changed = multiply_add_levels(converted[..., channel], mul, add, mul_first)
    return from_space(converted.at[..., channel].set(changed), space)


def brightness_levels(
    rgb_levels: jax.Array, space_index: jax.Array, mul: jax.Array, add: jax.Array, mul_first
) -> jax.Array:
    """``MultiplyAndAddToBrightness`` with given draws; ``lax.switch`` over :data:`SPACES`.

    Args:
      rgb_levels: ``[H, W, 3]`` levels 0..255 (float), in the channel order imgaug takes as RGB.
      space_index: int scalar, index into :data:`SPACES`.
      mul: float scalar factor.
      add: integer-valued scalar offset.
      mul_first: bool scalar order.

    Returns:
      ``[H, W, 3]`` levels 0..255.
    """
    branches = [
        (lambda x, m, a, o, s=space: brightness_in_space(x, s, m, a, o)) for space in SPACES
    ]
    return jax.lax.switch(space_index, branches, rgb_levels, mul, add, mul_first)


def draw_brightness_params(
    key: jax.Array, mul_range: tuple[float, float] = (0.8, 1.2), add_range=(-30.0, 30.0)
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The random draws of imgaug's ``MultiplyAndAddToBrightness``, one image.

    Colour space ~ U{0..5}, ``mul ~ U(mul_range)``, ``add = round(U(add_range))`` (half to
    even) and the order (multiply first with probability 0.5).

    Returns:
      ``(space_index, mul, add, mul_first)`` scalars.
    """
    k_space, k_mul, k_add, k_order = jax.random.split(key, 4)
    space = jax.random.randint(k_space, (), 0, len(SPACES))
    mul = jax.random.uniform(k_mul, (), minval=mul_range[0], maxval=mul_range[1])
    add = jnp.round(jax.random.uniform(k_add, (), minval=add_range[0], maxval=add_range[1]))
    return space, mul, add, jax.random.bernoulli(k_order, 0.5)


def brightness_official(key: jax.Array, image: jax.Array) -> jax.Array:
    """``MultiplyAndAddToBrightness(mul=(0.8, 1.2), add=(-30, 30))`` of imgaug. [H, W, 3].

    Args:
      key: PRNG key.
      image: ``[H, W, 3]`` RGB image in [0, 1]; quantised to 8-bit levels first.

    Returns:
      ``[H, W, 3]`` image in [0, 1] on the 8-bit grid.

    DRAEM's ``data_loader.py`` reads images with OpenCV (BGR) and imgaug converts them as if
    they were RGB, so the channels are reversed around the conversion to compute what the
    official code computes.
    """
    space, mul, add, mul_first = draw_brightness_params(key)
    levels = jnp.clip(jnp.floor(image * 255.0 + 0.5), 0.0, 255.0)
    out = brightness_levels(levels[..., ::-1], space, mul, add, mul_first)
    return out[..., ::-1] / 255.0
