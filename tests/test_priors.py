"""Priors as components: the VampPrior and the mixture against direct sums,
and a user's own prior trained through the launcher."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from tolerances import assert_close, rounding_atol, sum_atol
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.math import objectives
from vae_jax.math import priors
from vae_jax.nets import registry
from vae_jax.nets.mlp import MLPVAE

_TESTS = os.path.dirname(os.path.abspath(__file__))
_LOG_2PI = math.log(2 * math.pi)


def logsumexp(a, axis):
  top = np.max(a, axis=axis, keepdims=True)
  return np.squeeze(top, axis) + np.log(np.sum(np.exp(a - top), axis=axis))


def _log_normal_terms(z, means, logvars):
  """float64 terms of log N(z_k; m_c, diag e^ℓ_c): `[K, C, D]`, and the
  magnitudes float32 rounds: mixture_log_prob expands (z − m)² e^{−ℓ} into
  z² e^{−ℓ} − 2 z m e^{−ℓ} + m² e^{−ℓ}, whose parts can be far larger."""
  z = np.asarray(z, np.float64)[:, None, :]
  m, lv = (np.asarray(a, np.float64)[None] for a in (means, logvars))
  terms = -0.5 * (_LOG_2PI + lv + (z - m) ** 2 * np.exp(-lv))
  expanded = (z**2 + 2 * np.abs(z * m) + m**2) * np.exp(-lv)
  return terms, 0.5 * (_LOG_2PI + np.abs(lv) + expanded)


def _mixture_reference(z, means, logvars, log_weights):
  """log Σ_c w_c N(z; m_c, ·) in float64, and the float32 rounding bound."""
  terms, magnitude = _log_normal_terms(z, means, logvars)
  per_component = terms.sum(-1) + np.asarray(log_weights, np.float64)
  d = terms.shape[-1]
  # Each component's sum of D terms of ~5 operations, then the logsumexp's
  # max, C exps and sums and one log (Higham-style bounds, tests/tolerances).
  component_atol = sum_atol(d, magnitude.sum(-1), ops_per_term=5).max(-1)
  c = terms.shape[1]
  result = logsumexp(per_component, axis=-1)
  atol = component_atol + rounding_atol(c + 4, np.abs(result) + math.log(c))
  return result, atol


@pytest.mark.parametrize(
  "num_pseudo_inputs", [1, pytest.param(7, marks=pytest.mark.slow)]
)
def test_vamp_log_prob_is_a_logsumexp_over_the_encoded_pseudo_inputs(
  num_pseudo_inputs,
):
  model = MLPVAE(
    event_shape=(12,),
    latent_dim=3,
    hidden_dims=(8,),
    prior=priors.VampPrior(3, (12,), num_pseudo_inputs),
  )
  params = model.init(jax.random.key(0))
  assert params["prior"]["pseudo_inputs"].shape == (num_pseudo_inputs, 12)
  u = priors.pseudo_inputs(params["prior"])
  assert float(u.min()) >= 0.0 and float(u.max()) <= 1.0
  means, logvars = jax.vmap(model.encode, in_axes=(None, 0))(params, u)
  z = 2.0 * jax.random.normal(jax.random.key(1), (5, 3))
  got = jax.jit(model.log_prior)(params, z)
  chex.assert_shape(got, (5,))
  want, atol = _mixture_reference(
    z, means, logvars, np.full(num_pseudo_inputs, -math.log(num_pseudo_inputs))
  )
  assert_close(got, want, atol)


@pytest.mark.slow
def test_vamp_gradients_reach_the_pseudo_inputs_and_the_encoder():
  model = MLPVAE(
    event_shape=(12,),
    latent_dim=3,
    hidden_dims=(8,),
    prior=priors.VampPrior(3, (12,), 4),
  )
  params = model.init(jax.random.key(0))
  z = jax.random.normal(jax.random.key(1), (2, 3))
  grads = jax.grad(lambda p: jnp.sum(model.log_prior(p, z)))(params)
  assert float(jnp.abs(grads["prior"]["pseudo_inputs"]).max()) > 0
  assert float(jnp.abs(grads["encoder"]["hidden_0"]["kernel"]).max()) > 0
  assert float(jnp.abs(grads["decoder"]["output"]["kernel"]).max()) == 0


@pytest.mark.slow
def test_mixture_log_prob_and_samples():
  prior = priors.MixtureOfGaussians(latent_dim=2, num_components=3)
  params = prior.init(jax.random.key(0))
  params["logits"] = jnp.array([0.0, 1.0, -2.0])
  z = jax.random.normal(jax.random.key(1), (6, 2))
  want, atol = _mixture_reference(
    z, params["means"], params["logvars"], jax.nn.log_softmax(params["logits"])
  )
  assert_close(prior.log_prob(params, z), want, atol)
  draws = prior.sample(params, jax.random.key(2), 4000)
  chex.assert_shape(draws, (4000, 2))
  # The mixture's mean, within 5 standard errors of the draws' mean.
  w = np.asarray(jax.nn.softmax(params["logits"]), np.float64)
  mean = w @ np.asarray(params["means"], np.float64)
  se = draws.std(axis=0) / math.sqrt(4000)
  assert np.all(np.abs(np.asarray(draws).mean(0) - mean) < 5 * se)


def test_the_standard_prior_keeps_todays_parameters():
  """A learned prior adds params["prior"]; the networks start the same."""
  plain = MLPVAE(event_shape=(12,), latent_dim=3, hidden_dims=(8,))
  vamp = MLPVAE(
    event_shape=(12,),
    latent_dim=3,
    hidden_dims=(8,),
    prior=priors.VampPrior(3, (12,), 4),
  )
  a, b = plain.init(jax.random.key(0)), vamp.init(jax.random.key(0))
  assert set(a) == {"encoder", "decoder"}
  assert set(b) == {"encoder", "decoder", "prior"}
  chex.assert_trees_all_equal(a["encoder"], b["encoder"])


@pytest.mark.parametrize(
  "name, message",
  [
    ("user_priors:no_sample", "lacks the prior's method(s) sample"),
    ("user_priors:nosuch", "has no function 'nosuch'"),
    ("nosuch", "choose one of ['mog', 'standard_normal', 'vamp']"),
  ],
)
def test_a_bad_prior_is_a_config_error(name, message, monkeypatch):
  monkeypatch.syspath_prepend(_TESTS)
  config = default.get_config()
  config.prior = name
  with pytest.raises(
    ConfigError,
    match=message.replace("[", r"\[")
    .replace("]", r"\]")
    .replace("(", r"\(")
    .replace(")", r"\)"),
  ):
    registry.build_model(config, (784,))


@pytest.mark.slow
def test_a_user_prior_trains_through_the_launcher(idx_data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join([_TESTS, os.environ.get("PYTHONPATH", "")]),
  )
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config=vae_jax/configs/smoke.py",
      "--config.prior=user_priors:learned_gaussian",
      "--config.epochs=1",
      "--config.dataset=idx",
      f"--config.data_dir={idx_data_dir}",
      "--config.batch_size=32",
      "--config.validation_size=64",
      "--config.eval_batch_size=128",
      f"--workdir={workdir}",
      "--quiet",
    ],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  stored = json.load(open(os.path.join(workdir, "config.json")))
  assert stored["model"]["kl"] == "monte_carlo"  # no closed form: no error
  records = [
    json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))
  ]
  assert all(math.isfinite(r["test_elbo"]) for r in records)
  sys.path.insert(0, _TESTS)
  try:
    import vae_jax  # pylint: disable=g-import-not-at-top

    _, model, params = vae_jax.load_run(workdir)
  finally:
    sys.path.remove(_TESTS)
  # The prior's parameters were trained with the rest.
  assert set(params["prior"]) == {"mean", "logvar"}
  assert float(jnp.abs(params["prior"]["mean"]).max()) > 0
  assert type(model.prior_component).__name__ == "LearnedGaussian"


@pytest.mark.slow
def test_analytic_kl_without_a_closed_form_is_the_monte_carlo_kl():
  """analytic_kl=True with the VampPrior: the Monte-Carlo KL, no error; the
  IWAE bound with K = 1 is then the same number as the ELBO."""
  model = MLPVAE(
    event_shape=(12,),
    latent_dim=3,
    hidden_dims=(8,),
    prior=priors.VampPrior(3, (12,), 4),
  )
  params = model.init(jax.random.key(0))
  x = (jax.random.uniform(jax.random.key(1), (12,)) > 0.5).astype(jnp.float32)
  key = jax.random.key(2)
  closed = objectives.elbo(model, params, x, key, 1, analytic_kl=True)
  monte_carlo = objectives.elbo(model, params, x, key, 1, analytic_kl=False)
  chex.assert_trees_all_equal(closed, monte_carlo)
  iwae = objectives.iwae_bound(model, params, x, key, 1)
  assert_close(
    iwae,
    monte_carlo.elbo,
    rounding_atol(
      4, abs(float(monte_carlo.log_likelihood)) + abs(float(monte_carlo.kl))
    ),
  )
  assert not objectives.uses_closed_form_kl(model, params, x)
  assert objectives.uses_closed_form_kl(
    MLPVAE(event_shape=(12,), latent_dim=3, hidden_dims=(8,)), params, x
  )
