"""Model families as tasks: the registry, a third family through the loop, one final evaluation."""

import functools
import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from configs import autoencoder_demo
from configs import test as test_config
from sspcab_jax.training import evaluation, loop, restore, tasks
from sspcab_jax.training.calibrate import VERDICT_METRICS
from sspcab_jax.training.steps import autoencoder_eval_step
from train import cli, evaluate
from train import main as train_main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) / 100.0


class _OneConv(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Conv(3, (3, 3))(x)


def _tiny_train_step(state, batch, key, sources, *, model):
    del key

    def loss_fn(params):
        rec = model.apply({"params": params}, batch["image"])
        return jnp.mean((rec - batch["image"]) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    # Reports what the loop placed as the task's anomaly sources.
    return state.apply_gradients(grads=grads), {"total": loss, "sources_sum": jnp.sum(sources)}


class TinyTask(tasks.Task):
    """A family the loop has never heard of: one conv reconstructing RGB images."""

    name = "tiny"

    def create_model(self, bn_axis_name=None):
        """One 3x3 conv."""
        return _OneConv()

    def input_shape(self, batch_size=1):
        """RGB images."""
        size = self.config.data.image_size
        return (batch_size, size, size, 3)

    def train_step(self, model, axis_name):
        """Reconstruction MSE."""
        return functools.partial(_tiny_train_step, model=model)

    def eval_step(self, model):
        """Reconstruction-error maps (the auto-encoder's eval step)."""
        return functools.partial(autoencoder_eval_step, model=model)

    def anomaly_sources(self):
        """Fixed textures, to see them reach the step."""
        return SOURCES

    def summary(self):
        """Name and one field of its own."""
        return {"model": self.name, "tiny_field": 7}

    def validate(self):
        """Nothing of its own to check."""


@pytest.fixture
def tiny(monkeypatch):
    """configs/test.py with the registered ``tiny`` family and a counter of evaluations."""
    monkeypatch.setitem(tasks.TASKS, "tiny", TinyTask)
    calls = []
    real = evaluation.evaluate_with_outputs

    def counted(task, model, state, source, scores_path=None):
        calls.append(int(state.step))
        return real(task, model, state, source, scores_path)

    monkeypatch.setattr(evaluation, "evaluate_with_outputs", counted)
    config = test_config.get_config()
    config.model = "tiny"
    config.best_metric = ""
    return config, calls


def _records(workdir, prefix):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if any(k.startswith(prefix) for k in r)]


def test_a_registered_family_trains_and_evaluates_through_the_loop(tiny, tmp_path):
    config, calls = tiny
    final = loop.train_and_evaluate(config, tmp_path)
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["model"] == "tiny" and summary["tiny_field"] == 7 and summary["step"] == 4
    # Threshold-free metrics, and the verdicts at the thresholds calibrated on held-out normals.
    assert set(final) == set(evaluation.IMAGE_METRICS) | set(VERDICT_METRICS)
    assert 0 <= final["image_auroc"] <= 1
    train = _records(tmp_path, "train/")
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["train/sources_sum"] for r in train], SOURCES.sum(), rtol=1e-6)
    assert calls == [4]


def test_periodic_evaluation_is_reused_as_the_final_one(tiny, tmp_path):
    config, calls = tiny
    config.eval_every_steps = 2
    config.best_metric = "image_auroc"
    final = loop.train_and_evaluate(config, tmp_path)
    assert calls == [2, 4]  # not [2, 4, 4]
    assert [r["step"] for r in _records(tmp_path, "test/")] == [2, 4]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    np.testing.assert_equal({k: summary[k] for k in final}, final)  # NaN equals NaN here
    # A run resumed after its last checkpoint has evaluated nothing yet: it evaluates once.
    calls.clear()
    again = loop.train_and_evaluate(config, tmp_path)
    assert calls == [4]
    np.testing.assert_equal(again, final)


def test_the_best_checkpoint_is_the_best_evaluated_step(tiny, tmp_path, monkeypatch):
    """Steps 2, 4, 6 evaluate to AUROC 0.3, 0.9, 0.5: the best is neither first nor latest."""
    config, calls = tiny
    config.total_steps, config.eval_every_steps = 6, 2
    config.best_metric, config.keep_checkpoints = "image_auroc", 1
    chosen = {2: 0.3, 4: 0.9, 6: 0.5}

    def scripted(task, model, state, source, scores_path=None):
        calls.append(int(state.step))
        return {name: chosen[int(state.step)] for name in evaluation.IMAGE_METRICS}, None

    monkeypatch.setattr(evaluation, "evaluate_with_outputs", scripted)
    loop.train_and_evaluate(config, tmp_path)
    evaluated = {r["step"]: r["test/image_auroc"] for r in _records(tmp_path, "test/")}
    assert evaluated == chosen
    # keep_checkpoints=1 keeps the latest; step 4 survives only as the best.
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [4, 6]
    _, _, state, step = restore.load_run(tmp_path, "best")
    assert step == int(state.step) == 4
    # The evaluate command restores that step and reports its metric (the scripted evaluation
    # answers by the restored state's step).
    summary = evaluate.main(["evaluate", f"--workdir={tmp_path}", "--which=best"])
    assert (summary["step"], summary["image_auroc"]) == (4, 0.9)
    assert restore.load_run(tmp_path, "latest")[3] == 6


