"""Sweeps: a vmapped group equals its members trained alone; mixed groups
write complete run directories; an interrupted sweep resumes bit for bit.

The grid: kl_weight 0.5, 1 × latent_dim 2, 3 — two groups of two members
(the latent size shapes the program), each a 784-16-z MLP on the 512 IDX
images of conftest less a validation split of 128, batch 64: 6 steps per
epoch in chunks of 3 (one program per group), 2 epochs, a best checkpoint
per member.
"""

from __future__ import annotations

import os
import shutil

import jax
import pytest

from run_helpers import (
  assert_runs_close,
  assert_same_state,
  small_config,
  snapshot,
  without_times,
)
from tolerances import sum_atol
from vae_jax.nets import registry
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import evaluate as evaluate_lib
from vae_jax.run import load
from vae_jax.run import programs
from vae_jax import sweep
from vae_jax.sweep import grid as sweep_grid
from vae_jax.store import workdir as workdir_lib

# Sweeps: vmapped groups trained, interrupted and resumed.
pytestmark = pytest.mark.slow

_SPECS = ["kl_weight=0.5,1", "latent_dim=2,3"]
_RUN_FILES = {
  "config.json",
  "metrics.jsonl",
  "checkpoints",
  "figures",
  "tensorboard",
}


def _plan(data_dir, specs=_SPECS, seeds=1, **overrides):
  config = small_config(
    data_dir, batch_size=64, steps_per_chunk=3, validation_size=128, **overrides
  )
  return sweep_grid.plan_sweep(config, specs, seeds)


def _state(member, sweep_dir):
  config = member.config
  model = registry.build_model(config, (28 * 28,))
  fresh = programs.init_state(
    model, programs.step_config(config), jax.random.key(0)
  )
  with checkpoints_lib.RunCheckpoints(
    os.path.join(sweep_dir, member.name, "checkpoints"), read_only=True
  ) as ckpts:
    state, _ = ckpts.restore(ckpts.latest_step(), fresh)
  return model, state


def _history(sweep_dir, member):
  return workdir_lib.read_metrics(os.path.join(sweep_dir, member.name))


@pytest.fixture(scope="module")
def vmapped(idx_data_dir, tmp_path_factory):
  """(plan, sweep directory) of the grid trained with --vectorize=on."""
  plan = _plan(idx_data_dir)
  sweep_dir = str(tmp_path_factory.mktemp("vmapped"))
  sweep.run_sweep(plan, sweep_dir, "on")
  return plan, sweep_dir


def test_grid_groups_by_program(idx_data_dir):
  plan = _plan(idx_data_dir, seeds=2)
  assert len(plan.members) == 8
  assert plan.members[0].name == "kl_weight=0.5,latent_dim=2,seed=0"
  assert [[plan.members[i].name for i in g] for g in plan.groups] == [
    [
      f"kl_weight={k},latent_dim={d},seed={s}"
      for k in ("0.5", "1.0")
      for s in (0, 1)
    ]
    for d in (2, 3)
  ]


def test_vmapped_group_equals_members_run_one_by_one(
  vmapped, idx_data_dir, tmp_path
):
  plan, vmapped_dir = vmapped
  # The first group (latent_dim=2) again, one member after another.
  alone = _plan(idx_data_dir, specs=["kl_weight=0.5,1"], latent_dim=2)
  alone_dir = str(tmp_path / "alone")
  sweep.run_sweep(alone, alone_dir, "off", figures=False)
  pairs = [
    (
      m,
      [
        a
        for a in alone.members
        if a.name == m.name.replace(",latent_dim=2", "")
      ],
    )
    for m in plan.members
    if m.config.latent_dim == 2
  ]
  assert [len(a) for _, a in pairs] == [1, 1]
  for member, [other] in pairs:
    model, a = _state(member, vmapped_dir)
    _, b = _state(other, alone_dir)
    assert int(a.step) == int(b.step) == 12
    ra, rb = _history(vmapped_dir, member)[-1], _history(alone_dir, other)[-1]
    assert_runs_close(model, a, b, ra, rb, member.config)
    assert ra["epoch"] == rb["epoch"] == 2


def test_mixed_groups_write_complete_readable_runs(vmapped):
  plan, sweep_dir = vmapped
  with open(os.path.join(sweep_dir, "summary.csv")) as f:
    rows = f.read().splitlines()
  assert len(rows) == 1 + len(plan.members)
  assert all(row.endswith(",done") for row in rows[1:])
  for name in ("sweep.json", "status.json", "summary.md", "comparison.png"):
    assert os.path.getsize(os.path.join(sweep_dir, name)) > 0
  for member in plan.members:
    workdir = os.path.join(sweep_dir, member.name)
    assert _RUN_FILES <= set(os.listdir(workdir))
    assert os.listdir(os.path.join(workdir, "figures"))
    assert os.listdir(os.path.join(workdir, "checkpoints", "best"))
    loaded = load.load_run(workdir)
    assert loaded.model.latent_dim == member.config.latent_dim
    report = evaluate_lib.evaluate_run(workdir, "latest", figures=False)
    # The run's own evaluation of its last state, same keys and images.
    assert report["test_elbo"] == pytest.approx(
      _history(sweep_dir, member)[-1]["test_elbo"],
      rel=0,
      abs=sum_atol(784, abs(report["test_elbo"])),
    )
  # The summary takes IS log p(x) from a member's eval.json when the run
  # did not measure it; a rerun of the finished sweep rewrites the summary.
  first = os.path.join(sweep_dir, plan.members[0].name)
  report = evaluate_lib.evaluate_run(
    first, "latest", figures=False, num_importance_samples=4, max_examples=16
  )
  sweep.run_sweep(plan, sweep_dir, "on")
  with open(os.path.join(sweep_dir, "summary.md")) as f:
    row = f.read().splitlines()[2]
  assert f"| {report['test_log_px']:.2f} |" in row


def test_interrupted_sweep_resumes_bit_for_bit(vmapped, idx_data_dir, tmp_path):
  plan, reference = vmapped
  sweep_dir = str(tmp_path / "sweep")

  def stop(dispatched):
    if dispatched == 3:  # the first group, mid-way through epoch 2
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    sweep.run_sweep(plan, sweep_dir, "on", after_chunk=stop)
  # A kill between two members' saves: the first member lags one chunk.
  lagging = os.path.join(
    sweep_dir, plan.members[0].name, "checkpoints", "latest"
  )
  shutil.rmtree(os.path.join(lagging, max(os.listdir(lagging), key=int)))
  assert not os.path.exists(os.path.join(sweep_dir, plan.members[1].name))
  sweep.run_sweep(plan, sweep_dir, "on")
  for member in plan.members:
    assert_same_state(
      _state(member, sweep_dir)[1], _state(member, reference)[1]
    )
    assert without_times(_history(sweep_dir, member)) == without_times(
      _history(reference, member)
    )
  # A finished sweep trains nothing again.
  before = snapshot(os.path.join(sweep_dir, plan.members[0].name))
  status = sweep.run_sweep(plan, sweep_dir, "on")
  assert {s["status"] for s in status.values()} == {"done"}
  assert snapshot(os.path.join(sweep_dir, plan.members[0].name)) == before


def test_auto_vectorizes_on_accelerators_only():
  assert [sweep.vectorize_choice("auto", b) for b in ("cpu", "gpu", "tpu")] == [
    False,
    True,
    True,
  ]
  assert sweep.vectorize_choice("on", "cpu")
  assert not sweep.vectorize_choice("off", "gpu")
