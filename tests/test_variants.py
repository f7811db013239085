"""The variants of the objective: IWAE training, free bits, and their reports.

`vae_jax.step.training_objective` is checked on the linear-Gaussian model of
conftest.py (log p(x) exact, q given directly as parameters) against the
bounds of `vae_jax.math.objectives`; then a tiny MLP run through the loop
for each objective checks what metrics.jsonl reports. Tolerances are float32
rounding of the sums involved, `_roundoff`.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run_helpers
from conftest import make_linear_gaussian
from vae_jax import step as step_lib
from vae_jax.configs import default
from vae_jax.math import objectives
from vae_jax.nets.mlp import make_mlp_vae
from vae_jax.run import loop

_EPS = float(np.finfo(np.float32).eps)


def _roundoff(num_terms: int, magnitude) -> float:
  """Worst-case float32 error of a sum of `num_terms` terms of this size."""
  return num_terms * _EPS * float(np.max(np.abs(magnitude)))


def _linear_gaussian_case(offset: float = 0.3, batch: int = 4):
  """(lg, model, params, x): q a little off the posterior of x[0]."""
  lg = make_linear_gaussian(data_dim=6, latent_dim=3)
  x = jnp.asarray(lg.sample_x(np.random.default_rng(0), batch), jnp.float32)
  post_mean, post_logvar = lg.posterior(np.asarray(x[0]))
  params = {
    "mean": jnp.asarray(post_mean + offset, jnp.float32),
    "logvar": jnp.asarray(post_logvar + 0.2, jnp.float32),
  }
  return lg, lg.model(), params, x


def _objective_and_gradient(
  model, params, x, rng, kl_weight=1.0, free_bits=0.0, **config
):
  """(objective, its gradient) of `training_objective` under StepConfig(**config)."""
  fn = lambda p: step_lib.training_objective(
    model, step_lib.StepConfig(**config), p, x, rng, kl_weight, free_bits
  )[0]
  return jax.value_and_grad(fn)(params)


_CONFIG_NAMES = ("objective", "num_samples", "analytic_kl")
_objective = jax.jit(
  _objective_and_gradient, static_argnums=(0,), static_argnames=_CONFIG_NAMES
)


class IwaeObjectiveTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.slow
  def test_iwae_with_one_sample_is_the_monte_carlo_elbo_objective(self):
    _, model, params, x = _linear_gaussian_case()
    fn = self.variant(
      _objective_and_gradient,
      static_argnums=(0,),
      static_argnames=_CONFIG_NAMES,
    )
    rng = jax.random.key(1)
    # β = 0.7 inside the log weight and on the KL: the same number.
    iwae, iwae_grad = fn(
      model, params, x, rng, 0.7, objective="iwae", num_samples=1
    )
    elbo, elbo_grad = fn(
      model,
      params,
      x,
      rng,
      0.7,
      objective="elbo",
      num_samples=1,
      analytic_kl=False,
    )
    terms = objectives.per_example(
      objectives.example_terms, model, params, x, rng, analytic_kl=False
    )
    # The same three terms per example, added in another order, then a mean.
    size = np.abs(terms.parts.log_likelihood) + np.abs(terms.parts.kl)
    np.testing.assert_allclose(iwae, elbo, atol=_roundoff(8, size))
    chex.assert_trees_all_close(
      iwae_grad,
      elbo_grad,
      atol=_roundoff(64, jax.tree_util.tree_leaves(elbo_grad)[0]),
    )


@pytest.mark.slow
def test_iwae_beats_the_elbo_in_expectation_and_stays_below_log_px():
  lg, model, params, x = _linear_gaussian_case(offset=0.5, batch=1)
  keys = jax.random.split(jax.random.key(2), 400)

  def over_keys(**config):
    one = lambda key: step_lib.training_objective(
      model, step_lib.StepConfig(**config), params, x, key, 1.0
    )[0]
    return np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)

  def mean_and_stderr(values):
    return values.mean(), values.std() / math.sqrt(len(values))

  elbo = over_keys(objective="elbo", num_samples=5)
  iwae5 = over_keys(objective="iwae", num_samples=5)
  iwae50 = over_keys(objective="iwae", num_samples=50)
  log_px = float(lg.log_marginal(np.asarray(x[0])))
  # ELBO < E[L_5] < E[L_50] ≤ log p(x): q is off the posterior, so each
  # gap is real. The same key gives the same first draws to each
  # estimator, so the differences are paired: each gap exceeds 4 of its
  # standard errors.
  for small, large in ((elbo, iwae5), (iwae5, iwae50)):
    gap, stderr = mean_and_stderr(large - small)
    assert gap > 4 * stderr
  mean50, stderr50 = mean_and_stderr(iwae50)
  assert mean50 < log_px + 4 * stderr50


@pytest.mark.slow
@pytest.mark.parametrize(
  "logvar, pixel", [(-30.0, 1e4), (30.0, -1e4), (0.0, 1e6)]
)
def test_the_iwae_gradient_is_finite_at_extreme_inputs(logvar, pixel):
  _, model, params, x = _linear_gaussian_case()
  params = {
    "mean": params["mean"] * 1e3,
    "logvar": jnp.full_like(params["logvar"], logvar),
  }
  x = jnp.full_like(x, pixel)
  value, grads = _objective(
    model, params, x, jax.random.key(3), objective="iwae", num_samples=50
  )
  chex.assert_tree_all_finite((value, grads))


@pytest.mark.slow
def test_the_iwae_gradient_is_finite_for_a_saturated_bernoulli_decoder():
  model = make_mlp_vae(data_dim=16, latent_dim=2, hidden_dims=(8,))
  params = model.init(jax.random.key(0))
  # A decoder whose logits are in the hundreds, half of them of the
  # wrong sign: log weights of −1e3 and below, far apart.
  params["decoder"] = jax.tree_util.tree_map(
    lambda p: 300.0 * p, params["decoder"]
  )
  x = jnp.tile(jnp.asarray([0.0, 1.0]), (3, 8))
  value, grads = _objective(
    model, params, x, jax.random.key(4), objective="iwae", num_samples=20
  )
  chex.assert_tree_all_finite((value, grads))


def _free_bits_case(mean):
  """(model, params, x): q's means given, its log-variances fixed."""
  _, model, _, x = _linear_gaussian_case()
  return (
    model,
    {
      "mean": jnp.asarray(mean, jnp.float32),
      "logvar": jnp.asarray([-0.5, 0.0, -1.0], jnp.float32),
    },
    x,
  )


