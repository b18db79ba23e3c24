"""Train and evaluate: ``python -m train.main --config=configs/draem_demo.py --workdir=DIR``.

Override any config field with ``--config.<field>=<value>`` (e.g. ``--config.total_steps=100``).
Killed runs resume from the newest checkpoint in ``--workdir``. Multi-host: pass
``--coordinator_address=host:port --num_processes=N --process_id=i`` on every process.
"""

import logging

from absl import app, flags
from ml_collections import config_flags

from sspcab_jax.training.parallel import initialize_distributed
from sspcab_jax.xla_flags import apply_default_cpu_flags

# Faster CPU convolutions unless the user set these flags or targets an accelerator; must run
# before JAX starts a backend (sspcab_jax/xla_flags.py).
apply_default_cpu_flags()

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and metrics.")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 (multi-host runs).")
flags.DEFINE_integer("num_processes", 1, "Number of processes (multi-host runs).")
flags.DEFINE_integer("process_id", 0, "Index of this process (multi-host runs).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    """Entry point: join a multi-host run if asked, then train and evaluate."""
    del argv
    # Our progress at INFO; libraries (Orbax logs every file it writes) only from WARNING.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("sspcab_jax").setLevel(logging.INFO)
    initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    # Imported after the distributed runtime is up: building models touches the backend.
    from sspcab_jax.training.loop import train_and_evaluate

    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
