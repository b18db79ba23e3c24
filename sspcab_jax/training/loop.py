"""``train_and_evaluate(config, workdir)``: the whole run, resumable, on any parallel mode.

Read top to bottom: validate, build (task, model, state, step, data), restore or start, train
(step, log, save and evaluate), finish (``metrics.json``). Everything that depends on the model
family comes from the run's task (``sspcab_jax.training.tasks``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sspcab_jax import data
from sspcab_jax.training import calibrate as calibration
from sspcab_jax.training import config_drift, evaluation, fusion, run_figures
from sspcab_jax.training.checkpoint import Checkpointer, write_step_calibration
from sspcab_jax.training.data_setup import build_split_sources
from sspcab_jax.training.parallel import ParallelRunner, compile_in_step
from sspcab_jax.training.progress import Progress
from sspcab_jax.training.source_feed import SourceFeed
from sspcab_jax.training.state import TrainState, count_params, init_train_state
from sspcab_jax.training.tasks import Task, get_task, validate_config
from sspcab_jax.training.writers import MetricWriter

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Train (resuming from ``workdir`` when it holds checkpoints), then evaluate once.

    Writes ``config.json``, ``metrics.jsonl``, TensorBoard events (``tb/``), checkpoints
    (``checkpoints/``), ``calibration.json``, ``metrics.json`` and ``figures/`` in ``workdir``.

    Args:
      config: experiment config (see ``configs/default.py``).
      workdir: the run's directory.

    Returns:
      The final test metrics.

    Raises:
      ValueError: an invalid config field (before anything is compiled).
      NonFiniteLossError: the loss became NaN/inf (the last good checkpoint is kept).
    """
    validate_config(config)
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runner = ParallelRunner(config.parallel)
    runner.check_batch_size(config.batch_size)
    train_source, val_source, test_source = build_split_sources(config, workdir)
    task = get_task(resolve_config(config, len(train_source)))
    run = build_run(task, runner, workdir, train_source, test_source, val_source)
    with open_checkpointer(task.config, workdir) as ckpt, warnings.catch_warnings():
        # CPU backends cannot donate buffers; the warning says nothing actionable there.
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        state, start = restore_or_start(run, ckpt)
        state, final = train(run, ckpt, state, start)
    return finish(run, state, final)


@dataclasses.dataclass
class Run:
    """What one training run is made of, built once by :func:`build_run`.

    Attributes:
      task: the model family's task (its config is the run's resolved config).
      runner: places arrays and compiles the step for the parallel mode.
      workdir: the run's directory.
      model: the module the train step uses (with the ``pmap`` BatchNorm axis, if any).
      eval_model: the single-device module evaluation uses.
      state: the freshly initialised host state.
      step_fn: the train step compiled for the parallel mode.
      iterator: the checkpointable training-data iterator of this process.
      sources: host anomaly-source textures of the task, a texture bank, or None.
      synthesis_key: the key the step folds the step number into.
      test_source: the test split.
      val_source: the held-out normal training images thresholds are calibrated on, or None.
      writer: the metric writer (process 0 only, opened by :func:`restore_or_start`).
      test_outputs: the final evaluation's test outputs (image runs), drawn in ``figures/``.
      train_source: the training images (the validation share excluded).
    """

    task: Task
    runner: ParallelRunner
    workdir: pathlib.Path
    model: Any
    eval_model: Any
    state: TrainState
    step_fn: Callable[..., Any]
    iterator: Iterator[dict[str, Any]]
    sources: np.ndarray | data.TextureBank | None
    synthesis_key: jax.Array
    test_source: Sequence
    val_source: Sequence | None
    writer: MetricWriter | None
    test_outputs: dict[str, np.ndarray] | None = None
    train_source: Sequence | None = None

    @property
    def total_steps(self) -> int:
        """The run's resolved number of steps."""
        return int(self.task.config.total_steps)


def resolve_config(config: ml_collections.ConfigDict, train_size: int) -> ml_collections.ConfigDict:
    """An unlocked copy of ``config`` whose ``total_steps`` is resolved from ``epochs``."""
    config = ml_collections.ConfigDict(config.to_dict())
    config.total_steps = resolve_total_steps(config, train_size)
    return config


