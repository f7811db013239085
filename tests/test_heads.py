"""gaussian_heads: the two Dense heads' parameters and outputs, one matmul."""

import flax.linen as nn
import jax
import numpy as np

from vae_jax.nets import modules
from vae_jax.nets.mlp import MLPVAE

import tolerances


class _TwoDenseHeads(nn.Module):
  """The encoder's heads as two nn.Dense layers (the reference)."""

  latent_dim: int

  @nn.compact
  def __call__(self, h):
    return (
      nn.Dense(self.latent_dim, name="mean")(h),
      nn.Dense(self.latent_dim, name="logvar")(h),
    )


class _FusedHeads(nn.Module):
  latent_dim: int

  @nn.compact
  def __call__(self, h):
    return modules.gaussian_heads(h, self.latent_dim)


def test_same_parameters_and_outputs_as_two_dense_layers():
  h = jax.random.normal(jax.random.key(0), (16, 50))
  reference, fused = _TwoDenseHeads(7), _FusedHeads(7)
  params = reference.init(jax.random.key(1), h)
  got_params = fused.init(jax.random.key(1), h)
  jax.tree_util.tree_map(np.testing.assert_array_equal, got_params, params)
  params = jax.tree_util.tree_map(  # non-zero biases, to test them too
    lambda p: p + 0.1, params
  )
  want, got = reference.apply(params, h), fused.apply(params, h)
  # A column of either product is the same 50-term dot product.
  for g, w in zip(got, want):
    tolerances.assert_close(
      g,
      w,
      tolerances.sum_atol(
        50,
        float(
          np.max(np.abs(h))
          * np.sum(np.abs(params["params"]["mean"]["kernel"]), axis=0).max()
        )
        + 1.0,
      ),
    )


def test_model_parameters_keep_their_names():
  params = MLPVAE(event_shape=(12,), latent_dim=3, hidden_dims=(8,)).init(
    jax.random.key(0)
  )
  assert params["encoder"]["mean"]["kernel"].shape == (8, 3)
  assert params["encoder"]["logvar"]["bias"].shape == (3,)
