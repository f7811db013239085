"""The launchers end to end: configs, the run directory's contract, evaluation.

One `--config=vae_jax/configs/smoke.py` run of experiments/train.py on tiny
synthetic IDX data (shrunk further by `--config.NAME=VALUE` overrides) is
shared by the tests of its run directory, of the refusal to resume it with
other settings, of experiments/evaluate.py and of `vae_jax.load_run`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import struct
import subprocess
import sys

import pytest
from absl import flags

from tolerances import F32_EPS
from tolerances import sum_atol
import vae_jax
from vae_jax import configs
from vae_jax import validation
from vae_jax.errors import ConfigError
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import evaluate as evaluate_lib
from vae_jax.store import workdir as workdir_lib

# The launchers end to end: subprocesses and training runs.
pytestmark = pytest.mark.slow

# The keys the issue names for every line of metrics.jsonl.
METRIC_KEYS = (
  "epoch",
  "step",
  "train_elbo",
  "train_kl",
  "train_log_likelihood",
  "val_elbo",
  "test_elbo",
  "test_kl",
  "test_log_likelihood",
  "learning_rate",
  "kl_weight",
  "grad_norm",
  "examples_per_sec",
  "wall_time_sec",
)
SMOKE_FLAGS = (
  "--config=vae_jax/configs/smoke.py",
  "--config.dataset=idx",
  "--config.validation_size=64",
  "--config.batch_size=32",
  "--config.hidden_dims=16",
  "--config.eval_batch_size=128",
  "--config.final_importance_samples=20",
)
STEPS_PER_EPOCH = 14  # (512 − 64) // 32


def _subprocess_env() -> dict:
  # (The compilation cache's settings come with os.environ: see conftest.py.)
  return dict(os.environ, JAX_PLATFORMS="cpu")


def _png_size(path: str) -> tuple[int, int]:
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  assert head[12:16] == b"IHDR"
  return struct.unpack(">II", head[16:24])


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module: str, *args: str, timeout: int = 300):
  return subprocess.run(
    [sys.executable, "-m", module, *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=REPO_ROOT,
    env=_subprocess_env(),
  )


@pytest.fixture(scope="module")
def smoke_run(idx_data_dir, tmp_path_factory):
  """(workdir, completed process) of `train --config=…/smoke.py --quiet`."""
  workdir = str(tmp_path_factory.mktemp("smoke") / "run")
  result = _run(
    "experiments.train",
    *SMOKE_FLAGS,
    f"--config.data_dir={idx_data_dir}",
    f"--workdir={workdir}",
    "--quiet",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


# ------------------------------------------------------------------ configs


def _load(name: str):
  return importlib.import_module(f"vae_jax.configs.{name}")


_RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
_RECORD_NAMED = re.compile(r"\(benchmarks/results/([\w-]+)\.json\)")
# What a header must not state itself: its record holds the time, the
# machine and the rate.
_TIMING_OR_MACHINE = re.compile(
  r"EPYC|Xeon|Intel|AMD|µs|examples/s|images/s|GFLOP|\d-core|"
  r"\b\d+(\.\d+)? ?(ms|s|min|minutes|seconds|hours?)\b"
)


def _quality_records() -> list[dict]:
  found = []
  for file in sorted(os.listdir(_RESULTS_DIR)):
    with open(os.path.join(_RESULTS_DIR, file), encoding="utf-8") as f:
      record = json.load(f)
    if record["kind"] == "quality":
      found.append(record)
  return found


def _numbers_of(value) -> list[float]:
  """Every number in a record's (nested) numbers."""
  if isinstance(value, bool):
    return []
  if isinstance(value, (int, float)):
    return [float(value)]
  if isinstance(value, dict):
    value = list(value.values())
  if isinstance(value, list):
    return [n for v in value for n in _numbers_of(v)]
  return []


