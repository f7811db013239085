"""From a run's config to what the compiled programs take: plain values.

A config becomes a `StepConfig` and a `BatchFeed` (static: they shape the
program), `Hyperparams` (traced), the chunking of an epoch and the run's keys.
The programs are module-level `jax.jit`s whose static arguments (model,
StepConfig, BatchFeed, sizes) compare by value, so equal settings reuse
the programs JAX compiled before — no caches of our own.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import chunks
from vae_jax import evaluation
from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.data import streaming
from vae_jax.data.feeds import BatchFeed
from vae_jax.run import mesh

__all__ = [
  "step_config",
  "hyperparams",
  "batch_feed",
  "chunk_lengths",
  "run_keys",
  "train_stream",
  "compile_chunk",
  "evaluate_program",
  "init_state",
]


def step_config(config) -> step_lib.StepConfig:
  return step_lib.StepConfig(
    num_samples=config.num_samples,
    analytic_kl=config.analytic_kl,
    objective=config.objective,
    optimizer=config.optimizer,
    grad_clip_norm=float(config.grad_clip_norm),
    lr_schedule=config.lr_schedule,
    ema=config.ema_decay > 0,
    skip_nonfinite_updates=config.skip_nonfinite_updates,
  )


def hyperparams(config, steps_per_epoch: int) -> step_lib.Hyperparams:
  """The traced inputs of the step; lengths in epochs become steps, and the
  learning rate is scaled to the batch size (`lr_batch_scaling`) here, on
  the host: the scaling is a function of static sizes, so it needs no
  traced input of its own, and members of a sweep may differ in it."""
  schedule_epochs = config.lr_schedule_epochs or config.epochs
  steps = lambda epochs: jnp.float32(round(epochs * steps_per_epoch))
  rate = config.learning_rate
  if config.lr_batch_scaling != "none":  # else the configured float as it is
    rate *= validation.batch_scale(
      config.lr_batch_scaling, config.batch_size, config.lr_reference_batch_size
    )
  return step_lib.Hyperparams(
    learning_rate=jnp.float32(rate),
    kl_weight=jnp.float32(config.kl_weight),
    kl_warmup_steps=steps(config.kl_warmup_epochs),
    lr_warmup_steps=steps(config.lr_warmup_epochs),
    lr_schedule_steps=steps(schedule_epochs),
    lr_floor=jnp.float32(config.lr_floor),
    ema_decay=jnp.float32(config.ema_decay),
    free_bits=jnp.float32(config.free_bits),
  )


def batch_feed(
  config, data, place: Optional[mesh.Placement] = None
) -> BatchFeed:
  """How the run's chunks make their batches (static)."""
  return BatchFeed(
    config.batch_size,
    data.dynamic_binarization,
    data.pixel_max,
    streamed=data.streaming,
    batch_sharding=None if place is None else place.batch,
  )


def chunk_lengths(steps_per_epoch: int, steps_per_chunk: int) -> list[int]:
  """The steps of each compiled chunk of an epoch (one chunk if 0)."""
  chunk = (
    steps_per_epoch
    if steps_per_chunk <= 0
    else min(steps_per_chunk, steps_per_epoch)
  )
  full, rest = divmod(steps_per_epoch, chunk)
  return [chunk] * full + ([rest] if rest else [])


def run_keys(config) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The (initialisation, evaluation, figures) keys of a run, from its seed.

  Training and evaluating a saved run use these, so evaluating a checkpoint
  draws the z of the run's own evaluation. (Training draws its keys from the
  state's rng and step.)
  """
  root = jax.random.key(config.seed)
  fold = lambda i: jax.random.fold_in(root, i)
  return fold(0), fold(1), fold(2)


init_state = jax.jit(step_lib.init_train_state, static_argnums=(0, 1))


_chunk = jax.jit(
  chunks.train_chunk, static_argnums=(0, 1, 2, 3), donate_argnums=(4,)
)


def _sharded_chunk(feed: BatchFeed, place: mesh.Placement):
  """The chunk under `jax.jit` with the mesh's shardings: state, hparams and
  outputs replicated; the on-device split replicated, streamed chunks
  sharded along the data axis (the batches themselves are constrained
  inside, by `BatchFeed.batch_sharding`)."""
  data = place.streamed_chunk if feed.streamed else place.replicated
  return jax.jit(
    chunks.train_chunk,
    static_argnums=(0, 1, 2, 3),
    donate_argnums=(4,),
    in_shardings=(place.replicated, data, place.replicated),
    out_shardings=place.replicated,
  )


def compile_chunk(
  model,
  step_cfg,
  feed: BatchFeed,
  num_steps: int,
  state,
  train,
  hparams,
  place: Optional[mesh.Placement] = None,
):
  """The compiled chunk of `num_steps` steps: f(state, data, hparams).

  `state` (donated) and `hparams` give the shapes; `train` is the training
  split (on the device, or on the host when `feed.streamed`: then the chunk
  takes one chunk's streamed batches, `feed.source_spec`). Compiled ahead
  of time, so the run can time it apart from the training steps; equal
  arguments reuse JAX's cached program. With a mesh (`place`), the program
  is sharded over it (`feed` must be `batch_feed(..., place)`).
  """
  fn = _chunk if place is None else _sharded_chunk(feed, place)
  return fn.lower(
    model,
    step_cfg,
    feed,
    num_steps,
    state,
    feed.source_spec(train, num_steps),
    hparams,
  ).compile()


evaluate_program = jax.jit(
  evaluation.evaluate,
  static_argnames=("model", "batch_size", "num_samples", "analytic_kl"),
)


def train_stream(
  config, data, place, rng: jax.Array, chunks: list[int], resume_at
) -> streaming.Prefetcher:
  """The streamed training chunks of a run from `resume_at` = (epoch,
  chunk) on: the chunks before it are never gathered on the host nor sent
  to the device. `rng` is this process's copy of the run's key (the host
  draws the order)."""
  first_epoch, first_chunk = resume_at
  return streaming.stream_chunks(
    np.asarray(data.train),
    rng,
    config.batch_size,
    chunks,
    first_epoch=first_epoch,
    num_epochs=config.epochs - first_epoch,
    first_chunk=first_chunk,
    device=None if place is None else place.streamed_chunk,
  )
