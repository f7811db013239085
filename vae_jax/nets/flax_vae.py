"""The model protocol's methods for a VAE made of two flax.linen modules.

A subclass (a frozen dataclass) gives `_encoder` and `_decoder` (modules),
`_encoder_input_shape` (one example as the encoder takes it), `latent_dim`
and a `likelihood` (`vae_jax.math.likelihoods.Likelihood`); the prior is
N(0, I). Parameters are `{"encoder": ..., "decoder": ...}`.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp

from vae_jax.math.model import StandardNormalPrior

__all__ = ["FlaxVAE"]


class FlaxVAE(StandardNormalPrior):
  """init/encode/decode/log_likelihood/mean_of_output through init/apply."""

  def init(self, rng: chex.PRNGKey) -> Any:
    enc_rng, dec_rng = jax.random.split(rng)
    return {
        "encoder": self._encoder.init(
            enc_rng, jnp.zeros((1, *self._encoder_input_shape)))["params"],
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
