"""A user's own prior, as `--config.prior=user_priors:learned_gaussian` names it.

p(z) = N(z; m, diag exp(ℓ)) with m and ℓ learned: the prior component the
registry asks for (init, log_prob, sample) and nothing else, in plain jnp.
The tests put this directory on PYTHONPATH.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from vae_jax.math import distributions


@dataclasses.dataclass(frozen=True)
class LearnedGaussian:
  latent_dim: int

  def init(self, rng):
    del rng
    return {
      "mean": jnp.zeros(self.latent_dim),
      "logvar": jnp.zeros(self.latent_dim),
    }

  def log_prob(self, prior_params, z):
    return distributions.diagonal_gaussian_log_prob(
      z, prior_params["mean"], prior_params["logvar"]
    )

  def sample(self, prior_params, rng, num):
    eps = jax.random.normal(rng, (num, self.latent_dim))
    return prior_params["mean"] + jnp.exp(0.5 * prior_params["logvar"]) * eps


def learned_gaussian(config, latent_dim):
  """The factory the registry calls: (config, the top layer's size)."""
  del config
  return LearnedGaussian(latent_dim)


def no_sample(config, latent_dim):
  """A prior without `sample`: refused, naming the missing method."""
  del config

  @dataclasses.dataclass(frozen=True)
  class _NoSample:
    size: int

    def init(self, rng):
      return None

    def log_prob(self, prior_params, z):
      return jnp.zeros(z.shape[:-1])

  return _NoSample(latent_dim)
