"""Write-once generated datasets: built in a temporary folder, renamed into place, verified.

A generated tree under ``root`` (one or more top-level folders, the *entries*) is trusted only
when ``<root>/.<name>.manifest.json`` lists exactly its files with their sizes and SHA-256, and
the generation arguments match. The writer builds everything in a sibling temporary folder,
moves each entry into place with :func:`os.replace`, and writes the manifest last (itself via a
rename), so the manifest is the commit point: a process killed at any moment leaves either the
previous complete tree or no manifest, and the next call rebuilds. Checksums also catch what a
crash cannot (a power loss before the data reached the disk, a hand-edited or truncated file),
which is why no ``fsync`` is needed.

Writers take an exclusive ``flock`` on ``<root>/.<name>.lock``, so two processes asking for the
same dataset at once write it once: the second waits, then finds the first one's complete tree.
A complete tree is verified without the lock, so a read-only copy can be used as it is.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
_SHOWN = 3  # file names quoted per kind of problem in a warning


def manifest_path(root: Path, name: str) -> Path:
    """The manifest of dataset ``name`` under ``root``."""
    return Path(root) / f".{name}.manifest.json"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _walk(base: Path, entries: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """Files (relative POSIX path -> path) and folders found under ``base``'s entries."""
    files, dirs = {}, []
    for entry in entries:
        top = base / entry
        if not top.is_dir():
            continue
        for folder, subdirs, names in os.walk(top):
            rel = Path(folder).relative_to(base).as_posix()
            dirs.append(rel)
            subdirs.sort()
            for file_name in sorted(names):
                files[f"{rel}/{file_name}"] = Path(folder) / file_name
    return files, dirs


def build_manifest(base: Path, entries: Sequence[str], params: Mapping[str, Any]) -> dict:
    """Sizes and SHA-256 of every file under ``base``'s entries, with the generation arguments."""
    files, dirs = _walk(base, entries)
    return {
        "format": MANIFEST_FORMAT,
        "params": _plain(params),
        "entries": list(entries),
        "dirs": dirs,
        "files": {rel: [path.stat().st_size, _sha256(path)] for rel, path in files.items()},
    }


def _plain(params: Mapping[str, Any]) -> dict:
    """``params`` as JSON reads it back (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(dict(params), sort_keys=True))


def _listed(kind: str, names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{len(names)} {kind} ({shown}{more})"


def verify_tree(
    root: Path, name: str, entries: Sequence[str], params: Mapping[str, Any]
) -> str | None:
    """Checks a generated tree against its manifest.

    Args:
      root: folder holding the entries and the manifest.
      name: dataset name (manifest file name).
      entries: top-level folders the dataset consists of.
      params: the generation arguments asked for now.

    Returns:
      None when the tree is complete and unchanged; otherwise what is wrong, in words
      (``'absent'`` when neither an entry nor a manifest exists).
    """
    root = Path(root)
    present = [e for e in entries if (root / e).exists()]
    path = manifest_path(root, name)
    if not path.is_file():
        if not present:
            return "absent"
        return "without a manifest (an interrupted write, or one by an older version)"
    try:
        manifest = json.loads(path.read_text())
        expected_files = {rel: tuple(v) for rel, v in manifest["files"].items()}
        expected_dirs, saved = set(manifest["dirs"]), manifest["params"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"with an unreadable manifest {path.name} ({error})"
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("entries") != list(entries):
        return f"with a manifest {path.name} of another format"
    wanted = _plain(params)
    if saved != wanted:
        changed = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        return (
            "written with other arguments ("
            + ", ".join(f"{k}={saved.get(k)!r}, now {wanted.get(k)!r}" for k in changed)
            + ")"
        )
    files, dirs = _walk(root, entries)
    missing = sorted(expected_files.keys() - files.keys())
    # A missing folder is named only when no missing file already names it.
    missing += sorted(
        d for d in expected_dirs - set(dirs) if not any(m.startswith(f"{d}/") for m in missing)
    )
    extra = sorted((files.keys() - expected_files.keys()) | (set(dirs) - expected_dirs))
    resized, altered = [], []
    for rel in sorted(expected_files.keys() & files.keys()):
        size, digest = expected_files[rel]
        actual = files[rel].stat().st_size
        if actual != size:
            resized.append(f"{rel}: {actual} bytes, expected {size}")
        elif _sha256(files[rel]) != digest:
            altered.append(rel)
    problems = [
        _listed(kind, names)
        for kind, names in (
            ("missing", missing),
            ("unexpected", extra),
            ("resized", resized),
            ("with changed bytes", altered),
        )
        if names
    ]
    return "incomplete or altered: " + "; ".join(problems) if problems else None


@contextlib.contextmanager
def _exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``lock_path`` (released by the OS if the process dies)."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process writing %s", what)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(content, indent=1, sort_keys=True))
    os.replace(tmp, path)


def ensure_tree(
    root: str | os.PathLike,
    name: str,
    entries: Sequence[str],
    params: Mapping[str, Any],
    write: Callable[[Path], object],
) -> Path:
    """Returns ``root`` holding a complete, verified copy of a generated dataset.

    A complete tree whose manifest matches is used as it is (no file is rewritten). Anything
    else -- absent, interrupted, tampered with, written with other arguments -- is written
    afresh; a warning names what was wrong with the tree it replaces.

    Args:
      root: folder that holds (or will hold) the entries.
      name: dataset name, used for the manifest, lock and temporary folder names.
      entries: top-level folders that ``write`` creates.
      params: the arguments the dataset is generated from (JSON-serialisable); recorded in the
        manifest, and a tree written with other ones is rebuilt.
      write: writes the entries into the folder it is given (deterministically from ``params``).

    Returns:
      ``root`` as a Path.
    """
    root = Path(root)
    what = f"the embedded dataset {name!r} at {root}"
    start = time.perf_counter()
    if verify_tree(root, name, entries, params) is None:
        logger.info("%s verified in %.0f ms", what, 1e3 * (time.perf_counter() - start))
        return root
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f".{name}.lock", what):
        problem = verify_tree(root, name, entries, params)
        if problem is None:
            logger.info("%s was written by another process meanwhile", what)
            return root
        if problem != "absent":
            logger.warning("%s is %s; rebuilding it", what, problem)
        # Holding the lock, every temporary folder left here belongs to a dead writer.
        for stale in sorted(root.glob(f".{name}.tmp-*")):
            logger.warning("removing %s, left by an interrupted write", stale)
            _remove(stale)
        logger.info("writing %s", what)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
        try:
            write(tmp)
            manifest = build_manifest(tmp, entries, params)
            # Commit order: drop the old manifest, swap the entries, then write the manifest.
            manifest_path(root, name).unlink(missing_ok=True)
            for entry in entries:
                _remove(root / entry)
                if (tmp / entry).exists():
                    os.replace(tmp / entry, root / entry)
            _write_json(manifest_path(root, name), manifest)
        finally:
            _remove(tmp)
    return root
