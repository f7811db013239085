"""Checkpoints of a run, with orbax: the latest few and the best by validation ELBO.

    WORKDIR/checkpoints/latest/<step>/   the `keep` most recent chunk boundaries
    WORKDIR/checkpoints/best/<step>/     the highest validation ELBO so far

Each step directory holds two items:

    state     the whole `TrainState` (params, opt_state, step, rng) as arrays;
              the PRNG key is stored as its raw uint32 key data and wrapped
              back on restore
    progress  JSON: where the step lies in its epoch and what that epoch has
              measured so far, so a resumed epoch reports the same metrics

Every random choice of step t is a function of (state.rng, t), and the data
order of epoch e of (state.rng, e), so restoring `state` at a chunk boundary
resumes a run bit for bit. The best checkpoint is chosen on the validation
split only, never on the test set; there is none without a validation split.

Saves are synchronous: a checkpoint is complete on disk when `save_*`
returns. orbax writes each step to a temporary directory and renames it when
done, so a process killed at any moment leaves the earlier checkpoints
intact and no half-written one that a restore would pick up.
"""

from __future__ import annotations

import logging as std_logging
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from vae_jax.step import TrainState

__all__ = ["RunCheckpoints", "LATEST", "BEST"]

LATEST = "latest"
BEST = "best"


class _OrbaxWarningsOnly(std_logging.Filter):
  """Drops orbax's INFO records (dozens per save) from absl's log."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.WARNING
            or f"{os.sep}orbax{os.sep}" not in record.pathname)


# orbax logs through absl, whose Python logger is "absl".
std_logging.getLogger("absl").addFilter(_OrbaxWarningsOnly())


def _to_tree(state: TrainState) -> dict[str, Any]:
  return {"params": state.params, "opt_state": state.opt_state,
          "step": state.step, "rng": jax.random.key_data(state.rng)}


def _from_tree(tree: dict[str, Any], template: TrainState) -> TrainState:
  rng = jax.random.wrap_key_data(tree["rng"],
                                 impl=jax.random.key_impl(template.rng))
  return TrainState(params=tree["params"], opt_state=tree["opt_state"],
                    step=tree["step"], rng=rng)


class RunCheckpoints:
  """The two checkpoint series of a run directory: `latest` and `best`.

  Use as a context manager, or call `close()`.
  """

  def __init__(self, directory: str, keep: int = 2, read_only: bool = False):
    """Opens (creating unless `read_only`) DIRECTORY/latest and DIRECTORY/best.

    Args:
      directory: WORKDIR/checkpoints.
      keep: how many of the latest checkpoints to keep; the best keeps one.
      read_only: for evaluation: nothing is created, saved or deleted.
    """
    self.directory = directory
    self._managers = {}
    for name, max_to_keep in ((LATEST, keep), (BEST, 1)):
      path = os.path.abspath(os.path.join(directory, name))
      if read_only and not os.path.isdir(path):
        continue
      # (orbax's own read_only option logs a warning on every open.)
      self._managers[name] = ocp.CheckpointManager(
          path,
          options=ocp.CheckpointManagerOptions(
              max_to_keep=None if read_only else max_to_keep,
              create=not read_only, enable_async_checkpointing=False))
    self._read_only = read_only

  def steps(self, which: str = LATEST) -> list[int]:
    """The steps checkpointed in `which` ("latest" or "best"), ascending."""
    manager = self._managers.get(which)
    return sorted(manager.all_steps()) if manager is not None else []

  def latest_step(self) -> Optional[int]:
    steps = self.steps(LATEST)
    return steps[-1] if steps else None

  def best_step(self) -> Optional[int]:
    steps = self.steps(BEST)
    return steps[-1] if steps else None

  def save_latest(self, state: TrainState, progress: dict[str, Any]) -> None:
    """Checkpoints `state` at its step; the oldest beyond `keep` are deleted."""
    self._save(LATEST, state, progress)

  def save_best(self, state: TrainState, progress: dict[str, Any]) -> None:
    """Replaces the best checkpoint by `state` (the caller decides it is better).

    A step already saved is left as it is: a resumed run that redoes the
    epoch after a crash computes the same state again.
    """
    self._save(BEST, state, progress)

  def _save(self, which: str, state: TrainState,
            progress: dict[str, Any]) -> None:
    if self._read_only:
      raise ValueError(f"{self.directory} was opened read-only")
    step = int(state.step)
    manager = self._managers[which]
    if step in manager.all_steps():
      return
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(_to_tree(state)),
        progress=ocp.args.JsonSave(progress)))
    manager.wait_until_finished()

  def restore(self, step: int, template: TrainState,
              which: str = LATEST) -> tuple[TrainState, dict[str, Any]]:
    """The state and progress saved at `step` in `which`.

    Args:
      template: a state of the run's structure (e.g. freshly initialised):
        the restored arrays take its shapes, dtypes, shardings and key type.
    """
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct,
                                      _to_tree(template))
    restored = self._managers[which].restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        progress=ocp.args.JsonRestore()))
    return _from_tree(restored["state"], template), dict(restored["progress"])

  def restore_params(self, step: int, which: str = LATEST) -> Any:
    """Only the parameters saved at `step`, as stored (no template needed).

    For loading and evaluating a run: it does not depend on the optimizer
    state's structure, so it reads checkpoints of any optimizer.
    """
    restored = self._managers[which].restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
    return jax.tree_util.tree_map(jax.numpy.asarray,
                                  restored["state"]["params"])

  def close(self) -> None:
    for manager in self._managers.values():
      manager.close()

  def __enter__(self) -> "RunCheckpoints":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
