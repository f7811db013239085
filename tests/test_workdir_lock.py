"""Trainers started together on a new run directory: exactly one trains.

A new directory is locked only once the data are ready, so every trainer
started at the same moment finds it missing at first, and all but the first
find it made by another when they lock (issue 21: each then trained in it).
One test replays that order in one process (flock locks of two open file
descriptions conflict there as between processes); the other starts 8
launchers at once, twice, on tiny data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import REPO_ROOT, write_idx_directory
from run_helpers import error_lines, flags_of, small_config, train
from vae_jax.run import loop
from vae_jax.store.lock import LOCK_FILE, WorkdirBusy, WorkdirLock

# Trainers started together, as subprocesses.
pytestmark = pytest.mark.slow

_PROCESSES = 8
_ROUNDS = 2
_WAIT_S = 150  # for all launchers of a round to train or be refused


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
  """64 train / 16 test images: each launcher's data load is short."""
  return write_idx_directory(
    tmp_path_factory.mktemp("lock_data"), num_train=64, num_test=16
  )


def _config(data_dir):
  return small_config(
    data_dir,
    epochs=1,
    batch_size=16,
    hidden_dims=(8,),
    eval_batch_size=16,
    steps_per_chunk=0,
  )


def test_a_directory_made_meanwhile_is_locked_all_the_same(
  tiny_data, tmp_path, monkeypatch
):
  """The order of the race, made deterministic: this trainer finds no
  directory, and while it loads the data another trainer creates the
  directory and locks it."""
  workdir = str(tmp_path / "run")
  holders = []

  def prepare_then_lose_the_race(config):
    data = prepare_data(config)
    holders.append(WorkdirLock(workdir, create=True))  # "the other process"
    return data

  prepare_data = loop.prepare_data
  monkeypatch.setattr(loop, "prepare_data", prepare_then_lose_the_race)
  try:
    with pytest.raises(WorkdirBusy, match=f"pid {os.getpid()}"):
      train(_config(tiny_data), workdir)
    assert os.listdir(workdir) == [LOCK_FILE]  # nothing written beside it
  finally:
    for holder in holders:
      holder.release()


# Trains like `experiments.train`, but after its first chunk it marks that
# it trains (TRAINED-<pid>) and waits for RELEASE, holding the lock, so that
# every launcher of the round has trained or been refused before it ends.
_LAUNCHER = textwrap.dedent("""
    import os, sys, time
    from vae_jax.run import loop
    root = sys.argv[1]
    train_and_evaluate = loop.train_and_evaluate
    def hold_after_first_chunk(state):
      open(os.path.join(root, f"trained-{os.getpid()}"), "w").close()
      deadline = time.monotonic() + 300
      while not os.path.exists(os.path.join(root, "release")):
        if time.monotonic() > deadline:
          sys.exit("never released")
        time.sleep(0.05)
    def holding(config, workdir, **kwargs):
      return train_and_evaluate(config, workdir,
                                after_chunk=hold_after_first_chunk, **kwargs)
    loop.train_and_evaluate = holding
    sys.argv = ["train", *sys.argv[2:]]
    from vae_jax.launchers import train
    train.run()
""")


def _start_round(root: str, flags: list[str]) -> list[subprocess.Popen]:
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join(
      [str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    ),
  )
  processes = []
  for i in range(_PROCESSES):
    with open(os.path.join(root, f"err-{i}"), "w") as err:
      processes.append(
        subprocess.Popen(
          [sys.executable, "-c", _LAUNCHER, root, *flags],
          cwd=REPO_ROOT,
          env=env,
          stdout=subprocess.DEVNULL,
          stderr=err,
        )
      )
  return processes


def _trained(root: str) -> list[int]:
  return sorted(
    int(n.split("-")[1]) for n in os.listdir(root) if n.startswith("trained-")
  )


@pytest.mark.parametrize("round_", range(_ROUNDS))
def test_simultaneous_trainers_one_trains_the_others_are_refused(
  tiny_data, tmp_path, round_
):
  del round_  # each round is a fresh race
  root = str(tmp_path)
  workdir = os.path.join(root, "run")
  flags = [*flags_of(_config(tiny_data)), f"--workdir={workdir}", "--quiet"]
  processes = _start_round(root, flags)
  try:
    deadline = time.monotonic() + _WAIT_S
    while (
      sum(p.poll() is not None for p in processes) + len(_trained(root))
      < _PROCESSES
      and time.monotonic() < deadline
    ):
      time.sleep(0.1)
    trained = _trained(root)
    refused = [p for p in processes if p.poll() is not None]
    errors = {}
    for i, p in enumerate(processes):
      with open(os.path.join(root, f"err-{i}")) as f:
        errors[p.pid] = f.read()
    report = "\n".join(
      f"pid {pid}: {text[-600:]}" for pid, text in errors.items()
    )
    assert len(trained) == 1, report
    [winner] = trained
    assert len(refused) == _PROCESSES - 1, report
    for p in refused:
      assert p.returncode == 2, report
      assert "Traceback" not in errors[p.pid], report
      [error] = error_lines(errors[p.pid])
      assert "is in use" in error and f"pid {winner}" in error, error
    open(os.path.join(root, "release"), "w").close()
    [holder] = [p for p in processes if p.pid == winner]
    assert holder.wait(timeout=_WAIT_S) == 0, errors[winner][-2000:]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()
  assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 1
