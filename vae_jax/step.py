"""The train step: a pure, jittable function of (state, batch, hyperparameters).

    state_{t+1}, metrics = train_step(model, step_config, state_t, batch, hparams)

maximises a training objective of the batch by SGD on (φ, θ) jointly
(`StepConfig.objective`; loss = −objective):

  elbo   the β-weighted ELBO,
             1/B Σ_b [E_q[log p(x_b|z)] − β_t KL(q(z|x_b) ‖ p(z))],
         or, with free bits λ > 0 (Kingma et al. 2016), a floor on the
         batch-mean KL of each latent dimension d of each layer j,
             1/B Σ_b E_q[log p(x_b|z)] − β_t Σ_j,d max(λ, 1/B Σ_b KL_jd(x_b)),
         so a dimension whose KL is below λ gets no gradient from its KL
         (it is free to carry λ nats) and is not pushed into collapse;
  iwae   the importance-weighted bound of Burda et al. 2015 with K draws,
             1/B Σ_b log 1/K Σ_k w_k(x_b),
             log w_k = log p(x|z_k) + β_t [log p(z_k) − log q(z_k|x)];
         with K = 1 it is the ELBO with the Monte-Carlo KL.

The metrics' ELBO is always the plain one (β = 1, no floor); `objective` is
the value of the objective trained.

Two kinds of settings:

  * `StepConfig` — static: what shapes the compiled program (samples per
    example, analytic or Monte-Carlo KL, the optimizer, the schedule's form,
    whether the state keeps an average of the parameters).
  * `Hyperparams` — traced inputs: everything a sweep may vary (base learning
    rate, KL weight β, warm-up and schedule lengths in steps, the schedule's
    floor, the average's decay). `jax.vmap` over stacked states and
    hyperparameters runs a whole sweep as one program.

`checked_train_step` is the step of a run: inside the compiled program it
checks that the loss and the gradients are finite, and keeps the old
parameters and optimizer state when they are not (a host check per step would
stall the device). `nonfinite_state` checks the state itself, once per chunk.

The learning rate reaches the optimizer through `optax.inject_hyperparams`:
the step writes lr_t = lr · schedule(t) (`vae_jax.optim`) into the optimizer
state, so it is the optimizer's own learning rate whatever the chain around
it. The randomness of step t is fold_in(state.rng, t): a run resumed at step t
continues bit for bit.

With `StepConfig.ema` the state also keeps a moving average of the
parameters (`averaged_params`), updated with each update taken; a run
evaluates, checkpoints as best and measures log p(x) on it
(`evaluation_params`). It lives in the state, so resume stays exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import chex
import flax
import jax
import jax.numpy as jnp
import optax

from vae_jax.math import objectives
from vae_jax.math import threefry
from vae_jax.math.model import VAEModel
from vae_jax.names import LR_SCHEDULES, OBJECTIVES, implementation
from vae_jax.optim import averaged_params, kl_weight_at, lr_factor
from vae_jax.optim import make_optimizer

__all__ = [
  "Hyperparams",
  "TrainState",
  "StepMetrics",
  "StepConfig",
  "LR_SCHEDULES",
  "make_optimizer",
  "lr_factor",
  "kl_weight_at",
  "init_train_state",
  "evaluation_params",
  "averaged_params",
  "training_objective",
  "elbo_objective",
  "iwae_objective",
  "train_step",
  "checked_train_step",
  "nonfinite_state",
  "NONFINITE_QUANTITIES",
]

# What `checked_train_step` checks, in order; code k > 0 names the k-th.
NONFINITE_QUANTITIES = ("loss", "gradients", "parameters", "optimizer state")


class Hyperparams(NamedTuple):
  """Traced inputs of the step; scalars, or `[M]` for M vmapped runs."""

  learning_rate: chex.Numeric  # base rate, times the schedule's factor
  kl_weight: chex.Numeric  # β after KL warm-up
  kl_warmup_steps: chex.Numeric = 0.0  # β_t = β · min(1, t / kl_warmup_steps)
  lr_warmup_steps: chex.Numeric = 0.0  # linear warm-up of the rate
  lr_schedule_steps: chex.Numeric = 1.0  # length of a decaying schedule
  # The factor a floored schedule ends at (names.FLOORED_SCHEDULES).
  lr_floor: chex.Numeric = 0.0
  # d of the parameters' average (StepConfig.ema); unused when that is off.
  ema_decay: chex.Numeric = 0.0
  # λ, nats per latent dimension; 0 = off. Needs objective elbo and a
  # closed-form KL (without one the step has no per-dimension KL and
  # ignores it: the run refuses that combination).
  free_bits: chex.Numeric = 0.0


class TrainState(flax.struct.PyTreeNode):
  """Everything that changes during training, as one pytree."""

  params: Any
  opt_state: Any  # optax.InjectHyperparamsState
  step: chex.Array  # int32 scalar: optimiser steps taken
  rng: chex.PRNGKey  # root key; step t uses fold_in(rng, t)
  # The parameters' moving average (StepConfig.ema), else None: no leaves,
  # so a state without it is the pytree of arrays it always was.
  ema_params: Any = None


class StepMetrics(NamedTuple):
  """Means over the batch (or over the steps of a chunk).

  elbo, log_likelihood and kl are the plain ELBO's (β = 1, no floor);
  `objective` is the objective trained (= −loss), see the module docstring.
  """

  elbo: chex.Array
  log_likelihood: chex.Array
  kl: chex.Array
  objective: chex.Array
  grad_norm: chex.Array
  learning_rate: chex.Array
  kl_weight: chex.Array


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static settings of the step, plain values: they shape the program."""

  num_samples: int = 1  # K, z draws per example
  # The ELBO's KL in closed form (else Monte Carlo). With objective=iwae it
  # only decides how the reported ELBO's KL is estimated.
  analytic_kl: bool = True
  objective: str = "elbo"  # one of OBJECTIVES
  optimizer: str = "adam"
  grad_clip_norm: float = 0.0  # 0 = no clipping
  lr_schedule: str = "constant"  # one of LR_SCHEDULES
  # Keep TrainState.ema_params, the average of the parameters (decay
  # Hyperparams.ema_decay). Static: off, the step does no extra work.
  ema: bool = False
  # checked_train_step: a non-finite step still advances the step counter
  # (skipped) instead of halting the run at it.
  skip_nonfinite_updates: bool = False


