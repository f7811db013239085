"""Priors p(z) as components: `init`, `log_prob` and `sample`.

A prior is a frozen dataclass of its sizes (hashable, so a model holding one
stays a static argument of `jit`) with three pure functions:

    init(rng) → prior_params          (None: nothing to learn)
    log_prob(prior_params, z) → log p(z), over z's last axis `[..., D]`
    sample(prior_params, rng, num) → `[num, D]`

and facts the objectives use, each optional: `standard_normal` (the
closed-form KL applies; absent: False), `factorised` (log p(z) is a sum over
dimensions) and `learned` (False: nothing to initialise; absent: True). A learned prior's parameters are
trained with the rest, under params["prior"].

The richer form, for a prior built on the encoder (the VampPrior): with
`uses_encoder = True` (absent: False), `log_prob` and `sample` take a last argument
`encode(u) → (mean, logvar)`, the encoder applied to a batch of inputs
`[M, *event_shape]`, so the prior's gradient reaches the encoder too.

    standard_normal   N(0, I)
    mog               1/C Σ_c-weighted N(z; m_c, diag s_c²), learned means,
                      variances and weights
    vamp              the VampPrior (Tomczak & Welling 2018),
                      p(z) = 1/K Σ_k q(z|u_k), over K learned pseudo-inputs u_k
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Tuple

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import distributions

__all__ = [
  "StandardNormal",
  "MixtureOfGaussians",
  "VampPrior",
  "mixture_log_prob",
  "pseudo_inputs",
  "with_prior_params",
]

Encode = Callable[[chex.Array], Tuple[chex.Array, chex.Array]]

# The VampPrior's pseudo-inputs start as N(0.05, 0.01²) before the
# hardtanh into [0, 1]: inside the clip, where it passes gradients (the
# reference code's default mean is −0.05, the flat side of the clip).
_PSEUDO_INPUT_MEAN = 0.05
_PSEUDO_INPUT_STD = 0.01
_LOG_2PI = math.log(2 * math.pi)


@dataclasses.dataclass(frozen=True)
class StandardNormal:
  """p(z) = N(0, I_D): nothing to learn."""

  latent_dim: int
  standard_normal = True
  factorised = True
  uses_encoder = False
  learned = False

  def init(self, rng: chex.PRNGKey) -> Any:
    del rng
    return None

  def log_prob(self, prior_params: Any, z: chex.Array) -> chex.Array:
    del prior_params
    return distributions.standard_normal_log_prob(z)

  def sample(
    self, prior_params: Any, rng: chex.PRNGKey, num: int
  ) -> chex.Array:
    del prior_params
    return jax.random.normal(rng, (num, self.latent_dim))


def with_prior_params(networks: dict, prior, rng: chex.PRNGKey) -> dict:
  """`networks` and, for a learned prior, its parameters from fold_in(rng, 1)
  under "prior" (so the networks start as they would with N(0, I))."""
  params = dict(networks)
  if getattr(prior, "learned", True):
    prior_params = prior.init(jax.random.fold_in(rng, 1))
    if prior_params is not None:
      params["prior"] = prior_params
  return params


def mixture_log_prob(
  z: chex.Array, means: chex.Array, logvars: chex.Array, log_weights: chex.Array
) -> chex.Array:
  """log Σ_c w_c N(z; m_c, diag exp(ℓ_c)) over z's last axis, `[...]`.

  means, logvars `[C, D]`, log_weights `[C]` normalised (logsumexp 0).

  The quadratic form is expanded into matmuls,

      Σ_d (z_d − m_cd)² e^{−ℓ_cd} = z² · e^{−ℓ_c} − 2 z · (m_c e^{−ℓ_c})
                                    + Σ_d m_cd² e^{−ℓ_cd},

  so that N draws against C components are two `[N, D] × [D, C]` products
  instead of an `[N, C, D]` elementwise array. XLA fuses the random draws
  that make z into that array and recomputes them for every component, and
  reduces its gradient over N slowly: with the VampPrior's C = 500 the
  direct form takes most of a training step. The expansion costs
  cancellation where z is near m_c and e^{−ℓ} is large: an absolute error
  of about D · ε · (z² + 2|z m| + m²) e^{−ℓ} (tests/test_priors.py derives
  its tolerance from that), clamped so the form never goes below 0.
  """
  d = means.shape[-1]
  precision = jnp.exp(-logvars)  # [C, D]
  flat = z.reshape(-1, d)
  highest = jax.lax.Precision.HIGHEST  # no TF32/bf16 passes on GPUs
  quadratic = (
    jnp.dot(jnp.square(flat), precision.T, precision=highest)
    - 2.0 * jnp.dot(flat, (means * precision).T, precision=highest)
    + jnp.sum(jnp.square(means) * precision, axis=-1)
  )  # [N, C]
  per_component = -0.5 * (
    d * _LOG_2PI + jnp.sum(logvars, axis=-1) + jnp.maximum(quadratic, 0.0)
  )
  log_p = jax.nn.logsumexp(per_component + log_weights, axis=-1)
  return log_p.reshape(z.shape[:-1])


def _sample_mixture(rng, means, logvars, log_weights, num):
  which_rng, noise_rng = jax.random.split(rng)
  which = jax.random.categorical(which_rng, log_weights, shape=(num,))
  eps = jax.random.normal(noise_rng, (num, means.shape[-1]))
  return means[which] + jnp.exp(0.5 * logvars[which]) * eps


@dataclasses.dataclass(frozen=True)
class MixtureOfGaussians:
  """A learned mixture of C diagonal Gaussians (means from N(0, I))."""

  latent_dim: int
  num_components: int = 10
  standard_normal = False
  factorised = False
  uses_encoder = False

  def init(self, rng: chex.PRNGKey) -> Any:
    shape = (self.num_components, self.latent_dim)
    return {
      "means": jax.random.normal(rng, shape),
      "logvars": jnp.zeros(shape),
      "logits": jnp.zeros(self.num_components),
    }

  def log_prob(self, prior_params: Any, z: chex.Array) -> chex.Array:
    return mixture_log_prob(
      z,
      prior_params["means"],
      prior_params["logvars"],
      jax.nn.log_softmax(prior_params["logits"]),
    )

  def sample(
    self, prior_params: Any, rng: chex.PRNGKey, num: int
  ) -> chex.Array:
    return _sample_mixture(
      rng,
      prior_params["means"],
      prior_params["logvars"],
      jax.nn.log_softmax(prior_params["logits"]),
      num,
    )


def pseudo_inputs(prior_params: Any) -> chex.Array:
  """The VampPrior's u_k = hardtanh(W e_k) ∈ [0, 1], `[K, *event_shape]`.

  W e_k for the identity input e_k is the k-th row of the weight, so the
  authors' linear layer from an identity input is the weight itself.
  """
  return jnp.clip(prior_params["pseudo_inputs"], 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class VampPrior:
  """p(z) = 1/K Σ_k q(z|u_k): the encoder's posteriors of K pseudo-inputs."""

  latent_dim: int
  event_shape: Tuple[int, ...]
  num_pseudo_inputs: int = 500
  standard_normal = False
  factorised = False
  uses_encoder = True

  def init(self, rng: chex.PRNGKey) -> Any:
    shape = (self.num_pseudo_inputs, *self.event_shape)
    return {
      "pseudo_inputs": _PSEUDO_INPUT_MEAN
      + _PSEUDO_INPUT_STD * jax.random.normal(rng, shape)
    }

  def _components(
    self, prior_params, encode: Encode
  ) -> Tuple[chex.Array, chex.Array, chex.Array]:
    means, logvars = encode(pseudo_inputs(prior_params))  # [K, D] each
    chex.assert_shape(
      [means, logvars], (self.num_pseudo_inputs, self.latent_dim)
    )
    log_weights = jnp.full(
      (self.num_pseudo_inputs,), -math.log(self.num_pseudo_inputs)
    )
    return means, logvars, log_weights

  def log_prob(
    self, prior_params: Any, z: chex.Array, encode: Encode
  ) -> chex.Array:
    return mixture_log_prob(z, *self._components(prior_params, encode))

  def sample(
    self, prior_params: Any, rng: chex.PRNGKey, num: int, encode: Encode
  ) -> chex.Array:
    return _sample_mixture(rng, *self._components(prior_params, encode), num)
