"""Members of a vmapped group: their axis over 4 host devices equals one
device (to float rounding: XLA compiles the vmapped step differently for
each number of members per device); a member that diverges or stops early
stops alone.

The device test runs in a subprocess (XLA_FLAGS must be set before JAX
starts): three members (padded to four) of the tiny run of run_helpers,
trained with num_devices=4 and with num_devices=1.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from run_helpers import small_config
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax import sweep
from vae_jax.sweep import grid as sweep_grid
from vae_jax.store import workdir as workdir_lib

# Sweep members over a mesh of host devices, as subprocesses.
pytestmark = pytest.mark.slow

_COMPARE = r"""
import os, sys
import jax
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
from run_helpers import (assert_runs_close, saved_state, small_config,
                         without_times)
from vae_jax.nets import registry
from vae_jax import sweep
from vae_jax.store import workdir as workdir_lib
from vae_jax.sweep import grid as sweep_grid
from vae_jax.sweep import group as sweep_group
assert jax.device_count() == 4, jax.devices()
shardings = []


class Recording:  # the group program, noting how its states are placed
  def lower(self, *args):
    leaf = jax.tree_util.tree_leaves(args[4])[0]  # numpy on one device
    shardings.append(len(leaf.sharding.device_set)
                     if hasattr(leaf, "sharding") else 1)
    return _program.lower(*args)


_program, sweep_group.group_chunk = sweep_group.group_chunk, Recording()
results = []
for devices in (4, 1):
  config = small_config(sys.argv[2], epochs=1, steps_per_chunk=0,
                        num_devices=devices)
  plan = sweep_grid.plan_sweep(config, ["kl_weight=0.5,1,2"])
  sweep_dir = os.path.join(sys.argv[3], f"devices{devices}")
  sweep.run_sweep(plan, sweep_dir, "on", figures=False)
  results.append([(saved_state(m.config, os.path.join(sweep_dir, m.name)),
                   without_times(workdir_lib.read_metrics(
                       os.path.join(sweep_dir, m.name))))
                  for m in plan.members])
assert shardings == [4, 1], shardings  # one chunk per epoch
model = registry.build_model(config, (28 * 28,))
for member, (a, ma), (b, mb) in zip(plan.members, *results, strict=True):
  assert int(a.step) == int(b.step) == 16
  assert [r["epoch"] for r in ma] == [r["epoch"] for r in mb] == [1]
  assert_runs_close(model, a, b, ma[-1], mb[-1], member.config)
print("same")
"""


def test_member_axis_over_four_devices_equals_one(idx_data_dir, tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      _COMPARE,
      str(REPO_ROOT),
      idx_data_dir,
      str(tmp_path),
    ],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
      + " --xla_force_host_platform_device_count=4",
    ),
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "same"


def test_diverging_member_stops_alone(idx_data_dir, tmp_path):
  # Learning rate 1e-3 turns the loss NaN at step 21 (chunk 16-24); 1e-4
  # stays finite: one group, one member diverged.
  config = small_config(
    idx_data_dir,
    model="toy_models:diverging_vae_at_clock",
    image_layout="image",
    learning_rate=1e-4,
    steps_per_chunk=8,
  )
  plan = sweep_grid.plan_sweep(config, ["learning_rate=0.001,0.0001"])
  assert len(plan.groups) == 1
  status = sweep.run_sweep(plan, str(tmp_path), "on", figures=False)
  diverged, finished = (os.path.join(tmp_path, m.name) for m in plan.members)
  assert status[plan.members[0].name]["status"] == "diverged"
  assert "non-finite loss at step 21" in status[plan.members[0].name]["message"]
  assert status[plan.members[1].name]["status"] == "done"
  with checkpoints_lib.RunCheckpoints(
    os.path.join(diverged, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.latest_step() == 16  # the last chunk boundary before it
  assert len(workdir_lib.read_metrics(diverged)) == 1
  assert len(workdir_lib.read_metrics(finished)) == 2
  with open(os.path.join(tmp_path, "summary.csv")) as f:
    assert [line.rsplit(",", 1)[1] for line in f.read().splitlines()[1:]] == [
      "diverged",
      "done",
    ]


def test_early_stopped_member_stops_alone(idx_data_dir, tmp_path):
  # At learning rate 1e-30 Adam's updates vanish below float32's resolution
  # of the parameters: the validation ELBO repeats exactly, so patience 1
  # stops that member after epoch 2 while the other goes on.
  config = small_config(
    idx_data_dir,
    epochs=3,
    steps_per_chunk=0,
    validation_size=128,
    early_stopping_patience=1,
  )
  plan = sweep_grid.plan_sweep(config, ["learning_rate=1e-30,0.001"])
  status = sweep.run_sweep(plan, str(tmp_path), "on", figures=False)
  frozen, other = (
    workdir_lib.read_metrics(os.path.join(tmp_path, m.name))
    for m in plan.members
  )
  assert status[plan.members[0].name]["status"] == "early_stopped"
  assert [r["val_elbo"] for r in frozen] == [frozen[0]["val_elbo"]] * 2
  assert len(other) == 3 or status[plan.members[1].name]["status"] == (
    "early_stopped"
  )
  assert len({r["val_elbo"] for r in other}) == len(other)
  with checkpoints_lib.RunCheckpoints(
    os.path.join(tmp_path, plan.members[0].name, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.best_step() == 12  # epoch 1 (384 images, batch 32)
    assert ckpts.latest_step() == 24


def test_summary_writes_swept_values_as_given_and_measurements_rounded(
  tmp_path,
):
  from vae_jax.sweep import summary  # pylint: disable=g-import-not-at-top

  members = [
    {"name": f"learning_rate={v}", "settings": {"learning_rate": v}}
    for v in (0.0015, 3e-05)
  ]
  for member, elbo in zip(members, (-230.8349, -231.5)):
    os.makedirs(tmp_path / member["name"])
    (tmp_path / member["name"] / "metrics.jsonl").write_text(
      f'{{"epoch": 1, "test_elbo": {elbo}, "wall_time_sec": 2.0}}\n'
    )
  description = {
    "axes": [{"name": "learning_rate", "values": [0.0015, 3e-05]}],
    "members": members,
  }
  summary.write_summary(str(tmp_path), description, {})
  rows = (tmp_path / "summary.md").read_text().splitlines()[2:]
  assert rows[0].startswith("| learning_rate=0.0015 | 0.0015 | -230.83 |")
  assert rows[1].startswith("| learning_rate=3e-05 | 3e-05 | -231.50 |")