def init_train_state(
  model: VAEModel, config: StepConfig, rng: chex.PRNGKey
) -> TrainState:
  """Fresh parameters from `rng`; a key derived from it drives training."""
  init_rng, train_rng = jax.random.split(rng)
  params = model.init(init_rng)
  optimizer = make_optimizer(config.optimizer, config.grad_clip_norm)
  # (A copy: the average is a buffer of its own, donated with the state.)
  ema_params = jax.tree_util.tree_map(jnp.copy, params) if config.ema else None
  return TrainState(
    params=params,
    opt_state=optimizer.init(params),
    step=jnp.zeros((), jnp.int32),
    rng=train_rng,
    ema_params=ema_params,
  )


def evaluation_params(state: TrainState) -> Any:
  """The parameters a run evaluates: the average when it keeps one."""
  return state.params if state.ema_params is None else state.ema_params


def training_objective(
  model: VAEModel,
  config: StepConfig,
  params: Any,
  batch: chex.Array,
  rng: chex.PRNGKey,
  kl_weight: chex.Numeric,
  free_bits: chex.Numeric = 0.0,
) -> tuple[chex.Array, objectives.ElboParts]:
  """(the objective to maximise, the plain ELBO's `[B]` parts) of a batch.

  See the module docstring; `kl_weight` is β_t, `free_bits` λ (traced: a
  sweep may vary it; 0 gives exactly the plain β-weighted ELBO).
  """
  if config.objective not in OBJECTIVES:
    raise ValueError(
      f"unknown objective {config.objective!r}; choose one of "
      f"{list(OBJECTIVES)}"
    )
  terms = objectives.per_example(
    objectives.example_terms,
    model,
    params,
    batch,
    rng,
    num_samples=config.num_samples,
    analytic_kl=config.analytic_kl,
    kl_weight=kl_weight,
  )
  objective = implementation(OBJECTIVES, config.objective)
  return objective(terms, kl_weight, free_bits), terms.parts


def elbo_objective(
  terms: objectives.ExampleTerms,
  kl_weight: chex.Numeric,
  free_bits: chex.Numeric,
) -> chex.Array:
  """The β-weighted ELBO of a batch, with λ = free_bits floored per
  dimension (a scalar; `terms` of a batch, `[B]` each)."""
  parts = terms.parts
  plain = jnp.mean(parts.log_likelihood - kl_weight * parts.kl)
  if terms.kl_per_dim is None:
    return plain
  # λ floors the batch-mean KL of each dimension of each layer.
  floored_kl = sum(
    jnp.sum(jnp.maximum(free_bits, jnp.mean(kl, axis=0)))
    for kl in terms.kl_per_dim.values()
  )
  floored = jnp.mean(parts.log_likelihood) - kl_weight * floored_kl
  # where, not max(λ, ·) alone: with λ = 0 a Monte-Carlo KL per dimension
  # may be negative and must not be clipped; the plain form also keeps
  # λ = 0 the exact computation of the plain objective.
  return jnp.where(free_bits > 0, floored, plain)


def iwae_objective(
  terms: objectives.ExampleTerms,
  kl_weight: chex.Numeric,
  free_bits: chex.Numeric,
) -> chex.Array:
  """The importance-weighted bound of a batch (β inside `terms.iwae`)."""
  del kl_weight, free_bits
  return jnp.mean(terms.iwae)


