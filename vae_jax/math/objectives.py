"""The ELBO, the IWAE bound and the importance-sampled log p(x), per example.

For one example x, with q(z|x; φ) from the encoder and p(x, z) = p(x|z; θ) p(z):

    L(x; φ, θ) = E_q[log p(x, z) − log q(z|x)]
               = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))
               = log p(x) − KL(q(z|x) ‖ p(z|x)),

so log p(x) − L is the KL from q to the true posterior: the gap of the bound.

Everything here is built on one core, the log importance weights of K
reparameterised draws z_k ~ q(z|x) (`sample_posterior`, any number of
latent layers):

    log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x)          (`log_weights`)

    ELBO (Monte-Carlo KL)     1/K Σ_k log w_k
    IWAE bound L_K            log 1/K Σ_k w_k                     (Burda et al.)
    log p̂_K(x)                L_K with large K: the importance-sampled estimate

Jensen gives ELBO ≤ E[L_K] ≤ E[L_K'] ≤ log p(x) for K ≤ K', and L_K → log p(x)
as K → ∞. The ELBO with the KL in closed form (`analytic_kl=True`, where the
model has one) is the same bound with lower variance, beside the core.

The training objectives of `vae_jax.step` take all they need from one pass
over the K draws, `example_terms`: the plain ELBO's parts, the KL of each
latent dimension (for free bits) and the β-weighted IWAE bound.

Draw k of an example depends on fold_in(rng, k) alone, so the same key gives
the same z_k whatever K or however the K draws are chunked:
the ELBO with K = 1 and the IWAE bound with K = 1 are the same number, and
the chunked estimator equals the unchunked one.

Units: nats per example, summed over pixels; higher is better. The ELBO
always samples z — decoding the mean μ gives a number that is not the ELBO.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import threefry
from vae_jax.math.model import VAEModel

__all__ = [
  "ElboParts",
  "ExampleTerms",
  "log_weights",
  "elbo",
  "example_terms",
  "iwae_bound",
  "importance_sampled_log_px",
  "batch_elbo",
  "per_example",
  "closed_form_kl",
  "chunked_log_mean_exp",
  "uses_closed_form_kl",
]


class ElboParts(NamedTuple):
  """The ELBO and its two terms; scalars per example (`[B]` when batched).

  elbo = log_likelihood − kl.
  """

  elbo: chex.Array  # L, nats
  log_likelihood: chex.Array  # E_q[log p(x|z)], nats
  kl: chex.Array  # KL(q(z|x) ‖ p(z)), nats


class ExampleTerms(NamedTuple):
  """What the training objectives take from one example's K draws.

  `parts` is the plain (β = 1) ELBO, what every report shows; `kl_per_dim`
  ({layer: [D]}) sums to `parts.kl` with the closed-form KL (up to
  rounding); `iwae` uses β-weighted log weights.
  """

  parts: ElboParts  # scalars
  kl_per_dim: Optional[dict]  # {layer: [D]} nats; None without a closed form
  iwae: chex.Array  # log 1/K Σ_k w_k(β), a scalar


def _weights(log_likelihood, log_prior, log_q, kl_weight):
  return log_likelihood + kl_weight * (log_prior - log_q)


def log_weights(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 1,
  kl_weight: chex.Numeric = 1.0,
) -> chex.Array:
  """log w_k = log p(x|z_k) + β [log p(z_k) − log q(z_k|x)], z_k ~ q(z|x).

  Args:
    model: the VAE (see `vae_jax.math.model.VAEModel`).
    params: its parameters.
    x: one example, `[*model.event_shape]`.
    rng: the example's key; draw k uses fold_in(rng, k).
    num_samples: K ≥ 1.
    kl_weight: β; 1 gives the true log weights (β ≠ 1 is for training
      losses such as β-VAE and KL warm-up).

  Returns:
    `[K]` log weights, nats.
  """
  z, log_q = model.sample_posterior(params, x, rng, num_samples)
  log_likelihood, log_prior = model.log_joint(params, x, z)
  return _weights(log_likelihood, log_prior, log_q, kl_weight)


def elbo(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 1,
  analytic_kl: bool = True,
) -> ElboParts:
  """The ELBO of one example from `num_samples` draws z_k ~ q(z|x).

  With `analytic_kl=False`, or for a model without a closed-form KL, the
  ELBO is the mean of `log_weights` (the same draws); with `analytic_kl=True`
  the KL is the model's closed form, for one Gaussian layer against N(0, I)
      KL = ½ Σ_d [μ_d² + σ_d² − 1 − log σ_d²],
  and only E_q[log p(x|z)] is estimated.

  Returns:
    `ElboParts` of scalars.
  """
  return example_terms(model, params, x, rng, num_samples, analytic_kl).parts


def _sample(model, params, x, rng, num_samples, analytic_kl):
  """(z, log q, the closed-form KL per layer and dimension or None)."""
  if analytic_kl and hasattr(model, "sample_posterior_with_kl"):
    return model.sample_posterior_with_kl(params, x, rng, num_samples)
  z, log_q = model.sample_posterior(params, x, rng, num_samples)
  kl = (
    model.analytic_kl(params, x)
    if (analytic_kl and hasattr(model, "analytic_kl"))
    else None
  )
  return z, log_q, kl


def closed_form_kl(
  model: VAEModel, params: Any, x: chex.Array, rng: chex.PRNGKey
) -> Optional[dict]:
  """{layer: [D]} the model's closed-form KL of one example, or None.

  A conditional layer's is given one posterior draw of its parents.
  """
  return _sample(model, params, x, rng, 1, True)[2]


def uses_closed_form_kl(model: VAEModel, params: Any, x: chex.Array) -> bool:
  """Whether `analytic_kl=True` gives the closed form (else Monte Carlo)."""
  out = jax.eval_shape(
    lambda p, x_: closed_form_kl(model, p, x_, jax.random.key(0)), params, x
  )
  return out is not None


def example_terms(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 1,
  analytic_kl: bool = True,
  kl_weight: chex.Numeric = 1.0,
) -> ExampleTerms:
  """The plain ELBO, its KL per layer and dimension and L_K(β), from K draws.

  `analytic_kl=True` takes the model's closed-form KL where it has one
  (`sample_posterior_with_kl`, or `analytic_kl`), and the Monte-Carlo KL
  1/K Σ_k [log q(z_k|x) − log p(z_k)] otherwise. The KL per dimension (for
  free bits, which floor it) is the closed form's, else None. Under `jit`,
  what a caller leaves unused is not computed.
  """
  z, log_q, kl_per_dim = _sample(
    model, params, x, rng, num_samples, analytic_kl
  )
  log_likelihood, log_prior = model.log_joint(params, x, z)
  if kl_per_dim is not None:
    kl = sum(jnp.sum(v) for v in kl_per_dim.values())
  else:
    kl = jnp.mean(log_q - log_prior)
  iwae = jax.nn.logsumexp(
    _weights(log_likelihood, log_prior, log_q, kl_weight)
  ) - math.log(num_samples)
  log_likelihood = jnp.mean(log_likelihood)
  parts = ElboParts(
    elbo=log_likelihood - kl, log_likelihood=log_likelihood, kl=kl
  )
  return ExampleTerms(parts=parts, kl_per_dim=kl_per_dim, iwae=iwae)


def iwae_bound(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 1,
  kl_weight: chex.Numeric = 1.0,
) -> chex.Array:
  """L_K = log 1/K Σ_k w_k (Burda et al. 2015), a scalar; K = 1 is the ELBO."""
  weights = log_weights(model, params, x, rng, num_samples, kl_weight)
  return jax.nn.logsumexp(weights) - math.log(num_samples)


def importance_sampled_log_px(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 5000,
  chunk_size: int = 500,
) -> chex.Array:
  """log p̂_K(x) = log 1/K Σ_k p(x, z_k) / q(z_k|x), K = `num_samples`, a scalar.

  The K draws are made `chunk_size` at a time inside a `lax.scan` that keeps
  a running logsumexp, so memory is bounded by the chunk, not by K; draw k
  is the same whatever the chunk size (`sample_posterior`'s `first`), so
  the result equals `iwae_bound` with the same K up to float rounding.
  """

  def weights(first, size):
    z, log_q = model.sample_posterior(params, x, rng, size, first=first)
    log_likelihood, log_prior = model.log_joint(params, x, z)
    return log_likelihood + log_prior - log_q

  return chunked_log_mean_exp(weights, num_samples, chunk_size)


def chunked_log_mean_exp(
  weights_fn, num_samples: int, chunk_size: int = 500
) -> chex.Array:
  """log 1/K Σ_k exp(w_k), K = `num_samples`, a chunk of draws at a time.

  `weights_fn(first, size)` returns the log weights `[size]` of draws
  first, …, first + size − 1. A `lax.scan` over the chunks keeps a running
  maximum and sum, so memory is bounded by one chunk; the last chunk's
  draws past K weigh nothing.
  """
  chunk_size = min(chunk_size, num_samples)
  num_chunks = -(-num_samples // chunk_size)
  offsets = jnp.arange(chunk_size)

  def body(carry, c):
    running_max, running_sum = carry
    w = jnp.where(
      c * chunk_size + offsets < num_samples,
      weights_fn(c * chunk_size, chunk_size),
      -jnp.inf,
    )
    new_max = jnp.maximum(running_max, jnp.max(w))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
      jnp.exp(w - new_max)
    )
    return (new_max, running_sum), None

  init = (jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(0.0, jnp.float32))
  (running_max, running_sum), _ = jax.lax.scan(
    body, init, jnp.arange(num_chunks)
  )
  return running_max + jnp.log(running_sum) - math.log(num_samples)


def per_example(
  fn, model: VAEModel, params: Any, x: chex.Array, rng: chex.PRNGKey, **kwargs
):
  """`fn(model, params, x_n, fold_in(rng, n), **kwargs)` over a batch x `[B, ...]`.

  Example n's key is fold_in(rng, n), so an example's result does not depend
  on the batch it is in, only on its index.
  """
  chex.assert_shape(x, (None, *model.event_shape))
  keys = threefry.fold_in(rng, jnp.arange(x.shape[0]))
  one = functools.partial(fn, model, params, **kwargs)
  return jax.vmap(one)(x, keys)


def batch_elbo(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 1,
  analytic_kl: bool = True,
) -> ElboParts:
  """`elbo` over a batch x `[B, ...]`: `ElboParts` of `[B]` arrays."""
  return per_example(
    elbo,
    model,
    params,
    x,
    rng,
    num_samples=num_samples,
    analytic_kl=analytic_kl,
  )
