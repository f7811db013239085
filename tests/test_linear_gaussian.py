"""The linear-Gaussian VAE's closed forms against float64 numpy, and in use.

`vae_jax.math.linear_gaussian` gives log p(x), p(z|x), the ELBO and
KL(q ‖ p(z|x)) without sampling, for any W (not only orthogonal columns,
whose posterior is diagonal). Here they meet brute-force float64 linear
algebra, the sampling objectives of `vae_jax.math.objectives`, and the train
step, whose joint SGD on (φ, θ) closes the gap of the bound.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_linear_gaussian
from vae_jax import step as step_lib
from vae_jax.math import objectives
from vae_jax.math.linear_gaussian import LinearGaussianVAE
from vae_jax.math.model import VAEModel

_P, _D, _VARIANCE = 6, 3, 0.5


def _general_params(seed: int = 0):
  """Params with a W whose columns are far from orthogonal, and random q."""
  model = LinearGaussianVAE(_P, _D, _VARIANCE)
  params = model.init(jax.random.key(seed))
  params["decoder"]["weight"] = 2.0 * params["decoder"]["weight"]
  params["decoder"]["bias"] = jnp.linspace(-1.0, 1.0, _P)
  return model, params


def _np_posterior(w, b, variance, x):
  """(m, Σ) of p(z|x) by Bayes' rule for Gaussians, float64."""
  cov = np.linalg.inv(np.eye(w.shape[1]) + w.T @ w / variance)
  return (np.asarray(x, np.float64) - b) @ w @ cov / variance, cov


def _np_log_px(w, b, variance, x):
  cov = w @ w.T + variance * np.eye(w.shape[0])
  r = np.asarray(x, np.float64) - b
  maha = np.sum(r * np.linalg.solve(cov, r.T).T, axis=-1)
  return -0.5 * (
    w.shape[0] * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + maha
  )


def _np_kl(mean_q, var_q, mean_p, cov_p):
  """KL(N(μ_q, diag v_q) ‖ N(μ_p, Σ_p)), float64, per row."""
  precision = np.linalg.inv(cov_p)
  delta = mean_p - mean_q
  return 0.5 * (
    np.sum(np.diag(precision) * var_q, axis=-1)
    + np.sum(delta @ precision * delta, axis=-1)
    - cov_p.shape[0]
    + np.linalg.slogdet(cov_p)[1]
    - np.sum(np.log(var_q), axis=-1)
  )


def _as64(params):
  dec = params["decoder"]
  return (
    np.asarray(dec["weight"], np.float64),
    np.asarray(dec["bias"], np.float64),
  )


def _closed_form_case():
  """(model, params, x `[8, P]`, q_mean, q_logvar `[8, D]`): a general W."""
  model, params = _general_params()
  x = model.sample(jax.random.key(1), params, 8)  # [8, P]
  rng = np.random.default_rng(0)
  q_mean = jnp.asarray(rng.normal(size=(8, _D)), jnp.float32)
  q_logvar = jnp.asarray(rng.uniform(-2.0, 1.0, size=(8, _D)), jnp.float32)
  return model, params, x, q_mean, q_logvar


@pytest.fixture
def closed_form_case():
  return _closed_form_case()


class ClosedFormTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    self.model, self.params, self.x, _, _ = _closed_form_case()

  @chex.variants(with_jit=True, without_jit=True)
  def test_log_px_and_posterior_match_float64_linear_algebra(self):
    w, b = _as64(self.params)
    log_px = self.variant(self.model.log_px)(self.params, self.x)
    mean, cov = self.variant(self.model.posterior)(self.params, self.x)
    ref_mean, ref_cov = _np_posterior(w, b, _VARIANCE, self.x)
    np.testing.assert_allclose(
      log_px, _np_log_px(w, b, _VARIANCE, self.x), rtol=1e-5
    )
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-4, atol=1e-6)
    self.assertGreater(
      np.max(np.abs(ref_cov - np.diag(np.diag(ref_cov)))), 0.01
    )  # a posterior no diagonal q can match


def test_is_a_vae_model_that_compares_by_value(closed_form_case):
  model = closed_form_case[0]
  assert isinstance(model, VAEModel)
  assert model == LinearGaussianVAE(_P, _D, _VARIANCE)
  assert hash(model) == hash(LinearGaussianVAE(_P, _D, _VARIANCE))


def test_kl_to_posterior_matches_float64(closed_form_case):
  model, params, x, q_mean, q_logvar = closed_form_case
  w, b = _as64(params)
  kl = model.kl_to_posterior(params, x, q_mean, q_logvar)
  ref_mean, ref_cov = _np_posterior(w, b, _VARIANCE, x)
  expected = _np_kl(
    np.asarray(q_mean, np.float64),
    np.exp(np.asarray(q_logvar, np.float64)),
    ref_mean,
    ref_cov,
  )
  np.testing.assert_allclose(kl, expected, rtol=1e-4, atol=1e-5)


def test_log_px_is_the_elbo_plus_the_kl_to_the_posterior(closed_form_case):
  """log p(x) = ELBO(q) + KL(q ‖ p(z|x)) for any q, term by term exact."""
  model, params, x, q_mean, q_logvar = closed_form_case
  parts = model.closed_form_elbo(params, x, q_mean, q_logvar)
  kl = model.kl_to_posterior(params, x, q_mean, q_logvar)
  log_px = model.log_px(params, x)
  chex.assert_shape([parts.elbo, kl, log_px], (8,))
  np.testing.assert_allclose(
    parts.elbo, parts.log_likelihood - parts.kl, rtol=1e-6
  )
  np.testing.assert_allclose(parts.elbo + kl, log_px, rtol=1e-5, atol=1e-4)
  assert np.all(kl > 0)


