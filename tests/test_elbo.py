"""The ELBO against exact values, on a linear-Gaussian model.

With p(z) = N(0, I), p(x|z) = N(Wz + b, σ² I) and orthogonal columns of W,
the posterior p(z|x) is a diagonal Gaussian and log p(x) is known in closed
form (`make_linear_gaussian` in conftest.py), so the identity

    log p(x) − ELBO(q) = KL(q(z|x) ‖ p(z|x))

can be checked exactly, with the project's own `vae_jax.math.objectives.elbo`.
Exact checks allow the float32 rounding bound of the computation
(`LinearGaussian.elbo_atol`, tests/tolerances.py); Monte-Carlo checks allow
4 standard errors of the very draws, plus that bound.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from conftest import make_linear_gaussian
from tolerances import assert_close
from tolerances import assert_within_standard_errors
from tolerances import kl_diagonal_atol
from tolerances import rounding_atol
from vae_jax.math import distributions
from vae_jax.math import objectives as elbo_lib

_NUM_SAMPLES = 20_000


def _np_log_normal(z, mean, logvar):
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  return -0.5 * np.sum(
    math.log(2 * math.pi) + logvar + (z - mean) ** 2 / np.exp(logvar), axis=-1
  )


def _draws(keys, mean, logvar, num_samples):
  """The z draws of `elbo` with each key: `[K, num_samples, D]`."""
  sample = functools.partial(
    distributions.sample_diagonal_gaussian, num_samples=num_samples
  )
  in_axes = (0, 0, 0) if jnp.ndim(mean) == 2 else (0, None, None)
  return jax.vmap(sample, in_axes)(keys, mean, logvar)


def _assert_elbo_is_the_difference(parts):
  """elbo = log_likelihood − kl, rounded once to float32."""
  log_lik, kl = (
    np.asarray(a, np.float64) for a in (parts.log_likelihood, parts.kl)
  )
  assert_close(
    parts.elbo, log_lik - kl, rounding_atol(1, np.abs(log_lik) + np.abs(kl))
  )


def _q_params(mean, logvar):
  return {
    "mean": jnp.asarray(mean, jnp.float32),
    "logvar": jnp.asarray(logvar, jnp.float32),
  }


def _example():
  """The model of every test here, and its example x: float64 `[P]`."""
  lg = make_linear_gaussian()
  return lg, lg.sample_x(np.random.default_rng(42), 1)[0]


@pytest.fixture(scope="module")
def example():
  return _example()


def test_closed_form_gap_is_kl_to_the_posterior(example):
  """log p(x) − [E_q log p(x|z) − KL(q ‖ p(z))] = KL(q ‖ p(z|x)), exactly."""
  lg, x = example
  log_px = float(lg.log_marginal(x))
  rng = np.random.default_rng(0)
  q_mean = rng.normal(size=(8, 3)) * 1.5
  q_logvar = rng.uniform(-2.0, 1.0, size=(8, 3))
  post_mean, post_logvar = lg.posterior(x)
  expected_ll = lg.expected_log_likelihood(x, q_mean, q_logvar)
  kl_prior = distributions.kl_to_standard_normal(
    jnp.asarray(q_mean, jnp.float32), jnp.asarray(q_logvar, jnp.float32)
  )
  closed_form_elbo = expected_ll - np.asarray(kl_prior, np.float64)
  kl_posterior = distributions.kl_diagonal_gaussians(
    *(
      jnp.asarray(a, jnp.float32)
      for a in (
        q_mean,
        q_logvar,
        np.broadcast_to(post_mean, (8, 3)),
        np.broadcast_to(post_logvar, (8, 3)),
      )
    )
  )
  # The two KLs are float32, from float64 inputs rounded once; the rest is
  # float64, whose rounding (~1e-15) is negligible.
  assert_close(
    log_px - closed_form_elbo,
    kl_posterior,
    kl_diagonal_atol(q_mean, q_logvar)
    + kl_diagonal_atol(q_mean, q_logvar, post_mean, post_logvar),
  )
  assert np.all(log_px - closed_form_elbo > 0)


class LinearGaussianElboTest(chex.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.lg, cls.x = _example()  # x: float64 [P]
    cls.x32 = jnp.asarray(cls.x, jnp.float32)
    cls.log_px = float(cls.lg.log_marginal(cls.x))
    # An arbitrary diagonal q, away from the posterior, of float32 values:
    # the float64 references see the model's very inputs.
    cls.q_mean = np.float32([0.8, -1.1, 0.4]).astype(np.float64)
    cls.q_logvar = np.float32([-0.5, 0.3, -1.2]).astype(np.float64)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
    ("analytic_kl", True), ("monte_carlo_kl", False)
  )
  @pytest.mark.slow
  def test_elbo_matches_closed_form_in_expectation(self, analytic_kl):
    """ELBO(q) averaged over many z agrees with the closed form within 4 s.e."""
    model = self.lg.model()
    key = jax.random.key(7)
    params = _q_params(self.q_mean, self.q_logvar)
    parts = self.variant(
      functools.partial(
        elbo_lib.elbo, model, num_samples=_NUM_SAMPLES, analytic_kl=analytic_kl
      )
    )(params, self.x32, key)
    self.assertIsInstance(parts, elbo_lib.ElboParts)
    chex.assert_shape(list(parts), ())
    chex.assert_type(list(parts), jnp.float32)
    _assert_elbo_is_the_difference(parts)

    # The per-sample terms of the same draws (same key), in float64.
    z = np.asarray(
      model.sample_posterior(params, self.x32, key, _NUM_SAMPLES)[0]["z"],
      np.float64,
    )
    log_lik = self.lg.log_likelihood_np(self.x, z)  # [S]
    kl_closed = 0.5 * np.sum(
      self.q_mean**2 + np.exp(self.q_logvar) - 1 - self.q_logvar
    )
    if analytic_kl:
      kl_per_sample = np.full_like(log_lik, kl_closed)
    else:
      kl_per_sample = _np_log_normal(
        z, self.q_mean, self.q_logvar
      ) - _np_log_normal(z, np.zeros(3), np.zeros(3))
    per_sample = log_lik - kl_per_sample
    atol = self.lg.elbo_atol(self.x, z, self.q_mean, self.q_logvar, analytic_kl)
    assert_close(parts.elbo, per_sample.mean(), atol)
    assert_close(
      parts.kl,
      kl_per_sample.mean(),
      self.lg.elbo_atol(
        self.x, z, self.q_mean, self.q_logvar, analytic_kl, part="kl"
      ),
    )

    closed_form = (
      self.lg.expected_log_likelihood(self.x, self.q_mean, self.q_logvar)
      - kl_closed
    )
    assert_within_standard_errors(
      parts.elbo, per_sample, closed_form, atol=atol
    )
    # …and the gap is the KL to the true posterior, a float32 KL here.
    post_mean, post_logvar = self.lg.posterior(self.x)
    kl_posterior = float(
      distributions.kl_diagonal_gaussians(
        *(
          jnp.asarray(a, jnp.float32)
          for a in (self.q_mean, self.q_logvar, post_mean, post_logvar)
        )
      )
    )
    self.assertGreater(kl_posterior, 1.0)  # q is far from the posterior
    assert_within_standard_errors(
      parts.elbo,
      per_sample,
      self.log_px - kl_posterior,
      atol=atol
      + kl_diagonal_atol(self.q_mean, self.q_logvar, post_mean, post_logvar),
    )

  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.slow
  def test_elbo_of_the_true_posterior_is_log_px_for_every_sample(self):
    """log p(x|z) + log p(z) − log q(z|x) = log p(x) for all z if q = p(z|x)."""
    model = self.lg.model()
    params = _q_params(*self.lg.posterior(self.x))
    single = self.variant(
      functools.partial(elbo_lib.elbo, model, num_samples=1, analytic_kl=False)
    )
    keys = jax.random.split(jax.random.key(3), 500)
    parts = jax.vmap(single, (None, None, 0))(params, self.x32, keys)
    chex.assert_shape(parts.elbo, (500,))
    # The samples differ, the per-sample ELBO does not, up to the rounding of
    # each one (q's float32 parameters included).
    self.assertGreater(float(np.std(parts.log_likelihood)), 0.1)
    z = _draws(keys, params["mean"], params["logvar"], 1)  # [500, 1, D]
    assert_close(
      parts.elbo,
      np.full(500, self.log_px),
      self.lg.elbo_atol(
        self.x, z, params["mean"], params["logvar"], analytic_kl=False
      ),
    )

  @chex.variants(with_jit=True, without_jit=True)
  def test_elbo_of_the_true_posterior_analytic_kl_in_expectation(self):
    """With the closed-form KL the identity holds on average, not per sample."""
    model = self.lg.model()
    params = _q_params(*self.lg.posterior(self.x))
    key = jax.random.key(4)
    parts = self.variant(
      functools.partial(
        elbo_lib.elbo, model, num_samples=_NUM_SAMPLES, analytic_kl=True
      )
    )(params, self.x32, key)
    z = np.asarray(
      model.sample_posterior(params, self.x32, key, _NUM_SAMPLES)[0]["z"],
      np.float64,
    )
    per_sample = self.lg.log_likelihood_np(self.x, z) - float(parts.kl)
    self.assertGreater(per_sample.std(), 0.1)  # not exact sample by sample
    assert_within_standard_errors(
      parts.elbo,
      per_sample,
      self.log_px,
      atol=self.lg.elbo_atol(
        self.x, z, params["mean"], params["logvar"], analytic_kl=True
      ),
    )

  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.slow
  def test_batch_elbo_with_exact_posterior_encoder(self):
    """An encoder returning p(z|x) makes every example's ELBO equal log p(x)."""
    model = self.lg.exact_posterior_model()
    x = self.lg.sample_x(np.random.default_rng(5), 16)  # [16, P]
    x32 = jnp.asarray(x, jnp.float32)
    key = jax.random.key(9)
    batch = self.variant(
      functools.partial(
        elbo_lib.batch_elbo, model, num_samples=2, analytic_kl=False
      )
    )
    parts = batch(None, x32, key)
    chex.assert_shape(list(parts), (16,))
    chex.assert_type(list(parts), jnp.float32)
    # One independent key per example, split(rng, B), as documented.
    keys = jax.random.split(key, 16)
    z = _draws(keys, *model.encode(None, x32), 2)  # [16, 2, D]
    atol = self.lg.elbo_atol(
      x,
      z,
      *self.lg.posterior(x),
      analytic_kl=False,
      exact_posterior_encoder=True,
    )
    assert_close(parts.elbo, self.lg.log_marginal(x), atol)
    # Example 7 alone, another program: each within the bound of the exact.
    one = jax.jit(
      functools.partial(
        elbo_lib.elbo, model, None, num_samples=2, analytic_kl=False
      )
    )(x32[7], keys[7])
    for batched, alone in zip(parts, one):
      assert_close(batched[7], alone, 2 * atol[7])
    self.assertGreater(float(np.std(parts.log_likelihood)), 0.1)