@pytest.mark.slow
@pytest.mark.parametrize("analytic", [True, False])
def test_no_effect_when_every_dimension_is_above_the_floor(analytic):
  model, params, x = _free_bits_case([2.0, -1.5, 1.0])  # KL_d ≥ 0.5 nats
  rng = jax.random.key(5)
  plain, plain_grad = _objective(
    model, params, x, rng, 0.8, 0.0, analytic_kl=analytic, num_samples=4
  )
  floored, floored_grad = _objective(
    model, params, x, rng, 0.8, 0.1, analytic_kl=analytic, num_samples=4
  )
  # Only the order of the sums differs (over dims, then batch, or not).
  np.testing.assert_allclose(floored, plain, atol=_roundoff(32, plain))
  chex.assert_trees_all_close(
    floored_grad, plain_grad, atol=_roundoff(64, plain_grad["mean"])
  )


def test_a_dimension_below_the_floor_gets_no_kl_gradient():
  model, params, x = _free_bits_case([2.0, 0.01, 1.0])  # KL_1 ≈ 5e-5 nats
  rng = jax.random.key(6)
  _, floored = _objective(model, params, x, rng, 1.0, 0.5)
  _, likelihood_only = _objective(model, params, x, rng, 0.0)
  _, plain = _objective(model, params, x, rng, 1.0)
  tol = _roundoff(64, likelihood_only["mean"])
  for name in ("mean", "logvar"):
    # Dimension 1: only E_q[log p(x|z)] pulls on it ...
    np.testing.assert_allclose(
      floored[name][1], likelihood_only[name][1], atol=tol
    )
    # ... while dimensions 0 and 2, above the floor, keep their KL term.
    np.testing.assert_allclose(floored[name][::2], plain[name][::2], atol=tol)
  assert abs(float(plain["mean"][1] - floored["mean"][1])) > 0.0


