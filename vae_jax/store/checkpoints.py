"""Checkpoints of a run, with orbax: the latest few and the best by validation ELBO.

    WORKDIR/checkpoints/latest/<step>/   the `keep` most recent chunk boundaries
    WORKDIR/checkpoints/best/<step>/     the highest validation ELBO so far

Each step directory holds two items:

    state     the whole `TrainState` (params, opt_state, step, rng, and
              ema_params when the run keeps the average) as arrays; the PRNG
              key is stored as its raw uint32 key data and wrapped back on
              restore
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

Verified restores. `progress` also holds the SHA-256 of each part of the
saved state (`checksums`): bytes that a damaged disk or a stray write turned
into other finite numbers are caught by it, not by a finiteness check.
`restore_newest` tries the steps newest first and takes the first that
restores, matches its checksums and is finite; each unusable one costs a
warning line (and, when training, is moved to checkpoints/damaged/, so the
step can be saved again). None usable → `CheckpointError`, which lists them.
"""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

from vae_jax.errors import UserError
from vae_jax.store import integrity
from vae_jax.step import TrainState

__all__ = [
  "RunCheckpoints",
  "Restored",
  "CheckpointError",
  "LATEST",
  "BEST",
  "DAMAGED",
]

LATEST = "latest"
BEST = "best"
DAMAGED = "damaged"  # unusable steps are moved here, never deleted


class CheckpointError(UserError):
  """Checkpoints exist but none restores intact."""


class Restored(NamedTuple):
  which: str  # LATEST or BEST
  step: int
  state: Any  # a TrainState, or the parameters (restore_newest_params)
  progress: dict[str, Any]


def _to_tree(state: TrainState) -> dict[str, Any]:
  tree = {
    "params": state.params,
    "opt_state": state.opt_state,
    "step": state.step,
    "rng": jax.random.key_data(state.rng),
  }
  if state.ema_params is not None:  # else the items of every earlier run
    tree["ema_params"] = state.ema_params
  return tree


def _from_tree(tree: dict[str, Any], template: TrainState) -> TrainState:
  rng = jax.random.wrap_key_data(
    tree["rng"], impl=jax.random.key_impl(template.rng)
  )
  return TrainState(
    params=tree["params"],
    opt_state=tree["opt_state"],
    step=tree["step"],
    rng=rng,
    ema_params=tree.get("ema_params"),
  )


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
          create=not read_only,
          enable_async_checkpointing=False,
        ),
      )
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

  def _save(
    self, which: str, state: TrainState, progress: dict[str, Any]
  ) -> None:
    if self._read_only:
      raise ValueError(f"{self.directory} was opened read-only")
    step = int(state.step)
    manager = self._managers[which]
    if step in manager.all_steps():
      return
    tree = jax.device_get(_to_tree(state))
    progress = dict(progress, checksums=integrity.checksums(tree))
    integrity.check_room(os.path.join(self.directory, which), tree)
    try:
      manager.save(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardSave(tree),
          progress=ocp.args.JsonSave(progress),
        ),
      )
      manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      # orbax wraps a full disk in several types; the earlier steps are
      # intact (orbax renames a step into place only when it is complete).
      raise OSError(
        f"saving checkpoint {which}/{step} failed ({integrity.describe(e)})"
      ) from e

  def restore(
    self, step: int, template: TrainState, which: str = LATEST
  ) -> tuple[TrainState, dict[str, Any]]:
    """The state and progress saved at `step` in `which`.

    Args:
      template: a state of the run's structure (e.g. freshly initialised):
        the restored arrays take its shapes, dtypes, shardings and key type.
    """
    return self._restore_verified(step, which, template)

  def restore_params(self, step: int, which: str = LATEST) -> Any:
    """Only the parameters saved at `step`, as stored (no template needed):
    the run's evaluation parameters, its average if it kept one (ema_decay).

    For loading and evaluating a run: it does not depend on the optimizer
    state's structure, so it reads checkpoints of any optimizer.
    """
    params, _ = self._restore_params_verified(step, which)
    return params

  def _restore_verified(self, step: int, which: str, template: TrainState):
    integrity.check_files(os.path.join(self.directory, which, str(step)))
    abstract = jax.tree_util.tree_map(
      ocp.utils.to_shape_dtype_struct, _to_tree(template)
    )
    restored = self._managers[which].restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        progress=ocp.args.JsonRestore(),
      ),
    )
    progress = dict(restored["progress"])
    integrity.verify(jax.device_get(restored["state"]), progress)
    return _from_tree(restored["state"], template), progress

  def _restore_params_verified(self, step: int, which: str):
    integrity.check_files(os.path.join(self.directory, which, str(step)))
    restored = self._managers[which].restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), progress=ocp.args.JsonRestore()
      ),
    )
    part = "ema_params" if "ema_params" in restored["state"] else "params"
    params = restored["state"][part]
    progress = dict(restored["progress"])
    integrity.verify({part: params}, progress)
    return jax.tree_util.tree_map(jax.numpy.asarray, params), progress

  def restore_newest(
    self,
    candidates: list[tuple[str, int]],
    template: Optional[TrainState] = None,
  ) -> Optional[Restored]:
    """The first of `candidates` ((series, step), in order of preference)
    that restores intact; None if there are no candidates.

    With a `template`, the whole state (see `restore`); without, only the
    parameters. Each unusable step gets one warning line and, unless
    read-only, is moved to checkpoints/damaged/.

    Raises:
      CheckpointError: when there are candidates but none is usable.
    """
    problems = []
    for which, step in candidates:
      try:
        if template is None:
          state, progress = self._restore_params_verified(step, which)
        else:
          state, progress = self._restore_verified(step, which, template)
      except Exception as e:  # pylint: disable=broad-except
        # orbax and tensorstore raise many types (ValueError, KeyError,
        # FileNotFoundError, IndexError, ...) for a damaged step.
        problems.append(f"{which}/{step} ({integrity.describe(e)})")
        moved = self._move_aside(which, step)
        logging.warning(
          "checkpoint %s/%d in %s is unusable (%s)%s; trying the next one",
          which,
          step,
          self.directory,
          integrity.describe(e),
          f", moved to {moved}" if moved else "",
        )
        continue
      return Restored(which, step, state, progress)
    if problems:
      raise CheckpointError(
        f"{self.directory} holds no usable checkpoint: "
        f"{'; '.join(problems)}. Move the damaged steps away to start the "
        "run over, or choose another --workdir"
      )
    return None

  def _move_aside(self, which: str, step: int) -> Optional[str]:
    """Moves a damaged step out of its series (training only): a step that
    stays would be taken as saved when the run reaches it again."""
    source = os.path.join(self.directory, which, str(step))
    if self._read_only or not os.path.lexists(source):
      return None
    target = os.path.join(
      self.directory, DAMAGED, f"{which}-{step}-{time.time_ns()}"
    )
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(source, target)
    self._managers[which].reload()
    return target

  def close(self) -> None:
    for manager in self._managers.values():
      manager.close()

  def __enter__(self) -> "RunCheckpoints":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
