"""Faults done for real: a second process, divergence, lost metrics, a
full disk (tests/run_helpers.py: the tiny run they work on).

Each fault works on a copy of the reference run's directory or a new one,
and a resumed run must end bit for bit like the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO_ROOT
from run_helpers import (
  assert_same_state,
  copy_run,
  error_lines,
  flags_of,
  launch,
  make_reference,
  saved_state,
  small_config,
  snapshot,
  template,
  train,
  without_times,
)
from toy_models import DIVERGING_STEP
from vae_jax.chunks import ChunkHealth
from vae_jax.errors import NonFiniteError
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import evaluate as evaluate_lib
from vae_jax.run import stages
from vae_jax.store import workdir as workdir_lib
from vae_jax.store.lock import WorkdirBusy, WorkdirLock

# Faults done for real: subprocesses and training runs.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(idx_data_dir, tmp_path_factory):
  return make_reference(idx_data_dir, tmp_path_factory)


# 1. One writer per run directory.


def test_a_second_trainer_is_refused_and_touches_nothing(reference, tmp_path):
  config, _, _, _ = reference
  workdir = copy_run(reference, tmp_path)
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time\n"
      "from vae_jax.store.lock import WorkdirLock\n"
      "WorkdirLock(sys.argv[1]); print('locked', flush=True)\n"
      "time.sleep(300)",
      workdir,
    ],
    cwd=REPO_ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = snapshot(workdir)
    second = launch(
      "experiments.train",
      [*flags_of(config), f"--workdir={workdir}", "--quiet"],
    )
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    [error] = error_lines(second.stderr)
    assert workdir in error and f"pid {holder.pid}" in error
    assert snapshot(workdir) == before
    # Evaluation takes no lock: it runs beside a trainer.
    record = evaluate_lib.evaluate_run(workdir, "latest", figures=False)
    assert record["step"] == 32
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  WorkdirLock(workdir).release()  # kill -9 left no stale lock


def test_the_trainer_holds_the_lock_while_it_runs(reference, tmp_path):
  config, _, _, _ = reference
  refusals = []

  def after_chunk(state):
    del state
    with pytest.raises(WorkdirBusy, match=f"pid {os.getpid()}") as error:
      WorkdirLock(str(tmp_path))
    refusals.append(str(error.value))

  train(
    small_config(config.data_dir, epochs=1), tmp_path, after_chunk=after_chunk
  )
  assert len(refusals) == 3  # every chunk
  WorkdirLock(str(tmp_path)).release()  # released at the end


# 2. Non-finite values stop the run.


def _diverging(config, **overrides):
  # The loss turns NaN at step 21 (epoch 2, in the chunk after the
  # checkpoint at step 16): see toy_models.DivergingVAE.
  return small_config(
    config.data_dir, model="toy_models:diverging_vae", epochs=3, **overrides
  )


def test_divergence_stops_at_the_last_good_checkpoint(reference, tmp_path):
  config = _diverging(reference[0])
  with pytest.raises(NonFiniteError) as error:
    train(config, tmp_path)
  message = str(error.value)
  assert message.startswith(
    f"non-finite loss at step {DIVERGING_STEP} (epoch 2 of 3)"
  )
  assert "the last good checkpoint is step 16" in message
  with checkpoints_lib.RunCheckpoints(
    os.path.join(tmp_path, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.steps() == [14, 16]  # nothing saved past the bad step
    for step in ckpts.steps():  # each restores finite, checksums verified
      ckpts.restore(step, template(config))
  assert [r["epoch"] for r in workdir_lib.read_metrics(str(tmp_path))] == [1]


@pytest.mark.parametrize("skip", [False, True])
def test_divergence_exits_with_status_3_in_one_line(reference, tmp_path, skip):
  config = _diverging(reference[0], skip_nonfinite_updates=skip)
  result = launch(
    "experiments.train", [*flags_of(config), "--quiet", f"--workdir={tmp_path}"]
  )
  assert result.returncode == 3, result.stderr
  assert "Traceback" not in result.stderr
  [error] = error_lines(result.stderr)
  assert f"step {DIVERGING_STEP}" in error and "step 16" in error
  assert ("skipped" in error) == skip


def test_skipping_stops_a_run_whose_updates_keep_failing(reference, tmp_path):
  """Steps 21.. are all NaN (a skipped update leaves the clock as it is):
  the chunk of steps 16..22 skips two of epoch 2's 16 updates, more than
  stages.MAX_SKIPPED_SHARE, and the run stops at the last good checkpoint
  as an unskipped run stops."""
  config = _diverging(reference[0], skip_nonfinite_updates=True)
  with pytest.raises(NonFiniteError) as error:
    train(config, tmp_path)
  message = str(error.value)
  assert message.startswith(
    "2 of the 16 updates of epoch 2 of 3 were "
    f"non-finite and skipped (this chunk's first at step {DIVERGING_STEP})"
  )
  assert "the last good checkpoint is step 16" in message
  with checkpoints_lib.RunCheckpoints(
    os.path.join(tmp_path, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.steps() == [14, 16]
  [record] = workdir_lib.read_metrics(str(tmp_path))
  assert record["skipped_updates"] == 0
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    for line in f:  # strict JSON: no NaN token
      json.loads(line, parse_constant=pytest.fail)


def _health(first_bad_step=-1, quantity=0, skipped=0):
  """A chunk's health as the host gets it (numpy scalars)."""
  return ChunkHealth(
    np.int32(first_bad_step), np.int32(quantity), np.int32(skipped)
  )


