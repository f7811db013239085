"""Several processes, one run: `jax.distributed` set up from flags or the cluster.

Each process (one per host, or per GPU) runs the same command; after
`initialize`, `jax.devices()` lists every process's devices and the mesh of
`vae_jax.run.mesh` spans them all. The launcher passes the flags

    --coordinator_address=HOST:PORT --num_processes=N --process_id=I

(the coordinator is process 0's host, on any free port), or none of them on
a cluster whose environment JAX reads itself (SLURM under `srun`, Cloud TPU
pod slices, Open MPI, Kubernetes). On CPU the processes talk over gloo.

JAX aborts the process (a fatal C++ check, no exception) when the other
processes do not turn up within its timeout. So `initialize` gives JAX a
longer one and stops first, with one `error:` line naming the address, the
process and the seconds waited, and exit status 2.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable, Optional

import jax
import numpy as np
from absl import logging

from vae_jax.errors import UserError

__all__ = ["initialize", "check_flags", "on_first_process", "cluster_detected"]

_JAX_GRACE_S = 30  # JAX's own timeout exceeds ours by this much


def cluster_detected() -> bool:
  """Whether JAX recognises a cluster environment (SLURM under srun, Cloud
  TPU, Open MPI, Kubernetes) from which it reads the processes itself."""
  # pylint: disable-next=g-import-not-at-top
  from jax._src import clusters  # no public API for the check alone

  try:
    return any(
      env.is_env_present()
      for env in clusters.ClusterEnv._cluster_types  # pylint: disable=protected-access
      if not env.opt_in_only_method
    )
  except Exception:  # pylint: disable=broad-except
    return False


def check_flags(
  coordinator_address: Optional[str],
  num_processes: Optional[int],
  process_id: Optional[int],
  timeout_s: int,
) -> None:
  """Raises UserError for flags that cannot describe a set of processes."""
  given = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in given) and not all(
    v is not None for v in given
  ):
    raise UserError(
      "--coordinator_address, --num_processes and --process_id go "
      f"together (got {coordinator_address!r}, {num_processes}, "
      f"{process_id}): give all three, or none on a cluster that JAX "
      "detects (SLURM, Cloud TPU)"
    )
  if (
    coordinator_address is not None
    and num_processes is not None
    and process_id is not None
  ):  # all three or none, as checked above
    host, _, port = coordinator_address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise UserError(
        f"--coordinator_address={coordinator_address} is "
        "invalid: give HOST:PORT, e.g. 10.0.0.1:12345"
      )
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise UserError(
        f"--process_id={process_id} with --num_processes={num_processes} "
        "is invalid: the processes are numbered 0 to num_processes - 1"
      )
  if timeout_s < 1:
    raise UserError(
      f"--distributed_timeout_s={timeout_s} is invalid: give "
      "a number of seconds >= 1"
    )


def initialize(
  coordinator_address: Optional[str] = None,
  num_processes: Optional[int] = None,
  process_id: Optional[int] = None,
  timeout_s: int = 300,
) -> bool:
  """`jax.distributed.initialize` from the flags, else from the cluster.

  Call before anything uses JAX's devices. Returns whether the run has
  several processes' worth of setup (False: one process, nothing done).
  On CPU the collectives go over gloo.

  Raises:
    UserError: inconsistent flags.
  Exits (status 2, one `error:` line) when the processes have not all
  connected after `timeout_s` seconds.
  """
  check_flags(coordinator_address, num_processes, process_id, timeout_s)
  if coordinator_address is None and not cluster_detected():
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  where = (
    f"coordinator {coordinator_address} (process {process_id} of "
    f"{num_processes})"
    if coordinator_address is not None
    else "the cluster's coordinator"
  )
  watchdog = threading.Timer(timeout_s, _give_up, (where, timeout_s))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(
      coordinator_address,
      num_processes,
      process_id,
      initialization_timeout=timeout_s + _JAX_GRACE_S,
    )
  finally:
    watchdog.cancel()
  logging.info(
    "distributed: process %d of %d, %d local and %d global devices",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )
  return True


def _give_up(where: str, timeout_s: int) -> None:
  print(
    f"error: the processes of the run did not all connect to {where} "
    f"within --distributed_timeout_s={timeout_s} s: start every process "
    "with the same --coordinator_address (process 0's host and a free "
    "port) and --num_processes, each with its own --process_id, or wait "
    "longer",
    file=sys.stderr,
    flush=True,
  )
  os._exit(2)  # pylint: disable=protected-access


def on_first_process(fn: Callable[[], None]) -> None:
  """Runs `fn` on process 0 only; every process raises if it failed.

  For the run directory's lock: without this, the other processes would
  wait for process 0 in their first collective until JAX's heartbeat
  timeout killed them.

  Raises:
    UserError: `fn`'s own on process 0, a short one naming it elsewhere.
  """
  error = None
  if jax.process_index() == 0:
    try:
      fn()
    except UserError as e:
      error = e
  if jax.process_count() > 1:
    # pylint: disable-next=g-import-not-at-top
    from jax.experimental import multihost_utils

    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if failed and error is None:
      error = UserError(
        f"process 0 stopped with an error (its output names it), so "
        f"process {jax.process_index()} of {jax.process_count()} stops too"
      )
  if error is not None:
    raise error