@pytest.mark.parametrize("name", configs.NAMES)
def test_config_header_gives_command_and_result_from_its_record(name):
  """The header gives the command, and the result in one `Result:` line
  that names its record (benchmarks/results/NAME.json, which holds the
  time, machine and date) and quotes only numbers of that record; no
  timing or machine name of its own. A config without a quality record
  says "not yet run"."""
  module = _load(name)
  doc = module.__doc__
  command = "python -m experiments.train"
  assert command in doc or "make train" in doc
  if name != "default":
    assert f"--config=vae_jax/configs/{name}.py" in doc
  timing = _TIMING_OR_MACHINE.search(doc)
  assert timing is None, f"{name}.py's header states {timing.group(0)!r}"
  lines = [line for line in doc.splitlines() if line.startswith("Result:")]
  assert len(lines) == 1, f"{name}.py: one Result: line, not {len(lines)}"
  line = lines[0]
  recorded = [
    r for r in _quality_records() if r["numbers"]["config_file"] == f"{name}.py"
  ]
  named = _RECORD_NAMED.search(line)
  if "not yet run" in line:
    assert not recorded, f"{name}.py has a record: name it"
  else:
    assert named, f"{name}.py's Result: line names no record: {line}"
    path = os.path.join(_RESULTS_DIR, f"{named.group(1)}.json")
    assert os.path.exists(path), path
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
    assert record["kind"] == "quality"
    assert record["numbers"]["config_file"] == f"{name}.py"
    values = _numbers_of(record["numbers"])
    for text in re.findall(r"-?\d+(?:\.\d+)?", line[: named.start()]):
      places = len(text.partition(".")[2])
      assert any(
        abs(v - float(text)) <= 0.5 * 10**-places + 1e-9 for v in values
      ), f"{name}.py's Result: {text} is not in {path}"
  assert os.path.exists(configs.path(name))
  validation.validate(module.get_config())


def test_paper_config_is_the_standard_vae_setting():
  paper = _load("paper").get_config()
  assert paper.latent_dim == 40 and paper.hidden_dims == (300, 300)
  assert paper.kl_warmup_epochs > 0
  assert paper.validation_size > 0 and paper.early_stopping_patience > 0


def test_configs_differ_from_default_only_where_they_say():
  default = _load("default").get_config()
  smoke = _load("smoke").get_config()
  assert set(default.keys()) == set(smoke.keys())
  changed = {k for k in default.keys() if default[k] != smoke[k]}
  assert changed == {
    "latent_dim",
    "hidden_dims",
    "epochs",
    "kl_warmup_epochs",
    "validation_size",
    "early_stopping_patience",
  }


@pytest.fixture
def parse_flags(monkeypatch):
  """Parses argv into experiments.train's flags; restores them afterwards."""
  from vae_jax import cli  # pylint: disable=g-import-not-at-top
  from vae_jax.launchers import train  # pylint: disable=g-import-not-at-top

  def parse(*argv):
    # The config flag was defined when this process had pytest's argv, so
    # the file is named explicitly for the overrides to be applied.
    if not any(a.startswith("--config=") for a in argv):
      argv = ("--config=vae_jax/configs/default.py", *argv)
    flags.FLAGS.unparse_flags()
    monkeypatch.setattr(sys, "argv", ["train", *argv])
    cli.parse_flags(["train", *argv])
    return train._CONFIG.value  # pylint: disable=protected-access

  yield parse
  flags.FLAGS.unparse_flags()


def test_overrides_change_one_setting_of_the_config_file(parse_flags):
  config = parse_flags(
    "--config=vae_jax/configs/smoke.py",
    "--config.latent_dim=3",
    "--config.epochs=5",
    "--config.hidden_dims=300,300",
  )
  smoke = _load("smoke").get_config()
  assert (config.latent_dim, config.epochs) == (3, 5)
  assert config.hidden_dims == (300, 300)
  assert config.kl_warmup_epochs == smoke.kl_warmup_epochs  # from the file
  assert parse_flags().latent_dim == _load("default").get_config().latent_dim
  assert parse_flags("--config=smoke").latent_dim == 2  # a packaged name


# ------------------------------------------------------------ run directory


def test_smoke_run_is_quiet(smoke_run):
  _, result = smoke_run
  assert result.stdout == ""
  assert "chunk" not in result.stderr  # no progress bar
  assert " loop.py:" not in result.stderr  # no INFO logs
  assert "posterior collapse" not in result.stderr  # both dimensions used


def test_config_json_records_the_run(smoke_run, idx_data_dir):
  workdir, _ = smoke_run
  stored = json.load(open(os.path.join(workdir, "config.json")))
  assert stored["config_file"] == "vae_jax/configs/smoke.py"
  settings = stored["config"]
  assert settings["data_dir"] == idx_data_dir
  assert (
    settings["latent_dim"],
    settings["hidden_dims"],
    settings["epochs"],
    settings["model"],
  ) == (2, [16], 2, "mlp")
  assert set(settings) == set(_load("default").get_config().keys())
  assert stored["data"]["image_shape"] == [28, 28, 1]


def test_metrics_jsonl_has_every_key(smoke_run):
  workdir, _ = smoke_run
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["epoch"] for r in records] == [1, 2]
  assert [r["step"] for r in records] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
  for r in records:
    assert set(METRIC_KEYS) <= set(r)
    assert all(isinstance(r[k], (int, float)) for k in METRIC_KEYS)
    assert {"test_log_px", "test_log_px_stderr"} <= set(r)
  assert tuple(records[0]) == workdir_lib.METRIC_KEYS


