"""A two-layer hierarchy whose log p(x) is exact, through the objectives.

`vae_jax.math.linear_gaussian_hierarchy.TwoLayerLinearGaussian` (z2 → z1 → x,
all linear-Gaussian) runs on `GaussianLayers`, the base of the hierarchical
models. Its joint p(z2, z1, x) is one Gaussian, so the float64 oracle here
has log p(x), p(z|x), the joint q(z1, z2|x) and every KL in closed form:
the library's log weights of its own draws, the importance-sampled
log p(x), the ELBO identity log p(x) = ELBO + KL(q ‖ p(z|x)) and the
per-layer closed-form KL are checked against them, the estimates within
Monte-Carlo errors measured on the same draws (tests/tolerances.py).
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import F32_EPS, assert_close, assert_within_standard_errors
from tolerances import kl_diagonal_atol, rounding_atol
from vae_jax.math import objectives
from vae_jax.math.linear_gaussian_hierarchy import TwoLayerLinearGaussian
from vae_jax.math.model import VAEModel

_P, _D1, _D2, _VARIANCE = 6, 3, 2, 0.5
_LOG_2PI = math.log(2 * math.pi)
_K = 20_000


def _gaussian_kl(mean_q, cov_q, mean_p, cov_p):
  """KL(N(μ_q, Σ_q) ‖ N(μ_p, Σ_p)), float64."""
  precision = np.linalg.inv(cov_p)
  delta = mean_p - mean_q
  return 0.5 * (
    np.trace(precision @ cov_q)
    + delta @ precision @ delta
    - len(mean_q)
    + np.linalg.slogdet(cov_p)[1]
    - np.linalg.slogdet(cov_q)[1]
  )


def _diag_log_density(z, mean, mean_abs, num_terms, logvar):
  """log N(z; μ, diag e^ℓ) `[K]` in float64, and a bound on the float32
  rounding of the library's: μ a `num_terms`-term sum of absolute-valued
  evaluation `mean_abs`, then z − μ, the standardisation, the square and
  the D-term sum (first order, tests/tolerances.py)."""
  z, mean, mean_abs = (np.broadcast_to(a, z.shape) for a in (z, mean, mean_abs))
  logvar = np.broadcast_to(logvar, z.shape)
  s = (z - mean) * np.exp(-0.5 * logvar)
  err_r = (num_terms + 1) * F32_EPS * mean_abs + F32_EPS * (
    np.abs(z) + np.abs(mean)
  )
  err_s = err_r * np.exp(-0.5 * logvar) + 2 * F32_EPS * np.abs(s)
  d = z.shape[-1]
  atol = 0.5 * np.sum(2 * np.abs(s) * err_s + F32_EPS * s**2, axis=-1) + (
    0.5 * (d + 1) * F32_EPS * np.sum(_LOG_2PI + np.abs(logvar) + s**2, axis=-1)
  )
  return -0.5 * np.sum(_LOG_2PI + logvar + s**2, axis=-1), atol


class _Oracle:
  """The model's Gaussians in float64 numpy, from its float32 params."""

  def __init__(self, params):
    as64 = lambda a: np.asarray(a, np.float64)
    q2, q1 = params["encoder"]["z2"], params["encoder"]["z1"]
    p1, px = params["decoder"]["z1"], params["decoder"]["x"]
    self.b_, self.c_, self.l2 = (
      as64(q2[k]) for k in ("weight", "bias", "logvar")
    )
    self.c1, self.e1, self.bias1, self.l1 = (
      as64(q1[k]) for k in ("weight_x", "weight_z", "bias", "logvar")
    )
    self.a_, self.a0, self.lp = (
      as64(p1[k]) for k in ("weight", "bias", "logvar")
    )
    self.w, self.b = as64(px["weight"]), as64(px["bias"])
    eye = np.eye(_D2)
    # z = (z2, z1) under p: mean (0, a), covariance [[I, Aᵀ], [A, AAᵀ + S]].
    self.prior_mean = np.concatenate([np.zeros(_D2), self.a0])
    self.prior_cov = np.block(
      [
        [eye, self.a_.T],
        [self.a_, self.a_ @ self.a_.T + np.diag(np.exp(self.lp))],
      ]
    )
    self.h = np.concatenate([np.zeros((_P, _D2)), self.w], axis=1)  # x = Hz

  def log_px(self, x):
    cov = self.h @ self.prior_cov @ self.h.T + _VARIANCE * np.eye(_P)
    r = x - self.h @ self.prior_mean - self.b
    return -0.5 * (
      _P * _LOG_2PI + np.linalg.slogdet(cov)[1] + r @ np.linalg.solve(cov, r)
    )

  def posterior(self, x):
    """p(z|x) = N(m, Σ) over z = (z2, z1), by Gaussian conditioning."""
    prior_precision = np.linalg.inv(self.prior_cov)
    cov = np.linalg.inv(prior_precision + self.h.T @ self.h / _VARIANCE)
    mean = cov @ (
      prior_precision @ self.prior_mean + self.h.T @ (x - self.b) / _VARIANCE
    )
    return mean, cov

  def q_joint(self, x):
    """q(z2, z1|x) = N(μ, Σ): z1 = C x + E z2 + e + noise, linear in z2."""
    m2 = self.b_ @ x + self.c_
    m1 = self.c1 @ x + self.e1 @ m2 + self.bias1
    v2, v1 = np.diag(np.exp(self.l2)), np.diag(np.exp(self.l1))
    cov = np.block(
      [[v2, v2 @ self.e1.T], [self.e1 @ v2, self.e1 @ v2 @ self.e1.T + v1]]
    )
    return np.concatenate([m2, m1]), cov

  def log_weights(self, x, z2, z1):
    """log w_k of draws `[K, D]` in float64, and their rounding bounds."""
    x_abs = np.abs(x)
    m2 = self.b_ @ x + self.c_
    q2 = _diag_log_density(
      z2, m2, np.abs(self.b_) @ x_abs + np.abs(self.c_), _P + 1, self.l2
    )
    m1 = self.c1 @ x + z2 @ self.e1.T + self.bias1
    q1 = _diag_log_density(
      z1,
      m1,
      np.abs(self.c1) @ x_abs
      + np.abs(z2) @ np.abs(self.e1).T
      + np.abs(self.bias1),
      _P + _D2 + 1,
      self.l1,
    )
    p2 = _diag_log_density(z2, 0.0, 0.0, 0, 0.0)
    p1 = _diag_log_density(
      z1,
      z2 @ self.a_.T + self.a0,
      np.abs(z2) @ np.abs(self.a_).T + np.abs(self.a0),
      _D2 + 1,
      self.lp,
    )
    lik = _diag_log_density(
      np.broadcast_to(x, (len(z1), _P)),
      z1 @ self.w.T + self.b,
      np.abs(z1) @ np.abs(self.w).T + np.abs(self.b),
      _D1 + 1,
      math.log(_VARIANCE),
    )
    terms = (lik, p2, p1, q2, q1)
    value = lik[0] + p2[0] + p1[0] - q2[0] - q1[0]
    atol = sum(t[1] for t in terms) + rounding_atol(
      4, sum(np.abs(t[0]) for t in terms)
    )
    return value, atol

  def kl_per_layer(self, x):
    """E_q KL of each layer per dimension, exactly: z2 against N(0, I);
    z1 against p(z1|z2), whose mean gap δ + G z2 (G = E − A) is linear in
    z2, so E(δ + G z2)² = (δ + G μ_2)² + diag(G V_2 Gᵀ)."""
    m2, v2 = self.b_ @ x + self.c_, np.exp(self.l2)
    top = 0.5 * (m2**2 + np.expm1(self.l2) - self.l2)
    g = self.e1 - self.a_
    gap = self.c1 @ x + self.bias1 - self.a0 + g @ m2
    gap_sq = gap**2 + np.diag(g @ np.diag(v2) @ g.T)
    r = self.l1 - self.lp
    return {
      "z2": top,
      "z1": 0.5 * (np.expm1(r) - r + gap_sq * np.exp(-self.lp)),
    }

  def kl_z1_per_draw(self, x, z2):
    """KL(q(z1|x, z2_k) ‖ p(z1|z2_k)) per draw and dimension, `[K, D1]`."""
    gap = (self.c1 @ x + self.bias1 - self.a0) + z2 @ (self.e1 - self.a_).T
    r = self.l1 - self.lp
    return 0.5 * (np.expm1(r) - r + gap**2 * np.exp(-self.lp))


