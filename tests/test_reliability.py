"""Faults done for real: a second process, damaged checkpoints, divergence,
lost metrics, unusable run directories.

One tiny run (16 steps per epoch in chunks of 7, 7 and 2; checkpoints keep
the last two chunk boundaries) is the reference; each fault works on a copy
of its directory, and a resumed run must end bit for bit like it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT
from toy_models import DIVERGING_STEP
from vae_jax.configs import default
from vae_jax.errors import NonFiniteError
from vae_jax.nets import registry
from vae_jax.run import checkpoints as checkpoints_lib
from vae_jax.run import evaluate as evaluate_lib
from vae_jax.run import load
from vae_jax.run import loop
from vae_jax.run import programs
from vae_jax.run import workdir as workdir_lib
from vae_jax.run.lock import WorkdirBusy, WorkdirLock

TIME_KEYS = ("examples_per_sec", "wall_time_sec")
_SETTINGS = dict(dataset="idx", batch_size=32, latent_dim=2, hidden_dims=(16,),
                 steps_per_chunk=7, eval_batch_size=128, keep_checkpoints=2)


def _config(data_dir, **overrides):
  config = default.get_config()
  config.update(dict(_SETTINGS, data_dir=data_dir, epochs=2) | overrides)
  return config


def _flags(config) -> list[str]:
  return [f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
          for k, v in config.items() if v != default.get_config()[k]]


def _train(config, workdir, **kwargs):
  return loop.train_and_evaluate(config, str(workdir), progress_bar=False,
                                 figures=False, **kwargs)


def _template(config):
  model = registry.build_model(config, (28 * 28,))
  return programs.init_state(model, programs.step_config(config),
                             jax.random.key(0))


def _state(config, workdir, step=None):
  with checkpoints_lib.RunCheckpoints(os.path.join(workdir, "checkpoints"),
                                      read_only=True) as ckpts:
    state, _ = ckpts.restore(step or ckpts.latest_step(), _template(config))
  return state


def _leaves(state):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(
      (state.params, state.opt_state, state.step, jax.random.key_data(
          state.rng)))]


def _assert_same_state(a, b):
  for x, y in zip(_leaves(a), _leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)  # bitwise


def _without_times(records):
  return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def _snapshot(directory):
  """(path, size, mtime) of everything under `directory`."""
  out = []
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      stat = os.lstat(os.path.join(root, name))
      out.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
  return sorted(out)


def _launch(module, args, timeout=240):
  path = os.pathsep.join([str(REPO_ROOT / "tests"),
                          os.environ.get("PYTHONPATH", "")])
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                        env=dict(os.environ, JAX_PLATFORMS="cpu",
                                 PYTHONPATH=path),
                        capture_output=True, text=True, timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def reference(idx_data_dir, tmp_path_factory):
  """(config, workdir, history): 2 epochs, uninterrupted; the 3-epoch run."""
  config = _config(idx_data_dir)
  workdir = str(tmp_path_factory.mktemp("reference"))
  history = _train(config, workdir)
  longer = str(tmp_path_factory.mktemp("reference3"))
  _train(_config(idx_data_dir, epochs=3), longer)
  return config, workdir, history, longer


def _copy(reference, tmp_path) -> str:
  target = os.path.join(tmp_path, "run")
  shutil.copytree(reference[1], target)
  return target


# 1. One writer per run directory.

def test_a_second_trainer_is_refused_and_touches_nothing(reference, tmp_path):
  config, _, _, _ = reference
  workdir = _copy(reference, tmp_path)
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\n"
       "from vae_jax.run.lock import WorkdirLock\n"
       "WorkdirLock(sys.argv[1]); print('locked', flush=True)\n"
       "time.sleep(300)", workdir], cwd=REPO_ROOT, stdout=subprocess.PIPE,
      text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = _snapshot(workdir)
    second = _launch("experiments.train", [*_flags(config),
                                           f"--workdir={workdir}", "--quiet"])
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    [error] = _error_lines(second.stderr)
    assert workdir in error and f"pid {holder.pid}" in error
    assert _snapshot(workdir) == before
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

  _train(_config(config.data_dir, epochs=1), tmp_path, after_chunk=after_chunk)
  assert len(refusals) == 3  # every chunk
  WorkdirLock(str(tmp_path)).release()  # released at the end


# 2. Non-finite values stop the run.

def _diverging(config, **overrides):
  # The loss turns NaN at step 21 (epoch 2, in the chunk after the
  # checkpoint at step 16): see toy_models.DivergingVAE.
  return _config(config.data_dir, model="toy_models:diverging_vae", epochs=3,
                 **overrides)


def test_divergence_stops_at_the_last_good_checkpoint(reference, tmp_path):
  config = _diverging(reference[0])
  with pytest.raises(NonFiniteError) as error:
    _train(config, tmp_path)
  message = str(error.value)
  assert message.startswith(
      f"non-finite loss at step {DIVERGING_STEP} (epoch 2 of 3)")
  assert "the last good checkpoint is step 16" in message
  with checkpoints_lib.RunCheckpoints(os.path.join(tmp_path, "checkpoints"),
                                      read_only=True) as ckpts:
    assert ckpts.steps() == [14, 16]  # nothing saved past the bad step
    template = programs.init_state(
        registry.build_model(config, (784,)), programs.step_config(config),
        jax.random.key(0))
    for step in ckpts.steps():  # each restores finite, checksums verified
      ckpts.restore(step, template)
  assert [r["epoch"] for r in workdir_lib.read_metrics(str(tmp_path))] == [1]


def test_divergence_exits_with_status_3_in_one_line(reference, tmp_path):
  config = _diverging(reference[0])
  result = _launch("experiments.train", [*_flags(config), "--quiet",
                                         f"--workdir={tmp_path}"])
  assert result.returncode == 3, result.stderr
  assert "Traceback" not in result.stderr
  [error] = _error_lines(result.stderr)
  assert f"step {DIVERGING_STEP}" in error and "step 16" in error


def test_skipping_nonfinite_updates_finishes_finite(reference, tmp_path):
  config = _diverging(reference[0], skip_nonfinite_updates=True)
  history = _train(config, tmp_path)
  # Steps 21..47 are all NaN (the skipped update leaves the clock as it is).
  assert [r["skipped_updates"] for r in history] == [
      0, 32 - DIVERGING_STEP, 16]
  assert all(r["train_elbo"] is not None for r in history[:2])
  assert history[2]["train_elbo"] is None  # no step taken: null, not NaN
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    for line in f:  # strict JSON: no NaN token
      json.loads(line, parse_constant=pytest.fail)


# 3. Damaged checkpoints fall back to the newest intact step.

def _largest_data_file(step_dir):
  files = [os.path.join(root, name) for root, _, names in os.walk(step_dir)
           for name in names if os.sep + "d" + os.sep in os.path.join(root,
                                                                       name)]
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
def test_a_damaged_newest_checkpoint_falls_back(reference, tmp_path, damage,
                                                caplog):
  config, ref_dir, _, _ = reference
  workdir = _copy(reference, tmp_path)
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
  for x, y in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(
      _state(config, ref_dir, step).params), strict=True):
    np.testing.assert_array_equal(x, y)
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "damaged"))
  # Training moves the damaged step aside and goes on from the intact one.
  with checkpoints_lib.RunCheckpoints(os.path.join(workdir, "checkpoints")
                                      ) as ckpts:
    restored = ckpts.restore_newest(
        [("latest", s) for s in reversed(ckpts.steps())], _template(config))
    assert restored.step == expected and ckpts.steps()[-1] == expected
  assert os.listdir(os.path.join(workdir, "checkpoints", "damaged"))
  assert "is unusable" in caplog.text and "Traceback" not in caplog.text


def test_garbled_bytes_cost_one_chunk_and_the_run_ends_bitwise(reference,
                                                                tmp_path):
  config, _, _, longer = reference
  workdir = _copy(reference, tmp_path)
  _garble_64_bytes(os.path.join(workdir, "checkpoints", "latest", "32"))
  history = _train(_config(config.data_dir, epochs=3), workdir)
  _assert_same_state(_state(config, workdir), _state(config, longer))
  assert [r["epoch"] for r in history] == [1, 2, 3]
  assert _without_times(workdir_lib.read_metrics(workdir)) == _without_times(
      workdir_lib.read_metrics(longer))


def test_no_intact_checkpoint_is_one_error_listing_them(reference, tmp_path):
  workdir = _copy(reference, tmp_path)
  _truncate(os.path.join(workdir, "checkpoints", "latest", "32"))
  _remove("state/manifest.ocdbt")(os.path.join(workdir, "checkpoints",
                                               "latest", "30"))
  result = _launch("experiments.evaluate", [f"--workdir={workdir}", "--quiet",
                                            "--checkpoint=latest"])
  assert result.returncode == 2 and "Traceback" not in result.stderr
  [error] = _error_lines(result.stderr)
  assert "latest/32 (" in error and "latest/30 (FileNotFoundError" in error


# 4. Metrics rebuilt from the checkpoint; a config.json write never torn.

def test_an_emptied_metrics_file_loses_nothing(reference, tmp_path):
  config, _, _, longer = reference
  workdir = _copy(reference, tmp_path)
  open(os.path.join(workdir, "metrics.jsonl"), "w").close()
  with open(os.path.join(workdir, "config.json.4242.tmp"), "w") as f:
    f.write('{"config": {"late')  # a kill during config.json's write
  _train(_config(config.data_dir, epochs=3), workdir)
  assert _without_times(workdir_lib.read_metrics(workdir)) == _without_times(
      workdir_lib.read_metrics(longer))
