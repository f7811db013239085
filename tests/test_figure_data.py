"""Figure data: encode/decode of the figures, and the PNGs of a whole run.

`vae_jax.viz.figure_data` on a tiny randomly initialised MLP VAE on random
8×8 images, and on a model that takes one `[H, W, C]` image at a time, as a
conv net does (encode and decode run under `jax.vmap`).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from test_figures import history as _history, png_size
from tolerances import assert_close
from tolerances import rounding_atol
from vae_jax.math import distributions
from vae_jax.math import priors
from vae_jax.math.gaussian_vae import GaussianVAE
from vae_jax.nets.mlp import MLPVAE, make_mlp_vae
from vae_jax.viz import figure_data

NUM_TEST = 50
# Fewer pictures than the defaults, so the end-to-end tests stay fast.
SMALL = dict(
  num_reconstructions=8,
  num_prior_samples=16,
  num_traversal_steps=4,
  manifold_size=4,
)


@functools.lru_cache(maxsize=None)  # one model per D: compiled once per run
def _tiny_model(latent_dim: int, num_pseudo_inputs: int = 0):
  """make_mlp_vae(64, D, (16,)) with random weights of its init's shapes;
  with a VampPrior of that many pseudo-inputs if `num_pseudo_inputs` > 0.

  `jax.eval_shape` traces the init without compiling it (compiling the Flax
  init costs seconds on a busy CPU); kernels ~ N(0, 1/fan_in), biases 0.
  """
  model = make_mlp_vae(data_dim=64, latent_dim=latent_dim, hidden_dims=(16,))
  if num_pseudo_inputs:
    model = dataclasses.replace(
      model, prior=priors.VampPrior(latent_dim, (64,), num_pseudo_inputs)
    )
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  rng = np.random.default_rng(latent_dim)

  def random_like(shape):
    if len(shape.shape) == 1:
      return np.zeros(shape.shape, shape.dtype)
    return (rng.normal(size=shape.shape) / np.sqrt(shape.shape[0])).astype(
      shape.dtype
    )

  return model, jax.tree.map(random_like, shapes)


def _test_split():
  rng = np.random.default_rng(1)
  images = rng.uniform(size=(NUM_TEST, 64)).astype(np.float32)
  return images, rng.integers(0, 10, size=NUM_TEST)


_STANDARD_PRIOR_FIGURES = set(figure_data.FIGURE_NAMES) - {"pseudo_inputs"}


@pytest.mark.slow
@pytest.mark.parametrize(
  "latent_dim, with_labels, num_pseudo_inputs, expected",
  [
    (2, True, 0, _STANDARD_PRIOR_FIGURES),
    (3, False, 0, _STANDARD_PRIOR_FIGURES - {"manifold"}),
    (3, False, 10, set(figure_data.FIGURE_NAMES) - {"manifold"}),
  ],
)
def test_write_all_figures(
  tmp_path, latent_dim, with_labels, num_pseudo_inputs, expected
):
  model, params = _tiny_model(latent_dim, num_pseudo_inputs)
  images, labels = _test_split()
  paths = figure_data.write_all_figures(
    model,
    params,
    images,
    labels if with_labels else None,
    (8, 8, 1),
    _history(3, True),
    str(tmp_path / "figures"),
    jax.random.key(0),
    label_names=figure_data.FASHION_MNIST_LABELS,
    chunk_size=16,
    **SMALL,
  )
  assert set(paths) == expected
  assert sorted(os.listdir(tmp_path / "figures")) == sorted(
    f"{name}.png" for name in expected
  )
  sizes = {  # the docstring formulas of vae_jax.viz.render, for SMALL
    "reconstructions": (760, 300),  # 8 pairs in 1 row
    "prior_samples": (760, 260),  # 16 samples in 2 rows
    "latent_space": (760, 640),
    "manifold": (40 * 4 + 170, 40 * 4 + 150),
    "latent_traversals": (56 * 4 + 220, 56 * latent_dim + 150),
    "training_curves": (1500, 460),
    "pseudo_inputs": (760, 260),  # 10 pseudo-inputs in 2 rows of 8
  }
  for name, path in paths.items():
    assert path == str(tmp_path / "figures" / f"{name}.png")
    assert png_size(path) == sizes[name], name


def test_compute_figure_data_rejects_unscaled_pixels():
  model, params = _tiny_model(2)
  with pytest.raises(ValueError, match="floats in"):
    figure_data.compute_figure_data(
      model,
      params,
      np.zeros((4, 64), np.uint8),
      None,
      (8, 8, 1),
      jax.random.key(0),
    )


def _decode_mean(model, params, z):
  return np.asarray(model.mean_of_output(model.decode(params, jnp.asarray(z))))


# Float32 rounding of the tiny MLP VAE (tests/tolerances.py). Its
# absolute-valued evaluation is the network itself on |params| and |input|:
# ReLU(|a|) = |a|, and ReLU passes an error on unchanged at most. Roundings
# of u on the longest path: the encoder's 64- and 16-term products with
# biases (65 + 17); the decoder's D- and 16-term products with biases.
_ENCODER_ROUNDINGS = 65 + 17


def _abs_params(params):
  return jax.tree.map(np.abs, params)


def _encoder_atol(model, params, images):
  """(Bound on the float32 μ(x), μ's absolute-valued evaluation)."""
  mean_abs, _ = model.encode(_abs_params(params), np.abs(images))
  mean_abs = np.asarray(mean_abs, np.float64)
  return rounding_atol(_ENCODER_ROUNDINGS / 2, mean_abs), mean_abs


def _decoded_atol(model, params, z_abs, z_roundings):
  """Bound on the float32 sigmoid(decoder(z)) for z with its own roundings.

  The logits carry z's roundings and the decoder's; the sigmoid's slope is
  ≤ ¼ and it adds 2 operations on a value ≤ 1.
  """
  logits_abs = np.asarray(model.decode(_abs_params(params), z_abs), np.float64)
  roundings = z_roundings + (model.latent_dim + 1) + 17
  return 0.25 * rounding_atol(roundings / 2, logits_abs) + rounding_atol(2, 1.0)


@pytest.mark.slow
def test_figure_data_are_probabilities_of_sampled_latents():
  model, params = _tiny_model(3)
  images, labels = _test_split()
  data = figure_data.compute_figure_data(
    model,
    params,
    images,
    labels,
    (8, 8, 1),
    jax.random.key(0),
    chunk_size=16,
    num_traversal_steps=5,
  )
  means, logvars = model.encode(params, images)
  # Chunked (padded) encoding gives the means of one big call: two float32
  # programs, each within the encoder's bound.
  means_atol, means_abs = _encoder_atol(model, params, images)
  assert_close(data.posterior_means, means, 2 * means_atol)
  assert data.images.shape == data.reconstructions.shape == (16, 8, 8, 1)
  for array in (data.reconstructions, data.prior_samples, data.traversals):
    assert np.all((array >= 0) & (array <= 1))  # sigmoid, not logits
  # z ~ q(z|x) is sampled: reconstructions are not those of z = μ, beyond
  # what rounding alone could do to decoding μ twice.
  from_mean = _decode_mean(model, params, means[:16]).reshape(16, 8, 8, 1)
  rounding = 2 * _decoded_atol(
    model, params, means_abs[:16], _ENCODER_ROUNDINGS
  ).reshape(16, 8, 8, 1)
  assert np.any(np.abs(data.reconstructions - from_mean) > rounding)
  # Traversal [d, s] sets z_d = values[s], the rest at μ(x) of test image 0.
  z = np.array(means[0])
  z[1] = data.traversal_values[4]
  z_abs = means_abs[0].copy()
  z_abs[1] = abs(data.traversal_values[4])
  assert_close(
    data.traversals[1, 4],
    _decode_mean(model, params, z).reshape(8, 8, 1),
    2
    * _decoded_atol(model, params, z_abs, _ENCODER_ROUNDINGS).reshape(8, 8, 1),
  )
  assert data.traversals.shape == (3, 5, 8, 8, 1) and data.manifold is None
  assert "μ(x) of test image 0" in data.traversal_title


@pytest.mark.slow
def test_traversals_around_zero_and_of_the_most_active_dimensions():
  model, params = _tiny_model(3)
  images, labels = _test_split()
  data = figure_data.compute_figure_data(
    model,
    params,
    images,
    labels,
    (8, 8, 1),
    jax.random.key(0),
    traverse_around="zero",
    max_traversal_dims=2,
    num_traversal_steps=3,
  )
  active = np.argsort(-data.posterior_means.var(axis=0))[:2]
  np.testing.assert_array_equal(data.traversal_dims, np.sort(active))
  assert data.traversals.shape == (2, 3, 8, 8, 1)
  np.testing.assert_array_equal(data.traversal_base, np.zeros(3))
  assert "at 0" in data.traversal_title


@dataclasses.dataclass(frozen=True)
class _ShiftedPrior:
  """p(z) = N(3, I): a prior component of the test's own."""

  latent_dim: int
  standard_normal = False
  uses_encoder = False
  learned = False

  def log_prob(self, prior_params, z):
    return distributions.standard_normal_log_prob(z - 3.0)

  def sample(self, prior_params, rng, num):
    return 3.0 + jax.random.normal(rng, (num, self.latent_dim))


@dataclasses.dataclass(frozen=True)
class _OneImageModel(GaussianVAE):
  """Takes one `[8, 8, 1]` image (asserted), as a conv net would; the tiny
  MLP inside, and a prior of its own: z ~ N(3, I)."""

  mlp: MLPVAE
  event_shape: tuple = (8, 8, 1)

  @property
  def prior(self):
    return _ShiftedPrior(self.latent_dim)

  @property
  def latent_dim(self):
    return self.mlp.latent_dim

  def encode(self, params, x):
    assert x.shape == self.event_shape, x.shape  # one example, under vmap
    return self.mlp.encode(params, x.reshape(-1))

  def decode(self, params, z):
    assert z.shape == (self.latent_dim,), z.shape
    return self.mlp.decode(params, z).reshape(self.event_shape)

  def log_likelihood(self, output, x):
    return self.mlp.log_likelihood(output.reshape(-1), x.reshape(-1))

  def mean_of_output(self, output):
    return self.mlp.mean_of_output(output)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["flat", "image"])
