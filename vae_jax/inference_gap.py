"""Where the gap comes from: the approximation and the amortisation gaps.

The encoder gives q(z|x) for every x at once (amortised inference). For one
example x let q* be the best member of the same family for that x alone,
found by optimising q's own parameters with the decoder and the prior frozen.
Then (Cremer, Li & Duvenaud 2018, "Inference Suboptimality in VAEs")

    log p(x) − L[q]  =  (log p(x) − L[q*])  +  (L[q*] − L[q])
    inference gap       approximation gap      amortisation gap

where L[q] = E_q[log p(x|z)] − KL(q ‖ p(z)) = log p(x) − KL(q ‖ p(z|x)). The
approximation gap is KL(q* ‖ p(z|x)), the price of the family; the
amortisation gap is what one network for all x costs over a q fitted to
each x.

The family is the diagonal Gaussian of one-layer models, q = N(μ, diag e^ℓ),
and (μ, ℓ) are optimised per example (`optimize_posterior`) with optax's
Adam, inside a `lax.while_loop`, on the S-sample ELBO estimate (the analytic
KL where the prior is N(0, I)). The learning rate is halved each time the
ELBO stops improving over a window (optax.contrib.reduce_on_plateau), and an
example stops after `num_reductions` halvings or `max_steps` steps: with a
constant rate Adam would leave the mean jittering around q*, a loss of
order rate/σ_q nats per dimension. vmap it over a batch: each example stops
by itself (vmapped, the loop runs until the last one has).

`decompose` measures one example: L[q] and L[q*] with the same many draws
(common random numbers, so their difference, the amortisation gap, has a
small variance), and log p̂(x) importance-sampled with q* as the proposal
(and with q). The three gaps come from these same values, so
inference = approximation + amortisation up to rounding.

Pure functions of (model, params, x, rng) on one example; the decoder's and
the prior's parameters are only read (the gradient is taken with respect to
q's parameters alone).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from optax import contrib as optax_contrib

from vae_jax.math import distributions
from vae_jax.math import model as model_lib
from vae_jax.math import objectives
from vae_jax.math.model import VAEModel

__all__ = [
  "GapSettings",
  "LocalPosterior",
  "OptimizedPosterior",
  "GapTerms",
  "INITS",
  "RESOLUTION",
  "check_model",
  "local_elbo",
  "optimize_posterior",
  "log_px_with_proposal",
  "decompose",
]

INITS = ("encoder", "prior")  # where q's parameters start
# A window's mean ELBO must beat the best window by this much, nats, to count
# as an improvement: the optimiser's resolution on L[q*].
RESOLUTION = 0.01


class GapSettings(NamedTuple):
  """How q* is found and measured (all static: they shape the program)."""

  init: str = "encoder"  # "encoder": q's output; "prior": N(0, I)
  num_samples: int = 16  # S, draws of the ELBO estimate per step
  learning_rate: float = 0.05  # Adam's, before any halving
  window: int = 50  # steps whose mean ELBO must beat the best by 0.01 nats
  num_reductions: int = 5  # halvings before an example stops
  max_steps: int = 2000  # the cap per example
  final_samples: int = 1000  # draws of L[q*] and L[q]


class LocalPosterior(NamedTuple):
  """One example's diagonal Gaussian q = N(mean, diag exp(logvar))."""

  mean: chex.Array  # [D]
  logvar: chex.Array  # [D]


class OptimizedPosterior(NamedTuple):
  """q* of one example and how many steps found it."""

  q: LocalPosterior
  steps: chex.Array  # int32, a scalar


class GapTerms(NamedTuple):
  """One example's measurements, nats; the gaps are differences of these."""

  elbo: chex.Array  # L[q], the encoder's q, `final_samples` draws
  elbo_optimized: chex.Array  # L[q*], the same draws' noise
  elbo_stderr: chex.Array  # Monte-Carlo s.e. of L[q]
  elbo_optimized_stderr: chex.Array  # of L[q*]
  log_px: chex.Array  # log p̂_K(x), proposal q
  log_px_q_star: chex.Array  # log p̂_K(x), proposal q*
  steps: chex.Array  # int32


