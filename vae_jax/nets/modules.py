"""The encoder DNN_enc(x; φ) and decoder DNN_dec(z; θ) as flax.linen modules.

They are used only through `init`/`apply`, i.e. as pure functions of
(params, input). Each acts on the last axis, so the same module serves one
example `[D]` or a batch `[B, D]`.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.names import ACTIVATIONS  # functions of jax.nn by name

__all__ = [
  "ACTIVATIONS",
  "DenseParams",
  "gaussian_heads",
  "hidden_layer",
  "MLPEncoder",
  "MLPDecoder",
]


class DenseParams(nn.Module):
  """The parameters of `nn.Dense(features)`, declared, not applied.

  Same names, shapes, initialisers and order as nn.Dense, so a module
  named like a Dense layer gets the same values from the same key.
  """

  features: int

  @nn.compact
  def __call__(self, in_features: int) -> Tuple[chex.Array, chex.Array]:
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), (in_features, self.features)
    )
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    return kernel, bias


def gaussian_heads(
  h: chex.Array, latent_dim: int
) -> Tuple[chex.Array, chex.Array]:
  """(μ, logvar) = two Dense heads "mean" and "logvar" of h, as one matmul.

  Call inside a compact `__call__`: the parameters are the two layers'
  (`DenseParams`), the product is h · [W_μ | W_logvar], one 2·latent-wide
  matmul instead of two narrow ones (and one each in the backward pass):
  three fewer small matmuls in a train step.
  """
  (w_mean, b_mean), (w_logvar, b_logvar) = (
    DenseParams(latent_dim, name=name)(h.shape[-1])
    for name in ("mean", "logvar")
  )
  out = h @ jnp.concatenate([w_mean, w_logvar], axis=1) + jnp.concatenate(
    [b_mean, b_logvar]
  )
  return out[..., :latent_dim], out[..., latent_dim:]


def hidden_layer(
  h: chex.Array, width: int, activation: str, name: str
) -> chex.Array:
  """activation(Dense(width)(h)), named `name`; call in a compact `__call__`.

  `glu` is the gated dense layer of the VampPrior reference code (Dauphin et
  al. 2017): (W h + b) ⊙ σ(V h + c), computed as one Dense of 2·width that
  `jax.nn.glu` splits into value and gate halves, so one matmul, not two.
  """
  if activation == "glu":
    return jax.nn.glu(nn.Dense(2 * width, name=name)(h), axis=-1)
  return getattr(jax.nn, activation)(nn.Dense(width, name=name)(h))


class MLPEncoder(nn.Module):
  """x `[..., data_dim]` → (μ, logvar) of q(z|x; φ), each `[..., latent_dim]`."""

  hidden_dims: Sequence[int] = (500,)
  latent_dim: int = 20
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: chex.Array) -> Tuple[chex.Array, chex.Array]:
    h = x
    for i, width in enumerate(self.hidden_dims):
      h = hidden_layer(h, width, self.activation, f"hidden_{i}")
    return gaussian_heads(h, self.latent_dim)


class MLPDecoder(nn.Module):
  """z `[..., latent_dim]` → the likelihood's parameters `[..., output_dim]`.

  For a Bernoulli likelihood these are logits; for a Gaussian, the mean.
  """

  hidden_dims: Sequence[int] = (500,)
  output_dim: int = 784
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: chex.Array) -> chex.Array:
    h = z
    for i, width in enumerate(self.hidden_dims):
      h = hidden_layer(h, width, self.activation, f"hidden_{i}")
    return nn.Dense(self.output_dim, name="output")(h)
