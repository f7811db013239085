"""The launchers end to end: presets, the run directory's contract, evaluation.

One `--preset=smoke` run of experiments/train.py on tiny synthetic IDX data
(shrunk further by flags) is shared by the tests of its run directory, of
the refusal to resume it with other settings, and of experiments/evaluate.py.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest
from absl import flags

from tolerances import F32_EPS
from vae_jax import checkpoints as checkpoints_lib
from vae_jax import config as config_lib
from vae_jax import presets
from vae_jax import trainer
from vae_jax.errors import ConfigError

# The keys the issue names for every line of metrics.jsonl.
METRIC_KEYS = ("epoch", "step", "train_elbo", "train_kl", "train_log_likelihood",
               "val_elbo", "test_elbo", "test_kl", "test_log_likelihood",
               "learning_rate", "kl_weight", "grad_norm", "examples_per_sec",
               "wall_time_sec")
SMOKE_FLAGS = ("--preset=smoke", "--dataset=idx", "--validation_size=64",
               "--batch_size=32", "--hidden_dims=16", "--eval_batch_size=128")
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
  return subprocess.run([sys.executable, "-m", module, *args],
                        capture_output=True, text=True, timeout=timeout,
                        cwd=REPO_ROOT, env=_subprocess_env())


@pytest.fixture(scope="module")
def smoke_run(idx_data_dir, tmp_path_factory):
  """(workdir, completed process) of `train --preset=smoke --quiet`."""
  workdir = str(tmp_path_factory.mktemp("smoke") / "run")
  result = _run("experiments.train", *SMOKE_FLAGS,
                f"--data_dir={idx_data_dir}", f"--workdir={workdir}",
                "--quiet")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir, result


# ------------------------------------------------------------------ presets


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_preset_documents_command_time_and_result(name):
  doc = presets.PRESETS[name].__doc__
  assert f"python -m experiments.train --preset={name}" in doc
  assert "Measured" in doc
  assert ("s/epoch" in doc and "test ELBO" in doc) or "not yet measured" in doc
  config_lib.validate(config_lib.TrainConfig(**presets.get_preset(name)))


def test_paper_preset_is_the_standard_vae_setting():
  paper = config_lib.TrainConfig(**presets.get_preset("paper"))
  assert paper.latent_dim == 40 and paper.hidden_dims == (300, 300)
  assert paper.kl_warmup_epochs > 0
  assert paper.validation_size > 0 and paper.early_stopping_patience > 0


def test_unknown_preset_is_a_config_error():
  with pytest.raises(ConfigError, match="--preset='nope'.*smoke"):
    presets.get_preset("nope")


@pytest.fixture
def parse_flags():
  """Parses argv into experiments.train's flags; restores them afterwards."""
  from experiments import train  # pylint: disable=g-import-not-at-top

  def parse(*argv):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train", *argv])
    return train.config_from_flags()

  yield parse
  flags.FLAGS.unparse_flags()


def test_explicit_flags_override_the_preset(parse_flags):
  config = parse_flags("--preset=smoke", "--latent_dim=3", "--epochs=5")
  smoke = presets.get_preset("smoke")
  assert config.preset == "smoke"
  assert (config.latent_dim, config.epochs) == (3, 5)  # explicit flags win
  assert config.hidden_dims == smoke["hidden_dims"]  # from the preset
  assert config.kl_warmup_epochs == smoke["kl_warmup_epochs"]
  assert config.learning_rate == config_lib.TrainConfig().learning_rate
  # A flag given explicitly at its default value still wins.
  assert parse_flags("--preset=smoke", "--hidden_dims=500").hidden_dims == (500,)
  assert parse_flags().preset == ""


# ------------------------------------------------------------ run directory


def test_smoke_run_is_quiet(smoke_run):
  _, result = smoke_run
  assert result.stdout == ""
  assert "chunk" not in result.stderr  # no progress bar
  assert " trainer.py:" not in result.stderr  # no INFO logs


def test_config_json_records_the_run(smoke_run, idx_data_dir):
  workdir, _ = smoke_run
  stored = json.load(open(os.path.join(workdir, "config.json")))
  assert stored["preset"] == "smoke"
  assert stored["data_dir"] == idx_data_dir
  assert (stored["latent_dim"], stored["hidden_dims"], stored["epochs"]) == (
      2, [16], 2)


