"""Bad input to `python -m experiments.train` fails fast, in one line.

Missing, truncated or corrupt data, a file that is not IDX, and invalid flag
values must each end the launcher with exit status 2 and exactly one
`error: ...` line on stderr that names what to fix: no traceback, and
nothing written (not even the run directory). Every case fails before the first
compiled step, so the launches are short; they run two at a time. So must
`python -m experiments.evaluate` on a run whose config.json was edited after
training: one line, nothing written in the run directory.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Callable

import numpy as np
import pytest

from conftest import REPO_ROOT, TEST_IMAGES, TRAIN_IMAGES, synthetic_images
from conftest import write_idx_directory
from run_helpers import error_lines, small_config, snapshot, train
from vae_jax.data.idx import write_idx

# Launcher subprocesses and training runs.
pytestmark = pytest.mark.slow

# Flags of a tiny run that would be valid on the tiny data below.
_SMALL_RUN = (
  "--config.dataset=idx",
  "--config.epochs=1",
  "--config.hidden_dims=8",
  "--config.latent_dim=2",
  "--config.batch_size=8",
  "--config.eval_batch_size=8",
)
_NUM_TRAIN = 16
# absl/glog log lines ("I1126 12:00:00.000 ...", "W1126 ..."): a launcher may
# log before it fails; such lines are not part of the error report.
# (Libraries' warnings printed at import, before the error, are tolerated.)
_LOG_LINE = re.compile(r"^[IWEF]\d{4} ")


@dataclasses.dataclass(frozen=True)
class _Case:
  """A launch that must fail: how to break the data, which flags, and the
  words the error line must contain (what to fix)."""

  break_data: Callable[[str], None]  # (data_dir) → None, edits the files
  flags: tuple[str, ...]
  keywords: tuple[str, ...]
  data_dir: str = "{data}"  # "{data}" is the case's own data directory
  alone: bool = False  # stderr holds the error line alone, no log line


def _keep_data(data_dir: str) -> None:
  del data_dir


def _truncate_gz(data_dir: str) -> None:
  """A valid gzip IDX file cut in half, as an interrupted download leaves it."""
  path = os.path.join(data_dir, TRAIN_IMAGES + ".gz")
  with open(path, "rb") as f:
    content = f.read()
  with gzip.open(path, "rb") as f:  # it was valid before
    assert f.read()[:4] == b"\x00\x00\x08\x03"
  with open(path, "wb") as f:
    f.write(content[: len(content) // 2])


def _random_bytes_gz(data_dir: str) -> None:
  path = os.path.join(data_dir, TRAIN_IMAGES + ".gz")
  payload = np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
  assert payload[:2] != b"\x1f\x8b"  # not even a gzip header
  with open(path, "wb") as f:
    f.write(payload)


def _corrupt_gz_stream(data_dir: str) -> None:
  """A gzip file with an intact header whose compressed stream is damaged."""
  path = os.path.join(data_dir, TRAIN_IMAGES + ".gz")
  with open(path, "rb") as f:
    content = bytearray(f.read())
  rng = np.random.default_rng(1)
  start = 20  # past the 10-byte gzip header and the start of the stream
  content[start:-8] = rng.integers(
    0, 256, len(content) - 8 - start, np.uint8
  ).tobytes()
  with open(path, "wb") as f:
    f.write(bytes(content))


def _wrong_magic(data_dir: str) -> None:
  """An uncompressed train-images file whose magic number is not IDX's."""
  gz_path = os.path.join(data_dir, TRAIN_IMAGES + ".gz")
  with gzip.open(gz_path, "rb") as f:
    content = bytearray(f.read())
  os.remove(gz_path)
  content[:4] = b"\x12\x34\x56\x78"
  with open(os.path.join(data_dir, TRAIN_IMAGES), "wb") as f:
    f.write(bytes(content))


def _huge_idx_header(data_dir: str) -> None:
  """A train-images file whose header claims 2^31 x 2^31 x 4 x 1 bytes and
  that holds none (numpy's product of those sizes wraps around to 0)."""
  with gzip.open(os.path.join(data_dir, TRAIN_IMAGES + ".gz"), "wb") as f:
    f.write(
      b"\x00\x00\x08\x04" + np.asarray([2**31, 2**31, 4, 1], ">u4").tobytes()
    )


