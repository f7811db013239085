"""Each likelihood is a density: it sums or integrates to one over x.

One-value examples (x `[1]`), so the sum or integral over x is a sum over
{0, 1} or a 1-D quadrature. The continuous Bernoulli's normaliser is also
checked against float64 where its closed form turns into its Taylor series
(λ = ½, ℓ = 0). Tolerances: float32 rounding of log p, which exp turns into
a relative error of the density of about |log p| · eps, plus the
quadrature's own error (stated where it matters).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import validation
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.math import distributions
from vae_jax.math.likelihoods import DEFAULT_MIN_LOG_VARIANCE, Likelihood

_EPS = float(np.finfo(np.float32).eps)


def _density(likelihood: Likelihood, output, xs) -> np.ndarray:
  """p(x|output) at every x of `xs` `[N]`, float64 on the host."""
  log_p = jax.jit(
    jax.vmap(
      lambda x: likelihood.log_prob(jnp.asarray(output, jnp.float32), x[None])
    )
  )(jnp.asarray(xs, jnp.float32))
  return np.exp(np.asarray(log_p, np.float64)), np.asarray(log_p)


def _rounding(log_p) -> float:
  finite = np.abs(log_p[np.isfinite(log_p)])
  return 16 * _EPS * (1.0 + float(finite.max()))


@pytest.mark.parametrize("logit", [-30.0, -2.0, 0.0, 0.7, 25.0])
def test_bernoulli_sums_to_one(logit):
  p, log_p = _density(Likelihood("bernoulli"), [logit], [0.0, 1.0])
  np.testing.assert_allclose(p.sum(), 1.0, atol=_rounding(log_p))


@pytest.mark.parametrize(
  "mean, variance", [(0.3, 1.0), (-2.0, 0.01), (5.0, 4.0)]
)
def test_fixed_variance_gaussian_integrates_to_one(mean, variance):
  sd = math.sqrt(variance)
  # ±12 sd leaves e^-72 of the mass out; 24001 points, spacing sd/1000:
  # the trapezoid rule on a Gaussian is exact far below float32 here.
  xs = np.linspace(mean - 12 * sd, mean + 12 * sd, 24001)
  p, log_p = _density(Likelihood("gaussian", variance), [mean], xs)
  np.testing.assert_allclose(np.trapezoid(p, xs), 1.0, atol=_rounding(log_p))


@pytest.mark.parametrize(
  "mean, raw", [(0.5, 0.0), (0.1, -3.0), (0.0, -40.0), (2.0, 3.0)]
)
def test_learned_variance_gaussian_integrates_to_one(mean, raw):
  likelihood = Likelihood("gaussian_learned_variance")
  floor = DEFAULT_MIN_LOG_VARIANCE
  logvar = floor + math.log1p(math.exp(raw - floor))  # the soft floor
  assert logvar >= floor
  sd = math.exp(0.5 * logvar)
  xs = np.linspace(mean - 12 * sd, mean + 12 * sd, 24001)
  p, log_p = _density(likelihood, [mean, raw], xs)
  np.testing.assert_allclose(np.trapezoid(p, xs), 1.0, atol=_rounding(log_p))
  # The decoder's first half is the mean: the density peaks there.
  assert np.argmax(p) == 12000


@pytest.mark.parametrize(
  "logit", [-40.0, -5.0, -0.1, -0.03, 0.0, 1e-4, 0.1, 0.3, 2.0, 40.0]
)
def test_continuous_bernoulli_integrates_to_one_on_the_unit_interval(logit):
  # p ∝ e^{ℓx} varies on a scale of 1/|ℓ| ≥ 1/40; with spacing 2.5e-5
  # the trapezoid error, h²/12 · max|p''| ≈ h² ℓ² / 12 · max p, is < 1e-7.
  xs = np.linspace(0.0, 1.0, 40001)
  p, log_p = _density(Likelihood("continuous_bernoulli"), [logit], xs)
  np.testing.assert_allclose(
    np.trapezoid(p, xs), 1.0, atol=_rounding(log_p) + 1e-7
  )
  # Its mean, E[x], is the integral of x p(x), not λ = sigmoid(ℓ).
  mean = float(Likelihood("continuous_bernoulli").mean(jnp.float32(logit)))
  np.testing.assert_allclose(
    mean, np.trapezoid(xs * p, xs), atol=_rounding(log_p) + 1e-7
  )


def _log_c_float64(logits: np.ndarray) -> np.ndarray:
  """log(ℓ / tanh(ℓ/2)) in float64; its value 2 at ℓ = 0 by continuity."""
  logits = np.asarray(logits, np.float64)
  safe = np.where(logits == 0, 1.0, logits)
  return np.where(
    logits == 0, math.log(2.0), np.log(safe / np.tanh(0.5 * safe))
  )


def test_continuous_bernoulli_normaliser_continuous_and_finite_at_one_half():
  # λ from 0.45 to 0.55, through ℓ = 0 and the series' edges ±0.1.
  edge = np.float32(0.1)
  logits = np.concatenate(
    [
      np.linspace(-0.2, 0.2, 4001, dtype=np.float32),
      [
        0.0,
        np.nextafter(edge, 0),
        edge,
        np.nextafter(edge, 1),
        -np.nextafter(edge, 0),
        -edge,
        1e-30,
        -1e-30,
      ],
    ]
  ).astype(np.float32)
  log_c = np.asarray(
    distributions.continuous_bernoulli_log_normalizer(jnp.asarray(logits))
  )
  chex.assert_tree_all_finite(log_c)
  # Against float64: within float32 rounding of a log near log 2 plus the
  # closed form's cancellation, log|ℓ| − log tanh(|ℓ|/2), at |ℓ| ≥ 0.1:
  # a few eps times |log 0.05| ≈ 3.
  np.testing.assert_allclose(log_c, _log_c_float64(logits), atol=8 * _EPS * 4.0)
  assert float(log_c[4001]) == float(np.float32(math.log(2.0)))


def test_continuous_bernoulli_normaliser_gradient_finite_at_one_half():
  grad = jax.grad(
    lambda l: distributions.continuous_bernoulli_log_likelihood(
      l, jnp.asarray([0.25, 1.0, 0.0])
    )
  )(jnp.zeros(3))
  chex.assert_tree_all_finite(grad)
  # d/dℓ [xℓ − softplus ℓ + log C] at ℓ = 0 is x − ½ (log C is even).
  np.testing.assert_allclose(grad, [-0.25, 0.5, -0.5], atol=4 * _EPS)


def test_continuous_bernoulli_normaliser_finite_at_huge_logits():
  logits = jnp.asarray([-1e30, -1e4, 1e4, 1e30], jnp.float32)
  chex.assert_tree_all_finite(
    distributions.continuous_bernoulli_log_normalizer(logits)
  )
  chex.assert_tree_all_finite(distributions.continuous_bernoulli_mean(logits))


def test_a_bernoulli_on_grey_levels_is_refused_naming_the_alternatives():
  config = default.get_config()
  config.binarization = "none"
  try:
    validation.check_likelihood_fits(config, already_binary=False)
  except ConfigError as e:
    message = str(e)
  else:
    raise AssertionError("not refused")
  for name in (
    "gaussian",
    "gaussian_learned_variance",
    "continuous_bernoulli",
    "--config.binarization=dynamic",
  ):
    assert name in message, message
  validation.check_likelihood_fits(config, already_binary=True)  # binary data
  config.likelihood = "continuous_bernoulli"
  validation.check_likelihood_fits(config, already_binary=False)
