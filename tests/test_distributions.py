"""Tests of vae_jax.distributions: samples, log-densities, KLs, likelihoods.

Every pure function runs with and without jit (chex variants); each variant
test checks several properties with one compiled program, to keep the suite
fast on CPU. Monte-Carlo checks compare an estimate with its exact value
within 4 standard errors, the standard error measured from the very draws
the estimate used (same key); keys are fixed, so every check is
deterministic. Exact checks compare with float64 references within a bound
on float32 rounding derived from the size of the computation
(tests/tolerances.py), never within a tolerance tuned to one CPU.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import F64_EPS
from tolerances import assert_close
from tolerances import assert_within_standard_errors
from tolerances import kl_diagonal_atol
from tolerances import rounding_atol
from tolerances import sum_atol
from vae_jax.math import distributions

_LOG_2PI = math.log(2.0 * math.pi)
_NUM_SAMPLES = 20_000


def _random_gaussian(seed: int, shape, logvar_range=(-3.0, 3.0)):
  """(mean, logvar) of float32 diagonal Gaussians with the given shape."""
  rng = np.random.default_rng(seed)
  mean = rng.normal(0.0, 1.5, size=shape).astype(np.float32)
  logvar = rng.uniform(*logvar_range, size=shape).astype(np.float32)
  return jnp.asarray(mean), jnp.asarray(logvar)


def _np_log_normal(z, mean, logvar):
  """float64 log N(z; μ, diag exp(logvar)), summed over the last axis."""
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  return -0.5 * np.sum(
    _LOG_2PI + logvar + (z - mean) ** 2 / np.exp(logvar), axis=-1
  )


def _np_kl_diagonal(mean_q, logvar_q, mean_p, logvar_p):
  """float64 closed-form KL(q ‖ p) of diagonal Gaussians, over the last axis."""
  mean_q, logvar_q, mean_p, logvar_p = (
    np.asarray(a, np.float64) for a in (mean_q, logvar_q, mean_p, logvar_p)
  )
  var_q, var_p = np.exp(logvar_q), np.exp(logvar_p)
  return 0.5 * np.sum(
    var_q / var_p
    - 1.0
    - (logvar_q - logvar_p)
    + (mean_q - mean_p) ** 2 / var_p,
    axis=-1,
  )


def _log_normal_magnitude(z, mean, logvar):
  """Absolute-valued evaluation of diagonal_gaussian_log_prob (tolerances.py).

  ½ Σ_d [log 2π + |logvar| + (|z| + |μ|)² e^(−logvar)] over the last axis.
  |z| + |μ| bounds z − μ and its rounding, including z's rounding when z
  comes from a float32 draw μ + σε. Each term has at most 12 roundings of u
  (6 counted operations): log 2π, + logvar, z and z − μ (3), the square (7),
  exp and × (3), +. The D-term sum comes on top of that.
  """
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  return 0.5 * np.sum(
    _LOG_2PI
    + np.abs(logvar)
    + (np.abs(z) + np.abs(mean)) ** 2 * np.exp(-logvar),
    axis=-1,
  )


def _trapezoid(values, grid):
  return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(grid)))


class SampleDiagonalGaussianTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_shapes_dtype_and_reparameterisation(self):
    mean, logvar = _random_gaussian(0, (4, 3))
    key = jax.random.key(3)
    one = self.variant(distributions.sample_diagonal_gaussian)
    many = self.variant(
      functools.partial(distributions.sample_diagonal_gaussian, num_samples=7)
    )

    z = one(key, mean, logvar)
    chex.assert_shape(z, (4, 3))
    chex.assert_type(z, jnp.float32)
    zs = many(key, mean, logvar)
    chex.assert_shape(zs, (7, 4, 3))
    chex.assert_type(zs, jnp.float32)
    chex.assert_tree_all_finite(zs)
    # z = μ + exp(logvar / 2) ε, ε the standard normal draw of the same key,
    # in float64: float32 rounds exp, × and + (3 operations).
    eps = np.asarray(jax.random.normal(key, (7, 4, 3)), np.float64)
    scaled = np.exp(0.5 * np.asarray(logvar, np.float64)) * eps
    assert_close(
      zs,
      np.asarray(mean, np.float64) + scaled,
      sum_atol(1, np.abs(mean) + np.abs(scaled), ops_per_term=3),
    )
    # Same key, same sample; another key, another sample.
    np.testing.assert_array_equal(one(key, mean, logvar), z)
    other = one(jax.random.key(4), mean, logvar)
    self.assertFalse(np.any(np.asarray(other) == np.asarray(z)))

  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.slow
  def test_moments(self):
    """Sample mean → μ and mean of (z − μ)² → σ², within 4 standard errors."""
    mean, logvar = _random_gaussian(2, (5,))
    z = self.variant(
      functools.partial(
        distributions.sample_diagonal_gaussian, num_samples=_NUM_SAMPLES
      )
    )(jax.random.key(1), mean, logvar)
    chex.assert_shape(z, (_NUM_SAMPLES, 5))
    z = np.asarray(z, np.float64)
    mean64 = np.asarray(mean, np.float64)
    # The means are float64; only the draws' own rounding (3 operations on
    # |μ| + |σε|, a bias far below the standard error) adds to it.
    z_atol = rounding_atol(3, np.abs(mean64) + np.abs(z - mean64))
    assert_within_standard_errors(
      z.mean(0), z, mean64, atol=np.mean(z_atol, axis=0)
    )
    squares = (z - mean64) ** 2
    assert_within_standard_errors(
      squares.mean(0),
      squares,
      np.exp(np.asarray(logvar, np.float64)),
      atol=np.mean(2 * np.abs(z - mean64) * z_atol, axis=0),
    )


class DiagonalGaussianLogProbTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_formula_broadcasting_and_standard_normal_case(self):
    mean, logvar = _random_gaussian(4, (3,))
    z = jax.random.normal(jax.random.key(0), (10, 3)) * 2.0
    log_prob = self.variant(distributions.diagonal_gaussian_log_prob)
    value = log_prob(z, mean, logvar)  # z [10, 3], μ [3] → [10]
    chex.assert_shape(value, (10,))
    chex.assert_type(value, jnp.float32)
    z64 = np.asarray(z, np.float64)
    assert_close(
      value,
      _np_log_normal(z64, mean, logvar),
      sum_atol(3, _log_normal_magnitude(z64, mean, logvar), ops_per_term=6),
    )
    # Zero mean and log-variance give the standard normal: both functions
    # are within the same bound of its float64 value.
    zeros = jnp.zeros((3,))
    standard = _np_log_normal(z64, np.zeros(3), np.zeros(3))
    atol = sum_atol(3, _log_normal_magnitude(z64, 0.0, 0.0), ops_per_term=6)
    assert_close(log_prob(z, zeros, zeros), standard, atol)
    assert_close(distributions.standard_normal_log_prob(z), standard, atol)


def test_diagonal_gaussian_log_prob_integrates_to_one_in_one_dimension():
  grid = np.linspace(-12.0, 14.0, 20_001)
  logvar = np.float32(math.log(4.0))  # σ = 2 up to rounding: N(1, e^logvar)
  log_prob = distributions.diagonal_gaussian_log_prob(
    jnp.asarray(grid[:, None], jnp.float32),
    jnp.asarray([1.0]),
    jnp.asarray([logvar]),
  )
  density = np.exp(np.asarray(log_prob, np.float64))
  total = _trapezoid(density, grid)
  # The density is exp(log_prob): an error δ of the float32 log_prob is a
  # relative error δ of the density, so the integral errs by at most
  # ∫ density · δ. δ is the rounding bound, where the grid's rounding to
  # float32 is one more operation. The trapezoid rule is exact to
  # exp(−2π²σ²/h²) on a Gaussian; the mass outside [−12, 14], 6.5σ from the
  # mean, is 2Φ(−6.5) ≈ 8e-11.
  rounding = sum_atol(
    1, _log_normal_magnitude(grid[:, None], 1.0, logvar), ops_per_term=7
  )
  tails = math.erfc(6.5 / math.sqrt(2.0))
  assert_close(total, 1.0, _trapezoid(density * rounding, grid) + tails)


class KlToStandardNormalTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_formula_and_properties(self):
    kl = self.variant(distributions.kl_to_standard_normal)
    mean, logvar = _random_gaussian(5, (1000, 3), logvar_range=(-8.0, 8.0))
    value = kl(mean, logvar)
    chex.assert_shape(value, (1000,))
    chex.assert_type(value, jnp.float32)
    expected = _np_kl_diagonal(mean, logvar, np.zeros(3), np.zeros(3))
    atol = kl_diagonal_atol(mean, logvar)
    assert_close(value, expected, atol)
    # It is kl_diagonal_gaussians with p = N(0, I): the same bound holds.
    assert_close(
      distributions.kl_diagonal_gaussians(
        mean, logvar, jnp.zeros_like(mean), jnp.zeros_like(logvar)
      ),
      expected,
      atol,
    )
    self.assertTrue(np.all(np.asarray(value) >= 0.0))
    # Zero at the prior itself.
    np.testing.assert_array_equal(
      kl(jnp.zeros((1000, 3)), jnp.zeros((1000, 3))), np.zeros(1000)
    )
    # Near σ² = 1, expm1 keeps the tiny KL ½(expm1(ε) − ε) ≈ ε²/4 to within
    # the derived bound, a few percent of it. The naive σ² − 1 − log σ²
    # would be all rounding error: u = 6e-8 ≫ ε²/4 = 2.5e-9.
    tiny = np.zeros((1000, 3), np.float32)
    tiny[0, 0] = 1e-4
    eps = np.float64(tiny[0, 0])
    assert_close(
      kl(jnp.zeros((1000, 3)), jnp.asarray(tiny))[0],
      0.5 * (np.expm1(eps) - eps),
      kl_diagonal_atol(np.zeros(3), tiny[0]),
    )


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
    assert_close(
      value,
      _np_kl_diagonal(mean_q, logvar_q, mean_p, logvar_p),
      kl_diagonal_atol(mean_q, logvar_q, mean_p, logvar_p),
    )
    # KL ≥ 0 on random inputs, and KL(q ‖ q) = 0 exactly: every term is
    # expm1(0) − 0 + 0² · e^(−lp) = 0 in float32 too.
    self.assertTrue(np.all(np.asarray(value) >= 0.0))
    np.testing.assert_array_equal(
      kl(mean_q, logvar_q, mean_q, logvar_q), np.zeros(2000)
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_numerical_integral_in_one_dimension(self):
    """KL = ∫ q(z) [log q(z) − log p(z)] dz by the trapezoid rule, float64."""
    cases = np.asarray(
      [  # mean_q, logvar_q, mean_p, logvar_p
        [0.7, math.log(2.5), -0.4, math.log(0.8)],
        [-1.0, math.log(0.2), 0.5, math.log(1.7)],
        [1.3, math.log(0.5), 0.0, 0.0],
      ],
      np.float32,
    ).astype(np.float64)  # the float32 inputs, exactly
    numerical, float64_error = [], []
    for mean_q, logvar_q, mean_p, logvar_p in cases:
      std_q = math.exp(0.5 * logvar_q)
      grid = np.linspace(mean_q - 14 * std_q, mean_q + 14 * std_q, 200_001)
      log_q = -0.5 * (
        _LOG_2PI + logvar_q + (grid - mean_q) ** 2 / math.exp(logvar_q)
      )
      log_p = -0.5 * (
        _LOG_2PI + logvar_p + (grid - mean_p) ** 2 / math.exp(logvar_p)
      )
      integrand = np.exp(log_q) * (log_q - log_p)
      # The trapezoid rule is exact to exp(−2π²σ²/h²) on this smooth,
      # Gaussian-tailed integrand, the tails beyond 14σ are e^−98, and the
      # float64 sum of 200001 terms errs by sum_atol in float64.
      numerical.append(_trapezoid(integrand, grid))
      float64_error.append(
        sum_atol(grid.size, _trapezoid(np.abs(integrand), grid), eps=F64_EPS)
      )
    columns = (jnp.asarray(cases[:, i : i + 1], jnp.float32) for i in range(4))
    value = self.variant(distributions.kl_diagonal_gaussians)(*columns)
    chex.assert_shape(value, (3,))
    self.assertTrue(np.all(np.asarray(numerical) > 0.1))
    assert_close(
      value,
      numerical,
      kl_diagonal_atol(*(cases[:, i : i + 1] for i in range(4)))
      + np.asarray(float64_error),
    )


def _monte_carlo_kl_atol(z, per_sample, mean_q, logvar_q, mean_p, logvar_p):
  """Rounding bound of monte_carlo_kl: a float32 mean of S per-sample values.

  Each value log q(z) − log p(z) is two D-term sums and a difference. The
  mean of S such values adds sum_atol over the S actual values. Its division
  is the extra operation.
  """
  per_draw = sum_atol(
    z.shape[-1],
    _log_normal_magnitude(z, mean_q, logvar_q)
    + _log_normal_magnitude(z, mean_p, logvar_p),
    ops_per_term=7,
  )
  return sum_atol(z.shape[0], np.mean(np.abs(per_sample), axis=0)) + np.mean(
    per_draw, axis=0
  )


@pytest.mark.slow
class MonteCarloKlTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_agrees_with_closed_form_to_standard_normal(self):
    mean, logvar = _random_gaussian(14, (3, 4), logvar_range=(-1.5, 1.5))
    key = jax.random.key(1)
    estimate = self.variant(
      functools.partial(distributions.monte_carlo_kl, num_samples=_NUM_SAMPLES)
    )(key, mean, logvar)
    chex.assert_shape(estimate, (3,))
    chex.assert_type(estimate, jnp.float32)
    # The same draws z_s (same key), the per-sample terms in float64.
    z = np.asarray(
      distributions.sample_diagonal_gaussian(key, mean, logvar, _NUM_SAMPLES),
      np.float64,
    )  # [S, 3, 4]
    per_sample = _np_log_normal(z, mean, logvar) - _np_log_normal(
      z, np.zeros(4), np.zeros(4)
    )  # [S, 3]
    atol = _monte_carlo_kl_atol(z, per_sample, mean, logvar, 0.0, 0.0)
    assert_close(estimate, per_sample.mean(0), atol)
    assert_within_standard_errors(
      estimate,
      per_sample,
      _np_kl_diagonal(mean, logvar, np.zeros(4), np.zeros(4)),
      atol=atol,
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_agrees_with_closed_form_to_another_gaussian(self):
    mean_q, logvar_q = _random_gaussian(15, (4,), logvar_range=(-1.0, 1.0))
    mean_p, logvar_p = _random_gaussian(16, (4,), logvar_range=(-1.0, 1.0))
    log_prior = functools.partial(
      distributions.diagonal_gaussian_log_prob, mean=mean_p, logvar=logvar_p
    )
    key = jax.random.key(3)
    estimate = self.variant(
      functools.partial(
        distributions.monte_carlo_kl,
        num_samples=_NUM_SAMPLES,
        log_prior=log_prior,
      )
    )(key, mean_q, logvar_q)
    chex.assert_shape(estimate, ())
    z = np.asarray(
      distributions.sample_diagonal_gaussian(
        key, mean_q, logvar_q, _NUM_SAMPLES
      ),
      np.float64,
    )
    per_sample = _np_log_normal(z, mean_q, logvar_q) - _np_log_normal(
      z, mean_p, logvar_p
    )
    atol = _monte_carlo_kl_atol(
      z, per_sample, mean_q, logvar_q, mean_p, logvar_p
    )
    assert_close(estimate, per_sample.mean(0), atol)
    assert_within_standard_errors(
      estimate,
      per_sample,
      _np_kl_diagonal(mean_q, logvar_q, mean_p, logvar_p),
      atol=atol,
    )


def _bernoulli_atol(logits, x):
  """Rounding bound of bernoulli_log_likelihood = Σ_i [x_i ℓ_i − softplus(ℓ_i)].

  The sum's own rounding is over the n actual terms. Each term adds softplus
  (2 operations) and the difference (1) on |x ℓ| + softplus(ℓ); x ℓ is exact,
  since x is 0 or 1.
  """
  logits, x = np.asarray(logits, np.float64), np.asarray(x, np.float64)
  softplus = np.logaddexp(logits, 0.0)
  terms = x * logits - softplus
  return sum_atol(
    terms.size, np.sum(np.abs(terms)), ops_per_term=0
  ) + rounding_atol(3, np.sum(np.abs(x * logits) + softplus))


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
    assert_close(value, naive, _bernoulli_atol(logits, x))

    # Logits ±100, where the naive form takes log 0: confident and right is
    # log 1 = 0 (up to e^-100), confident and wrong is −100 per pixel. The
    # sum of 784 float32 terms near −940 may differ from the float64 value
    # by up to about 784 · eps · 940 ≈ 0.09 in any order of summation.
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
    assert_close(right, zeros_part, _bernoulli_atol(extreme, target))
    assert_close(
      wrong, zeros_part - 400.0, _bernoulli_atol(extreme, wrong_target)
    )
    grad = jax.grad(distributions.bernoulli_log_likelihood)(
      jnp.asarray(extreme), jnp.asarray(wrong_target)
    )
    chex.assert_tree_all_finite(grad)
    # x − sigmoid(ℓ) = ±(1 − e^-100): a sigmoid (2 operations) and a
    # difference (1) on |x| + sigmoid(ℓ) ≤ 2.
    assert_close(grad[0, :4], [-1.0, 1.0, -1.0, 1.0], rounding_atol(3, 2.0))


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
      v = float(np.float32(variance))  # the variance the function sees
      expected = np.sum(-0.5 * np.log(2 * np.pi * v) - 0.5 * diff**2 / v)
      # −½ Σ_i [log 2π + log v + (x_i − mean_i)² / v] over 30 pixels, each
      # term with ≤ 8 roundings of u (4 operations): log 2π, log v, +, −,
      # the square, ÷, +.
      magnitude = 0.5 * np.sum(_LOG_2PI + abs(math.log(v)) + diff**2 / v)
      assert_close(
        value, expected, sum_atol(diff.size, magnitude, ops_per_term=4)
      )


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
      z = distributions.sample_diagonal_gaussian(
        key, mean, logvar, _NUM_SAMPLES
      )
      return jnp.mean(jnp.sum(a * z**2 + c * z, axis=-1))

    key = jax.random.key(0)
    estimate = self.variant(jax.grad(objective, argnums=(0, 1)))(
      mean, logvar, key
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(estimate, (mean, logvar))
    # Per-sample gradients of the same draws z_s = μ + σ ε_s, in float64:
    # ∂f/∂μ = 2 a z + c and ∂f/∂logvar = (2 a z + c) σ ε / 2.
    z = np.asarray(
      distributions.sample_diagonal_gaussian(key, mean, logvar, _NUM_SAMPLES),
      np.float64,
    )  # [S, 4]
    a64, c64, mean64 = (np.asarray(v, np.float64) for v in (a, c, mean))
    df_dz = 2 * a64 * z + c64
    per_sample = (df_dz, df_dz * 0.5 * (z - mean64))
    expected = (
      2 * a64 * mean64 + c64,
      a64 * np.exp(np.asarray(logvar, np.float64)),
    )
    # The estimates are float32 sums over S per-sample gradients, each with
    # ≤ 14 roundings of u (7 operations). These are: the cotangent 1/S, × a,
    # × z, × c, +, and for logvar × exp(½ logvar) ε (3). There is also the
    # rounding of z, which the float64 values above take as exact and use as
    # z − μ for σε. The magnitudes are absolute-valued, with |z| + |z − μ|
    # bounding z and its rounding.
    z_abs = np.abs(z) + np.abs(z - mean64)
    df_dz_abs = 2 * np.abs(a64) * z_abs + np.abs(c64)
    magnitudes = (df_dz_abs, df_dz_abs * 0.5 * z_abs)
    for est, samples, exact, magnitude in zip(
      estimate, per_sample, expected, magnitudes
    ):
      atol = sum_atol(
        _NUM_SAMPLES, np.mean(np.abs(samples), axis=0)
      ) + rounding_atol(7, np.mean(magnitude, axis=0))
      assert_close(est, samples.mean(0), atol)
      assert_within_standard_errors(est, samples, exact, atol=atol)
