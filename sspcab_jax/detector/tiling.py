"""Overlapping tiles over a large image and overlap-weighted stitching of their maps.

Grid: along an axis of length ``L`` with tile ``T`` and overlap ``o`` (stride ``s = T - o``) the
tile origins are ``0, s, 2s, ...`` while a tile still ends inside the image, and the last tile
is aligned to the border (origin ``L - T``), so every pixel is covered and no tile is padded.

Stitching: each tile's map is weighted by a separable window that is 1 in the tile's interior
and ramps down linearly (but stays > 0) over the ``o`` pixels next to each edge; the stitched
map is the weighted sum divided by the summed weights. Where a single tile covers a pixel the
weight cancels, so the image border is never attenuated, and equal tile maps stitch to the same
value (no seams).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions of the tiles along one axis (module docstring).

    Args:
      length: image side ``L`` (>= ``tile``).
      tile: tile side ``T``.
      overlap: pixels shared by neighbouring tiles, ``0 <= overlap < tile``.

    Returns:
      Increasing origins; the first is 0 and the last ``length - tile``.
    """
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile_size), got {overlap} for {tile}.")
    if length < tile:
        raise ValueError(f"An image side of {length} is smaller than the tile ({tile}).")
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    return [min(i * stride, length - tile) for i in range(count)]


def tile_window(tile: int, overlap: int) -> np.ndarray:
    """1-D stitching weights ``[tile]``: 1 inside, linear ramp over ``overlap`` pixels per edge."""
    position = np.arange(tile, dtype=np.float64)
    ramp = np.minimum(position + 1, tile - position) / (overlap + 1)
    return np.minimum(ramp, 1.0).astype(np.float32)


def _grid(size: tuple[int, int], tile: tuple[int, int], overlap: tuple[int, int]) -> np.ndarray:
    """Tile origins ``[K, 2]`` (row-major) of an image of ``size``."""
    ys = tile_origins(size[0], tile[0], overlap[0])
    xs = tile_origins(size[1], tile[1], overlap[1])
    return np.asarray([(y, x) for y in ys for x in xs], np.int32)


def extract_tiles(images: Array, tile: tuple[int, int], overlap: tuple[int, int]) -> Array:
    """Cuts ``[N, H, W, C]`` into ``[N, K, th, tw, C]`` tiles (row-major over the grid).

    ``overlap`` is ``(rows, columns)`` shared by neighbouring tiles.
    """
    grid = jnp.asarray(_grid(images.shape[1:3], tile, overlap))
    channels = images.shape[-1]

    def cut(image, origin):
        return jax.lax.dynamic_slice(image, (origin[0], origin[1], 0), tile + (channels,))

    return jax.vmap(lambda image: jax.vmap(lambda o: cut(image, o))(grid))(images)


def stitch_maps(maps: Array, size: tuple[int, int], overlap: tuple[int, int]) -> Array:
    """Weighted average of tile maps ``[N, K, th, tw]`` into ``[N, H, W]`` (module docstring)."""
    n, k, th, tw = maps.shape
    grid = _grid(size, (th, tw), overlap)
    window = np.outer(tile_window(th, overlap[0]), tile_window(tw, overlap[1]))
    weight = np.zeros(tuple(size), np.float32)  # static: depends only on the grid
    for y, x in grid:
        weight[y : y + th, x : x + tw] += window
    weighted = maps.astype(jnp.float32) * jnp.asarray(window)
    origins = jnp.asarray(grid)

    # A loop of in-place slice updates: compile time and memory do not grow with K.
    def add_tile(i, total):
        y, x = origins[i, 0], origins[i, 1]
        current = jax.lax.dynamic_slice(total, (0, y, x), (n, th, tw))
        return jax.lax.dynamic_update_slice(total, current + weighted[:, i], (0, y, x))

    total = jax.lax.fori_loop(0, k, add_tile, jnp.zeros((n,) + tuple(size), jnp.float32))
    return total / jnp.asarray(weight)


def tiled_inference(
    model_fn: Callable[[Array], tuple[Array, Array]],
    score_fn: Callable[[Array], Array],
    images: Array,
    tile: tuple[int, int],
    overlap: tuple[int, int],
    chunk: int,
) -> tuple[Array, Array]:
    """Maps and scores of large images from tiles, in one traceable function.

    All tiles of the batch go through ``model_fn`` inside one ``lax.map`` over chunks of
    ``chunk`` tiles (bounded memory, one compiled network call).

    Args:
      model_fn: ``[B, th, tw, C] -> (map [B, th, tw], score [B])``.
      score_fn: the model's image-score rule, ``[N, H, W] -> [N]``.
      images: ``[N, H, W, C]`` model input, H >= th and W >= tw.
      tile: ``(th, tw)``, the model's input size.
      overlap: tile overlap ``(rows, columns)`` in pixels.
      chunk: tiles per network call.

    Returns:
      ``(stitched map [N, H, W], score [N])``.
    """
    n = images.shape[0]
    tiles = extract_tiles(images, tile, overlap)
    k = tiles.shape[1]
    flat = tiles.reshape((n * k,) + tiles.shape[2:])
    # Equal chunks of at most ``chunk`` tiles, padded as little as possible (25 tiles at
    # chunk 8 run as 4 x 7, not 4 x 8).
    count = -(-(n * k) // max(1, chunk))
    size = -(-(n * k) // count)
    padded = count * size
    flat = jnp.concatenate([flat, jnp.zeros((padded - n * k,) + flat.shape[1:], flat.dtype)])
    if count == 1:
        maps = model_fn(flat)[0]
    else:
        chunks = flat.reshape((count, size) + flat.shape[1:])
        maps = jax.lax.map(lambda batch: model_fn(batch)[0], chunks)
    maps = maps.reshape((padded,) + tuple(tile))[: n * k].reshape((n, k) + tuple(tile))
    stitched = stitch_maps(maps, images.shape[1:3], overlap)
    return stitched, score_fn(stitched)
