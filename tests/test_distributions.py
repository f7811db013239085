"""Tests of vae_jax.distributions: samples, log-densities, KLs, likelihoods.

Every pure function runs with and without jit (chex variants); each variant
test checks several properties with one compiled program, to keep the suite
fast on CPU. Monte-Carlo checks compare an estimate with its exact value
within 4 standard errors, the standard error measured from the very draws
the estimate used (same key); keys are fixed, so every check is
deterministic.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.math import distributions

_LOG_2PI = math.log(2.0 * math.pi)
_NUM_SAMPLES = 20_000


def _random_gaussian(seed: int, shape, logvar_range=(-3.0, 3.0)):
  """(mean, logvar) of float32 diagonal Gaussians with the given shape."""
  rng = np.random.default_rng(seed)
  mean = rng.normal(0.0, 1.5, size=shape).astype(np.float32)
  logvar = rng.uniform(*logvar_range, size=shape).astype(np.float32)
  return jnp.asarray(mean), jnp.asarray(logvar)


def _assert_within_standard_errors(estimate, samples, expected, num_se=4.0):
  """|estimate − expected| < num_se · std(samples) / √S, elementwise.

  samples: `[S, ...]` i.i.d. single-draw values whose mean is `estimate`.
  The 1e-5 absolute slack covers float32 rounding of exact results.
  """
  samples = np.asarray(samples, np.float64)
  stderr = samples.std(axis=0, ddof=1) / math.sqrt(samples.shape[0])
  error = np.abs(np.asarray(estimate, np.float64)
                 - np.asarray(expected, np.float64))
  np.testing.assert_array_less(error, num_se * stderr + 1e-5)


def _np_log_normal(z, mean, logvar):
  """float64 log N(z; μ, diag exp(logvar)), summed over the last axis."""
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  return -0.5 * np.sum(_LOG_2PI + logvar + (z - mean) ** 2 / np.exp(logvar),
                       axis=-1)


def _np_kl_diagonal(mean_q, logvar_q, mean_p, logvar_p):
  """float64 closed-form KL(q ‖ p) of diagonal Gaussians, over the last axis."""
  mean_q, logvar_q, mean_p, logvar_p = (
      np.asarray(a, np.float64) for a in (mean_q, logvar_q, mean_p, logvar_p))
  var_q, var_p = np.exp(logvar_q), np.exp(logvar_p)
  return 0.5 * np.sum(var_q / var_p - 1.0 - (logvar_q - logvar_p)
                      + (mean_q - mean_p) ** 2 / var_p, axis=-1)


def _trapezoid(values, grid):
  return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(grid)))


class SampleDiagonalGaussianTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_shapes_dtype_and_reparameterisation(self):
    mean, logvar = _random_gaussian(0, (4, 3))
    key = jax.random.key(3)
    one = self.variant(distributions.sample_diagonal_gaussian)
    many = self.variant(functools.partial(
        distributions.sample_diagonal_gaussian, num_samples=7))

    z = one(key, mean, logvar)
    chex.assert_shape(z, (4, 3))
    chex.assert_type(z, jnp.float32)
    zs = many(key, mean, logvar)
    chex.assert_shape(zs, (7, 4, 3))
    chex.assert_type(zs, jnp.float32)
    chex.assert_tree_all_finite(zs)
    # z = μ + exp(logvar / 2) ε, ε the standard normal draw of the same key.
    eps = jax.random.normal(key, (7, 4, 3))
    np.testing.assert_allclose(zs, mean + jnp.exp(0.5 * logvar) * eps,
                               rtol=1e-6, atol=1e-6)
    # Same key, same sample; another key, another sample.
    np.testing.assert_array_equal(one(key, mean, logvar), z)
    other = one(jax.random.key(4), mean, logvar)
    self.assertFalse(np.any(np.asarray(other) == np.asarray(z)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_moments(self):
    """Sample mean → μ and mean of (z − μ)² → σ², within 4 standard errors."""
    mean, logvar = _random_gaussian(2, (5,))
    z = self.variant(functools.partial(
        distributions.sample_diagonal_gaussian, num_samples=_NUM_SAMPLES))(
            jax.random.key(1), mean, logvar)
    chex.assert_shape(z, (_NUM_SAMPLES, 5))
    z = np.asarray(z, np.float64)
    mean64 = np.asarray(mean, np.float64)
    _assert_within_standard_errors(z.mean(0), z, mean64)
    squares = (z - mean64) ** 2
    _assert_within_standard_errors(squares.mean(0), squares,
                                   np.exp(np.asarray(logvar, np.float64)))


class DiagonalGaussianLogProbTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_formula_broadcasting_and_standard_normal_case(self):
    mean, logvar = _random_gaussian(4, (3,))
    z = jax.random.normal(jax.random.key(0), (10, 3)) * 2.0
    log_prob = self.variant(distributions.diagonal_gaussian_log_prob)
    value = log_prob(z, mean, logvar)  # z [10, 3], μ [3] → [10]
    chex.assert_shape(value, (10,))
    chex.assert_type(value, jnp.float32)
    np.testing.assert_allclose(
        value, _np_log_normal(np.asarray(z, np.float64), mean, logvar),
        rtol=1e-5, atol=1e-5)
    zeros = jnp.zeros((3,))
    np.testing.assert_allclose(log_prob(z, zeros, zeros),
                               distributions.standard_normal_log_prob(z),
                               rtol=1e-6)

  def test_integrates_to_one_in_one_dimension(self):
    grid = np.linspace(-12.0, 14.0, 20_001)
    log_prob = distributions.diagonal_gaussian_log_prob(
        jnp.asarray(grid[:, None], jnp.float32), jnp.asarray([1.0]),
        jnp.asarray([math.log(4.0)]))
    total = _trapezoid(np.exp(np.asarray(log_prob, np.float64)), grid)
    self.assertAlmostEqual(total, 1.0, places=5)


class KlToStandardNormalTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_formula_and_properties(self):
    kl = self.variant(distributions.kl_to_standard_normal)
    mean, logvar = _random_gaussian(5, (1000, 3), logvar_range=(-8.0, 8.0))
    value = kl(mean, logvar)
    chex.assert_shape(value, (1000,))
    chex.assert_type(value, jnp.float32)
    np.testing.assert_allclose(
        value, _np_kl_diagonal(mean, logvar, np.zeros(3), np.zeros(3)),
        rtol=1e-5, atol=1e-6)
    # It is kl_diagonal_gaussians with p = N(0, I).
    np.testing.assert_allclose(
        value, distributions.kl_diagonal_gaussians(
            mean, logvar, jnp.zeros_like(mean), jnp.zeros_like(logvar)),
        rtol=1e-6, atol=1e-6)
    self.assertTrue(np.all(np.asarray(value) >= 0.0))
    # Zero at the prior itself.
    np.testing.assert_array_equal(kl(jnp.zeros((1000, 3)),
                                     jnp.zeros((1000, 3))), np.zeros(1000))
    # Near σ² = 1, expm1 keeps the tiny KL to ~0.1% in float32, where the
    # naive σ² − 1 − log σ² would be all rounding error: ½(expm1(ε) − ε) ≈ ε²/4.
    tiny = np.zeros((1000, 3), np.float32)
    tiny[0, 0] = 1e-4
    np.testing.assert_allclose(kl(jnp.zeros((1000, 3)), jnp.asarray(tiny))[0],
                               0.25 * 1e-8, rtol=1e-2)


class KlDiagonalGaussiansTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_formula_and_properties(self):
    kl = self.variant(distributions.kl_diagonal_gaussians)
    mean_q, logvar_q = _random_gaussian(8, (2000, 3), logvar_range=(-6, 6))
    mean_p, logvar_p = _random_gaussian(9, (2000, 3), logvar_range=(-6, 6))
    value = kl(mean_q, logvar_q, mean_p, logvar_p)
    chex.assert_shape(value, (2000,))
    chex.assert_type(value, jnp.float32)
    chex.assert_tree_all_finite(value)
    np.testing.assert_allclose(
        value, _np_kl_diagonal(mean_q, logvar_q, mean_p, logvar_p),
        rtol=1e-5, atol=1e-5)
    # KL ≥ 0 on random inputs, and KL(q ‖ q) = 0.
    self.assertTrue(np.all(np.asarray(value) >= 0.0))
    np.testing.assert_allclose(kl(mean_q, logvar_q, mean_q, logvar_q),
                               np.zeros(2000), atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_numerical_integral_in_one_dimension(self):
    """KL = ∫ q(z) [log q(z) − log p(z)] dz by the trapezoid rule, float64."""
    cases = np.asarray([  # mean_q, logvar_q, mean_p, logvar_p
        [0.7, math.log(2.5), -0.4, math.log(0.8)],
        [-1.0, math.log(0.2), 0.5, math.log(1.7)],
        [1.3, math.log(0.5), 0.0, 0.0],
    ])
    numerical = []
    for mean_q, logvar_q, mean_p, logvar_p in cases:
      std_q = math.exp(0.5 * logvar_q)
      grid = np.linspace(mean_q - 14 * std_q, mean_q + 14 * std_q, 200_001)
      log_q = -0.5 * (_LOG_2PI + logvar_q + (grid - mean_q) ** 2
                      / math.exp(logvar_q))
      log_p = -0.5 * (_LOG_2PI + logvar_p + (grid - mean_p) ** 2
                      / math.exp(logvar_p))
      numerical.append(_trapezoid(np.exp(log_q) * (log_q - log_p), grid))
    columns = (jnp.asarray(cases[:, i:i + 1], jnp.float32) for i in range(4))
    value = self.variant(distributions.kl_diagonal_gaussians)(*columns)
    chex.assert_shape(value, (3,))
    self.assertTrue(np.all(np.asarray(numerical) > 0.1))
    np.testing.assert_allclose(value, numerical, rtol=1e-5, atol=1e-6)


class MonteCarloKlTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_agrees_with_closed_form_to_standard_normal(self):
    mean, logvar = _random_gaussian(14, (3, 4), logvar_range=(-1.5, 1.5))
    key = jax.random.key(1)
    estimate = self.variant(functools.partial(
        distributions.monte_carlo_kl, num_samples=_NUM_SAMPLES))(
            key, mean, logvar)
    chex.assert_shape(estimate, (3,))
    chex.assert_type(estimate, jnp.float32)
    # The same draws z_s (same key), the per-sample terms in float64.
    z = np.asarray(distributions.sample_diagonal_gaussian(
        key, mean, logvar, _NUM_SAMPLES), np.float64)  # [S, 3, 4]
    per_sample = (_np_log_normal(z, mean, logvar)
                  - _np_log_normal(z, np.zeros(4), np.zeros(4)))  # [S, 3]
    np.testing.assert_allclose(estimate, per_sample.mean(0), rtol=1e-4,
                               atol=1e-4)
    _assert_within_standard_errors(
        estimate, per_sample, distributions.kl_to_standard_normal(mean, logvar))

  @chex.variants(with_jit=True, without_jit=True)
  def test_agrees_with_closed_form_to_another_gaussian(self):
    mean_q, logvar_q = _random_gaussian(15, (4,), logvar_range=(-1.0, 1.0))
    mean_p, logvar_p = _random_gaussian(16, (4,), logvar_range=(-1.0, 1.0))
    log_prior = functools.partial(distributions.diagonal_gaussian_log_prob,
                                  mean=mean_p, logvar=logvar_p)
    key = jax.random.key(3)
    estimate = self.variant(functools.partial(
        distributions.monte_carlo_kl, num_samples=_NUM_SAMPLES,
        log_prior=log_prior))(key, mean_q, logvar_q)
    chex.assert_shape(estimate, ())
    z = np.asarray(distributions.sample_diagonal_gaussian(
        key, mean_q, logvar_q, _NUM_SAMPLES), np.float64)
    per_sample = (_np_log_normal(z, mean_q, logvar_q)
                  - _np_log_normal(z, mean_p, logvar_p))
    _assert_within_standard_errors(
        estimate, per_sample,
        distributions.kl_diagonal_gaussians(mean_q, logvar_q, mean_p, logvar_p))


class BernoulliLogLikelihoodTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_naive_formula_and_extreme_logits(self):
    loglik = self.variant(distributions.bernoulli_log_likelihood)
    rng = np.random.default_rng(0)
    logits = rng.uniform(-6.0, 6.0, size=(28, 28)).astype(np.float32)
    x = (rng.uniform(size=(28, 28)) < 0.4).astype(np.float32)
    value = loglik(jnp.asarray(logits), jnp.asarray(x))
    chex.assert_shape(value, ())
    chex.assert_type(value, jnp.float32)
    # The naive x log σ(ℓ) + (1 − x) log(1 − σ(ℓ)), for moderate logits.
    sigmoid = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    naive = np.sum(x * np.log(sigmoid) + (1 - x) * np.log(1 - sigmoid))
    np.testing.assert_allclose(value, naive, rtol=1e-5)

    # Logits ±100, where the naive form takes log 0: confident and right is
    # log 1 = 0 (up to e^-100), confident and wrong is −100 per pixel.
    extreme = np.zeros((28, 28), np.float32)
    extreme[0, :4] = [100.0, -100.0, 100.0, -100.0]
    target = np.zeros((28, 28), np.float32)
    target[0, :4] = [1.0, 0.0, 1.0, 0.0]
    zeros_part = np.sum(np.log(0.5) * np.ones(28 * 28 - 4))  # logit 0, x = 0
    right = loglik(jnp.asarray(extreme), jnp.asarray(target))
    wrong_target = target.copy()
    wrong_target[0, :4] = 1.0 - target[0, :4]
    wrong = loglik(jnp.asarray(extreme), jnp.asarray(wrong_target))
    chex.assert_tree_all_finite((right, wrong))
    np.testing.assert_allclose(right, zeros_part, rtol=1e-5)
    np.testing.assert_allclose(wrong, zeros_part - 400.0, rtol=1e-5)
    grad = jax.grad(distributions.bernoulli_log_likelihood)(
        jnp.asarray(extreme), jnp.asarray(wrong_target))
    chex.assert_tree_all_finite(grad)
    np.testing.assert_allclose(grad[0, :4], [-1.0, 1.0, -1.0, 1.0], atol=1e-6)


class GaussianLogLikelihoodTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_formula(self):
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(6, 5)).astype(np.float32)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    diff = x.astype(np.float64) - mean
    loglik = self.variant(distributions.gaussian_log_likelihood)
    # The variance is a float or a traced scalar: one program serves all.
    for variance in (1.0, 0.05, 7.5, jnp.float32(2.0)):
      value = loglik(jnp.asarray(mean), jnp.asarray(x), variance)
      chex.assert_shape(value, ())
      chex.assert_type(value, jnp.float32)
      v = float(variance)
      expected = np.sum(-0.5 * np.log(2 * np.pi * v) - 0.5 * diff ** 2 / v)
      np.testing.assert_allclose(value, expected, rtol=1e-5)


class ReparameterisedGradientTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradient_of_a_quadratic_expectation(self):
    """∇ E_q[f(z)] by reparameterisation matches the analytic gradient.

    f(z) = Σ_d a_d z_d² + c_d z_d, so E_q f = Σ_d a_d (μ_d² + σ_d²) + c_d μ_d:
    ∂/∂μ_d = 2 a_d μ_d + c_d and ∂/∂logvar_d = a_d σ_d².
    """
    a = jnp.asarray([0.5, -1.0, 2.0, 0.3])
    c = jnp.asarray([1.0, 0.2, -0.7, 0.0])
    mean = jnp.asarray([0.3, -1.2, 0.8, 2.0])
    logvar = jnp.asarray([0.0, -1.0, 0.5, -2.0])

    def objective(mean, logvar, key):
      z = distributions.sample_diagonal_gaussian(key, mean, logvar,
                                                 _NUM_SAMPLES)
      return jnp.mean(jnp.sum(a * z ** 2 + c * z, axis=-1))

    key = jax.random.key(0)
    estimate = self.variant(jax.grad(objective, argnums=(0, 1)))(
        mean, logvar, key)
    chex.assert_trees_all_equal_shapes_and_dtypes(estimate, (mean, logvar))
    # Per-sample gradients of the same draws z_s = μ + σ ε_s, in float64:
    # ∂f/∂μ = 2 a z + c and ∂f/∂logvar = (2 a z + c) σ ε / 2.
    z = np.asarray(distributions.sample_diagonal_gaussian(
        key, mean, logvar, _NUM_SAMPLES), np.float64)  # [S, 4]
    a64, c64, mean64 = (np.asarray(v, np.float64) for v in (a, c, mean))
    df_dz = 2 * a64 * z + c64
    per_sample = (df_dz, df_dz * 0.5 * (z - mean64))
    expected = (2 * a64 * mean64 + c64,
                a64 * np.exp(np.asarray(logvar, np.float64)))
    for est, samples, exact in zip(estimate, per_sample, expected):
      np.testing.assert_allclose(est, samples.mean(0), rtol=1e-4, atol=1e-4)
      _assert_within_standard_errors(est, samples, exact)
