"""Observation models p(x|z; θ) by name, as records that compare by value.

A `Likelihood` turns the decoder's output into log p(x|z) of one example and
into E[x|z] for figures. It is a frozen dataclass, so a model holding one
stays hashable and equal models share compiled programs.
"""

from __future__ import annotations

import dataclasses

import chex
import jax

from vae_jax.math import distributions
from vae_jax.names import LIKELIHOODS

__all__ = ["LIKELIHOODS", "Likelihood"]

# bernoulli: binary x, decoder output = logits ℓ, E[x|z] = sigmoid(ℓ).
# gaussian: x in R, decoder output = the mean, fixed variance.


@dataclasses.dataclass(frozen=True)
class Likelihood:
  """p(x|z; θ) of the decoder's output; `name` is one of LIKELIHOODS."""

  name: str = "bernoulli"
  gaussian_variance: float = 1.0

  def __post_init__(self):
    if self.name not in LIKELIHOODS:
      raise ValueError(f"unknown likelihood {self.name!r}; choose one of "
                       f"{list(LIKELIHOODS)}")

  def log_prob(self, decoder_output: chex.Array, x: chex.Array) -> chex.Array:
    """log p(x|z), a scalar summed over every axis of x."""
    if self.name == "bernoulli":
      return distributions.bernoulli_log_likelihood(decoder_output, x)
    return distributions.gaussian_log_likelihood(decoder_output, x,
                                                 self.gaussian_variance)

  def mean(self, decoder_output: chex.Array) -> chex.Array:
    """E[x|z]: probabilities for a Bernoulli, the mean for a Gaussian."""
    if self.name == "bernoulli":
      return jax.nn.sigmoid(decoder_output)
    return decoder_output
