"""RunLock with real processes: a live holder, a SIGKILLed one, stale and foreign records."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from sspcab_jax.training import run_lock
from sspcab_jax.training.run_lock import (
    RunLock,
    RunLockedError,
    WorkdirNotWritableError,
)

# The module is loaded from its file so a child process starts in ~0.1 s (no JAX import).
HOLDER = """
import importlib.util, logging, os, sys, time
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
spec = importlib.util.spec_from_file_location("run_lock", sys.argv[1])
run_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_lock)
if len(sys.argv) > 4 and os.geteuid() == 0:  # root ignores file modes: become nobody
    os.setgid(65534)
    os.setuid(65534)
try:
    with run_lock.RunLock(sys.argv[2]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[3]))
except run_lock.RunLockError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


def _start(workdir, hold_s=60.0, *extra):
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, run_lock.__file__, str(workdir), str(hold_s), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_locked(proc):
    line = proc.stdout.readline()
    assert line.strip() == "locked", proc.stderr.read()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: nothing runs under this PID (barring immediate reuse)


def test_second_process_stops_at_once_naming_the_holder(tmp_path):
    holder = _start(tmp_path)
    try:
        _wait_locked(holder)
        record = json.loads((tmp_path / ".lock").read_text())
        assert record["pid"] == holder.pid and record["host"] == socket.gethostname()
        began = time.monotonic()
        second = _start(tmp_path)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 2
        assert time.monotonic() - began < 10  # no waiting on the holder
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"process {holder.pid} on host {socket.gethostname()}" in lines[0]
        assert "another --workdir" in lines[0]
        assert holder.poll() is None  # the holder is untouched
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_sigkilled_holder_is_taken_over_with_a_warning(tmp_path):
    holder = _start(tmp_path)
    _wait_locked(holder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / ".lock").exists()  # a killed process cannot clean up
    successor = _start(tmp_path, hold_s=0)
    out, err = successor.communicate(timeout=30)
    assert successor.returncode == 0, err
    assert out.strip() == "locked"
    assert "WARNING taking over the stale lock" in err
    assert f"of process {holder.pid} on {socket.gethostname()}" in err
    assert not (tmp_path / ".lock").exists()  # released on a clean exit


def test_record_naming_a_dead_pid_is_taken_over(tmp_path, caplog):
    pid = _dead_pid()
    record = {"pid": pid, "host": socket.gethostname(), "started": "yesterday"}
    (tmp_path / ".lock").write_text(json.dumps(record))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert f"stale lock {tmp_path / '.lock'} of process {pid}" in caplog.text


def test_record_naming_a_reused_pid_is_taken_over(tmp_path, caplog):
    # Our own PID, but a different process start: the PID was reused since the record.
    record = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": -1}
    (tmp_path / ".lock").write_text(json.dumps(record))
    with RunLock(tmp_path):
        pass
    assert "taking over the stale lock" in caplog.text


def test_live_recorded_process_is_never_taken_over(tmp_path):
    # A free flock but a live recorded process (a filesystem whose locks do not work).
    parent = os.getppid()
    record = {
        "pid": parent,
        "host": socket.gethostname(),
        "process_start": run_lock._process_start(parent),
    }
    (tmp_path / ".lock").write_text(json.dumps(record))
    with pytest.raises(RunLockedError, match=f"process {parent} on host"):
        RunLock(tmp_path).acquire()


def test_lock_from_another_host_is_an_error_naming_the_file(tmp_path):
    record = {"pid": 1234, "host": "other-machine", "started": "2026-01-01 00:00:00"}
    (tmp_path / ".lock").write_text(json.dumps(record))
    with pytest.raises(RunLockedError) as info:
        RunLock(tmp_path).acquire()
    message = str(info.value)
    assert "process 1234 on host other-machine" in message
    assert f"delete {tmp_path / '.lock'}" in message
    assert "\n" not in message
    assert json.loads((tmp_path / ".lock").read_text()) == record  # left as found


def test_same_process_cannot_take_it_twice_and_release_frees_it(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # free again after release
        pass


def test_disabled_lock_writes_nothing(tmp_path):
    with RunLock(tmp_path / "run", enabled=False):
        assert not (tmp_path / "run").exists()


def test_read_only_workdir_is_one_line_naming_the_folder():
    # Under /tmp (not pytest's private tmp_path) so the unprivileged child can reach it.
    parent = pathlib.Path(tempfile.mkdtemp())
    parent.chmod(0o755)
    workdir = parent / "ro"
    workdir.mkdir(mode=0o555)
    try:
        proc = _start(workdir, 0, "as-nobody")
        out, err = proc.communicate(timeout=30)
    finally:
        shutil.rmtree(parent)
    assert proc.returncode == 2 and out == ""
    assert err.strip().splitlines() == [
        f"error: cannot write in the work directory {workdir} (Permission denied): pass a "
        "--workdir you can write to, or fix the folder's permissions."
    ]


def test_not_writable_error_is_a_permission_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    with pytest.raises(PermissionError, match="cannot write in the work directory"):
        RunLock(tmp_path / "x").acquire()
    assert issubclass(WorkdirNotWritableError, run_lock.RunLockError)
