"""Resume: a run stopped or killed at a chunk boundary ends bit for bit like an
uninterrupted one; KL warm-up, schedules and the best checkpoint end to end.

One uninterrupted run of 3 epochs (14 steps each, chunks of 5, 5 and 4 steps)
is the reference. Its cosine schedule spans `lr_schedule_epochs=3`, fixed
apart from --epochs, so a run of 2 epochs extended to 3 follows the same
learning rates as the reference.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import run_helpers
from tolerances import assert_close
from tolerances import rounding_atol
from tolerances import sum_atol
from vae_jax import step as step_lib
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.nets import registry
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import loop
from vae_jax.run import programs
from vae_jax.run import tensorboard as summary_writer
from vae_jax.store import workdir as workdir_lib

# Runs stopped, killed and resumed.
pytestmark = pytest.mark.slow

STEPS_PER_EPOCH = 14  # (512 − 64 validation) // 32, in chunks of 5, 5, 4
BATCH_SIZE = 32
LARGEST_CHUNK = 5  # steps whose metrics one float32 mean averages
NUM_TEST = 256  # idx_data_dir's test split
TIME_KEYS = ("examples_per_sec", "wall_time_sec")


def _subprocess_env() -> dict:
  # (The compilation cache's settings come with os.environ: see conftest.py.)
  return dict(os.environ, JAX_PLATFORMS="cpu")


def _with(config, **overrides):
  """A copy of `config` with some settings changed."""
  config = config.copy_and_resolve_references()
  config.update(overrides)
  return config


def _config(data_dir: str, **overrides):
  return _with(
    default.get_config(),
    dataset="idx",
    data_dir=data_dir,
    validation_size=64,
    batch_size=32,
    latent_dim=2,
    hidden_dims=(16,),
    epochs=3,
    steps_per_chunk=5,
    kl_warmup_epochs=2.0,
    lr_schedule="cosine",
    lr_schedule_epochs=3.0,
    grad_clip_norm=50.0,
    eval_batch_size=128,
    keep_checkpoints=2,
    **overrides,
  )


def _train(config, workdir, **kwargs):
  return run_helpers.as_json(
    loop.train_and_evaluate(
      config, str(workdir), progress_bar=False, figures=False, **kwargs
    )
  )


def _final_state(config, workdir) -> step_lib.TrainState:
  """The state of the latest checkpoint in WORKDIR."""
  model = registry.build_model(config, (28 * 28,))
  template = programs.init_state(
    model, programs.step_config(config), jax.random.key(0)
  )
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    state, _ = ckpts.restore(ckpts.latest_step(), template)
  return state


def _assert_same_state(a: step_lib.TrainState, b: step_lib.TrainState):
  assert int(a.step) == int(b.step)
  np.testing.assert_array_equal(
    jax.random.key_data(a.rng), jax.random.key_data(b.rng)
  )
  leaves_a = jax.tree_util.tree_leaves((a.params, a.opt_state))
  leaves_b = jax.tree_util.tree_leaves((b.params, b.opt_state))
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise


def _without_times(records):
  return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def _assert_tensorboard_has_each_epoch_once(workdir: str, records):
  """Every scalar and image tag, as TensorBoard reads it, has each epoch's
  step once: none lost, none written twice by a crashed and a resumed run."""
  steps = [r["step"] for r in records]
  logdir = os.path.join(workdir, "tensorboard")
  scalars = summary_writer.read_scalars(logdir)
  # test_log_px is measured only with config.final_importance_samples.
  assert set(scalars) == set(workdir_lib.METRIC_KEYS) - {
    "step",
    "test_log_px",
    "test_log_px_stderr",
  }
  for tag, events in scalars.items():
    assert [step for step, _ in events] == steps, tag
  for tag, images in summary_writer.read_images(logdir).items():
    assert [step for step, _ in images] == steps, tag


@pytest.fixture(scope="module")
def reference(idx_data_dir, tmp_path_factory):
  """(config, workdir, history) of the uninterrupted 3-epoch run."""
  config = _config(idx_data_dir)
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  history = _train(config, workdir)
  return config, workdir, history


def test_extending_a_finished_run_matches_the_uninterrupted_run(
  reference, tmp_path
):
  config, ref_dir, ref_history = reference
  _train(_with(config, epochs=2), tmp_path)
  assert [r["epoch"] for r in workdir_lib.read_metrics(str(tmp_path))] == [1, 2]
  history = _train(config, tmp_path)  # --epochs=3 on the same workdir

  _assert_same_state(
    _final_state(config, str(tmp_path)), _final_state(config, ref_dir)
  )
  records = workdir_lib.read_metrics(str(tmp_path))
  assert [r["epoch"] for r in records] == [1, 2, 3]  # each epoch once
  assert _without_times(records) == _without_times(ref_history)
  assert _without_times(history) == _without_times(ref_history)
  _assert_tensorboard_has_each_epoch_once(str(tmp_path), records)
  stored = json.load(open(os.path.join(tmp_path, "config.json")))
  assert stored["config"]["epochs"] == 3


def test_a_run_killed_mid_epoch_resumes_bit_for_bit(
  reference, idx_data_dir, tmp_path
):
  config, ref_dir, ref_history = reference
  # Killed (os._exit: no cleanup at all) right after the checkpoint of its
  # 4th chunk: epoch 2, after 5 of its 14 steps.
  script = textwrap.dedent(f"""
      import os
      from vae_jax.configs import default
      from vae_jax.run import loop
      config = default.get_config()
      config.update({config.to_dict()!r})
      chunks = []
      def after_chunk(state):
        chunks.append(int(state.step))
        if len(chunks) == 4:
          os._exit(17)
      loop.train_and_evaluate(config, {str(tmp_path)!r},
                              progress_bar=False, figures=False,
                              after_chunk=after_chunk)
  """)
  killed = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    timeout=300,
    env=_subprocess_env(),
  )
  assert killed.returncode == 17, killed.stderr[-3000:]
  with checkpoints_lib.RunCheckpoints(
    os.path.join(tmp_path, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.steps() == [STEPS_PER_EPOCH, STEPS_PER_EPOCH + 5]
  assert [r["epoch"] for r in workdir_lib.read_metrics(str(tmp_path))] == [1]

  # Resumed on the streaming input path: the same batches, bit for bit.
  _train(_with(config, streaming=True), tmp_path)
  _assert_same_state(
    _final_state(config, str(tmp_path)), _final_state(config, ref_dir)
  )
  records = workdir_lib.read_metrics(str(tmp_path))
  # Epoch 2's training metrics span the kill: the checkpoint carried its
  # first chunk's metrics over.
  assert _without_times(records) == _without_times(ref_history)
  _assert_tensorboard_has_each_epoch_once(str(tmp_path), records)


def test_metrics_dropped_after_the_checkpoint_are_redone_once(
  reference, tmp_path
):
  """A crash after an epoch's record but before its checkpoint."""
  config, _, ref_history = reference
  _train(_with(config, epochs=2), tmp_path)
  ckpt_dir = os.path.join(tmp_path, "checkpoints", "latest")
  # Forget the last checkpoint (end of epoch 2): its record stays behind.
  shutil.rmtree(os.path.join(ckpt_dir, str(2 * STEPS_PER_EPOCH)))
  _train(config, tmp_path)
  records = workdir_lib.read_metrics(str(tmp_path))
  assert [r["epoch"] for r in records] == [1, 2, 3]
  assert _without_times(records) == _without_times(ref_history)
  # The first run's TensorBoard events of epoch 2 are purged.
  _assert_tensorboard_has_each_epoch_once(str(tmp_path), records)


