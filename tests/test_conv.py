"""The conv VAE: its shapes, and a run that learns and resumes bit for bit.

`--config.model=conv` alone gives image-shaped examples (image_layout ''
is the model's own). The run is tiny (4 and 8 channels, 14 steps an epoch
in chunks of 5, 5, 4); a reference of 2 epochs is compared with a run
stopped after its 4th chunk (5 steps into epoch 2) and resumed, as
tests/test_experiments_resume.py does for the MLP.
"""

from __future__ import annotations

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import run_helpers
from vae_jax import validation
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.nets import conv
from vae_jax.nets import registry
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.run import loop
from vae_jax.run import programs
from vae_jax.store import workdir as workdir_lib

_TIME_KEYS = ("examples_per_sec", "wall_time_sec")
_EPS = float(np.finfo(np.float32).eps)


def _config(data_dir: str, **overrides):
  config = default.get_config()
  config.update(
    dict(
      dict(
        model="conv",
        conv_channels=(4, 8),
        hidden_dims=(16,),
        latent_dim=2,
        dataset="idx",
        data_dir=data_dir,
        validation_size=64,
        batch_size=32,
        epochs=2,
        steps_per_chunk=7,
        eval_batch_size=128,
        learning_rate=3e-3,
      ),
      **overrides,
    )
  )
  return config


def _train(config, workdir, **kwargs):
  return run_helpers.as_json(
    loop.train_and_evaluate(
      config, str(workdir), progress_bar=False, figures=False, **kwargs
    )
  )


def _latest_state(config, workdir):
  model = registry.build_model(config, (28, 28, 1))
  template = programs.init_state(
    model, programs.step_config(config), jax.random.key(0)
  )
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    state, _ = ckpts.restore(ckpts.latest_step(), template)
  return state


def _without_times(records):
  return [{k: v for k, v in r.items() if k not in _TIME_KEYS} for r in records]


@pytest.mark.parametrize(
  "shape, kernel, stride",
  [
    pytest.param((2, 28, 28, 3), 4, 2, marks=pytest.mark.slow),
    pytest.param((2, 7, 7, 5), 3, 1, marks=pytest.mark.slow),
    ((1, 9, 9, 2), 4, 2),
  ],
)
def test_patch_conv_is_flax_conv_with_same_padding(shape, kernel, stride):
  x = jax.random.normal(jax.random.key(0), shape)
  reference = nn.Conv(6, (kernel, kernel), strides=stride, padding="SAME")
  params = reference.init(jax.random.key(1), x)
  ours = conv.PatchConv(6, kernel, stride).apply(params, x)
  expected = reference.apply(params, x)
  assert ours.shape == expected.shape
  # Each output is a dot product of n = k·k·C terms: both sides are within
  # n·eps·Σ|x||w| of the exact value (Higham's bound), so within twice that
  # of each other. Σ|x||w| is the convolution of |x| with |w|.
  magnitude = reference.apply(
    jax.tree_util.tree_map(jnp.abs, params), jnp.abs(x)
  )
  n = kernel * kernel * shape[-1]
  np.testing.assert_array_less(
    np.abs(ours - expected), 2 * n * _EPS * np.asarray(magnitude) + 1e-30
  )


def test_the_conv_model_takes_28x28x1_and_32x32x3_images():
  config = default.get_config()
  config.update(
    dict(
      model="conv",
      likelihood="gaussian_learned_variance",
      conv_channels=(4, 8),
      hidden_dims=(16,),
    )
  )
  validation.validate(config)  # the default image_layout '' is allowed
  for shape in ((28, 28, 1), (32, 32, 3)):
    model = registry.build_model(config, shape)
    # Shapes only (eval_shape): nothing is compiled or run.
    params = jax.eval_shape(model.init, jax.random.key(0))
    out = jax.eval_shape(
      lambda p, x: model.decode(p, model.encode(p, x)[0]),
      params,
      jnp.zeros(shape),
    )
    assert out.shape == shape[:2] + (2 * shape[2],)  # (mean, log-variance)
    assert jax.eval_shape(model.mean_of_output, out).shape == shape
  with pytest.raises(ConfigError, match="image_layout=image"):
    registry.build_model(config, (784,))
  config.image_layout = "flat"
  with pytest.raises(ConfigError, match="--config.image_layout"):
    validation.validate(config)


@pytest.fixture(scope="module")
def reference(idx_data_dir, tmp_path_factory):
  config = _config(idx_data_dir)
  workdir = str(tmp_path_factory.mktemp("conv_reference"))
  return config, workdir, _train(config, workdir)


@pytest.mark.slow
def test_the_conv_model_learns(reference):
  _, workdir, history = reference
  assert [r["epoch"] for r in history] == [1, 2]
  stored = workdir_lib.load_config(workdir)
  assert stored.model == "conv" and stored.image_layout == ""
  # 784 binary pixels start near −543 nats; the second epoch of 14 steps
  # gains about 70 nats on these bars and squares (measured); an optimiser
  # that does not descend cannot gain 30.
  assert history[1]["test_elbo"] > history[0]["test_elbo"] + 30.0, history
  assert history[1]["train_elbo"] > history[0]["train_elbo"]


@pytest.mark.slow
def test_a_stopped_conv_run_resumes_bit_for_bit(reference, tmp_path):
  config, ref_dir, ref_history = reference

  class Stop(Exception):
    pass

  def stop_after_third_chunk(state):
    if int(state.step) == 21:  # epoch 2, after 7 of its 14 steps
      raise Stop

  with pytest.raises(Stop):
    _train(config, tmp_path, after_chunk=stop_after_third_chunk)
  assert [r["epoch"] for r in workdir_lib.read_metrics(str(tmp_path))] == [1]
  history = _train(config, tmp_path)

  a, b = _latest_state(config, str(tmp_path)), _latest_state(config, ref_dir)
  assert int(a.step) == int(b.step) == 28
  leaves_a = jax.tree_util.tree_leaves((a.params, a.opt_state))
  leaves_b = jax.tree_util.tree_leaves((b.params, b.opt_state))
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # bitwise
  assert _without_times(history) == _without_times(ref_history)
