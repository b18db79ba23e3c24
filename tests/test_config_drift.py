"""Config drift on resume: shape changes refused in one line, others warned and recorded."""

import json
import subprocess
import sys

import pytest

from configs import default, from_run
from sspcab_jax.training import restore
from sspcab_jax.training.config_drift import (
    ConfigDriftError,
    check_resume,
    compare_configs,
    read_saved_config,
    record_resume,
)

SAVED = {
    "model": "draem",
    "learning_rate": 0.0001,
    "total_steps": 4,
    "lr_milestones": [0.8, 0.9],
    "draem": {"recon_width": 128, "disc_width": 64, "init_scheme": "official"},
    "data": {"image_size": 256, "root": "", "eval_batch_size": 16},
}


def _now(**changes):
    now = json.loads(json.dumps(SAVED))
    for key, value in changes.items():
        *groups, name = key.split("__")
        target = now
        for group in groups:
            target = target[group]
        target[name] = value
    return now


def test_identical_configs_have_no_drift_tuples_equal_lists_and_int_equal_float():
    now = _now(lr_milestones=(0.8, 0.9), total_steps=4.0)
    assert compare_configs(SAVED, now) == ([], [])
    assert compare_configs({**SAVED, "history": [{"step": 4}]}, SAVED) == ([], [])


def test_shape_and_other_changes_are_split_and_formatted():
    now = _now(draem__recon_width=16, learning_rate=0.001, data__image_size=64, model="x")
    drift = compare_configs(SAVED, now)
    assert drift.shape_changes == [
        "data.image_size: 256 (saved) vs 64 (now)",
        "draem.recon_width: 128 (saved) vs 16 (now)",
        "model: 'draem' (saved) vs 'x' (now)",
    ]
    assert drift.other_changes == ["learning_rate: 0.0001 (saved) vs 0.001 (now)"]


def test_bool_is_not_the_number_one_and_init_scheme_is_not_a_shape():
    drift = compare_configs(_now(total_steps=1), _now(total_steps=True, draem__init_scheme="x"))
    assert drift.shape_changes == []
    assert drift.other_changes == [
        "draem.init_scheme: 'official' (saved) vs 'x' (now)",
        "total_steps: 1 (saved) vs true (now)",
    ]


def test_field_present_on_one_side_is_an_other_change():
    now = _now()
    now["draem"]["new_field"] = 3
    assert compare_configs(SAVED, now).other_changes == [
        "draem.new_field: <missing> (saved) vs 3 (now)"
    ]


def test_check_resume_refuses_shape_changes_in_one_line(tmp_path):
    now = _now(draem__recon_width=16, draem__disc_width=8, learning_rate=0.5)
    with pytest.raises(ConfigDriftError) as info:
        check_resume(SAVED, now, tmp_path)
    message = str(info.value)
    assert "\n" not in message
    shape = "draem.disc_width: 64 (saved) vs 8 (now); draem.recon_width: 128 (saved) vs 16"
    assert shape in message
    assert f"--config=configs/from_run.py:{tmp_path}" in message
    assert "another --workdir" in message
    assert "learning_rate" not in message


def test_check_resume_returns_other_changes():
    now = _now(learning_rate=0.001, total_steps=8)
    assert check_resume(SAVED, now, "run") == [
        "learning_rate: 0.0001 (saved) vs 0.001 (now)",
        "total_steps: 4 (saved) vs 8 (now)",
    ]


def test_record_resume_appends_history_and_readers_still_read_the_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SAVED))
    first = _now(learning_rate=0.001)
    record_resume(tmp_path, ["learning_rate: 0.0001 (saved) vs 0.001 (now)"], 4, config=first)
    record_resume(tmp_path, [], 8, config=_now(learning_rate=0.001, total_steps=12))
    record = json.loads((tmp_path / "config.json").read_text())
    assert [h["step"] for h in record["history"]] == [4, 8]
    assert record["history"][0]["changes"] == ["learning_rate: 0.0001 (saved) vs 0.001 (now)"]
    assert record["history"][1]["changes"] == []
    assert all(len(h["time"]) >= 19 for h in record["history"])
    assert record["learning_rate"] == 0.001 and record["total_steps"] == 12
    assert read_saved_config(tmp_path) == _now(learning_rate=0.001, total_steps=12)
    # The readers' loader returns the record key too: they must drop RECORD_KEYS.
    assert restore.read_run_config(tmp_path).learning_rate == 0.001
    assert not list(tmp_path.glob(".config.json.*"))  # no temporary file left


def test_from_run_config_reloads_a_saved_run_with_types_of_the_defaults(tmp_path):
    saved = default.get_config().to_dict()
    saved["draem"]["recon_width"] = 8
    saved["learning_rate"] = 0.5
    del saved["data"]["cache_dir"]  # a field added since the run was written
    record = json.loads(json.dumps(saved))  # tuples -> lists, as config.json has them
    record_resume(tmp_path, [], 2, config=record)
    config = from_run.get_config(str(tmp_path))
    assert config.draem.recon_width == 8 and config.learning_rate == 0.5
    assert config.lr_milestones == (0.8, 0.9)  # a tuple again
    assert config.data.cache_dir == ""  # filled from the defaults
    assert "history" not in config
    assert compare_configs(saved, config) == ([], ["data.cache_dir: <missing> (saved) vs '' (now)"])


def test_from_run_without_config_json_names_the_form(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--config=configs/from_run.py:<workdir"):
        from_run.get_config(str(tmp_path))


def test_from_run_through_config_flags_with_an_override(tmp_path):
    saved = json.loads(json.dumps(default.get_config().to_dict()))
    saved["draem"]["recon_width"] = 8
    (tmp_path / "config.json").write_text(json.dumps(saved))
    code = (
        "import sys\n"
        "from absl import flags\n"
        "from ml_collections import config_flags\n"
        "c = config_flags.DEFINE_config_file('config', None, 'x', lock_config=True)\n"
        "flags.FLAGS(sys.argv)\n"
        "print(c.value.draem.recon_width, c.value.learning_rate, c.value.synthesis.opacity_range)\n"
    )
    argv = [f"--config=configs/from_run.py:{tmp_path}", "--config.learning_rate=0.25"]
    argv.append("--config.synthesis.opacity_range=(0.1,1.0)")
    out = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["8", "0.25", "(0.1,", "1.0)"]