def test_kl_warm_up_reaches_weight_one_at_the_stated_epoch(reference):
  _, _, history = reference
  # β_t = min(1, t / 28) over 2 warm-up epochs of 14 steps: epoch means.
  # Each β_t is one float32 division t / 28; a chunk's float32 mean adds a
  # sum of ≤ 5 and a division; the epoch's weighting of chunks is float64.
  weights = np.asarray([r["kl_weight"] for r in history])
  expected = np.asarray([6.5 / 28, 20.5 / 28])
  assert_close(weights[:2], expected, sum_atol(LARGEST_CHUNK, expected))
  assert weights[2] == 1.0
  # Every reported ELBO has weight 1, also during the warm-up. ll ≤ 0 and
  # KL ≥ 0 for every example, so each mean's magnitude is |ll| + KL.
  for r in history:
    # Per step, float32 means over the batch of ll − KL, ll and KL; then
    # means over the ≤ 5 steps of a chunk.
    magnitude = abs(r["train_log_likelihood"]) + r["train_kl"]
    assert r["train_elbo"] == pytest.approx(
      r["train_log_likelihood"] - r["train_kl"],
      abs=sum_atol(BATCH_SIZE + LARGEST_CHUNK, magnitude),
    )
    # Float32 means over the test split of ll − KL, ll and KL.
    magnitude = abs(r["test_log_likelihood"]) + r["test_kl"]
    assert r["test_elbo"] == pytest.approx(
      r["test_log_likelihood"] - r["test_kl"],
      abs=sum_atol(NUM_TEST, magnitude, ops_per_term=2),
    )