@pytest.mark.slow
def test_closed_form_elbo_is_the_expectation_of_the_sampled_one(
  closed_form_case,
):
  """`objectives.elbo` with the encoder's q agrees within 4 standard errors."""
  model, params, x, _, _ = closed_form_case
  num_samples = 20_000
  x = x[0]
  mean, logvar = model.encode(params, x)
  exact = model.closed_form_elbo(params, x, mean, logvar)
  weights = jax.jit(
    functools.partial(objectives.log_weights, model, num_samples=num_samples)
  )(params, x, jax.random.key(2))
  weights = np.asarray(weights, np.float64)
  stderr = weights.std() / math.sqrt(num_samples)
  assert abs(weights.mean() - float(exact.elbo)) < 4 * stderr
  # The analytic-KL form differs only in how the KL is estimated.
  parts = objectives.elbo(
    model,
    params,
    x,
    jax.random.key(2),
    num_samples=num_samples,
    analytic_kl=True,
  )
  np.testing.assert_allclose(parts.kl, exact.kl, rtol=1e-6)


@pytest.mark.slow
def test_best_encoder_minimises_the_kl_and_is_exact_when_it_can_be(
  closed_form_case,
):
  model, params, x, q_mean, q_logvar = closed_form_case
  best = dict(params, encoder=model.best_encoder(params))
  mean, logvar = model.encode(best, x)
  post_mean, post_cov = model.posterior(params, x)
  np.testing.assert_allclose(mean, post_mean, rtol=1e-4, atol=1e-5)
  kl = functools.partial(model.kl_to_posterior, params, x)
  grads = jax.grad(lambda m, l: jnp.sum(kl(m, l)), argnums=(0, 1))(mean, logvar)
  chex.assert_trees_all_close(
    grads, (jnp.zeros_like(mean), jnp.zeros_like(logvar)), atol=1e-4
  )
  assert np.all(kl(mean, logvar) > 1e-3)  # W not orthogonal
  assert np.all(kl(mean, logvar) < kl(q_mean, q_logvar))
  # Orthogonal columns: the diagonal posterior, reached exactly.
  truth = model.ground_truth(jax.random.key(3))
  w = truth["decoder"]["weight"]
  gram = np.asarray(w.T @ w)
  np.testing.assert_allclose(gram, np.diag(np.diag(gram)), atol=1e-5)
  x = model.sample(jax.random.key(4), truth, 8)
  mean, logvar = model.encode(truth, x)
  np.testing.assert_allclose(
    model.kl_to_posterior(truth, x, mean, logvar), 0.0, atol=1e-5
  )
  np.testing.assert_allclose(
    np.exp(logvar[0]), np.diag(model.posterior(truth, x)[1]), rtol=1e-5
  )


def test_the_oracle_of_conftest_agrees(closed_form_case):
  """The float64 reference of the other tests is the same model."""
  model = closed_form_case[0]
  lg = make_linear_gaussian(_P, _D, _VARIANCE)
  decoder = {
    "weight": jnp.asarray(lg.weight, jnp.float32),
    "bias": jnp.asarray(lg.bias, jnp.float32),
  }
  params = {
    "encoder": model.best_encoder({"decoder": decoder}),
    "decoder": decoder,
  }
  x = lg.sample_x(np.random.default_rng(0), 5)
  x32 = jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(
    model.log_px(params, x32), lg.log_marginal(x), rtol=1e-5
  )
  mean, logvar = model.encode(params, x32)
  ref_mean, ref_logvar = lg.posterior(x)
  np.testing.assert_allclose(mean, ref_mean, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logvar, ref_logvar, rtol=1e-5)
  np.testing.assert_allclose(
    model.closed_form_elbo(params, x32, mean, logvar).log_likelihood,
    lg.expected_log_likelihood(x, mean, logvar),
    rtol=1e-5,
  )


@pytest.mark.slow
def test_samples_have_the_marginal_covariance(closed_form_case):
  model, params, _, _, _ = closed_form_case
  x = np.asarray(model.sample(jax.random.key(5), params, 50_000), np.float64)
  w, b = _as64(params)
  np.testing.assert_allclose(x.mean(0), b, atol=0.05)
  np.testing.assert_allclose(
    np.cov(x.T), w @ w.T + _VARIANCE * np.eye(_P), atol=0.08
  )


@pytest.mark.slow
def test_joint_sgd_on_phi_and_theta_closes_the_gap():
  """The train step raises log p(x; θ) and shrinks KL(q ‖ p(z|x)) together."""
  model = LinearGaussianVAE(_P, 2, _VARIANCE)
  truth = model.ground_truth(jax.random.key(0))
  x = model.sample(jax.random.key(1), truth, 512)
  config = step_lib.StepConfig(num_samples=1, analytic_kl=True)
  hparams = step_lib.Hyperparams(learning_rate=0.02, kl_weight=1.0)
  step = functools.partial(step_lib.train_step, model, config)

  @jax.jit
  def train(state):
    return jax.lax.scan(
      lambda s, _: step(s, x, hparams), state, None, length=600
    )[0]

  def scores(params):
    mean, logvar = model.encode(params, x)
    log_px = model.log_px(params, x)
    gap = model.kl_to_posterior(params, x, mean, logvar)
    return float(jnp.mean(log_px)), float(jnp.mean(gap))

  state = step_lib.init_train_state(model, config, jax.random.key(2))
  log_px0, gap0 = scores(state.params)
  state = train(state)
  log_px1, gap1 = scores(state.params)
  best = float(jnp.mean(model.log_px(truth, x)))
  assert log_px1 > log_px0 + 1.0
  assert abs(log_px1 - best) < 0.1, (log_px1, best)
  assert gap1 < 0.05 < gap0, (gap0, gap1)