def test_the_last_line_has_the_importance_sampled_log_px(smoke_run):
  workdir, _ = smoke_run
  records = workdir_lib.read_metrics(workdir)
  assert all(
    r["test_log_px"] is None and r["test_log_px_stderr"] is None
    for r in records[:-1]
  )
  last = records[-1]
  assert last["test_log_px"] < 0 and last["test_log_px_stderr"] > 0


def test_tensorboard_events_read_back_with_event_accumulator(smoke_run):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top

  workdir, _ = smoke_run
  accumulator = event_accumulator.EventAccumulator(
    os.path.join(workdir, "tensorboard"),
    size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
  )
  accumulator.Reload()
  tags = accumulator.Tags()
  records = workdir_lib.read_metrics(workdir)
  assert [e.step for e in accumulator.Scalars("test_log_px")] == [
    records[-1]["step"]
  ]
  for key in (
    "train_elbo",
    "val_elbo",
    "test_elbo",
    "kl_weight",
    "learning_rate",
  ):
    events = accumulator.Scalars(key)
    assert [e.step for e in events] == [r["step"] for r in records]
    # TensorBoard stores float32: one rounding, ≤ eps/2 relative.
    assert [e.value for e in events] == pytest.approx(
      [r[key] for r in records], rel=F32_EPS
    )
  for tag in (
    "reconstructions",
    "prior_samples",
    "latent_traversals",
    "manifold",
  ):
    assert tag in tags["images"]
    image = accumulator.Images(tag)[-1]
    assert image.width > 0 and image.height > 0


def test_checkpoints_keep_the_latest_and_the_best(smoke_run):
  workdir, _ = smoke_run
  records = workdir_lib.read_metrics(workdir)
  best = max(records, key=lambda r: r["val_elbo"])
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    assert ckpts.steps() == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert ckpts.steps(checkpoints_lib.BEST) == [best["step"]]


# Pixel sizes that vae_jax.figures promises for a 2-D latent, 16
# reconstructions, 64 prior samples, 9 traversal steps, a 15×15 manifold.
FIGURE_SIZES = {
  "reconstructions": (760, 480),
  "prior_samples": (760, 800),
  "latent_space": (760, 640),
  "manifold": (40 * 15 + 170, 40 * 15 + 150),
  "latent_traversals": (56 * 9 + 220, 56 * 2 + 150),
  "training_curves": (1500, 460),
}


def test_every_figure_is_a_png_of_its_size(smoke_run):
  workdir, _ = smoke_run
  for name, size in FIGURE_SIZES.items():
    assert _png_size(os.path.join(workdir, "figures", f"{name}.png")) == size


def test_resume_with_other_settings_is_refused_in_one_line(
  smoke_run, idx_data_dir
):
  workdir, _ = smoke_run
  before = open(os.path.join(workdir, "metrics.jsonl")).read()
  result = _run(
    "experiments.train",
    *SMOKE_FLAGS,
    f"--config.data_dir={idx_data_dir}",
    f"--workdir={workdir}",
    "--config.latent_dim=3",
    "--quiet",
  )
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr
  assert "--config.latent_dim: the run has 2, this command 3" in errors[0]
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == before


# ----------------------------------------------------------------- evaluate


def test_evaluate_writes_eval_json_and_figures(smoke_run):
  workdir, _ = smoke_run
  figure = os.path.join(workdir, "figures", "reconstructions.png")
  os.remove(figure)
  result = _run(
    "experiments.evaluate", f"--workdir={workdir}", "--checkpoint=latest"
  )
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.load(open(os.path.join(workdir, "eval.json")))
  assert set(record) >= {
    "checkpoint",
    "step",
    "test_elbo",
    "test_elbo_stderr",
    "test_kl",
    "test_log_likelihood",
    "num_examples",
  }
  assert record["checkpoint"] == "latest"
  assert record["step"] == 2 * STEPS_PER_EPOCH
  assert record["num_examples"] == 256
  assert record["test_elbo_stderr"] > 0
  # The same compiled program (programs.evaluate_program) on the same
  # parameters, data and z draws as the run's own evaluation: the same
  # float32 numbers, bit for bit.
  last = workdir_lib.read_metrics(workdir)[-1]
  for key in ("test_elbo", "test_kl", "test_log_likelihood"):
    assert record[key] == last[key], key
  assert _png_size(figure) == FIGURE_SIZES["reconstructions"]  # redrawn