def test_cosine_schedule_decays_by_absolute_step(reference):
  _, _, history = reference
  rates = [r["learning_rate"] for r in history]
  assert rates[0] > rates[1] > rates[2] > 0
  total = 3 * STEPS_PER_EPOCH
  expected = [
    np.mean(
      [
        1e-3 * 0.5 * (1 + np.cos(np.pi * t / total))
        for t in range(e * 14, (e + 1) * 14)
      ]
    )
    for e in range(3)
  ]
  # float32 per step: π·t/T (3 roundings, |·| ≤ π) through cos puts an
  # absolute error ≤ 3πu + 0.55u on cos. 1 + cos is ≤ 2, so together
  # ≤ 6u · 1e-3 after ½ · 1e-3. The power ** 1.0 (2 operations), the rate's
  # rounding and × (2) are relative. A chunk's mean adds ≤ 5 terms and ÷.
  assert_close(
    rates,
    expected,
    rounding_atol(3, 1e-3)
    + sum_atol(LARGEST_CHUNK, np.asarray(expected), ops_per_term=4),
  )


def test_best_checkpoint_is_chosen_on_the_validation_split(reference):
  _, workdir, history = reference
  best = max(history, key=lambda r: r["val_elbo"])
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.steps(checkpoints_lib.BEST) == [best["step"]]
    # The latest N: the last two chunk boundaries.
    assert ckpts.steps() == [3 * STEPS_PER_EPOCH - 4, 3 * STEPS_PER_EPOCH]


def test_resume_with_other_settings_is_refused(reference):
  config, workdir, _ = reference
  changed = _with(config, latent_dim=3, learning_rate=2e-3)
  with pytest.raises(ConfigError) as error:
    _train(changed, workdir)
  message = str(error.value)
  assert "--config.latent_dim: the run has 2, this command 3" in message
  assert (
    "--config.learning_rate: the run has 0.001, this command 0.002" in message
  )
  assert (
    "only --config.epochs, --config.streaming, "
    "--config.skip_nonfinite_updates, --config.num_devices, --quiet" in message
  )
  assert len(workdir_lib.read_metrics(workdir)) == 3  # nothing touched


def test_early_stopping_stops_after_patience_epochs(reference, tmp_path):
  config, _, _ = reference
  # A learning rate so small that no parameter changes: the validation ELBO
  # is the same every epoch, never better than the first.
  config = _with(
    config, learning_rate=1e-30, epochs=10, early_stopping_patience=2
  )
  history = _train(config, tmp_path)
  assert [r["epoch"] for r in history] == [1, 2, 3]
  assert len({r["val_elbo"] for r in history}) == 1
  with checkpoints_lib.RunCheckpoints(
    os.path.join(tmp_path, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.latest_step() == 3 * STEPS_PER_EPOCH
    assert ckpts.steps(checkpoints_lib.BEST) == [STEPS_PER_EPOCH]
  # Running it again (even with more epochs) does not train past the stop.
  assert _train(_with(config, epochs=12), tmp_path) == history


def test_resume_refuses_fewer_epochs_than_the_run_has(reference):
  config, workdir, _ = reference
  with pytest.raises(
    ConfigError, match="--config.epochs=2 is invalid: .* already has 3 epochs"
  ):
    _train(_with(config, epochs=2), workdir)
  stored = json.load(open(os.path.join(workdir, "config.json")))
  assert stored["config"]["epochs"] == 3


def test_a_run_killed_before_its_first_checkpoint_starts_over(
  reference, tmp_path, caplog
):
  """Metrics lines without a checkpoint (and a torn one) are dropped with a
  warning; the run starts over and ends like the uninterrupted one."""
  config, ref_dir, ref_history = reference
  with open(os.path.join(tmp_path, "metrics.jsonl"), "w") as f:
    f.write(json.dumps(ref_history[0]) + "\n" + '{"epoch": 2, "st')
  history = _train(config, tmp_path)
  assert "the run starts over" in caplog.text
  assert _without_times(history) == _without_times(ref_history)
  records = workdir_lib.read_metrics(str(tmp_path))
  assert _without_times(records) == _without_times(ref_history)
  _assert_same_state(
    _final_state(config, str(tmp_path)), _final_state(config, ref_dir)
  )
