"""Bad input to `python -m experiments.sweep`: one `error:` line, exit 2,
nothing written, before any training.

A swept setting that does not exist, a value its own validation refuses, an
empty grid, too many members without --allow_large_sweep (or more than any
sweep may have), seeds past int32, a sweep directory of another grid or
under /proc, a missing --sweep_dir. The launches run two at a time.
In process: the grid's limit and names, the sweep directory's checks, a
vmapped group too large for memory, a damaged status.json.
"""

from __future__ import annotations

import concurrent.futures
import json
import os

import pytest

from run_helpers import error_lines, launch, small_config, snapshot
from vae_jax.configs import default
from vae_jax.configs import smoke
from vae_jax.errors import ConfigError
from vae_jax.nets import registry
from vae_jax.run import memory
from vae_jax import sweep
from vae_jax.sweep import grid as sweep_grid

# The sweep launcher, as subprocesses.
pytestmark = pytest.mark.slow

_BASE = ("--config=smoke", "--config.dataset=idx", "--quiet")

_CASES = {
  "unknown setting": (("--sweep=no_such=1,2",), ("no_such", "unknown")),
  "invalid value": (
    ("--sweep=kl_weight=0.5,-1",),
    ("kl_weight=-1.0", "finite number >= 0"),
  ),
  "not a number": (("--sweep=latent_dim=2,abc",), ("latent_dim", "abc")),
  "empty grid": (("--sweep=kl_weight=",), ("no values",)),
  "no seeds": (("--seeds=0",), ("--seeds=0", "empty")),
  "too many members": (
    ("--sweep=latent_dim=1,2,3,4,5,6,7,8,9", "--seeds=8"),
    ("72 members", "--allow_large_sweep"),
  ),
  "swept twice": (
    ("--sweep=kl_weight=1", "--sweep=kl_weight=2"),
    ("more than once",),
  ),
  "seed swept": (("--sweep=seed=1,2",), ("--seeds",)),
  "other grid": (
    ("--sweep=kl_weight=0.5,2",),
    ("another grid", "kl_weight=2.0"),
  ),
  # Issue 21: bounded before any member is built (it hung), and a sweep
  # directory's own fault named as --sweep_dir, not a member's --workdir.
  "seeds past any sweep": (
    ("--sweep=kl_weight=0.5,1", "--seeds=2147483648", "--allow_large_sweep"),
    ("4294967296 members", "4096", "--allow_large_sweep"),
  ),
  "seeds past int32": (
    ("--seeds=10", "--config.seed=2147483640"),
    ("--seeds=10", "2147483647", "--seeds=8"),
  ),
  "sweep_dir in /proc": (
    ("--sweep=kl_weight=0.5,1",),
    ("--sweep_dir=/proc/vae_jax_sweep", "/proc"),
  ),
}


def _run(name, flags, sweep_dir, data_dir):
  args = [*_BASE, f"--config.data_dir={data_dir}", *flags]
  if sweep_dir is not None:
    args.append(f"--sweep_dir={sweep_dir}")
  return name, launch("experiments.sweep", args)


def _write_other_grid(sweep_dir, data_dir):
  """A sweep directory of the grid kl_weight=0.5,1 (its sweep.json only)."""
  config = smoke.get_config()
  config.update(dict(dataset="idx", data_dir=data_dir))
  plan = sweep_grid.plan_sweep(config, ["kl_weight=0.5,1"])
  os.makedirs(sweep_dir)
  with open(os.path.join(sweep_dir, sweep_grid.SWEEP_JSON), "w") as f:
    json.dump(plan.description, f)


