"""The evidence lower bound (ELBO), per example.

For one example x, with q(z|x; φ) from the encoder and p(x, z) = p(x|z; θ) p(z):

    L(x; φ, θ) = E_q[log p(x, z) − log q(z|x)]
               = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))
               = log p(x) − KL(q(z|x) ‖ p(z|x)),

so log p(x) − L is the KL from q to the true posterior: the gap of the bound.
The expectation is estimated with S reparameterised samples z_s = μ + σ ⊙ ε_s;
the KL to the prior N(0, I) is taken in closed form (`analytic_kl=True`) or as
the Monte-Carlo average of log q(z_s|x) − log p(z_s) over the same samples.

Units: nats per example, summed over pixels; higher is better. The ELBO
always samples z — decoding the mean μ gives a number that is not the ELBO.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from vae_jax import distributions
from vae_jax.model import VAEModel

__all__ = ["ElboParts", "elbo", "batch_elbo"]


class ElboParts(NamedTuple):
  """The ELBO and its two terms; scalars per example (`[B]` when batched).

  elbo = log_likelihood − kl.
  """

  elbo: chex.Array  # L, nats
  log_likelihood: chex.Array  # E_q[log p(x|z)], nats
  kl: chex.Array  # KL(q(z|x) ‖ p(z)), nats


def elbo(
    model: VAEModel,
    params: Any,
    x: chex.Array,
    rng: chex.PRNGKey,
    num_samples: int = 1,
    analytic_kl: bool = True,
) -> ElboParts:
  """ELBO of one example x `[data_dim]`, from `num_samples` draws of z ~ q(z|x).

  Args:
    model: the VAE's functions (see `vae_jax.model.VAEModel`).
    params: the pytree `model.encode`/`model.decode` read.
    x: one example, `[data_dim]`.
    rng: PRNG key for z ~ q(z|x).
    num_samples: S ≥ 1 samples of z; the terms are averaged over them.
    analytic_kl: KL(q ‖ N(0, I)) in closed form if True, else the
      Monte-Carlo estimate log q(z|x) − log p(z) on the same samples.

  Returns:
    `ElboParts` of scalars.
  """
  chex.assert_rank(x, 1)
  mean, logvar = model.encode(params, x)  # [D], [D]
  chex.assert_rank([mean, logvar], 1)
  z = distributions.sample_diagonal_gaussian(rng, mean, logvar, num_samples)
  outputs = model.decode(params, z)  # [S, data_dim]
  log_likelihood = jnp.mean(
      jax.vmap(model.log_likelihood, in_axes=(0, None))(outputs, x))
  if analytic_kl:
    kl = distributions.kl_to_standard_normal(mean, logvar)
  else:
    kl = jnp.mean(
        distributions.diagonal_gaussian_log_prob(z, mean, logvar)
        - distributions.standard_normal_log_prob(z))
  return ElboParts(elbo=log_likelihood - kl, log_likelihood=log_likelihood, kl=kl)


def batch_elbo(
    model: VAEModel,
    params: Any,
    x: chex.Array,
    rng: chex.PRNGKey,
    num_samples: int = 1,
    analytic_kl: bool = True,
) -> ElboParts:
  """`elbo` over a batch x `[B, data_dim]`, one independent key per example.

  Returns:
    `ElboParts` of `[B]` arrays.
  """
  chex.assert_rank(x, 2)
  rngs = jax.random.split(rng, x.shape[0])
  per_example = functools.partial(
      elbo, model, params, num_samples=num_samples, analytic_kl=analytic_kl)
  return jax.vmap(per_example)(x, rngs)