def _large_images(data_dir: str) -> None:
  """112 x 112 images: 16 times the pixels, so that the most draws of z
  (num_samples = 2^20) of a batch need terabytes on any machine."""
  rng = np.random.default_rng(0)
  for name, num in ((TRAIN_IMAGES, _NUM_TRAIN), (TEST_IMAGES, 8)):
    images, _ = synthetic_images(num, rng, size=112)
    write_idx(os.path.join(data_dir, name + ".gz"), images)


_CASES = {
  "missing_data_dir": _Case(
    _keep_data, (), ("/nonexistent",), data_dir="/nonexistent"
  ),
  "truncated_gz": _Case(_truncate_gz, (), (TRAIN_IMAGES,)),
  "random_bytes_gz": _Case(_random_bytes_gz, (), (TRAIN_IMAGES,)),
  "corrupt_gz_stream": _Case(_corrupt_gz_stream, (), (TRAIN_IMAGES,)),
  "wrong_magic_number": _Case(_wrong_magic, (), (TRAIN_IMAGES, "IDX")),
  "latent_dim_zero": _Case(
    _keep_data, ("--config.latent_dim=0",), ("--config.latent_dim",)
  ),
  "negative_learning_rate": _Case(
    _keep_data, ("--config.learning_rate=-1",), ("--config.learning_rate",)
  ),
  "infinite_learning_rate": _Case(
    _keep_data,
    ("--config.learning_rate=inf",),
    ("--config.learning_rate", "finite"),
  ),
  "latent_dim_past_int32": _Case(
    _keep_data, ("--config.latent_dim=2147483648",), ("--config.latent_dim",)
  ),
  # Refused with the estimate, before JAX allocates anything (otherwise a
  # hang in initialisation or the kernel's OOM killer).
  "model_larger_than_memory": _Case(
    _keep_data,
    ("--config.latent_dim=60000", "--config.hidden_dims=60000,60000"),
    ("GiB",),
  ),
  "batch_larger_than_data": _Case(
    _keep_data,
    (f"--config.batch_size={4 * _NUM_TRAIN}",),
    ("--config.batch_size", str(_NUM_TRAIN)),
  ),
  # ml_collections' and absl's own failures: a traceback or exit 1 out of
  # the box.
  "unknown_setting": _Case(_keep_data, ("--config.nosuch=1",), ("nosuch",)),
  "unparsable_setting": _Case(
    _keep_data, ("--config.latent_dim=abc",), ("--config.latent_dim", "abc")
  ),
  "unknown_flag": _Case(
    _keep_data, ("--epochs=3",), ("epochs", "--config.epochs")
  ),
  "missing_config_file": _Case(
    _keep_data, ("--config=nosuch.py",), ("nosuch.py",)
  ),
  "not_an_optimizer": _Case(
    _keep_data, ("--config.optimizer=chain",), ("--config.optimizer", "chain")
  ),
  # Issue 21: optax optimisers that do not fit the step (an update that
  # needs more arguments, a state holding a random key).
  "optimizer_needing_more_arguments": _Case(
    _keep_data,
    ("--config.optimizer=lbfgs",),
    ("--config.optimizer='lbfgs'", "value_fn", "adam"),
  ),
  "optimizer_with_a_key": _Case(
    _keep_data,
    ("--config.optimizer=noisy_sgd",),
    ("--config.optimizer='noisy_sgd'", "random key", "adam"),
  ),
  "idx_header_past_the_file": _Case(
    _huge_idx_header, (), (TRAIN_IMAGES, "2147483648")
  ),
  "factory_of_another_signature": _Case(
    _keep_data,
    ("--config.model=os:getcwd",),
    ("--config.model='os:getcwd'", "os.getcwd", "TypeError"),
  ),
  "dashed_setting": _Case(
    _keep_data, ("--config.learning-rate=0.1",), ("--config.learning_rate=",)
  ),
  "misspelt_setting": _Case(
    _keep_data,
    ("--config.latentdim=2",),
    ("'latentdim'", "--config.latent_dim"),
  ),
  "num_samples_past_memory": _Case(
    _large_images,
    ("--config.objective=iwae", "--config.num_samples=1048576"),
    ("--config.num_samples=1048576", "GiB"),
  ),
  # TFDS logged a warning line before the error (issue 21).
  "tfds_dataset_not_prepared": _Case(
    _keep_data,
    ("--config.dataset=mnist",),
    ("mnist", "not prepared"),
    data_dir="{data}/tfds",
    alone=True,
  ),
  "tfds_data_dir_missing": _Case(
    _keep_data,
    ("--config.dataset=fashion_mnist",),
    ("/nonexistent/dir",),
    data_dir="/nonexistent/dir",
    alone=True,
  ),
  "tfds_data_dir_proc": _Case(
    _keep_data,
    ("--config.dataset=fashion_mnist",),
    ("/proc",),
    data_dir="/proc",
    alone=True,
  ),
  "tfds_data_dir_dev_null": _Case(
    _keep_data,
    ("--config.dataset=fashion_mnist",),
    ("/dev/null",),
    data_dir="/dev/null",
    alone=True,
  ),
  "gated_conv": _Case(
    _keep_data,
    ("--config.model=conv", "--config.activation=glu"),
    ("--config.activation", "glu is for mlp"),
  ),
  "unknown_model": _Case(
    _keep_data, ("--config.model=nosuch",), ("--config.model", "mlp", "conv")
  ),
  # The variants (issue 10): names, K, λ, and a likelihood that does not
  # fit the data.
  "unknown_objective": _Case(
    _keep_data,
    ("--config.objective=nosuch",),
    ("--config.objective", "elbo", "iwae"),
  ),
  "unknown_likelihood": _Case(
    _keep_data,
    ("--config.likelihood=poisson",),
    ("--config.likelihood", "continuous_bernoulli"),
  ),
  "no_samples": _Case(
    _keep_data, ("--config.num_samples=0",), ("--config.num_samples",)
  ),
  "negative_free_bits": _Case(
    _keep_data, ("--config.free_bits=-1",), ("--config.free_bits",)
  ),
  "free_bits_with_iwae": _Case(
    _keep_data,
    ("--config.objective=iwae", "--config.free_bits=0.5"),
    ("--config.free_bits", "--config.objective=elbo"),
  ),
  "bernoulli_on_grey_levels": _Case(
    _keep_data,
    ("--config.binarization=none",),
    ("--config.likelihood", "continuous_bernoulli", "gaussian"),
  ),
  "conv_with_flat_layout": _Case(
    _keep_data,
    ("--config.model=conv", "--config.image_layout=flat"),
    ("--config.image_layout",),
  ),
  "conv_image_too_small": _Case(
    _keep_data,
    ("--config.model=conv", "--config.conv_channels=4,4,4"),
    ("--config.model=conv", "divisible by 8"),
  ),
}


