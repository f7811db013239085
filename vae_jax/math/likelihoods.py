"""Observation models p(x|z; θ) by name, as records that compare by value.

A `Likelihood` turns the decoder's output into log p(x|z) of one example and
into E[x|z] for figures. It is a frozen dataclass, so a model holding one
stays hashable and equal models share compiled programs.

    bernoulli                   binary x; output = logits ℓ, E[x|z] = sigmoid(ℓ)
    gaussian                    x in R; output = the mean, fixed variance
    gaussian_learned_variance   x in R; output = (mean, raw log-variance) per
                                pixel, the log-variance floored softly at
                                `min_log_variance`
    continuous_bernoulli        x in [0, 1]; output = logits ℓ of λ,
                                E[x|z] = the CB's mean (not λ)

A decoder emits `outputs_per_value` numbers per value of x, stacked along
the last axis of x (the channels of an image, the pixels of a flat example):
output `[..., k·C]` for x `[..., C]`. Two-output likelihoods split it in
halves, so the same decoder code serves flat and image-shaped examples.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import distributions
from vae_jax.names import LIKELIHOODS

__all__ = ["LIKELIHOODS", "Likelihood", "DEFAULT_MIN_LOG_VARIANCE"]

# log 1e-3: a standard deviation of 0.03 on [0, 1] pixels. Fashion-MNIST has
# pixels that are exactly 0 in every image of a class; without a floor the
# learned variance there goes to 0 and the log-likelihood to +∞.
DEFAULT_MIN_LOG_VARIANCE = math.log(1e-3)


@dataclasses.dataclass(frozen=True)
class Likelihood:
  """p(x|z; θ) of the decoder's output; `name` is one of LIKELIHOODS."""

  name: str = "bernoulli"
  gaussian_variance: float = 1.0  # gaussian only
  min_log_variance: float = DEFAULT_MIN_LOG_VARIANCE  # learned variance only

  def __post_init__(self):
    if self.name not in LIKELIHOODS:
      raise ValueError(f"unknown likelihood {self.name!r}; choose one of "
                       f"{list(LIKELIHOODS)}")

  @property
  def outputs_per_value(self) -> int:
    """Decoder outputs per value of x: 2 for (mean, log-variance), else 1."""
    return 2 if self.name == "gaussian_learned_variance" else 1

  def _mean_and_logvar(self, decoder_output):
    mean, raw = jnp.split(decoder_output, 2, axis=-1)
    # A soft floor: ≥ the floor everywhere, ≈ raw well above it, and its
    # gradient never vanishes the way max(floor, raw)'s does below the floor.
    floor = self.min_log_variance
    return mean, floor + jax.nn.softplus(raw - floor)

  def log_prob(self, decoder_output: chex.Array, x: chex.Array) -> chex.Array:
    """log p(x|z), a scalar summed over every axis of x."""
    if self.name == "bernoulli":
      return distributions.bernoulli_log_likelihood(decoder_output, x)
    if self.name == "continuous_bernoulli":
      return distributions.continuous_bernoulli_log_likelihood(decoder_output,
                                                               x)
    if self.name == "gaussian_learned_variance":
      mean, logvar = self._mean_and_logvar(decoder_output)
      return distributions.gaussian_learned_variance_log_likelihood(
          mean, logvar, x)
    return distributions.gaussian_log_likelihood(decoder_output, x,
                                                 self.gaussian_variance)

  def mean(self, decoder_output: chex.Array) -> chex.Array:
    """E[x|z], the shape of x: probabilities, the CB's mean, or the mean."""
    if self.name == "bernoulli":
      return jax.nn.sigmoid(decoder_output)
    if self.name == "continuous_bernoulli":
      return distributions.continuous_bernoulli_mean(decoder_output)
    if self.name == "gaussian_learned_variance":
      return self._mean_and_logvar(decoder_output)[0]
    return decoder_output
