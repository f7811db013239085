"""The train step, chunks of steps, and evaluation: pure, jittable functions.

The train step is a pure function of (state, batch, hyperparameters):

    state_{t+1}, metrics = train_step(state_t, x_batch, Hyperparams(lr, β))

maximising the (β-weighted) ELBO of the batch by SGD on (φ, θ) jointly,

    loss(φ, θ) = −1/B Σ_b [E_q[log p(x_b|z)] − β_t KL(q(z|x_b) ‖ p(z))].

The hyperparameters a sweep varies (learning rate, KL weight) are inputs, not
constants compiled in, so `jax.vmap` over stacked states and hyperparameters
runs a whole sweep as one program. The randomness of step t is
fold_in(state.rng, t): a run resumed at step t continues bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from vae_jax import elbo as elbo_lib
from vae_jax.data import pipeline
from vae_jax.model import VAEModel

__all__ = [
    "Hyperparams", "TrainState", "StepMetrics", "StepConfig", "EvalResult",
    "make_optimizer", "make_lr_schedule", "init_train_state", "train_step",
    "train_chunk", "train_chunk_streamed", "evaluate",
]


class Hyperparams(NamedTuple):
  """Inputs of the step that a sweep varies; scalars, or `[K]` under vmap."""

  learning_rate: chex.Numeric  # base rate, times the schedule's factor
  kl_weight: chex.Numeric  # β after KL warm-up


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree."""

  params: Any
  opt_state: Any
  step: chex.Array  # int32 scalar: optimiser steps taken
  rng: chex.PRNGKey  # root key; step t uses fold_in(rng, t)


class StepMetrics(NamedTuple):
  """Means over the batch (or over the steps of a chunk)."""

  elbo: chex.Array
  log_likelihood: chex.Array
  kl: chex.Array
  loss: chex.Array
  grad_norm: chex.Array
  learning_rate: chex.Array
  kl_weight: chex.Array


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the step: they shape the compiled program."""

  num_samples: int = 1
  analytic_kl: bool = True
  lr_schedule: Callable[[chex.Array], chex.Array] = optax.constant_schedule(1.0)
  kl_warmup_steps: int = 0  # β_t = β · min(1, t / kl_warmup_steps)


def make_optimizer(name: str = "adam",
                   grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """optax optimizer `name` at unit learning rate, optionally clipped.

  The learning rate is applied by `train_step` as a plain factor on the
  update, so it can be a traced input. For optax's optimizers the rate is
  the last scale of the chain (adam = scale_by_adam ∘ scale(−lr)), so this is
  the same update as `optax.<name>(lr)`.
  """
  optimizer = getattr(optax, name)(learning_rate=1.0)
  if grad_clip_norm > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
  return optimizer


def make_lr_schedule(name: str, total_steps: int,
                     warmup_steps: int = 0) -> Callable[[chex.Array], chex.Array]:
  """A factor on the base learning rate as a function of the absolute step."""
  total_steps = max(int(total_steps), 1)
  warmup_steps = min(int(warmup_steps), total_steps - 1)
  if name == "constant":
    main = optax.constant_schedule(1.0)
  elif name in ("cosine", "warmup_cosine"):
    main = optax.cosine_decay_schedule(1.0, total_steps - warmup_steps)
  elif name == "exponential":
    # Decays to 1% of the base rate at the last step.
    main = optax.exponential_decay(1.0, total_steps - warmup_steps, 0.01)
  else:
    raise ValueError(f"unknown learning-rate schedule {name!r}")
  if warmup_steps == 0:
    return main
  return optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, warmup_steps), main], [warmup_steps])


def init_train_state(model: VAEModel, optimizer: optax.GradientTransformation,
                     rng: chex.PRNGKey) -> TrainState:
  """Fresh parameters from `rng`; a key derived from it drives training."""
  init_rng, train_rng = jax.random.split(rng)
  params = model.init(init_rng)
  return TrainState(params=params, opt_state=optimizer.init(params),
                    step=jnp.zeros((), jnp.int32), rng=train_rng)


def _kl_weight_at(step: chex.Array, target: chex.Numeric,
                  warmup_steps: int) -> chex.Array:
  if warmup_steps <= 0:
    return jnp.asarray(target, jnp.float32)
  return target * jnp.minimum(1.0, step.astype(jnp.float32) / warmup_steps)


def train_step(model: VAEModel, optimizer: optax.GradientTransformation,
               config: StepConfig, state: TrainState, batch: chex.Array,
               hparams: Hyperparams) -> tuple[TrainState, StepMetrics]:
  """One SGD step on the batch `[B, data_dim]` of float data.

  Bind (model, optimizer, config) with functools.partial, then jit (donating
  the state) or vmap over (state, hparams) for a sweep.
  """
  chex.assert_rank(batch, 2)
  rng = jax.random.fold_in(state.rng, state.step)
  kl_weight = _kl_weight_at(state.step, hparams.kl_weight, config.kl_warmup_steps)
  learning_rate = hparams.learning_rate * config.lr_schedule(state.step)

  def loss_fn(params):
    parts = elbo_lib.batch_elbo(model, params, batch, rng,
                                num_samples=config.num_samples,
                                analytic_kl=config.analytic_kl)  # [B] each
    loss = -jnp.mean(parts.log_likelihood - kl_weight * parts.kl)
    return loss, parts

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  updates = jax.tree_util.tree_map(lambda u: learning_rate * u, updates)
  params = optax.apply_updates(state.params, updates)
  metrics = StepMetrics(
      elbo=jnp.mean(parts.elbo), log_likelihood=jnp.mean(parts.log_likelihood),
      kl=jnp.mean(parts.kl), loss=loss, grad_norm=optax.tree.norm(grads),
      learning_rate=jnp.asarray(learning_rate, jnp.float32),
      kl_weight=jnp.asarray(kl_weight, jnp.float32))
  new_state = state.replace(params=params, opt_state=opt_state,
                            step=state.step + 1)
  return new_state, metrics


def _data_keys(state: TrainState) -> tuple[chex.PRNGKey, chex.PRNGKey]:
  """(shuffle key, binarisation key): streams apart from the steps' z draws."""
  return pipeline.data_keys(state.rng)


