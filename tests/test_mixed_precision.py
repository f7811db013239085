"""compute_dtype=bfloat16: bfloat16 matmuls, float32 parameters, state, loss."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import step as step_lib
from vae_jax.math import objectives
from vae_jax.nets.conv import ConvVAE
from vae_jax.nets.mlp import MLPVAE

import tolerances

# bfloat16 models compiled beside float32 ones, and 150 steps.
pytestmark = pytest.mark.slow

_BF16_EPS = 2.0**-8  # bfloat16: 8 significand bits, unit roundoff 2^-8


def _data(shape, n=64, seed=0):
  p = jax.random.uniform(jax.random.key(seed), (1, *shape))
  return (jax.random.uniform(jax.random.key(seed + 1), (n, *shape)) < p).astype(
    jnp.float32
  )


@pytest.mark.parametrize(
  "cls, sizes",
  [
    (MLPVAE, dict(event_shape=(64,), latent_dim=4, hidden_dims=(32,))),
    (
      ConvVAE,
      dict(
        event_shape=(8, 8, 1),
        latent_dim=4,
        hidden_dims=(32,),
        conv_channels=(8,),
      ),
    ),
  ],
  ids=["mlp", "conv"],
)
def test_bfloat16_model(cls, sizes):
  """Matmuls in bfloat16; parameters, outputs and the ELBO float32 and
  within bfloat16 rounding of the float32 model's."""
  full, half = cls(**sizes), cls(**sizes, compute_dtype="bfloat16")
  params = full.init(jax.random.key(0))
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
    half.init(jax.random.key(0))
  )
  for leaf in jax.tree_util.tree_leaves(half.init(jax.random.key(0))):
    assert leaf.dtype == jnp.float32
  x = _data(sizes["event_shape"])
  jaxpr = jax.make_jaxpr(half.decode)(params, jnp.zeros((3, 4)))
  dots = [e for e in jaxpr.jaxpr.eqns if "dot_general" in str(e)]
  assert dots
  assert "bf16" in str(jaxpr)
  assert "bf16" not in str(
    jax.make_jaxpr(full.decode)(params, jnp.zeros((3, 4)))
  )

  elbo = lambda m: objectives.batch_elbo(m, params, x, jax.random.key(1))
  got, want = elbo(half), elbo(full)
  assert got.elbo.dtype == jnp.float32
  # Each bfloat16 rounding (inputs, weights, each layer's output) is a
  # relative error of at most 2^-8 in a logit; a pixel's log-likelihood
  # changes by at most |Δlogit| ≤ (rounded values per logit) · 2^-8 ·
  # |logit|, summed over pixels: magnitude Σ|terms| ≈ |log-lik| + KL.
  d = int(np.prod(sizes["event_shape"]))
  atol = tolerances.rounding_atol(
    num_ops=2 * (len(sizes["hidden_dims"]) + 2),
    magnitude=np.abs(np.asarray(want.log_likelihood)) + np.asarray(want.kl) + d,
    eps=_BF16_EPS,
  )
  tolerances.assert_close(got.elbo, want.elbo, atol)


def test_bfloat16_trains():
  """A jitted bfloat16 step: float32 state, finite, and the ELBO rises."""
  model = MLPVAE(
    event_shape=(64,), latent_dim=4, hidden_dims=(32,), compute_dtype="bfloat16"
  )
  config = step_lib.StepConfig()
  state = step_lib.init_train_state(model, config, jax.random.key(0))
  hparams = step_lib.Hyperparams(learning_rate=3e-3, kl_weight=1.0)
  train = jax.jit(functools.partial(step_lib.checked_train_step, model, config))
  x = _data((64,), n=128)
  elbos = []
  for _ in range(150):
    state, metrics, code = train(state, x, hparams)
    assert int(code) == 0
    elbos.append(float(metrics.elbo))
  for leaf in jax.tree_util.tree_leaves((state.params, state.opt_state)):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
      assert np.all(np.isfinite(leaf))
  # The first and last 10 steps' means differ by far more than their
  # standard errors (the same batch; only z is redrawn).
  first, last = np.array(elbos[:10]), np.array(elbos[-10:])
  se = np.hypot(
    tolerances.standard_error(first), tolerances.standard_error(last)
  )
  assert last.mean() - first.mean() > 4 * se