def test_evaluate_measures_log_px_and_the_gap(smoke_run):
  workdir, _ = smoke_run
  record = evaluate_lib.evaluate_run(
    workdir,
    "latest",
    figures=True,
    num_importance_samples=50,
    max_examples=100,
    progress=False,
  )
  assert set(record) >= {
    "test_log_px",
    "test_log_px_stderr",
    "num_importance_samples",
    "test_elbo",
    "test_gap",
    "kl_per_dim",
    "active_units",
    "max_examples",
    "importance_seconds",
  }
  assert record["num_importance_samples"] == 50
  assert record["max_examples"] == record["num_examples"] == 100
  assert len(record["kl_per_dim"]) == 2
  assert 0 <= record["active_units"] <= 2
  assert record["test_gap"] == record["test_log_px"] - record["test_elbo"]
  # Two float32 means of the same 100 × 2 KL terms, summed in other orders.
  assert abs(sum(record["kl_per_dim"]) - record["test_kl"]) <= sum_atol(
    100 * 2 + 2, record["test_kl"]
  )
  assert record["bound_vs_k"]["ks"] == [1, 5, 50]
  assert json.load(open(os.path.join(workdir, "eval.json"))) == record
  assert _png_size(os.path.join(workdir, "figures", "bound_vs_k.png")) == (
    760,
    520,
  )


@pytest.mark.parametrize(
  "args, words",
  [
    (("--num_importance_samples=0",), ("--num_importance_samples=0",)),
    (("--checkpoint=99999",), ("no checkpoint at step 99999",)),
    (("--max_examples=100000",), ("--max_examples=100000", "256")),
  ],
)
def test_evaluate_bad_input_is_one_line_and_changes_nothing(
  smoke_run, args, words
):
  workdir, _ = smoke_run
  before = (
    sorted(os.listdir(workdir)),
    open(os.path.join(workdir, "metrics.jsonl")).read(),
  )
  eval_json = os.path.join(workdir, "eval.json")
  eval_before = open(eval_json).read() if os.path.exists(eval_json) else None
  result = _run("experiments.evaluate", f"--workdir={workdir}", *args)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in result.stderr
  for word in words:
    assert word in errors[0]
  assert (
    sorted(os.listdir(workdir)),
    open(os.path.join(workdir, "metrics.jsonl")).read(),
  ) == before
  assert (
    open(eval_json).read() if os.path.exists(eval_json) else None
  ) == eval_before


def test_evaluate_refuses_a_run_without_checkpoints(smoke_run, tmp_path):
  workdir, _ = smoke_run
  empty = tmp_path / "run"
  empty.mkdir()
  (empty / "config.json").write_text(
    open(os.path.join(workdir, "config.json")).read()
  )
  result = _run("experiments.evaluate", f"--workdir={empty}")
  assert result.returncode == 2
  assert "holds no checkpoint yet" in result.stderr
  assert sorted(os.listdir(empty)) == ["config.json"]


def test_evaluate_picks_the_best_checkpoint_by_default(smoke_run):
  workdir, _ = smoke_run
  record = evaluate_lib.evaluate_run(workdir, figures=False)
  best = max(workdir_lib.read_metrics(workdir), key=lambda r: r["val_elbo"])
  assert (record["checkpoint"], record["step"]) == ("best", best["step"])


@pytest.mark.parametrize(
  "checkpoint, message",
  [
    ("12345", "no checkpoint at step 12345; it has steps 14, 28"),
    ("newest", "--checkpoint='newest' is invalid"),
  ],
)
def test_evaluate_refuses_an_unknown_checkpoint(smoke_run, checkpoint, message):
  workdir, _ = smoke_run
  with pytest.raises(ConfigError, match=message):
    evaluate_lib.evaluate_run(workdir, checkpoint, figures=False)


def test_evaluate_refuses_a_directory_without_a_run(tmp_path):
  result = _run("experiments.evaluate", f"--workdir={tmp_path / 'nothing'}")
  assert result.returncode == 2
  assert result.stderr.startswith("error: ") and "no such directory" in (
    result.stderr
  )
  assert len(result.stderr.strip().splitlines()) == 1
  with pytest.raises(ConfigError, match="holds no run"):
    evaluate_lib.evaluate_run(str(tmp_path))


# ----------------------------------------------------------------- load_run


@pytest.mark.parametrize(
  "checkpoint, series", [(None, "best"), ("latest", "latest")]
)
def test_load_run_gives_config_model_and_params(smoke_run, checkpoint, series):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  workdir, _ = smoke_run
  config, model, params = vae_jax.load_run(workdir, checkpoint)
  assert config.latent_dim == 2 and model.event_shape == (784,)
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    step = ckpts.steps(series)[-1]
  # The same parameters as the evaluation of that checkpoint uses.
  record = evaluate_lib.evaluate_run(workdir, str(step), figures=False)
  x = np.zeros((1, 784), np.float32)
  mean, _ = model.encode(params, x[0])
  assert mean.shape == (2,) and np.all(np.isfinite(mean))
  assert record["step"] == step
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
    model.init(jax.random.key(0))
  )
