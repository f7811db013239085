"""`experiments/evaluate.py --gap_decomposition` on a tiny trained run.

It writes eval.json's gap keys and figures/gap_decomposition.png, its gaps
add up, a sweep's summary takes the gap columns, and bad input is one
`error:` line with exit status 2 that leaves eval.json as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from run_helpers import error_lines, small_config, snapshot, train
from tolerances import sum_atol
from vae_jax import inference_gap
from vae_jax.errors import ConfigError
from vae_jax.nets import registry
from vae_jax.run import evaluate
from vae_jax.run import gap_request
from vae_jax.sweep import summary as sweep_summary

# A trained run and the evaluate launcher.
pytestmark = pytest.mark.slow

_SETTINGS = inference_gap.GapSettings(max_steps=60, window=10, final_samples=40)
_KEYS = (
  "approximation_gap",
  "amortisation_gap",
  "inference_gap",
  "elbo_optimized",
  "log_px_q_star",
)


@pytest.fixture(scope="module")
def trained(idx_data_dir, tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp("gap") / "run")
  train(small_config(idx_data_dir, epochs=1), workdir)
  return workdir


@pytest.fixture(scope="module")
def evaluated(trained) -> dict:
  return evaluate.evaluate_run(
    trained,
    num_importance_samples=20,
    max_examples=16,
    gap=evaluate.GapRequest(examples=12, settings=_SETTINGS),
  )


def test_eval_json_has_the_gap_keys_and_they_add_up(trained, evaluated):
  with open(os.path.join(trained, "eval.json")) as f:
    record = json.load(f)
  assert record == json.loads(json.dumps(evaluated))
  for key in _KEYS:
    assert isinstance(record[key], float), key
    assert record[f"{key}_stderr"] >= 0.0, key
  assert record["gap_log_px_proposal"] == "q_star"
  assert record["gap_examples"] == 12
  assert 1 <= record["gap_steps_mean"] <= record["gap_steps_max"] <= 60
  total = record["approximation_gap"] + record["amortisation_gap"]
  assert abs(record["inference_gap"] - total) <= sum_atol(
    3, abs(record["elbo_optimized"]) + abs(record["log_px_q_star"])
  )
  # Started at the encoder's q, the optimised q is not worse on average.
  assert record["amortisation_gap"] > -3 * record["amortisation_gap_stderr"]
  assert (
    os.path.getsize(os.path.join(trained, "figures", "gap_decomposition.png"))
    > 10_000
  )
  with open(os.path.join(trained, evaluate.GAP_PER_IMAGE_FILE)) as f:
    rows = f.read().splitlines()
  assert rows[0] == "image,elbo,elbo_optimized,log_px_q,log_px_q_star,steps"
  assert len(rows) == 1 + 12


def test_a_sweep_summary_takes_the_gap_columns(trained, evaluated):
  del evaluated  # eval.json written
  sweep = os.path.dirname(trained)
  description = {
    "members": [
      {"name": os.path.basename(trained), "settings": {"kl_weight": 1.0}}
    ]
  }
  [row] = sweep_summary.summary_rows(sweep, description, {})
  assert row["approximation_gap"] is not None
  assert row["amortisation_gap"] is not None


@pytest.mark.parametrize(
  "request_, words",
  [
    (evaluate.GapRequest(examples=-1), "--gap_examples=-1"),
    (
      evaluate.GapRequest(examples=17),
      "--gap_examples=17 is larger than --max_examples=16",
    ),
    (evaluate.GapRequest(examples=257), "the test split has 256"),
    (
      evaluate.GapRequest(settings=inference_gap.GapSettings(max_steps=0)),
      "--gap_max_steps=0",
    ),
  ],
)
def test_bad_gap_settings_are_refused_before_any_work(
  trained, evaluated, request_, words
):
  del evaluated
  before = snapshot(trained)
  with pytest.raises(ConfigError, match=words.replace("-", r"\-")):
    evaluate.evaluate_run(
      trained, num_importance_samples=20, max_examples=16, gap=request_
    )
  assert snapshot(trained) == before


def test_a_hierarchical_model_is_refused(idx_data_dir):
  config = small_config(idx_data_dir, model="hvae", latent_dims=(4, 2))
  model = registry.build_model(config, (28 * 28,))
  with pytest.raises(ConfigError, match="one latent layer"):
    gap_request.gap_images(evaluate.GapRequest(), model, 256, None)


def test_the_launcher_says_one_line_and_writes_nothing(trained, evaluated):
  del evaluated
  before = snapshot(trained)
  for flags in (
    ["--gap_decomposition", "--gap_examples=-3"],
    ["--gap_max_steps=10"],
  ):  # without --gap_decomposition
    result = subprocess.run(
      [
        sys.executable,
        "-m",
        "experiments.evaluate",
        f"--workdir={trained}",
        "--num_importance_samples=4",
        *flags,
      ],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=180,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = error_lines(result.stderr)
    assert flags[-1].split("=")[0] in line, line
  assert snapshot(trained) == before


def test_per_image_results_pair_two_runs(trained, evaluated, tmp_path, capsys):
  del evaluated
  sys.path.insert(0, str(REPO_ROOT / "scripts"))
  import paired_difference  # pylint: disable=g-import-not-at-top

  path = os.path.join(trained, evaluate.PER_IMAGE_FILE)
  with open(path) as f:
    lines = f.read().splitlines()
  assert lines[0] == "image,log_px,elbo" and len(lines) == 1 + 16
  shifted = tmp_path / "shifted.csv"  # log p(x) 1.5 lower on every image
  shifted.write_text(
    "\n".join(
      [lines[0]]
      + [
        f"{n},{float(a) - 1.5:.4f},{b}"
        for n, a, b in (line.split(",") for line in lines[1:])
      ]
    )
    + "\n"
  )
  assert paired_difference.main(["", path, str(shifted)]) == 0
  out = capsys.readouterr().out
  assert "log p(x): " in out and "= +1.50 ± 0.00 nats (paired over 16" in out
  assert "ELBO: " in out and "= +0.00 ± 0.00" in out
  assert paired_difference.main(["", path]) == 2
