"""The config a run was trained with: ``--config=configs/from_run.py:<workdir>``.

Reads ``<workdir>/config.json`` (the run's record, newest config at its top level) so a run
can be resumed or retrained with exactly its own values; ``--config.<field>=<value>`` still
overrides single fields. Fields added to ``configs/default.py`` since the run was written take
their default values, and JSON lists become tuples where the default is a tuple, so overrides
parse as they do for every other config.
"""

import json
import pathlib

import ml_collections

from configs import default
from sspcab_jax.training.config_drift import strip_record


def get_config(workdir: str = "") -> ml_collections.ConfigDict:
    """The saved config of the run in ``workdir``.

    Raises:
        FileNotFoundError: ``workdir`` is empty or holds no ``config.json``.
        ValueError: ``config.json`` is not a JSON object.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not workdir or not path.is_file():
        raise FileNotFoundError(
            f"configs/from_run.py needs a run directory holding config.json, got {workdir!r}: "
            "pass --config=configs/from_run.py:<workdir of the run>."
        )
    saved = json.loads(path.read_text())
    if not isinstance(saved, dict):
        raise ValueError(f"{path} must hold a JSON object (the run's config).")
    return ml_collections.ConfigDict(_merge(default.get_config().to_dict(), strip_record(saved)))


def _merge(defaults: dict, saved: dict) -> dict:
    """``saved`` over ``defaults``, recursively; lists back to tuples where defaults have them."""
    out = dict(defaults)
    for key, value in saved.items():
        base = defaults.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            out[key] = _merge(base, value)
        elif isinstance(base, tuple) and isinstance(value, list):
            out[key] = tuple(value)
        else:
            out[key] = value
    return out