@pytest.mark.parametrize(
  "health, skipped_before, skip, stops",
  [
    (_health(), 0, False, None),
    (_health(5, 1), 0, False, "non-finite loss at step 5"),
    (_health(5, 1, 1), 0, True, None),  # a rare bad step: skipped
    (_health(5, 1, 1), 1, True, None),  # 2 of 20 = MAX_SKIPPED_SHARE
    (_health(5, 1, 2), 1, True, "3 of the 20 updates of epoch 1 of 4"),
    (_health(25, 2, 3), 0, True, "3 of the 20 updates of epoch 2 of 4"),
    (_health(5, 3, 1), 0, True, "non-finite "),  # a bad state: never skipped
  ],
)
def test_which_chunks_stop_a_run(
  reference, tmp_path, health, skipped_before, skip, stops
):
  del reference
  with checkpoints_lib.RunCheckpoints(str(tmp_path)) as ckpts:
    failure = stages.chunk_failure(health, skipped_before, skip, 20, 4, ckpts)
  if stops is None:
    assert failure is None
  else:
    assert failure.startswith(stops)
    assert "no checkpoint was saved before it" in failure


def test_a_nonfinite_evaluation_stops_the_run():
  record = workdir_lib.EpochRecord(*([1.0] * len(workdir_lib.METRIC_KEYS)))
  assert stages.nonfinite_evaluation(record) is None
  assert (
    stages.nonfinite_evaluation(dataclasses.replace(record, val_elbo=None))
    is None
  )
  failure = stages.nonfinite_evaluation(
    dataclasses.replace(record, epoch=3, step=90, test_elbo=float("nan"))
  )
  assert failure.startswith(
    "the evaluation after epoch 3 (step 90) is non-finite (test ELBO nan)"
  )


# 4. Metrics rebuilt from the checkpoint; a config.json write never torn.


def test_an_emptied_metrics_file_loses_nothing(reference, tmp_path):
  config, _, _, longer = reference
  workdir = copy_run(reference, tmp_path)
  open(os.path.join(workdir, "metrics.jsonl"), "w").close()
  with open(os.path.join(workdir, "config.json.4242.tmp"), "w") as f:
    f.write('{"config": {"late')  # a kill during config.json's write
  train(small_config(config.data_dir, epochs=3), workdir)
  assert without_times(workdir_lib.read_metrics(workdir)) == without_times(
    workdir_lib.read_metrics(longer)
  )


# Disk problems.


@pytest.mark.parametrize(
  "limit",
  [
    60_000,  # below a checkpoint (~380 kB): the first save is refused
    450_000,  # checkpoints fit; TensorBoard's file outgrows it at epoch 1
  ],
)
def test_a_full_disk_is_one_line_and_the_run_resumes(
  reference, tmp_path, limit
):
  """A full disk, made by a file-size limit on the launcher's process (a
  small tmpfs needs mount rights the suite does not assume)."""
  config, ref_dir, _, _ = reference
  args = [*flags_of(config), "--quiet", f"--workdir={tmp_path}"]
  full = launch("experiments.train", args, file_size_limit=limit)
  assert full.returncode == 2, full.stderr
  assert "Traceback" not in full.stderr
  assert [l for l in full.stderr.splitlines() if l.strip()] == error_lines(
    full.stderr
  )  # nothing but the one line
  assert "File too large" in full.stderr
  history = train(config, tmp_path)  # room again: it resumes
  assert_same_state(
    saved_state(config, str(tmp_path)), saved_state(config, ref_dir)
  )
  assert [r["epoch"] for r in history] == [1, 2]


def test_a_vanished_run_directory_is_one_line(reference, tmp_path):
  """The run directory removed after the first chunk's checkpoint (e.g. a
  cleanup job): the next write fails, and the launcher says so in one line."""
  config, _, _, _ = reference
  workdir = str(tmp_path / "run")
  argv = [*flags_of(config), "--quiet", f"--workdir={workdir}"]
  script = textwrap.dedent(f"""
      import shutil, sys
      from vae_jax.run import loop
      train_and_evaluate = loop.train_and_evaluate
      def remove_after_first_chunk(config, workdir, **kwargs):
        return train_and_evaluate(
            config, workdir, after_chunk=lambda state: shutil.rmtree(workdir),
            **kwargs)
      loop.train_and_evaluate = remove_after_first_chunk
      sys.argv = ["train", *{argv!r}]
      from vae_jax.launchers import train
      train.run()
  """)
  result = subprocess.run(
    [sys.executable, "-c", script],
    cwd=REPO_ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert lines == error_lines(result.stderr), result.stderr
  assert f"--workdir={workdir}" in lines[0]
  assert not os.path.exists(workdir)
