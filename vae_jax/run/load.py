"""Loading a saved run: `load_run(workdir)` → (config, model, params).

For notebooks and tools: the run's config from config.json, its model rebuilt
through the registry, and the parameters of a checkpoint, restored with
orbax. Nothing in the run directory is written.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, NamedTuple, Optional, Union

from vae_jax import validation
from vae_jax.errors import ConfigError
from vae_jax.names import resolve_image_layout
from vae_jax.nets import registry
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import workdir as workdir_lib

__all__ = [
  "LoadedRun",
  "load_run",
  "open_run",
  "choose_checkpoint",
  "restore_params",
  "check_params_fit",
  "event_shape",
]


class LoadedRun(NamedTuple):
  config: Any  # ml_collections.ConfigDict
  model: Any  # a vae_jax.math.model.VAEModel
  params: Any


def open_run(workdir: str):
  """The stored config of `workdir`; ConfigError if it holds no run."""
  if not os.path.isdir(workdir):
    raise ConfigError(
      f"--workdir={workdir}: no such directory; pass the run "
      "directory that experiments/train.py wrote"
    )
  config = workdir_lib.load_config(workdir)
  if config is None:
    raise ConfigError(
      f"--workdir={workdir} holds no run (no config.json); "
      "pass the run directory that experiments/train.py wrote"
    )
  try:  # as training checks it: an edited config.json may not be a run's
    validation.validate(config)
  except ConfigError as e:
    raise ConfigError(
      f"{os.path.join(workdir, 'config.json')} holds an "
      f"invalid setting ({e}): it was edited or is damaged; "
      "restore the run's own"
    ) from None
  return config


def check_params_fit(
  model, params, workdir: str, which: str, step: int
) -> None:
  """Refuses parameters that are not the model's: config.json edited after
  training (a latent size, a width) builds a model of other shapes, which
  would fail deep inside Flax. Names the first parameter that differs."""
  # pylint: disable-next=g-import-not-at-top
  import jax

  expected = _shapes(jax.eval_shape(model.init, jax.random.key(0)))
  stored = _shapes(params)
  for name in sorted(set(expected) | set(stored)):
    want, have = expected.get(name), stored.get(name)
    if want != have:
      what = (
        f"has no parameter {name}"
        if have is None
        else f"has parameter {name} of shape {have}"
      )
      need = "no such parameter" if want is None else f"one of shape {want}"
      raise ConfigError(
        f"the {which} checkpoint at step {step} in {workdir} {what}, but "
        f"the model of its config.json needs {need}: config.json no "
        "longer matches the checkpoint (edited after training?); restore "
        "the run's own settings"
      )


def _shapes(tree) -> dict[str, tuple[int, ...]]:
  # pylint: disable-next=g-import-not-at-top
  import jax

  return {
    jax.tree_util.keystr(path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def choose_checkpoint(
  ckpts: checkpoints_lib.RunCheckpoints,
  checkpoint: Optional[Union[str, int]],
  workdir: str,
) -> list[tuple[str, int]]:
  """The (series, step) pairs that `checkpoint` allows, best first.

  None: the best checkpoint, then the latest ones newest first; "best" or
  "latest": that series, newest first; a step number: that step. A restore
  takes the first that is intact (`RunCheckpoints.restore_newest`).

  Raises:
    ConfigError: when there is no such checkpoint at all.
  """
  latest = [
    (checkpoints_lib.LATEST, s)
    for s in reversed(ckpts.steps(checkpoints_lib.LATEST))
  ]
  best = [
    (checkpoints_lib.BEST, s)
    for s in reversed(ckpts.steps(checkpoints_lib.BEST))
  ]
  if not latest and not best:
    raise ConfigError(
      f"--workdir={workdir} holds no checkpoint yet; train "
      "the run for at least one chunk of steps first"
    )
  if checkpoint is None:
    return best + latest
  if checkpoint == "best":
    if not best:
      raise ConfigError(
        f"--checkpoint=best: {workdir} has no best checkpoint "
        "(one needs a validation split, validation_size > 0); "
        "use --checkpoint=latest"
      )
    return best
  if checkpoint == "latest":
    if not latest:
      raise ConfigError(
        f"--checkpoint=latest: {workdir} has no latest "
        "checkpoint; use --checkpoint=best"
      )
    return latest
  try:
    step = int(checkpoint)
  except ValueError:
    raise ConfigError(
      f"--checkpoint={checkpoint!r} is invalid: use best, "
      "latest or a step number"
    ) from None
  found = [(which, s) for which, s in latest + best if s == step]
  if found:
    return found
  steps = sorted({s for _, s in latest + best})
  raise ConfigError(
    f"--checkpoint={step}: {workdir} has no checkpoint at step {step}; it "
    f"has steps {', '.join(map(str, steps))}"
  )


def restore_params(workdir: str, checkpoint=None):
  """(series, step, params) of the checkpoint that `checkpoint` names: the
  first candidate that restores intact; damaged ones are warned about.

  Raises:
    ConfigError, CheckpointError: no such checkpoint, or none intact.
  """
  ckpts = checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  )
  try:
    restored = ckpts.restore_newest(
      choose_checkpoint(ckpts, checkpoint, workdir)
    )
  finally:
    ckpts.close()
  assert restored is not None  # choose_checkpoint names at least one
  return restored.which, restored.step, restored.state


def event_shape(workdir: str, config) -> tuple[int, ...]:
  """The shape of one example of the run, from config.json's data record."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path) as f:
      shape = [int(d) for d in json.load(f)["data"]["image_shape"]]
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ConfigError(
      f"{path} has no readable data.image_shape "
      f"({type(e).__name__}: {e}); it is damaged: restore "
      "it"
    ) from None
  if resolve_image_layout(config.model, config.image_layout) == "flat":
    return (math.prod(shape),)
  return tuple(shape)


def load_run(
  workdir: str, checkpoint: Optional[Union[str, int]] = None
) -> LoadedRun:
  """(config, model, params) of the run in `workdir`.

  Args:
    workdir: a run directory written by `experiments/train.py`.
    checkpoint: None (the best checkpoint when there is one, else the
      latest), "best", "latest" or a step number.
  """
  config = open_run(workdir)
  model = registry.build_model(config, event_shape(workdir, config))
  which, step, params = restore_params(workdir, checkpoint)
  check_params_fit(model, params, workdir, which, step)
  return LoadedRun(config, model, params)
