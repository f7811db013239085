"""Damaged checkpoints: the newest intact step is restored, or one error.

The damage of issue 15's list, done to the newest step (32) of the reference
run (tests/run_helpers.py), whose latest/ also holds step 30: evaluation
falls back read-only; training moves the damaged step to
checkpoints/damaged/ and resumes from step 30, ending bit for bit like the
uninterrupted run.
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import pytest

from run_helpers import (
  assert_same_state,
  copy_run,
  error_lines,
  launch,
  make_reference,
  saved_state,
  small_config,
  template,
  train,
  without_times,
)
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import load
from vae_jax.store import workdir as workdir_lib

# Training runs, damaged and resumed.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(idx_data_dir, tmp_path_factory):
  return make_reference(idx_data_dir, tmp_path_factory)


def _largest_data_file(step_dir):
  files = [
    os.path.join(root, name)
    for root, _, names in os.walk(step_dir)
    for name in names
    if os.sep + "d" + os.sep in os.path.join(root, name)
  ]
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_data_file(step_dir)
  os.truncate(path, os.path.getsize(path) // 2)


def _garble_64_bytes(step_dir):
  path = _largest_data_file(step_dir)
  with open(path, "r+b") as f:  # bytes that may decode to finite numbers
    f.seek(os.path.getsize(path) // 2)
    f.write(bytes(range(64)))


def _remove(relative):
  def damage(step_dir):
    path = os.path.join(step_dir, relative)
    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)

  return damage


def _garble(relative):
  def damage(step_dir):
    with open(os.path.join(step_dir, relative), "r+b") as f:
      f.write(b"\xff" * 64)

  return damage


_DAMAGE = {
  "truncated_data_file": _truncate,
  "garbled_64_bytes": _garble_64_bytes,
  "deleted_manifest": _remove("state/manifest.ocdbt"),
  "garbled_manifest": _garble("state/manifest.ocdbt"),
  "deleted_metadata": _remove("state/_METADATA"),
  "garbled_metadata": _garble("state/_METADATA"),
  "deleted_progress": _remove("progress/metadata"),
  "missing_state_item": _remove("state"),
}


@pytest.mark.parametrize("damage", sorted(_DAMAGE) + ["empty_newer_step"])
def test_a_damaged_newest_checkpoint_falls_back(
  reference, tmp_path, damage, caplog
):
  config, ref_dir, _, _ = reference
  workdir = copy_run(reference, tmp_path)
  latest = os.path.join(workdir, "checkpoints", "latest")
  if damage == "empty_newer_step":
    os.makedirs(os.path.join(latest, "99999"))
    expected = 32
  else:
    _DAMAGE[damage](os.path.join(latest, "32"))
    expected = 30
  # Evaluation (read-only) reads the params of the newest step whose params
  # are intact (bytes garbled elsewhere do not concern it); moves nothing.
  which, step, params = load.restore_params(workdir, "latest")
  assert which == "latest" and step in (expected, 32)
  for x, y in zip(
    jax.tree_util.tree_leaves(params),
    jax.tree_util.tree_leaves(saved_state(config, ref_dir, step).params),
    strict=True,
  ):
    np.testing.assert_array_equal(x, y)
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "damaged"))
  # Training moves the damaged step aside and goes on from the intact one.
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints")
  ) as ckpts:
    restored = ckpts.restore_newest(
      [("latest", s) for s in reversed(ckpts.steps())], template(config)
    )
    assert restored.step == expected and ckpts.steps()[-1] == expected
  assert os.listdir(os.path.join(workdir, "checkpoints", "damaged"))
  assert "is unusable" in caplog.text and "Traceback" not in caplog.text


def test_garbled_bytes_cost_one_chunk_and_the_run_ends_bitwise(
  reference, tmp_path
):
  config, _, _, longer = reference
  workdir = copy_run(reference, tmp_path)
  _garble_64_bytes(os.path.join(workdir, "checkpoints", "latest", "32"))
  history = train(small_config(config.data_dir, epochs=3), workdir)
  assert_same_state(saved_state(config, workdir), saved_state(config, longer))
  assert [r["epoch"] for r in history] == [1, 2, 3]
  assert without_times(workdir_lib.read_metrics(workdir)) == without_times(
    workdir_lib.read_metrics(longer)
  )


def test_no_intact_checkpoint_is_one_error_listing_them(reference, tmp_path):
  workdir = copy_run(reference, tmp_path)
  _truncate(os.path.join(workdir, "checkpoints", "latest", "32"))
  _remove("state/manifest.ocdbt")(
    os.path.join(workdir, "checkpoints", "latest", "30")
  )
  result = launch(
    "experiments.evaluate",
    [f"--workdir={workdir}", "--quiet", "--checkpoint=latest"],
  )
  assert result.returncode == 2 and "Traceback" not in result.stderr
  [error] = error_lines(result.stderr)
  assert "latest/32 (" in error and "latest/30 (FileNotFoundError" in error


# Every latest/ step damaged or deleted, best/ intact (issue 21): the run
# goes back to the best checkpoint, not to step 0 nor to an error.


class _Killed(Exception):
  pass


@pytest.fixture(scope="module")
def validated(idx_data_dir, tmp_path_factory):
  """(config, a run with a validation split stopped after its checkpoint at
  step 35 (latest/ 28 and 35, best/ at an epoch's end before), the same run
  uninterrupted)."""
  config = small_config(idx_data_dir, validation_size=64, epochs=3)
  workdir = str(tmp_path_factory.mktemp("validated"))

  def stop_at_35(state):
    if int(state.step) == 35:
      raise _Killed

  with pytest.raises(_Killed):
    train(config, workdir, after_chunk=stop_at_35)
  longer = str(tmp_path_factory.mktemp("validated_uninterrupted"))
  train(config, longer)
  return config, workdir, longer


@pytest.mark.parametrize(
  "loss", ["every_latest_step_truncated", "every_latest_step_deleted"]
)
def test_an_intact_best_checkpoint_is_resumed_from(
  validated, tmp_path, loss, caplog
):
  config, reference, longer = validated
  workdir = str(tmp_path / "run")
  shutil.copytree(reference, workdir)
  latest = os.path.join(workdir, "checkpoints", "latest")
  assert sorted(os.listdir(latest), key=int) == ["28", "35"]
  [best] = os.listdir(os.path.join(workdir, "checkpoints", "best"))
  for step in os.listdir(latest):
    if loss == "every_latest_step_truncated":
      _truncate(os.path.join(latest, step))
    else:
      shutil.rmtree(os.path.join(latest, step))
  chunks = []
  train(config, workdir, after_chunk=chunks.append)
  assert len(chunks) == (42 - int(best)) // 7  # from best/, not from 0
  assert f"went back to its best checkpoint at step {best}" in caplog.text
  assert_same_state(saved_state(config, workdir), saved_state(config, longer))
  assert without_times(workdir_lib.read_metrics(workdir)) == without_times(
    workdir_lib.read_metrics(longer)
  )