def train_chunk(model: VAEModel, optimizer: optax.GradientTransformation,
                config: StepConfig, num_steps: int, batch_size: int,
                binarize: bool, pixel_max: int, state: TrainState,
                images: chex.Array, hparams: Hyperparams
                ) -> tuple[TrainState, StepMetrics]:
  """`num_steps` train steps in one compiled `lax.scan`, batches made on device.

  Args:
    images: the training split, uint8 `[N, data_dim]`, on the device.
    binarize: draw x ~ Bernoulli(pixel / pixel_max) afresh for every batch
      (dynamic binarisation) if True; else scale pixels to [0, 1].

  The chunk must lie inside one epoch (steps_per_epoch = N // batch_size):
  the permutation of that epoch is computed once, from (key, epoch).

  Returns:
    The new state and the metrics averaged over the chunk's steps.
  """
  chex.assert_rank(images, 2)
  steps_per_epoch = images.shape[0] // batch_size
  epoch = state.step // steps_per_epoch
  shuffle_key, binarize_key = _data_keys(state)
  permutation = pipeline.epoch_permutation(shuffle_key, epoch, images.shape[0])
  first = state.step % steps_per_epoch

  def body(state, i):
    raw = images[pipeline.batch_indices(permutation, first + i, batch_size)]
    batch = pipeline.finish_batch(raw, binarize_key, state.step, binarize,
                                  pixel_max)
    return train_step(model, optimizer, config, state, batch, hparams)

  state, metrics = jax.lax.scan(body, state, jnp.arange(num_steps))
  return state, jax.tree_util.tree_map(jnp.mean, metrics)


def train_chunk_streamed(model: VAEModel, optimizer: optax.GradientTransformation,
                         config: StepConfig, num_steps: int, batch_size: int,
                         binarize: bool, pixel_max: int, state: TrainState,
                         batches: chex.Array, hparams: Hyperparams
                         ) -> tuple[TrainState, StepMetrics]:
  """`train_chunk` for the streaming path: the chunk's batches come in.

  Same arguments and results as `train_chunk`, except that `batches` is the
  chunk's uint8 pixels `[num_steps, batch_size, data_dim]`, gathered on the
  host by `vae_jax.data.streaming` in the order `train_chunk` would gather
  them; binarisation happens here with the same per-step key, so both paths
  train on bit-identical batches.
  """
  chex.assert_shape(batches, (num_steps, batch_size, None))
  _, binarize_key = _data_keys(state)

  def body(state, raw):
    batch = pipeline.finish_batch(raw, binarize_key, state.step, binarize,
                                  pixel_max)
    return train_step(model, optimizer, config, state, batch, hparams)

  state, metrics = jax.lax.scan(body, state, batches)
  return state, jax.tree_util.tree_map(jnp.mean, metrics)


class EvalResult(NamedTuple):
  """Dataset means (nats per example) and the standard error of the ELBO."""

  elbo: chex.Array
  elbo_stderr: chex.Array
  log_likelihood: chex.Array
  kl: chex.Array


def evaluate(model: VAEModel, params: Any, images: chex.Array,
             rng: chex.PRNGKey, batch_size: int = 1000, num_samples: int = 1,
             analytic_kl: bool = True) -> EvalResult:
  """The ELBO of every example in `images` `[N, data_dim]` (float or uint8 0/1).

  z is sampled (never the mean); example n uses key fold_in(rng, n), so the
  result does not depend on `batch_size`. Jit with `batch_size`,
  `num_samples` and `analytic_kl` static.
  """
  chex.assert_rank(images, 2)
  n = images.shape[0]
  num_batches = math.ceil(n / batch_size)
  pad = num_batches * batch_size - n
  x = jnp.pad(images.astype(jnp.float32), ((0, pad), (0, 0)))
  keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, jnp.arange(n + pad))
  per_example = functools.partial(elbo_lib.elbo, model, params,
                                  num_samples=num_samples,
                                  analytic_kl=analytic_kl)
  parts = jax.lax.map(
      lambda xk: jax.vmap(per_example)(*xk),
      (x.reshape(num_batches, batch_size, -1),
       keys.reshape(num_batches, batch_size, *keys.shape[1:])))
  parts = jax.tree_util.tree_map(lambda a: a.reshape(-1)[:n], parts)
  return EvalResult(
      elbo=jnp.mean(parts.elbo),
      elbo_stderr=jnp.std(parts.elbo) / jnp.sqrt(n),
      log_likelihood=jnp.mean(parts.log_likelihood),
      kl=jnp.mean(parts.kl))