@dataclasses.dataclass(frozen=True)
class _Outcome:
  returncode: int
  stdout: str
  stderr: str
  workdir: str


def _launch(name: str, case: _Case, root: str) -> _Outcome:
  data_dir = os.path.join(root, name, "data")
  write_idx_directory(data_dir, num_train=_NUM_TRAIN, num_test=8)
  case.break_data(data_dir)
  workdir = os.path.join(root, name, "run")
  argv = [
    sys.executable,
    "-m",
    "experiments.train",
    *_SMALL_RUN,
    f"--config.data_dir={case.data_dir.format(data=data_dir)}",
    f"--workdir={workdir}",
    *case.flags,
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = subprocess.run(
    argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
  )
  return _Outcome(result.returncode, result.stdout, result.stderr, workdir)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, _Outcome]:
  """Every case launched once, two processes at a time."""
  root = str(tmp_path_factory.mktemp("bad_input"))
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {
      name: pool.submit(_launch, name, case, root)
      for name, case in _CASES.items()
    }
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_fails_with_one_error_line_and_status_2(outcomes, name):
  outcome = outcomes[name]
  report = (
    f"exit status {outcome.returncode}\n--- stdout\n{outcome.stdout}"
    f"\n--- stderr\n{outcome.stderr}"
  )
  assert outcome.returncode == 2, report
  assert "Traceback" not in outcome.stdout + outcome.stderr, report
  lines = [
    line
    for line in outcome.stderr.splitlines()
    if line.strip() and not _LOG_LINE.match(line)
  ]
  errors = [line for line in lines if line.startswith("error:")]
  assert len(errors) == 1, report
  # The message is one line: nothing but log lines follows it.
  assert lines[-1] == errors[0], report
  if _CASES[name].alone:
    assert outcome.stderr.split() == errors[0].split(), report
  for keyword in _CASES[name].keywords:
    assert keyword in errors[0], (keyword, errors[0])


