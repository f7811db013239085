"""The train step, chunks of steps, evaluation, and a short training run.

The step and evaluation are checked against independent computations (the
SGD update is −lr·∇loss of the batch ELBO, by hand in float64; the
evaluation ELBO of an exact posterior is log p(x)); `train_and_evaluate` is
run end to end on the synthetic IDX data of conftest.py and must learn, be
reproducible, and write its run directory. Tolerances are float32 rounding
bounds derived from each computation (tests/tolerances.py).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run_helpers
from conftest import make_linear_gaussian
from tolerances import assert_close
from tolerances import rounding_atol
from tolerances import sum_atol
from vae_jax import chunks
from vae_jax import evaluation
from vae_jax import step as training
from vae_jax.configs import default
from vae_jax.data import feeds
from vae_jax.math import distributions
from vae_jax.math import objectives as elbo_lib
from vae_jax.math import model as model_lib
from vae_jax.math.gaussian_vae import GaussianVAE
from vae_jax.run import loop
from vae_jax.store.metrics import EpochRecord

_DATA_DIM = 16
_LATENT_DIM = 2
_BATCH = 8  # examples per batch of the step tests
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIMING_FIELDS = ("examples_per_sec", "wall_time_sec")


@dataclasses.dataclass(frozen=True)
class _LinearVAE(GaussianVAE):
  """A Bernoulli VAE with linear encoder and decoder, all parameters trained.

  The step's logic does not depend on the networks; a linear VAE has a few
  ops, so the un-jitted variants and the compiles stay cheap. The MLP VAE is
  trained end to end below, by `train_and_evaluate`.
  """

  event_shape: tuple = (_DATA_DIM,)
  latent_dim: int = _LATENT_DIM

  def init_networks(self, rng):
    enc_rng, dec_rng = jax.random.split(rng)
    return {
      "encoder": {
        "mean": 0.3 * jax.random.normal(enc_rng, (_DATA_DIM, _LATENT_DIM)),
        "logvar": jnp.zeros((_DATA_DIM, _LATENT_DIM)),
        "bias": jnp.zeros((_LATENT_DIM,)),
      },
      "decoder": {
        "kernel": 0.3 * jax.random.normal(dec_rng, (_LATENT_DIM, _DATA_DIM)),
        "bias": jnp.zeros((_DATA_DIM,)),
      },
    }

  def encode(self, params, x):
    enc = params["encoder"]
    return x @ enc["mean"], x @ enc["logvar"] + enc["bias"]

  def decode(self, params, z):
    return z @ params["decoder"]["kernel"] + params["decoder"]["bias"]

  def log_likelihood(self, decoder_output, x):
    return distributions.bernoulli_log_likelihood(decoder_output, x)

  def mean_of_output(self, decoder_output):
    return jax.nn.sigmoid(decoder_output)


# Models and step settings compare by value, so jit's caches (keyed on these
# static arguments) serve every test of this module.
_MODEL = _LinearVAE()
_ADAM = training.StepConfig(optimizer="adam")
_SGD = training.StepConfig(optimizer="sgd")
_jit_init_train_state = jax.jit(
  training.init_train_state, static_argnums=(0, 1)
)


@functools.lru_cache(maxsize=None)
def _init_state(step_config, seed):
  return _jit_init_train_state(_MODEL, step_config, jax.random.key(seed))


def _binary_batch(seed: int, batch_size: int = _BATCH) -> jax.Array:
  rng = np.random.default_rng(seed)
  return jnp.asarray(
    rng.uniform(size=(batch_size, _DATA_DIM)) < 0.3, jnp.float32
  )


def _stack(*trees):
  return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _index(tree, i):
  return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


def _sigmoid(a):
  return 0.5 * (1.0 + np.tanh(0.5 * a))


def _reference_step(state, batch, kl_weight):
  """The first step's loss, metrics and gradient by hand, in float64.

  The loss is the β-weighted batch ELBO of the linear VAE with the step's
  key fold_in(state.rng, 0): one draw z = μ + σε per example, ε that of
  batch_elbo's: sample 0 of example b's key fold_in(rng, b); analytic KL. Each value comes with its
  absolute-valued evaluation (tests/tolerances.py), from which `_atol` gives
  the float32 rounding bound.

  Returns:
    ({"objective", "elbo", "kl", "log_likelihood"}: (value, magnitude),
     grads and their magnitudes, pytrees like state.params).
  """
  rng = jax.random.fold_in(state.rng, 0)
  eps = np.asarray(
    jax.vmap(
      lambda b: model_lib.layer_noise(
        jax.random.fold_in(rng, b), jnp.arange(1), {"z": (_LATENT_DIM,)}
      )["z"][0]
    )(jnp.arange(batch.shape[0])),
    np.float64,
  )  # [B, D]
  p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), state.params)
  a = jax.tree_util.tree_map(np.abs, p)  # |parameters|
  x = np.asarray(batch, np.float64)  # 0 or 1: |x| = x
  enc, dec, enc_a, dec_a = (
    p["encoder"],
    p["decoder"],
    a["encoder"],
    a["decoder"],
  )
  num = x.shape[0]
  # Forward, and its absolute-valued evaluation (suffix _a). exp and the
  # sigmoid pass their argument's error on: σ(1 + |logvar|), σ(ℓ) + ¼|ℓ|.
  mean, mean_a = x @ enc["mean"], x @ enc_a["mean"]
  logvar = x @ enc["logvar"] + enc["bias"]
  logvar_a = x @ enc_a["logvar"] + enc_a["bias"]
  std = np.exp(0.5 * logvar)
  std_a = std * (1 + logvar_a)
  z, z_a = mean + std * eps, mean_a + std_a * np.abs(eps)
  logits = z @ dec["kernel"] + dec["bias"]
  logits_a = z_a @ dec_a["kernel"] + dec_a["bias"]
  prob = _sigmoid(logits)
  softplus = np.logaddexp(logits, 0.0)
  log_lik = np.sum(x * logits - softplus, axis=-1)
  log_lik_a = np.sum(x * logits_a + softplus + prob * logits_a, axis=-1)
  kl = 0.5 * np.sum(mean**2 + np.expm1(logvar) - logvar, axis=-1)
  kl_a = 0.5 * np.sum(
    mean_a**2 + np.abs(np.expm1(logvar)) + (np.exp(logvar) + 1) * logvar_a,
    axis=-1,
  )
  metrics = {
    "objective": (
      np.mean(log_lik - kl_weight * kl),
      np.mean(log_lik_a + kl_weight * kl_a),
    ),
    "elbo": (np.mean(log_lik - kl), np.mean(log_lik_a + kl_a)),
    "kl": (np.mean(kl), np.mean(kl_a)),
    "log_likelihood": (np.mean(log_lik), np.mean(log_lik_a)),
  }
  # Backward: d log p(x|z)/d logits = x − σ(ℓ), then the chain rule.
  resid, resid_a = x - prob, x + prob + 0.25 * logits_a
  d_z, d_z_a = resid @ dec["kernel"].T, resid_a @ dec_a["kernel"].T
  d_mean = -(d_z - kl_weight * mean) / num
  d_mean_a = (d_z_a + kl_weight * mean_a) / num
  d_logvar = -(d_z * 0.5 * std * eps - kl_weight * 0.5 * np.expm1(logvar)) / num
  d_logvar_a = (
    d_z_a * 0.5 * std_a * np.abs(eps)
    + kl_weight * 0.5 * (np.abs(np.expm1(logvar)) + np.exp(logvar) * logvar_a)
  ) / num
  grads = {
    "encoder": {
      "mean": x.T @ d_mean,
      "logvar": x.T @ d_logvar,
      "bias": np.sum(d_logvar, axis=0),
    },
    "decoder": {
      "kernel": -z.T @ resid / num,
      "bias": -np.sum(resid, axis=0) / num,
    },
  }
  grads_a = {
    "encoder": {
      "mean": x.T @ d_mean_a,
      "logvar": x.T @ d_logvar_a,
      "bias": np.sum(d_logvar_a, axis=0),
    },
    "decoder": {
      "kernel": z_a.T @ resid_a / num,
      "bias": np.sum(resid_a, axis=0) / num,
    },
  }
  return metrics, grads, grads_a


# Roundings of u on the longest path of the step's float32 computation: the
# encoder's P-term products and bias (P + 1), exp, × ε, + μ (4), the
# decoder's D-term product and bias (D + 1), the sigmoid (4), x − σ (1), the
# backward P-term product (P), × ½σε (3), − β… and ÷B (3), the B-term sum
# over the batch (B). rounding_atol charges 2u per operation: half as many.
_STEP_OPERATIONS = (
  (_DATA_DIM + 1) + 4 + (_LATENT_DIM + 1) + 4 + 1 + _DATA_DIM + 3 + 3 + _BATCH
) / 2


def _atol(magnitude):
  """The float32 rounding bound of a value of the step, from its magnitude."""
  return rounding_atol(_STEP_OPERATIONS, magnitude)


def _grad_norm_atol(grads, grads_a):
  """‖g‖ moves by at most ‖δg‖; its own sum of squares and √ add rounding."""
  leaves, leaves_a = (jax.tree_util.tree_leaves(t) for t in (grads, grads_a))
  norm = math.sqrt(sum(np.sum(g**2) for g in leaves))
  size = sum(g.size for g in leaves)
  return math.sqrt(sum(np.sum(_atol(g_a) ** 2) for g_a in leaves_a)) + sum_atol(
    size, norm, ops_per_term=2
  )


@functools.lru_cache(maxsize=None)
def _sgd_step_case():
  """The inputs of one SGD step and its float64 result, computed once.

  The loss is the β-weighted batch ELBO with the step's key
  fold_in(state.rng, step); plain SGD moves params by −lr · ∇loss.
  """
  model, optimizer = _MODEL, _SGD
  state = _init_state(optimizer, 0)
  batch = _binary_batch(0)
  hparams = training.Hyperparams(
    learning_rate=jnp.float32(0.1), kl_weight=jnp.float32(0.5)
  )
  # Their float32 values.
  learning_rate, kl_weight = (
    float(hparams.learning_rate),
    float(hparams.kl_weight),
  )
  metrics, grads, grads_a = _reference_step(state, batch, kl_weight)
  params = jax.tree_util.tree_map(
    lambda a: np.asarray(a, np.float64), state.params
  )
  expected_params = jax.tree_util.tree_map(
    lambda p, g: p - learning_rate * g, params, grads
  )
  # The gradient's error times lr, then lr × g and p + (−lr g) round (2).
  params_atol = jax.tree_util.tree_map(
    lambda p, g_a: (
      learning_rate * _atol(g_a)
      + rounding_atol(2, np.abs(p) + learning_rate * g_a)
    ),
    params,
    grads_a,
  )
  expected_metrics = {
    name: (value, _atol(magnitude))
    for name, (value, magnitude) in metrics.items()
  }
  norm = math.sqrt(sum(np.sum(g**2) for g in jax.tree_util.tree_leaves(grads)))
  expected_metrics["grad_norm"] = (norm, _grad_norm_atol(grads, grads_a))
  expected_metrics["learning_rate"] = (learning_rate, 0.0)
  expected_metrics["kl_weight"] = (kl_weight, 0.0)
  return (
    model,
    optimizer,
    state,
    batch,
    hparams,
    (expected_params, params_atol),
    expected_metrics,
  )


class TrainStepTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_sgd_step_is_minus_learning_rate_times_gradient(self):
    (
      model,
      optimizer,
      state,
      batch,
      hparams,
      (expected_params, params_atol),
      expected_metrics,
    ) = _sgd_step_case()
    step = self.variant(
      functools.partial(training.train_step, model, optimizer)
    )
    new_state, metrics = step(state, batch, hparams)

    self.assertIsInstance(metrics, training.StepMetrics)
    chex.assert_shape(list(metrics), ())
    chex.assert_type(list(metrics), jnp.float32)
    chex.assert_trees_all_equal_shapes_and_dtypes(
      new_state.params, state.params
    )
    chex.assert_trees_all_equal_shapes_and_dtypes(
      new_state.opt_state, state.opt_state
    )
    chex.assert_type(new_state.step, jnp.int32)
    self.assertEqual(int(new_state.step), 1)
    jax.tree_util.tree_map(
      assert_close, new_state.params, expected_params, params_atol
    )
    for name, (value, atol) in expected_metrics.items():
      assert_close(getattr(metrics, name), value, atol, err_msg=name)
    self.assertGreater(float(metrics.grad_norm), 0.0)


@pytest.mark.slow
def test_vmap_over_states_and_learning_rates():
  """One vmapped step over stacked (state, hparams) = separate steps."""
  step = functools.partial(training.train_step, _MODEL, _ADAM)
  states = [_init_state(_ADAM, seed) for seed in (1, 2)]
  hparams = [
    training.Hyperparams(jnp.float32(lr), jnp.float32(beta))
    for lr, beta in ((1e-3, 1.0), (3e-2, 0.5))
  ]
  batch = _binary_batch(1)

  swept_state, swept_metrics = jax.jit(jax.vmap(step, in_axes=(0, None, 0)))(
    _stack(*states), batch, _stack(*hparams)
  )
  chex.assert_shape(list(swept_metrics), (2,))
  separate = jax.jit(step)
  for i in range(2):
    state_i, metrics_i = separate(states[i], batch, hparams[i])
    learning_rate = float(hparams[i].learning_rate)
    kl_weight = float(hparams[i].kl_weight)
    metrics, grads, grads_a = _reference_step(states[i], batch, kl_weight)
    moves, moves_atol = _adam_first_moves(
      states[i].params, grads, grads_a, learning_rate
    )
    # Two float32 computations, each within the bound of the exact step.
    jax.tree_util.tree_map(
      lambda swept, alone, atol: assert_close(swept, alone, 2 * atol),
      _index(swept_state.params, i),
      state_i.params,
      moves_atol,
    )
    atols = {name: _atol(magnitude) for name, (_, magnitude) in metrics.items()}
    atols["grad_norm"] = _grad_norm_atol(grads, grads_a)
    for name, value in _index(swept_metrics, i)._asdict().items():
      assert_close(
        value, getattr(metrics_i, name), 2 * atols.get(name, 0.0), err_msg=name
      )
  # The rate is applied: Adam's first step moves each parameter by
  # lr · |g| / (|g| + ε) ≈ lr; the largest move is the largest of these.
  first = jax.tree_util.tree_map(
    lambda new, old: jnp.max(jnp.abs(new - old)),
    _index(swept_state.params, 1),
    states[1].params,
  )
  assert_close(
    max(jax.tree_util.tree_leaves(first)),
    max(np.max(m) for m in jax.tree_util.tree_leaves(moves)),
    max(np.max(a) for a in jax.tree_util.tree_leaves(moves_atol)),
  )


_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults
# Relative rounding of Adam's unit-sized ratio m̂ / (√v̂ + ε), in u: the bias
# corrections 1 − βᵗ turn the rounding of β to float32 (u·β) into a
# relative error u·β / (1 − β), 999u for β₂ (halved by √v̂'s square root),
# 9u for β₁; 12 more roundings. In operations of 2u: half that.
_ADAM_OPERATIONS = (
  0.5 * _ADAM_B2 / (1 - _ADAM_B2) + _ADAM_B1 / (1 - _ADAM_B1) + 12
) / 2


def _adam_first_moves(params, grads, grads_a, learning_rate):
  """|Δp| = lr · |g| / (|g| + ε) of Adam's first step, and its error bound.

  The step is p − lr · m̂ / (√v̂ + ε) = p − lr · g / (|g| + ε) at t = 1.
  A gradient error δ (`_atol`) moves g / (|g| + ε) by at most
  δ · ε / (|g| − δ + ε)², and never by more than 2. Adam's own arithmetic
  adds _ADAM_OPERATIONS on the ratio, and p − Δ one rounding.
  """

  def moves(g):
    return learning_rate * np.abs(g) / (np.abs(g) + _ADAM_EPS)

  def atol(p, g, g_a):
    delta = _atol(g_a)
    ratio = np.minimum(
      2.0,
      delta * _ADAM_EPS / (np.maximum(np.abs(g) - delta, 0.0) + _ADAM_EPS) ** 2,
    )
    return learning_rate * (
      ratio + rounding_atol(_ADAM_OPERATIONS, 1.0)
    ) + rounding_atol(1, np.abs(np.asarray(p, np.float64)) + learning_rate)

  return (
    jax.tree_util.tree_map(moves, grads),
    jax.tree_util.tree_map(atol, params, grads, grads_a),
  )


@pytest.mark.slow
def test_splitting_an_epoch_into_chunks_is_bitwise_identical():
  rng = np.random.default_rng(3)
  images = jnp.asarray(rng.integers(0, 256, size=(64, _DATA_DIM)), jnp.uint8)
  batch_size, steps_per_epoch, epochs = 8, 8, 2
  hparams = training.Hyperparams(jnp.float32(1e-2), jnp.float32(1.0))

  def chunk(num_steps):
    return jax.jit(
      functools.partial(
        chunks.train_chunk,
        _MODEL,
        _ADAM,
        feeds.BatchFeed(batch_size, True, 255),
        num_steps,
      )
    )

  state0 = _init_state(_ADAM, 4)
  whole, halves = chunk(steps_per_epoch), chunk(steps_per_epoch // 2)
  state_a, state_b = state0, state0
  # On accelerators, two programs may fuse differently, and no a-priori
  # float32 bound survives Adam steps (÷√v̂ amplifies the rounding of small
  # gradients): only the CPU, which compiles both the same, is checked.
  same_steps = jax.default_backend() == "cpu"
  for _ in range(epochs):
    state_a, metrics_a, _ = whole(state_a, images, hparams)
    state_b, first, _ = halves(state_b, images, hparams)
    state_b, second, _ = halves(state_b, images, hparams)
    if same_steps:
      # The same 8 steps; only the averaging differs: one mean of 8 per
      # metric against the mean of two means of 4. Each errs by at most
      # sum_atol over the 8 values, which have one sign per metric.
      for name, value in metrics_a._asdict().items():
        halves_mean = (
          np.float64(getattr(first, name)) + np.float64(getattr(second, name))
        ) / 2
        assert_close(
          halves_mean,
          value,
          2 * sum_atol(steps_per_epoch, abs(float(value)), ops_per_term=2),
          err_msg=name,
        )
  assert int(state_a.step) == epochs * steps_per_epoch
  assert int(state_b.step) == epochs * steps_per_epoch
  if same_steps:  # bit for bit
    chex.assert_trees_all_equal(state_a.params, state_b.params)
    chex.assert_trees_all_equal(state_a.opt_state, state_b.opt_state)
  # Training moved the parameters.
  assert not np.array_equal(
    state_a.params["decoder"]["bias"], state0.params["decoder"]["bias"]
  )


@functools.lru_cache(maxsize=None)
def _linear_gaussian_models():
  lg = make_linear_gaussian()
  return lg, lg.model(), lg.exact_posterior_model()


def _per_example_elbo(model, params, x, key):
  """ELBO parts of each example n with key fold_in(key, n): no batches."""
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(x.shape[0]))
  return _jit_vmap_elbo(model, params, x, keys)


@functools.partial(jax.jit, static_argnums=(0,))
def _jit_vmap_elbo(model, params, x, keys):
  return jax.vmap(
    functools.partial(
      elbo_lib.elbo, model, params, num_samples=2, analytic_kl=True
    )
  )(x, keys)


def _fold_in_draws(model, params, x, key, num_samples):
  """The z draws of example n with key fold_in(key, n): `[N, S, D]`."""
  keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(x.shape[0]))
  mean, logvar = (
    jnp.broadcast_to(a, (x.shape[0], a.shape[-1]))
    for a in model.encode(params, x)
  )
  return jax.vmap(
    functools.partial(
      distributions.sample_diagonal_gaussian, num_samples=num_samples
    )
  )(keys, mean, logvar)


def _mean_atol(values, values_atol):
  """Bound on a float32 mean of N values, each off by at most values_atol."""
  values = np.asarray(values, np.float64)
  return np.mean(values_atol) + sum_atol(
    values.size, np.mean(np.abs(values) + values_atol)
  )


def _stderr_atol(values, values_atol):
  """Bound on evaluate's float32 std(v) / √N for values off by values_atol.

  The std moves by at most max|δv|. Evaluating it in float32 adds: the mean
  v̄ (N + 1 operations), v − v̄ (1), the square (twice the deviation's
  error, +1), the mean of the N squares (N + 1), then √ (half the
  variance's relative error, +1). Then √N and ÷ round twice more.
  """
  values = np.asarray(values, np.float64)
  n, dev = values.size, values - values.mean()
  std = dev.std()
  dev_atol = sum_atol(
    n, np.mean(np.abs(values)), ops_per_term=1
  ) + rounding_atol(1, np.abs(values) + abs(values.mean()))
  var_atol = np.mean(2 * np.abs(dev) * dev_atol) + sum_atol(
    n, np.mean(dev**2), ops_per_term=2
  )
  std_atol = np.max(values_atol) + var_atol / (2 * std) + rounding_atol(1, std)
  return std_atol / math.sqrt(n) + rounding_atol(2, std / math.sqrt(n))


class EvaluateTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.slow
  def test_elbo_of_exact_posterior_is_mean_log_px(self):
    """With q = p(z|x) and the Monte-Carlo KL, every example scores log p(x)."""
    lg, _, model = _linear_gaussian_models()
    x = lg.sample_x(np.random.default_rng(0), 50)
    evaluate = self.variant(
      functools.partial(
        evaluation.evaluate,
        model,
        batch_size=16,
        num_samples=1,
        analytic_kl=False,
      )
    )
    result = evaluate(None, jnp.asarray(x, jnp.float32), jax.random.key(0))
    self.assertIsInstance(result, evaluation.EvalResult)
    chex.assert_shape(list(result), ())
    chex.assert_type(list(result), jnp.float32)
    log_px = lg.log_marginal(x)
    # Every example's ELBO is log p(x) up to its own rounding bound.
    z = _fold_in_draws(
      model, None, jnp.asarray(x, jnp.float32), jax.random.key(0), 1
    )
    example_atol = lg.elbo_atol(
      x, z, *lg.posterior(x), analytic_kl=False, exact_posterior_encoder=True
    )  # [50]
    assert_close(result.elbo, log_px.mean(), _mean_atol(log_px, example_atol))
    assert_close(
      result.elbo_stderr,
      log_px.std() / math.sqrt(50),
      _stderr_atol(log_px, example_atol),
    )
    # Means of ll_n − kl_n, ll_n and kl_n over 50 examples: three float32
    # sums of 50 and the rounding of each difference.
    log_lik = lg.log_likelihood_np(x[:, None, :], z).mean(axis=-1)
    assert_close(
      result.elbo,
      float(result.log_likelihood) - float(result.kl),
      sum_atol(
        50, np.mean(np.abs(log_lik) + np.abs(log_lik - log_px)), ops_per_term=2
      ),
    )

  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.slow
  def test_matches_per_example_elbo_with_fold_in_keys(self):
    """Example n uses key fold_in(rng, n), so batching does not matter."""
    lg, model, _ = _linear_gaussian_models()
    params = {
      "mean": jnp.asarray([0.5, -0.3, 1.0]),
      "logvar": jnp.asarray([-0.2, 0.1, -1.0]),
    }
    x = jnp.asarray(lg.sample_x(np.random.default_rng(1), 50), jnp.float32)
    key = jax.random.key(2)
    # Batches of 7 (the last one padded) against a computation with no
    # batches at all: example n with key fold_in(rng, n).
    result = self.variant(
      functools.partial(
        evaluation.evaluate,
        model,
        batch_size=7,
        num_samples=2,
        analytic_kl=True,
      )
    )(params, x, key)
    per_example = _per_example_elbo(model, params, x, key)
    # Two float32 computations of every example's ELBO, each within the
    # rounding bound of the exact value; evaluate's means add their own.
    z = _fold_in_draws(model, params, x, key, 2)
    for name in ("elbo", "kl", "log_likelihood"):
      example_atol = 2 * lg.elbo_atol(
        np.asarray(x, np.float64),
        z,
        params["mean"],
        params["logvar"],
        analytic_kl=True,
        part=name,
      )
      values = np.asarray(getattr(per_example, name), np.float64)
      assert_close(
        getattr(result, name),
        values.mean(),
        _mean_atol(values, example_atol),
        err_msg=name,
      )
      if name == "elbo":
        assert_close(
          result.elbo_stderr,
          values.std() / math.sqrt(50),
          _stderr_atol(values, example_atol),
        )


# --- A short training run on the synthetic IDX data, end to end. -----------

_EPOCHS = 5
_STEPS_PER_EPOCH = 512 // 32
_NUM_TEST = 256  # idx_data_dir's test split
_REQUIRED_KEYS = (
  "epoch",
  "train_elbo",
  "test_elbo",
  "test_kl",
  "test_log_likelihood",
  "examples_per_sec",
)


def _run_config(data_dir: str, seed: int):
  config = default.get_config()
  config.update(
    dict(
      dataset="idx",
      data_dir=data_dir,
      epochs=_EPOCHS,
      batch_size=32,
      hidden_dims=(64,),
      latent_dim=4,
      eval_batch_size=128,
      seed=seed,
      optimizer="adam",
      learning_rate=1e-3,
    )
  )
  return config


@pytest.fixture(scope="module")
def runs(idx_data_dir, tmp_path_factory):
  """Three runs: seed 0, seed 0 again, seed 1: {name: (workdir, history)}."""
  out = {}
  for name, seed in (("first", 0), ("repeat", 0), ("other_seed", 1)):
    workdir = str(tmp_path_factory.mktemp("run") / name)
    # Only the first run's figures are checked; the others skip drawing them.
    options = {} if name == "first" else {"figures": False}
    history = loop.train_and_evaluate(
      _run_config(idx_data_dir, seed), workdir, **options
    )
    assert all(isinstance(r, EpochRecord) for r in history)
    out[name] = (workdir, run_helpers.as_json(history))
  return out


@pytest.mark.slow
def test_training_raises_the_test_elbo(runs):
  _, history = runs["first"]
  assert [r["epoch"] for r in history] == list(range(1, _EPOCHS + 1))
  assert [r["step"] for r in history] == [
    _STEPS_PER_EPOCH * e for e in range(1, _EPOCHS + 1)
  ]
  for record in history:
    for key in ("train_elbo", "test_elbo", "test_kl", "test_log_likelihood"):
      assert math.isfinite(record[key]), (key, record)
    assert record["test_kl"] >= 0
    # Float32 means over the test split of ll_n − kl_n, ll_n ≤ 0 and
    # kl_n ≥ 0: three sums of 256 terms of one sign, and each difference.
    assert record["test_elbo"] == pytest.approx(
      record["test_log_likelihood"] - record["test_kl"],
      abs=sum_atol(
        _NUM_TEST,
        abs(record["test_log_likelihood"]) + record["test_kl"],
        ops_per_term=2,
      ),
    )
  # 784 binary pixels start near −784 log 2 ≈ −543 nats; the run gains well
  # over 100 nats in 5 epochs. An optimiser that does not descend (no update,
  # wrong sign, lost learning rate) cannot gain 50.
  gain = history[-1]["test_elbo"] - history[0]["test_elbo"]
  assert gain > 50.0, [r["test_elbo"] for r in history]
  assert history[-1]["train_elbo"] > history[0]["train_elbo"] + 50.0


@pytest.mark.slow
def test_metrics_jsonl_config_json_and_figures(runs, idx_data_dir):
  workdir, history = runs["first"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f if line.strip()]
  assert len(records) == _EPOCHS
  for record in records:
    missing = set(_REQUIRED_KEYS) - set(record)
    assert not missing, missing
  assert records == json.loads(json.dumps(history))

  with open(os.path.join(workdir, "config.json")) as f:
    saved = json.load(f)
  assert saved["config"] == json.loads(
    json.dumps(_run_config(idx_data_dir, 0).to_dict())
  )

  pngs = sorted(glob.glob(os.path.join(workdir, "figures", "*.png")))
  assert pngs, f"no figures/*.png in {workdir}"
  for path in pngs:
    with open(path, "rb") as f:
      content = f.read()
    assert content[:8] == _PNG_SIGNATURE, path
    assert b"IEND" in content[-12:], path  # not truncated


def _without_timing(history):
  return [
    {k: v for k, v in record.items() if k not in _TIMING_FIELDS}
    for record in history
  ]


@pytest.mark.slow
def test_same_seed_same_metrics(runs):
  _, first = runs["first"]
  _, repeat = runs["repeat"]
  assert _without_timing(first) == _without_timing(repeat)
  assert all(set(_TIMING_FIELDS) <= set(r) for r in repeat)


@pytest.mark.slow
def test_other_seed_other_metrics(runs):
  _, first = runs["first"]
  _, other = runs["other_seed"]
  for a, b in zip(first, other):
    for key in ("train_elbo", "test_elbo", "test_kl"):
      assert a[key] != b[key], (key, a[key])