def _case():
  """The model, params with q near (not at) p(z|x), x, and the oracle.

  q takes the posterior's affine means (shifted) and the diagonals of its
  marginal and conditional covariances, widened by 1.3: the importance
  weights p(x, z)/q(z|x) then have a finite variance (2Σ_p⁻¹ − Σ_q⁻¹ ≻ 0).
  """
  model = TwoLayerLinearGaussian(_P, _D1, _D2, _VARIANCE)
  params = model.init(jax.random.key(0))
  rng = np.random.default_rng(0)
  params["decoder"]["z1"] = {
    "weight": jnp.asarray(rng.normal(size=(_D1, _D2)), jnp.float32),
    "bias": jnp.asarray(rng.normal(size=_D1), jnp.float32),
    "logvar": jnp.asarray(rng.uniform(-1.0, 0.5, size=_D1), jnp.float32),
  }
  params["decoder"]["x"] = {
    "weight": jnp.asarray(rng.normal(size=(_P, _D1)), jnp.float32),
    "bias": jnp.asarray(rng.normal(size=_P), jnp.float32),
  }
  oracle = _Oracle(params)
  # p(z|x)'s mean is M x + m_0; its covariance Σ does not depend on x.
  m0, cov = oracle.posterior(np.zeros(_P))
  slope = np.stack([oracle.posterior(e)[0] - m0 for e in np.eye(_P)], 1)
  s22, s12, s11 = cov[:_D2, :_D2], cov[_D2:, :_D2], cov[_D2:, _D2:]
  e = s12 @ np.linalg.inv(s22)  # E[z1 | z2, x] = … + E z2
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  params["encoder"] = {
    "z2": {
      "weight": f32(slope[:_D2]),
      "bias": f32(m0[:_D2] + 0.2),
      "logvar": f32(np.log(1.3 * np.diag(s22))),
    },
    "z1": {
      "weight_x": f32(slope[_D2:] - e @ slope[:_D2]),
      "weight_z": f32(e),
      "bias": f32(m0[_D2:] - e @ m0[:_D2] - 0.1),
      "logvar": f32(np.log(1.3 * np.diag(s11 - e @ s12.T))),
    },
  }
  oracle = _Oracle(params)
  x = (
    np.asarray(
      model.sample_prior(params, jax.random.key(1), 1)["z1"][0], np.float64
    )
    @ oracle.w.T
    + oracle.b
    + 0.3
  )
  return model, params, x, oracle