@pytest.mark.parametrize("name", sorted(_CASES))
def test_nothing_is_written(outcomes, name):
  assert not os.path.exists(outcomes[name].workdir)


@pytest.mark.parametrize(
  "module, argv",
  [
    ("experiments.train", ("--config.latent_dim=0",)),
    ("experiments.train", ("--config.nosuch=1",)),
    ("experiments.train", ("--help",)),
    ("experiments.evaluate", ()),  # no --workdir
  ],
)
def test_flag_errors_and_help_need_no_jax(module, argv):
  """Flags are checked before anything imports JAX (seconds of start-up)."""
  script = (
    "import runpy, sys\n"
    f"sys.argv = [{module!r}, *{list(argv)!r}]\n"
    "try:\n"
    f"  runpy.run_module({module!r}, run_name='__main__')\n"
    "except SystemExit as e:\n"
    "  print('exit', e.code, 'jax' in sys.modules)\n"
  )
  result = subprocess.run(
    [sys.executable, "-c", script],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert result.stdout.splitlines()[-1] in ("exit 1 False", "exit 2 False"), (
    result.stdout + result.stderr
  )


# `experiments.evaluate` on a run whose config.json was edited after
# training: (the edit, words of the error line).
_EDITED_RUNS = {
  "latent_dim_edited": (
    {"latent_dim": 3},
    ("config.json no longer matches", "shape (2, 8)", "shape (3, 8)"),
  ),
  "wider_hidden_layer": (
    {"hidden_dims": [16]},
    ("config.json no longer matches", "(8,)", "(16,)"),
  ),
  "eval_batch_size_zero": (
    {"eval_batch_size": 0},
    ("config.json", "--config.eval_batch_size=0"),
  ),
}


def _evaluate_edited(name: str, edit: dict, trained: str, root: str):
  workdir = os.path.join(root, name)
  shutil.copytree(trained, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    stored = json.load(f)
  stored["config"].update(edit)
  with open(path, "w") as f:
    json.dump(stored, f)
  before = snapshot(workdir)
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.evaluate",
      f"--workdir={workdir}",
      "--num_importance_samples=4",
    ],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=180,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  return result, before == snapshot(workdir)


@pytest.fixture(scope="module")
def edited_runs(tmp_path_factory) -> dict:
  """One tiny run trained here; each edit evaluated on a copy of it."""
  root = str(tmp_path_factory.mktemp("edited_runs"))
  data_dir = write_idx_directory(
    os.path.join(root, "data"), num_train=_NUM_TRAIN, num_test=8
  )
  trained = os.path.join(root, "trained")
  train(
    small_config(
      data_dir,
      epochs=1,
      batch_size=8,
      hidden_dims=(8,),
      eval_batch_size=8,
      steps_per_chunk=0,
    ),
    trained,
  )
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {
      name: pool.submit(_evaluate_edited, name, edit, trained, root)
      for name, (edit, _) in _EDITED_RUNS.items()
    }
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(_EDITED_RUNS))
def test_evaluating_an_edited_run_is_one_line_and_writes_nothing(
  edited_runs, name
):
  result, unchanged = edited_runs[name]
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  [error] = error_lines(result.stderr)
  for keyword in _EDITED_RUNS[name][1]:
    assert keyword in error, (keyword, error)
  assert unchanged  # no eval.json, no figures
