"""MetricWriter on real files: each step once after a resume, TensorBoard told to purge."""

import json
import struct

from tensorboardX.proto import event_pb2

from sspcab_jax.training.writers import MetricWriter


def _rows(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _first_run(workdir, steps, *, final=False):
    with MetricWriter(workdir) as writer:
        for step in steps:
            writer.write(step, {"total": step / 10})
            if step % 2 == 0:
                writer.write(step, {"auroc": 0.5}, prefix="test")
        if final:
            writer.write(steps[-1], {"auroc": 0.75}, prefix="test")


def test_fresh_writers_append_and_nan_is_null(tmp_path):
    _first_run(tmp_path, [1, 2])
    with MetricWriter(tmp_path) as writer:
        writer.write(3, {"total": float("nan")})
    assert _rows(tmp_path) == [
        {"step": 1, "train/total": 0.1},
        {"step": 2, "train/total": 0.2},
        {"step": 2, "test/auroc": 0.5},
        {"step": 3, "train/total": None},
    ]


def test_resume_drops_rows_past_the_resume_step_and_a_cut_line(tmp_path):
    _first_run(tmp_path, [1, 2, 3, 4, 5])
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 6, "train/to')  # killed mid-write
    with MetricWriter(tmp_path, resume_step=4) as writer:
        for step in (5, 6):
            writer.write(step, {"total": step / 10})
    steps = [(row["step"], sorted(row)) for row in _rows(tmp_path)]
    assert steps == [
        (1, ["step", "train/total"]),
        (2, ["step", "train/total"]),
        (2, ["step", "test/auroc"]),
        (3, ["step", "train/total"]),
        (4, ["step", "train/total"]),
        (4, ["step", "test/auroc"]),
        (5, ["step", "train/total"]),
        (6, ["step", "train/total"]),
    ]
    assert not list(tmp_path.glob(".metrics.jsonl.*"))


def test_finished_run_resumed_replaces_its_final_evaluation(tmp_path):
    _first_run(tmp_path, [1, 2], final=True)  # step 2: train, test (periodic), test (final)
    with MetricWriter(tmp_path, resume_step=2) as writer:
        writer.write(2, {"auroc": 0.25}, prefix="test")
    rows = _rows(tmp_path)
    assert rows[:2] == [{"step": 1, "train/total": 0.1}, {"step": 2, "train/total": 0.2}]
    # Both earlier step-2 evaluations had the same keys: the repeated row replaces one of
    # them, so the step keeps as many rows as an uninterrupted run writes.
    assert rows[2:] == [{"step": 2, "test/auroc": 0.5}, {"step": 2, "test/auroc": 0.25}]


def test_resume_without_a_metrics_file(tmp_path):
    with MetricWriter(tmp_path, resume_step=7) as writer:
        writer.write(8, {"total": 1.0})
    assert _rows(tmp_path) == [{"step": 8, "train/total": 1.0}]


def _events(path):
    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[offset + 12 : offset + 12 + length])
        events.append(event)
        offset += 12 + length + 4
    return events


def test_resumed_tensorboard_purges_from_the_step_after_the_resume(tmp_path):
    with MetricWriter(tmp_path, resume_step=4) as writer:
        writer.write(5, {"total": 1.0})
    (events_file,) = (tmp_path / "tb").iterdir()
    starts = [e.step for e in _events(events_file) if e.HasField("session_log")]
    # TensorBoard drops earlier events at or after a SessionLog.START's step.
    assert starts == [5]
    tags = [(e.step, v.tag) for e in _events(events_file) for v in e.summary.value]
    assert tags == [(5, "train/total")]
