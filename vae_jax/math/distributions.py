"""Distributions of the VAE as pure functions of arrays.

The recognition model gives a diagonal Gaussian

    q(z|x; φ) = N(z; μ, diag σ²),   σ² = exp(logvar),

sampled by reparameterisation, z = μ + σ ⊙ ε with ε ~ N(0, I), so that
gradients of E_q[f(z)] flow to (μ, logvar). The prior is p(z) = N(0, I).

Log-likelihoods log p(x|z; θ) are functions of the decoder's output and of one
example x; they sum over every axis of x (pixels, channels), so a batch is a
`jax.vmap` away. Units are nats.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import chex
import jax
import jax.numpy as jnp

__all__ = [
  "sample_diagonal_gaussian",
  "diagonal_gaussian_log_prob",
  "standard_normal_log_prob",
  "kl_to_standard_normal",
  "kl_diagonal_gaussians",
  "monte_carlo_kl",
  "bernoulli_log_likelihood",
  "gaussian_log_likelihood",
  "gaussian_learned_variance_log_likelihood",
  "continuous_bernoulli_log_normalizer",
  "continuous_bernoulli_log_likelihood",
  "continuous_bernoulli_mean",
]

_LOG_2PI = math.log(2.0 * math.pi)


def sample_diagonal_gaussian(
  rng: chex.PRNGKey,
  mean: chex.Array,
  logvar: chex.Array,
  num_samples: Optional[int] = None,
) -> chex.Array:
  """Reparameterised sample z = μ + exp(logvar / 2) ⊙ ε, ε ~ N(0, I).

  Args:
    rng: PRNG key.
    mean: μ, `[..., D]`.
    logvar: log σ², same shape as `mean`.
    num_samples: if given, draws `[num_samples, ..., D]` samples.

  Returns:
    z with the shape of `mean`, or `[num_samples, *mean.shape]`.
  """
  chex.assert_equal_shape([mean, logvar])
  shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
  eps = jax.random.normal(rng, shape, dtype=mean.dtype)
  return mean + jnp.exp(0.5 * logvar) * eps


def diagonal_gaussian_log_prob(
  z: chex.Array, mean: chex.Array, logvar: chex.Array
) -> chex.Array:
  """log N(z; μ, diag exp(logvar)), summed over the last axis.

      log N = −½ Σ_d [log 2π + logvar_d + ((z_d − μ_d) exp(−logvar_d / 2))²]

  Shapes broadcast; the result drops the last axis: z `[..., D]` → `[...]`.

  The standardised residual is formed before squaring, so it overflows only
  when its square truly exceeds float32 (logvar < −177 and z ≠ μ, where
  the density is 0 and the result −∞). z == μ gives 0 for any logvar: the
  plain (z − μ)² exp(−logvar) is 0·∞ = NaN once exp(−logvar) overflows
  (logvar < −88.7), and the logvar of such a term is masked so that its
  gradient is 0, not 0·∞ either.
  """
  residual = z - mean
  safe_logvar = jnp.where(residual == 0, 0.0, logvar)
  standardised = residual * jnp.exp(-0.5 * safe_logvar)
  return -0.5 * jnp.sum(_LOG_2PI + logvar + jnp.square(standardised), axis=-1)


def standard_normal_log_prob(z: chex.Array) -> chex.Array:
  """log N(z; 0, I) = −½ Σ_d (log 2π + z_d²), over the last axis."""
  return -0.5 * jnp.sum(_LOG_2PI + jnp.square(z), axis=-1)


def kl_to_standard_normal(mean: chex.Array, logvar: chex.Array) -> chex.Array:
  """KL(N(μ, diag σ²) ‖ N(0, I)) in closed form, summed over the last axis.

      KL = ½ Σ_d [μ_d² + σ_d² − 1 − log σ_d²]

  `expm1(logvar) − logvar` is σ² − 1 − log σ² without cancellation when
  σ² ≈ 1, which is where collapsed (inactive) units sit.
  """
  chex.assert_equal_shape([mean, logvar])
  return 0.5 * jnp.sum(jnp.square(mean) + jnp.expm1(logvar) - logvar, axis=-1)


def kl_diagonal_gaussians(
  mean_q: chex.Array,
  logvar_q: chex.Array,
  mean_p: chex.Array,
  logvar_p: chex.Array,
) -> chex.Array:
  """KL(N(μ_q, diag σ_q²) ‖ N(μ_p, diag σ_p²)), summed over the last axis.

  KL = ½ Σ_d [σ_q²/σ_p² − 1 − log(σ_q²/σ_p²) + (μ_q − μ_p)²/σ_p²]
  """
  log_ratio = logvar_q - logvar_p
  return 0.5 * jnp.sum(
    jnp.expm1(log_ratio)
    - log_ratio
    + jnp.square(mean_q - mean_p) * jnp.exp(-logvar_p),
    axis=-1,
  )


def monte_carlo_kl(
  rng: chex.PRNGKey,
  mean: chex.Array,
  logvar: chex.Array,
  num_samples: int = 1,
  log_prior: Callable[[chex.Array], chex.Array] = standard_normal_log_prob,
) -> chex.Array:
  """Unbiased estimate KL ≈ 1/S Σ_s [log q(z_s|x) − log p(z_s)], z_s ~ q.

  Args:
    rng: PRNG key.
    mean: the mean of q, `[..., D]`.
    logvar: the log-variance of q, `[..., D]`.
    num_samples: S.
    log_prior: log p(z) over the last axis; N(0, I) by default.

  Returns:
    `[...]`, the estimate averaged over the S samples.
  """
  z = sample_diagonal_gaussian(rng, mean, logvar, num_samples)
  log_q = diagonal_gaussian_log_prob(z, mean, logvar)
  return jnp.mean(log_q - log_prior(z), axis=0)


def bernoulli_log_likelihood(logits: chex.Array, x: chex.Array) -> chex.Array:
  """log p(x|z) = Σ_i [x_i log π_i + (1 − x_i) log(1 − π_i)], π = sigmoid(logits).

  Written as Σ_i [x_i ℓ_i − softplus(ℓ_i)], which is exact for any finite
  logit ℓ (no log of a rounded probability). Logits are first clipped to
  ±M, M = float32 max / (2 · number of pixels): every finite logit a
  network can give lies inside (the clip changes nothing), ±∞ (where
  ∞ − ∞ would be NaN) becomes ±M, and the sum over the pixels stays finite
  (at most half the float32 range; the factor 2 covers the sum's rounding).
  x should be binary in {0, 1}; for grey-level data a Bernoulli is not a
  likelihood — binarise the data or use a continuous likelihood.

  Args:
    logits: decoder output ℓ for one example, the shape of x.
    x: one example.

  Returns:
    Scalar: the sum over every axis of x.
  """
  chex.assert_equal_shape([logits, x])
  bound = jnp.finfo(logits.dtype).max / (2 * max(logits.size, 1))
  logits = jnp.clip(logits, -bound, bound)
  return jnp.sum(x * logits - _softplus(logits))


def _softplus(logits: chex.Array) -> chex.Array:
  """log(1 + e^ℓ) = max(ℓ, 0) + log1p(e^−|ℓ|): exact and overflow-free.

  The same values as `jax.nn.softplus` (`logaddexp(ℓ, 0)`), without its
  handling of infinities, which costs more than the whole expression
  (benchmarks/results/likelihood_softplus.json). Logits reach it clipped,
  so they are finite.
  """
  return jnp.maximum(logits, 0.0) + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def gaussian_log_likelihood(
  mean: chex.Array, x: chex.Array, variance: chex.Numeric = 1.0
) -> chex.Array:
  """log N(x; mean, variance · I) = −½ Σ_i [log 2π v + (x_i − mean_i)² / v].

  Args:
    mean: decoder output for one example, the shape of x.
    x: one example.
    variance: the fixed observation variance v (a float or a scalar array).

  Returns:
    Scalar: the sum over every axis of x.
  """
  chex.assert_equal_shape([mean, x])
  variance = jnp.asarray(variance, dtype=mean.dtype)
  return -0.5 * jnp.sum(
    _LOG_2PI + jnp.log(variance) + jnp.square(x - mean) / variance
  )


def gaussian_learned_variance_log_likelihood(
  mean: chex.Array, logvar: chex.Array, x: chex.Array
) -> chex.Array:
  """log N(x; mean, diag exp(logvar)) = −½ Σ_i [log 2π + logvar_i + (x_i − mean_i)² e^{−logvar_i}].

  The variance is per pixel (the decoder's second output); floor `logvar`
  before calling this (`vae_jax.math.likelihoods`), since for data with
  pixels that are exactly constant the maximum-likelihood variance is 0 and
  the density diverges.
  """
  chex.assert_equal_shape([mean, logvar, x])
  return -0.5 * jnp.sum(
    _LOG_2PI + logvar + jnp.square(x - mean) * jnp.exp(-logvar)
  )


# |ℓ| below this: the Taylor series of the continuous Bernoulli's log C and
# mean. Their closed forms are 0/0 at ℓ = 0 and lose digits near it; the
# series' first omitted terms, 62ℓ⁶/181440 and ℓ⁵/30240 (< 4e-10 here), are
# far below float32's resolution, and the closed forms' rounding at |ℓ| = 0.1
# is a few 1e-7, so the two pieces join to float32 precision.
_CB_TAYLOR_BELOW = 0.1


def continuous_bernoulli_log_normalizer(logits: chex.Array) -> chex.Array:
  """log C(λ) of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), per element.

  p(x|λ) = C(λ) λ^x (1 − λ)^(1−x) on x ∈ [0, 1], C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ)
  and C(½) = 2. With λ = sigmoid(ℓ), 1 − 2λ = −tanh(ℓ/2) and
  artanh(1 − 2λ) = −ℓ/2, so

      C = ℓ / tanh(ℓ/2),   log C = log|ℓ| − log tanh(|ℓ|/2)   (even in ℓ),

  exact in logits for any |ℓ| (tanh → 1 for large |ℓ|, no log of 0). Near
  λ = ½ (ℓ = 0) the Taylor series log C = log 2 + ℓ²/12 − 7ℓ⁴/1440 + O(ℓ⁶)
  replaces the 0/0. Both branches are evaluated at safe points, so the
  gradient is finite everywhere, ℓ = 0 included.
  """
  a = jnp.abs(logits)
  small = a < _CB_TAYLOR_BELOW
  safe = jnp.where(small, _CB_TAYLOR_BELOW, a)
  closed = jnp.log(safe) - jnp.log(jnp.tanh(0.5 * safe))
  sq = jnp.square(logits)
  taylor = math.log(2.0) + sq / 12.0 - 7.0 * jnp.square(sq) / 1440.0
  return jnp.where(small, taylor, closed)


def continuous_bernoulli_log_likelihood(
  logits: chex.Array, x: chex.Array
) -> chex.Array:
  """log p(x|z) = Σ_i [x_i ℓ_i − softplus(ℓ_i) + log C(ℓ_i)] for x ∈ [0, 1].

  The Bernoulli's terms (written stably in logits, as there) plus the
  normaliser that makes the density integrate to one over [0, 1], so it is
  a likelihood for grey-level pixels. Scalar: the sum over every axis of x.
  """
  chex.assert_equal_shape([logits, x])
  return jnp.sum(
    x * logits
    - jax.nn.softplus(logits)
    + continuous_bernoulli_log_normalizer(logits)
  )


def continuous_bernoulli_mean(logits: chex.Array) -> chex.Array:
  """E[x] = λ/(2λ − 1) + 1/(2 artanh(1 − 2λ)) = sigmoid(ℓ)/tanh(ℓ/2) − 1/ℓ.

  Not λ itself (a common mistake in figures). Near ℓ = 0 the two terms are
  ±1/ℓ and cancel, so the series ½ + ℓ/12 − ℓ³/720 + O(ℓ⁵) is used there.
  """
  small = jnp.abs(logits) < _CB_TAYLOR_BELOW
  safe = jnp.where(small, _CB_TAYLOR_BELOW, logits)
  closed = jax.nn.sigmoid(safe) / jnp.tanh(0.5 * safe) - 1.0 / safe
  taylor = 0.5 + logits / 12.0 - logits**3 / 720.0
  return jnp.where(small, taylor, closed)
