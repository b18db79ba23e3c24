"""``train_and_evaluate(config, workdir)``: the whole run, resumable, on any parallel mode."""

from __future__ import annotations

import functools
import json
import logging
import pathlib
import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from sspcab_jax import data
from sspcab_jax.synthesis.draem import SynthesisConfig
from sspcab_jax.training import evaluation, video_eval
from sspcab_jax.training.checkpoint import Checkpointer
from sspcab_jax.training.config_checks import validate_config
from sspcab_jax.training.data_setup import build_anomaly_sources, build_sources
from sspcab_jax.training.parallel import ParallelRunner, compile_in_step
from sspcab_jax.training.state import (
    TrainState,
    count_params,
    create_model,
    create_train_state,
    model_input_shape,
)
from sspcab_jax.training.steps import autoencoder_train_step, draem_train_step
from sspcab_jax.training.writers import MetricWriter

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


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


def build_train_step(config: ml_collections.ConfigDict, model: Any, axis_name: str | None) -> Any:
    """The pure train step of ``config.model`` with its hyper-parameters bound."""
    if config.model == "draem":
        synthesis = SynthesisConfig(
            clean_prob=config.synthesis.clean_prob,
            opacity_range=tuple(config.synthesis.opacity_range),
            rotate_prob=config.synthesis.rotate_prob,
        )
        return functools.partial(
            draem_train_step,
            model=model,
            synthesis=synthesis,
            sspcab_lambda=config.sspcab_lambda,
            focal=config.focal,
            axis_name=axis_name,
        )
    return functools.partial(
        autoencoder_train_step,
        model=model,
        sspcab_lambda=config.sspcab_lambda,
        axis_name=axis_name,
    )


def model_summary(config: ml_collections.ConfigDict, model: Any) -> str:
    """``nn.tabulate`` table of the model (parameters and output shapes per module)."""
    kwargs = {"train": False} if config.model == "draem" else {}
    table = model.tabulate(
        jax.random.key(0),
        jnp.zeros(model_input_shape(config), jnp.float32),
        depth=2,
        console_kwargs={"width": 140},
        **kwargs,
    )
    return table


def _check_finite(step: int, scalars: dict[str, Any], ckpt: Checkpointer) -> None:
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


