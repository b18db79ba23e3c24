"""Validation of experiment configs: clear errors before anything is compiled."""

from __future__ import annotations

import ml_collections

from sspcab_jax.training import video_eval
from sspcab_jax.training.parallel import MODES
from sspcab_jax.training.state import DTYPES, MODELS, OPTIMIZERS, SCHEDULES

DATASETS = ("synthetic", "mvtec", "folder", "synthetic_video", "avenue", "shanghaitech")
PLACEMENTS = ("none", "bottleneck", "penultimate")
AE_POSITIONS = ("early", "middle", "late")


def _fail(field: str, value: object, expected: str) -> None:
    raise ValueError(
        f"config.{field}={value!r} is invalid: expected {expected}. Fix it in the config file or "
        f"with --config.{field}=..."
    )


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check every field the training loop relies on.

    Args:
      config: an experiment config (see ``configs/default.py``).

    Raises:
      ValueError: naming the first invalid field, its value and what is expected.
    """
    if config.model not in MODELS:
        _fail("model", config.model, f"one of {MODELS}")
    if config.parallel not in MODES:
        _fail("parallel", config.parallel, f"one of {MODES}")
    for field in ("dtype", "param_dtype"):
        if config.get(field, "float32") not in DTYPES:
            _fail(field, config[field], f"one of {tuple(DTYPES)}")
    for field in ("batch_size", "checkpoint_every_steps", "log_every_steps", "keep_checkpoints"):
        value = config[field]
        if not isinstance(value, int) or value < 1:
            _fail(field, value, "a positive integer")
    if config.total_steps < 1 and config.get("epochs", 0) < 1:
        _fail("total_steps", config.total_steps, "a positive integer (or set epochs > 0)")
    if config.get("eval_every_steps", 0) < 0:
        _fail("eval_every_steps", config.eval_every_steps, "0 (only at the end) or a positive int")
    if not config.learning_rate > 0:
        _fail("learning_rate", config.learning_rate, "a positive number")
    if config.get("optimizer", "adam") not in OPTIMIZERS:
        _fail("optimizer", config.optimizer, f"one of {OPTIMIZERS}")
    if config.schedule not in SCHEDULES:
        _fail("schedule", config.schedule, f"one of {SCHEDULES}")
    if any(not 0 < f < 1 for f in config.lr_milestones):
        _fail("lr_milestones", config.lr_milestones, "fractions of total_steps in (0, 1)")
    if config.sspcab_lambda < 0:
        _fail("sspcab_lambda", config.sspcab_lambda, "a number >= 0")
    if config.data.dataset not in DATASETS:
        _fail("data.dataset", config.data.dataset, f"one of {DATASETS}")
    size = config.data.image_size
    if config.model == "draem":
        if config.draem.sspcab_placement not in PLACEMENTS:
            _fail("draem.sspcab_placement", config.draem.sspcab_placement, f"one of {PLACEMENTS}")
        if not isinstance(size, int) or size < 32 or size % 32:
            _fail("data.image_size", size, "a multiple of 32 (DRAEM pools five times)")
        for field in ("recon_width", "disc_width"):
            if config.draem[field] < 1:
                _fail(f"draem.{field}", config.draem[field], "a positive integer")
    else:
        unknown = set(config.autoencoder.sspcab_positions) - set(AE_POSITIONS)
        if unknown:
            _fail(
                "autoencoder.sspcab_positions",
                config.autoencoder.sspcab_positions,
                f"a subset of {AE_POSITIONS}",
            )
        if not isinstance(size, int) or size < 8 or size % 8:
            _fail("data.image_size", size, "a multiple of 8 (the auto-encoder pools three times)")
    if config.data.dataset in video_eval.VIDEO_DATASETS:
        video_eval.validate_video_config(config)
    if config.best_metric and config.best_metric not in (
        "image_auroc",
        "image_ap",
        "image_f1_max",
        "pixel_auroc",
        "pixel_ap",
        "aupro",
        "micro_auc",
        "macro_auc",
        "rbdc",
        "tbdc",
    ):
        _fail("best_metric", config.best_metric, "'' or one of the evaluation metric names")
