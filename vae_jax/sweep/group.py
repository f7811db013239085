"""A group of a sweep as one compiled program: vmapped over its members.

The members share the model, the step's static settings and the training
images, and differ in the step's traced inputs and seeds: their states and
`Hyperparams` are stacked on a member axis (`vae_jax.sweep.stack`) and
`vae_jax.chunks.train_chunk` is vmapped over them. With `num_devices` > 1
the member axis is sharded over a mesh (padded with copies of the first
member that never train). Each member keeps a single run's directory,
written by a single run's `RunTracker`, so it resumes on its own.

Each dispatch trains the members at the earliest step among those still
training; the others pass through unchanged (selected on the device). So a
member that is done, early stopped or diverged stays frozen while the others
go on, and after a kill the members that lag catch up first. A member whose
chunk is non-finite keeps its last checkpoint's state and is marked diverged.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vae_jax import chunks as chunks_lib
from vae_jax.errors import NonFiniteError
from vae_jax.run import programs
from vae_jax.run import stages
from vae_jax.run import tensorboard
from vae_jax.run.context import RunContext, RunTracker
from vae_jax.run.outputs import write_figures
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import resume
from vae_jax.sweep import stack as stack_lib

__all__ = ["group_chunk", "train_group", "resolve_devices", "Outcome"]


class Outcome(NamedTuple):
  """How a member ended: `done`, `early_stopped` or `diverged`."""

  status: str
  message: str


def resolve_devices(num_devices: int) -> list:
  """The devices of `config.num_devices` (0: all local devices)."""
  devices = jax.local_devices()
  if num_devices > len(devices):
    raise ValueError(
      f"--config.num_devices={num_devices}: only {len(devices)} local device(s)"
    )
  return devices[: num_devices or len(devices)]


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3), donate_argnums=(4,))
def group_chunk(
  model, step_cfg, feed, num_steps, states, images, hparams, active
):
  """A chunk of `num_steps` steps for every member: f(states, images,
  hparams, active) → (states, metrics, health), each with a member axis.

  A member trains when `active` and its chunk stays finite; otherwise it
  leaves the program as it came in.
  """

  def one(state, hp, train):
    new, metrics, health = chunks_lib.train_chunk(
      model, step_cfg, feed, num_steps, state, images, hp
    )
    finite = (health.first_bad_step < 0) | (
      step_cfg.skip_nonfinite_updates & (health.first_bad_quantity < 3)
    )
    keep = train & finite
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep, a, b), new, state)
    return new, metrics, health

  return jax.vmap(one)(states, hparams, active)


class _Run:
  """One member on the host: its run directory's context and tracker."""

  def __init__(self, config, workdir, data, model, step_cfg, config_file):
    steps_per_epoch = data.num_train // config.batch_size
    self.config, self.workdir = config, workdir
    self.hparams = programs.hyperparams(config, steps_per_epoch)
    init_rng, eval_rng, figure_rng = programs.run_keys(config)
    self.fresh = programs.init_state(model, step_cfg, init_rng)
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    ckpts = checkpoints_lib.RunCheckpoints(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
    )
    self.writer = None
    self.ckpts = ckpts
    start = resume.start(ckpts, self.fresh, workdir)
    self.state = start.state
    self.step = int(self.state.step)
    stages.write_run_config(workdir, config, config_file, data, model)
    self.writer = tensorboard.for_run(workdir, self.step)
    ctx = RunContext(
      config,
      model,
      data,
      workdir,
      ckpts,
      self.writer,
      steps_per_epoch,
      eval_rng,
      figure_rng,
    )
    self.tracker = RunTracker(ctx, start)
    self.diverged: Optional[str] = None
    if start.restored_step is not None:
      logging.info("resuming %s from step %d", workdir, self.step)

  def training(self) -> bool:
    ctx = self.tracker.ctx
    return (
      self.diverged is None
      and not self.tracker.stopping.should_stop
      and self.step < self.config.epochs * ctx.steps_per_epoch
    )

  def outcome(self) -> Outcome:
    if self.diverged is not None:
      return Outcome("diverged", self.diverged)
    if self.tracker.stopping.should_stop:
      return Outcome("early_stopped", self.tracker.stopping.describe())
    return Outcome("done", "")

  def close(self):
    if self.writer is not None:
      self.writer.close()
    self.ckpts.close()


