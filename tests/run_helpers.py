"""What the fault tests share: a tiny run, its flags, states and snapshots.

The run: 512 training images, batch 32 (16 steps per epoch in chunks of 7, 7
and 2; the last two chunk boundaries kept), a 784-16-2 MLP VAE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from conftest import REPO_ROOT
from tolerances import sum_atol
from vae_jax.math import objectives
from vae_jax.configs import default
from vae_jax.nets import registry
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import loop
from vae_jax.run import programs

TIME_KEYS = ("examples_per_sec", "wall_time_sec")
_SETTINGS = dict(
  dataset="idx",
  batch_size=32,
  latent_dim=2,
  hidden_dims=(16,),
  steps_per_chunk=7,
  eval_batch_size=128,
  keep_checkpoints=2,
)


def small_config(data_dir, **overrides):
  config = default.get_config()
  config.update(dict(_SETTINGS, data_dir=data_dir, epochs=2) | overrides)
  return config


def flags_of(config) -> list[str]:
  return [
    f"--config.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
    for k, v in config.items()
    if v != default.get_config()[k]
  ]


def train(config, workdir, **kwargs):
  """train_and_evaluate's records, as metrics.jsonl's JSON objects (the
  form the tests compare with the file)."""
  return as_json(
    loop.train_and_evaluate(
      config, str(workdir), progress_bar=False, figures=False, **kwargs
    )
  )


def as_json(history) -> list[dict]:
  """A run's `EpochRecord`s as metrics.jsonl holds them."""
  return [r.to_json() for r in history]


def template(config):
  model = registry.build_model(config, (28 * 28,))
  return programs.init_state(
    model, programs.step_config(config), jax.random.key(0)
  )


def saved_state(config, workdir, step=None):
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    state, _ = ckpts.restore(step or ckpts.latest_step(), template(config))
  return state


def _leaves(state):
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


def assert_same_state(a, b):
  for x, y in zip(_leaves(a), _leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)  # bitwise


def assert_runs_close(model, a, b, record_a, record_b, config, pixels=28 * 28):
  """Two trainings of one run that differ only in float rounding (a
  vmapped group and a run alone, or the member axis over several devices:
  XLA compiles the step differently for each number of members per device,
  and on CPU it rounds differently).

  Adam moves a parameter by lr·m̂/(√v̂ + ε) per step; a relative error ρ of
  the gradient changes that by at most 2ρ·lr, and a gradient entry sums
  batch_size·pixels terms (sum_atol gives ρ). The last epoch's test ELBO
  then moves by at most Σ|∂ELBO/∂p|·|Δp| (first order, on the same draws),
  plus its own rounding: a mean of `pixels`-term sums.
  """
  steps = int(a.step)
  rho = sum_atol(config.batch_size * pixels, 1.0)
  atol = steps * config.learning_rate * 2 * rho
  for x, y in zip(
    jax.tree_util.tree_leaves(a.params),
    jax.tree_util.tree_leaves(b.params),
    strict=True,
  ):
    np.testing.assert_allclose(x, y, rtol=0, atol=atol)
  x = jnp.asarray(
    np.random.default_rng(0).random((256, pixels)) < 0.5, jnp.float32
  )
  grads = jax.grad(
    lambda p: jnp.mean(
      objectives.batch_elbo(model, p, x, jax.random.key(1)).elbo
    )
  )(a.params)
  sensitivity = sum(
    float(jnp.sum(jnp.abs(g) * jnp.abs(u - v)))
    for g, u, v in zip(
      jax.tree_util.tree_leaves(grads),
      jax.tree_util.tree_leaves(a.params),
      jax.tree_util.tree_leaves(b.params),
    )
  )
  elbo_atol = 2 * sensitivity + sum_atol(pixels, abs(record_a["test_elbo"]))
  assert abs(record_a["test_elbo"] - record_b["test_elbo"]) <= elbo_atol, (
    record_a["test_elbo"],
    record_b["test_elbo"],
    elbo_atol,
  )


def without_times(records):
  return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def snapshot(directory):
  """(path, size, mtime) of everything under `directory`."""
  out = []
  for root, dirs, files in os.walk(directory):
    for name in dirs + files:
      stat = os.lstat(os.path.join(root, name))
      out.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
  return sorted(out)


# Sets a file-size limit, then becomes the launcher (exec keeps both the
# limit and the ignored SIGXFSZ, so writes past it fail with EFBIG).
_LIMITED = (
  "import os, resource, signal, sys\n"
  "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
  "limit = int(sys.argv[1])\n"
  "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
  "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


def launch(module, args, timeout=240, file_size_limit=None):
  """`python -m module *args` from the repository, tests/ on the path;
  with `file_size_limit`, no file it writes may grow past that many bytes."""
  path = os.pathsep.join(
    [str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
  )
  command = [sys.executable, "-m", module, *args]
  if file_size_limit is not None:
    command = [
      sys.executable,
      "-c",
      _LIMITED,
      str(file_size_limit),
      *command[1:],
    ]
  return subprocess.run(
    command,
    cwd=REPO_ROOT,
    env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=path),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def make_reference(data_dir, tmp_path_factory, with_longer: bool = True):
  """(config, workdir, history, workdir of the same run with 3 epochs or
  None), all uninterrupted."""
  config = small_config(data_dir)
  workdir = str(tmp_path_factory.mktemp("reference"))
  history = train(config, workdir)
  longer = None
  if with_longer:
    longer = str(tmp_path_factory.mktemp("reference3"))
    train(small_config(data_dir, epochs=3), longer)
  return config, workdir, history, longer


def copy_run(reference, tmp_path) -> str:
  target = os.path.join(tmp_path, "run")
  shutil.copytree(reference[1], target)
  return target
