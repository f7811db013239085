"""Chunks of train steps: one compiled `lax.scan` per dispatch, data on device.

A chunk runs `num_steps` steps of `vae_jax.step.train_step` without
returning to Python. Its batches come from a feed, a static object of the
data layer (`vae_jax.data.feeds.BatchFeed`) that turns the chunk's data
argument into a pure batch function i → batch: gathered, shuffled and
binarised inside the program from the training split on the device, or
indexed from the chunk's streamed batches and binarised. One chunk function
serves both.

Each step is `vae_jax.step.checked_train_step`: a chunk reports the first
step with a non-finite loss or gradient in `ChunkHealth`, checked on the
device (no host sync per step). Unless `skip_nonfinite_updates`, the chunk
freezes the state at that step, so the host gets back the last finite state
and stops the run there. The state itself is checked once, at the chunk's
end (a full pass over it every step would cost more than the check is worth:
a non-finite parameter makes the next loss non-finite anyway).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import chex
import jax
import jax.numpy as jnp

from vae_jax.math.model import VAEModel
from vae_jax.step import Hyperparams, StepConfig, StepMetrics, TrainState
from vae_jax.step import checked_train_step, nonfinite_state

__all__ = ["Feed", "ChunkHealth", "train_chunk"]


class Feed(Protocol):
  """What a chunk needs of the data layer (vae_jax.data.feeds.BatchFeed):
  hashable, since compiled chunks are keyed by it."""

  batch_size: int

  def batches(
    self,
    source: chex.Array,
    rng: chex.PRNGKey,
    step: chex.Array,
    num_steps: int,
  ) -> Callable[[chex.Array], chex.Array]: ...


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
  halted = (
    health.first_bad_step >= 0
    if not step_config.skip_nonfinite_updates
    else False
  )
  state, metrics, code = checked_train_step(
    model, step_config, carry.state, batch, hparams, halted
  )
  first = (health.first_bad_step < 0) & (code > 0)
  health = ChunkHealth(
    jnp.where(first, carry.state.step, health.first_bad_step),
    jnp.where(first, code, health.first_bad_quantity),
    health.skipped_updates + ((code > 0) & jnp.logical_not(halted)),
  )
  return _Carry(state, health), (metrics, (code == 0) & jnp.logical_not(halted))


def _finish(
  carry: _Carry, outputs
) -> tuple[TrainState, StepMetrics, ChunkHealth]:
  """Metrics averaged over the steps whose update was taken; the state's
  own check (reported at the chunk's last step if no step was bad)."""
  metrics, taken = outputs
  count = jnp.maximum(jnp.sum(taken), 1).astype(jnp.float32)
  mean = jax.tree_util.tree_map(
    lambda m: jnp.sum(jnp.where(taken, m, 0.0), axis=0) / count, metrics
  )
  health, code = carry.health, nonfinite_state(carry.state)
  first = (health.first_bad_step < 0) & (code > 0)
  health = health._replace(
    first_bad_step=jnp.where(
      first, carry.state.step - 1, health.first_bad_step
    ),
    first_bad_quantity=jnp.where(first, code, health.first_bad_quantity),
  )
  return carry.state, mean, health


def train_chunk(
  model: VAEModel,
  step_config: StepConfig,
  feed: Feed,
  num_steps: int,
  state: TrainState,
  source: chex.Array,
  hparams: Hyperparams,
) -> tuple[TrainState, StepMetrics, ChunkHealth]:
  """`num_steps` train steps in one `lax.scan`, batches made on the device.

  Args:
    feed: how batches are made (static).
    source: the chunk's data argument, as `feed` takes it: the training
      split uint8 `[N, *event_shape]` on the device, or the chunk's streamed
      batches `[num_steps, B, *event_shape]`.

  The chunk must lie inside one epoch (steps_per_epoch = N // batch_size).

  Returns:
    (state, metrics averaged over the steps taken, `ChunkHealth`).
  """
  batch_at = feed.batches(source, state.rng, state.step, num_steps)

  def body(carry, i):
    batch = batch_at(i)
    chex.assert_shape(batch, (feed.batch_size, *model.event_shape))
    return _checked(model, step_config, carry, batch, hparams)

  return _finish(*jax.lax.scan(body, _start(state), jnp.arange(num_steps)))
