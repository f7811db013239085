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
from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from vae_jax import names
from vae_jax.math import distributions
from vae_jax.names import LIKELIHOODS

__all__ = [
  "LIKELIHOODS",
  "Likelihood",
  "Family",
  "DEFAULT_MIN_LOG_VARIANCE",
  "BERNOULLI",
  "GAUSSIAN",
  "GAUSSIAN_LEARNED_VARIANCE",
  "CONTINUOUS_BERNOULLI",
]

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
      raise ValueError(
        f"unknown likelihood {self.name!r}; choose one of {list(LIKELIHOODS)}"
      )

  @property
  def family(self) -> "Family":
    return names.implementation(LIKELIHOODS, self.name)

  @property
  def outputs_per_value(self) -> int:
    """Decoder outputs per value of x: 2 for (mean, log-variance), else 1."""
    return self.family.outputs_per_value

  def log_prob(self, decoder_output: chex.Array, x: chex.Array) -> chex.Array:
    """log p(x|z), a scalar summed over every axis of x."""
    return self.family.log_prob(self, decoder_output, x)

  def mean(self, decoder_output: chex.Array) -> chex.Array:
    """E[x|z], the shape of x: probabilities, the CB's mean, or the mean."""
    return self.family.mean(self, decoder_output)


class Family(NamedTuple):
  """One observation model, registered by name in `names.LIKELIHOODS`."""

  outputs_per_value: int  # decoder outputs per value of x
  # (likelihood, decoder output, x) → log p(x|z), summed over x's axes.
  log_prob: Callable[[Likelihood, Any, Any], Any]
  # (likelihood, decoder output) → E[x|z].
  mean: Callable[[Likelihood, Any], Any]


def _mean_and_logvar(
  likelihood: Likelihood, decoder_output
) -> tuple[chex.Array, chex.Array]:
  mean, raw = jnp.split(decoder_output, 2, axis=-1)
  # A soft floor: ≥ the floor everywhere, ≈ raw well above it, and its
  # gradient never vanishes the way max(floor, raw)'s does below the floor.
  floor = likelihood.min_log_variance
  return mean, floor + jax.nn.softplus(raw - floor)


BERNOULLI = Family(
  1,
  lambda _, output, x: distributions.bernoulli_log_likelihood(output, x),
  lambda _, output: jax.nn.sigmoid(output),
)
CONTINUOUS_BERNOULLI = Family(
  1,
  lambda _, output, x: distributions.continuous_bernoulli_log_likelihood(
    output, x
  ),
  lambda _, output: distributions.continuous_bernoulli_mean(output),
)
GAUSSIAN = Family(
  1,
  lambda lik, output, x: distributions.gaussian_log_likelihood(
    output, x, lik.gaussian_variance
  ),
  lambda _, output: output,
)
GAUSSIAN_LEARNED_VARIANCE = Family(
  2,
  lambda lik, output, x: distributions.gaussian_learned_variance_log_likelihood(
    *_mean_and_logvar(lik, output), x
  ),
  lambda lik, output: _mean_and_logvar(lik, output)[0],
)
