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

__all__ = ["TEST_BINARIZATION_SEED", "flatten", "binarize", "to_unit_interval",
           "epoch_permutation", "batch_indices", "binarize_once"]

# The evaluation splits are binarised once with this seed, whatever the run's
# seed, so every run is scored on the same binary images.
TEST_BINARIZATION_SEED = 0


def flatten(images: np.ndarray) -> np.ndarray:
  """`[N, H, W, C]` → `[N, H·W·C]`, for MLPs."""
  return images.reshape(images.shape[0], -1)


def to_unit_interval(images: chex.Array, pixel_max: int) -> chex.Array:
  """uint8 pixels → float32 in [0, 1]."""
  return images.astype(jnp.float32) / pixel_max


def binarize(rng: chex.PRNGKey, images: chex.Array, pixel_max: int) -> chex.Array:
  """x_bin ~ Bernoulli(x / pixel_max), elementwise; float32 in {0, 1}.

  E[x_bin] = x / pixel_max: the binary data keep the pixel intensities on
  average (dynamic binarisation, a fresh draw each epoch).
  """
  u = jax.random.uniform(rng, images.shape, dtype=jnp.float32)
  return (u * pixel_max < images.astype(jnp.float32)).astype(jnp.float32)


def binarize_once(images: np.ndarray, pixel_max: int,
                  seed: int = TEST_BINARIZATION_SEED) -> np.ndarray:
  """Static binarisation with a fixed seed: uint8 in {0, 1} (pixel_max 1)."""
  out = binarize(jax.random.key(seed), jnp.asarray(images), pixel_max)
  return np.asarray(out, dtype=np.uint8)


def epoch_permutation(data_key: chex.PRNGKey, epoch: chex.Numeric,
                      num_examples: int) -> chex.Array:
  """The order of epoch `epoch`: a permutation of [0, num_examples)."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch),
                                num_examples)


def batch_indices(permutation: chex.Array, index_in_epoch: chex.Numeric,
                  batch_size: int) -> chex.Array:
  """Indices of batch `index_in_epoch` of an epoch: `[batch_size]`.

  An epoch has num_examples // batch_size batches; the remainder is dropped,
  a different remainder each epoch.
  """
  return jax.lax.dynamic_slice_in_dim(
      permutation, index_in_epoch * batch_size, batch_size)
