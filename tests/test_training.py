"""Training: parallel modes agree, multi-process mesh, kill/resume, non-finite loss, outputs."""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from configs import test as test_config
from sspcab_jax.training import evaluation, loop
from sspcab_jax.training.checkpoint import Checkpointer
from sspcab_jax.training.data_setup import build_sources
from sspcab_jax.training.restore import load_run
from sspcab_jax.training.state import create_model, create_train_state, learning_rate_schedule
from sspcab_jax.training.tasks import get_task, validate_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "scripts" / "parallel_agreement.py"


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["PYTHONPATH"] = str(ROOT)
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _max_diff(a, b):
    return max(float(np.abs(a[k] - b[k]).max()) for k in a.files)


@pytest.fixture(scope="module")
def agreement(tmp_path_factory):
    out = tmp_path_factory.mktemp("agree")
    subprocess.run(
        [sys.executable, str(SCRIPT), "single,pmap,mesh", f"{out}/"],
        env=_env(4),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return {m: np.load(out / f"{m}.npz") for m in ("single", "pmap", "mesh")}


def test_pmap_and_mesh_give_the_parameters_of_one_device(agreement):
    single = agreement["single"]
    assert np.isfinite(single["loss"])
    for mode in ("pmap", "mesh"):
        assert set(agreement[mode].files) == set(single.files)
        assert _max_diff(single, agreement[mode]) < 1e-5, mode


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_a_mesh_agree_with_one_process(agreement, tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "mesh", str(tmp_path / f"p{i}_"), address, "2", str(i)],
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output.decode()[-3000:]
    two_process = np.load(tmp_path / "p0_mesh.npz")
    assert _max_diff(agreement["single"], two_process) < 1e-5


# --------------------------------------------------------------------------- kill and resume


def _train_command(workdir, *overrides):
    return [
        sys.executable,
        "-m",
        "train.main",
        f"--config={ROOT / 'configs' / 'test.py'}",
        f"--workdir={workdir}",
        "--config.total_steps=8",
        "--config.checkpoint_every_steps=2",
        "--config.keep_checkpoints=10",
        "--config.best_metric=",
        *overrides,
    ]


def _final_params(workdir):
    config = test_config.get_config()
    model = create_model(config)
    target = create_train_state(config, model, jax.random.key(0))
    with Checkpointer(pathlib.Path(workdir) / "checkpoints", keep_latest=10) as ckpt:
        restored = ckpt.restore(target)
    return restored.step, jax.tree_util.tree_leaves(
        {"params": restored.state.params, "stats": restored.state.batch_stats}
    )


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(
        _train_command(workdir), env=_env(1), check=True, capture_output=True, timeout=600
    )
    return workdir


def test_killed_run_resumes_to_bitwise_equal_parameters(uninterrupted_run, tmp_path):
    workdir = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_command(workdir), env=_env(1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / "2").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "metrics.json").exists(), "the run finished before it was killed"
    subprocess.run(
        _train_command(workdir), env=_env(1), check=True, capture_output=True, timeout=600
    )
    step_a, leaves_a = _final_params(uninterrupted_run)
    step_b, leaves_b = _final_params(workdir)
    assert step_a == step_b == 8
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_run_writes_what_a_person_expects(uninterrupted_run):
    records = [
        json.loads(line)
        for line in (uninterrupted_run / "metrics.jsonl").read_text().split("\n")
        if line
    ]
    train_records = [r for r in records if "train/total" in r]
    assert [r["step"] for r in train_records] == list(range(1, 9))
    assert all(r["train/total"] > 0 for r in train_records)
    assert {"train/l2", "train/ssim", "train/focal", "train/sspcab"} <= set(train_records[0])
    assert any(
        p.name.startswith("events.out.tfevents") for p in (uninterrupted_run / "tb").iterdir()
    )
    final = json.loads((uninterrupted_run / "metrics.json").read_text())
    assert final["step"] == 8 and final["sspcab_placement"] == "penultimate"
    # The data-handling choices behind the numbers (configs/test.py keeps the defaults).
    assert (final["resize"], final["mask_rule"], final["brightness"]) == (
        "pil",
        "nearest",
        "ycrcb",
    )
    assert final["anomaly_sources"] == "perlin"
    # The final metrics are those scikit-learn computes from the final model's test scores.
    config, model, state, _ = load_run(uninterrupted_run, "latest")
    _, test_source = build_sources(config, uninterrupted_run)
    outputs = evaluation.predict(get_task(config), model, state, test_source)
    expected = roc_auc_score(outputs["label"], outputs["score"])
    assert 0.0 < expected < 1.0  # the check below could not pass by a degenerate split
    assert final["image_auroc"] == pytest.approx(expected, abs=1e-6)
    saved = json.loads((uninterrupted_run / "config.json").read_text())
    assert saved["total_steps"] == 8


