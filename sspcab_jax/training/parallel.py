"""One train step, three ways to run it: ``jit`` on one device, ``pmap``, ``jit`` over a mesh.

All three take the same pure step ``(state, batch, key, sources) -> (state, metrics)`` and, for the
same global batch and key, produce the same parameters (tested to 1e-5):

* ``'single'``: ``jax.jit`` on the default device, the state donated.
* ``'pmap'``: the state replicated on every local device, the batch split on a leading device
  axis; the step averages gradients, metrics and BatchNorm statistics with ``lax.pmean`` over
  ``AXIS_NAME`` (build the model with ``bn_axis_name=runner.axis_name``).
* ``'mesh'``: ``jax.jit`` with ``NamedSharding`` on a 1-D ``data`` mesh over every device of every
  process: the batch is sharded on its first axis, the state replicated; XLA inserts the
  collectives. Multi-host ready: call :func:`initialize_distributed` first and feed each process
  its own share of the global batch.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MODES = ("single", "pmap", "mesh")
AXIS_NAME = "batch"
MESH_AXIS = "data"

logger = logging.getLogger(__name__)


def initialize_distributed(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Join a multi-process run (``jax.distributed.initialize``) when a coordinator is given.

    On CPU the cross-process collectives use gloo. Does nothing when ``coordinator_address`` is
    empty, so single-process runs need no flags.

    Args:
      coordinator_address: ``host:port`` of process 0, or None/empty for a single process.
      num_processes: total number of processes.
      process_id: this process's index.
    """
    if not coordinator_address:
        return
    # Only affects CPU devices: accelerators keep their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    logger.info(
        "process %d of %d, %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
    )


