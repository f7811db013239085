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

from vae_jax.names import ACTIVATIONS  # functions of jax.nn by name

__all__ = ["ACTIVATIONS", "MLPEncoder", "MLPDecoder"]



class MLPEncoder(nn.Module):
  """x `[..., data_dim]` → (μ, logvar) of q(z|x; φ), each `[..., latent_dim]`."""

  hidden_dims: Sequence[int] = (500,)
  latent_dim: int = 20
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: chex.Array) -> Tuple[chex.Array, chex.Array]:
    act = getattr(jax.nn, self.activation)
    h = x
    for i, width in enumerate(self.hidden_dims):
      h = act(nn.Dense(width, name=f"hidden_{i}")(h))
    mean = nn.Dense(self.latent_dim, name="mean")(h)
    logvar = nn.Dense(self.latent_dim, name="logvar")(h)
    return mean, logvar


class MLPDecoder(nn.Module):
  """z `[..., latent_dim]` → the likelihood's parameters `[..., output_dim]`.

  For a Bernoulli likelihood these are logits; for a Gaussian, the mean.
  """

  hidden_dims: Sequence[int] = (500,)
  output_dim: int = 784
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: chex.Array) -> chex.Array:
    act = getattr(jax.nn, self.activation)
    h = z
    for i, width in enumerate(self.hidden_dims):
      h = act(nn.Dense(width, name=f"hidden_{i}")(h))
    return nn.Dense(self.output_dim, name="output")(h)
