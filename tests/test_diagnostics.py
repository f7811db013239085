"""Latent diagnostics: KL per dimension, active units, q(z) against p(z)."""

from __future__ import annotations

import logging

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_linear_gaussian
from tolerances import F32_EPS
from vae_jax.math import diagnostics
from vae_jax.evaluation import dataset as likelihood

_EPS = F32_EPS


def _reference(means: np.ndarray, logvars: np.ndarray):
  """The module docstring's formulas in float64 numpy."""
  kl = 0.5 * (means**2 + np.exp(logvars) - 1 - logvars)
  var = means.var(axis=0)
  cov = np.cov(means.T, bias=True) + np.diag(np.exp(logvars).mean(axis=0))
  m = means.mean(axis=0)
  aggregate = 0.5 * (
    np.trace(cov) + m @ m - means.shape[1] - np.linalg.slogdet(cov)[1]
  )
  return kl.mean(axis=0), var, int(np.sum(var > 0.01)), aggregate


@pytest.fixture
def latents():
  """(means, logvars) `[N, 5]` of N = 2000 examples, float64."""
  rng = np.random.default_rng(0)
  n = 2000
  # Dimensions 0-2 move with x; 3 and 4 are collapsed: μ ≈ 0, σ² ≈ 1.
  means = np.concatenate(
    [rng.normal(0, [1.0, 0.5, 0.2], (n, 3)), rng.normal(0, 1e-3, (n, 2))],
    axis=1,
  )
  logvars = np.concatenate(
    [np.full((n, 3), -2.0), rng.normal(0, 1e-3, (n, 2))], axis=1
  )
  return means, logvars


def test_counts_the_active_units_it_was_built_with(latents):
  means, logvars = latents
  result = diagnostics.latent_diagnostics(
    jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32)
  )
  assert int(result.active_units) == 3
  assert not diagnostics.collapsed(3, 5)
  assert diagnostics.collapsed(1, 5)


def test_matches_a_float64_reference(latents):
  means, logvars = latents
  result = diagnostics.latent_diagnostics(
    jnp.asarray(means, jnp.float32), jnp.asarray(logvars, jnp.float32)
  )
  kl, var, active, aggregate = _reference(means, logvars)
  n = means.shape[0]
  # Means over N = 2000 float32 terms of size ≤ ~10: N·eps·10 absolute.
  tol = n * _EPS * 10
  np.testing.assert_allclose(result.kl_per_dim, kl, atol=tol)
  np.testing.assert_allclose(result.mean_variance, var, atol=tol)
  assert int(result.active_units) == active
  # slogdet of a 5×5 float32 matrix with entries of O(1): a few hundred eps.
  np.testing.assert_allclose(
    result.aggregate_kl, aggregate, atol=tol + 500 * _EPS
  )
  # The collapsed dimensions add nothing to the KL.
  assert float(np.max(result.kl_per_dim[3:])) < 1e-5


@pytest.mark.slow
def test_fires_for_an_encoder_that_ignores_x(caplog):
  lg = make_linear_gaussian(data_dim=6, latent_dim=4)
  model = lg.model()  # q(z|x) = N(params) for every x: nothing active
  params = {"mean": jnp.zeros(4), "logvar": jnp.zeros(4)}
  x = jnp.asarray(lg.sample_x(np.random.default_rng(0), 64), jnp.float32)
  usage = likelihood.latent_usage(model, params, x, batch_size=32)
  assert int(usage.active_units) == 0
  with caplog.at_level(logging.WARNING, logger="absl"):
    assert likelihood.warn_if_collapsed(usage)
  warnings = [
    r.getMessage()
    for r in caplog.records
    if r.name == "absl" and r.levelno >= logging.WARNING
  ]
  assert warnings
  assert "posterior collapse in layer z: only 0 of 4" in warnings[0]


@pytest.mark.slow
def test_is_silent_for_an_encoder_that_uses_every_dimension():
  lg = make_linear_gaussian(data_dim=6, latent_dim=3)
  model = lg.exact_posterior_model()
  x = jnp.asarray(lg.sample_x(np.random.default_rng(1), 64), jnp.float32)
  usage = likelihood.latent_usage(model, None, x, batch_size=32)
  assert int(usage.active_units) == 3
  assert not likelihood.warn_if_collapsed(usage)
