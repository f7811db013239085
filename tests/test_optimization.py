"""The optimiser's settings: learning-rate schedules and their floor.

Each schedule of `vae_jax.step.lr_factor` is checked against optax's own
schedule of the same formula (which takes its lengths as Python numbers);
the traced settings (warm-up, length, floor) are checked to vmap: one
program for many values, each equal to its own.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.names import FLOORED_SCHEDULES, LR_SCHEDULES

_TOTAL, _WARMUP, _FLOOR = 40, 8, 0.1
# Both sides are float32 evaluations of the same formula written in another
# order: a cosine of an argument ≤ π (a few ulp of 1) and two more
# operations, so within 8 ulp of 1.
_ATOL = 8 * float(np.finfo(np.float32).eps)


def _warmed(schedule):
  """optax's linear warm-up 0 → 1 over _WARMUP steps, then `schedule`."""
  return optax.join_schedules(
      [optax.linear_schedule(0.0, 1.0, _WARMUP), schedule], [_WARMUP])


def _optax_schedule(name: str):
  decay = _TOTAL - _WARMUP
  return {
      "constant": _warmed(optax.constant_schedule(1.0)),
      "cosine": _warmed(optax.cosine_decay_schedule(1.0, decay,
                                                    alpha=_FLOOR)),
      "warmup_cosine": _warmed(optax.cosine_decay_schedule(1.0, decay,
                                                           alpha=_FLOOR)),
      "exponential": _warmed(optax.exponential_decay(1.0, decay, 0.01)),
      "linear": _warmed(optax.linear_schedule(1.0, _FLOOR, decay)),
      # peak at pct_start · T = W; final = (1/25) / final_div_factor = floor.
      "onecycle": optax.cosine_onecycle_schedule(
          _TOTAL, 1.0, pct_start=_WARMUP / _TOTAL, div_factor=25.0,
          final_div_factor=1.0 / (25.0 * _FLOOR)),
  }[name]


@functools.partial(jax.jit, static_argnums=(0,))
def _factors(schedule, steps, warmup, total, floor):
  return step_lib.lr_factor(schedule, steps, warmup, total, floor)


@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_schedule_is_optax_formula(schedule):
  steps = jnp.arange(_TOTAL + 3)  # past the end: the floor stays
  floor = _FLOOR if schedule in FLOORED_SCHEDULES else 0.0
  ours = _factors(schedule, steps, float(_WARMUP), float(_TOTAL), floor)
  theirs = jax.vmap(_optax_schedule(schedule))(steps)
  np.testing.assert_allclose(ours, theirs, atol=_ATOL, rtol=0)


def test_floor_zero_is_the_unfloored_formula_bit_for_bit():
  """floor + (1 − floor)·f with floor = 0 is f exactly: old runs unchanged."""
  steps = jnp.arange(_TOTAL + 3)
  t = steps.astype(jnp.float32)
  progress = jnp.clip(t - _WARMUP, 0.0, _TOTAL - _WARMUP) / (_TOTAL - _WARMUP)
  unfloored = jnp.where(t < _WARMUP, t / _WARMUP,
                        0.5 * (1.0 + jnp.cos(np.pi * progress)))
  np.testing.assert_array_equal(
      _factors("cosine", steps, float(_WARMUP), float(_TOTAL), 0.0),
      unfloored)


@pytest.mark.parametrize("schedule", ["linear", "onecycle"])
def test_schedule_settings_are_traced_and_vmap(schedule):
  """Warm-ups, lengths and floors of several runs in one program."""
  warmups = jnp.float32([0, 4, 8])
  totals = jnp.float32([20, 30, 40])
  floors = jnp.float32([0.0, 0.05, 0.5])
  steps = jnp.arange(45)
  swept = jax.jit(jax.vmap(
      lambda w, n, f: step_lib.lr_factor(schedule, steps, w, n, f)))(
          warmups, totals, floors)
  for i in range(3):
    alone = _factors(schedule, steps, warmups[i], totals[i], floors[i])
    np.testing.assert_allclose(swept[i], alone, atol=_ATOL, rtol=0)
    assert float(swept[i][-1]) == pytest.approx(float(floors[i]), abs=_ATOL)


@pytest.mark.parametrize("changes, named", [
    (dict(lr_floor=0.1), "--config.lr_floor=0.1"),  # constant: no floor
    (dict(lr_schedule="exponential", lr_floor=0.1), "--config.lr_floor"),
    (dict(lr_schedule="linear", lr_floor=1.5), "--config.lr_floor=1.5"),
    (dict(lr_schedule="linear", lr_floor=-0.1), "--config.lr_floor"),
])
def test_bad_settings_are_refused_in_one_line(changes, named):
  config = default.get_config()
  config.update(changes)
  with pytest.raises(ConfigError, match=re.escape(named)) as raised:
    validation.validate(config)
  assert "\n" not in str(raised.value)


def test_floored_schedules_accept_a_floor():
  for schedule in FLOORED_SCHEDULES:
    config = default.get_config()
    config.update(dict(lr_schedule=schedule, lr_floor=0.1))
    validation.validate(config)
