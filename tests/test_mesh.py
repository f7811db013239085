"""Several devices and processes train like one device, up to summation order.

Runs (subprocesses: a process's device count is fixed when JAX starts):
`mesh_runs.py` on 4 CPU devices (`--xla_force_host_platform_device_count`)
trains one step per epoch on 1 and on 4 devices, and extends each run's
checkpoint on 1 and on 4 devices; the launcher trains the same step in 2
processes × 2 devices over gloo on 127.0.0.1.

Tolerance of one step. Both meshes compute each example's ELBO and
gradient alone and then sum over the batch: on 4 devices XLA sums 8 per
device and then the 4 partial sums, on 1 device the 32 in its own order.
So the batch means differ by at most `sum_atol(B, mean_b |t_b|, K)`: the
reordered B-term sum, plus K counted roundings on each example's path in
case XLA blocks an example's dot products differently for another batch
shape (K = every dot product's length on the path — the layers' fan-ins,
the likelihood's sum over pixels and the KL's over latents — plus the
elementwise operations; twice that for a gradient, whose backward pass
retraces the path). |t_b| — the example's ELBO term or each element of its
gradient, computed here with `jax.jacrev` — stands in for the absolute-valued
evaluation of tests/tolerances.py. SGD's update is linear in the gradient,
so the parameters after the step differ by at most lr times the gradient's
bound, plus the update's own two roundings. Later steps start from
different states, so each comparison is of one step from one state.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, write_idx_directory
from mesh_runs import NUM_TRAIN, mesh_config
from run_helpers import error_lines, flags_of, saved_state
from tolerances import assert_close, rounding_atol, sum_atol
from vae_jax import step as step_lib
from vae_jax.data import pipeline
from vae_jax.data.prepared import prepare_data
from vae_jax.nets import registry
from vae_jax.run import programs
from vae_jax.store import workdir as workdir_lib
from vae_jax.store.lock import WorkdirLock

# Meshes of host devices and processes, as subprocesses.
pytestmark = pytest.mark.slow

_FOUR_DEVICES = "--xla_force_host_platform_device_count=4"
_TIMEOUT_S = (
  180  # per launch; together they took up to 74 s on a busy 2-core CPU
)
_ELEMENTWISE_OPS = 16  # activations, softplus, exp, reparameterisation, ...
_METRICS = ("elbo", "log_likelihood", "kl", "objective")


def _environment(devices: int) -> dict:
  path = os.pathsep.join(
    [str(REPO_ROOT / "tests"), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
  )
  return dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    PYTHONPATH=path,
    XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
    + f" --xla_force_host_platform_device_count={devices}",
  )


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  return write_idx_directory(
    tmp_path_factory.mktemp("mesh_data"),
    num_train=NUM_TRAIN,
    num_test=64,
    seed=3,
  )


def _start(command, logs: str, name: str, **kwargs) -> subprocess.Popen:
  """Popen with stdout and stderr in files LOGS/NAME.out and .err (pipes
  could fill while another process is waited for, and stall them both)."""
  files = [open(os.path.join(logs, f"{name}.{k}"), "w") for k in ("out", "err")]
  with files[0], files[1]:
    return subprocess.Popen(
      command, stdout=files[0], stderr=files[1], text=True, **kwargs
    )


def _finish(
  process: subprocess.Popen, logs: str, name: str
) -> tuple[int, str, str]:
  try:
    process.wait(timeout=_TIMEOUT_S)
  finally:
    process.kill()
  out, err = (
    open(os.path.join(logs, f"{name}.{k}")).read() for k in ("out", "err")
  )
  return process.returncode, out, err


@pytest.fixture(scope="module")
def launches(data_dir, tmp_path_factory):
  """(mesh_runs' directory, its stderr; the two-process run's directory,
  each process's (status, stdout, stderr)), all launched at once.

  The two processes train the first step with the launcher, 2 devices each.
  """
  out = str(tmp_path_factory.mktemp("mesh_runs"))
  logs = str(tmp_path_factory.mktemp("mesh_logs"))
  workdir = str(tmp_path_factory.mktemp("two_processes") / "run")
  flags = [
    *flags_of(mesh_config(data_dir, num_devices=2)),
    f"--workdir={workdir}",
    f"--coordinator_address=127.0.0.1:{_free_port()}",
    "--num_processes=2",
    "--distributed_timeout_s=60",
  ]
  names = ["process0", "process1", "mesh_runs"]
  processes = [
    _start(
      [sys.executable, "-m", "experiments.train", *flags, f"--process_id={i}"],
      logs,
      names[i],
      cwd=REPO_ROOT,
      env=_environment(2),
    )
    for i in range(2)
  ]
  processes.append(
    _start(
      [
        sys.executable,
        str(REPO_ROOT / "tests" / "mesh_runs.py"),
        data_dir,
        out,
      ],
      logs,
      names[2],
      env=_environment(4),
    )
  )
  results = [_finish(p, logs, n) for p, n in zip(processes, names)]
  for status, _, err in results:
    assert status == 0, err[-3000:]
  return out, results[2][2], workdir, results[:2]


@pytest.fixture(scope="module")
def runs(launches) -> str:
  out, err, _, _ = launches
  assert "mesh: 4 devices, axis data" in err
  assert "mesh: 1 device" in err
  return out


@functools.partial(jax.jit, static_argnums=(0, 1))
def _per_example(model, step_cfg, params, batch, rng, beta):
  """The step's ELBO parts `[B]` and per-example gradients of its loss,
  −(log p(x|z) − β KL), `[B, ...]` per parameter."""

  def parts(p):
    return step_lib.training_objective(model, step_cfg, p, batch, rng, beta)[1]

  grads = jax.jacrev(lambda p: beta * parts(p).kl - parts(p).log_likelihood)
  return parts(params), grads(params)


def _one_step_atol(config, state):
  """(atol of each train metric, atol tree of the parameters) of the step
  from `state` (see the module docstring)."""
  data = prepare_data(config)
  model = registry.build_model(config, data.train.shape[1:])
  step = int(state.step)
  steps_per_epoch = data.num_train // config.batch_size
  shuffle_key, binarize_key = pipeline.data_keys(state.rng)
  order = pipeline.epoch_permutation(
    shuffle_key, step // steps_per_epoch, data.num_train
  )
  raw = data.train[
    pipeline.batch_indices(order, step % steps_per_epoch, config.batch_size)
  ]
  batch = pipeline.finish_batch(
    raw, binarize_key, step, data.dynamic_binarization, data.pixel_max
  )
  beta = config.kl_weight
  terms, per_example_grads = _per_example(
    model,
    programs.step_config(config),
    state.params,
    batch,
    jax.random.fold_in(state.rng, step),
    beta,
  )
  fan_ins = (
    data.data_dim,
    *config.hidden_dims,
    config.latent_dim,
    *config.hidden_dims,
  )
  path = sum(fan_ins) + data.data_dim + config.latent_dim + _ELEMENTWISE_OPS
  batch_size = config.batch_size
  magnitude = {n: np.mean(np.abs(getattr(terms, n))) for n in _METRICS[:3]}
  magnitude["objective"] = np.mean(
    np.abs(terms.log_likelihood) + beta * np.abs(terms.kl)
  )
  metrics = {
    n: sum_atol(batch_size, m, ops_per_term=path + 1)
    for n, m in magnitude.items()
  }
  lr = config.learning_rate

  def param_atol(p, g):
    g = np.asarray(g, np.float64)
    mean_abs = np.mean(np.abs(g), axis=0)
    return lr * sum_atol(
      batch_size, mean_abs, ops_per_term=2 * path + 1
    ) + rounding_atol(
      2, np.abs(np.asarray(p)) + lr * np.abs(np.mean(g, axis=0))
    )

  return metrics, jax.tree_util.tree_map(
    param_atol, state.params, per_example_grads
  )


def _assert_same_step(config, start, a, b, epoch):
  """Runs a and b took the step of `epoch` from `start` alike."""
  metric_atol, param_atol = _one_step_atol(config, start)
  ra, rb = (workdir_lib.read_metrics(w)[epoch - 1] for w in (a, b))
  for name, atol in metric_atol.items():
    assert_close(
      ra[f"train_{name}"],
      rb[f"train_{name}"],
      atol,
      err_msg=f"train_{name} of {a} and {b}:",
    )
  assert (ra["learning_rate"], ra["kl_weight"], ra["step"]) == (
    rb["learning_rate"],
    rb["kl_weight"],
    rb["step"],
  )
  sa, sb = (saved_state(config, w) for w in (a, b))
  for x, y, atol in zip(
    *(jax.tree_util.tree_leaves(t) for t in (sa.params, sb.params, param_atol)),
    strict=True,
  ):
    assert_close(x, y, atol, err_msg=f"parameters of {a} and {b}:")
  assert int(sa.step) == int(sb.step) == epoch


def _fresh_state(config):
  model = registry.build_model(config, (28 * 28,))
  return programs.init_state(
    model, programs.step_config(config), programs.run_keys(config)[0]
  )


def test_four_devices_train_like_one(runs, data_dir):
  config = mesh_config(data_dir)
  _assert_same_step(
    config,
    _fresh_state(config),
    os.path.join(runs, "one_device"),
    os.path.join(runs, "four_devices"),
    epoch=1,
  )


@pytest.mark.parametrize("first", ["four", "one"])
def test_checkpoint_resumes_on_another_mesh(runs, data_dir, first):
  """A checkpoint of 4 devices continues on 1, and one of 1 on 4, like on
  its own mesh; the first epoch's record is kept as it was."""
  config = mesh_config(data_dir)
  source = os.path.join(
    runs, {"four": "four_devices", "one": "one_device"}[first]
  )
  a, b = (os.path.join(runs, f"{first}_then_{n}") for n in ("one", "four"))
  _assert_same_step(config, saved_state(config, source), a, b, epoch=2)
  first_epoch = workdir_lib.read_metrics(source)
  for run in (a, b):
    assert workdir_lib.read_metrics(run)[:1] == first_epoch


def test_two_processes_train_like_one_device(launches, runs, data_dir):
  _, _, workdir, outputs = launches
  config = mesh_config(data_dir)
  for reference in ("one_device", "four_devices"):
    _assert_same_step(
      config,
      _fresh_state(config),
      os.path.join(runs, reference),
      workdir,
      epoch=1,
    )
  (_, out0, err0), (_, out1, err1) = outputs
  assert "mesh: 4 devices over 2 processes, axis data" in err0
  assert f"run directory: {workdir}" in out0 and "run directory" not in out1
  assert sorted(os.listdir(workdir)) == [
    ".lock",
    "checkpoints",
    "config.json",
    "figures",
    "metrics.jsonl",
    "tensorboard",
  ]
  assert "Traceback" not in err0 + err1


def test_a_locked_run_directory_stops_every_process(data_dir, tmp_path):
  """Process 0 alone takes the lock; when it cannot, every process ends in
  one `error:` line and status 2 (rather than waiting for it)."""
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  flags = [
    *flags_of(mesh_config(data_dir, num_devices=2)),
    f"--workdir={workdir}",
    f"--coordinator_address=127.0.0.1:{_free_port()}",
    "--num_processes=2",
    "--distributed_timeout_s=60",
  ]
  with WorkdirLock(workdir):
    processes = [
      _start(
        [
          sys.executable,
          "-m",
          "experiments.train",
          *flags,
          f"--process_id={i}",
        ],
        str(tmp_path),
        f"p{i}",
        cwd=REPO_ROOT,
        env=_environment(2),
      )
      for i in range(2)
    ]
    results = [
      _finish(p, str(tmp_path), f"p{i}") for i, p in enumerate(processes)
    ]
  words = (["is in use", f"pid {os.getpid()}"], ["process 0 stopped"])
  for (status, _, err), expected in zip(results, words):
    errors = error_lines(err)
    assert status == 2 and len(errors) == 1, err[-2000:]
    assert all(w in errors[0] for w in expected), errors[0]
  assert os.listdir(workdir) == [".lock"]


def _bad_launch(tmp_path, flags, devices=4):
  workdir = str(tmp_path / "run")
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config=smoke",
      f"--workdir={workdir}",
      *flags,
    ],
    cwd=REPO_ROOT,
    env=_environment(devices),
    capture_output=True,
    text=True,
    timeout=_TIMEOUT_S,
  )
  return done, workdir


