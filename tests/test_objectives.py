"""One core, `log_weights`, and the bounds built on it.

The ELBO (Monte-Carlo KL), the IWAE bound and the importance-sampled
log p(x) are thin functions of the same K log weights; these tests pin the
identities between them, check them against the linear-Gaussian model whose
log p(x) is exact, and pass an image-shaped `[28, 28, 1]` example through
the objectives and the train step.
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
from tolerances import sum_atol
from toy_models import LinearImageVAE
from vae_jax import step as step_lib
from vae_jax.math import objectives


def _roundoff(num_terms: int, magnitude) -> float:
  """Worst-case float32 error of a sum of `num_terms` terms of this size."""
  return float(np.max(sum_atol(num_terms, np.abs(magnitude))))


def _log_weights_case():
  """(lg, model, x, params, rng): q given directly, for one example x."""
  lg = make_linear_gaussian(data_dim=6, latent_dim=3)
  x = jnp.asarray(lg.sample_x(np.random.default_rng(0), 1)[0], jnp.float32)
  post_mean, post_logvar = lg.posterior(np.asarray(x))
  # q a little off the posterior, so the weights vary.
  params = {
    "mean": jnp.asarray(post_mean + 0.3, jnp.float32),
    "logvar": jnp.asarray(post_logvar + 0.2, jnp.float32),
  }
  return lg, lg.model(), x, params, jax.random.key(0)


@pytest.fixture
def log_weights_case():
  return _log_weights_case()


class LogWeightsTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    _, self.model, self.x, self.params, self.rng = _log_weights_case()

  @chex.variants(with_jit=True, without_jit=True)
  def test_the_mc_elbo_is_the_mean_of_the_log_weights(self):
    fn = self.variant(
      functools.partial(objectives.log_weights, self.model), static_argnums=(3,)
    )
    weights = fn(self.params, self.x, self.rng, 16)
    chex.assert_shape(weights, (16,))
    parts = objectives.elbo(
      self.model, self.params, self.x, self.rng, 16, analytic_kl=False
    )
    np.testing.assert_allclose(
      parts.elbo, np.mean(weights), atol=_roundoff(3 * 16, weights)
    )


def test_iwae_with_one_sample_is_the_single_sample_elbo(log_weights_case):
  _, model, x, params, rng = log_weights_case
  iwae = objectives.iwae_bound(model, params, x, rng, 1)
  parts = objectives.elbo(model, params, x, rng, 1, analytic_kl=False)
  # The same z, the same three terms, added in another order.
  np.testing.assert_allclose(iwae, parts.elbo, atol=_roundoff(4, parts.elbo))


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [1, 7, 64, 100])
def test_the_chunked_estimator_equals_the_unchunked_bound(
  log_weights_case, chunk_size
):
  _, model, x, params, rng = log_weights_case
  k = 64
  bound = objectives.iwae_bound(model, params, x, rng, k)
  estimate = jax.jit(
    objectives.importance_sampled_log_px, static_argnums=(0, 4, 5)
  )(model, params, x, rng, k, chunk_size)
  # Same draws; a running logsumexp over chunks rounds differently.
  np.testing.assert_allclose(estimate, bound, atol=_roundoff(2 * k, bound))


@pytest.mark.slow
def test_the_bound_tightens_with_k_towards_log_px(log_weights_case):
  lg, model, x, params, _ = log_weights_case
  log_px = float(lg.log_marginal(np.asarray(x, np.float64)))
  keys = jax.random.split(jax.random.key(1), 200)
  estimates = {}
  for k in (1, 10, 1000):
    fn = jax.jit(
      jax.vmap(
        functools.partial(
          objectives.importance_sampled_log_px,
          model,
          params,
          x,
          num_samples=k,
          chunk_size=min(k, 250),
        )
      )
    )
    estimates[k] = np.asarray(fn(keys), np.float64)
  means = {k: v.mean() for k, v in estimates.items()}
  stderrs = {k: v.std() / math.sqrt(len(v)) for k, v in estimates.items()}
  # Jensen: E[L_1] ≤ E[L_10] ≤ E[L_1000] ≤ log p(x), up to 4 s.e.
  for small, large in ((1, 10), (10, 1000)):
    margin = 4 * math.hypot(stderrs[small], stderrs[large])
    assert means[small] <= means[large] + margin
  assert means[1000] <= log_px + 4 * stderrs[1000]
  # With K = 1000 the estimate is within its s.e. (and the O(1/K) bias) of
  # the exact value; the ELBO is not.
  assert abs(means[1000] - log_px) < 4 * stderrs[1000] + 1e-2
  assert log_px - means[1] > 4 * stderrs[1]


@pytest.mark.slow
def test_with_the_true_posterior_every_estimate_is_exact(log_weights_case):
  lg, _, _, _, rng = log_weights_case
  model = lg.exact_posterior_model()
  x = lg.sample_x(np.random.default_rng(3), 1)[0]
  log_px = float(lg.log_marginal(x))
  for k in (1, 5, 50):
    estimate = objectives.importance_sampled_log_px(
      model, None, jnp.asarray(x, jnp.float32), rng, k, chunk_size=16
    )
    # Every weight is p(x) exactly; the float32 terms are of size |log p|
    # plus the quadratic forms, a dozen operations each.
    np.testing.assert_allclose(
      estimate, log_px, atol=_roundoff(12 * 6, 10 * log_px)
    )


@pytest.mark.slow
def test_kl_weight_scales_the_prior_and_posterior_terms(log_weights_case):
  _, model, x, params, rng = log_weights_case
  w1 = objectives.log_weights(model, params, x, rng, 8)
  w0 = objectives.log_weights(model, params, x, rng, 8, kl_weight=0.0)
  w2 = objectives.log_weights(model, params, x, rng, 8, kl_weight=2.0)
  # log w_β = ll + β (log p − log q): linear in β.
  np.testing.assert_allclose(w2 - w1, w1 - w0, atol=_roundoff(8, w0))


# --- A conv-shaped `[28, 28, 1]` example through the objectives and the step.


def _image_case():
  """(model, params, x): a batch of 4 binary `[28, 28, 1]` images."""
  model = LinearImageVAE(event_shape=(28, 28, 1), latent_dim=3)
  x = (jax.random.uniform(jax.random.key(1), (4, 28, 28, 1)) < 0.3).astype(
    jnp.float32
  )
  return model, model.init(jax.random.key(0)), x


@pytest.fixture
def image_case():
  return _image_case()


@pytest.mark.slow
class ImageShapedExampleTest(chex.TestCase):
  def setUp(self):
    super().setUp()
    self.model, self.params, self.x = _image_case()

  @chex.variants(with_jit=True, without_jit=True)
  def test_batch_elbo_of_image_examples(self):
    fn = self.variant(functools.partial(objectives.batch_elbo, self.model))
    parts = fn(self.params, self.x, jax.random.key(2))
    chex.assert_shape([parts.elbo, parts.kl, parts.log_likelihood], (4,))
    chex.assert_tree_all_finite(parts)


def test_a_flat_example_is_refused_by_an_image_model(image_case):
  model, params, x = image_case
  with pytest.raises(AssertionError):
    objectives.log_weights(
      model, params, x[0].reshape(-1), jax.random.key(0), 2
    )


@pytest.mark.slow
def test_the_train_step_takes_image_batches(image_case):
  model, _, x = image_case
  config = step_lib.StepConfig()
  state = step_lib.init_train_state(model, config, jax.random.key(0))
  step = jax.jit(functools.partial(step_lib.train_step, model, config))
  hparams = step_lib.Hyperparams(learning_rate=1e-2, kl_weight=1.0)
  first = None
  for _ in range(20):
    state, metrics = step(state, x, hparams)
    first = metrics.elbo if first is None else first
  assert int(state.step) == 20
  assert float(metrics.elbo) > float(first)  # it learns
