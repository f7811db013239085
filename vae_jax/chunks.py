"""Chunks of train steps: one compiled `lax.scan` per dispatch, data on device.

A chunk runs `num_steps` steps of `vae_jax.step.train_step` without
returning to Python. Its batches are gathered, shuffled and binarised inside
the program (`train_chunk`, the training split on the device), or arrive as
one uint8 array per chunk (`train_chunk_streamed`); both make bit-identical
batches, since every random choice is a function of (key, epoch, step).

Each step is `vae_jax.step.checked_train_step`: a chunk reports the first
step with a non-finite loss or gradient in `ChunkHealth`, checked on the
device (no host sync per step). Unless `skip_nonfinite_updates`, the chunk
freezes the state at that step, so the host gets back the last finite state
and stops the run there. The state itself is checked once, at the chunk's
end (a full pass over it every step would cost more than the check is worth:
a non-finite parameter makes the next loss non-finite anyway).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from vae_jax.data import pipeline
from vae_jax.math.model import VAEModel
from vae_jax.step import Hyperparams, StepConfig, StepMetrics, TrainState
from vae_jax.step import checked_train_step, nonfinite_state

__all__ = ["BatchConfig", "ChunkHealth", "train_chunk", "train_chunk_streamed"]


@dataclasses.dataclass(frozen=True)
class BatchConfig:
  """Static settings of how a chunk makes its batches."""

  batch_size: int
  dynamic_binarization: bool  # x ~ Bernoulli(pixel / pixel_max) per step
  pixel_max: int  # uint8 pixels / pixel_max lie in [0, 1]
  # A mesh's batch sharding (vae_jax.run.mesh), constraining each batch;
  # None on one device: no annotation at all.
  batch_sharding: Optional[jax.sharding.Sharding] = None


def _placed(raw: chex.Array, data: BatchConfig) -> chex.Array:
  if data.batch_sharding is None:
    return raw
  return jax.lax.with_sharding_constraint(raw, data.batch_sharding)


class ChunkHealth(NamedTuple):
  """The chunk's non-finite steps; int32 scalars."""

  first_bad_step: chex.Array  # the first non-finite step; -1: none
  first_bad_quantity: chex.Array  # its code (vae_jax.step); 0: none
  skipped_updates: chex.Array  # updates skipped (skip_nonfinite_updates)


class _Carry(NamedTuple):
  state: TrainState
  health: ChunkHealth


def _start(state: TrainState) -> _Carry:
  return _Carry(state, ChunkHealth(jnp.int32(-1), jnp.int32(0), jnp.int32(0)))


def _checked(model, step_config, carry: _Carry, batch, hparams):
  """One checked step; the carry remembers the first bad step."""
  health = carry.health
  halted = (health.first_bad_step >= 0
            if not step_config.skip_nonfinite_updates else False)
  state, metrics, code = checked_train_step(model, step_config, carry.state,
                                            batch, hparams, halted)
  first = (health.first_bad_step < 0) & (code > 0)
  health = ChunkHealth(
      jnp.where(first, carry.state.step, health.first_bad_step),
      jnp.where(first, code, health.first_bad_quantity),
      health.skipped_updates + ((code > 0) & jnp.logical_not(halted)))
  return _Carry(state, health), (metrics, (code == 0) & jnp.logical_not(
      halted))


def _finish(carry: _Carry, outputs) -> tuple[TrainState, StepMetrics,
                                              ChunkHealth]:
  """Metrics averaged over the steps whose update was taken; the state's
  own check (reported at the chunk's last step if no step was bad)."""
  metrics, taken = outputs
  count = jnp.maximum(jnp.sum(taken), 1).astype(jnp.float32)
  mean = jax.tree_util.tree_map(
      lambda m: jnp.sum(jnp.where(taken, m, 0.0), axis=0) / count, metrics)
  health, code = carry.health, nonfinite_state(carry.state)
  first = (health.first_bad_step < 0) & (code > 0)
  health = health._replace(
      first_bad_step=jnp.where(first, carry.state.step - 1,
                               health.first_bad_step),
      first_bad_quantity=jnp.where(first, code, health.first_bad_quantity))
  return carry.state, mean, health


def train_chunk(model: VAEModel, step_config: StepConfig, data: BatchConfig,
                num_steps: int, state: TrainState, images: chex.Array,
                hparams: Hyperparams
                ) -> tuple[TrainState, StepMetrics, ChunkHealth]:
  """`num_steps` train steps in one `lax.scan`, batches made on the device.

  Args:
    images: the training split, uint8 `[N, *event_shape]`, on the device.

  The chunk must lie inside one epoch (steps_per_epoch = N // batch_size):
  the permutation of that epoch is computed once, from (key, epoch).

  Returns:
    (state, metrics averaged over the steps taken, `ChunkHealth`).
  """
  steps_per_epoch = images.shape[0] // data.batch_size
  epoch = state.step // steps_per_epoch
  shuffle_key, binarize_key = pipeline.data_keys(state.rng)
  permutation = pipeline.epoch_permutation(shuffle_key, epoch, images.shape[0])
  first = state.step % steps_per_epoch

  def body(carry, i):
    raw = _placed(images[pipeline.batch_indices(permutation, first + i,
                                                data.batch_size)], data)
    # The step of the data, not of the state: a halted state stops counting.
    batch = pipeline.finish_batch(raw, binarize_key, state.step + i,
                                  data.dynamic_binarization, data.pixel_max)
    return _checked(model, step_config, carry, batch, hparams)

  return _finish(*jax.lax.scan(body, _start(state), jnp.arange(num_steps)))


def train_chunk_streamed(model: VAEModel, step_config: StepConfig,
                         data: BatchConfig, num_steps: int, state: TrainState,
                         batches: chex.Array, hparams: Hyperparams
                         ) -> tuple[TrainState, StepMetrics, ChunkHealth]:
  """`train_chunk` for the streaming path: the chunk's batches come in.

  `batches` is the chunk's uint8 pixels `[num_steps, batch_size, ...]`,
  gathered on the host by `vae_jax.data.streaming` in the order `train_chunk`
  would gather them; binarisation happens here with the same per-step key.
  """
  chex.assert_shape(batches, (num_steps, data.batch_size, *model.event_shape))
  _, binarize_key = pipeline.data_keys(state.rng)

  def body(carry, inputs):
    raw, i = inputs
    raw = _placed(raw, data)
    batch = pipeline.finish_batch(raw, binarize_key, state.step + i,
                                  data.dynamic_binarization, data.pixel_max)
    return _checked(model, step_config, carry, batch, hparams)

  return _finish(*jax.lax.scan(body, _start(state),
                               (batches, jnp.arange(num_steps))))