def test_figure_data_of_a_model_of_one_image(layout):
  """vmap over examples: images flat or [N, H, W, C], the model sees one."""
  mlp, params = _tiny_model(3)
  model = _OneImageModel(mlp)
  images, labels = _test_split()
  if layout == "image":
    images = images.reshape(-1, 8, 8, 1)
  data = figure_data.compute_figure_data(
    model,
    params,
    images,
    labels,
    (8, 8, 1),
    jax.random.key(0),
    chunk_size=16,
    **SMALL,
  )
  flat = images.reshape(len(images), -1)
  means, _ = mlp.encode(params, flat)
  means_atol, _ = _encoder_atol(mlp, params, flat)
  assert_close(data.posterior_means, means, 2 * means_atol)
  assert data.images.shape == data.reconstructions.shape == (8, 8, 8, 1)
  assert data.prior_samples.shape == (16, 8, 8, 1)
  # The prior samples are E[x|z] of the model's own prior, not of N(0, I).
  _, prior_rng = jax.random.split(jax.random.key(0))
  z = model.sample_prior(params, prior_rng, 16)["z"]
  # The same draws z (exact), decoded by two float32 programs.
  assert_close(
    data.prior_samples,
    _decode_mean(mlp, params, z).reshape(16, 8, 8, 1),
    2
    * _decoded_atol(mlp, params, np.abs(np.asarray(z)), 0).reshape(16, 8, 8, 1),
  )