def train_group(
  configs: list,
  workdirs: list[str],
  data,
  model,
  config_file: str = "",
  after_chunk: Optional[Callable[[int], None]] = None,
  figures: bool = True,
) -> list[Outcome]:
  """Trains the members of one group together, resuming each from its
  checkpoint; returns how each ended.

  Args:
    configs: the members' configs (equal but for their traced and per-member settings, `vae_jax.settings`).
    workdirs: their run directories (locked by the caller).
    data: the prepared data of the group.
    model: `stages.check_model` of the group.
    config_file: recorded in each config.json.
    after_chunk: called with the number of chunks dispatched so far, after
      each chunk's checkpoints (tests use it to stop a sweep mid-way).
    figures: write each member's figures at the end.
  """
  first = configs[0]
  step_cfg = programs.step_config(first)
  runs: list[_Run] = []
  try:
    for config, workdir in zip(configs, workdirs):
      runs.append(_Run(config, workdir, data, model, step_cfg, config_file))
    _train(runs, model, step_cfg, programs.batch_feed(first, data), after_chunk)
    for run in runs:
      if run.diverged is not None:
        continue
      ctx = run.tracker.ctx
      params = run.tracker.finish(run.state)
      if figures:
        write_figures(
          model,
          params,
          data,
          run.tracker.history,
          os.path.join(run.workdir, "figures"),
          ctx.figure_rng,
        )
    return [run.outcome() for run in runs]
  finally:
    for run in runs:
      run.close()


def _member(tree, i: int):
  """Member i's slice of a group's host-side record."""
  return jax.tree_util.tree_map(lambda a: a[i], tree)


def _train(runs: list[_Run], model, step_cfg, feed, after_chunk):
  """The group's chunks, until no member trains."""
  first = runs[0].tracker.ctx
  steps_per_epoch = first.steps_per_epoch
  chunk_lengths = programs.chunk_lengths(
    steps_per_epoch, first.config.steps_per_chunk
  )
  chunk_starts = [sum(chunk_lengths[:i]) for i in range(len(chunk_lengths))]
  devices = resolve_devices(first.config.num_devices)
  padded = math.ceil(len(runs) / len(devices)) * len(devices)
  pad = [runs[0]] * (padded - len(runs))  # never active
  states = stack_lib.stack_states([r.state for r in runs + pad])
  hparams = stack_lib.stack([r.hparams for r in runs + pad])
  images = first.data.train
  if len(devices) > 1:
    mesh = Mesh(np.array(devices), ("members",))
    members = NamedSharding(mesh, PartitionSpec("members"))
    states, hparams = jax.device_put((states, hparams), members)
    images = jax.device_put(images, NamedSharding(mesh, PartitionSpec()))
  else:
    members = None
  # Compiled ahead, so that no member's training rate counts the compiling.
  compiled = {
    n: group_chunk.lower(
      model,
      step_cfg,
      feed,
      n,
      states,
      images,
      hparams,
      stack_lib.active_mask([False] * padded, members),
    ).compile()
    for n in sorted(set(chunk_lengths))
  }
  for run in runs:  # as a single run, the wall time starts after compiling
    run.tracker.start_clock()
  dispatched = 0
  while True:
    training = [r.training() for r in runs]
    if not any(training):
      break
    step = min(r.step for r, t in zip(runs, training) if t)
    epoch, position = divmod(step, steps_per_epoch)
    if position not in chunk_starts:
      raise RuntimeError(
        f"checkpoint at step {step} is not at a chunk "
        f"boundary of chunks {chunk_lengths}"
      )
    n = chunk_lengths[chunk_starts.index(position)]
    active = [t and r.step == step for r, t in zip(runs, training)]
    chunk_start = time.perf_counter()
    states, metrics, health = compiled[n](
      states,
      images,
      hparams,
      stack_lib.active_mask(active + [False] * len(pad), members),
    )
    if members is not None:  # as the compiled program takes them
      states = jax.device_put(states, members)
    metrics, health = jax.device_get((metrics, health))
    seconds = time.perf_counter() - chunk_start  # every member's: the group's
    members_now = stack_lib.unstack_states(states, len(runs))
    logging.info(
      "group of %d: chunk of %d steps at step %d for %d member(s) in %.2fs",
      len(runs),
      n,
      step,
      sum(active),
      seconds,
    )
    for i, run in enumerate(runs):
      if active[i]:
        bad = _member(health, i)
        chunk = resume.ChunkRecord(
          n, _member(metrics, i), int(bad.skipped_updates)
        )
        _after_chunk(run, members_now[i], epoch, chunk, bad, seconds)
    dispatched += 1
    if after_chunk is not None:
      after_chunk(dispatched)


def _after_chunk(run: _Run, state, epoch, chunk, health, seconds) -> None:
  """A member's trained chunk: its tracker's, or diverged (frozen; the
  others go on)."""
  try:
    run.tracker.after_chunk(state, epoch, chunk, health, seconds)
  except NonFiniteError as e:
    run.diverged = str(e)
    logging.warning(
      "%s diverged (frozen; the others go on): %s", run.workdir, run.diverged
    )
    return
  run.state, run.step = state, int(state.step)
  if run.tracker.stopping.should_stop and not run.tracker.done:
    logging.info(
      "%s: early stopping after epoch %d: %s",
      run.workdir,
      epoch + 1,
      run.tracker.stopping.describe(),
    )
