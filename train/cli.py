"""The command-line machinery every ``train/`` command shares.

Each command defines its absl flags in ``define_flags(flag_values, argv)`` and parses them with
:func:`parse_flags` into a fresh ``flags.FlagValues`` on every call, never into the global
``FLAGS``: the commands can then be imported together (by tests or other code) without
duplicate-flag errors, and ``main(argv)`` can be called in-process any number of times (config
overrides such as ``--config.total_steps=5`` are flags defined while parsing). ``python -m
train.<command>`` runs ``cli.run(main)``.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import tempfile
from collections.abc import Callable, Sequence

from absl import app, flags

from sspcab_jax.data import CorruptImageError, DatasetNotFoundError
from sspcab_jax.detector.local_fusion import FusionError
from sspcab_jax.training.async_errors import report_async_errors_once
from sspcab_jax.training.config_checks import ConfigError
from sspcab_jax.training.config_drift import ConfigDriftError
from sspcab_jax.training.restore import RunError
from sspcab_jax.training.run_lock import RunLockError

# Errors whose message already names the fix: the command prints it without a traceback. Missing
# or unwritable paths the user gave are reported the same way.
USER_ERRORS: tuple[type[Exception], ...] = (
    RunError,
    DatasetNotFoundError,
    CorruptImageError,
    ConfigError,
    ConfigDriftError,
    RunLockError,
    FusionError,
    FileNotFoundError,
    PermissionError,
)
# Exit status of a command stopped by a user error (absl's usage errors use 1).
ERROR_EXIT = 2
TRACEBACK_FLAG = "--traceback"

DefineFlags = Callable[[flags.FlagValues, Sequence[str]], None]


class CommandError(Exception):
    """Bad command-line input; the message names the fix."""


def parse_flags(define: DefineFlags, argv: Sequence[str], doc: str) -> flags.FlagValues:
    """Parses ``argv`` (program name first) into the flags ``define`` declares.

    ``--help`` prints ``doc`` and the flags, then exits 0.

    Args:
        define: ``define(flag_values, argv)`` declares the command's flags in ``flag_values``
            (``argv`` is for ``config_flags``, which reads its overrides from it).
        argv: the command line, program name first.
        doc: the command's description (its module docstring).

    Returns:
        The parsed flags (``flag_values.workdir``, ...).

    Raises:
        CommandError: An unknown flag, a bad value or a missing required flag.
    """
    argv = list(argv)
    flag_values = flags.FlagValues()
    define(flag_values, argv)
    if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in argv[1:]):
        print(doc.strip() + "\n\nFlags:\n" + flag_values.get_help())
        raise SystemExit(0)
    try:
        rest = flag_values(argv)
    except flags.Error as e:
        raise CommandError(f"{str(e).rstrip('.')}. Run with --help for the flags.") from e
    except AttributeError as e:  # config_flags: an override of a field the config lacks
        inner = e.args[0] if e.args else e
        message = inner.args[0] if isinstance(inner, KeyError) and inner.args else str(inner)
        # ml_collections names the nearest valid field ("Did you mean ...").
        raise CommandError(f"unknown config field {' '.join(str(message).split())}") from e
    if len(rest) > 1:
        raise CommandError(f"unexpected arguments {rest[1:]}; every input is a --flag.")
    return flag_values


def require_writable(folder: str | pathlib.Path, flag: str) -> None:
    """Checks, before any work, that the command will be able to write in ``folder``.

    Nothing is created: a folder that does not exist yet is checked through its nearest
    existing parent, the one it will be created in.

    Args:
        folder: the output folder a command will write into.
        flag: the flag that named it (``--out``), for the message.

    Raises:
        CommandError: the folder cannot be written in (or created); one line naming it and the fix.
    """
    folder = pathlib.Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(existing))
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as e:
        raise CommandError(
            f"cannot write in {folder} ({e.strerror or e}): pass a {flag} you can write to, or "
            "fix the folder's permissions."
        ) from e


def setup_logging() -> None:
    """Project progress at INFO; libraries (Orbax logs every file it reads) from WARNING."""
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("sspcab_jax").setLevel(logging.INFO)
    logging.getLogger("train").setLevel(logging.INFO)


def run(main: Callable[[Sequence[str]], object]) -> None:
    """``app.run(main)`` for a command whose ``main`` parses its own flags.

    A known error (:data:`USER_ERRORS`, a bad flag, a non-finite loss) ends the program with one
    line ``error: <message>`` on stderr and exit status 2, no traceback; ``--traceback`` (any
    command) shows it instead.
    """

    def entry(argv: Sequence[str]) -> None:
        show_traceback = TRACEBACK_FLAG in argv
        setup_logging()
        if not show_traceback:
            report_async_errors_once()  # one line per failed async read, not a flood
        # Imported here: the loop pulls in the model code, which the lighter commands skip.
        from sspcab_jax.training.loop import NonFiniteLossError

        try:
            main([arg for arg in argv if arg != TRACEBACK_FLAG])
        except (CommandError, NonFiniteLossError, *USER_ERRORS) as e:
            if show_traceback:
                raise
            print(f"error: {_one_line(e)}", file=sys.stderr)
            sys.exit(ERROR_EXIT)

    # The global FLAGS stay unparsed by app.run (flags_parser keeps argv whole); mark them so
    # libraries that read absl flags (grain) do not complain.
    def keep_argv(argv: Sequence[str]) -> list[str]:
        flags.FLAGS.mark_as_parsed()
        return list(argv)

    app.run(entry, flags_parser=keep_argv)


def _one_line(error: BaseException) -> str:
    """The message of ``error``; an OS error keeps its path (``[Errno 2] ...: 'path'``)."""
    return " ".join(str(error).split("\n")[:1]) if isinstance(error, OSError) else str(error)
