"""benchmarks/device_check.sh --dry: every step of the GPU check, tiny, on CPU.

One run of the script (about 80 s on the 2-core CPU): each benchmark step
finishes within its limit and writes its table; the hvae_vamp config runs
(the vamp run is skipped in a dry run); OUTDIR holds a few flat files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# The device check's every step, as subprocesses.
pytestmark = pytest.mark.slow

_SCRIPT = REPO_ROOT / "benchmarks" / "device_check.sh"
_BENCHMARKS = {
  "train_step": ("trainer-bf16", "matmuls-bf16", "plain"),
  "importance_sampling": ("estimator",),
  "sweep": ("vmapped", "sequential"),
  "conv": ("nn.Conv", "patch"),
}


def test_dry_run_writes_every_step_in_a_few_flat_files(tmp_path):
  out = tmp_path / "check"
  env = dict(os.environ, PYTHON=sys.executable)
  env.pop("JAX_PLATFORMS", None)  # the script sets it for --dry
  result = subprocess.run(
    ["bash", str(_SCRIPT), "--dry", str(out)],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=330,
  )
  assert result.returncode == 0, result.stdout + result.stderr
  names = sorted(os.listdir(out))
  assert len(names) <= 8 and all((out / n).is_file() for n in names), names
  summary = json.loads((out / "summary.json").read_text())
  assert summary["dry"] and summary["seconds"] < 270, summary
  status = {s["step"]: s["status"] for s in summary["steps"]}
  for name, words in _BENCHMARKS.items():
    text = (out / f"{name}.txt").read_text()
    assert status[name] == "ok", (name, text[-2000:])
    for word in words:
      assert word in text, (name, word, text[-2000:])
  assert status["vamp"] == "skipped", status  # dry: hvae_vamp alone
  exists = (REPO_ROOT / "vae_jax" / "configs" / "hvae_vamp.py").exists()
  assert status["hvae_vamp"] == ("ok" if exists else "skipped"), status
  if not exists:
    assert "does not exist" in (out / "hvae_vamp.txt").read_text()
  assert "pytest" not in _SCRIPT.read_text()  # it runs the benchmarks only
