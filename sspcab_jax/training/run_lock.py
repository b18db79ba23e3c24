"""One writer per work directory: ``with RunLock(workdir):`` around a training run.

The lock is ``<workdir>/.lock``, a JSON record of the holder (PID, host, start time) held
with ``fcntl.flock`` for the whole run. The kernel drops a ``flock`` when its process dies
(SIGKILL included), so on one host a lock whose ``flock`` is free belongs to a dead process
and is taken over with a warning. A second live process stops at once with
:class:`RunLockedError`, whose one-line message names the holder.

Across hosts (a work directory on NFS) a ``flock`` may not be seen by the other machine and
a PID cannot be checked there, so a lock file naming another host is never taken over: the
error names the file to delete once the holder is known to be gone.

In a multi-process (multi-host) run only process 0 writes checkpoints and metrics, so only
it takes the lock: ``RunLock(workdir, enabled=jax.process_index() == 0)``. Commands that
only read a run (evaluate, predict, export) take no lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pathlib
import socket
import time
from typing import Any

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunLockError(Exception):
    """The work directory cannot be locked for writing; the message names the fix."""


class RunLockedError(RunLockError):
    """Another live process (or a process on another host) holds the work directory."""


class WorkdirNotWritableError(RunLockError, PermissionError):
    """The work directory (or its lock file) cannot be created or written."""


class RunLock:
    """Exclusive lock on a work directory for the lifetime of a ``with`` block.

    Args:
        workdir: The run's directory; created if missing.
        enabled: False makes the lock a no-op (processes other than 0 of a multi-host run).

    Raises (on entry):
        RunLockedError: Another live process holds the directory.
        WorkdirNotWritableError: The directory or its lock file cannot be written.
    """

    def __init__(self, workdir: str | os.PathLike[str], *, enabled: bool = True):
        self.workdir = pathlib.Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        if self.enabled:
            self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Takes the lock or raises (see the class docstring)."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            fd = self._open_locked()
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise WorkdirNotWritableError(
                f"cannot write in the work directory {self.workdir} ({e.strerror}): pass a "
                "--workdir you can write to, or fix the folder's permissions."
            ) from e
        try:
            self._check_previous_holder(fd)
            _write_record(fd, _holder_record())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Removes the lock file and drops the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            # Unlink while still holding the flock: a process that opened the old file
            # meanwhile sees its inode vanish and retries on a fresh file (_open_locked).
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def _open_locked(self) -> int:
        """Opens ``.lock`` and takes its flock without waiting; returns the descriptor."""
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_record(fd)
                os.close(fd)
                raise RunLockedError(self._locked_message(holder)) from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
                # A filesystem without locks: the record alone decides (_check_previous_holder).
                logger.warning("%s does not support file locks; relying on its record", self.path)
            if _same_file(fd, self.path):
                return fd
            os.close(fd)  # the holder released (unlinked) it between our open and flock
        raise RunLockError(f"could not take {self.path}: it keeps being replaced; retry.")

    def _check_previous_holder(self, fd: int) -> None:
        """Decides whether the record left in the (now flocked) file may be taken over."""
        holder = _read_record(fd)
        if holder is None:
            return  # a fresh file, or one whose holder died before writing its record
        host = socket.gethostname()
        if holder.get("host") != host:
            raise RunLockedError(self._locked_message(holder))
        pid = holder.get("pid")
        if isinstance(pid, int) and _same_process_alive(holder):
            # The flock was free yet the process lives: a filesystem whose locks do not work.
            raise RunLockedError(self._locked_message(holder))
        logger.warning(
            "taking over the stale lock %s of process %s on %s (started %s), which is no "
            "longer running; a run interrupted there resumes from its last checkpoint.",
            self.path,
            pid,
            host,
            holder.get("started", "at an unknown time"),
        )

    def _locked_message(self, holder: dict[str, Any] | None) -> str:
        if holder is None:
            who = "another process (its record is not written yet)"
        else:
            who = (
                f"process {holder.get('pid')} on host {holder.get('host')} "
                f"(started {holder.get('started', '?')})"
            )
        advice = (
            "wait for it to finish, or use another --workdir"
            if holder is None or holder.get("host") == socket.gethostname()
            else "wait for it to finish, or use another --workdir; if you are sure that "
            f"process is no longer running, delete {self.path}"
        )
        return f"{self.workdir} is in use by {who}: {advice}."


def _holder_record() -> dict[str, Any]:
    pid = os.getpid()
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "boot_id": _boot_id(),
        "process_start": _process_start(pid),
    }


def _write_record(fd: int, record: dict[str, Any]) -> None:
    data = (json.dumps(record) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _read_record(fd: int) -> dict[str, Any] | None:
    """The holder record in the file, None when empty; unparsable text counts as empty."""
    text = os.pread(fd, 65536, 0).decode(errors="replace").strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        logger.warning("ignoring an unreadable lock record: %r", text[:200])
        return None
    return record if isinstance(record, dict) else None


def _same_file(fd: int, path: pathlib.Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_process_alive(holder: dict[str, Any]) -> bool:
    """Whether the recorded PID still runs the recorded process (not a reused PID)."""
    pid = holder["pid"]
    if holder.get("boot_id") and _boot_id() and holder["boot_id"] != _boot_id():
        return False  # the machine rebooted since the record was written
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    recorded, now = holder.get("process_start"), _process_start(pid)
    return recorded is None or now is None or recorded == now


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None elsewhere."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])  # field 22 of stat(5)


def _boot_id() -> str | None:
    try:
        return pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
