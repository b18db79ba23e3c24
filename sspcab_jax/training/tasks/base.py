"""What the training loop needs from a model family: the :class:`Task` interface.

A task is built once from the experiment config. It is the only place that reads the family's
config group (``config.draem``, ``config.autoencoder``, ...) and turns it into a module, a train
step and an eval step; the loop, evaluation and the run commands only call its methods.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import ml_collections
import numpy as np
from flax import linen as nn

from sspcab_jax.detector.local_fusion import LocalFusion, fuse_eval_step
from sspcab_jax.training.state import DTYPES

Array = jax.Array
TrainStep = Callable[..., tuple[Any, dict[str, Array]]]
EvalStep = Callable[..., dict[str, Array]]


def block_factory(fields: dict[str, Any], base: Callable[..., nn.Module], names: tuple[str, ...]):
    """Pop the config's ``sspcab_<name>`` fields into ``functools.partial(base, <name>=...)``.

    Args:
      fields: a copy of the family's config group; the block fields are removed from it.
      base: the block class (or the placement's default factory) to configure.
      names: the block fields the config may set.

    Returns:
      The SSPCAB module factory the model's ``sspcab`` field takes.
    """
    block = {n: fields.pop(f"sspcab_{n}") for n in names if f"sspcab_{n}" in fields}
    # A None value (e.g. ``sspcab_activation``) keeps the placement's default.
    return functools.partial(base, **{k: v for k, v in block.items() if v is not None})


class Task(abc.ABC):
    """One model family, configured by an experiment config.

    Subclasses set ``name`` (the ``config.model`` value that selects them) and implement the
    abstract methods; register them in ``sspcab_jax.training.tasks.TASKS``.

    Attributes:
      name: the value of ``config.model`` for this family.
      reads_videos: whether the family trains on video datasets (frames or clips).
      synthesizes_anomalies: whether :meth:`synthesize_anomalies` makes training-style
        anomalies (DRAEM); calibration then estimates the recall on them.
      anomaly_map_range: the fixed value range of its anomaly maps (e.g. probabilities), or None
        when maps are unbounded and must be scaled per set of images for display.
      config: the experiment config the task was built from.
    """

    name: ClassVar[str]
    reads_videos: ClassVar[bool] = False
    synthesizes_anomalies: ClassVar[bool] = False
    anomaly_map_range: ClassVar[tuple[float, float] | None] = None

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        # Set once fitted or loaded (``calibration.fuse_local_statistics``): scoring_step uses it.
        self.local_fusion: LocalFusion | None = None

    @property
    def dtypes(self) -> tuple[Any, Any]:
        """``(dtype, param_dtype)``: the computation and parameter dtypes of the config."""
        c = self.config
        return DTYPES[c.get("dtype", "float32")], DTYPES[c.get("param_dtype", "float32")]

    @property
    def init_kwargs(self) -> Mapping[str, Any]:
        """Keyword arguments of ``model.init`` / ``model.tabulate`` besides the input."""
        return {}

    @abc.abstractmethod
    def create_model(self, bn_axis_name: str | None = None) -> nn.Module:
        """The unbound Flax module of this config.

        Args:
          bn_axis_name: the ``pmap`` axis BatchNorm statistics are averaged over, or None.
        """

    @abc.abstractmethod
    def input_shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """Shape of one model input batch, e.g. ``[B, H, W, C]``."""

    def to_model_input(self, images: np.ndarray) -> np.ndarray:
        """Host batches of the data pipeline ``[B, ..., 3]`` -> the model's input channels."""
        return images

    @abc.abstractmethod
    def train_step(self, model: nn.Module, axis_name: str | None) -> TrainStep:
        """The pure step ``(state, batch, key, sources) -> (state, metrics)`` of ``model``."""

    @abc.abstractmethod
    def eval_step(self, model: nn.Module) -> EvalStep:
        """The pure ``(state, images) -> {'anomaly_map' [B, H, W], 'score' [B], ...}`` step."""

    def scoring_step(self, model: nn.Module) -> EvalStep:
        """The step every evaluation scores with: :meth:`eval_step`, fused when fitted.

        With ``local_fusion`` set, ``anomaly_map`` and ``score`` are the fused ones
        (:mod:`sspcab_jax.detector.local_fusion`) and the model's map is ``model_anomaly_map``.
        """
        step = self.eval_step(model)
        if self.local_fusion is None:
            return step
        return fuse_eval_step(step, self.local_fusion, self.image_score_fn())

    def image_score_fn(self) -> Callable[[Array], Array] | None:
        """The family's image-score rule ``map [N, H, W] -> [N]`` (as its eval step scores).

        Used to score stitched maps of tiled images; None when the family has no such rule.
        """
        return None

    def synthesize_anomalies(self, keys: Array, images: Array, sources: Array | None) -> Any:
        """Training-style synthetic anomalies on ``images`` ``[B, H, W, C]``, or None.

        Families that synthesise anomalies while training return ``{'augmented', 'mask'
        [B, H, W, 1], 'has_anomaly' [B]}`` with every sample anomalous; the calibration's
        synthetic-recall estimate scores them. Others return None (no estimate).
        """
        del keys, images, sources
        return None

    def anomaly_sources(self) -> np.ndarray | None:
        """Host textures ``[S, H, W, 3]`` the train step reads, or None when it reads none."""
        return None

    def stronger_recipe(self) -> str:
        """What to train next when the run looks weak, judged from its own config.

        Returns:
          A clause for the weak-model warning, e.g. ``"train longer, e.g. ..."``.
        """
        return f"train longer, e.g. --config.total_steps={2 * self.config.total_steps}"

    def summary(self) -> dict[str, Any]:
        """The run-describing fields of ``metrics.json`` (model, where SSPCAB sits, ...)."""
        return {"model": self.name}

    @abc.abstractmethod
    def validate(self) -> None:
        """Check the family's own config fields.

        Raises:
          ValueError: naming the first invalid field (see ``config_checks.fail``).
        """
