"""The MLP VAE: encoder data_dim-hidden-2×latent, decoder mirrored.

The default (784-500-20, ReLU, Bernoulli) is the model of the Flax VAE
example, so numbers compare. The model is a frozen dataclass of its sizes and
names (`vae_jax.math.model.VAEModel`): equal settings give equal models.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Tuple

import chex
import jax
import jax.numpy as jnp

from vae_jax.math.likelihoods import DEFAULT_MIN_LOG_VARIANCE, Likelihood
from vae_jax.math.model import StandardNormalPrior
from vae_jax.nets.modules import MLPDecoder, MLPEncoder

__all__ = ["MLPVAE", "make_mlp_vae"]


@dataclasses.dataclass(frozen=True)
class MLPVAE(StandardNormalPrior):
  """An MLP encoder and decoder on flat examples `[data_dim]`.

  Accepts leading batch axes too: x `[..., data_dim]`, z `[..., latent_dim]`.
  """

  event_shape: Tuple[int, ...] = (784,)
  latent_dim: int = 20
  hidden_dims: Tuple[int, ...] = (500,)
  activation: str = "relu"
  likelihood: Likelihood = Likelihood()

  @property
  def _encoder(self) -> MLPEncoder:
    return MLPEncoder(self.hidden_dims, self.latent_dim, self.activation)

  @property
  def _decoder(self) -> MLPDecoder:
    return MLPDecoder(tuple(reversed(self.hidden_dims)),
                      math.prod(self.event_shape)
                      * self.likelihood.outputs_per_value, self.activation)

  def init(self, rng: chex.PRNGKey) -> Any:
    enc_rng, dec_rng = jax.random.split(rng)
    data_dim = math.prod(self.event_shape)
    return {
        "encoder": self._encoder.init(enc_rng, jnp.zeros((1, data_dim)))["params"],
        "decoder": self._decoder.init(
            dec_rng, jnp.zeros((1, self.latent_dim)))["params"],
    }

  def encode(self, params, x):
    return self._encoder.apply({"params": params["encoder"]}, x)

  def decode(self, params, z):
    return self._decoder.apply({"params": params["decoder"]}, z)

  def log_likelihood(self, decoder_output, x):
    return self.likelihood.log_prob(decoder_output, x)

  def mean_of_output(self, decoder_output):
    return self.likelihood.mean(decoder_output)


def make_mlp_vae(data_dim: int = 784, latent_dim: int = 20,
                 hidden_dims=(500,), activation: str = "relu",
                 likelihood: str = "bernoulli",
                 gaussian_variance: float = 1.0,
                 min_log_variance: float = DEFAULT_MIN_LOG_VARIANCE) -> MLPVAE:
  """An `MLPVAE` from plain values (a shortcut for scripts and notebooks)."""
  return MLPVAE(event_shape=(int(data_dim),), latent_dim=int(latent_dim),
                hidden_dims=tuple(int(h) for h in hidden_dims),
                activation=activation,
                likelihood=Likelihood(likelihood, float(gaussian_variance),
                                      float(min_log_variance)))
