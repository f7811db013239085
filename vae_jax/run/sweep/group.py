"""A group of a sweep as one compiled program: vmapped over its members.

The members of a group share the model, the step's static settings and the
training images; they differ in the step's traced inputs and seeds. Their
states and `Hyperparams` are stacked on a leading member axis and
`vae_jax.chunks.train_chunk` is vmapped over (state, hparams), the images
unbatched. With `num_devices` > 1 the member axis is sharded over a 1-D mesh
(axis `members`), the images replicated; the member count is padded to a
multiple of the devices with copies of the first member that never train.

Each member keeps everything a single run keeps, in its own run directory:
config.json, metrics.jsonl, checkpoints (latest at every chunk boundary,
best by validation ELBO), TensorBoard and figures, written by the single
run's own pieces (`vae_jax.run.stages.end_epoch`, `resume.start`, …), so a
member resumes on its own, and even through `train_and_evaluate`. The
member axis (stacking the states, the mask of who trains) is
`vae_jax.run.sweep.stack`.

Who trains. Each dispatch runs the chunk at the earliest step among the
members still training; the members at that step train, every other member
is frozen (its state passes through the program unchanged, selected on the
device). So a member that is done — its epochs trained, early stopped, or
diverged — stays frozen while the others go on (simpler than re-forming the
group, and its compute is small next to a recompilation), and after a kill
that caught the members' checkpoints at different chunks, the members that
lag catch up first. A member whose chunk reports a non-finite step keeps its
state from before that chunk (its last checkpoint), is marked diverged, and
the others go on.
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
from vae_jax.run.early_stopping import EarlyStopping
from vae_jax.run.outputs import write_figures
from vae_jax.run.store import checkpoints as checkpoints_lib
from vae_jax.run.store import resume
from vae_jax.run.store import workdir as workdir_lib
from vae_jax.run.sweep import stack as stack_lib

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
  """The host-side record of one member: its directory and progress."""

  def __init__(
    self, config, workdir, data, model, step_cfg, steps_per_epoch, config_file
  ):
    self.config, self.workdir = config, workdir
    self.hparams = programs.hyperparams(config, steps_per_epoch)
    init_rng, self.eval_rng, self.figure_rng = programs.run_keys(config)
    self.fresh = programs.init_state(model, step_cfg, init_rng)
    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
    self.ckpts = checkpoints_lib.RunCheckpoints(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
    )
    start = resume.start(self.ckpts, self.fresh, workdir)
    self.state, self.history = start.state, start.history
    self.step = int(self.state.step)
    progress = start.progress
    mid = self.step % steps_per_epoch > 0
    self.done = list(progress.epoch_chunks) if mid else []
    self.train_seconds = progress.epoch_train_seconds if mid else 0.0
    self.wall_before = progress.wall_time_sec
    self.run_start = time.perf_counter() - self.wall_before
    self.stopping = EarlyStopping(config.early_stopping_patience, self.history)
    self.diverged: Optional[str] = None
    self.outputs = stages.EpochEnd(
      config, workdir, model, data, self.eval_rng, self.figure_rng
    )
    workdir_lib.write_config(
      workdir,
      config,
      config_file,
      data.describe(),
      stages.describe_model(config, model),
    )
    tensorboard_dir = os.path.join(workdir, "tensorboard")
    self.writer = tensorboard.SummaryWriter(
      tensorboard_dir,
      purge_step=self.step + 1 if os.path.isdir(tensorboard_dir) else None,
    )
    if start.restored_step is not None:
      logging.info("resuming %s from step %d", workdir, self.step)

  def training(self, steps_per_epoch: int) -> bool:
    return (
      self.diverged is None
      and not self.stopping.should_stop
      and self.step < self.config.epochs * steps_per_epoch
    )

  def outcome(self) -> Outcome:
    if self.diverged is not None:
      return Outcome("diverged", self.diverged)
    if self.stopping.should_stop:
      return Outcome("early_stopped", self.stopping.describe())
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
  steps_per_epoch = data.num_train // first.batch_size
  chunk_lengths = programs.chunk_lengths(steps_per_epoch, first.steps_per_chunk)
  chunk_starts = [sum(chunk_lengths[:i]) for i in range(len(chunk_lengths))]
  step_cfg = programs.step_config(first)
  feed = programs.batch_feed(first, data)
  runs = []
  try:
    for config, workdir in zip(configs, workdirs):
      runs.append(
        _Run(
          config, workdir, data, model, step_cfg, steps_per_epoch, config_file
        )
      )
    _train(
      runs,
      data,
      model,
      step_cfg,
      feed,
      steps_per_epoch,
      chunk_lengths,
      chunk_starts,
      first.num_devices,
      after_chunk,
    )
    for run in runs:
      if run.diverged is not None:
        continue
      params = stages.final_measurements(
        run.config,
        run.workdir,
        model,
        run.state,
        data,
        run.ckpts,
        run.history,
        run.writer,
        run.eval_rng,
      )
      if figures:
        write_figures(
          model,
          params,
          data,
          run.history,
          os.path.join(run.workdir, "figures"),
          run.figure_rng,
        )
    return [run.outcome() for run in runs]
  finally:
    for run in runs:
      run.close()


def _member(tree, i: int):
  """Member i's slice of a group's host-side record."""
  return jax.tree_util.tree_map(lambda a: a[i], tree)


def _train(
  runs,
  data,
  model,
  step_cfg,
  feed,
  steps_per_epoch,
  chunk_lengths,
  chunk_starts,
  num_devices,
  after_chunk,
):
  """The group's chunks, until no member trains."""
  devices = resolve_devices(num_devices)
  padded = math.ceil(len(runs) / len(devices)) * len(devices)
  pad = [runs[0]] * (padded - len(runs))  # never active
  states = stack_lib.stack_states([r.state for r in runs + pad])
  hparams = stack_lib.stack([r.hparams for r in runs + pad])
  images = data.train
  if len(devices) > 1:
    mesh = Mesh(np.array(devices), ("members",))
    members = NamedSharding(mesh, PartitionSpec("members"))
    states, hparams = jax.device_put((states, hparams), members)
    images = jax.device_put(images, NamedSharding(mesh, PartitionSpec()))
  else:
    members = None
  # Compiled ahead, so that no member's examples/s counts the compilation.
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
    run.run_start = time.perf_counter() - run.wall_before
  dispatched = 0
  while True:
    training = [r.training(steps_per_epoch) for r in runs]
    if not any(training):
      break
    step = min(r.step for r, t in zip(runs, training) if t)
    epoch, position = divmod(step, steps_per_epoch)
    if position not in chunk_starts:
      raise RuntimeError(
        f"checkpoint at step {step} is not at a chunk "
        f"boundary of chunks {chunk_lengths}"
      )
    c = chunk_starts.index(position)
    n = chunk_lengths[c]
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
    now = time.perf_counter()  # every member's wall time: the group's
    seconds = now - chunk_start
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
      if not active[i]:
        continue
      bad = _member(health, i)
      run.diverged = stages.chunk_failure(
        bad,
        sum(c.skipped_updates for c in run.done),
        step_cfg.skip_nonfinite_updates,
        steps_per_epoch,
        run.config.epochs,
        run.ckpts,
      )
      if run.diverged:
        logging.warning(
          "%s diverged (frozen; the others go on): %s",
          run.workdir,
          run.diverged,
        )
        continue
      run.state = members_now[i]
      run.step = int(run.state.step)
      run.done.append(
        resume.ChunkRecord(n, _member(metrics, i), int(bad.skipped_updates))
      )
      run.train_seconds += seconds
      end_of_epoch = c == len(chunk_lengths) - 1
      if end_of_epoch:
        try:
          stages.end_epoch(
            run.outputs,
            epoch,
            run.state,
            run.done,
            steps_per_epoch,
            run.train_seconds,
            now - run.run_start,
            run.history,
            run.writer,
            run.stopping,
            run.ckpts,
          )
        except NonFiniteError as e:
          run.diverged = str(e)
          logging.warning(
            "%s diverged (frozen; the others go on): %s",
            run.workdir,
            run.diverged,
          )
          continue
      run.ckpts.save_latest(
        run.state,
        resume.checkpoint_progress(
          epoch + 1 if end_of_epoch else epoch,
          [] if end_of_epoch else run.done,
          0.0 if end_of_epoch else run.train_seconds,
          now - run.run_start,
          run.history,
        ),
      )
      if end_of_epoch:
        run.done, run.train_seconds = [], 0.0
        if run.stopping.should_stop:
          logging.info(
            "%s: early stopping after epoch %d: %s",
            run.workdir,
            epoch + 1,
            run.stopping.describe(),
          )
    dispatched += 1
    if after_chunk is not None:
      after_chunk(dispatched)
