"""Models by name: a user's own model trains through the launcher like the MLP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import vae_jax
from conftest import REPO_ROOT
from vae_jax import names
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.nets import registry

_TESTS = os.path.dirname(os.path.abspath(__file__))


def _run(*args: str):
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join([_TESTS, os.environ.get("PYTHONPATH", "")]),
  )
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


@pytest.fixture(scope="module")
def custom_run(idx_data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("custom") / "run")
  result = _run(
    "experiments.train",
    "--config=vae_jax/configs/smoke.py",
    "--config.model=toy_models:linear_image_vae",
    "--config.image_layout=image",
    "--config.dataset=idx",
    f"--config.data_dir={idx_data_dir}",
    "--config.batch_size=32",
    "--config.validation_size=64",
    "--config.eval_batch_size=128",
    f"--workdir={workdir}",
    "--quiet",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_a_custom_model_writes_a_normal_run_directory(custom_run):
  names = set(os.listdir(custom_run))
  assert {
    "config.json",
    "metrics.jsonl",
    "checkpoints",
    "figures",
    "tensorboard",
  } <= names
  stored = json.load(open(os.path.join(custom_run, "config.json")))
  assert stored["config"]["model"] == "toy_models:linear_image_vae"
  records = [
    json.loads(l) for l in open(os.path.join(custom_run, "metrics.jsonl"))
  ]
  assert [r["epoch"] for r in records] == [1, 2]
  assert records[-1]["test_elbo"] > records[0]["test_elbo"] - 5.0
  figures = set(os.listdir(os.path.join(custom_run, "figures")))
  assert {
    "reconstructions.png",
    "prior_samples.png",
    "latent_space.png",
    "manifold.png",
    "training_curves.png",
  } <= figures


@pytest.mark.slow
def test_a_custom_model_is_evaluated_and_loaded(custom_run, monkeypatch):
  result = _run(
    "experiments.evaluate",
    f"--workdir={custom_run}",
    "--checkpoint=latest",
    "--nofigures",
    "--quiet",
    # The protocol is under test, not the estimator: a small K.
    "--num_importance_samples=50",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.load(open(os.path.join(custom_run, "eval.json")))
  last = json.loads(
    open(os.path.join(custom_run, "metrics.jsonl")).readlines()[-1]
  )
  # The run's own evaluation program, parameters and keys: bit for bit.
  assert record["test_elbo"] == last["test_elbo"]
  monkeypatch.syspath_prepend(_TESTS)
  config, model, params = vae_jax.load_run(custom_run)
  assert model.event_shape == (28, 28, 1) and config.latent_dim == 2
  assert set(params) == {"encoder", "decoder"}


@pytest.mark.parametrize(
  "name, message",
  [
    ("toy_models:not_a_model", "lacks the model protocol's init"),
    ("toy_models:nosuch", "has no function 'nosuch'"),
    ("nosuch_module:f", "no module 'nosuch_module'"),
    ("nosuch", "choose one of ['conv', 'conv_hvae', 'hvae', 'ladder', 'mlp']"),
  ],
)
def test_a_bad_model_name_is_a_config_error(name, message, monkeypatch):
  monkeypatch.syspath_prepend(_TESTS)
  config = default.get_config()
  config.model = name
  with pytest.raises(
    ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")
  ):
    registry.build_model(config, (784,))


def test_the_mlp_refuses_image_shaped_examples():
  with pytest.raises(ConfigError, match="image_layout=flat"):
    registry.build_model(default.get_config(), (28, 28, 1))


@pytest.mark.parametrize(
  "model, layout",
  [("mlp", "flat"), ("conv", "image"), ("toy_models:linear_image_vae", "flat")],
)
def test_an_unset_image_layout_is_the_models_own(model, layout):
  assert names.resolve_image_layout(model, "") == layout
  assert names.resolve_image_layout(model, "image") == "image"
  assert set(names.MODEL_LAYOUTS) == set(registry.MODELS)


def test_equal_configs_build_equal_models():
  a = registry.build_model(default.get_config(), (784,))
  b = registry.build_model(default.get_config(), (784,))
  assert a == b and hash(a) == hash(b)  # compiled programs are shared