def evaluate_state(
    config: ml_collections.ConfigDict,
    model: Any,
    state: TrainState,
    test_source: Any,
    scores_path: pathlib.Path | None = None,
) -> dict[str, float]:
    """Metrics of a host state on the test source (video runs save frame scores to a path)."""
    if video_eval.is_video(config):
        return video_eval.evaluate(config, model, state, test_source, scores_path)
    outputs = evaluation.predict(config, model, state, test_source)
    return evaluation.compute_metrics(outputs)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
    """Train (resuming from ``workdir`` when it holds checkpoints), then evaluate.

    Writes ``config.json``, ``metrics.jsonl``, TensorBoard events (``tb/``), checkpoints
    (``checkpoints/``) and ``metrics.json`` in ``workdir``.

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
    is_writer = jax.process_index() == 0
    runner = ParallelRunner(config.parallel)
    runner.check_batch_size(config.batch_size)

    train_source, test_source = build_sources(config, workdir)
    config = ml_collections.ConfigDict(config.to_dict())
    config.total_steps = resolve_total_steps(config, len(train_source))
    total_steps = config.total_steps

    model = create_model(config, bn_axis_name=runner.axis_name)
    eval_model = create_model(config)
    init_key, synth_key = key_streams(config.seed)
    state = create_train_state(config, model, init_key)
    if is_writer:
        logger.info("model: %s parameters", f"{count_params(state.params):,}")
        print(model_summary(config, eval_model))
    sources = build_anomaly_sources(config) if config.model == "draem" else None
    step_fn = runner.compile_train_step(build_train_step(config, model, runner.axis_name))
    iterator = data.make_train_iterator(
        train_source,
        batch_size=config.batch_size,
        image_size=config.data.image_size,
        seed=config.seed,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    # Best-checkpoint tracking needs periodic evaluation; without it the latest is the best.
    best = (config.best_metric or None) if config.eval_every_steps else None
    with (
        Checkpointer(
            workdir / "checkpoints", keep_latest=config.keep_checkpoints, best_metric=best
        ) as ckpt,
        warnings.catch_warnings(),
    ):
        # CPU backends cannot donate buffers; the warning says nothing actionable there.
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        start = 0
        if ckpt.latest_step() is not None:
            restored = ckpt.restore(state)
            state, start = restored.state, int(restored.step)
            if restored.data_state is not None:
                iterator.set_state(restored.data_state)
            logger.info("resumed from step %d in %s", start, ckpt.directory)
        elif is_writer:
            (workdir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        device_state = runner.put_replicated(state)
        device_sources = runner.put_replicated(sources)
        device_key = runner.put_key(synth_key)
        writer = MetricWriter(workdir) if is_writer else None
        progress = tqdm(
            range(start, total_steps),
            initial=start,
            total=total_steps,
            disable=not is_writer,
            desc="train",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        tick, tick_step = time.perf_counter(), start
        for step in progress:
            batch = runner.put_batch(_model_batch(next(iterator), config))
            if step == start:
                step_fn = compile_in_step(step_fn, device_state, batch, device_key, device_sources)
            device_state, step_metrics = step_fn(device_state, batch, device_key, device_sources)
            done = step + 1
            log_now = done % config.log_every_steps == 0 or done == total_steps
            save_now = done % config.checkpoint_every_steps == 0 or done == total_steps
            if log_now or save_now:
                scalars = runner.to_host(step_metrics)
                _check_finite(done, scalars, ckpt)
                rate = (done - tick_step) / max(time.perf_counter() - tick, 1e-9)
                tick, tick_step = time.perf_counter(), done
                progress.set_postfix(loss=f"{float(scalars['total']):.4f}", steps_s=f"{rate:.2f}")
                if writer:
                    writer.write(done, dict(scalars, steps_per_second=rate))
            if save_now:
                host_state = runner.to_host(device_state)
                if not _params_finite(host_state):
                    _check_finite(done, {"params": float("nan")}, ckpt)
                eval_now = done == total_steps or (
                    config.eval_every_steps and done % config.eval_every_steps == 0
                )
                eval_metrics = (
                    evaluate_state(config, eval_model, host_state, test_source)
                    if eval_now and best
                    else None
                )
                if eval_metrics and writer:
                    writer.write(done, eval_metrics, prefix="test")
                ckpt.save(
                    done,
                    host_state,
                    data_state=iterator.get_state(),
                    metrics=eval_metrics,
                    config=config,
                )
        progress.close()
        final_state = runner.to_host(device_state)

    scores_path = workdir / "frame_scores.npz" if is_writer else None
    final = evaluate_state(config, eval_model, final_state, test_source, scores_path)
    if is_writer:
        summary = {"step": total_steps, **run_summary(config), **final}
        (workdir / "metrics.json").write_text(json.dumps(summary, indent=2))
        print(format_final_table(final))
        if writer:
            writer.write(total_steps, final, prefix="test")
            writer.close()
    return final


def run_summary(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The run-describing keys of ``metrics.json`` (model, SSPCAB placement, video settings)."""
    summary: dict[str, Any] = {"model": config.model}
    if config.model == "draem":
        summary["sspcab_placement"] = config.draem.sspcab_placement
    else:
        summary["sspcab_positions"] = list(config.autoencoder.sspcab_positions)
    if video_eval.is_video(config):
        summary.update(video_eval.summary_fields(config))
    return summary


def _model_batch(batch: dict[str, Any], config: ml_collections.ConfigDict) -> dict[str, Any]:
    return {"image": evaluation.to_model_input(batch["image"], config)}


def format_final_table(final: dict[str, float]) -> str:
    """Two-column Markdown table of the final metrics (x100, as papers report them)."""
    lines = ["| metric | value |", "|---|---|"]
    for name, value in final.items():
        lines.append(f"| {name} | {'—' if not np.isfinite(value) else f'{100 * value:.1f}'} |")
    return "\n".join(lines)