def test_figure_data_checks_the_size_of_an_example():
  model, params = _tiny_model(2)
  with pytest.raises(ValueError, match="does not hold"):
    figure_data.compute_figure_data(
      model, params, np.zeros((4, 8, 7, 1)), None, (8, 7, 1), jax.random.key(0)
    )


@pytest.mark.slow
def test_images_for_tensorboard_shapes():
  model, params = _tiny_model(2)
  images, labels = _test_split()
  data = figure_data.compute_figure_data(
    model, params, images, labels, (8, 8, 1), jax.random.key(0), manifold_size=4
  )
  tiles = figure_data.images_for_tensorboard(data)
  assert {k: v.shape for k, v in tiles.items()} == {
    "reconstructions": (2 * 17 + 2, 71),  # 2 rows of x, gap, 2 of E[x|z]
    "prior_samples": (71, 71),  # 8×8 cells of 8 px, 1 px apart
    "latent_traversals": (17, 80),  # 2 dims × 9 values
    "manifold": (35, 35),
  }
  for grid in tiles.values():
    assert grid.dtype == np.float32 and grid.min() >= 0 and grid.max() <= 1


@pytest.mark.slow
def test_figure_data_of_every_epoch_compiles_nothing_new():
  """The trainer computes the figures' data each epoch: only the first call
  of a model and input shape may trace and compile."""
  model, params = _tiny_model(2)
  images, labels = _test_split()
  compute = lambda params, rng: figure_data.compute_figure_data(  # pylint: disable=g-long-lambda
    model, params, images, labels, (8, 8, 1), rng, chunk_size=16, **SMALL
  )
  compute(params, jax.random.key(0))
  lowered = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
      lowered.append(event)

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    # Another epoch: other parameters and key, the same shapes.
    compute(jax.tree.map(lambda p: p * 0.5, params), jax.random.key(1))
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
  assert not lowered