def check_model(model: VAEModel) -> str:
  """The one latent layer's name; ValueError for any other model.

  Only one Gaussian layer is optimised as a free diagonal Gaussian here; a
  hierarchy's conditional layers q(z_l | z_{>l}, x) would need each layer's
  local parameters given its parents, which this module does not do.
  """
  layers = list(model.latent_shapes)
  if len(layers) != 1 or len(model.latent_shapes[layers[0]]) != 1:
    raise ValueError(
      f"the gap decomposition needs a model with one latent layer of shape "
      f"[D] (a diagonal-Gaussian q); this one has layers "
      f"{dict(model.latent_shapes)}"
    )
  return layers[0]


def _closed_form_prior(model: VAEModel) -> bool:
  """Whether KL(q ‖ p(z)) has the closed form: p(z) = N(0, I)."""
  prior = getattr(model, "prior_component", None)
  return bool(getattr(prior, "standard_normal", False))


def _draws(model, q: LocalPosterior, rng, num_samples: int, first=0):
  """z_k = μ + σ ε_k, ε_k from fold_in(rng, first + k) as the model draws."""
  layer = check_model(model)
  eps = model_lib.layer_noise(
    rng, model_lib.draw_indices(num_samples, first), model.latent_shapes
  )[layer]
  z = q.mean + jnp.exp(0.5 * q.logvar) * eps  # [K, D]
  return layer, z, distributions.diagonal_gaussian_log_prob(z, q.mean, q.logvar)


def _elbo_terms(model, params, x, q, rng, num_samples):
  """Per draw: log p(x|z_k) − KL (closed form) or log w_k (Monte Carlo)."""
  layer, z, log_q = _draws(model, q, rng, num_samples)
  log_likelihood, log_prior = model.log_joint(params, x, {layer: z})
  if _closed_form_prior(model):
    return log_likelihood - jnp.sum(
      distributions.kl_to_standard_normal(q.mean, q.logvar)
    )
  return log_likelihood + log_prior - log_q


def local_elbo(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  q: LocalPosterior,
  rng: chex.PRNGKey,
  num_samples: int,
) -> tuple[chex.Array, chex.Array]:
  """(L[q], its Monte-Carlo s.e.) of any diagonal q of one example, nats.

  E_q[log p(x|z)] from `num_samples` draws, minus the closed-form KL when
  p(z) = N(0, I); otherwise the mean of log p(x, z_k) − log q(z_k).
  """
  terms = _elbo_terms(model, params, x, q, rng, num_samples)
  return jnp.mean(terms), jnp.std(terms) / math.sqrt(num_samples)


def encoder_posterior(
  model: VAEModel, params: Any, x: chex.Array
) -> LocalPosterior:
  """The encoder's q(z|x) of one example as a `LocalPosterior`."""
  layer = check_model(model)
  mean, logvar = model.posterior_stats(params, x, jax.random.key(0))[layer]
  return LocalPosterior(mean=mean, logvar=logvar)


def _optimizer(settings: GapSettings) -> optax.GradientTransformationExtraArgs:
  # The loss is averaged over a window of steps and compared once per window
  # with the best window so far; no improvement by RESOLUTION halves the rate.
  return optax.chain(
    optax.adam(settings.learning_rate),
    optax_contrib.reduce_on_plateau(
      factor=0.5,
      patience=1,
      rtol=0.0,
      atol=RESOLUTION,
      cooldown=0,
      accumulation_size=settings.window,
    ),
  )


class _Loop(NamedTuple):
  q: LocalPosterior
  opt_state: Any
  step: chex.Array


