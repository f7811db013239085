"""kill -9 at random moments, then resume: the run ends bit for bit.

The launcher trains the tiny run of tests/run_helpers.py in a subprocess;
each cycle waits for a new checkpoint (so every cycle gets further), sleeps
a random 0–300 ms — into the next chunk's steps, its checkpoint write or the
epoch's evaluation and metrics line — and sends SIGKILL. After the kills a
last launch finishes the run, which must end with the latest checkpoint's
every leaf equal to an uninterrupted run's and each epoch once in
metrics.jsonl. scripts/kill_soak.py does the same for many cycles, outside
the suite.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from run_helpers import (
  assert_same_state,
  flags_of,
  make_reference,
  saved_state,
  without_times,
)
from vae_jax.store import workdir as workdir_lib

# kill -9 and resume of launcher subprocesses.
pytestmark = pytest.mark.slow

_KILLS = 4


def _steps(workdir: str) -> set[str]:
  latest = os.path.join(workdir, "checkpoints", "latest")
  if not os.path.isdir(latest):
    return set()
  return {name for name in os.listdir(latest) if name.isdigit()}


def _start(args: list[str]) -> subprocess.Popen:
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.train", *args],
    cwd=REPO_ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )


@pytest.fixture(scope="module")
def reference(idx_data_dir, tmp_path_factory):
  return make_reference(idx_data_dir, tmp_path_factory, with_longer=False)


def test_random_kills_then_resume_end_bit_for_bit(reference, tmp_path):
  config, ref_dir, ref_history, _ = reference
  args = [*flags_of(config), "--quiet", f"--workdir={tmp_path}"]
  rng = random.Random(15)
  kills = 0
  while kills < _KILLS:
    seen = _steps(str(tmp_path))
    process = _start(args)
    while process.poll() is None and _steps(str(tmp_path)) <= seen:
      time.sleep(0.01)
    if process.poll() is not None:  # finished before a kill: fine too
      break
    time.sleep(rng.uniform(0.0, 0.3))
    process.send_signal(signal.SIGKILL)
    process.communicate()
    kills += 1
  final = _start(args)
  _, stderr = final.communicate(timeout=300)
  assert final.returncode == 0, stderr
  assert kills >= 2, "the run ended before it could be killed twice"
  assert_same_state(
    saved_state(config, str(tmp_path)), saved_state(config, ref_dir)
  )
  records = workdir_lib.read_metrics(str(tmp_path))
  assert [r["epoch"] for r in records] == [1, 2]  # each epoch once
  assert without_times(records) == without_times(ref_history)
