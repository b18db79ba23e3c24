"""``train.main`` under faults a user meets: a changed config, a second process, bad input.

Each test runs the real command (``cli.run(main.main)`` as ``python -m train.main`` does) on a
copy of one finished tiny run and asserts the exact outcome: one ``error:`` line with exit status
2 and nothing saved lost, or a resume that records what changed.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from sspcab_jax.training import run_lock
from train import cli
from train import main as train_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_main(monkeypatch, *argv):
    monkeypatch.setattr("sys.argv", ["main", *argv])
    return cli.run(train_main.main)


def _tree(workdir):
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "checkpoints").rglob("*"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished") / "run"
    train_main.main(
        [
            "main",
            "--config=configs/test.py",
            f"--workdir={workdir}",
            "--config.total_steps=2",
            "--config.checkpoint_every_steps=2",
        ]
    )
    return workdir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns(".lock"))
    return copy


def _error_line(capsys):
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    return err[0]


def test_shape_change_on_resume_is_one_line_naming_each_field(run_copy, monkeypatch, capsys):
    before_config, before_tree = (run_copy / "config.json").read_text(), _tree(run_copy)
    with pytest.raises(SystemExit) as info:
        _run_main(
            monkeypatch,
            "--config=configs/test.py",
            f"--workdir={run_copy}",
            "--config.total_steps=2",
            "--config.checkpoint_every_steps=2",
            "--config.draem.recon_width=16",
            "--config.data.image_size=64",
        )
    assert info.value.code == cli.ERROR_EXIT
    line = _error_line(capsys)
    assert "draem.recon_width: 8 (saved) vs 16 (now)" in line
    assert "data.image_size: 32 (saved) vs 64 (now)" in line
    assert f"--config=configs/from_run.py:{run_copy}" in line and "another --workdir" in line
    # Nothing already saved is touched.
    assert (run_copy / "config.json").read_text() == before_config
    assert _tree(run_copy) == before_tree


def test_other_changes_resume_with_a_warning_and_are_recorded(run_copy, caplog):
    train_main.main(
        [
            "main",
            "--config=configs/test.py",
            f"--workdir={run_copy}",
            "--config.total_steps=4",
            "--config.checkpoint_every_steps=2",
            "--config.learning_rate=0.0005",
        ]
    )
    assert "resuming with changed fields" in caplog.text
    saved = json.loads((run_copy / "config.json").read_text())
    assert saved["total_steps"] == 4 and saved["learning_rate"] == 0.0005
    (entry,) = saved["history"]
    assert entry["step"] == 2
    assert sorted(entry["changes"]) == [
        "learning_rate: 0.001 (saved) vs 0.0005 (now)",
        "total_steps: 2 (saved) vs 4 (now)",
    ]
    rows = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train/total" in r] == [1, 2, 3, 4]


def test_a_second_train_main_on_a_held_workdir_stops_at_once(run_copy, monkeypatch, capsys):
    # Another process holds the workdir (loaded from the module file: no JAX import, fast).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import importlib.util, sys, time\n"
            "spec = importlib.util.spec_from_file_location('run_lock', sys.argv[1])\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "with m.RunLock(sys.argv[2]):\n"
            "    print('locked', flush=True); time.sleep(60)\n",
            run_lock.__file__,
            str(run_copy),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = _tree(run_copy)
        with pytest.raises(SystemExit) as info:
            _run_main(monkeypatch, "--config=configs/test.py", f"--workdir={run_copy}")
    finally:
        holder.kill()
        holder.wait()
    assert info.value.code == cli.ERROR_EXIT
    line = _error_line(capsys)
    assert f"in use by process {holder.pid}" in line and "another --workdir" in line
    assert _tree(run_copy) == before


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--config=no/such/config.py"], "cannot load --config: [Errno 2] No such file"),
        (
            ["--config=configs/test.py", "--config.draem.recon_widht=16"],
            "unknown config field 'recon_widht' Did you mean \"recon_width\"",
        ),
        (
            ["--config=configs/test.py", "--config.draem.sspcab_placement=everywhere"],
            "config.draem.sspcab_placement='everywhere' is invalid",
        ),
    ],
)
def test_bad_input_is_one_error_line(argv, expected, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as info:
        _run_main(monkeypatch, *argv, f"--workdir={tmp_path / 'w'}")
    assert info.value.code == cli.ERROR_EXIT
    assert expected in _error_line(capsys)


# The child imports everything as root, then becomes nobody (root ignores file modes; nobody
# cannot read root's Python installation, so nothing may be imported after the switch).
WRITABLE_CHECK = """
import os, sys
sys.path.insert(0, sys.argv[1])
from train import cli
os.setgid(65534)
os.setuid(65534)
try:
    cli.require_writable(sys.argv[2], "--out")
except cli.CommandError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
def test_read_only_output_folder_is_refused_before_any_work(tmp_path_factory):
    parent = pathlib.Path(tempfile.mkdtemp())
    parent.chmod(0o755)
    read_only = parent / "ro"
    read_only.mkdir(mode=0o555)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", WRITABLE_CHECK, str(ROOT), str(read_only / "predictions")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(parent)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: cannot write in {read_only / 'predictions'} (Permission denied): pass a --out "
        "you can write to, or fix the folder's permissions."
    )


def test_evaluate_checks_its_output_before_computing(tmp_path, monkeypatch):
    from train import evaluate

    calls = []
    monkeypatch.setattr(cli, "require_writable", lambda *a, **k: calls.append("check"))
    monkeypatch.setattr(evaluate, "evaluate_run", lambda *a, **k: calls.append("work"))
    evaluate.main(["evaluate", f"--workdir={tmp_path}"])
    assert calls == ["check", "work"]
