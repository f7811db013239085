"""The optimiser's settings: schedules, their floor, the parameters' average.

Each schedule of `vae_jax.optim.lr_factor` is checked against optax's own
schedule of the same formula (which takes its lengths as Python numbers);
the moving average of the parameters against the average computed by hand
in float64; with the average off, the state and the training are those of
before. The traced settings (warm-up, length, floor, the average's decay)
are checked to vmap: one program for many values, each equal to its own.
A tiny run end to end evaluates, checkpoints and resumes with the average.
"""

from __future__ import annotations

import functools
import os
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import run_helpers
import toy_models
from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.configs import default
from vae_jax.data.prepared import prepare_data
from vae_jax.errors import ConfigError
from vae_jax.nets import registry
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.evaluation import dataset as likelihood
from vae_jax.run import load
from vae_jax.run import programs
from vae_jax import sweep
from vae_jax.sweep import grid as sweep_grid
from vae_jax.store import workdir as workdir_lib
from vae_jax.names import FLOORED_SCHEDULES, LR_SCHEDULES

_TOTAL, _WARMUP, _FLOOR = 40, 8, 0.1
# Both sides are float32 evaluations of the same formula written in another
# order: a cosine of an argument ≤ π (a few ulp of 1) and two more
# operations, so within 8 ulp of 1.
_ATOL = 8 * float(np.finfo(np.float32).eps)


def _warmed(schedule):
  """optax's linear warm-up 0 → 1 over _WARMUP steps, then `schedule`."""
  return optax.join_schedules(
    [optax.linear_schedule(0.0, 1.0, _WARMUP), schedule], [_WARMUP]
  )


def _optax_schedule(name: str):
  decay = _TOTAL - _WARMUP
  return {
    "constant": _warmed(optax.constant_schedule(1.0)),
    "cosine": _warmed(optax.cosine_decay_schedule(1.0, decay, alpha=_FLOOR)),
    "warmup_cosine": _warmed(
      optax.cosine_decay_schedule(1.0, decay, alpha=_FLOOR)
    ),
    "exponential": _warmed(optax.exponential_decay(1.0, decay, 0.01)),
    "linear": _warmed(optax.linear_schedule(1.0, _FLOOR, decay)),
    # peak at pct_start · T = W; final = (1/25) / final_div_factor = floor.
    "onecycle": optax.cosine_onecycle_schedule(
      _TOTAL,
      1.0,
      pct_start=_WARMUP / _TOTAL,
      div_factor=25.0,
      final_div_factor=1.0 / (25.0 * _FLOOR),
    ),
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
  unfloored = jnp.where(
    t < _WARMUP, t / _WARMUP, 0.5 * (1.0 + jnp.cos(np.pi * progress))
  )
  np.testing.assert_array_equal(
    _factors("cosine", steps, float(_WARMUP), float(_TOTAL), 0.0), unfloored
  )


@pytest.mark.parametrize("schedule", ["linear", "onecycle"])
def test_schedule_settings_are_traced_and_vmap(schedule):
  """Warm-ups, lengths and floors of several runs in one program."""
  warmups = jnp.float32([0, 4, 8])
  totals = jnp.float32([20, 30, 40])
  floors = jnp.float32([0.0, 0.05, 0.5])
  steps = jnp.arange(45)
  swept = jax.jit(
    jax.vmap(lambda w, n, f: step_lib.lr_factor(schedule, steps, w, n, f))
  )(warmups, totals, floors)
  for i in range(3):
    alone = _factors(schedule, steps, warmups[i], totals[i], floors[i])
    np.testing.assert_allclose(swept[i], alone, atol=_ATOL, rtol=0)
    assert float(swept[i][-1]) == pytest.approx(float(floors[i]), abs=_ATOL)


@pytest.mark.parametrize(
  "changes, named",
  [
    (dict(lr_floor=0.1), "--config.lr_floor=0.1"),  # constant: no floor
    (dict(lr_schedule="exponential", lr_floor=0.1), "--config.lr_floor"),
    (dict(lr_schedule="linear", lr_floor=1.5), "--config.lr_floor=1.5"),
    (dict(lr_schedule="linear", lr_floor=-0.1), "--config.lr_floor"),
  ],
)
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


# --- The parameters' moving average (config.ema_decay). --------------------

_MODEL = toy_models.LinearImageVAE(event_shape=(4, 4, 1), latent_dim=2)
_EPS = float(np.finfo(np.float32).eps)


def _batches(count: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  return [
    jnp.asarray(rng.uniform(size=(8, 4, 4, 1)) < 0.4, jnp.float32)
    for _ in range(count)
  ]


@functools.lru_cache(maxsize=None)
def _jitted_step(config):
  return jax.jit(functools.partial(step_lib.train_step, _MODEL, config))


def _train(config, hparams, steps: int, seed: int = 0):
  """The states after each of `steps` steps from a fresh state."""
  state = jax.jit(step_lib.init_train_state, static_argnums=(0, 1))(
    _MODEL, config, jax.random.key(seed)
  )
  states = []
  for batch in _batches(steps):
    state, _ = _jitted_step(config)(state, batch, hparams)
    states.append(state)
  return states


def _f64(tree):
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), tree)


