"""Validation of the config fields every family shares: clear errors before anything compiles.

Each family checks its own fields in its task (``sspcab_jax.training.tasks``);
``tasks.validate_config`` runs both. :func:`fail` is the one way a check reports a bad field.
"""

from __future__ import annotations

from typing import NoReturn

import ml_collections

from sspcab_jax.data.folder import list_folder_test
from sspcab_jax.data.images import DatasetNotFoundError
from sspcab_jax.training.data_setup import DATASETS
from sspcab_jax.training.evaluation import METRIC_NAMES
from sspcab_jax.training.parallel import MODES
from sspcab_jax.training.state import DTYPES, OPTIMIZERS, SCHEDULES
from sspcab_jax.training.video_eval import FRAME_SCORES

POSITIVE_INTS = ("batch_size", "checkpoint_every_steps", "log_every_steps", "keep_checkpoints")


CHANNEL_ORDERS = ("rgb", "bgr")


class ConfigError(ValueError):
    """An invalid config field; the message names the field, the value and the fix."""


def fail(field: str, value: object, expected: str) -> NoReturn:
    """Raise the error of an invalid config field.

    Raises:
      ConfigError: ``config.<field>=<value> is invalid: expected <expected>`` and how to fix it.
    """
    raise ConfigError(
        f"config.{field}={value!r} is invalid: expected {expected}. Fix it in the config file or "
        f"with --config.{field}=..."
    )


def check_shared_fields(config: ml_collections.ConfigDict) -> None:
    """Check the fields every family reads (see ``configs/default.py``).

    Raises:
      ValueError: naming the first invalid field, its value and what is expected.
    """
    for check in (_check_run, _check_length, _check_optimizer, _check_data):
        check(config)


def _check_run(config: ml_collections.ConfigDict) -> None:
    if config.parallel not in MODES:
        fail("parallel", config.parallel, f"one of {MODES}")
    for field in ("dtype", "param_dtype"):
        if config.get(field, "float32") not in DTYPES:
            fail(field, config[field], f"one of {tuple(DTYPES)}")
    if config.best_metric and config.best_metric not in METRIC_NAMES:
        fail("best_metric", config.best_metric, f"'' or one of {METRIC_NAMES}")


def _check_length(config: ml_collections.ConfigDict) -> None:
    for field in POSITIVE_INTS:
        value = config[field]
        if not isinstance(value, int) or value < 1:
            fail(field, value, "a positive integer")
    if config.total_steps < 1 and config.get("epochs", 0) < 1:
        fail("total_steps", config.total_steps, "a positive integer (or set epochs > 0)")
    if config.get("eval_every_steps", 0) < 0:
        fail("eval_every_steps", config.eval_every_steps, "0 (only at the end) or a positive int")


def _check_optimizer(config: ml_collections.ConfigDict) -> None:
    if not config.learning_rate > 0:
        fail("learning_rate", config.learning_rate, "a positive number")
    if config.get("optimizer", "adam") not in OPTIMIZERS:
        fail("optimizer", config.optimizer, f"one of {OPTIMIZERS}")
    if config.schedule not in SCHEDULES:
        fail("schedule", config.schedule, f"one of {SCHEDULES}")
    if any(not 0 < f < 1 for f in config.lr_milestones):
        fail("lr_milestones", config.lr_milestones, "fractions of total_steps in (0, 1)")
    if config.sspcab_lambda < 0:
        fail("sspcab_lambda", config.sspcab_lambda, "a number >= 0")


def _check_data(config: ml_collections.ConfigDict) -> None:
    if config.data.dataset not in DATASETS:
        fail("data.dataset", config.data.dataset, f"one of {DATASETS}")
    if config.data.get("channel_order", "rgb") not in CHANNEL_ORDERS:
        fail("data.channel_order", config.data.channel_order, f"one of {CHANNEL_ORDERS}")
    if not 0 <= config.data.get("val_fraction", 0.0) < 1:
        fail("data.val_fraction", config.data.val_fraction, "in [0, 1) (0: no calibration)")
    _check_val_dir(config.data.get("val_dir", ""))
    rate = config.get("calibration", {}).get("false_alarm_rate", 0.01)
    if not 0 <= rate < 1:
        fail("calibration.false_alarm_rate", rate, "in [0, 1)")


def _check_val_dir(val_dir: str) -> None:
    """A set ``data.val_dir`` must hold images in sub-folders (``good/`` and defect folders)."""
    if not val_dir:
        return
    expected = (
        "a folder with good/ and defect sub-folders of images (MVTec layout), or '' to "
        "calibrate on the data.val_fraction share"
    )
    try:
        list_folder_test(val_dir, check_images=False)
    except (DatasetNotFoundError, OSError):
        fail("data.val_dir", val_dir, expected)


def check_video_eval(config: ml_collections.ConfigDict) -> None:
    """Check ``config.video_eval`` (the conventions of ``video_eval``) for a video dataset.

    Raises:
      ValueError: naming the first invalid field.
    """
    v = config.get("video_eval")
    if v is None:
        raise ValueError("config.video_eval is missing: start from configs/default.py.")
    if v.frame_score not in FRAME_SCORES:
        fail("video_eval.frame_score", v.frame_score, f"one of {FRAME_SCORES}")
    if v.sigma < 0 or v.map_sigma < 0:
        fail("video_eval.sigma", (v.sigma, v.map_sigma), "sigma and map_sigma >= 0 (0: none)")
    if v.pad_each_video and not v.normalise:
        fail("video_eval.pad_each_video", True, "False, or normalise=True (padding needs [0, 1])")
    if v.region_threshold < 0 or not 0 < v.region_quantile < 1:
        fail("video_eval.region_quantile", v.region_quantile, "in (0, 1) (threshold >= 0)")
    if v.min_region_area < 1:
        fail("video_eval.min_region_area", v.min_region_area, "a positive integer")