@dataclasses.dataclass
class ParallelRunner:
    """Places state and batches for one parallel mode and compiles steps for it.

    Attributes:
      mode: one of ``MODES``.
    """

    mode: str = "single"
    mesh: Mesh | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"parallel must be one of {MODES}, got {self.mode!r}.")
        if self.mode == "mesh":
            self.mesh = Mesh(np.asarray(jax.devices()), (MESH_AXIS,))

    @property
    def axis_name(self) -> str | None:
        """The ``pmap`` axis name the step and BatchNorm must reduce over, else None."""
        return AXIS_NAME if self.mode == "pmap" else None

    @property
    def num_shards(self) -> int:
        """How many ways the global batch is split (local devices for pmap, all for mesh)."""
        if self.mode == "pmap":
            return jax.local_device_count()
        if self.mode == "mesh":
            return jax.device_count()
        return 1

    def check_batch_size(self, global_batch: int) -> None:
        """Raise a clear error when the global batch does not split evenly."""
        shards = self.num_shards * (jax.process_count() if self.mode == "pmap" else 1)
        if global_batch % shards:
            raise ValueError(
                f"batch_size={global_batch} must be divisible by the {shards} devices of "
                f"parallel={self.mode!r}; change batch_size."
            )

    def _replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def _data(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(MESH_AXIS))

    def pmap_sharding(self) -> NamedSharding:
        """The sharding ``pmap`` gives its outputs: leading axis over the local devices.

        Inputs placed with it match the step's outputs exactly, so the second call of a pmapped
        step finds the first call's trace instead of tracing and compiling again.
        """
        return NamedSharding(
            Mesh(np.asarray(jax.local_devices()), (AXIS_NAME,)), PartitionSpec(AXIS_NAME)
        )

    def put_replicated(self, tree: Any) -> Any:
        """Place a host pytree (state, textures) identically on every device of the mode."""
        if tree is None:
            return None
        if self.mode == "pmap":
            # One copy per local device, stacked on a leading axis sharded over the devices.
            n, sharding = jax.local_device_count(), self.pmap_sharding()
            return jax.tree_util.tree_map(
                lambda x: jax.device_put(
                    np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding
                ),
                tree,
            )
        if self.mode == "mesh":
            sharding = self._replicated()
            return jax.tree_util.tree_map(
                lambda x: jax.make_array_from_callback(
                    np.shape(x), sharding, lambda index: np.asarray(x)[index]
                ),
                tree,
            )
        return jax.device_put(tree)

    def put_key(self, key: jax.Array) -> jax.Array:
        """Place the PRNG key the step takes on every call once, where every device reads it.

        Passed unplaced, a key would be copied from its first device to the others on every
        step (``pmap``, ``mesh``).

        Args:
          key: a scalar typed key (``jax.random.key``) or a legacy ``uint32[2]`` key
            (``jax.random.PRNGKey``), which is wrapped into a typed key.

        Returns:
          The key on the device (single), one copy per local device ``[devices]`` (pmap), or
          replicated on the mesh (mesh).
        """
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)
        if self.mode == "single":
            return jax.device_put(key)
        data = self.put_replicated(np.asarray(jax.random.key_data(key)))
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(key))

    def put_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Place this process's share of the global batch (NumPy arrays) for the step.

        Args:
          batch: arrays with a leading batch axis ``[B_process, ...]``.

        Returns:
          The batch as the step expects it: device arrays (single), ``[devices, B/devices, ...]``
          (pmap), or global arrays sharded on the mesh's data axis (mesh).
        """
        arrays = {k: v for k, v in batch.items() if _is_numeric(v)}
        if self.mode == "pmap":
            n = jax.local_device_count()
            return jax.tree_util.tree_map(
                lambda x: np.reshape(x, (n, x.shape[0] // n) + x.shape[1:]), arrays
            )
        if self.mode == "mesh":
            sharding = self._data()
            return jax.tree_util.tree_map(
                lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), arrays
            )
        return jax.device_put(arrays)

    def compile_train_step(self, step: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``step(state, batch, key, sources)`` for this mode; the state is donated."""
        if self.mode == "pmap":
            return jax.pmap(step, axis_name=AXIS_NAME, in_axes=0, donate_argnums=0)
        if self.mode == "mesh":
            replicated, data = self._replicated(), self._data()
            return jax.jit(
                step,
                in_shardings=(replicated, data, replicated, replicated),
                out_shardings=(replicated, replicated),
                donate_argnums=0,
            )
        return jax.jit(step, donate_argnums=0)

    def to_host(self, tree: Any) -> Any:
        """Fetch a state or metrics pytree to host NumPy, unreplicated (as checkpoints store it)."""
        if self.mode == "pmap":
            return jax.device_get(jax.tree_util.tree_map(lambda x: x[0], tree))
        if self.mode == "mesh":
            return jax.tree_util.tree_map(lambda x: np.asarray(x.addressable_data(0)), tree)
        return jax.device_get(tree)


def compile_in_step(step: Callable[..., Any], *args: Any) -> Callable[..., Any]:
    """Compile ``step`` for ``args`` ahead of time and, with several processes, wait for all.

    CPU collectives (gloo) give up when processes reach their first collective more than ~30 s
    apart, which happens when one process compiles slower than another. Compiling first and
    meeting at a coordination-service barrier (no such limit) keeps them in step.

    Args:
      step: a jitted or pmapped function.
      *args: the arguments of its first call.

    Returns:
      The compiled function (same call signature).
    """
    compiled = step.lower(*args).compile()
    if jax.process_count() > 1:
        # The coordination service's barrier, not a device collective (which would itself need
        # the gloo handshake this barrier is there to protect). JAX has no public API for it
        # (``multihost_utils.sync_global_devices`` is a device collective); Orbax exposes it.
        wait_at_barrier = ocp.multihost.get_barrier_sync_fn()
        wait_at_barrier(key="sspcab_jax_train_step_compiled", timeout_ms=60 * 60 * 1000)
    return compiled


def _is_numeric(value: Any) -> bool:
    return np.asarray(value).dtype.kind in "biuf"
