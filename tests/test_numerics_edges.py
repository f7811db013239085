"""Numbers at the edges of float32: finite ELBOs and gradients.

An encoder may output |μ| = 1e4 or logvar = ±50 and a decoder ±∞ logits long
before training has gone wrong for good; the bounds and their gradients must
stay finite there (the train step's own check then decides). Exact values
come from the formulas in float64.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.math import distributions
from vae_jax.math import objectives
from vae_jax.math.gaussian_vae import GaussianVAE

_LOG_2PI = math.log(2 * math.pi)
_F32 = np.finfo(np.float32)


def test_gaussian_log_prob_at_the_mean_with_a_tiny_variance():
  # exp(−logvar) overflows float32 for logvar < −88.7: (z − μ)² e^{−logvar}
  # was 0·∞ = NaN at z == μ; its limit is 0.
  mean = jnp.array([1.0, -2.0, 3.0])
  logvar = jnp.array([-100.0, -200.0, -50.0])
  value, grads = jax.value_and_grad(
    distributions.diagonal_gaussian_log_prob, argnums=(0, 1, 2)
  )(mean, mean, logvar)
  expected = -0.5 * np.sum(_LOG_2PI + np.asarray(logvar, np.float64))
  # Three float32 terms and a sum: a few roundings of |expected|.
  np.testing.assert_allclose(value, expected, rtol=8 * _F32.eps)
  chex.assert_tree_all_finite(grads)
  np.testing.assert_array_equal(grads[2], -0.5)  # ∂/∂logvar = −½ at z == μ


def test_gaussian_log_prob_off_the_mean_is_minus_infinity_not_nan():
  value = distributions.diagonal_gaussian_log_prob(
    jnp.array([1.0]), jnp.array([0.0]), jnp.array([-200.0])
  )
  assert float(value) == -np.inf  # the density underflows: log 0


@pytest.mark.parametrize("x", [0.0, 1.0])
def test_bernoulli_with_infinite_logits(x):
  logits = jnp.array([jnp.inf, -jnp.inf, 3.0, 0.0])
  target = jnp.full(4, x)
  value, grad = jax.value_and_grad(distributions.bernoulli_log_likelihood)(
    logits, target
  )
  chex.assert_tree_all_finite((value, grad))
  finite = x * 3.0 - math.log1p(math.exp(3.0)) - math.log(2.0)
  # One of ±∞ is certain and wrong: a very negative, finite term.
  assert float(value) < -1e30
  # The finite pixels keep their exact value; a right ±∞ pixel adds 0.
  right = distributions.bernoulli_log_likelihood(
    jnp.array([jnp.inf if x else -jnp.inf, 3.0, 0.0]), jnp.full(3, x)
  )
  np.testing.assert_allclose(right, finite, rtol=4 * _F32.eps)


@dataclasses.dataclass(frozen=True)
class _Extreme(GaussianVAE):
  """q(z|x) = N(μ, diag exp(logvar)) given directly as params; a linear
  Bernoulli decoder with weights 1e-3 (logits ~ 10 at |z| = 1e4)."""

  latent_dim: int = 2
  event_shape: tuple = (16,)

  def init_networks(self, rng):
    del rng
    return {
      "mean": jnp.zeros(2),
      "logvar": jnp.zeros(2),
      "w": jnp.full((2, 16), 1e-3),
      "b": jnp.zeros(16),
    }

  def encode(self, params, x):
    del x
    return params["mean"], params["logvar"]

  def decode(self, params, z):
    return z @ params["w"] + params["b"]

  def log_likelihood(self, decoder_output, x):
    return distributions.bernoulli_log_likelihood(decoder_output, x)

  def mean_of_output(self, decoder_output):
    return jax.nn.sigmoid(decoder_output)


@pytest.mark.slow
@pytest.mark.parametrize("mean", [1e4, -1e4])
@pytest.mark.parametrize("logvar", [50.0, -50.0])
@pytest.mark.parametrize("pixels", [0.0, 1.0])
def test_extreme_posteriors_give_finite_bounds_and_gradients(
  mean, logvar, pixels
):
  model = _Extreme()
  params = dict(
    model.init(None), mean=jnp.full(2, mean), logvar=jnp.full(2, logvar)
  )
  x = jnp.full((4, 16), pixels)  # all-zero or all-one images
  rng = jax.random.key(0)

  def bounds(params):
    analytic = objectives.batch_elbo(model, params, x, rng, num_samples=3)
    sampled = objectives.batch_elbo(
      model, params, x, rng, num_samples=3, analytic_kl=False
    )
    iwae = objectives.per_example(
      objectives.iwae_bound, model, params, x, rng, num_samples=3
    )
    return (
      jnp.mean(analytic.elbo),
      jnp.mean(sampled.elbo),
      jnp.mean(iwae),
      jnp.mean(sampled.kl),
      jnp.mean(analytic.kl),
    )

  values = bounds(params)
  chex.assert_tree_all_finite(values)
  for i in range(3):
    chex.assert_tree_all_finite(jax.grad(lambda p: bounds(p)[i])(params))
  # The sampled KL, mean of log q − log p, against the closed form
  # ½ Σ (μ² + σ² − 1 − logvar): with logvar = −50 (σ ≈ 1e-11) they differ
  # by O(1) nats of Monte-Carlo noise on ~1e8, below float32's resolution
  # there; with logvar = 50 the noise in σ² ε² is all of it.
  sampled_kl, analytic_kl = float(values[3]), float(values[4])
  assert sampled_kl > 0
  if logvar < 0:
    np.testing.assert_allclose(sampled_kl, analytic_kl, rtol=16 * _F32.eps)
