"""The ELBO, the IWAE bound and the importance-sampled log p(x), per example.

For one example x, with q(z|x; φ) from the encoder and p(x, z) = p(x|z; θ) p(z):

    L(x; φ, θ) = E_q[log p(x, z) − log q(z|x)]
               = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))
               = log p(x) − KL(q(z|x) ‖ p(z|x)),

so log p(x) − L is the KL from q to the true posterior: the gap of the bound.

Everything here is built on one core, the log importance weights of K draws
z_k ~ q(z|x), z_k = μ + σ ⊙ ε_k:

    log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x)          (`log_weights`)

    ELBO (Monte-Carlo KL)     1/K Σ_k log w_k
    IWAE bound L_K            log 1/K Σ_k w_k                     (Burda et al.)
    log p̂_K(x)                L_K with large K: the importance-sampled estimate

Jensen gives ELBO ≤ E[L_K] ≤ E[L_K'] ≤ log p(x) for K ≤ K', and L_K → log p(x)
as K → ∞. The ELBO with the KL in closed form (`analytic_kl=True`, prior
N(0, I)) is the same bound with lower variance, beside the core.

The training objectives of `vae_jax.step` take all they need from one pass
over the K draws, `example_terms`: the plain ELBO's parts, the KL of each
latent dimension (for free bits) and the β-weighted IWAE bound.

Sample k of an example uses the noise ε_k = normal(fold_in(rng, k)), so the
same key gives the same z_k whatever K or however the K draws are chunked:
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

from vae_jax.math import distributions
from vae_jax.math import threefry
from vae_jax.math.model import VAEModel

__all__ = ["ElboParts", "ExampleTerms", "posterior_samples", "log_weights",
           "elbo", "example_terms", "iwae_bound", "importance_sampled_log_px",
           "batch_elbo", "per_example"]


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
  sums to `parts.kl` (up to rounding); `iwae` uses β-weighted log weights.
  """

  parts: ElboParts  # scalars
  kl_per_dim: Optional[chex.Array]  # [D] nats; None unless p(z) = N(0, I)
  iwae: chex.Array  # log 1/K Σ_k w_k(β), a scalar


def _noise(rng: chex.PRNGKey, indices: chex.Array, latent_dim: int) -> chex.Array:
  """ε_k ~ N(0, I) `[len(indices), latent_dim]`, ε_k from fold_in(rng, k)."""
  return threefry.normal_from_bits(_noise_bits(rng, indices, latent_dim))


def _noise_bits(rng: chex.PRNGKey, indices: chex.Array,
                latent_dim: int) -> chex.Array:
  """The uint32 bits of `_noise`'s ε_k: threefry.bits(fold_in(rng, k), (D,))."""
  # threefry's bits/fold_in: jax.random's numbers, fused into the caller's
  # loop instead of one XLA while loop per draw (see vae_jax.math.threefry).
  return jax.vmap(lambda k: threefry.bits(threefry.fold_in(rng, k),
                                          (latent_dim,)))(indices)


def posterior_samples(rng: chex.PRNGKey, mean: chex.Array, logvar: chex.Array,
                      num_samples: int) -> chex.Array:
  """z_k = μ + σ ⊙ ε_k, ε_k from fold_in(rng, k): the draws of every bound here.

  Returns:
    `[num_samples, D]`; row k is the same whatever `num_samples`.
  """
  eps = _noise(rng, jnp.arange(num_samples), mean.shape[-1])
  return mean + jnp.exp(0.5 * logvar) * eps


def _terms(model: VAEModel, params: Any, x: chex.Array, mean: chex.Array,
           logvar: chex.Array, eps: chex.Array
           ) -> tuple[chex.Array, chex.Array, chex.Array]:
  """(log p(x|z_k), log p(z_k), log q(z_k|x)), each `[K]`, for z = μ + σ ε."""
  z = mean + jnp.exp(0.5 * logvar) * eps  # [K, D]
  if eps.shape[0] == 1:
    # The same numbers without a K axis of size 1: vmapped over a batch, a
    # [B, 1, ...] decoder makes XLA transpose activations for the weight
    # gradients (measured: the default train step 12% faster without it).
    log_likelihood = model.log_likelihood(model.decode(params, z[0]), x)[None]
  else:
    outputs = jax.vmap(model.decode, in_axes=(None, 0))(params, z)
    log_likelihood = jax.vmap(model.log_likelihood, in_axes=(0, None))(outputs,
                                                                      x)
  log_q = distributions.diagonal_gaussian_log_prob(z, mean, logvar)
  return log_likelihood, model.log_prior(z), log_q


