"""DRAEM (+SSPCAB): ``config.model = 'draem'``, fields in ``config.draem``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from flax import linen as nn

from sspcab_jax.models import Draem, default_sspcab, image_score
from sspcab_jax.models.common import INIT_SCHEMES, sspcab_kernel_init
from sspcab_jax.models.draem import PLACEMENTS
from sspcab_jax.synthesis.draem import SynthesisConfig, synthesize_from_keys
from sspcab_jax.training.config_checks import fail
from sspcab_jax.training.data_setup import build_anomaly_sources
from sspcab_jax.training.steps import draem_eval_step, draem_train_step
from sspcab_jax.training.tasks.base import EvalStep, Task, TrainStep, block_factory

# Config fields ``draem.sspcab_<name>`` handed to the block factory as ``<name>``.
BLOCK_FIELDS = ("kernel_size", "dilation", "reduction_ratio", "attention", "activation")
# configs/draem_folder.py:cpu (the first step up from the demo recipe) and the paper's widths.
FOLDER_CPU_STEPS, FOLDER_CPU_WIDTHS = 2000, (32, 16)
PAPER_WIDTHS = (128, 64)


class DraemTask(Task):
    """DRAEM: reconstructive + discriminative networks, anomalies synthesised in the step.

    Its anomaly maps are probabilities, so they are displayed on the fixed range [0, 1].
    """

    name: ClassVar[str] = "draem"
    anomaly_map_range: ClassVar[tuple[float, float] | None] = (0.0, 1.0)
    synthesizes_anomalies: ClassVar[bool] = True

    @property
    def init_kwargs(self) -> Mapping[str, Any]:
        """``train=False``: BatchNorm uses its running statistics."""
        return {"train": False}

    def create_model(self, bn_axis_name: str | None = None) -> nn.Module:
        """A :class:`~sspcab_jax.models.Draem` with the fields of ``config.draem``."""
        # The whole config -> Draem translation lives here.
        fields = dict(self.config.draem)
        fields["disc_input_order"] = tuple(
            fields.get("disc_input_order", ("reconstruction", "image"))
        )
        base = default_sspcab(fields.get("sspcab_placement", "none"))
        # Runs saved before the field existed had PyTorch's default.
        kernel_init = sspcab_kernel_init(fields.pop("sspcab_init", "pytorch"))
        if kernel_init is not None:
            base = functools.partial(base, kernel_init=kernel_init)
        fields["sspcab"] = block_factory(fields, base, BLOCK_FIELDS)
        dtype, param_dtype = self.dtypes
        return Draem(**fields, bn_axis_name=bn_axis_name, dtype=dtype, param_dtype=param_dtype)

    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """``[B, H, W, 3]`` RGB images."""
        size = self.config.data.image_size
        return (batch_size, size, size, 3)

    def to_model_input(self, images: np.ndarray) -> np.ndarray:
        """RGB batches, flipped to BGR when ``data.channel_order='bgr'`` (official weights)."""
        if self.config.data.get("channel_order", "rgb") == "bgr":
            return images[..., ::-1]
        return images

    def train_step(self, model: nn.Module, axis_name: str | None) -> TrainStep:
        """``draem_train_step`` with the synthesis, loss weights and focal form of the config."""
        c = self.config
        return functools.partial(
            draem_train_step,
            model=model,
            synthesis=self.synthesis_config(),
            sspcab_lambda=c.sspcab_lambda,
            focal=c.focal,
            axis_name=axis_name,
        )

    def synthesis_config(self) -> SynthesisConfig:
        """The anomaly synthesis of ``config.synthesis`` that the train step uses."""
        s = self.config.synthesis
        return SynthesisConfig(
            clean_prob=s.clean_prob,
            opacity_range=tuple(s.opacity_range),
            rotate_prob=s.rotate_prob,
            brightness=s.get("brightness", "ycrcb"),
            perlin_max_log2_res=s.get("perlin_max_log2_res", 5),
            perlin_source_prob=s.get("perlin_source_prob", 0.0),
            self_source_prob=s.get("self_source_prob", 0.0),
        )

    def stronger_recipe(self) -> str:
        """Beyond the run's own recipe: the folder recipe, then the paper's widths, then steps."""
        steps = self.config.total_steps
        widths = (self.config.draem.recon_width, self.config.draem.disc_width)
        if steps < FOLDER_CPU_STEPS or any(
            w < f for w, f in zip(widths, FOLDER_CPU_WIDTHS, strict=True)
        ):
            return (
                "train longer and wider, e.g. with configs/draem_folder.py (more total_steps, "
                "wider draem.recon_width / draem.disc_width)"
            )
        if any(w < p for w, p in zip(widths, PAPER_WIDTHS, strict=True)):
            return (
                f"train longer (--config.total_steps={2 * steps}) or with the paper's networks "
                "(configs/draem_folder.py:gpu, widths 128/64)"
            )
        return super().stronger_recipe()

    def synthesize_anomalies(self, keys, images, sources) -> dict[str, Any]:
        """The training synthesis with every sample made anomalous (``clean_prob=0``).

        Args:
          keys: ``[B]`` PRNG keys, one per image.
          images: ``[B, H, W, 3]`` model inputs in [0, 1] (as the train step synthesises on).
          sources: anomaly-source textures ``[S, H, W, 3]`` or None (Perlin textures).

        Returns:
          :func:`~sspcab_jax.synthesis.draem.synthesize_from_keys`'s ``augmented``
          ``[B, H, W, 3]``, ``mask`` ``[B, H, W, 1]`` and ``has_anomaly`` ``[B]``.
        """
        config = dataclasses.replace(self.synthesis_config(), clean_prob=0.0)
        return synthesize_from_keys(keys, images, sources, config=config)

    def eval_step(self, model: nn.Module) -> EvalStep:
        """``draem_eval_step`` with the config's ``image_score``."""
        return functools.partial(draem_eval_step, model=model, score_mode=self.config.image_score)

    def image_score_fn(self):
        """``image_score`` with the config's mode (official: max after the 21x21 mean filter)."""
        return functools.partial(image_score, mode=self.config.image_score)

    def anomaly_sources(self) -> np.ndarray | None:
        """The textures of ``config.data.anomaly_sources`` (None: Perlin textures)."""
        return build_anomaly_sources(self.config)

    def summary(self) -> dict[str, Any]:
        """The model, its SSPCAB placement and the data-handling choices behind the numbers."""
        c = self.config
        return {
            "model": self.name,
            "sspcab_placement": c.draem.sspcab_placement,
            "init_scheme": c.draem.init_scheme,
            "sspcab_init": c.draem.get("sspcab_init", "pytorch"),
            "anomaly_sources": c.data.get("anomaly_sources", "auto"),
            "resize": c.data.get("resize", "pil"),
            "mask_rule": c.data.get("mask_rule", "nearest"),
            "brightness": c.synthesis.get("brightness", "ycrcb"),
            "channel_order": c.data.get("channel_order", "rgb"),
            "texture_bank_size": c.data.get("texture_bank_size", 0),
            "texture_refresh_every": c.data.get("texture_refresh_every", 0),
        }

    def validate(self) -> None:
        """Check the placement, the widths and an image size DRAEM can pool."""
        d, size = self.config.draem, self.config.data.image_size
        if d.sspcab_placement not in PLACEMENTS:
            fail("draem.sspcab_placement", d.sspcab_placement, f"one of {PLACEMENTS}")
        if d.get("sspcab_init", "pytorch") not in INIT_SCHEMES:
            fail("draem.sspcab_init", d.sspcab_init, f"one of {INIT_SCHEMES}")
        if not isinstance(size, int) or size < 32 or size % 32:
            fail("data.image_size", size, "a multiple of 32 (DRAEM pools five times)")
        data = self.config.data
        if data.get("texture_bank_size", 0) < 0:
            fail("data.texture_bank_size", data.texture_bank_size, "0 (no bank) or more")
        if data.get("texture_bank_size", 0) and data.texture_refresh_every < 1:
            fail("data.texture_refresh_every", data.texture_refresh_every, "a positive integer")
        for field in ("recon_width", "disc_width"):
            if d[field] < 1:
                fail(f"draem.{field}", d[field], "a positive integer")
        log2_res = self.config.synthesis.get("perlin_max_log2_res", 5)
        if not isinstance(log2_res, int) or not 0 <= log2_res <= 8:
            fail("synthesis.perlin_max_log2_res", log2_res, "an integer in [0, 8]")
        for field in ("perlin_source_prob", "self_source_prob"):
            prob = self.config.synthesis.get(field, 0.0)
            if not 0.0 <= prob <= 1.0:
                fail(f"synthesis.{field}", prob, "a probability in [0, 1]")