@pytest.mark.slow
def test_average_is_the_hand_computed_average():
  config = step_lib.StepConfig(optimizer="sgd", ema=True)
  hparams = step_lib.Hyperparams(
    learning_rate=jnp.float32(0.5),
    kl_weight=jnp.float32(1.0),
    ema_decay=jnp.float32(0.6),
  )
  steps = 6
  states = _train(config, hparams, steps)
  d = float(np.float32(0.6))
  # a_T = Σ_t (1 − d) d^(T−t) p_t / (1 − d^T), over the params after steps
  # 1 … T: the initial parameters carry no weight.
  weights = [
    (1 - d) * d ** (steps - t) / (1 - d**steps) for t in range(1, steps + 1)
  ]
  expected = jax.tree_util.tree_map(
    lambda *ps: sum(w * p for w, p in zip(weights, ps)),
    *[_f64(s.params) for s in states],
  )
  # Each of the T updates a + η(p − a) rounds 3 times, η itself a few
  # times (a power, a difference, a quotient): ≤ 8u of max|p| per step.
  for ours, exact, last in zip(
    jax.tree_util.tree_leaves(states[-1].ema_params),
    jax.tree_util.tree_leaves(expected),
    jax.tree_util.tree_leaves(states[-1].params),
  ):
    scale = (
      max(float(np.max(np.abs(np.asarray(s)))) for s in (ours, last)) + 1e-30
    )
    np.testing.assert_allclose(
      ours, exact, rtol=0, atol=8 * steps * _EPS * scale
    )
  # The first update's average is its parameters exactly (η_1 = 1).
  chex.assert_trees_all_equal(states[0].ema_params, states[0].params)
  assert step_lib.evaluation_params(states[-1]) is states[-1].ema_params


@pytest.mark.slow
def test_average_off_keeps_the_state_and_the_training_of_before():
  """ema=False: no leaf more than (params, opt_state, step, rng), the
  optimizer's own state; and the average, when on, changes no bit of the
  training (it only reads the parameters)."""
  hparams = step_lib.Hyperparams(
    learning_rate=jnp.float32(1e-2),
    kl_weight=jnp.float32(1.0),
    ema_decay=jnp.float32(0.9),
  )
  (off,) = _train(step_lib.StepConfig(), hparams, 1)
  assert off.ema_params is None
  assert step_lib.evaluation_params(off) is off.params
  assert jax.tree_util.tree_structure(
    off.opt_state
  ) == jax.tree_util.tree_structure(step_lib.make_optimizer().init(off.params))
  old_leaves = jax.tree_util.tree_leaves(
    (off.params, off.opt_state, off.step, off.rng)
  )
  new_leaves = jax.tree_util.tree_leaves(off)
  assert len(new_leaves) == len(old_leaves)
  for a, b in zip(new_leaves, old_leaves):
    assert a is b
  off_states = _train(step_lib.StepConfig(), hparams, 4)
  on_states = _train(step_lib.StepConfig(ema=True), hparams, 4)
  chex.assert_trees_all_equal(off_states[-1].params, on_states[-1].params)
  chex.assert_trees_all_equal(off_states[-1].opt_state, on_states[-1].opt_state)


