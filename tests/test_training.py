"""The train step, chunks of steps, evaluation, and a short training run.

The step and evaluation are checked against independent computations (the
SGD update is −lr·∇loss of the batch ELBO; the evaluation ELBO of an exact
posterior is log p(x)); `train_and_evaluate` is run end to end on the
synthetic IDX data of conftest.py and must learn, be reproducible, and
write its run directory.
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

from conftest import make_linear_gaussian
from vae_jax import chunks
from vae_jax import evaluation
from vae_jax import step as training
from vae_jax.configs import default
from vae_jax.math import distributions
from vae_jax.math import objectives as elbo_lib
from vae_jax.math.model import StandardNormalPrior
from vae_jax.run import loop

_DATA_DIM = 16
_LATENT_DIM = 2
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIMING_FIELDS = ("examples_per_sec", "wall_time_sec")


@dataclasses.dataclass(frozen=True)
class _LinearVAE(StandardNormalPrior):
  """A Bernoulli VAE with linear encoder and decoder, all parameters trained.

  The step's logic does not depend on the networks; a linear VAE has a few
  ops, so the un-jitted variants and the compiles stay cheap. The MLP VAE is
  trained end to end below, by `train_and_evaluate`.
  """

  event_shape: tuple = (_DATA_DIM,)
  latent_dim: int = _LATENT_DIM

  def init(self, rng):
    enc_rng, dec_rng = jax.random.split(rng)
    return {
        "encoder": {
            "mean": 0.3 * jax.random.normal(enc_rng, (_DATA_DIM, _LATENT_DIM)),
            "logvar": jnp.zeros((_DATA_DIM, _LATENT_DIM)),
            "bias": jnp.zeros((_LATENT_DIM,))},
        "decoder": {
            "kernel": 0.3 * jax.random.normal(dec_rng,
                                              (_LATENT_DIM, _DATA_DIM)),
            "bias": jnp.zeros((_DATA_DIM,))},
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
_jit_init_train_state = jax.jit(training.init_train_state,
                                static_argnums=(0, 1))


@functools.lru_cache(maxsize=None)
def _init_state(step_config, seed):
  return _jit_init_train_state(_MODEL, step_config, jax.random.key(seed))


def _binary_batch(seed: int, batch_size: int = 8) -> jax.Array:
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(batch_size, _DATA_DIM)) < 0.3,
                     jnp.float32)


def _stack(*trees):
  return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


def _index(tree, i):
  return jax.tree_util.tree_map(lambda leaf: leaf[i], tree)


@functools.lru_cache(maxsize=None)
def _sgd_step_case():
  """The inputs of one SGD step and its independent result, computed once.

  The loss is the β-weighted batch ELBO with the step's key
  fold_in(state.rng, step); plain SGD moves params by −lr · ∇loss.
  """
  model, optimizer = _MODEL, _SGD
  state = _init_state(optimizer, 0)
  batch = _binary_batch(0)
  learning_rate, kl_weight = 0.1, 0.5
  hparams = training.Hyperparams(learning_rate=jnp.float32(learning_rate),
                                 kl_weight=jnp.float32(kl_weight))
  rng = jax.random.fold_in(state.rng, 0)

  def loss_fn(params):
    parts = elbo_lib.batch_elbo(model, params, batch, rng)
    return -jnp.mean(parts.log_likelihood - kl_weight * parts.kl), parts

  (loss, parts), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      state.params)
  expected_params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g,
                                           state.params, grads)
  expected_metrics = {
      "loss": loss, "elbo": np.mean(parts.elbo), "kl": np.mean(parts.kl),
      "log_likelihood": np.mean(parts.log_likelihood),
      "grad_norm": np.sqrt(sum(np.sum(np.square(g)) for g in
                               jax.tree_util.tree_leaves(grads))),
      "learning_rate": learning_rate, "kl_weight": kl_weight}
  return model, optimizer, state, batch, hparams, expected_params, \
      expected_metrics


class TrainStepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_sgd_step_is_minus_learning_rate_times_gradient(self):
    (model, optimizer, state, batch, hparams, expected_params,
     expected_metrics) = _sgd_step_case()
    step = self.variant(functools.partial(training.train_step, model,
                                          optimizer))
    new_state, metrics = step(state, batch, hparams)

    self.assertIsInstance(metrics, training.StepMetrics)
    chex.assert_shape(list(metrics), ())
    chex.assert_type(list(metrics), jnp.float32)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state.params,
                                                  state.params)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state.opt_state,
                                                  state.opt_state)
    chex.assert_type(new_state.step, jnp.int32)
    self.assertEqual(int(new_state.step), 1)
    chex.assert_trees_all_close(new_state.params, expected_params, rtol=1e-5,
                                atol=1e-6)
    for name, value in expected_metrics.items():
      np.testing.assert_allclose(getattr(metrics, name), value, rtol=1e-5,
                                 err_msg=name)
    self.assertGreater(float(metrics.grad_norm), 0.0)
    np.testing.assert_allclose(metrics.elbo,
                               metrics.log_likelihood - metrics.kl, rtol=1e-5)

  def test_vmap_over_states_and_learning_rates(self):
    """One vmapped step over stacked (state, hparams) = separate steps."""
    step = functools.partial(training.train_step, _MODEL, _ADAM)
    states = [_init_state(_ADAM, seed) for seed in (1, 2)]
    hparams = [training.Hyperparams(jnp.float32(lr), jnp.float32(beta))
               for lr, beta in ((1e-3, 1.0), (3e-2, 0.5))]
    batch = _binary_batch(1)

    swept_state, swept_metrics = jax.jit(jax.vmap(step, in_axes=(0, None, 0)))(
        _stack(*states), batch, _stack(*hparams))
    chex.assert_shape(list(swept_metrics), (2,))
    separate = jax.jit(step)
    for i in range(2):
      state_i, metrics_i = separate(states[i], batch, hparams[i])
      chex.assert_trees_all_close(_index(swept_state.params, i),
                                  state_i.params, rtol=1e-5, atol=1e-6)
      chex.assert_trees_all_close(_index(swept_metrics, i), metrics_i,
                                  rtol=1e-5, atol=1e-6)
    # The rate is applied: Adam's first step moves each parameter by ≈ lr.
    first = jax.tree_util.tree_map(lambda new, old: jnp.max(jnp.abs(new - old)),
                                   _index(swept_state.params, 1),
                                   states[1].params)
    np.testing.assert_allclose(max(jax.tree_util.tree_leaves(first)), 3e-2,
                               rtol=1e-3)


class TrainChunkTest(chex.TestCase):

  def test_splitting_an_epoch_into_chunks_is_bitwise_identical(self):
    rng = np.random.default_rng(3)
    images = jnp.asarray(rng.integers(0, 256, size=(64, _DATA_DIM)), jnp.uint8)
    batch_size, steps_per_epoch, epochs = 8, 8, 2
    hparams = training.Hyperparams(jnp.float32(1e-2), jnp.float32(1.0))

    def chunk(num_steps):
      return jax.jit(functools.partial(
          chunks.train_chunk, _MODEL, _ADAM,
          chunks.BatchConfig(batch_size, True, 255), num_steps))

    state0 = _init_state(_ADAM, 4)
    whole, halves = chunk(steps_per_epoch), chunk(steps_per_epoch // 2)
    state_a, state_b = state0, state0
    for _ in range(epochs):
      state_a, metrics_a, _ = whole(state_a, images, hparams)
      state_b, first, _ = halves(state_b, images, hparams)
      state_b, second, _ = halves(state_b, images, hparams)
      chex.assert_trees_all_close(
          jax.tree_util.tree_map(lambda u, v: (u + v) / 2, first, second),
          metrics_a, rtol=1e-5, atol=1e-6)
    self.assertEqual(int(state_a.step), epochs * steps_per_epoch)
    self.assertEqual(int(state_b.step), epochs * steps_per_epoch)
    if jax.default_backend() == "cpu":  # bit for bit
      chex.assert_trees_all_equal(state_a.params, state_b.params)
      chex.assert_trees_all_equal(state_a.opt_state, state_b.opt_state)
    else:  # two programs may fuse differently on accelerators
      chex.assert_trees_all_close(state_a.params, state_b.params, rtol=1e-5,
                                  atol=1e-6)
    # Training moved the parameters.
    self.assertFalse(np.array_equal(state_a.params["decoder"]["bias"],
                                    state0.params["decoder"]["bias"]))


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
  return jax.vmap(functools.partial(elbo_lib.elbo, model, params,
                                    num_samples=2, analytic_kl=True))(x, keys)


class EvaluateTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_elbo_of_exact_posterior_is_mean_log_px(self):
    """With q = p(z|x) and the Monte-Carlo KL, every example scores log p(x)."""
    lg, _, model = _linear_gaussian_models()
    x = lg.sample_x(np.random.default_rng(0), 50)
    evaluate = self.variant(functools.partial(
        evaluation.evaluate, model, batch_size=16, num_samples=1,
        analytic_kl=False))
    result = evaluate(None, jnp.asarray(x, jnp.float32), jax.random.key(0))
    self.assertIsInstance(result, evaluation.EvalResult)
    chex.assert_shape(list(result), ())
    chex.assert_type(list(result), jnp.float32)
    log_px = lg.log_marginal(x)
    np.testing.assert_allclose(result.elbo, log_px.mean(), atol=2e-4)
    np.testing.assert_allclose(result.elbo_stderr,
                               log_px.std() / math.sqrt(50), rtol=1e-3)
    np.testing.assert_allclose(result.elbo,
                               result.log_likelihood - result.kl, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_per_example_elbo_with_fold_in_keys(self):
    """Example n uses key fold_in(rng, n), so batching does not matter."""
    lg, model, _ = _linear_gaussian_models()
    params = {"mean": jnp.asarray([0.5, -0.3, 1.0]),
              "logvar": jnp.asarray([-0.2, 0.1, -1.0])}
    x = jnp.asarray(lg.sample_x(np.random.default_rng(1), 50), jnp.float32)
    key = jax.random.key(2)
    # Batches of 7 (the last one padded) against a computation with no
    # batches at all: example n with key fold_in(rng, n).
    result = self.variant(functools.partial(
        evaluation.evaluate, model, batch_size=7, num_samples=2,
        analytic_kl=True))(params, x, key)
    per_example = _per_example_elbo(model, params, x, key)
    elbos = np.asarray(per_example.elbo, np.float64)
    np.testing.assert_allclose(result.elbo, elbos.mean(), rtol=1e-5)
    np.testing.assert_allclose(result.elbo_stderr,
                               elbos.std() / math.sqrt(50), rtol=1e-4)
    np.testing.assert_allclose(result.kl, np.mean(per_example.kl), rtol=1e-5)
    np.testing.assert_allclose(result.log_likelihood,
                               np.mean(per_example.log_likelihood), rtol=1e-5)


# --- A short training run on the synthetic IDX data, end to end. -----------

_EPOCHS = 5
_STEPS_PER_EPOCH = 512 // 32
_REQUIRED_KEYS = ("epoch", "train_elbo", "test_elbo", "test_kl",
                  "test_log_likelihood", "examples_per_sec")


def _run_config(data_dir: str, seed: int):
  config = default.get_config()
  config.update(dict(
      dataset="idx", data_dir=data_dir, epochs=_EPOCHS, batch_size=32,
      hidden_dims=(64,), latent_dim=4, eval_batch_size=128, seed=seed,
      optimizer="adam", learning_rate=1e-3))
  return config


@pytest.fixture(scope="module")
def runs(idx_data_dir, tmp_path_factory):
  """Three runs: seed 0, seed 0 again, seed 1: {name: (workdir, history)}."""
  out = {}
  for name, seed in (("first", 0), ("repeat", 0), ("other_seed", 1)):
    workdir = str(tmp_path_factory.mktemp("run") / name)
    # Only the first run's figures are checked; the others skip drawing them.
    options = {} if name == "first" else {"figures": False}
    out[name] = (workdir, loop.train_and_evaluate(
        _run_config(idx_data_dir, seed), workdir, **options))
  return out


def test_training_raises_the_test_elbo(runs):
  _, history = runs["first"]
  assert [r["epoch"] for r in history] == list(range(1, _EPOCHS + 1))
  assert [r["step"] for r in history] == [
      _STEPS_PER_EPOCH * e for e in range(1, _EPOCHS + 1)]
  for record in history:
    for key in ("train_elbo", "test_elbo", "test_kl", "test_log_likelihood"):
      assert math.isfinite(record[key]), (key, record)
    assert record["test_kl"] >= 0
    assert record["test_elbo"] == pytest.approx(
        record["test_log_likelihood"] - record["test_kl"], abs=1e-3)
  # 784 binary pixels start near −784 log 2 ≈ −543 nats; the run gains well
  # over 100 nats in 5 epochs. An optimiser that does not descend (no update,
  # wrong sign, lost learning rate) cannot gain 50.
  gain = history[-1]["test_elbo"] - history[0]["test_elbo"]
  assert gain > 50.0, [r["test_elbo"] for r in history]
  assert history[-1]["train_elbo"] > history[0]["train_elbo"] + 50.0


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
  assert saved["config"] == json.loads(json.dumps(
      _run_config(idx_data_dir, 0).to_dict()))

  pngs = sorted(glob.glob(os.path.join(workdir, "figures", "*.png")))
  assert pngs, f"no figures/*.png in {workdir}"
  for path in pngs:
    with open(path, "rb") as f:
      content = f.read()
    assert content[:8] == _PNG_SIGNATURE, path
    assert b"IEND" in content[-12:], path  # not truncated


def _without_timing(history):
  return [{k: v for k, v in record.items() if k not in _TIMING_FIELDS}
          for record in history]


def test_same_seed_same_metrics(runs):
  _, first = runs["first"]
  _, repeat = runs["repeat"]
  assert _without_timing(first) == _without_timing(repeat)
  assert all(set(_TIMING_FIELDS) <= set(r) for r in repeat)


def test_other_seed_other_metrics(runs):
  _, first = runs["first"]
  _, other = runs["other_seed"]
  for a, b in zip(first, other):
    for key in ("train_elbo", "test_elbo", "test_kl"):
      assert a[key] != b[key], (key, a[key])
