"""A user's own model, as `--config.model=toy_models:linear_image_vae` names it.

A linear encoder and decoder on image-shaped examples `[H, W, C]`, written
with plain jnp (no flax): what the model protocol asks of a model, and
nothing else. The tests put this directory on PYTHONPATH.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vae_jax.math import distributions
from vae_jax.math.gaussian_vae import GaussianVAE


@dataclasses.dataclass(frozen=True)
class LinearImageVAE(GaussianVAE):
  event_shape: tuple = (28, 28, 1)
  latent_dim: int = 2

  def init_networks(self, rng):
    d = math.prod(self.event_shape)
    enc, dec = jax.random.split(rng)
    return {
      "encoder": {
        "w": 0.01 * jax.random.normal(enc, (d, 2 * self.latent_dim)),
        "b": jnp.zeros(2 * self.latent_dim),
      },
      "decoder": {
        "w": 0.01 * jax.random.normal(dec, (self.latent_dim, d)),
        "b": jnp.zeros(d),
      },
    }

  def encode(self, params, x):
    h = x.reshape(-1) @ params["encoder"]["w"] + params["encoder"]["b"]
    return h[: self.latent_dim], h[self.latent_dim :]

  def decode(self, params, z):
    logits = z @ params["decoder"]["w"] + params["decoder"]["b"]
    return logits.reshape(self.event_shape)

  def log_likelihood(self, decoder_output, x):
    return distributions.bernoulli_log_likelihood(decoder_output, x)

  def mean_of_output(self, decoder_output):
    return jax.nn.sigmoid(decoder_output)


def linear_image_vae(config, event_shape):
  """The factory the registry calls: (config, the data's example shape)."""
  return LinearImageVAE(
    event_shape=tuple(event_shape), latent_dim=config.latent_dim
  )


def not_a_model(config, event_shape):
  del config, event_shape
  return object()


@dataclasses.dataclass(frozen=True)
class DivergingVAE(LinearImageVAE):
  """LinearImageVAE plus a parameter `clock` that Adam moves by one learning
  rate per step, and a log-likelihood that turns NaN once the clock passes
  `nan_after`: a divergence at a step known in advance.

  The log-likelihood carries `+ clock`, so ∂loss/∂clock = −1 at every step,
  and Adam's update m̂/(√v̂ + ε) of a constant gradient is 1 (to float
  rounding, ~1e-6): after t steps clock = t·lr.
  """

  nan_after: float = 0.0

  def init_networks(self, rng):
    return dict(super().init_networks(rng), clock=jnp.zeros(()))

  def decode(self, params, z):
    return {"logits": super().decode(params, z), "clock": params["clock"]}

  def log_likelihood(self, decoder_output, x):
    clock = decoder_output["clock"]
    return (
      super().log_likelihood(decoder_output["logits"], x)
      + clock
      + jnp.where(clock > self.nan_after, jnp.nan, 0.0)
    )

  def mean_of_output(self, decoder_output):
    return super().mean_of_output(decoder_output["logits"])


DIVERGING_STEP = 21  # the first step whose loss is NaN


def diverging_vae(config, event_shape):
  """Step 21 (clock = 21 lr, past 20.5 lr) is the first non-finite one."""
  return DivergingVAE(
    event_shape=tuple(event_shape),
    latent_dim=config.latent_dim,
    nan_after=(DIVERGING_STEP - 0.5) * config.learning_rate,
  )


def diverging_vae_at_clock(config, event_shape):
  """The same model for every learning rate: NaN once clock > 20.5e-3, so
  step 21 is the first non-finite one at learning rate 1e-3, and a run at
  1e-4 stays finite for 200 steps."""
  return DivergingVAE(
    event_shape=tuple(event_shape),
    latent_dim=config.latent_dim,
    nan_after=(DIVERGING_STEP - 0.5) * 1e-3,
  )