@pytest.mark.slow
def test_average_decay_is_traced_and_vmaps():
  """Members with other decays and floors: one program, each its own."""
  config = step_lib.StepConfig(ema=True, lr_schedule="linear")
  state = jax.jit(step_lib.init_train_state, static_argnums=(0, 1))(
    _MODEL, config, jax.random.key(3)
  )
  two = lambda a, b: jnp.float32([a, b])
  hparams = step_lib.Hyperparams(
    learning_rate=two(1e-2, 1e-2),
    kl_weight=two(1, 1),
    kl_warmup_steps=two(0, 0),
    lr_warmup_steps=two(0, 0),
    lr_schedule_steps=two(4, 4),
    free_bits=two(0, 0),
    lr_floor=two(0.0, 0.5),
    ema_decay=two(0.5, 0.9),
  )
  stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), state)
  swept = jax.jit(
    jax.vmap(functools.partial(step_lib.train_step, _MODEL, config))
  )
  batches = _batches(3)
  alone = [state, state]
  for batch in batches:
    stacked, metrics = swept(stacked, jnp.stack([batch, batch]), hparams)
    for i in range(2):
      alone[i], _ = _jitted_step(config)(
        alone[i], batch, jax.tree_util.tree_map(lambda a: a[i], hparams)
      )
  for i in range(2):
    member = jax.tree_util.tree_map(lambda a: a[i], stacked.ema_params)
    # Float rounding only: vmapped and alone compile differently.
    chex.assert_trees_all_close(member, alone[i].ema_params, atol=1e-6)
  # The floors and decays took effect: other rates, other averages.
  assert float(metrics.learning_rate[1]) > float(metrics.learning_rate[0])
  assert not np.allclose(
    stacked.ema_params["decoder"]["b"][0], stacked.ema_params["decoder"]["b"][1]
  )


def _ema_config(data_dir, **overrides):
  return run_helpers.small_config(
    data_dir,
    validation_size=128,
    ema_decay=0.9,
    final_importance_samples=2,
    **overrides,
  )


