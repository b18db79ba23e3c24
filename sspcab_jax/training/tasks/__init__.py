"""Model families: the registry that turns ``config.model`` into a :class:`Task`.

Adding a family is one module with a :class:`Task` subclass and one line in ``TASKS``; nothing
else in the training package or the commands names a family.
"""

from __future__ import annotations

import ml_collections

from sspcab_jax.training import config_checks
from sspcab_jax.training.data_setup import is_video
from sspcab_jax.training.tasks.autoencoder import AutoencoderTask
from sspcab_jax.training.tasks.base import Task
from sspcab_jax.training.tasks.draem import DraemTask

TASKS: dict[str, type[Task]] = {"draem": DraemTask, "autoencoder": AutoencoderTask}


def get_task(config: ml_collections.ConfigDict) -> Task:
    """The task of ``config.model``, built from ``config``.

    Raises:
      ValueError: ``config.model`` names no registered family.
    """
    if config.model not in TASKS:
        config_checks.fail("model", config.model, f"one of {tuple(TASKS)}")
    return TASKS[config.model](config)


def validate_config(config: ml_collections.ConfigDict) -> Task:
    """Check every field training relies on: the shared ones, then the family's own.

    Args:
      config: an experiment config (see ``configs/default.py``).

    Returns:
      The config's task.

    Raises:
      ValueError: naming the first invalid field, its value and what is expected.
    """
    task = get_task(config)
    config_checks.check_shared_fields(config)
    if is_video(config):
        if not task.reads_videos:
            readers = tuple(name for name, t in TASKS.items() if t.reads_videos)
            config_checks.fail("model", config.model, f"one of {readers} for a video dataset")
        config_checks.check_video_eval(config)
    task.validate()
    return task


__all__ = ["TASKS", "AutoencoderTask", "DraemTask", "Task", "get_task", "validate_config"]