def test_get_task_and_validation_name_the_model_field():
    config = test_config.get_config()
    assert isinstance(tasks.get_task(config), tasks.DraemTask)
    config.model = "gan"
    with pytest.raises(ValueError, match=r"config.model='gan'.*'draem', 'autoencoder'"):
        tasks.get_task(config)


def test_draem_task_translates_its_config():
    config = test_config.get_config()
    task = tasks.get_task(config)
    model = task.create_model(bn_axis_name="batch")
    assert (model.recon_width, model.disc_width, model.bn_axis_name) == (8, 8, "batch")
    assert model.sspcab_placement == "penultimate" and task.input_shape(5) == (5, 32, 32, 3)
    assert task.init_kwargs == {"train": False} and task.anomaly_map_range == (0.0, 1.0)
    assert task.summary() == {
        "model": "draem",
        "sspcab_placement": "penultimate",
        "init_scheme": "official",
        "sspcab_init": "pytorch",
        # The data-handling choices behind its numbers (configs/test.py keeps the defaults).
        "resize": "pil",
        "mask_rule": "nearest",
        "brightness": "ycrcb",
        "anomaly_sources": "perlin",
        "channel_order": "rgb",
        "texture_bank_size": 0,
        "texture_refresh_every": 100,
    }
    rgb = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(task.to_model_input(rgb), rgb)
    config.data.channel_order = "bgr"  # official DRAEM weights: the model sees B, G, R
    bgr = tasks.get_task(config).to_model_input(rgb)
    np.testing.assert_array_equal(bgr[..., 0], rgb[..., 2])
    np.testing.assert_array_equal(bgr[..., 2], rgb[..., 0])


def test_draem_task_hands_the_synthesis_fields_to_its_step():
    config = test_config.get_config()
    config.synthesis.perlin_max_log2_res = 3
    config.synthesis.opacity_range = (0.1, 0.9)
    config.synthesis.perlin_source_prob = 0.25
    config.synthesis.self_source_prob = 0.4
    task = tasks.get_task(config)
    synthesis = task.train_step(task.create_model(), None).keywords["synthesis"]
    assert synthesis.perlin_max_log2_res == 3 and synthesis.opacity_range == (0.1, 0.9)
    assert synthesis.perlin_source_prob == 0.25 and synthesis.self_source_prob == 0.4
    del config.synthesis.perlin_max_log2_res  # a run saved before the fields: the official ones
    del config.synthesis.perlin_source_prob
    del config.synthesis.self_source_prob
    synthesis = tasks.get_task(config).train_step(task.create_model(), None).keywords["synthesis"]
    assert synthesis.perlin_max_log2_res == 5 and synthesis.perlin_source_prob == 0.0
    assert synthesis.self_source_prob == 0.0


def test_autoencoder_task_feeds_luma_and_describes_video_runs():
    config = autoencoder_demo.get_config("late_3d")
    task = tasks.get_task(config)
    assert task.input_shape(2) == (2, 5, 64, 64, 1) and task.anomaly_map_range is None
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.4, 0.6]]])
    np.testing.assert_allclose(
        task.to_model_input(rgb)[0, :, 0], [0.299, 0.587, 0.114, 0.0598 + 0.2348 + 0.0684]
    )
    summary = task.summary()
    assert summary["placement"] == "late" and summary["sspcab_positions"] == ["late"]
    assert summary["spatial_dims"] == 3 and summary["clip_length"] == 5
    config.autoencoder.channels = 3
    assert task.to_model_input(rgb) is rgb


def test_nothing_outside_the_tasks_names_a_family():
    pattern = re.compile(r"\.model\s*(==|!=|not in|in)\s|model\s*==\s*['\"]")
    for folder in ("sspcab_jax", "train"):
        for path in (ROOT / folder).rglob("*.py"):
            if "tasks" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                assert not pattern.search(line), f"{path}:{number}: {line.strip()}"


def test_train_main_parses_file_arguments_and_overrides_on_every_call():
    demo = ROOT / "configs" / "autoencoder_demo.py"
    for centre, steps in (("late_m3", 7), ("late", 9)):
        argv = ["main", f"--config={demo}:{centre}", "--workdir=w", f"--config.total_steps={steps}"]
        args = cli.parse_flags(train_main.define_flags, argv, "")
        assert args.config.total_steps == steps and args.workdir == "w"
        assert args.config.autoencoder.masked_centre == (3 if centre == "late_m3" else 1)
    with pytest.raises(cli.CommandError, match="workdir"):
        cli.parse_flags(train_main.define_flags, ["main", f"--config={demo}"], "")


def test_train_main_runs_in_process(tiny, tmp_path):
    argv = [
        "main",
        f"--config={ROOT / 'configs' / 'test.py'}",
        f"--workdir={tmp_path}",
        "--config.model=tiny",
        "--config.total_steps=2",
        "--config.best_metric=",
    ]
    final = train_main.main(argv)
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 2
    assert 0 <= final["image_auroc"] <= 1
