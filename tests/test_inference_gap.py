"""The gap split against the linear-Gaussian model's exact answers.

There p(z|x) = N(m, Λ⁻¹) is known, so the best diagonal q* (mean m,
variances 1/Λ_dd), L[q*] and KL(q* ‖ p(z|x)) are exact. The optimiser is
stochastic: it stops when the mean ELBO of a window of steps no longer beats
the best window by `RESOLUTION` nats at its smallest step size, so it is
held to an excess KL(q ‖ p(z|x)) − KL(q* ‖ p(z|x)) = L[q*] − L[q] of a few
RESOLUTION. For the diagonal family that excess is exactly the sum of a
mean part ½ δᵀΛδ and a variance part ½ Σ_d (e^δℓ_d − 1 − δℓ_d), δ and δℓ
the errors of the mean and log-variance, so a bound on it bounds both.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import assert_close, sum_atol
from vae_jax import inference_gap as ig
from vae_jax.math.linear_gaussian import LinearGaussianVAE

# Per-example posterior optimisation, compiled for each case.
pytestmark = pytest.mark.slow

_MODEL = LinearGaussianVAE(data_dim=6, latent_dim=3, variance=0.5)
_NUM = 8  # examples
_TOL = 2 * ig.RESOLUTION  # the optimiser's excess KL per example, nats
_K = 2000  # importance samples


def _params(orthogonal: bool):
  """A decoder (W with orthogonal columns or not) and a deliberately bad
  encoder: μ(x) = 1, log-variance 1 for every x."""
  if orthogonal:
    params = _MODEL.ground_truth(jax.random.key(4))
  else:
    params = _MODEL.init(jax.random.key(1))
    params["decoder"]["weight"] = 2.0 * params["decoder"]["weight"]
  params["encoder"] = {
    "weight": jnp.zeros((6, 3)),
    "bias": jnp.ones(3),
    "logvar": jnp.ones(3),
  }
  return params


def _data(params):
  return _MODEL.sample(jax.random.key(2), params, _NUM)


def _best(params, x):
  """The exact q*: (m `[N, D]`, −log Λ_dd `[N, D]`)."""
  best = _MODEL.best_encoder(params)
  mean = x @ best["weight"] + best["bias"]
  return mean, jnp.broadcast_to(best["logvar"], mean.shape)


@functools.partial(jax.jit, static_argnames=("settings",))
def _decompose(params, x, rng, settings):
  keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(len(x)))
  return jax.vmap(
    lambda xx, k: ig.decompose(
      _MODEL, params, xx, k, settings, num_importance_samples=_K
    )
  )(x, keys)


@functools.partial(jax.jit, static_argnames=("settings",))
def _optimize(params, x, rng, settings):
  keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(len(x)))
  return jax.vmap(
    lambda xx, k: ig.optimize_posterior(_MODEL, params, xx, k, settings)
  )(x, keys)


@pytest.mark.parametrize("init", ig.INITS)
def test_the_optimiser_recovers_the_best_diagonal_gaussian(init):
  params = _params(orthogonal=False)
  x = _data(params)
  found = _optimize(params, x, jax.random.key(3), ig.GapSettings(init=init))
  mean, logvar = _best(params, x)
  kl = lambda m, lv: np.asarray(
    _MODEL.kl_to_posterior(params, x, m, lv), np.float64
  )
  excess = kl(found.q.mean, found.q.logvar) - kl(mean, logvar)
  # q* minimises the KL: the excess is ≥ 0 up to the rounding of two KLs.
  assert np.all(excess >= -sum_atol(8, kl(mean, logvar)))
  assert np.all(excess <= _TOL), excess
  # What the bound on the excess implies for the parameters themselves.
  precision = np.asarray(_MODEL._precision(params), np.float64)
  delta = np.asarray(found.q.mean - mean, np.float64)
  assert np.all(
    0.5 * np.einsum("nd,de,ne->n", delta, precision, delta) <= _TOL + 1e-6
  )
  dl = np.asarray(found.q.logvar - logvar, np.float64)
  assert np.all(0.5 * np.sum(np.expm1(dl) - dl, axis=-1) <= _TOL + 1e-6)
  assert np.all(np.asarray(found.steps) < ig.GapSettings().max_steps)


def _terms_and_exact(orthogonal: bool):
  params = _params(orthogonal)
  x = _data(params)
  settings = ig.GapSettings()
  terms = _decompose(params, x, jax.random.key(5), settings)
  enc_mean, enc_logvar = _MODEL.encode(params, x)
  best_mean, best_logvar = _best(params, x)
  elbo = lambda m, lv: np.asarray(
    _MODEL.closed_form_elbo(params, x, m, lv).elbo, np.float64
  )
  exact = {
    "log_px": np.asarray(_MODEL.log_px(params, x), np.float64),
    "elbo": elbo(enc_mean, enc_logvar),
    "elbo_optimized": elbo(best_mean, best_logvar),
  }
  return params, x, terms, exact


def test_the_gaps_against_their_closed_forms():
  _, _, terms, exact = _terms_and_exact(orthogonal=False)
  t = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), terms)
  se = t.elbo_stderr + t.elbo_optimized_stderr  # ≥ s.e. of the difference
  # The amortisation gap L[q*] − L[q], q the bad encoder's.
  amortisation = exact["elbo_optimized"] - exact["elbo"]
  assert np.all(amortisation > 1.0)  # the bad encoder is bad
  assert_close(t.elbo_optimized - t.elbo, amortisation, 4 * se + _TOL)
  # The approximation gap KL(q* ‖ p(z|x)) = log p(x) − L[q*]: W's columns
  # are not orthogonal, so it is positive. log p̂ with proposal q* ≈ the
  # posterior has a small Monte-Carlo error, bounded by the ELBO's s.e.
  approximation = exact["log_px"] - exact["elbo_optimized"]
  assert np.all(approximation > 0.01)
  assert_close(t.log_px_q_star - t.elbo_optimized, approximation, 4 * se + _TOL)
  # The three gaps are differences of the same values: they add up.
  inference = t.log_px_q_star - t.elbo
  assert_close(
    inference,
    (t.log_px_q_star - t.elbo_optimized) + (t.elbo_optimized - t.elbo),
    sum_atol(3, np.abs(t.elbo)),
  )
  # log p̂(x) with either proposal estimates the exact log p(x).
  assert_close(t.log_px_q_star, exact["log_px"], 4 * se + _TOL)


def test_a_diagonal_posterior_leaves_no_approximation_gap():
  _, _, terms, exact = _terms_and_exact(orthogonal=True)
  t = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), terms)
  np.testing.assert_allclose(
    exact["log_px"], exact["elbo_optimized"], atol=1e-4
  )  # q* is the posterior itself
  se = t.elbo_optimized_stderr
  assert_close(t.log_px_q_star - t.elbo_optimized, 0.0, 4 * se + _TOL)


def test_a_batch_gives_what_the_examples_give_one_at_a_time():
  params = _params(orthogonal=False)
  x = _data(params)[:4]
  settings = ig.GapSettings(final_samples=200)
  rng = jax.random.key(6)
  batched = _decompose(params, x, rng, settings)
  one = jax.jit(
    lambda xx, key: ig.decompose(
      _MODEL, params, xx, key, settings, num_importance_samples=_K
    )
  )
  for n in range(len(x)):
    alone = one(x[n], jax.random.fold_in(rng, n))
    assert int(alone.steps) == int(batched.steps[n])
    for name in ("elbo", "elbo_optimized", "log_px", "log_px_q_star"):
      value = np.asarray(getattr(alone, name), np.float64)
      # The same draws and decisions; vmapped matmuls may round otherwise.
      assert_close(
        getattr(batched, name)[n],
        value,
        sum_atol(100, abs(value)),
        err_msg=name,
      )


def test_the_decoder_and_prior_parameters_are_left_as_they_were():
  params = jax.tree_util.tree_map(np.asarray, _params(orthogonal=False))
  before = copy.deepcopy(params)
  x = _data(params)[:2]
  found = _optimize(params, x, jax.random.key(7), ig.GapSettings())
  jax.block_until_ready(found)
  for a, b in zip(
    jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(params)
  ):
    assert a.tobytes() == b.tobytes()
  # Only q moved: the optimum depends on the decoder, not on the encoder
  # it started from (beyond the optimiser's resolution).
  other = dict(
    params,
    encoder={
      "weight": np.ones((6, 3), np.float32),
      "bias": np.zeros(3, np.float32),
      "logvar": np.zeros(3, np.float32),
    },
  )
  again = _optimize(other, x, jax.random.key(7), ig.GapSettings())
  precision = np.asarray(_MODEL._precision(params), np.float64)
  delta = np.asarray(again.q.mean - found.q.mean, np.float64)
  assert np.all(np.einsum("nd,de,ne->n", delta, precision, delta) <= 8 * _TOL)


def test_models_with_more_than_one_layer_are_refused():
  from vae_jax.math.linear_gaussian_hierarchy import TwoLayerLinearGaussian

  with pytest.raises(ValueError, match="one latent layer"):
    ig.check_model(TwoLayerLinearGaussian())
