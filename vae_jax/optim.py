"""How the step optimises: the optax optimizer, the learning-rate schedule,
the KL weight's warm-up and the parameters' moving average.

Pure functions of the step number and traced hyperparameters, so that a
sweep over rates, lengths, floors or decays is one vmapped program.
`vae_jax.step` applies them (and re-exports them).
"""

from __future__ import annotations

import math
from typing import Any

import chex
import jax.numpy as jnp
import optax

from vae_jax.names import LR_SCHEDULES

__all__ = ["make_optimizer", "lr_factor", "kl_weight_at", "averaged_params"]

# optax's cosine_onecycle_schedule's div_factor: one-cycle starts at 1/25.
_ONECYCLE_DIV = 25.0


def make_optimizer(
  name: str = "adam", grad_clip_norm: float = 0.0
) -> optax.GradientTransformation:
  """optax optimizer `name` (optionally clipped) with an injectable rate.

  The state's `hyperparams["learning_rate"]` is the rate of the next update.
  """

  def chain(learning_rate):
    optimizer = getattr(optax, name)(learning_rate=learning_rate)
    if grad_clip_norm > 0:
      return optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
    return optimizer

  return optax.inject_hyperparams(chain)(learning_rate=1.0)


def lr_factor(
  schedule: str,
  step: chex.Array,
  warmup_steps: chex.Numeric,
  total_steps: chex.Numeric,
  floor: chex.Numeric = 0.0,
) -> chex.Array:
  """The factor on the base learning rate at `step`, traced lengths allowed.

  Warm-up W, schedule length T, p = (t − W) / (T − W) clipped to [0, 1]:

    constant       1 after the warm-up;
    cosine         floor + (1 − floor) · ½(1 + cos πp): optax's
    warmup_cosine  `cosine_decay_schedule(1, T − W, alpha=floor)`;
    exponential    0.01^p (optax's `exponential_decay(1, T − W, 0.01)`);
    linear         floor + (1 − floor) · (1 − p): optax's
                   `linear_schedule(1, floor, T − W)`;
    onecycle       optax's `cosine_onecycle_schedule(T, 1, W / T, 25,
                   1 / (25 · floor))`: a cosine rise from 1/25 to 1 over
                   the warm-up, then the cosine decay to the floor.

  The warm-up of the others is optax's `linear_schedule(0, 1, W)`. Written
  out because optax's schedule constructors check their lengths in Python,
  so a length that is a traced hyperparameter cannot pass through them.
  """
  t = jnp.asarray(step, jnp.float32)
  total = jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0)
  warmup = jnp.clip(jnp.asarray(warmup_steps, jnp.float32), 0.0, total - 1.0)
  floor = jnp.asarray(floor, jnp.float32)
  decay_steps = total - warmup
  after = t - warmup
  progress = jnp.clip(after, 0.0, decay_steps) / decay_steps
  if schedule == "constant":
    main = jnp.ones_like(t)
  elif schedule in ("cosine", "warmup_cosine", "onecycle"):
    main = floor + (1.0 - floor) * (0.5 * (1.0 + jnp.cos(math.pi * progress)))
  elif schedule == "exponential":
    main = jnp.power(0.01, jnp.maximum(after, 0.0) / decay_steps)
  elif schedule == "linear":
    main = floor + (1.0 - floor) * (1.0 - progress)
  else:
    raise ValueError(
      f"unknown learning-rate schedule {schedule!r}; choose "
      f"one of {list(LR_SCHEDULES)}"
    )
  rise = t / jnp.maximum(warmup, 1.0)
  if schedule == "onecycle":
    start = 1.0 / _ONECYCLE_DIV
    rise = start + (1.0 - start) * (0.5 * (1.0 - jnp.cos(math.pi * rise)))
  ramp = jnp.where(warmup > 0, rise, 1.0)
  return jnp.where(t < warmup, ramp, main)


def kl_weight_at(
  step: chex.Array, kl_weight: chex.Numeric, warmup_steps: chex.Numeric
) -> chex.Array:
  """β_t = β · min(1, t / warm-up steps); β itself without warm-up."""
  t = jnp.asarray(step, jnp.float32)
  warmup = jnp.asarray(warmup_steps, jnp.float32)
  ramp = jnp.minimum(1.0, t / jnp.maximum(warmup, 1.0))
  return jnp.asarray(kl_weight, jnp.float32) * jnp.where(warmup > 0, ramp, 1.0)


def averaged_params(
  average: Any, params: Any, step: chex.Array, decay: chex.Numeric
) -> Any:
  """The moving average of the parameters after update `step` = t ≥ 1.

  a_t = Σ_{s ≤ t} (1 − d) d^(t−s) p_s / (1 − d^t): optax.ema's debiased
  average of p_1 … p_t (Adam's bias correction), kept in its debiased form
  by Polyak's update a_t = a_{t−1} + η_t (p_t − a_{t−1}), η_t = (1 − d) /
  (1 − d^t), through `optax.incremental_update`. η_1 = 1: the initial
  parameters never weigh in, so early evaluations are not pulled back
  towards them; d = 0 gives a_t = p_t.
  """
  decay = jnp.asarray(decay, jnp.float32)
  t = jnp.asarray(step, jnp.float32)
  step_size = (1.0 - decay) / (1.0 - jnp.power(decay, t))
  return optax.incremental_update(params, average, step_size)
