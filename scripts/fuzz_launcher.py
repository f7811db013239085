r"""Fuzzes `experiments.train`'s command line: one error line, exit 2, always.

    python scripts/fuzz_launcher.py --cases=1000 --workers=2

Each case is a fresh launcher process with random `--config.NAME=VALUE`
settings (huge, negative, non-finite, malformed, wrong-typed values, unknown
names), sometimes an unknown flag or a bad `--config` file, and a work
directory in a random state (new, a file, under a file, /proc, a bad
config.json, a `checkpoints` file, a `metrics.jsonl` directory). The data
directory does not exist, so even a valid command line must end in an
error. Every case must: exit with status 2, print exactly one `error:` line
and no traceback, within the time limit, and leave a new work directory
uncreated. Prints each failing case and a summary line:

    cases 1000, passed 1000, failed 0, in 62 s

Outside the test suite (minutes); tests/test_settings_property.py checks
validation itself in process, tests/test_bad_input.py and
tests/test_bad_workdir.py fixed cases through the launcher.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_CASES = flags.DEFINE_integer("cases", 1000, "Launches.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Launches at a time.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the cases.")

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NAMES = ["latent_dim", "hidden_dims", "activation", "likelihood",
          "gaussian_variance", "binarization", "validation_size",
          "train_split", "test_split", "image_layout", "streaming", "model",
          "num_samples", "analytic_kl", "kl_weight", "kl_warmup_epochs",
          "optimizer", "learning_rate", "lr_schedule", "lr_warmup_epochs",
          "lr_schedule_epochs", "grad_clip_norm", "batch_size", "epochs",
          "steps_per_chunk", "early_stopping_patience", "eval_batch_size",
          "eval_num_samples", "seed", "keep_checkpoints",
          "skip_nonfinite_updates", "nosuch", "Latent_dim", ""]
_VALUES = ["0", "-1", "1", "2", "3", "2147483647", "2147483648", "1e308",
           "-1e308", "1e-320", "inf", "-inf", "nan", "1e6", "1e3", "0.5",
           "abc", "", " ", "true", "false", "None", "[]", "1,2", "8,-1",
           "999999999", "99999999999999999999999", "adam", "chain",
           "__class__", "identity", "lookahead", "mlp", "nosuch:f",
           "toy_models:linear_image_vae", "cosine", "image", "gaussian",
           "none", "static", "train[:50%]", "0x10", "1_000", "∞", "'x'"]
_EXTRA = ["--epochs=3", "--config=nosuch.py", "--config", "--workdir",
          "--quiet=maybe", "positional", "--config.=1", "--help=maybe"]
_WORKDIRS = ["new", "file", "under_file", "proc", "config_null",
             "config_list", "checkpoints_file", "metrics_dir"]


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


def _case(rng: random.Random) -> tuple[list[str], str]:
  argv = ["--config.dataset=idx", "--config.data_dir=/nonexistent",
          "--config.epochs=1", "--quiet"]
  for _ in range(rng.randint(1, 4)):
    argv.append(f"--config.{rng.choice(_NAMES)}={rng.choice(_VALUES)}")
  if rng.random() < 0.15:
    argv.append(rng.choice(_EXTRA))
  return argv, rng.choice(_WORKDIRS)


def _run(index: int, argv: list[str], kind: str, root: str):
  case_root = os.path.join(root, str(index))
  os.makedirs(case_root)
  workdir = _workdir(kind, case_root)
  try:
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", *argv,
         f"--workdir={workdir}"], cwd=_REPO, capture_output=True, text=True,
        timeout=120, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    created = kind == "new" and os.path.lexists(workdir)
  except subprocess.TimeoutExpired:
    return "timed out"
  finally:
    shutil.rmtree(case_root, ignore_errors=True)
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  problems = []
  if result.returncode != 2:
    problems.append(f"exit {result.returncode}")
  if "Traceback" in result.stdout + result.stderr:
    problems.append("traceback")
  if len(errors) != 1:
    problems.append(f"{len(errors)} error lines")
  if created or (kind == "proc" and os.path.lexists(workdir)):
    problems.append("created the work directory")
  return ("; ".join(problems) + " | " + result.stderr[-400:]) if problems \
      else None


def main(argv):
  del argv
  rng = random.Random(_SEED.value)
  cases = [_case(rng) for _ in range(_CASES.value)]
  root = tempfile.mkdtemp(prefix="vae_jax_fuzz_")
  start, failed = time.monotonic(), 0
  with concurrent.futures.ThreadPoolExecutor(_WORKERS.value) as pool:
    futures = {pool.submit(_run, i, a, k, root): (a, k)
               for i, (a, k) in enumerate(cases)}
    for future in concurrent.futures.as_completed(futures):
      problem = future.result()
      if problem:
        failed += 1
        argv, kind = futures[future]
        print(f"FAILED ({kind}) {' '.join(argv)}: {problem}", flush=True)
  shutil.rmtree(root, ignore_errors=True)
  print(f"cases {len(cases)}, passed {len(cases) - failed}, failed {failed}, "
        f"in {time.monotonic() - start:.0f} s", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  app.run(main)