@pytest.mark.slow
def test_a_run_evaluates_checkpoints_and_resumes_with_the_average(
  idx_data_dir, tmp_path
):
  config = _ema_config(idx_data_dir)
  whole = str(tmp_path / "whole")
  history = run_helpers.train(config, whole)
  # The same run in two launches: one epoch, then extended to two.
  parts = str(tmp_path / "parts")
  run_helpers.train(_ema_config(idx_data_dir, epochs=1), parts)
  assert run_helpers.without_times(
    run_helpers.train(config, parts)
  ) == run_helpers.without_times(history)
  a = run_helpers.saved_state(config, whole)
  b = run_helpers.saved_state(config, parts)
  chex.assert_trees_all_equal(  # bit for bit, the average too
    jax.tree_util.tree_leaves((a.params, a.opt_state, a.ema_params)),
    jax.tree_util.tree_leaves((b.params, b.opt_state, b.ema_params)),
  )
  assert not np.array_equal(
    jax.tree_util.tree_leaves(a.ema_params)[0],
    jax.tree_util.tree_leaves(a.params)[0],
  )

  # The epoch's test ELBO is the average's (same program, same keys).
  model = registry.build_model(config, (28 * 28,))
  data = prepare_data(config)
  _, eval_rng, _ = programs.run_keys(config)
  evaluate = lambda params: float(
    programs.evaluate_program(
      model,
      params,
      data.test,
      eval_rng,
      batch_size=config.eval_batch_size,
      num_samples=config.eval_num_samples,
      analytic_kl=True,
    ).elbo
  )
  assert history[-1]["test_elbo"] == evaluate(a.ema_params)
  assert history[-1]["test_elbo"] != evaluate(a.params)
  # The best checkpoint: chosen on the average's validation ELBO, and its
  # parameters as evaluation reads them are the average.
  best = max(history, key=lambda r: r["val_elbo"])
  with checkpoints_lib.RunCheckpoints(
    os.path.join(whole, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.best_step() == best["step"]
    best_state = run_helpers.saved_state(config, whole, best["step"])
    chex.assert_trees_all_equal(
      ckpts.restore_params(best["step"], checkpoints_lib.BEST),
      best_state.ema_params,
    )
  _, _, loaded = load.restore_params(whole)
  chex.assert_trees_all_equal(loaded, best_state.ema_params)
  # The final IS log p(x) was measured on the best average.
  report = likelihood.likelihood_report(
    model,
    best_state.ema_params,
    data.test,
    eval_rng,
    2,
    batch_size=config.eval_batch_size,
  )
  assert history[-1]["test_log_px"] == report["test_log_px"]


# --- The learning rate scaled to the batch size. ---------------------------


@pytest.mark.parametrize(
  "scaling, factor", [("none", 1.0), ("linear", 2.0), ("sqrt", 2.0**0.5)]
)
def test_learning_rate_follows_the_batch_size(scaling, factor):
  config = default.get_config()
  config.update(
    dict(lr_batch_scaling=scaling, batch_size=256, lr_reference_batch_size=128)
  )
  validation.validate(config)
  hparams = programs.hyperparams(config, steps_per_epoch=10)
  assert float(hparams.learning_rate) == float(np.float32(1e-3 * factor))
  if scaling == "none":  # the configured float itself, as before
    assert hparams.learning_rate == jnp.float32(config.learning_rate)


@pytest.mark.parametrize(
  "changes, named",
  [
    (dict(lr_batch_scaling="cubic"), "--config.lr_batch_scaling='cubic'"),
    (dict(lr_reference_batch_size=0), "--config.lr_reference_batch_size=0"),
    (
      dict(lr_batch_scaling="linear", learning_rate=900.0, batch_size=256),
      "--config.learning_rate=900.0",
    ),
    (dict(ema_decay=1.0), "--config.ema_decay=1.0"),
    (dict(ema_decay=-0.5), "--config.ema_decay=-0.5"),
  ],
)
def test_bad_scaling_and_decay_are_refused_in_one_line(changes, named):
  test_bad_settings_are_refused_in_one_line(changes, named)


def test_traced_settings_share_a_group_and_the_average_is_static():
  base = default.get_config()
  plan = sweep_grid.plan_sweep(
    base, ["ema_decay=0.9,0.99", "lr_batch_scaling=none,sqrt"]
  )
  assert len(plan.groups) == 1  # one vmapped program for the 4 members
  plan = sweep_grid.plan_sweep(base, ["ema_decay=0,0.9,0.99"])
  # Off and on are two states' shapes: two programs.
  assert [
    [plan.members[i].settings["ema_decay"] for i in g] for g in plan.groups
  ] == [[0.0], [0.9, 0.99]]


@pytest.mark.slow
def test_a_vmapped_sweep_over_the_new_settings_equals_its_members_alone(
  idx_data_dir, tmp_path
):
  """ema_decay × lr_floor (a linear schedule), one vmapped program: each
  member as the same run trained alone, within rounding."""
  base = run_helpers.small_config(
    idx_data_dir,
    epochs=1,
    batch_size=64,
    steps_per_chunk=4,
    lr_schedule="linear",
    lr_batch_scaling="sqrt",
  )
  plan = sweep_grid.plan_sweep(base, ["ema_decay=0.5,0.9", "lr_floor=0,0.5"])
  assert len(plan.groups) == 1
  sweep_dir = str(tmp_path / "sweep")
  sweep.run_sweep(plan, sweep_dir, "on", figures=False)
  member = plan.members[-1]  # ema_decay=0.9, lr_floor=0.5
  alone = str(tmp_path / "alone")
  history = run_helpers.train(member.config, alone)
  model = registry.build_model(member.config, (28 * 28,))
  a = run_helpers.saved_state(
    member.config, os.path.join(sweep_dir, member.name)
  )
  b = run_helpers.saved_state(member.config, alone)
  record = workdir_lib.read_metrics(os.path.join(sweep_dir, member.name))[-1]
  run_helpers.assert_runs_close(
    model,
    a.replace(params=a.ema_params),
    b.replace(params=b.ema_params),
    record,
    history[-1],
    member.config,
  )
  assert record["learning_rate"] == pytest.approx(
    history[-1]["learning_rate"], rel=1e-6
  )
