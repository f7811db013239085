"""benchmarks/plain_vae.py computes the trainer's model: its ratios compare
equal work. Same parameters, same noise → the same ELBO and gradients."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax.math import distributions
from vae_jax.nets.mlp import MLPVAE

import tolerances

sys.path.insert(
  0,
  os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"
  ),
)
import plain_vae  # pylint: disable=g-import-not-at-top,wrong-import-position

# The benchmarks' baselines, not the library: compiles of their own.
pytestmark = pytest.mark.slow

_SIZES = plain_vae.Sizes(hidden=(16, 12), latent=3, batch=8, data=30)


def _library_params(layers):
  """plain_vae's list of (W, b) as MLPVAE parameters (heads split)."""
  n = len(_SIZES.hidden)
  dense = lambda w, b: {"kernel": w, "bias": b}
  head_w, head_b = layers[n]
  encoder = {f"hidden_{i}": dense(*layers[i]) for i in range(n)}
  encoder["mean"] = dense(head_w[:, : _SIZES.latent], head_b[: _SIZES.latent])
  encoder["logvar"] = dense(head_w[:, _SIZES.latent :], head_b[_SIZES.latent :])
  decoder = {f"hidden_{i}": dense(*layers[n + 1 + i]) for i in range(n)}
  decoder["output"] = dense(*layers[-1])
  return {"encoder": encoder, "decoder": decoder}


def _library_elbo(model, params, x, eps):
  mean, logvar = model.encode(params, x)
  z = mean + jnp.exp(0.5 * logvar) * eps
  log_lik = distributions.bernoulli_log_likelihood(model.decode(params, z), x)
  return log_lik - distributions.kl_to_standard_normal(mean, logvar)


def test_same_model_same_elbo_and_gradients():
  model = MLPVAE(
    event_shape=(_SIZES.data,),
    latent_dim=_SIZES.latent,
    hidden_dims=_SIZES.hidden,
  )
  layers = plain_vae.init(_SIZES, jax.random.key(0))
  params = _library_params(layers)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
    model.init(jax.random.key(0))
  )
  x = (
    jax.random.uniform(jax.random.key(1), (_SIZES.batch, _SIZES.data)) < 0.4
  ).astype(jnp.float32)
  eps = jax.random.normal(jax.random.key(2), (_SIZES.batch, _SIZES.latent))
  plain = lambda p: jnp.mean(
    jax.vmap(lambda xi, ei: plain_vae._elbo(_SIZES, p, xi, ei))(x, eps)
  )  # pylint: disable=protected-access
  library = lambda p: jnp.mean(
    jax.vmap(lambda xi, ei: _library_elbo(model, p, xi, ei))(x, eps)
  )
  (got, got_grads), (want, want_grads) = (
    jax.value_and_grad(plain)(layers),
    jax.value_and_grad(library)(params),
  )
  # Two float32 programs of the same sums: the depth of the network
  # (matmul sums of ≤ 16 terms, 5 layers) times the pixels' sum.
  atol = tolerances.sum_atol(
    _SIZES.data, abs(float(want)) + _SIZES.data, ops_per_term=2 * 16 * 5
  )
  tolerances.assert_close(got, want, atol)
  got_grads = _library_params(got_grads)
  # A gradient entry: back through 5 layers, each a sum of ≤ data + 16
  # terms, over the batch; its terms are at most the leaf's largest entry
  # times the batch (the batch mean divides it back).
  for g, w in zip(
    jax.tree_util.tree_leaves(got_grads), jax.tree_util.tree_leaves(want_grads)
  ):
    tolerances.assert_close(
      g,
      w,
      tolerances.rounding_atol(
        num_ops=2 * 5 * (_SIZES.data + 16) + _SIZES.batch,
        magnitude=float(np.max(np.abs(w))),
      ),
    )


def test_matmul_flops():
  """6 MACs per weight, less the input layer's input gradient."""
  macs = [a * b for a, b in _SIZES.layers]
  assert (
    plain_vae.matmul_flops(_SIZES)
    == 6 * sum(macs) - 2 * _SIZES.data * _SIZES.hidden[0]
  )
  assert _SIZES.layers[len(_SIZES.hidden)] == (
    _SIZES.hidden[-1],
    2 * _SIZES.latent,
  )


def test_matmul_adam_step_is_adam_on_the_matmul_gradients():
  """The mm+adam row does the matmul row's work plus a real Adam update
  of every parameter: two steps match optax applied by hand."""
  lr = 1e-2
  batches = (
    jax.random.uniform(jax.random.key(3), (2, _SIZES.batch, _SIZES.data)) < 0.4
  ).astype(jnp.float32)
  got_params, got_state = plain_vae.matmul_adam_step(_SIZES, lr)(
    plain_vae.init_adam_carry(_SIZES, lr), batches
  )
  params, state = plain_vae.init_adam_carry(_SIZES, lr)
  optimizer = optax.adam(lr)
  for x in batches:
    grads = [
      (1e-6 * g, jnp.zeros_like(b))
      for (_, b), g in zip(params, plain_vae._matmul_grads(_SIZES, params, x))
    ]  # pylint: disable=protected-access
    updates, state = optimizer.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert int(got_state[0].count) == 2
  for got, want, before in zip(
    jax.tree_util.tree_leaves(got_params),
    jax.tree_util.tree_leaves(params),
    jax.tree_util.tree_leaves(plain_vae.init(_SIZES, jax.random.key(0))),
  ):
    # Adam moves each weight by about lr per step: the update is there.
    if before.ndim == 2:
      assert float(jnp.max(jnp.abs(got - before))) > 0.5 * lr
    # The same float32 ops, compiled in two programs: a few roundings of
    # the parameters' magnitude plus the lr-sized steps.
    tolerances.assert_close(
      got,
      want,
      tolerances.rounding_atol(
        num_ops=16, magnitude=float(np.max(np.abs(want))) + lr
      ),
    )
