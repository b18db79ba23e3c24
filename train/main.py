"""Train and evaluate: ``python -m train.main --config=configs/draem_demo.py --workdir=DIR``.

Override any config field with ``--config.<field>=<value>`` (e.g. ``--config.total_steps=100``);
``--config=FILE:ARG`` passes ARG to the file's ``get_config``. Killed runs resume from the newest
checkpoint in ``--workdir``. Multi-host: pass ``--coordinator_address=host:port
--num_processes=N --process_id=i`` on every process.
"""

from collections.abc import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from sspcab_jax.xla_flags import apply_default_cpu_flags

# Faster CPU convolutions unless the user set these flags or targets an accelerator; must run
# before JAX starts a backend (sspcab_jax/xla_flags.py).
apply_default_cpu_flags()

from sspcab_jax.training.parallel import initialize_distributed  # noqa: E402
from train import cli  # noqa: E402


def define_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
    """The flags of ``train.main``."""
    config_flags.DEFINE_config_file(
        "config",
        None,
        "Experiment config file.",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=list(argv),
    )
    flags.DEFINE_string(
        "workdir", None, "Directory for checkpoints, logs and metrics.", flag_values=flag_values
    )
    flags.DEFINE_string(
        "coordinator_address", "", "host:port of process 0 (multi-host).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "num_processes", 1, "Number of processes (multi-host).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "process_id", 0, "Index of this process (multi-host).", flag_values=flag_values
    )
    flags.mark_flags_as_required(["config", "workdir"], flag_values=flag_values)


def load_config(args: flags.FlagValues) -> ml_collections.ConfigDict:
    """The parsed ``--config``: config_flags reports a file it cannot load only on first use.

    Raises:
        CommandError: The config file cannot be loaded (missing, unreadable, broken).
    """
    config = args.config
    try:
        config.get("model")
    except OSError as e:
        where = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise cli.CommandError(f"cannot load --config: {where[-1]}") from e
    return config


def main(argv: Sequence[str]) -> dict:
    """Command entry: ``main(["main", "--config=<file>", "--workdir=<run>"])``; final metrics."""
    args = cli.parse_flags(define_flags, argv, __doc__ or "")
    config = load_config(args)
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    # Imported after the distributed runtime is up: building models touches the backend.
    import jax

    from sspcab_jax.training.loop import train_and_evaluate
    from sspcab_jax.training.run_lock import RunLock

    # One writer per workdir: a second train.main on it stops at once, naming the holder.
    with RunLock(args.workdir, enabled=jax.process_index() == 0):
        return train_and_evaluate(config, args.workdir)


if __name__ == "__main__":
    cli.run(main)
