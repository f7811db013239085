"""A run directory that cannot be used fails before JAX starts, in one line.

Each case launches `experiments.train` or `experiments.evaluate` in a fresh
interpreter through runpy, so the test also sees whether JAX was imported:
it must not be. Exit status 2, one `error:` line naming the directory, no
traceback, and nothing created or changed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import subprocess
import sys
from typing import Callable

import pytest

from conftest import REPO_ROOT

# Launcher subprocesses.
pytestmark = pytest.mark.slow

_LONG_NAME = "x" * 300  # past NAME_MAX (255) of every Linux file system


@dataclasses.dataclass(frozen=True)
class _Case:
  prepare: Callable[[str], str]  # (case root) → the --workdir to pass
  keywords: tuple[str, ...]
  module: str = "experiments.train"


def _file(root):
  path = os.path.join(root, "run")
  open(path, "w").close()
  return path


def _under_file(root):
  return os.path.join(_file(root), "run")


def _run_dir(config_text=None, files=(), dirs=()):
  def prepare(root):
    path = os.path.join(root, "run")
    os.makedirs(path)
    if config_text is not None:
      with open(os.path.join(path, "config.json"), "w") as f:
        f.write(config_text)
    for name in files:
      open(os.path.join(path, name), "w").close()
    for name in dirs:
      os.makedirs(os.path.join(path, name))
    return path

  return prepare


_CASES = {
  "workdir_is_a_file": _Case(_file, ("is a file",)),
  "parent_is_a_file": _Case(_under_file, ("is a file",)),
  "under_proc": _Case(lambda root: "/proc/vae_jax_run", ("cannot write",)),
  "under_sys": _Case(lambda root: "/sys/vae_jax_run", ("cannot write",)),
  "name_too_long": _Case(
    lambda root: os.path.join(root, _LONG_NAME), ("too long",)
  ),
  "config_json_list": _Case(_run_dir("[]"), ("config.json",)),
  "config_json_null": _Case(_run_dir("null"), ("config.json",)),
  "config_json_empty": _Case(_run_dir(""), ("config.json",)),
  "checkpoints_is_a_file": _Case(
    _run_dir(files=("checkpoints",)), ("checkpoints",)
  ),
  "metrics_is_a_directory": _Case(
    _run_dir(dirs=("metrics.jsonl",)), ("metrics.jsonl",)
  ),
  "evaluate_config_json_null": _Case(
    _run_dir("null"), ("config.json",), module="experiments.evaluate"
  ),
  "evaluate_workdir_is_a_file": _Case(
    _file, ("is a file",), module="experiments.evaluate"
  ),
  "evaluate_missing_workdir": _Case(
    lambda root: os.path.join(root, "nosuch"),
    ("no such directory",),
    module="experiments.evaluate",
  ),
}

_SCRIPT = """
import json, runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
try:
  runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as e:
  print(json.dumps({"exit": e.code, "jax": "jax" in sys.modules}))
"""


def _snapshot(root):
  return sorted(
    (dirpath, tuple(sorted(names)), tuple(sorted(files)))
    for dirpath, names, files in os.walk(root)
  )


def _launch(name: str, case: _Case, root: str):
  case_root = os.path.join(root, name)
  os.makedirs(case_root)
  workdir = case.prepare(case_root)
  before = _snapshot(case_root)
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      _SCRIPT,
      case.module,
      f"--workdir={workdir}",
      "--config.dataset=idx",
      "--config.data_dir=/nonexistent",
    ]
    if case.module == "experiments.train"
    else [sys.executable, "-c", _SCRIPT, case.module, f"--workdir={workdir}"],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  return result, before, _snapshot(case_root), workdir


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("bad_workdir"))
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    futures = {
      name: pool.submit(_launch, name, case, root)
      for name, case in _CASES.items()
    }
    return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(_CASES))
def test_one_error_line_before_jax_and_nothing_created(outcomes, name):
  result, before, after, workdir = outcomes[name]
  report = result.stdout + result.stderr
  assert json.loads(result.stdout.splitlines()[-1]) == {
    "exit": 2,
    "jax": False,
  }, report
  assert "Traceback" not in report
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, report
  assert workdir in errors[0] or _LONG_NAME in errors[0]
  for keyword in _CASES[name].keywords:
    assert keyword in errors[0], errors[0]
  assert after == before
  assert not os.path.exists("/proc/vae_jax_run")
