"""Chunks of train steps: one compiled `lax.scan` per dispatch, data on device.

A chunk runs `num_steps` steps of `vae_jax.step.train_step` without
returning to Python. Its batches are gathered, shuffled and binarised inside
the program (`train_chunk`, the training split on the device), or arrive as
one uint8 array per chunk (`train_chunk_streamed`); both make bit-identical
batches, since every random choice is a function of (key, epoch, step).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp

from vae_jax.data import pipeline
from vae_jax.math.model import VAEModel
from vae_jax.step import Hyperparams, StepConfig, StepMetrics, TrainState
from vae_jax.step import train_step

__all__ = ["BatchConfig", "train_chunk", "train_chunk_streamed"]


@dataclasses.dataclass(frozen=True)
class BatchConfig:
  """Static settings of how a chunk makes its batches."""

  batch_size: int
  dynamic_binarization: bool  # x ~ Bernoulli(pixel / pixel_max) per step
  pixel_max: int  # uint8 pixels / pixel_max lie in [0, 1]


def _mean_over_steps(metrics: StepMetrics) -> StepMetrics:
  return jax.tree_util.tree_map(lambda m: jnp.mean(m, axis=0), metrics)


def train_chunk(model: VAEModel, step_config: StepConfig, data: BatchConfig,
                num_steps: int, state: TrainState, images: chex.Array,
                hparams: Hyperparams) -> tuple[TrainState, StepMetrics]:
  """`num_steps` train steps in one `lax.scan`, batches made on the device.

  Args:
    images: the training split, uint8 `[N, *event_shape]`, on the device.

  The chunk must lie inside one epoch (steps_per_epoch = N // batch_size):
  the permutation of that epoch is computed once, from (key, epoch).

  Returns:
    The new state and the metrics averaged over the chunk's steps.
  """
  steps_per_epoch = images.shape[0] // data.batch_size
  epoch = state.step // steps_per_epoch
  shuffle_key, binarize_key = pipeline.data_keys(state.rng)
  permutation = pipeline.epoch_permutation(shuffle_key, epoch, images.shape[0])
  first = state.step % steps_per_epoch

  def body(state, i):
    raw = images[pipeline.batch_indices(permutation, first + i,
                                        data.batch_size)]
    batch = pipeline.finish_batch(raw, binarize_key, state.step,
                                  data.dynamic_binarization, data.pixel_max)
    return train_step(model, step_config, state, batch, hparams)

  state, metrics = jax.lax.scan(body, state, jnp.arange(num_steps))
  return state, _mean_over_steps(metrics)


def train_chunk_streamed(model: VAEModel, step_config: StepConfig,
                         data: BatchConfig, num_steps: int, state: TrainState,
                         batches: chex.Array, hparams: Hyperparams
                         ) -> tuple[TrainState, StepMetrics]:
  """`train_chunk` for the streaming path: the chunk's batches come in.

  `batches` is the chunk's uint8 pixels `[num_steps, batch_size, ...]`,
  gathered on the host by `vae_jax.data.streaming` in the order `train_chunk`
  would gather them; binarisation happens here with the same per-step key.
  """
  chex.assert_shape(batches, (num_steps, data.batch_size, *model.event_shape))
  _, binarize_key = pipeline.data_keys(state.rng)

  def body(state, raw):
    batch = pipeline.finish_batch(raw, binarize_key, state.step,
                                  data.dynamic_binarization, data.pixel_max)
    return train_step(model, step_config, state, batch, hparams)

  state, metrics = jax.lax.scan(body, state, batches)
  return state, _mean_over_steps(metrics)
