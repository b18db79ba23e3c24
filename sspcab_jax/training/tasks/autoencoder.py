"""The plain convolutional auto-encoder (+SSPCAB): ``config.model = 'autoencoder'``."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from sspcab_jax.layers import SSPCAB
from sspcab_jax.models import ConvAutoencoder
from sspcab_jax.models.autoencoder import POSITIONS
from sspcab_jax.training.config_checks import fail
from sspcab_jax.training.data_setup import is_video
from sspcab_jax.training.steps import autoencoder_eval_step, autoencoder_train_step
from sspcab_jax.training.tasks.base import EvalStep, Task, TrainStep, block_factory

# ITU-R BT.601 luma weights: RGB frames -> the grayscale frames of a 1-channel auto-encoder.
LUMA = (0.299, 0.587, 0.114)


# Config fields ``autoencoder.sspcab_<name>`` handed to the block factory as ``<name>``; the
# auto-encoder keeps ``sspcab_dilation`` and ``masked_centre`` itself (they are per position).
BLOCK_FIELDS = ("kernel_size", "reduction_ratio", "attention")


def mean_map(amap: jax.Array) -> jax.Array:
    """``[N, H, W] -> [N]``: each map's mean, the auto-encoder's image score."""
    return jnp.mean(amap, axis=(1, 2))


class AutoencoderTask(Task):
    """Reconstruction auto-encoder on images, video frames or clips (``spatial_dims=3``).

    Its anomaly maps are reconstruction errors (unbounded), displayed on their own range.
    """

    name: ClassVar[str] = "autoencoder"
    reads_videos: ClassVar[bool] = True

    def create_model(self, bn_axis_name: str | None = None) -> nn.Module:
        """A ``ConvAutoencoder`` with the fields of ``config.autoencoder``."""
        del bn_axis_name  # no BatchNorm
        # The whole config -> ConvAutoencoder translation lives here.
        fields = dict(self.config.autoencoder)
        fields["sspcab_positions"] = tuple(fields.get("sspcab_positions", ()))
        fields["sspcab"] = block_factory(fields, SSPCAB, BLOCK_FIELDS)
        dtype, param_dtype = self.dtypes
        return ConvAutoencoder(**fields, dtype=dtype, param_dtype=param_dtype)

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """``[B, H, W, C]``, or ``[B, T, H, W, C]`` for clips (``spatial_dims=3``)."""
        c = self.config
        size, channels = c.data.image_size, c.autoencoder.channels
        if c.autoencoder.get("spatial_dims", 2) == 3:
            return (batch_size, c.data.get("clip_length", 0) or 0, size, size, channels)
        return (batch_size, size, size, channels)

    def to_model_input(self, images: np.ndarray) -> np.ndarray:
        """RGB ``[..., 3]`` -> luma ``[..., 1]`` for a grayscale model; otherwise unchanged."""
        if self.config.autoencoder.channels == 1 and images.shape[-1] == 3:
            return images @ np.asarray(LUMA, images.dtype)[:, None]
        return images

    def train_step(self, model: nn.Module, axis_name: str | None) -> TrainStep:
        """``autoencoder_train_step`` with the config's ``sspcab_lambda``."""
        return functools.partial(
            autoencoder_train_step,
            model=model,
            sspcab_lambda=self.config.sspcab_lambda,
            axis_name=axis_name,
        )

    def eval_step(self, model: nn.Module) -> EvalStep:
        """``autoencoder_eval_step``: reconstruction-error maps and scores."""
        return functools.partial(autoencoder_eval_step, model=model)

    def image_score_fn(self):
        """The mean of each map (the eval step's per-image score)."""
        return mean_map

    def summary(self) -> dict[str, Any]:
        """SSPCAB positions; for video runs also the placement and evaluation settings."""
        c, ae = self.config, self.config.autoencoder
        summary: dict[str, Any] = {
            "model": self.name,
            "sspcab_positions": list(ae.sspcab_positions),
        }
        if is_video(c):
            summary.update(
                placement="+".join(ae.sspcab_positions) or "none",
                masked_centre=int(ae.masked_centre),
                spatial_dims=int(ae.spatial_dims),
                clip_length=int(c.data.clip_length or 0),
                dataset=c.data.dataset,
                image_size=int(c.data.image_size),
                video_eval=c.video_eval.to_dict(),
            )
        return summary

    def validate(self) -> None:
        """Check the positions, an image size it can pool and, for videos, frames or clips."""
        ae, size = self.config.autoencoder, self.config.data.image_size
        if set(ae.sspcab_positions) - set(POSITIONS):
            fail("autoencoder.sspcab_positions", ae.sspcab_positions, f"a subset of {POSITIONS}")
        if not isinstance(size, int) or size < 8 or size % 8:
            fail("data.image_size", size, "a multiple of 8 (the auto-encoder pools three times)")
        if is_video(self.config):
            self._validate_frames_or_clips()

    def _validate_frames_or_clips(self) -> None:
        clip = self.config.data.get("clip_length", 0) or 0
        dims = self.config.autoencoder.get("spatial_dims", 2)
        if dims == 3 and clip < 2:
            fail("data.clip_length", clip, "the clip length T >= 2 for autoencoder.spatial_dims=3")
        if dims == 2 and clip:
            fail("data.clip_length", clip, "0 (single frames) for autoencoder.spatial_dims=2")
