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
from absl.testing import absltest
from absl.testing import parameterized

from conftest import make_linear_gaussian
from tolerances import sum_atol
from toy_models import LinearImageVAE
from vae_jax import step as step_lib
from vae_jax.math import objectives



def _roundoff(num_terms: int, magnitude) -> float:
  """Worst-case float32 error of a sum of `num_terms` terms of this size."""
  return float(np.max(sum_atol(num_terms, np.abs(magnitude))))


class LogWeightsTest(chex.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.lg = make_linear_gaussian(data_dim=6, latent_dim=3)
    self.model = self.lg.model()
    self.x = jnp.asarray(self.lg.sample_x(np.random.default_rng(0), 1)[0],
                         jnp.float32)
    post_mean, post_logvar = self.lg.posterior(np.asarray(self.x))
    # q a little off the posterior, so the weights vary.
    self.params = {"mean": jnp.asarray(post_mean + 0.3, jnp.float32),
                   "logvar": jnp.asarray(post_logvar + 0.2, jnp.float32)}
    self.rng = jax.random.key(0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_the_mc_elbo_is_the_mean_of_the_log_weights(self):
    fn = self.variant(functools.partial(objectives.log_weights, self.model),
                      static_argnums=(3,))
    weights = fn(self.params, self.x, self.rng, 16)
    chex.assert_shape(weights, (16,))
    parts = objectives.elbo(self.model, self.params, self.x, self.rng, 16,
                            analytic_kl=False)
    np.testing.assert_allclose(parts.elbo, np.mean(weights),
                               atol=_roundoff(3 * 16, weights))

  def test_iwae_with_one_sample_is_the_single_sample_elbo(self):
    iwae = objectives.iwae_bound(self.model, self.params, self.x, self.rng, 1)
    parts = objectives.elbo(self.model, self.params, self.x, self.rng, 1,
                            analytic_kl=False)
    # The same z, the same three terms, added in another order.
    np.testing.assert_allclose(iwae, parts.elbo, atol=_roundoff(4, parts.elbo))

  @parameterized.parameters(1, 7, 64, 100)
  def test_the_chunked_estimator_equals_the_unchunked_bound(self, chunk_size):
    k = 64
    bound = objectives.iwae_bound(self.model, self.params, self.x, self.rng, k)
    estimate = jax.jit(objectives.importance_sampled_log_px,
                       static_argnums=(0, 4, 5))(
                           self.model, self.params, self.x, self.rng, k,
                           chunk_size)
    # Same draws; a running logsumexp over chunks rounds differently.
    np.testing.assert_allclose(estimate, bound, atol=_roundoff(2 * k, bound))

  def test_the_bound_tightens_with_k_towards_log_px(self):
    log_px = float(self.lg.log_marginal(np.asarray(self.x, np.float64)))
    keys = jax.random.split(jax.random.key(1), 200)
    estimates = {}
    for k in (1, 10, 1000):
      fn = jax.jit(jax.vmap(functools.partial(
          objectives.importance_sampled_log_px, self.model, self.params,
          self.x, num_samples=k, chunk_size=min(k, 250))))
      estimates[k] = np.asarray(fn(keys), np.float64)
    means = {k: v.mean() for k, v in estimates.items()}
    stderrs = {k: v.std() / math.sqrt(len(v)) for k, v in estimates.items()}
    # Jensen: E[L_1] ≤ E[L_10] ≤ E[L_1000] ≤ log p(x), up to 4 s.e.
    for small, large in ((1, 10), (10, 1000)):
      margin = 4 * math.hypot(stderrs[small], stderrs[large])
      self.assertLessEqual(means[small], means[large] + margin)
    self.assertLessEqual(means[1000], log_px + 4 * stderrs[1000])
    # With K = 1000 the estimate is within its s.e. (and the O(1/K) bias) of
    # the exact value; the ELBO is not.
    self.assertLess(abs(means[1000] - log_px), 4 * stderrs[1000] + 1e-2)
    self.assertGreater(log_px - means[1], 4 * stderrs[1])

  def test_with_the_true_posterior_every_estimate_is_exact(self):
    model = self.lg.exact_posterior_model()
    x = self.lg.sample_x(np.random.default_rng(3), 1)[0]
    log_px = float(self.lg.log_marginal(x))
    for k in (1, 5, 50):
      estimate = objectives.importance_sampled_log_px(
          model, None, jnp.asarray(x, jnp.float32), self.rng, k,
          chunk_size=16)
      # Every weight is p(x) exactly; the float32 terms are of size |log p|
      # plus the quadratic forms, a dozen operations each.
      np.testing.assert_allclose(estimate, log_px,
                                 atol=_roundoff(12 * 6, 10 * log_px))

  def test_kl_weight_scales_the_prior_and_posterior_terms(self):
    w1 = objectives.log_weights(self.model, self.params, self.x, self.rng, 8)
    w0 = objectives.log_weights(self.model, self.params, self.x, self.rng, 8,
                                kl_weight=0.0)
    w2 = objectives.log_weights(self.model, self.params, self.x, self.rng, 8,
                                kl_weight=2.0)
    # log w_β = ll + β (log p − log q): linear in β.
    np.testing.assert_allclose(w2 - w1, w1 - w0, atol=_roundoff(8, w0))


class ImageShapedExampleTest(chex.TestCase):
  """A conv-shaped `[28, 28, 1]` example through the objectives and the step."""

  def setUp(self):
    super().setUp()
    self.model = LinearImageVAE(event_shape=(28, 28, 1), latent_dim=3)
    self.params = self.model.init(jax.random.key(0))
    self.x = (jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
              < 0.3).astype(jnp.float32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_batch_elbo_of_image_examples(self):
    fn = self.variant(functools.partial(objectives.batch_elbo, self.model))
    parts = fn(self.params, self.x, jax.random.key(2))
    chex.assert_shape([parts.elbo, parts.kl, parts.log_likelihood], (4,))
    chex.assert_tree_all_finite(parts)

  def test_a_flat_example_is_refused_by_an_image_model(self):
    with self.assertRaises(AssertionError):
      objectives.log_weights(self.model, self.params,
                             self.x[0].reshape(-1), jax.random.key(0), 2)

  def test_the_train_step_takes_image_batches(self):
    config = step_lib.StepConfig()
    state = step_lib.init_train_state(self.model, config, jax.random.key(0))
    step = jax.jit(functools.partial(step_lib.train_step, self.model, config))
    hparams = step_lib.Hyperparams(learning_rate=1e-2, kl_weight=1.0)
    first = None
    for _ in range(20):
      state, metrics = step(state, self.x, hparams)
      first = metrics.elbo if first is None else first
    self.assertEqual(int(state.step), 20)
    self.assertGreater(float(metrics.elbo), float(first))  # it learns


if __name__ == "__main__":
  absltest.main()