def _hierarchy():
  """(model, params, x, x32, oracle, rng) of `_case`, x in float32 and as the
  float64 values of those float32 numbers (what the model sees)."""
  model, params, x, oracle = _case()
  x32 = jnp.asarray(x, jnp.float32)
  return (
    model,
    params,
    np.asarray(x32, np.float64),
    x32,
    oracle,
    jax.random.key(2),
  )


@pytest.fixture
def hierarchy():
  return _hierarchy()


@pytest.mark.slow
class TwoLayerLinearGaussianTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    (self.model, self.params, self.x, self.x32, self.oracle, self.rng) = (
      _hierarchy()
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_log_weights_of_the_draws_are_the_oracles(self):
    @self.variant
    def draws(params, x, rng):
      z, log_q = self.model.sample_posterior(params, x, rng, 64)
      log_likelihood, log_prior = self.model.log_joint(params, x, z)
      return z, log_likelihood + log_prior - log_q

    z, weights = draws(self.params, self.x32, self.rng)
    chex.assert_shape(
      [z["z2"], z["z1"], weights], [(64, _D2), (64, _D1), (64,)]
    )
    want, atol = self.oracle.log_weights(
      self.x, *(np.asarray(z[n], np.float64) for n in ("z2", "z1"))
    )
    assert_close(weights, want, atol)


def test_is_a_hashable_vae_model_with_the_top_layer_first(hierarchy):
  model = hierarchy[0]
  assert isinstance(model, VAEModel)
  assert hash(model) == hash(TwoLayerLinearGaussian(_P, _D1, _D2, _VARIANCE))
  assert list(model.latent_shapes) == ["z2", "z1"]


def test_log_px_is_the_joint_gaussians_marginal(hierarchy):
  model, params, x, x32, oracle, _ = hierarchy
  cov = oracle.h @ oracle.prior_cov @ oracle.h.T + _VARIANCE * np.eye(_P)
  want = oracle.log_px(x)
  # slogdet and solve in float32: relative errors of order P·cond·eps.
  atol = rounding_atol(_P * np.linalg.cond(cov), abs(want) + _P * _LOG_2PI)
  assert_close(model.log_px(params, x32), want, atol)


@pytest.mark.slow
def test_importance_sampling_converges_to_the_exact_log_px(hierarchy):
  model, params, x, x32, oracle, rng = hierarchy
  q_mean, q_cov = oracle.q_joint(x)
  _, post_cov = oracle.posterior(x)
  assert (
    np.linalg.eigvalsh(2 * np.linalg.inv(post_cov) - np.linalg.inv(q_cov)).min()
    > 0
  )
  estimate = jax.jit(
    objectives.importance_sampled_log_px, static_argnums=(0, 4, 5)
  )(model, params, x32, rng, _K, 2000)
  z, _ = model.sample_posterior(params, x32, rng, _K)
  weights, atol = oracle.log_weights(
    x, *(np.asarray(z[n], np.float64) for n in ("z2", "z1"))
  )
  # log of a mean of K weights: s.e. ≈ std(w)/(√K mean(w)) (delta method),
  # bias ≈ −s.e.²/2; rounding: each weight's, the K-term sum, the log.
  ratios = np.exp(weights - weights.max())
  rel_se = ratios.std(ddof=1) / (math.sqrt(_K) * ratios.mean())
  log_px = oracle.log_px(x)
  tolerance = (
    4 * rel_se
    + rel_se**2
    + atol.max()
    + (_K + 4) * F32_EPS
    + rounding_atol(2, abs(log_px))
  )
  assert_close(estimate, log_px, tolerance)
  assert rel_se < 0.01  # a test that can tell


@pytest.mark.slow
def test_log_px_is_the_elbo_plus_the_kl_to_the_posterior(hierarchy):
  model, params, x, x32, oracle, rng = hierarchy
  q_mean, q_cov = oracle.q_joint(x)
  post_mean, post_cov = oracle.posterior(x)
  kl = _gaussian_kl(q_mean, q_cov, post_mean, post_cov)
  assert kl > 0.05  # q is not the posterior
  weights = jax.jit(
    functools.partial(objectives.log_weights, model, num_samples=_K)
  )(params, x32, rng)
  z, _ = model.sample_posterior(params, x32, rng, _K)
  _, atol = oracle.log_weights(
    x, *(np.asarray(z[n], np.float64) for n in ("z2", "z1"))
  )
  elbo = objectives.elbo(model, params, x32, rng, _K, analytic_kl=False).elbo
  weights = np.asarray(weights, np.float64)
  mean_atol = atol.mean() + rounding_atol(_K + 1, np.abs(weights).mean())
  assert_close(elbo, weights.mean(), 2 * mean_atol)
  assert_within_standard_errors(
    elbo, weights, oracle.log_px(x) - kl, atol=2 * mean_atol
  )


@pytest.mark.slow
def test_the_closed_form_kl_per_layer_is_its_expectation(hierarchy):
  model, params, x, x32, oracle, rng = hierarchy
  z, log_q, kl = jax.jit(model.sample_posterior_with_kl, static_argnums=(3,))(
    params, x32, rng, _K
  )
  chex.assert_shape([kl["z2"], kl["z1"]], [(_D2,), (_D1,)])
  exact = oracle.kl_per_layer(x)
  # The decomposition over layers is KL(q(z|x) ‖ p(z)) of the joints.
  q_mean, q_cov = oracle.q_joint(x)
  total = _gaussian_kl(q_mean, q_cov, oracle.prior_mean, oracle.prior_cov)
  np.testing.assert_allclose(
    sum(v.sum() for v in exact.values()), total, rtol=1e-9
  )
  # z2 has no parents: its KL is the closed form of its (μ, logvar).
  mean, logvar = model.posterior_stats(params, x32, rng)["z2"]
  assert_close(
    kl["z2"],
    exact["z2"],
    kl_diagonal_atol(np.asarray(mean)[:, None], np.asarray(logvar)[:, None])
    + rounding_atol(
      2 * _P + 4,
      np.abs(mean) * (np.abs(oracle.b_) @ np.abs(x) + np.abs(oracle.c_)),
    ),
  )
  # z1: the mean over the K draws of z2 of the conditional closed form.
  per_draw = oracle.kl_z1_per_draw(x, np.asarray(z["z2"], np.float64))
  assert_within_standard_errors(
    kl["z1"],
    per_draw,
    exact["z1"],
    atol=rounding_atol(_K + 30, per_draw.mean(0)),
  )
  # The Monte-Carlo KL of the same draws agrees within its own errors.
  _, log_prior = model.log_joint(params, x32, z)
  mc = np.asarray(log_q, np.float64) - np.asarray(log_prior, np.float64)
  assert_within_standard_errors(
    mc.mean(), mc, total, atol=rounding_atol(_K + 30, np.abs(mc).mean())
  )


def test_posterior_stats_condition_on_draw_zero(hierarchy):
  model, params, x, x32, oracle, rng = hierarchy
  stats = model.posterior_stats(params, x32, rng)
  z, _ = model.sample_posterior(params, x32, rng, 1)
  z2 = np.asarray(z["z2"][0], np.float64)
  want = oracle.c1 @ x + oracle.e1 @ z2 + oracle.bias1
  atol = rounding_atol(
    _P + _D2 + 2,
    np.abs(oracle.c1) @ np.abs(x)
    + np.abs(oracle.e1) @ np.abs(z2)
    + np.abs(oracle.bias1),
  )
  assert_close(stats["z1"][0], want, atol)
  assert_close(stats["z1"][1], oracle.l1, 0.0)


@pytest.mark.slow
def test_ancestral_prior_samples_have_the_prior_moments(hierarchy):
  model, params, _, _, oracle, _ = hierarchy
  num = 20_000
  z = jax.jit(model.sample_prior, static_argnums=(2,))(
    params, jax.random.key(3), num
  )
  chex.assert_shape([z["z2"], z["z1"]], [(num, _D2), (num, _D1)])
  joint = np.concatenate(
    [np.asarray(z["z2"], np.float64), np.asarray(z["z1"], np.float64)], axis=1
  )
  assert_within_standard_errors(joint.mean(0), joint, oracle.prior_mean)
  centred = joint - oracle.prior_mean
  products = centred[:, :, None] * centred[:, None, :]
  assert_within_standard_errors(products.mean(0), products, oracle.prior_cov)
