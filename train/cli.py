"""Shared plumbing of the run commands (evaluate, predict, figures).

Each command keeps its flags in its own ``flags.FlagValues`` instead of the global ``FLAGS``:
the commands (and ``train.main``) can then be imported together, by tests or by other code,
without duplicate-flag errors, and their ``main(argv)`` can be called in-process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from absl import app, flags

from sspcab_jax.data import CorruptImageError, DatasetNotFoundError
from sspcab_jax.training.restore import RunError

# Errors whose message already names the fix: the command prints it without a traceback.
USER_ERRORS: tuple[type[Exception], ...] = (RunError, DatasetNotFoundError, CorruptImageError)


class CommandError(Exception):
    """Bad command-line input; the message names the fix."""


def parse_flags(flag_values: flags.FlagValues, argv: Sequence[str], doc: str) -> None:
    """Parses ``argv`` (program name first) into ``flag_values``.

    ``--help`` prints ``doc`` and the flags, then exits 0.

    Raises:
        CommandError: An unknown flag, a bad value or a missing required flag.
    """
    if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in argv[1:]):
        print(doc.strip() + "\n\nFlags:\n" + flag_values.get_help())
        raise SystemExit(0)
    flag_values.unparse_flags()  # the same command may be called twice in one process
    try:
        rest = flag_values(list(argv))
    except flags.Error as e:
        raise CommandError(f"{str(e).rstrip('.')}. Run with --help for the flags.") from e
    if len(rest) > 1:
        raise CommandError(f"unexpected arguments {rest[1:]}; every input is a --flag.")


def setup_logging() -> None:
    """Project progress at INFO; libraries (Orbax logs every file it reads) from WARNING."""
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("sspcab_jax").setLevel(logging.INFO)
    logging.getLogger("train").setLevel(logging.INFO)


def run(main: Callable[[Sequence[str]], object]) -> None:
    """``app.run(main)`` for a command whose ``main`` parses its own flags.

    A known input error ends the program with its message (exit status 1), not a traceback.
    """

    def entry(argv: Sequence[str]) -> None:
        setup_logging()
        try:
            main(argv)
        except (CommandError, *USER_ERRORS) as e:
            sys.exit(f"error: {e}")

    # The global FLAGS stay unparsed by app.run (flags_parser keeps argv whole); mark them so
    # libraries that read absl flags (grain) do not complain.
    def keep_argv(argv: Sequence[str]) -> list[str]:
        flags.FLAGS.mark_as_parsed()
        return list(argv)

    app.run(entry, flags_parser=keep_argv)