# --------------------------------------------------------------------------- failures, config


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = test_config.get_config()
    config.total_steps = 6
    config.checkpoint_every_steps = 2
    config.best_metric = ""
    real = loop._model_batch
    calls = {"n": 0}

    def poisoned(task, batch):
        calls["n"] += 1
        batch = real(task, batch)
        if calls["n"] >= 3:  # the third step sees NaN pixels; the loss is logged every step
            batch = {"image": np.full_like(batch["image"], np.nan)}
        return batch

    monkeypatch.setattr(loop, "_model_batch", poisoned)
    with pytest.raises(loop.NonFiniteLossError, match=r"step 3: .*nan.*step 2"):
        loop.train_and_evaluate(config, tmp_path)
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [2]


@pytest.mark.parametrize(
    "field,value",
    [
        ("model", "gan"),
        ("parallel", "tpu"),
        ("batch_size", 0),
        ("learning_rate", -1.0),
        ("schedule", "cosine"),
        ("draem.sspcab_placement", "everywhere"),
        ("synthesis.perlin_max_log2_res", 9),
        ("synthesis.perlin_source_prob", 1.5),
        ("synthesis.self_source_prob", -0.1),
        ("data.image_size", 48),
        ("data.dataset", "imagenet"),
        ("lr_milestones", (0.5, 1.5)),
        ("best_metric", "accuracy"),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    config = test_config.get_config()
    parent, _, leaf = field.rpartition(".")
    (config[parent] if parent else config)[leaf] = value
    with pytest.raises(ValueError, match=f"config.{field}="):
        validate_config(config)


def test_bad_config_fails_before_anything_is_built(tmp_path):
    config = test_config.get_config()
    config.parallel = "tpu"
    with pytest.raises(ValueError, match="parallel"):
        loop.train_and_evaluate(config, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


@pytest.fixture(scope="module")
def multi_device_checks(tmp_path_factory):
    """tests/scripts/multi_device_checks.py run once on 4 CPU devices: name -> 'ok' or error."""
    out = tmp_path_factory.mktemp("devices") / "checks.json"
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "scripts" / "multi_device_checks.py"), str(out)],
        env=_env(4),
        check=True,
        capture_output=True,
        timeout=300,
    )
    results = json.loads(out.read_text())
    assert results.pop("device_count") == 4
    return results


@pytest.mark.parametrize("legacy_key", [False, True])
@pytest.mark.parametrize("mode", ["single", "pmap", "mesh"])
def test_placed_state_and_key_need_no_retrace_and_no_transfer(
    multi_device_checks, mode, legacy_key
):
    """On 4 devices: placed once, the state and run key match what the step returns, so the
    second call reuses the first call's trace and nothing is copied between devices."""
    name = f"no_retrace_{mode}_{'legacy' if legacy_key else 'typed'}_key"
    assert multi_device_checks[name] == "ok", multi_device_checks[name]


@pytest.mark.parametrize("mode", ["single", "pmap", "mesh"])
def test_batch_size_must_split_over_devices(multi_device_checks, mode):
    """On 4 devices: pmap and mesh refuse batch_size=6 naming the device count; single takes it."""
    name = f"batch_size_{mode}"
    assert multi_device_checks[name] == "ok", multi_device_checks[name]


def test_official_schedule_decays_at_80_and_90_percent():
    config = ml_collections.ConfigDict(
        {
            "learning_rate": 1e-4,
            "schedule": "official",
            "lr_milestones": (0.8, 0.9),
            "lr_gamma": 0.2,
            "total_steps": 700,
        }
    )
    schedule = learning_rate_schedule(config)
    # train_DRAEM.py's MultiStepLR over 700 epochs: 1e-4 for epochs 0-559, 2e-5 for 560-629,
    # 4e-6 after.
    np.testing.assert_allclose(
        [schedule(0), schedule(559), schedule(560), schedule(629), schedule(630), schedule(699)],
        [1e-4, 1e-4, 2e-5, 2e-5, 4e-6, 4e-6],
        rtol=1e-6,
    )
    config.schedule = "anomalib"
    schedule = learning_rate_schedule(config)
    np.testing.assert_allclose(
        [schedule(399), schedule(400), schedule(600)], [1e-4, 1e-5, 1e-6], rtol=1e-6
    )


def test_epochs_convert_to_steps():
    config = ml_collections.ConfigDict({"epochs": 3, "batch_size": 8, "total_steps": 5})
    assert loop.resolve_total_steps(config, train_size=20) == 9  # ceil(20 / 8) = 3 per epoch
    config.epochs = 0
    assert loop.resolve_total_steps(config, train_size=20) == 5