@pytest.mark.slow
def test_free_bits_is_a_traced_hyperparameter_and_reports_the_plain_elbo():
  model, _, x = _free_bits_case([0.0, 0.0, 0.0])
  config = step_lib.StepConfig(optimizer="sgd")
  state = step_lib.init_train_state(model, config, jax.random.key(7))
  step = jax.jit(
    jax.vmap(
      functools.partial(step_lib.train_step, model, config),
      in_axes=(None, None, 0),
    )
  )
  both = lambda a, b: jnp.float32([a, b])
  hparams = step_lib.Hyperparams(
    learning_rate=both(0.1, 0.1),
    kl_weight=both(1, 1),
    kl_warmup_steps=both(0, 0),
    lr_warmup_steps=both(0, 0),
    lr_schedule_steps=both(1, 1),
    free_bits=both(0.0, 2.0),
    lr_floor=both(0, 0),
    ema_decay=both(0, 0),
  )
  _, metrics = step(state, x, hparams)  # one program for both values
  # q = p(z) at init: KL = 0, so the floor costs 3 dims × 2 nats.
  np.testing.assert_allclose(metrics.elbo[0], metrics.elbo[1], rtol=1e-6)
  np.testing.assert_allclose(
    metrics.objective[1],
    metrics.elbo[1] - 6.0,
    atol=_roundoff(16, metrics.elbo),
  )
  np.testing.assert_allclose(
    metrics.objective[0], metrics.elbo[0], atol=_roundoff(16, metrics.elbo)
  )


# --- What a run reports, per objective (a tiny MLP, one epoch). ------------


def _run(data_dir, workdir, **overrides):
  config = default.get_config()
  config.update(
    dict(
      dict(
        dataset="idx",
        data_dir=data_dir,
        epochs=1,
        batch_size=64,
        hidden_dims=(16,),
        latent_dim=3,
        eval_batch_size=256,
        steps_per_chunk=4,
      ),
      **overrides,
    )
  )
  return run_helpers.as_json(
    loop.train_and_evaluate(
      config, str(workdir), progress_bar=False, figures=False
    )
  )


def test_an_iwae_run_reports_its_bound_beside_the_plain_elbo(
  idx_data_dir, tmp_path
):
  (record,) = _run(
    idx_data_dir, tmp_path, objective="iwae", num_samples=4, analytic_kl=False
  )
  # Per example and step, log-mean-exp of the K log weights ≥ their mean
  # (the Monte-Carlo ELBO of the same draws): so also for epoch means.
  assert record["train_objective"] >= record["train_elbo"] - 1e-3
  assert record["train_elbo"] == pytest.approx(
    record["train_log_likelihood"] - record["train_kl"], abs=1e-3
  )


@pytest.mark.slow
def test_a_free_bits_run_reports_the_floored_objective(idx_data_dir, tmp_path):
  (record,) = _run(
    idx_data_dir,
    tmp_path,
    free_bits=1.0,
    likelihood="continuous_bernoulli",
    binarization="none",
  )
  # Σ_d max(λ, KL_d) ≥ Σ_d KL_d: the objective is at most the plain ELBO,
  # and at least 3 dims × 1 nat of KL below E_q[log p(x|z)].
  assert record["train_objective"] <= record["train_elbo"] + 1e-3
  assert (
    record["train_objective"] <= record["train_log_likelihood"] - 3.0 + 1e-3
  )
  assert all(math.isfinite(record[k]) for k in ("train_elbo", "test_elbo"))