def _encode(model: VAEModel, params: Any, x: chex.Array):
  chex.assert_shape(x, tuple(model.event_shape))
  mean, logvar = model.encode(params, x)
  chex.assert_shape([mean, logvar], (model.latent_dim,))
  return mean, logvar


def log_weights(model: VAEModel, params: Any, x: chex.Array, rng: chex.PRNGKey,
                num_samples: int = 1, kl_weight: chex.Numeric = 1.0
                ) -> chex.Array:
  """log w_k = log p(x|z_k) + β [log p(z_k) − log q(z_k|x)], z_k ~ q(z|x).

  Args:
    model: the VAE (see `vae_jax.math.model.VAEModel`).
    params: its parameters.
    x: one example, `[*model.event_shape]`.
    rng: the example's key; sample k uses fold_in(rng, k).
    num_samples: K ≥ 1.
    kl_weight: β; 1 gives the true log weights (β ≠ 1 is for training
      losses such as β-VAE and KL warm-up).

  Returns:
    `[K]` log weights, nats.
  """
  mean, logvar = _encode(model, params, x)
  eps = _noise(rng, jnp.arange(num_samples), model.latent_dim)
  return _weights(*_terms(model, params, x, mean, logvar, eps), kl_weight)


def _weights(log_likelihood, log_prior, log_q, kl_weight):
  return log_likelihood + kl_weight * (log_prior - log_q)


def elbo(model: VAEModel, params: Any, x: chex.Array, rng: chex.PRNGKey,
         num_samples: int = 1, analytic_kl: bool = True) -> ElboParts:
  """The ELBO of one example from `num_samples` draws z_k ~ q(z|x).

  With `analytic_kl=False` the ELBO is the mean of `log_weights` (the same
  draws); with `analytic_kl=True` the KL to p(z) = N(0, I) is in closed form,
      KL = ½ Σ_d [μ_d² + σ_d² − 1 − log σ_d²],
  and only E_q[log p(x|z)] is estimated.

  Returns:
    `ElboParts` of scalars.
  """
  return example_terms(model, params, x, rng, num_samples, analytic_kl).parts


def example_terms(model: VAEModel, params: Any, x: chex.Array,
                  rng: chex.PRNGKey, num_samples: int = 1,
                  analytic_kl: bool = True, kl_weight: chex.Numeric = 1.0
                  ) -> ExampleTerms:
  """The plain ELBO, its KL per dimension and L_K(β), from the same K draws.

  The KL per dimension d (for free bits, which floor it) is
      analytic:     ½ [μ_d² + σ_d² − 1 − log σ_d²]
      Monte Carlo:  1/K Σ_k [log q(z_kd|x) − log p(z_kd)]
                    = 1/K Σ_k ½ [z_kd² − ε_kd² − log σ_d²],
  both only for the factorised prior N(0, I) (`StandardNormalPrior`); for
  another prior it is None. Under `jit`, what a caller leaves unused is
  not computed.
  """
  mean, logvar = _encode(model, params, x)
  eps = _noise(rng, jnp.arange(num_samples), model.latent_dim)
  log_likelihood, log_prior, log_q = _terms(model, params, x, mean, logvar, eps)
  standard_normal = getattr(model, "standard_normal_prior", False)
  if analytic_kl:
    if not standard_normal:
      raise ValueError("analytic_kl=True needs the prior N(0, I) "
                       "(StandardNormalPrior); use analytic_kl=False")
    kl = distributions.kl_to_standard_normal(mean, logvar)
    kl_per_dim = 0.5 * (jnp.square(mean) + jnp.expm1(logvar) - logvar)
  else:
    kl = jnp.mean(log_q - log_prior)
    z = mean + jnp.exp(0.5 * logvar) * eps  # [K, D], the draws of _terms
    kl_per_dim = (0.5 * jnp.mean(jnp.square(z) - jnp.square(eps), axis=0)
                  - 0.5 * logvar) if standard_normal else None
  iwae = (jax.nn.logsumexp(_weights(log_likelihood, log_prior, log_q,
                                    kl_weight)) - math.log(num_samples))
  log_likelihood = jnp.mean(log_likelihood)
  parts = ElboParts(elbo=log_likelihood - kl, log_likelihood=log_likelihood,
                    kl=kl)
  return ExampleTerms(parts=parts, kl_per_dim=kl_per_dim, iwae=iwae)


