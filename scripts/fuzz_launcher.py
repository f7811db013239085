r"""Fuzzes the launchers' command lines: one error line, exit 2, always.

    python scripts/fuzz_launcher.py --cases=3000 --workers=2

Each case is a fresh launcher process:
- `experiments.train` (most cases) with random `--config.NAME=VALUE`
  settings, NAME any setting of configs/default.py or a wrong one, VALUE huge,
  negative, non-finite, malformed, wrong-typed, an optimiser that does not
  fit the step (lbfgs, noisy_sgd), a factory with the wrong signature
  (os:getcwd), a prior, a model or latent sizes; sometimes an unknown flag or
  a bad `--config` file; and a work directory in a random state (new, a
  file, under a file, /proc, a bad config.json, a `checkpoints` file, a
  `metrics.jsonl` directory). The data directory does not exist, so even a
  valid command line must end in an error: exit status 2, exactly one
  `error:` line, no traceback, within the time limit, and a new work
  directory left uncreated.
- `experiments.sweep` with random `--sweep=NAME=V1,V2` axes and `--seeds`
  (huge ones too, with and without `--allow_large_sweep`) on that missing
  data: the same rule, for `--sweep_dir`.
- `experiments.evaluate` on a copy of a real one-epoch run (trained once at
  the start on tiny random IDX data) with one edit: a config.json setting
  changed to a random value, config.json or a checkpoint file damaged, or a
  random `--checkpoint`/`--num_importance_samples`, sometimes with the gap
  split's flags (`--gap_decomposition`, `--gap_examples`, `--gap_max_steps`,
  `--gap_init`, good and bad). It may succeed (exit 0,
  eval.json written) or fail with exit 2 and one `error:` line; never a
  traceback or another status.

Prints each failing case, how many cases of each launcher ended in each
exit status, and a summary line:

    cases 3000, passed 3000, failed 0, in 600 s

Outside the test suite (minutes); tests/test_settings_property.py checks
validation itself in process, tests/test_bad_input.py and
tests/test_bad_workdir.py fixed cases through the launcher.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

_CASES = flags.DEFINE_integer("cases", 1000, "Launches.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Launches at a time.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the cases.")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)
from vae_jax.configs import default  # pylint: disable=g-import-not-at-top
from vae_jax.data import idx  # pylint: disable=g-import-not-at-top

_NAMES = sorted(default.get_config().keys()) + ["nosuch", "Latent_dim", ""]
_VALUES = [
  "0",
  "-1",
  "1",
  "2",
  "3",
  "2147483647",
  "2147483648",
  "1e308",
  "-1e308",
  "1e-320",
  "inf",
  "-inf",
  "nan",
  "1e6",
  "1e3",
  "0.5",
  "abc",
  "",
  " ",
  "true",
  "false",
  "None",
  "[]",
  "1,2",
  "8,-1",
  "999999999",
  "99999999999999999999999",
  "adam",
  "chain",
  "__class__",
  "identity",
  "lookahead",
  "mlp",
  "nosuch:f",
  "toy_models:linear_image_vae",
  "cosine",
  "image",
  "gaussian",
  "none",
  "static",
  "train[:50%]",
  "0x10",
  "1_000",
  "∞",
  "'x'",
  # The optimisers, factories, priors and models of the protocol.
  "lbfgs",
  "noisy_sgd",
  "sgd",
  "adamw",
  "os:getcwd",
  "os:path",
  "vamp",
  "mog",
  "standard_normal",
  "hvae",
  "conv_hvae",
  "ladder",
  "conv",
  "40,20,10",
  "40",
  "40,0",
  "0.999",
  "linear",
  "onecycle",
  "sqrt",
  "warmup_cosine",
  "toy_models:diverging_vae",
]
_SWEEP_SEEDS = ["1", "2", "0", "-1", "100000", "2147483648", "abc"]
_EVAL_CHECKPOINTS = [None, "latest", "best", "nosuch", "0", "999", "-1"]
_EVAL_SAMPLES = [None, "0", "-1", "1", "10", "2147483648", "abc"]
_EXTRA = [
  "--epochs=3",
  "--config=nosuch.py",
  "--config",
  "--workdir",
  "--quiet=maybe",
  "positional",
  "--config.=1",
  "--help=maybe",
]
_WORKDIRS = [
  "new",
  "file",
  "under_file",
  "proc",
  "config_null",
  "config_list",
  "checkpoints_file",
  "metrics_dir",
]


def _workdir(kind: str, root: str) -> str:
  path = os.path.join(root, "run")
  if kind == "proc":
    return "/proc/vae_jax_fuzz"
  if kind in ("file", "under_file"):
    open(path, "w").close()
    return path if kind == "file" else os.path.join(path, "run")
  if kind != "new":
    os.makedirs(path)
    if kind.startswith("config_"):
      with open(os.path.join(path, "config.json"), "w") as f:
        f.write("null" if kind == "config_null" else "[]")
    elif kind == "checkpoints_file":
      open(os.path.join(path, "checkpoints"), "w").close()
    else:
      os.makedirs(os.path.join(path, "metrics.jsonl"))
  return path


def _train_case(rng: random.Random) -> list[str]:
  argv = [
    "experiments.train",
    "--config.dataset=idx",
    "--config.data_dir=/nonexistent",
    "--config.epochs=1",
    "--quiet",
  ]
  for _ in range(rng.randint(1, 4)):
    argv.append(f"--config.{rng.choice(_NAMES)}={rng.choice(_VALUES)}")
  if rng.random() < 0.15:
    argv.append(rng.choice(_EXTRA))
  return argv


def _sweep_case(rng: random.Random) -> list[str]:
  argv = [
    "experiments.sweep",
    "--config.dataset=idx",
    "--config.data_dir=/nonexistent",
    "--config.epochs=1",
    "--quiet",
    f"--seeds={rng.choice(_SWEEP_SEEDS)}",
  ]
  for _ in range(rng.randint(0, 2)):
    values = ",".join(rng.choice(_VALUES) for _ in range(rng.randint(1, 3)))
    argv.append(f"--sweep={rng.choice(_NAMES)}={values}")
  if rng.random() < 0.3:
    argv.append("--allow_large_sweep")
  if rng.random() < 0.3:
    argv.append(f"--config.{rng.choice(_NAMES)}={rng.choice(_VALUES)}")
  return argv


_GAP_EXAMPLES = ("-1", "0", "1", "3", "2147483648", "1e3", "")


def _evaluate_case(rng: random.Random) -> tuple[list[str], str]:
  argv = ["experiments.evaluate", "--figures=false", "--quiet"]
  checkpoint, samples = rng.choice(_EVAL_CHECKPOINTS), rng.choice(_EVAL_SAMPLES)
  if checkpoint is not None:
    argv.append(f"--checkpoint={checkpoint}")
  argv.append(f"--num_importance_samples={samples or 10}")
  if rng.random() < 0.3:  # the gap split, small enough to finish when valid
    argv += [
      "--gap_decomposition",
      f"--gap_max_steps={rng.choice(['0', '-3', '1', '5', 'x'])}",
    ]
    if rng.random() < 0.7:
      argv.append(f"--gap_examples={rng.choice(_GAP_EXAMPLES)}")
    if rng.random() < 0.3:
      argv.append(f"--gap_init={rng.choice(['encoder', 'prior', 'mode'])}")
  elif rng.random() < 0.05:  # a gap flag without --gap_decomposition
    argv.append("--gap_examples=2")
  edit = rng.choice(
    [
      "setting",
      "setting",
      "setting",
      "config_torn",
      "config_gone",
      "checkpoint_file",
      "none",
    ]
  )
  if edit == "setting":
    edit = f"setting:{rng.choice(_NAMES)}={rng.choice(_VALUES)}"
  return argv, edit


def _case(rng: random.Random) -> tuple[list[str], str]:
  """(launcher and flags, what to do to the work directory)."""
  draw = rng.random()
  if draw < 0.1:
    return _sweep_case(rng), rng.choice(_WORKDIRS)
  if draw < 0.2:
    argv, edit = _evaluate_case(rng)
    return argv, f"run:{edit}"
  return _train_case(rng), rng.choice(_WORKDIRS)


def _value(text: str):
  try:
    return json.loads(text)
  except ValueError:
    return text


def _edited_run(edit: str, reference: str, root: str) -> str:
  """A copy of the reference run with `edit` done to it."""
  path = os.path.join(root, "run")
  shutil.copytree(reference, path)
  config_path = os.path.join(path, "config.json")
  if edit.startswith("setting:"):
    name, value = edit[len("setting:") :].split("=", 1)
    with open(config_path) as f:
      stored = json.load(f)
    stored["config"][name] = _value(value)
    with open(config_path, "w") as f:
      json.dump(stored, f)
  elif edit == "config_torn":
    with open(config_path, "r+") as f:
      f.truncate(os.path.getsize(config_path) // 2)
  elif edit == "config_gone":
    os.remove(config_path)
  elif edit == "checkpoint_file":
    files = sorted(
      os.path.join(d, name)
      for d, _, names in os.walk(os.path.join(path, "checkpoints"))
      for name in names
    )
    with open(files[len(files) // 2], "r+b") as f:
      f.truncate(0)
  return path


def _reference_run(root: str) -> str:
  """A one-epoch smoke run on 256 random 28×28 IDX images."""
  data = os.path.join(root, "data")
  os.makedirs(data)
  rng = np.random.default_rng(0)
  for prefix, num in (("train", 256), ("t10k", 128)):
    idx.write_idx(
      os.path.join(data, f"{prefix}-images-idx3-ubyte.gz"),
      rng.integers(0, 256, (num, 28, 28), dtype=np.uint8),
    )
    idx.write_idx(
      os.path.join(data, f"{prefix}-labels-idx1-ubyte.gz"),
      rng.integers(0, 10, (num,), dtype=np.uint8),
    )
  workdir = os.path.join(root, "reference")
  subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.train",
      "--config=vae_jax/configs/smoke.py",
      "--config.dataset=idx",
      f"--config.data_dir={data}",
      "--config.epochs=1",
      "--config.validation_size=64",
      "--config.batch_size=32",
      "--quiet",
      f"--workdir={workdir}",
    ],
    cwd=_REPO,
    check=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  return workdir


def _run(index: int, argv: list[str], kind: str, root: str, reference: str):
  case_root = os.path.join(root, str(index))
  os.makedirs(case_root)
  evaluating = kind.startswith("run:")
  workdir = (
    _edited_run(kind[len("run:") :], reference, case_root)
    if evaluating
    else _workdir(kind, case_root)
  )
  launcher, *flags_ = argv
  where = "--sweep_dir" if launcher == "experiments.sweep" else "--workdir"
  try:
    result = subprocess.run(
      [sys.executable, "-m", launcher, *flags_, f"{where}={workdir}"],
      cwd=_REPO,
      capture_output=True,
      text=True,
      timeout=120,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    created = kind == "new" and os.path.lexists(workdir)
  except subprocess.TimeoutExpired:
    return "timed out", None
  finally:
    shutil.rmtree(case_root, ignore_errors=True)
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  problems = []
  succeeded = evaluating and result.returncode == 0 and not errors
  if result.returncode != 2 and not succeeded:
    problems.append(f"exit {result.returncode}")
  if "Traceback" in result.stdout + result.stderr:
    problems.append("traceback")
  if len(errors) != 1 and not succeeded:
    problems.append(f"{len(errors)} error lines")
  if created or (kind == "proc" and os.path.lexists(workdir)):
    problems.append("created the work directory")
  return (
    ("; ".join(problems) + " | " + result.stderr[-400:]) if problems else None
  ), result.returncode


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  cases = [_case(rng) for _ in range(_CASES.value)]
  root = tempfile.mkdtemp(prefix="vae_jax_fuzz_")
  start, failed = time.monotonic(), 0
  reference = _reference_run(root)
  with concurrent.futures.ThreadPoolExecutor(_WORKERS.value) as pool:
    futures = {
      pool.submit(_run, i, a, k, root, reference): (a, k)
      for i, (a, k) in enumerate(cases)
    }
    tally = collections.Counter()  # (launcher, exit status)
    for future in concurrent.futures.as_completed(futures):
      problem, status = future.result()
      argv, kind = futures[future]
      tally[argv[0].split(".")[-1], status] += 1
      if problem:
        failed += 1
        print(f"FAILED ({kind}) {' '.join(argv)}: {problem}", flush=True)
  shutil.rmtree(root, ignore_errors=True)
  print(
    "exit statuses: "
    + ", ".join(
      f"{launcher} {status}: {n}"
      for (launcher, status), n in sorted(tally.items(), key=str)
    ),
    flush=True,
  )
  print(
    f"cases {len(cases)}, passed {len(cases) - failed}, failed {failed}, "
    f"in {time.monotonic() - start:.0f} s",
    flush=True,
  )
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