def resolve_total_steps(config: ml_collections.ConfigDict, train_size: int) -> int:
    """``total_steps``, or ``epochs * ceil(train_size / batch_size)`` when ``epochs > 0``."""
    if config.get("epochs", 0) > 0:
        return int(config.epochs * -(-train_size // config.batch_size))
    return int(config.total_steps)


def key_streams(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(init_key, synthesis_key)`` of a run."""
    # Independent streams: changing the synthesis never changes the initialisation.
    root = jax.random.key(seed)
    return jax.random.fold_in(root, 0), jax.random.fold_in(root, 1)


def build_run(
    task: Task,
    runner: ParallelRunner,
    workdir: pathlib.Path,
    train_source: Sequence,
    test_source: Sequence,
    val_source: Sequence | None = None,
) -> Run:
    """Models, initial state, compiled-to-be step and data iterator of a run."""
    c = task.config
    is_writer = jax.process_index() == 0
    model, eval_model = task.create_model(runner.axis_name), task.create_model()
    init_key, synthesis_key = key_streams(c.seed)
    state = init_train_state(task, model, init_key)
    if is_writer:
        logger.info("model: %s parameters", f"{count_params(state.params):,}")
        print(model_table(task, eval_model))
    iterator = data.make_train_iterator(
        train_source,
        batch_size=c.batch_size,
        image_size=c.data.image_size,
        seed=c.seed,
        resize=c.data.get("resize", "pil"),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )
    return Run(
        task=task,
        runner=runner,
        workdir=workdir,
        model=model,
        eval_model=eval_model,
        state=state,
        step_fn=runner.compile_train_step(task.train_step(model, runner.axis_name)),
        iterator=iterator,
        sources=task.anomaly_sources(),
        synthesis_key=synthesis_key,
        test_source=test_source,
        val_source=val_source,
        writer=None,
        train_source=train_source,
    )


def model_table(task: Task, model: Any) -> str:
    """``nn.tabulate`` table of the model (parameters and output shapes per module)."""
    dummy = jnp.zeros(task.input_shape(), jnp.float32)
    return model.tabulate(
        jax.random.key(0), dummy, depth=2, console_kwargs={"width": 140}, **task.init_kwargs
    )


def ranking_metric(config: ml_collections.ConfigDict) -> str | None:
    """The metric checkpoints are ranked by: ``best_metric`` with periodic evaluation, else None."""
    # Without periodic evaluation there is nothing to rank: the latest step is the best.
    return (config.best_metric or None) if config.eval_every_steps else None


def open_checkpointer(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> Checkpointer:
    """The run's checkpointer (keeps the latest steps, and the best by :func:`ranking_metric`)."""
    return Checkpointer(
        workdir / "checkpoints",
        keep_latest=config.keep_checkpoints,
        best_metric=ranking_metric(config),
    )


def restore_or_start(run: Run, ckpt: Checkpointer) -> tuple[TrainState, int]:
    """``(state, first step)``: the newest checkpoint's, or the initial state at step 0.

    A resume first compares the saved config with this one: a shape change stops the run
    before any checkpoint is read; other changes are warned about and recorded in
    ``config.json``'s history, so the record always describes the weights.
    """
    is_writer, config = jax.process_index() == 0, run.task.config.to_dict()
    state, start, changes = run.state, 0, None
    if ckpt.latest_step() is not None:
        saved = config_drift.read_saved_config(run.workdir)
        changes = config_drift.check_resume(saved, config, run.workdir) if saved else []
        if changes:
            logger.warning("resuming with changed fields (recorded): %s", "; ".join(changes))
        restored = ckpt.restore(run.state)
        if restored.data_state is not None:
            run.iterator.set_state(restored.data_state)
        state, start = restored.state, int(restored.step)
        logger.info("resumed from step %d in %s", start, ckpt.directory)
    if is_writer:
        if changes is None:
            (run.workdir / "config.json").write_text(json.dumps(config, indent=2))
        else:
            config_drift.record_resume(run.workdir, changes, start, config=config)
        # Rows a killed run logged after its last checkpoint are dropped: each step once.
        run.writer = MetricWriter(run.workdir, resume_step=start)
    return state, start


def train(
    run: Run, ckpt: Checkpointer, state: TrainState, start: int
) -> tuple[TrainState, dict[str, float] | None]:
    """Steps ``start + 1 .. total_steps``, logging and saving (and evaluating) on schedule.

    Returns:
      ``(host state, final metrics)``; the metrics are None when no step ran (a run resumed
      from its last checkpoint), else those of the evaluation at the last step.
    """
    c, runner = run.task.config, run.runner
    device_state, key = runner.put_replicated(state), runner.put_key(run.synthesis_key)
    step_fn, final = run.step_fn, None
    progress = Progress(start, run.total_steps, enabled=run.writer is not None)
    # A texture bank is a function of the step: a resumed run sees the same textures.
    with SourceFeed(runner.put_replicated, run.sources) as feed:
        for step in progress:
            batch = runner.put_batch(_model_batch(run.task, next(run.iterator)))
            sources = feed.at(step)
            if step == start:
                step_fn = compile_in_step(step_fn, device_state, batch, key, sources)
            device_state, step_metrics = step_fn(device_state, batch, key, sources)
            done = step + 1
            save_now = done % c.checkpoint_every_steps == 0 or done == run.total_steps
            if save_now or done % c.log_every_steps == 0:
                log_step(run, ckpt, progress, done, runner.to_host(step_metrics))
            if save_now:
                final = save(run, ckpt, done, runner.to_host(device_state))
    progress.close()
    return runner.to_host(device_state), final


def _model_batch(task: Task, batch: dict[str, Any]) -> dict[str, Any]:
    return {"image": task.to_model_input(batch["image"])}


def log_step(
    run: Run, ckpt: Checkpointer, progress: Progress, done: int, scalars: dict[str, Any]
) -> None:
    """Stop on a non-finite loss, else show and write the step's host scalars."""
    check_finite(done, scalars, ckpt)
    rate = progress.log(done, float(scalars["total"]))
    if run.writer:
        run.writer.write(done, dict(scalars, steps_per_second=rate))


def save(run: Run, ckpt: Checkpointer, done: int, state: TrainState) -> dict[str, float] | None:
    """Checkpoint the host ``state`` of step ``done``, evaluated first when it is due.

    Evaluation is due at the last step (the run's final metrics) and every
    ``eval_every_steps`` when steps are ranked by ``best_metric``.

    Returns:
      The metrics of the last step, else None.
    """
    c = run.task.config
    if not _params_finite(state):
        check_finite(done, {"params": float("nan")}, ckpt)
    last = done == run.total_steps
    ranked = ranking_metric(c) is not None
    metrics = None
    if last or (ranked and done % c.eval_every_steps == 0):
        metrics = evaluate(run, state, done, final=last)
    ckpt.save(
        done,
        state,
        data_state=run.iterator.get_state(),
        metrics=metrics if ranked else None,
        config=c,
    )
    return metrics if last else None


def evaluate(run: Run, state: TrainState, step: int, *, final: bool) -> dict[str, float]:
    """Test metrics of a host state, written as ``test/*`` scalars of ``step``.

    The final evaluation of a video run also saves ``frame_scores.npz`` in the workdir.
    """
    scores_path = run.workdir / "frame_scores.npz" if final and run.writer else None
    metrics, outputs = evaluation.evaluate_with_outputs(
        run.task, run.eval_model, state, run.test_source, scores_path
    )
    if final:
        run.test_outputs = outputs
    if run.writer:
        run.writer.write(step, metrics, prefix="test")
    return metrics


def finish(run: Run, state: TrainState, final: dict[str, float] | None) -> dict[str, float]:
    """Calibrate, write ``metrics.json`` and ``figures/``, print both; returns the final metrics."""
    if final is None:  # resumed after the last checkpoint: not evaluated yet
        final = evaluate(run, state, run.total_steps, final=True)
    fused = fusion.fuse_and_evaluate(run, state) or final
    cal, verdicts = calibrate(run, state)
    label = evaluation.results_label(run.task.config)
    table = evaluation.format_metrics(fused, label)
    if fused is not final:  # the model's own figures stay in metrics.json, as model_*
        table = (
            f"model alone:\n{evaluation.format_metrics(final, label)}\n"
            f"fused with local statistics (what the detector scores):\n{table}"
        )
        fused = {**fused, **{f"model_{k}": v for k, v in final.items()}}
    final = fused
    if run.writer:
        summary = {"step": run.total_steps, **run.task.summary(), **final, **verdicts}
        (run.workdir / "metrics.json").write_text(json.dumps(summary, indent=2))
        print(table)
        figures = run_figures.write_figures(
            run.workdir, run.task.config, cal, run.test_source, run.test_outputs
        )
        if figures:
            print(f"figures: {figures}")
        # The verdicts (and any weak-model warning) come last: what a user reads first.
        if summary_text := calibration.calibration_summary(cal, verdicts, run.task):
            print(summary_text)
        run.writer.close()
    return {**final, **verdicts}


def calibrate(run: Run, state: TrainState) -> tuple[Any, dict[str, float]]:
    """Thresholds (``calibration.json``, copied into the last checkpoint), test verdicts."""
    step = run.total_steps
    cal, verdicts = calibration.calibrate_run(
        *(run.task, run.eval_model, state, run.val_source, run.test_source),
        sources=run.sources,
        step=step,
    )
    if run.writer:
        path = cal.save(run.workdir)
        write_step_calibration(run.workdir / "checkpoints", step, cal.to_json())
        logger.info("calibration (%s) written to %s", cal.source, path)
    return cal, verdicts


def check_finite(step: int, scalars: dict[str, Any], ckpt: Checkpointer) -> None:
    """Raise :class:`NonFiniteLossError` naming the step and the checkpoint that is kept."""
    bad = {k: float(v) for k, v in scalars.items() if not np.isfinite(v)}
    if bad:
        last = ckpt.latest_step()
        kept = f"the last good checkpoint (step {last}) is kept" if last else "no checkpoint yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {step}: {bad}; {kept} in {ckpt.directory}. Lower "
            f"learning_rate, check the input data, or resume from that checkpoint."
        )


def _params_finite(state: TrainState) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree_util.tree_leaves(state.params))