def test_bad_sweeps_fail_in_one_line_writing_nothing(idx_data_dir, tmp_path):
  dirs = {name: str(tmp_path / name.replace(" ", "_")) for name in _CASES}
  dirs["sweep_dir in /proc"] = "/proc/vae_jax_sweep"
  _write_other_grid(dirs["other grid"], idx_data_dir)
  before = snapshot(str(tmp_path))
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    results = dict(
      pool.map(
        lambda item: _run(item[0], item[1][0], dirs[item[0]], idx_data_dir),
        _CASES.items(),
      )
    )
    missing_dir = pool.submit(
      _run, "no dir", ("--sweep=kl_weight=1",), None, idx_data_dir
    ).result()[1]
  for name, (_, keywords) in _CASES.items():
    result = results[name]
    lines = error_lines(result.stderr)
    assert result.returncode == 2, (name, result.stderr[-2000:])
    assert len(lines) == 1, (name, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, name
    for word in keywords:
      assert word in lines[0], (name, lines[0])
  assert missing_dir.returncode == 2
  assert error_lines(missing_dir.stderr) == [
    "error: --sweep_dir is required: the directory of the sweep's runs"
  ]
  assert snapshot(str(tmp_path)) == before


def test_grid_limit_and_names():
  config = default.get_config()
  axis = sweep_grid.parse_axis("hidden_dims=300/300,500", config)
  assert axis.values == ((300, 300), (500,))
  members = sweep_grid.make_members(config, [axis], 1)
  assert [m.name for m in members] == [
    "hidden_dims=300-300,seed=0",
    "hidden_dims=500,seed=0",
  ]
  assert len(sweep_grid.group_members(members)) == 2
  with pytest.raises(ConfigError, match="65 members"):
    sweep_grid.make_members(config, [], 65)
  assert len(sweep_grid.make_members(config, [], 65, allow_large=True)) == 65
  limit = sweep_grid.LARGEST_SWEEP
  with pytest.raises(ConfigError, match=f"{limit + 1} members"):
    sweep_grid.make_members(config, [], limit + 1, allow_large=True)
  with pytest.raises(ConfigError, match=f"{limit + 1} values"):
    sweep_grid.parse_axis(
      "kl_weight=" + ",".join(str(i) for i in range(limit + 1)), config
    )


def test_sweep_dir_checks(tmp_path):
  description = {"members": []}
  sweep_grid.check_sweep_dir(str(tmp_path / "new"), description)
  (tmp_path / "killed").mkdir()
  (tmp_path / "killed" / ".lock").write_text("")  # killed before sweep.json
  sweep_grid.check_sweep_dir(str(tmp_path / "killed"), description)
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "metrics.jsonl").write_text("")
  with pytest.raises(ConfigError, match="not a sweep directory"):
    sweep_grid.check_sweep_dir(str(tmp_path / "run"), description)
  with pytest.raises(ConfigError, match="is a file"):
    sweep_grid.check_sweep_dir(
      str(tmp_path / "run" / "metrics.jsonl"), description
    )


def test_group_larger_than_memory_is_refused_when_vmapped(
  idx_data_dir, tmp_path, monkeypatch
):
  config = small_config(idx_data_dir)
  one = memory.training_bytes(
    registry.build_model(config, (784,)), config.batch_size, config.num_samples
  )
  # Room for one member's training state, not for two at once.
  monkeypatch.setattr(memory, "_physical_bytes", lambda: int(1.5 * one))
  plan = sweep_grid.plan_sweep(config, ["kl_weight=0.5,1"])
  with pytest.raises(ConfigError, match="2 vmapped members.*--vectorize=off"):
    sweep.run_sweep(plan, str(tmp_path / "sweep"), "on")
  assert not os.path.exists(tmp_path / "sweep")


def test_damaged_status_file_reads_as_no_member_finished(tmp_path):
  for text in ("{torn", "[]", ""):
    (tmp_path / sweep.STATUS_JSON).write_text(text)
    assert sweep.read_status(str(tmp_path)) == {}
  (tmp_path / sweep.STATUS_JSON).write_text('{"a": {"status": "done"}}')
  assert sweep.read_status(str(tmp_path)) == {"a": {"status": "done"}}


def test_sweep_dir_may_resume_with_other_devices_not_other_settings(tmp_path):
  config = default.get_config()

  def description(**changes):
    changed = config.copy_and_resolve_references()
    changed.update(changes)
    return sweep_grid.plan_sweep(changed, ["kl_weight=0.5,1"]).description

  with open(tmp_path / sweep_grid.SWEEP_JSON, "w") as f:
    json.dump(description(), f)
  sweep_grid.check_sweep_dir(
    str(tmp_path), description(num_devices=0, skip_nonfinite_updates=True)
  )
  for changes in ({"epochs": 3}, {"latent_dim": 3}):
    with pytest.raises(ConfigError, match="members with other settings"):
      sweep_grid.check_sweep_dir(str(tmp_path), description(**changes))