def iwae_bound(model: VAEModel, params: Any, x: chex.Array, rng: chex.PRNGKey,
               num_samples: int = 1, kl_weight: chex.Numeric = 1.0
               ) -> chex.Array:
  """L_K = log 1/K Σ_k w_k (Burda et al. 2015), a scalar; K = 1 is the ELBO."""
  weights = log_weights(model, params, x, rng, num_samples, kl_weight)
  return jax.nn.logsumexp(weights) - math.log(num_samples)


def importance_sampled_log_px(model: VAEModel, params: Any, x: chex.Array,
                              rng: chex.PRNGKey, num_samples: int = 5000,
                              chunk_size: int = 500) -> chex.Array:
  """log p̂_K(x) = log 1/K Σ_k p(x, z_k) / q(z_k|x), K = `num_samples`, a scalar.

  The K draws are made `chunk_size` at a time inside a `lax.scan` that keeps
  a running logsumexp, so memory is bounded by the chunk, not by K; sample k
  is the same draw whatever the chunk size, so the result equals
  `iwae_bound` with the same K up to float rounding.

  Each step hashes the random bits of the *next* chunk and carries them:
  a loop's carry is a buffer, so the 20 threefry rounds run once per
  drawn sample, one chunk more than K needs (the last step's draw is
  unused). Drawn inside the step that uses them, they were fused into each
  of the noise's consumers and hashed five times (measured with
  benchmarks/op_profile.py, default model, K = 1000: the ops on the
  noise's `[500, 20]` arrays from about 360 to 190 µs of wall time per
  image, 7.8% → 4.7% of the estimator's; 2-core Intel Xeon). The
  estimates did not change: bitwise equal to drawing in place on that
  machine (K = 1, 7 and 1000, 50 images).
  """
  chunk_size = min(chunk_size, num_samples)
  num_chunks = -(-num_samples // chunk_size)
  mean, logvar = _encode(model, params, x)
  offsets = jnp.arange(chunk_size)

  def body(carry, c):
    running_max, running_sum, noise_bits = carry
    indices = c * chunk_size + offsets
    eps = threefry.normal_from_bits(noise_bits)
    log_likelihood, log_prior, log_q = _terms(model, params, x, mean, logvar,
                                              eps)
    w = jnp.where(indices < num_samples, log_likelihood + log_prior - log_q,
                  -jnp.inf)  # the last chunk's padding weighs nothing
    new_max = jnp.maximum(running_max, jnp.max(w))
    running_sum = (running_sum * jnp.exp(running_max - new_max)
                   + jnp.sum(jnp.exp(w - new_max)))
    next_bits = _noise_bits(rng, indices + chunk_size, model.latent_dim)
    return (new_max, running_sum, next_bits), None

  init = (jnp.asarray(-jnp.inf, jnp.float32), jnp.asarray(0.0, jnp.float32),
          _noise_bits(rng, offsets, model.latent_dim))
  (running_max, running_sum, _), _ = jax.lax.scan(body, init,
                                                  jnp.arange(num_chunks))
  return running_max + jnp.log(running_sum) - math.log(num_samples)


def per_example(fn, model: VAEModel, params: Any, x: chex.Array,
                rng: chex.PRNGKey, **kwargs):
  """`fn(model, params, x_n, fold_in(rng, n), **kwargs)` over a batch x `[B, ...]`.

  Example n's key is fold_in(rng, n), so an example's result does not depend
  on the batch it is in, only on its index.
  """
  chex.assert_shape(x, (None, *model.event_shape))
  keys = threefry.fold_in(rng, jnp.arange(x.shape[0]))
  one = functools.partial(fn, model, params, **kwargs)
  return jax.vmap(one)(x, keys)


def batch_elbo(model: VAEModel, params: Any, x: chex.Array, rng: chex.PRNGKey,
               num_samples: int = 1, analytic_kl: bool = True) -> ElboParts:
  """`elbo` over a batch x `[B, ...]`: `ElboParts` of `[B]` arrays."""
  return per_example(elbo, model, params, x, rng, num_samples=num_samples,
                     analytic_kl=analytic_kl)