def train_step(
  model: VAEModel,
  config: StepConfig,
  state: TrainState,
  batch: chex.Array,
  hparams: Hyperparams,
) -> tuple[TrainState, StepMetrics]:
  """One SGD step on the float batch `[B, *model.event_shape]`.

  Bind (model, config) with functools.partial, then jit (donating the state)
  or vmap over (state, hparams) for a sweep.
  """
  new_state, metrics, _ = _step(model, config, state, batch, hparams, None)
  return new_state, metrics


def _step(
  model: VAEModel,
  config: StepConfig,
  state: TrainState,
  batch: chex.Array,
  hparams: Hyperparams,
  halted: Any,
) -> tuple[TrainState, StepMetrics, chex.Array]:
  """train_step (`halted` None) or checked_train_step."""
  chex.assert_shape(batch, (None, *model.event_shape))
  rng = threefry.fold_in(state.rng, state.step)
  kl_weight = kl_weight_at(
    state.step, hparams.kl_weight, hparams.kl_warmup_steps
  )
  learning_rate = hparams.learning_rate * lr_factor(
    config.lr_schedule,
    state.step,
    hparams.lr_warmup_steps,
    hparams.lr_schedule_steps,
    hparams.lr_floor,
  )

  def loss_fn(params):
    objective, parts = training_objective(
      model, config, params, batch, rng, kl_weight, hparams.free_bits
    )
    return -objective, parts

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  optimizer = make_optimizer(config.optimizer, config.grad_clip_norm)
  opt_state = state.opt_state._replace(
    hyperparams={
      **state.opt_state.hyperparams,
      "learning_rate": jnp.asarray(learning_rate, jnp.float32),
    }
  )
  metrics = StepMetrics(
    elbo=jnp.mean(parts.elbo),
    log_likelihood=jnp.mean(parts.log_likelihood),
    kl=jnp.mean(parts.kl),
    objective=-loss,
    grad_norm=optax.tree.norm(grads),
    learning_rate=jnp.asarray(learning_rate, jnp.float32),
    kl_weight=kl_weight,
  )

  def update(operands):
    params, opt_state, grads, _, average = operands
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if config.ema:
      average = averaged_params(
        average, params, state.step + 1, hparams.ema_decay
      )
    return params, opt_state, average

  operands = (state.params, opt_state, grads, state.opt_state, state.ema_params)
  if halted is None:
    params, opt_state, average = update(operands)
    return (
      state.replace(
        params=params,
        opt_state=opt_state,
        step=state.step + 1,
        ema_params=average,
      ),
      metrics,
      jnp.int32(0),
    )
  code = jnp.where(
    jnp.isfinite(loss), jnp.where(jnp.isfinite(metrics.grad_norm), 0, 2), 1
  ).astype(jnp.int32)
  accept = (code == 0) & jnp.logical_not(halted)
  # A cond, not a select of new and old: the update runs only when taken,
  # in place, and the kept state costs no pass over the parameters.
  params, opt_state, average = jax.lax.cond(
    accept, update, lambda o: (o[0], o[3], o[4]), operands
  )
  advance = jnp.logical_not(halted) if config.skip_nonfinite_updates else accept
  return (
    state.replace(
      params=params,
      opt_state=opt_state,
      step=jnp.where(advance, state.step + 1, state.step),
      ema_params=average,
    ),
    metrics,
    code,
  )


def _all_finite(tree) -> chex.Array:
  leaves = [
    jnp.all(jnp.isfinite(leaf))
    for leaf in jax.tree_util.tree_leaves(tree)
    if jnp.issubdtype(leaf.dtype, jnp.inexact)
  ]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def nonfinite_state(state: TrainState) -> chex.Array:
  """0 if the state is finite, else the code of its first non-finite part
  (3: parameters, 4: optimizer state; see NONFINITE_QUANTITIES)."""
  return jnp.where(
    _all_finite(state.params), jnp.where(_all_finite(state.opt_state), 0, 4), 3
  ).astype(jnp.int32)


def checked_train_step(
  model: VAEModel,
  config: StepConfig,
  state: TrainState,
  batch: chex.Array,
  hparams: Hyperparams,
  halted: chex.Array = False,
) -> tuple[TrainState, StepMetrics, chex.Array]:
  """`train_step` that takes no update from a non-finite loss or gradient.

  The check uses two scalars the step computes anyway, the loss and the
  gradient norm (not finite iff a gradient is not, or their squares
  overflow float32), so it adds no pass over the parameters.

  Args:
    halted: True after an earlier non-finite step of a run that stops at
      one: the state is kept as it is.

  Returns:
    (state', metrics, code). code 0: the step was finite and state' is the
    new state (unless `halted`). code k > 0: NONFINITE_QUANTITIES[k − 1] was
    not finite; state' keeps the parameters and optimizer state of `state`,
    and its step is `state.step + 1` with `config.skip_nonfinite_updates`
    (the update is skipped, the data move on), else `state.step` (the run
    halts at the bad step).
  """
  return _step(model, config, state, batch, hparams, halted)