def test_metrics_jsonl_has_every_key(smoke_run):
  workdir, _ = smoke_run
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert [r["epoch"] for r in records] == [1, 2]
  assert [r["step"] for r in records] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
  for r in records:
    assert set(METRIC_KEYS) <= set(r)
    assert all(isinstance(r[k], (int, float)) for k in METRIC_KEYS)
  assert tuple(records[0]) == trainer.METRIC_KEYS


def test_tensorboard_events_read_back_with_event_accumulator(smoke_run):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  workdir, _ = smoke_run
  accumulator = event_accumulator.EventAccumulator(
      os.path.join(workdir, "tensorboard"),
      size_guidance={event_accumulator.SCALARS: 0,
                     event_accumulator.IMAGES: 0})
  accumulator.Reload()
  tags = accumulator.Tags()
  records = trainer.read_metrics(workdir)
  for key in ("train_elbo", "val_elbo", "test_elbo", "kl_weight",
              "learning_rate"):
    events = accumulator.Scalars(key)
    assert [e.step for e in events] == [r["step"] for r in records]
    # TensorBoard stores float32: one rounding, ≤ eps/2 relative.
    assert [e.value for e in events] == pytest.approx(
        [r[key] for r in records], rel=F32_EPS)
  for tag in ("reconstructions", "prior_samples", "latent_traversals",
              "manifold"):
    assert tag in tags["images"]
    image = accumulator.Images(tag)[-1]
    assert image.width > 0 and image.height > 0


def test_checkpoints_keep_the_latest_and_the_best(smoke_run):
  workdir, _ = smoke_run
  records = trainer.read_metrics(workdir)
  best = max(records, key=lambda r: r["val_elbo"])
  with checkpoints_lib.RunCheckpoints(os.path.join(workdir, "checkpoints"),
                                      read_only=True) as ckpts:
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
    smoke_run, idx_data_dir):
  workdir, _ = smoke_run
  before = open(os.path.join(workdir, "metrics.jsonl")).read()
  result = _run("experiments.train", *SMOKE_FLAGS, f"--data_dir={idx_data_dir}",
                f"--workdir={workdir}", "--latent_dim=3", "--quiet")
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr
  assert "--latent_dim: the run has 2, this command 3" in errors[0]
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == before


# ----------------------------------------------------------------- evaluate


def test_evaluate_writes_eval_json_and_figures(smoke_run):
  workdir, _ = smoke_run
  figure = os.path.join(workdir, "figures", "reconstructions.png")
  os.remove(figure)
  result = _run("experiments.evaluate", f"--workdir={workdir}",
                "--checkpoint=latest")
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.load(open(os.path.join(workdir, "eval.json")))
  assert set(record) >= {"checkpoint", "step", "test_elbo", "test_elbo_stderr",
                         "test_kl", "test_log_likelihood", "num_examples"}
  assert record["checkpoint"] == "latest"
  assert record["step"] == 2 * STEPS_PER_EPOCH
  assert record["num_examples"] == 256
  assert record["test_elbo_stderr"] > 0
  # The same compiled program (trainer._evaluate_program) on the same
  # parameters, data and z draws as the run's own evaluation: the same
  # float32 numbers, bit for bit.
  last = trainer.read_metrics(workdir)[-1]
  for key in ("test_elbo", "test_kl", "test_log_likelihood"):
    assert record[key] == last[key], key
  assert _png_size(figure) == FIGURE_SIZES["reconstructions"]  # redrawn


def test_evaluate_picks_the_best_checkpoint_by_default(smoke_run):
  workdir, _ = smoke_run
  record = trainer.evaluate_run(workdir, figures=False)
  best = max(trainer.read_metrics(workdir), key=lambda r: r["val_elbo"])
  assert (record["checkpoint"], record["step"]) == ("best", best["step"])


@pytest.mark.parametrize("checkpoint, message", [
    ("12345", "no checkpoint at step 12345; it has steps 14, 28"),
    ("newest", "--checkpoint='newest' is invalid"),
])
def test_evaluate_refuses_an_unknown_checkpoint(smoke_run, checkpoint, message):
  workdir, _ = smoke_run
  with pytest.raises(ConfigError, match=message):
    trainer.evaluate_run(workdir, checkpoint, figures=False)


def test_evaluate_refuses_a_directory_without_a_run(tmp_path):
  result = _run("experiments.evaluate", f"--workdir={tmp_path / 'nothing'}")
  assert result.returncode == 2
  assert result.stderr.startswith("error: ") and "no such directory" in (
      result.stderr)
  assert len(result.stderr.strip().splitlines()) == 1
  with pytest.raises(ConfigError, match="holds no run"):
    trainer.evaluate_run(str(tmp_path))
