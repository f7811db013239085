"""benchmarks/time_to_quality.py on two hand-written run directories."""

from __future__ import annotations

import json
import os
import sys


from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import time_to_quality  # pylint: disable=g-import-not-at-top,wrong-import-position


def _write_run(directory, seconds, elbos, log_px=None):
  os.makedirs(directory)
  with open(os.path.join(directory, "metrics.jsonl"), "w") as f:
    for i, (s, e) in enumerate(zip(seconds, elbos)):
      last = i == len(elbos) - 1
      f.write(
        json.dumps(
          {
            "epoch": i + 1,
            "wall_time_sec": s,
            "val_elbo": e,
            "test_elbo": e - 1.0,
            "test_log_px": log_px if last else None,
          }
        )
        + "\n"
      )
  return str(directory)


def test_times_ratios_nll_and_figure(tmp_path):
  slow = time_to_quality.read_curve(
    "paper",
    _write_run(
      tmp_path / "paper", [10, 20, 30, 40], [-300, -260, -240, -235], -230.0
    ),
  )
  fast = time_to_quality.read_curve(
    "fast", _write_run(tmp_path / "fast", [5, 10, 15], [-280, -238, -239])
  )
  result = time_to_quality.report([slow, fast], [-250.0, -238.0, -236.0])
  assert result["seconds_to_threshold"] == {
    "paper": [30, 40, 40],
    "fast": [10, 10, None],
  }
  assert result["ratios"] == {"paper/fast": [3.0, 4.0, None]}
  assert result["final_is_nll"] == {"paper": 230.0, "fast": None}
  assert result["best_seconds"] == {"paper": 40, "fast": 10}
  assert slow.is_nll_source == "metrics.jsonl"
  assert result["metric"] == {"paper": "val_elbo", "fast": "val_elbo"}
  # auto: from the worst first epoch (-300) to the worst best (-238).
  assert time_to_quality.auto_thresholds([slow, fast], 2) == [-269.0, -238.0]
  path = str(tmp_path / "ttq.png")
  time_to_quality.draw([slow, fast], [-250.0], path)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_is_nll_of_eval_json_wins_over_the_last_line(tmp_path):
  directory = _write_run(tmp_path / "run", [5, 10], [-250, -240], -231.0)
  with open(os.path.join(directory, "eval.json"), "w") as f:
    json.dump({"checkpoint": "best", "test_log_px": -229.5}, f)
  curve = time_to_quality.read_curve("run", directory)
  assert (curve.is_nll, curve.is_nll_source) == (229.5, "eval.json")