_PORT = _free_port()
_BAD = {
  "mesh_too_large": (
    ["--config.num_devices=8"],
    ["--config.num_devices=8", "4 cpu device"],
  ),
  "batch_not_divisible": (
    ["--config.num_devices=4", "--config.batch_size=30"],
    ["--config.batch_size=30", "mesh of 4", "multiple of 4"],
  ),
  "process_id_out_of_range": (
    [
      "--coordinator_address=127.0.0.1:1",
      "--num_processes=2",
      "--process_id=2",
    ],
    ["--process_id=2", "--num_processes=2"],
  ),
  "coordinator_unreachable": (
    [
      f"--coordinator_address=127.0.0.1:{_PORT}",
      "--num_processes=2",
      "--process_id=1",
      "--distributed_timeout_s=3",
    ],
    [f"127.0.0.1:{_PORT}", "process 1 of 2", "--distributed_timeout_s=3"],
  ),
}


@pytest.fixture(scope="module")
def bad_outcomes(tmp_path_factory):
  with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    futures = {
      name: pool.submit(_bad_launch, tmp_path_factory.mktemp(name), flags)
      for name, (flags, _) in _BAD.items()
    }
    return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", sorted(_BAD))
def test_bad_mesh_or_processes_fail_in_one_line(bad_outcomes, name):
  done, workdir = bad_outcomes[name]
  errors = error_lines(done.stderr)
  assert done.returncode == 2, done.stderr[-2000:]
  assert len(errors) == 1, done.stderr[-2000:]
  for word in _BAD[name][1]:
    assert word in errors[0], errors[0]
  assert "Traceback" not in done.stderr
  assert not os.path.exists(workdir)
