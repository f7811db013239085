"""How a compiled chunk of train steps gets its batches: one pure function.

`BatchFeed` is static (hashable: a compiled chunk is keyed by it) and turns
a chunk's data argument into a batch function i → the float batch of step
`step + i`, made inside the compiled program:

  on the device   the data argument is the training split, uint8
                  `[N, *event_shape]`; batch i is gathered from the epoch's
                  permutation;
  streamed        the data argument is the chunk's own batches, uint8
                  `[num_steps, B, *event_shape]`, gathered on the host in the
                  same order (`vae_jax.data.streaming`); batch i is row i.

Either way the batch is then binarised with the key of its step, so both
make bit-identical batches: every random choice is a function of (key,
epoch, step). `vae_jax.chunks.train_chunk` takes a feed and knows nothing
else of the data.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import chex
import jax
import jax.numpy as jnp

from vae_jax.data import pipeline

__all__ = ["BatchFeed"]


@dataclasses.dataclass(frozen=True)
class BatchFeed:
  """Static settings of how a chunk makes its batches."""

  batch_size: int
  dynamic_binarization: bool  # x ~ Bernoulli(pixel / pixel_max) per step
  pixel_max: int  # uint8 pixels / pixel_max lie in [0, 1]
  streamed: bool = False  # the chunk's batches arrive (else: the split)
  # A mesh's batch sharding (vae_jax.run.mesh), constraining each batch;
  # None on one device: no annotation at all.
  batch_sharding: Optional[jax.sharding.Sharding] = None

  def batches(
    self,
    source: chex.Array,
    rng: chex.PRNGKey,
    step: chex.Array,
    num_steps: int,
  ) -> Callable[[chex.Array], chex.Array]:
    """The batch function of a chunk that starts at `step`.

    Args:
      source: the chunk's data argument (see the module docstring).
      rng: the run's training key, `TrainState.rng`.
      step: the chunk's first step (traced).
      num_steps: the chunk's steps; a chunk lies inside one epoch.

    Returns:
      i ↦ the float32 batch `[B, *event_shape]` of step `step + i`.
    """
    shuffle_key, binarize_key = pipeline.data_keys(rng)
    if self.streamed:
      chex.assert_axis_dimension(source, 0, num_steps)
      chex.assert_axis_dimension(source, 1, self.batch_size)
      raw_at = lambda i: source[i]
    else:
      steps_per_epoch = source.shape[0] // self.batch_size
      # The epoch's permutation, once per chunk: it is a function of (key,
      # epoch) alone.
      permutation = pipeline.epoch_permutation(
        shuffle_key, step // steps_per_epoch, source.shape[0]
      )
      first = step % steps_per_epoch
      raw_at = lambda i: source[
        pipeline.batch_indices(permutation, first + i, self.batch_size)
      ]

    def batch(i: chex.Array) -> chex.Array:
      raw = raw_at(i)
      if self.batch_sharding is not None:
        raw = jax.lax.with_sharding_constraint(raw, self.batch_sharding)
      # The step of the data, not of the state: a halted state stops
      # counting.
      return pipeline.finish_batch(
        raw, binarize_key, step + i, self.dynamic_binarization, self.pixel_max
      )

    return batch

  def source_spec(self, train: Any, num_steps: int) -> Any:
    """What a chunk of `num_steps` steps takes as its data argument: the
    training split on the device, or the shape of one streamed chunk, for
    `jax.jit(...).lower(state, spec, hparams)`."""
    if not self.streamed:
      return train
    return jax.ShapeDtypeStruct(
      (num_steps, self.batch_size, *train.shape[1:]), jnp.uint8
    )
