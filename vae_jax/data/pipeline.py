"""On-device batches: shuffling, batching and binarisation as pure functions.

The training images stay on the device as uint8 `[N, data_dim]`; a batch is a
gather plus a Bernoulli draw inside compiled code. Every random choice is a
function of (key, epoch, step), so the batches of epoch E can be rebuilt
without replaying epochs 0..E-1 (exact resume), and a host-side iterator
calling the same functions yields the same batches.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.math import threefry

__all__ = [
  "TEST_BINARIZATION_SEED",
  "TRAIN_BINARIZATION_SEED",
  "flatten",
  "binarize",
  "to_unit_interval",
  "epoch_permutation",
  "batch_indices",
  "binarize_once",
  "data_keys",
  "finish_batch",
]

# The evaluation splits are binarised once with this seed, whatever the run's
# seed, so every run is scored on the same binary images.
TEST_BINARIZATION_SEED = 0
# Static binarisation of the training split: once, with this fixed seed.
TRAIN_BINARIZATION_SEED = TEST_BINARIZATION_SEED + 1


def flatten(images: np.ndarray) -> np.ndarray:
  """`[N, H, W, C]` → `[N, H·W·C]`, for MLPs."""
  return images.reshape(images.shape[0], -1)


def to_unit_interval(images: chex.Array, pixel_max: int) -> chex.Array:
  """uint8 pixels → float32 in [0, 1]."""
  return images.astype(jnp.float32) / pixel_max


def binarize(
  rng: chex.PRNGKey, images: chex.Array, pixel_max: int
) -> chex.Array:
  """x_bin ~ Bernoulli(x / pixel_max), elementwise; float32 in {0, 1}.

  E[x_bin] = x / pixel_max: the binary data keep the pixel intensities on
  average (dynamic binarisation, a fresh draw each epoch).
  """
  u = threefry.uniform(rng, images.shape)  # = jax.random.uniform, fused
  return (u * pixel_max < images.astype(jnp.float32)).astype(jnp.float32)


# One compiled program rather than a dozen eager ops, each compiled alone.
_binarize_compiled = jax.jit(binarize, static_argnums=2)


def binarize_once(
  images: np.ndarray, pixel_max: int, seed: int = TEST_BINARIZATION_SEED
) -> np.ndarray:
  """Static binarisation with a fixed seed: uint8 in {0, 1} (pixel_max 1).

  The draw is made on the flat `[N, D]` view, so it does not depend on the
  layout (`[N, D]` or `[N, H, W, C]`); the result has the input's shape.
  """
  flat = jnp.asarray(images).reshape(images.shape[0], -1)
  out = _binarize_compiled(jax.random.key(seed), flat, pixel_max)
  return np.asarray(out, dtype=np.uint8).reshape(images.shape)


def data_keys(rng: chex.PRNGKey) -> tuple[chex.PRNGKey, chex.PRNGKey]:
  """(shuffle key, binarisation key) of a run whose root training key is `rng`.

  Streams apart from the steps' z draws (which use fold_in(rng, step)). Both
  input paths (on-device and streaming) derive their keys here.
  """
  keys = jax.random.split(rng, 3)
  return keys[1], keys[2]


def finish_batch(
  raw: chex.Array,
  binarize_key: chex.PRNGKey,
  step: chex.Numeric,
  dynamic_binarization: bool,
  pixel_max: int,
) -> chex.Array:
  """The float batch that step `step` trains on, from its uint8 pixels.

  Args:
    raw: uint8 `[B, D]` or `[B, H, W, C]`, the batch's rows of the split.
    binarize_key: the run's binarisation key (`data_keys(rng)[1]`).
    step: the global step; the draw uses fold_in(binarize_key, step), so it
      is the same whichever path made `raw` and however the steps are chunked.
    dynamic_binarization: draw x ~ Bernoulli(pixel / pixel_max) if True; else
      scale pixels to [0, 1].

  Returns:
    float32, the shape of `raw`. The Bernoulli draw is made on the flat
    `[B, D]` view, so it does not depend on the layout.
  """
  if not dynamic_binarization:
    return to_unit_interval(raw, pixel_max)
  flat = raw.reshape(raw.shape[0], -1)
  out = binarize(threefry.fold_in(binarize_key, step), flat, pixel_max)
  return out.reshape(raw.shape)


def epoch_permutation(
  data_key: chex.PRNGKey, epoch: chex.Numeric, num_examples: int
) -> chex.Array:
  """The order of epoch `epoch`: a permutation of [0, num_examples)."""
  return jax.random.permutation(
    jax.random.fold_in(data_key, epoch), num_examples
  )


def batch_indices(
  permutation: chex.Array, index_in_epoch: chex.Numeric, batch_size: int
) -> chex.Array:
  """Indices of batch `index_in_epoch` of an epoch: `[batch_size]`.

  An epoch has num_examples // batch_size batches; the remainder is dropped,
  a different remainder each epoch.
  """
  return jax.lax.dynamic_slice_in_dim(
    permutation, index_in_epoch * batch_size, batch_size
  )
