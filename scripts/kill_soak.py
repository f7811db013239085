r"""kill -9 soak: many kills at random moments, then resume; reports survival.

    python scripts/kill_soak.py --kills=60 --kills_per_run=4

Trains a tiny run (synthetic 28×28 images, 784-16-2 MLP, 16 steps per epoch
in chunks of 7, 7 and 2, 3 epochs) once without interruption, then again and
again in fresh run directories, each launch killed with SIGKILL at a random
moment: half of the kills a random 0–8 s after the launch (start-up, data,
compilation, config.json), half 0–300 ms after a new checkpoint appeared
(the next chunk, a checkpoint write, an epoch's evaluation and metrics line).
After `--kills_per_run` kills a last launch finishes the run. A run survives
when it exits 0, every leaf of its latest checkpoint equals the
uninterrupted run's, and metrics.jsonl has each epoch once with the same
numbers. Prints one line per run and a summary:

    kills 60, runs 15, survived 15, lost 0

Outside the test suite (minutes); tests/test_kill_resume.py is its short
version in the suite.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

_KILLS = flags.DEFINE_integer("kills", 60, "SIGKILLs in all.")
_PER_RUN = flags.DEFINE_integer("kills_per_run", 4, "SIGKILLs per run.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the kill moments.")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TIME_KEYS = ("examples_per_sec", "wall_time_sec")


def _write_data(directory: str) -> None:
  from vae_jax.data.idx import write_idx  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  os.makedirs(directory, exist_ok=True)
  for prefix, num in (("train", 512), ("t10k", 256)):
    images = (rng.uniform(size=(num, 28, 28)) < 0.3).astype(np.uint8) * 255
    write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), images)


def _args(data_dir: str, workdir: str) -> list[str]:
  return [
    sys.executable,
    "-m",
    "experiments.train",
    "--quiet",
    "--config.dataset=idx",
    f"--config.data_dir={data_dir}",
    "--config.epochs=3",
    "--config.batch_size=32",
    "--config.hidden_dims=16",
    "--config.latent_dim=2",
    "--config.steps_per_chunk=7",
    "--config.eval_batch_size=128",
    f"--workdir={workdir}",
  ]


def _steps(workdir: str) -> set[str]:
  latest = os.path.join(workdir, "checkpoints", "latest")
  return (
    {n for n in os.listdir(latest) if n.isdigit()}
    if os.path.isdir(latest)
    else set()
  )


def _launch(args, env) -> subprocess.Popen:
  return subprocess.Popen(
    args,
    cwd=_REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )


def _kill_once(args, env, workdir, rng) -> bool:
  """One launch killed at a random moment; False if it finished first."""
  process = _launch(args, env)
  if rng.random() < 0.5:
    deadline = time.monotonic() + rng.uniform(0.0, 8.0)
    while process.poll() is None and time.monotonic() < deadline:
      time.sleep(0.005)
  else:
    seen = _steps(workdir)
    while process.poll() is None and _steps(workdir) <= seen:
      time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.3))
  if process.poll() is not None:
    process.communicate()
    return False
  process.send_signal(signal.SIGKILL)
  process.communicate()
  return True


def _final_state(workdir: str) -> list[np.ndarray]:
  """Every leaf of the latest checkpoint (params, optimizer state, step,
  key data), restored and verified as a resumed run restores it."""
  # pylint: disable=g-import-not-at-top
  import jax
  from vae_jax.nets import registry
  from vae_jax.run import programs
  from vae_jax.store import checkpoints
  from vae_jax.store import workdir as workdir_lib

  config = workdir_lib.load_config(workdir)
  template = programs.init_state(
    registry.build_model(config, (784,)),
    programs.step_config(config),
    jax.random.key(0),
  )
  with checkpoints.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    state, _ = ckpts.restore(ckpts.latest_step(), template)
  return [
    np.asarray(x)
    for x in jax.tree_util.tree_leaves(
      (
        state.params,
        state.opt_state,
        state.step,
        jax.random.key_data(state.rng),
      )
    )
  ]


def _records(workdir: str) -> list[dict]:
  # pylint: disable-next=g-import-not-at-top
  from vae_jax.store import workdir as workdir_lib

  return [
    {k: v for k, v in r.items() if k not in _TIME_KEYS}
    for r in workdir_lib.read_metrics(workdir)
  ]


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  root = tempfile.mkdtemp(prefix="vae_jax_kill_soak_")
  data_dir = os.path.join(root, "data")
  _write_data(data_dir)
  reference = os.path.join(root, "reference")
  subprocess.run(_args(data_dir, reference), cwd=_REPO, env=env, check=True)
  expected_state, expected_records = (
    _final_state(reference),
    _records(reference),
  )
  kills = runs = survived = 0
  while kills < _KILLS.value:
    runs += 1
    workdir = os.path.join(root, f"run{runs}")
    args = _args(data_dir, workdir)
    run_kills = 0
    while run_kills < _PER_RUN.value and kills < _KILLS.value:
      if not _kill_once(args, env, workdir, rng):
        break
      run_kills += 1
      kills += 1
    final = subprocess.run(
      args, cwd=_REPO, env=env, capture_output=True, text=True
    )
    ok = final.returncode == 0
    if ok:
      state = _final_state(workdir)
      ok = (
        len(state) == len(expected_state)
        and all(np.array_equal(a, b) for a, b in zip(state, expected_state))
        and _records(workdir) == expected_records
      )
    survived += ok
    print(
      f"run {runs}: {run_kills} kills, "
      f"{'survived' if ok else 'LOST: ' + final.stderr[-500:]}",
      flush=True,
    )
  print(
    f"kills {kills}, runs {runs}, survived {survived}, "
    f"lost {runs - survived} (in {root})",
    flush=True,
  )
  return 0 if survived == runs else 1


if __name__ == "__main__":
  app.run(main)
