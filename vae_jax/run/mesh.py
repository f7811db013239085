"""Data parallelism over a device mesh: where the run's arrays live.

`num_devices` devices of each process (0: all its local devices; over
several processes, `vae_jax.run.distributed`, the mesh spans every
process's devices) form a one-axis `jax.sharding.Mesh` named `data`:

  * the batch of each step is sharded along `data` (each device computes
    the loss and gradients of B / devices examples; the batch mean is a
    sum over the shards, which XLA inserts);
  * parameters, optimizer state, step and rng are replicated;
  * the on-device training split is replicated (uint8: 47 MB for
    Fashion-MNIST): a batch is a gather of arbitrary rows, which a split
    sharded by rows would turn into an all-to-all every step. Data too big
    to replicate go through `streaming`, whose chunks arrive sharded along
    `data`, each process putting only its devices' rows.

Every random choice stays a function of (key, epoch, step) and
`jax_threefry_partitionable` (on by default since jax 0.5) makes random
bits independent of the sharding, so a mesh trains on the batches of one
device, bit for bit; only the order of the batch sum differs.

With one device in one process there is no mesh (`placement` is None) and
the programs are those of a run without this module: no sharding
annotation, no copy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vae_jax.errors import ConfigError

__all__ = [
  "Placement",
  "DATA_AXIS",
  "placement",
  "check_batch_size",
  "describe",
  "local_copy",
]

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class Placement:
  """The mesh of a run and the shardings of what its programs take."""

  mesh: Mesh

  @property
  def num_devices(self) -> int:
    return self.mesh.size

  @property
  def replicated(self) -> NamedSharding:
    """State, hyperparameters, the on-device split, metrics."""
    return NamedSharding(self.mesh, PartitionSpec())

  @property
  def batch(self) -> NamedSharding:
    """A batch `[B, ...]`: rows along the data axis."""
    return NamedSharding(self.mesh, PartitionSpec(DATA_AXIS))

  @property
  def streamed_chunk(self) -> NamedSharding:
    """A streamed chunk `[steps, B, ...]`: each step's rows along `data`."""
    return NamedSharding(self.mesh, PartitionSpec(None, DATA_AXIS))

  def put(self, tree: Any, sharding: Optional[NamedSharding] = None) -> Any:
    """`tree` (the same host or device values in every process) on the mesh,
    replicated unless `sharding` says otherwise. PRNG keys go as their key
    data and are wrapped back (a key array cannot be built from numpy)."""
    sharding = sharding or self.replicated

    def put_leaf(x):
      if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        impl = jax.random.key_impl(x)
        data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
        return jax.random.wrap_key_data(data, impl=impl)
      return jax.device_put(np.asarray(x), sharding)

    return jax.tree_util.tree_map(put_leaf, tree)


def placement(num_devices: int) -> Optional[Placement]:
  """The run's placement; None for one device in one process.

  Raises:
    ConfigError: `num_devices` is more than this process has.
  """
  available = jax.local_device_count()
  local = available if num_devices == 0 else num_devices
  if local > available:
    raise ConfigError(
      f"--config.num_devices={num_devices} is invalid: this process has "
      f"{available} {jax.default_backend()} device(s); use "
      f"--config.num_devices={available} or less (0 = all of them)"
    )
  if local == 1 and jax.process_count() == 1:
    return None
  # Every process takes its first `local` devices; jax.devices() lists them
  # process by process, so each process holds a contiguous block of rows.
  devices = [
    d
    for p in range(jax.process_count())
    for d in [d for d in jax.devices() if d.process_index == p][:local]
  ]
  return Placement(Mesh(np.array(devices), (DATA_AXIS,)))


def check_batch_size(batch_size: int, place: Optional[Placement]) -> None:
  """Refuses a batch that does not split evenly over the mesh.

  Raises:
    ConfigError: naming the batch size and the size of the data axis.
  """
  size = 1 if place is None else place.num_devices
  if batch_size % size:
    lower = batch_size // size * size
    raise ConfigError(
      f"--config.batch_size={batch_size} is invalid on a mesh of {size} "
      f"devices (axis {DATA_AXIS}): the batch is split evenly over them; "
      f"use a multiple of {size}, e.g. {lower or size} or "
      f"{lower + size}, or fewer --config.num_devices"
    )


def describe(place: Optional[Placement]) -> str:
  """The log line naming the mesh."""
  if place is None:
    return f"mesh: 1 device ({jax.default_backend()}), no sharding"
  processes = jax.process_count()
  over = f" over {processes} processes" if processes > 1 else ""
  return (
    f"mesh: {place.num_devices} devices{over}, axis {DATA_AXIS} "
    f"({jax.default_backend()}; batch sharded, parameters, optimizer "
    "state and the on-device training split replicated)"
  )


def local_copy(tree: Any) -> Any:
  """A replicated tree as arrays on this process's first device, for the
  single-device evaluation programs (no copy: each is that device's shard)."""
  return jax.tree_util.tree_map(
    lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree
  )
