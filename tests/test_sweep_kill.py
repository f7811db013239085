"""kill -9 of a real sweep process, then the same command: the sweep ends
like an uninterrupted one, bit for bit.

One group of two members (kl_weight 0.5, 1; --vectorize=on) of the tiny run
of run_helpers (16 steps in chunks of 8, one epoch): the launcher
is killed 0–200 ms after the first member's first checkpoint appears (into
the next chunk, or between the two members' saves), then run again.
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
from run_helpers import assert_same_state, flags_of, saved_state
from run_helpers import small_config, without_times
from vae_jax import sweep
from vae_jax.sweep import grid as sweep_grid
from vae_jax.store import workdir as workdir_lib

# kill -9 of a sweep subprocess, then resume.
pytestmark = pytest.mark.slow

_SPECS = ["kl_weight=0.5,1"]


def _launch(config, sweep_dir):
  args = [
    *flags_of(config),
    *(f"--sweep={s}" for s in _SPECS),
    "--vectorize=on",
    "--quiet",
    f"--sweep_dir={sweep_dir}",
  ]
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.sweep", *args],
    cwd=REPO_ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )


def test_kill_9_then_rerun_ends_like_an_uninterrupted_sweep(
  idx_data_dir, tmp_path
):
  config = small_config(idx_data_dir, steps_per_chunk=8, epochs=1)
  plan = sweep_grid.plan_sweep(config, _SPECS)
  reference = str(tmp_path / "reference")
  sweep.run_sweep(plan, reference, "on")
  killed = str(tmp_path / "killed")
  first = os.path.join(killed, plan.members[0].name, "checkpoints", "latest")
  process = _launch(config, killed)
  while process.poll() is None and not (
    os.path.isdir(first) and os.listdir(first)
  ):
    time.sleep(0.01)
  time.sleep(random.Random(12).uniform(0.0, 0.2))
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert process.returncode == -signal.SIGKILL, process.stderr.read()
  assert not os.path.exists(os.path.join(killed, sweep.STATUS_JSON))
  process = _launch(config, killed)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-3000:]
  for member in plan.members:
    a, b = (os.path.join(d, member.name) for d in (killed, reference))
    assert_same_state(
      saved_state(member.config, a), saved_state(member.config, b)
    )
    assert without_times(workdir_lib.read_metrics(a)) == without_times(
      workdir_lib.read_metrics(b)
    )