def optimize_posterior(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  settings: GapSettings = GapSettings(),
) -> OptimizedPosterior:
  """q* = argmax over diagonal q of L[q] for one example x, by Adam.

  Starts from the encoder's q(z|x) (`settings.init="encoder"`) or N(0, I)
  ("prior"). Step t draws its S samples from fold_in(rng, t). Only q's
  parameters receive gradients: `params` (decoder, prior, encoder) are
  constants of the loop.
  """
  return _optimize(
    model, params, x, rng, settings, encoder_posterior(model, params, x)
  )


def _optimize(
  model, params, x, rng, settings: GapSettings, encoder_q: LocalPosterior
) -> OptimizedPosterior:
  """`optimize_posterior`, given the encoder's q of x (`decompose` needs it
  too, so it is computed once)."""
  if settings.init not in INITS:
    raise ValueError(f"init={settings.init!r}: it must be one of {INITS}")
  start = encoder_q
  if settings.init == "prior":
    start = jax.tree_util.tree_map(jnp.zeros_like, start)
  params = jax.lax.stop_gradient(params)
  optimizer = _optimizer(settings)
  stop_scale = 0.5**settings.num_reductions

  def loss(q, key):
    return -local_elbo(model, params, x, q, key, settings.num_samples)[0]

  def cond(loop: _Loop):  # powers of two: the comparison is exact
    return (loop.step < settings.max_steps) & (
      loop.opt_state[-1].scale > stop_scale
    )

  def body(loop: _Loop):
    value, grads = jax.value_and_grad(loss)(
      loop.q, jax.random.fold_in(rng, loop.step)
    )
    updates, opt_state = optimizer.update(
      grads, loop.opt_state, loop.q, value=value
    )
    return _Loop(optax.apply_updates(loop.q, updates), opt_state, loop.step + 1)

  init = _Loop(start, optimizer.init(start), jnp.asarray(0, jnp.int32))
  final = jax.lax.while_loop(cond, body, init)
  return OptimizedPosterior(q=final.q, steps=final.step)


def log_px_with_proposal(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  q: LocalPosterior,
  rng: chex.PRNGKey,
  num_samples: int,
  chunk_size: int = 500,
) -> chex.Array:
  """log p̂_K(x) = log 1/K Σ_k p(x, z_k)/q(z_k), z_k ~ q, any diagonal q.

  The chunked running logsumexp of `objectives.importance_sampled_log_px`,
  with the proposal q in place of the encoder's.
  """

  def weights(first, size):
    layer, z, log_q = _draws(model, q, rng, size, first)
    log_likelihood, log_prior = model.log_joint(params, x, {layer: z})
    return log_likelihood + log_prior - log_q

  return objectives.chunked_log_mean_exp(weights, num_samples, chunk_size)


def decompose(
  model: VAEModel,
  params: Any,
  x: chex.Array,
  rng: chex.PRNGKey,
  settings: GapSettings = GapSettings(),
  num_importance_samples: int = 5000,
  chunk_size: int = 500,
) -> GapTerms:
  """`GapTerms` of one example: L[q], L[q*] and log p̂(x) with q and q*.

  Keys: the optimisation uses fold_in(rng, 0); L[q] and L[q*] share
  fold_in(rng, 1); the importance samples use fold_in(rng, 2) for both
  proposals.
  """
  keys = [jax.random.fold_in(rng, i) for i in range(3)]
  q = encoder_posterior(model, params, x)
  found = _optimize(model, params, x, keys[0], settings, q)
  elbo, elbo_se = local_elbo(
    model, params, x, q, keys[1], settings.final_samples
  )
  elbo_star, elbo_star_se = local_elbo(
    model, params, x, found.q, keys[1], settings.final_samples
  )
  return GapTerms(
    elbo=elbo,
    elbo_optimized=elbo_star,
    elbo_stderr=elbo_se,
    elbo_optimized_stderr=elbo_star_se,
    log_px=log_px_with_proposal(
      model, params, x, q, keys[2], num_importance_samples, chunk_size
    ),
    log_px_q_star=log_px_with_proposal(
      model, params, x, found.q, keys[2], num_importance_samples, chunk_size
    ),
    steps=found.steps,
  )
