"""Figures: every PNG is written, valid and of the size its docstring promises.

Sizes are read from the PNG's IHDR chunk; they are exact because
vae_jax.figures fixes figsize·dpi and never crops (no bbox_inches="tight").
The end-to-end tests run `visualize.write_all_figures` on a tiny randomly
initialised MLP VAE on random 8×8 images.
"""

from __future__ import annotations

import functools
import math
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import F64_EPS
from tolerances import assert_close
from tolerances import rounding_atol
from tolerances import sum_atol
from vae_jax import figures
from vae_jax import visualize
from vae_jax.model import make_mlp_vae

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: str) -> tuple[int, int]:
  """(width, height) of a PNG, after checking its signature and IHDR chunk."""
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
  length, kind = struct.unpack(">I4s", head[8:16])
  assert (length, kind) == (13, b"IHDR"), "the first chunk must be IHDR"
  return struct.unpack(">II", head[16:24])


@pytest.fixture
def rng() -> np.random.Generator:
  return np.random.default_rng(0)


def _history(epochs: int, with_validation: bool) -> list[dict]:
  return [{
      "epoch": e + 1,
      "train_elbo": -120.0 + 5 * e, "test_elbo": -122.0 + 5 * e,
      "val_elbo": -121.0 + 5 * e if with_validation else None,
      "train_kl": 20.0 + e, "test_kl": 20.5 + e,
      "train_log_likelihood": -100.0 + 4 * e,
      "test_log_likelihood": -101.0 + 4 * e,
  } for e in range(epochs)]


# ---------------------------------------------------------------------------
# Arrays.


def test_image_grid_tiles_row_major_with_padding():
  images = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones(
      (6, 2, 3, 1), np.float32)
  grid = figures.image_grid(images, rows=2, cols=4, pad=1, pad_value=-1.0)
  assert grid.shape == (2 * 2 + 1, 4 * 3 + 3)
  assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 0] == 4
  assert grid[2, 0] == -1.0  # the padding row
  assert np.all(grid[3:, 8:] == -1.0)  # cells 6 and 7 are empty


def test_image_grid_keeps_colour_channels():
  grid = figures.image_grid(np.zeros((4, 5, 5, 3)), rows=2, cols=2)
  assert grid.shape == (10, 10, 3)


def test_prior_quantile_grid_is_the_normal_inverse_cdf():
  values = figures.prior_quantile_grid(7, 0.05, 0.95)
  # Φ⁻¹ of 0.05, 0.2, 0.35 (scipy.special.ndtri), then 0 and the mirror image.
  lower = [-1.6448536269514729, -0.8416212335729143, -0.38532046640756773]
  expected = np.asarray(lower + [0.0] + [-v for v in lower[::-1]])
  # float64: linspace rounds p by ≤ 2 ulps, which moves Φ⁻¹(p) by that over
  # the density φ(z); inv_cdf (AS241) is good to ~1e-16 relative (4 ulps).
  probs = np.linspace(0.05, 0.95, 7)
  density = np.exp(-0.5 * expected ** 2) / math.sqrt(2 * math.pi)
  assert_close(values, expected,
               rounding_atol(2, probs / density, eps=F64_EPS)
               + rounding_atol(4, np.abs(expected), eps=F64_EPS))
  assert values[3] == 0.0 and np.all(np.diff(values) > 0)


def test_prior_quantile_grid_rejects_bad_probabilities():
  with pytest.raises(ValueError):
    figures.prior_quantile_grid(5, 0.0, 0.9)


def test_manifold_grid_puts_z2_up_and_z1_right():
  z = figures.manifold_grid(np.array([-1.0, 0.0, 1.0]))
  assert z.shape == (9, 2)
  np.testing.assert_array_equal(z[0], [-1.0, 1.0])  # top left
  np.testing.assert_array_equal(z[2], [1.0, 1.0])  # top right
  np.testing.assert_array_equal(z[6], [-1.0, -1.0])  # bottom left


def test_pca_2d_finds_the_directions_of_largest_variance(rng):
  scales = np.array([5.0, 0.1, 2.0, 0.1])
  x = rng.normal(size=(4000, 4)) * scales + 3.0
  projection, explained = figures.pca_2d(x)
  assert projection.shape == (4000, 2)
  n = x.shape[0]
  # Centred data has mean 0 up to float64 rounding: the column means (n
  # terms), x − x̄, the 4-term projection on a unit vector (|vⱼ| ≤ 1), and
  # the mean of n projections.
  centred_abs = np.sum(np.mean(np.abs(x) + np.abs(x.mean(axis=0)), axis=0))
  assert_close(projection.mean(axis=0), 0.0,
               sum_atol(2 * n + 4, centred_abs, eps=F64_EPS))
  # Monte Carlo. The explained ratios are those of the sample variances vₖ,
  # Var vₖ = 2σₖ⁴/n, up to the sample covariances' second-order effect on
  # the eigenvalues. Allow 5 standard errors by the delta method:
  # r = v₀/Σv has ∂r/∂vᵢ = (δ₀ᵢ·Σσ² − σ₀²)/(Σσ²)².
  variances = scales ** 2
  total = np.sum(variances)
  expected = variances[[0, 2]] / total
  gradient = (np.eye(4)[[0, 2]] * total - variances[[0, 2], None]) / total ** 2
  stderr = np.sqrt(gradient ** 2 @ (2 * variances ** 2 / n))
  # A sample covariance c₀ⱼ of 5 standard errors, 5σ₀σⱼ/√n, rotates the
  # first axis by θⱼ ≤ c₀ⱼ/(σ₀² − σⱼ²) and moves the eigenvalues by c₀ⱼθⱼ.
  covariance = 5 * scales[0] * scales / math.sqrt(n)
  theta = np.zeros(4)
  theta[1:] = covariance[1:] / (variances[0] - variances[1:])
  assert_close(explained, expected,
               5 * stderr + np.sum(covariance * theta) / total)
  # The first projection is x₀ rotated by θ towards the other axes: its
  # correlation with x₀ is 1 − ½ Σⱼ θⱼ² σⱼ²/σ₀² to second order.
  correlation = np.corrcoef(projection[:, 0], x[:, 0])[0, 1]
  assert_close(np.abs(correlation), 1.0,
               0.5 * np.sum(theta ** 2 * variances) / variances[0])


# ---------------------------------------------------------------------------
# PNGs and their sizes.


@pytest.mark.parametrize("n, channels, size", [
    (16, 1, (760, 480)),  # 2 rows of 8: 90·8 + 40, 180·2 + 120
    (5, 3, (490, 300)),  # 1 row of 5, colour
])
def test_save_reconstructions(tmp_path, rng, n, channels, size):
  images = rng.uniform(size=(n, 8, 8, channels))
  path = figures.save_reconstructions(images, images**2,
                                      str(tmp_path / "sub" / "r.png"))
  assert path == str(tmp_path / "sub" / "r.png")
  assert png_size(path) == size


def test_save_prior_samples(tmp_path, rng):
  path = figures.save_prior_samples(rng.uniform(size=(64, 8, 8, 1)),
                                    str(tmp_path / "p.png"))
  assert png_size(path) == (760, 800)  # 8×8 cells of 90 px


@pytest.mark.parametrize("dim, label_kind", [
    (1, "int"), (2, None), (2, "continuous"),
    (5, "int"),  # PCA to 2-D
])
def test_save_latent_space(tmp_path, rng, dim, label_kind):
  n = 300
  labels = {"int": rng.integers(0, 10, size=n),
            "continuous": rng.normal(size=n), None: None}[label_kind]
  path = figures.save_latent_space(
      rng.normal(size=(n, dim)), labels, str(tmp_path / "l.png"),
      label_names=visualize.FASHION_MNIST_LABELS)
  assert png_size(path) == (760, 640)


def test_save_latent_space_rejects_mismatched_labels(tmp_path, rng):
  with pytest.raises(ValueError, match="labels"):
    figures.save_latent_space(rng.normal(size=(10, 2)), np.zeros(9),
                              str(tmp_path / "l.png"))


def test_save_manifold(tmp_path, rng):
  values = figures.prior_quantile_grid(5)
  path = figures.save_manifold(rng.uniform(size=(25, 8, 8, 1)), values,
                               str(tmp_path / "m.png"))
  assert png_size(path) == (40 * 5 + 170, 40 * 5 + 150)


def test_save_manifold_needs_n_squared_images(tmp_path, rng):
  with pytest.raises(ValueError, match="25"):
    figures.save_manifold(rng.uniform(size=(24, 8, 8, 1)),
                          figures.prior_quantile_grid(5),
                          str(tmp_path / "m.png"))


def test_save_latent_traversals(tmp_path, rng):
  path = figures.save_latent_traversals(
      rng.uniform(size=(3, 7, 8, 8, 1)), figures.prior_quantile_grid(7),
      str(tmp_path / "t.png"))
  assert png_size(path) == (56 * 7 + 220, 56 * 3 + 150)


@pytest.mark.parametrize("epochs, with_validation", [(4, True), (1, False)])
def test_save_training_curves(tmp_path, epochs, with_validation):
  path = figures.save_training_curves(_history(epochs, with_validation),
                                      str(tmp_path / "c.png"))
  assert png_size(path) == (1500, 460)


# ---------------------------------------------------------------------------
# write_all_figures on a tiny random model.

NUM_TEST = 50
# Fewer pictures than the defaults, so the end-to-end tests stay fast.
SMALL = dict(num_reconstructions=8, num_prior_samples=16, num_traversal_steps=4,
             manifold_size=4)


@functools.lru_cache(maxsize=None)  # one model per D: compiled once per run
def _tiny_model(latent_dim: int):
  """make_mlp_vae(64, D, (16,)) with random weights of its init's shapes.

  `jax.eval_shape` traces the init without compiling it (compiling the Flax
  init costs seconds on a busy CPU); kernels ~ N(0, 1/fan_in), biases 0.
  """
  model = make_mlp_vae(data_dim=64, latent_dim=latent_dim, hidden_dims=(16,))
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  rng = np.random.default_rng(latent_dim)

  def random_like(shape):
    if len(shape.shape) == 1:
      return np.zeros(shape.shape, shape.dtype)
    return (rng.normal(size=shape.shape) / np.sqrt(shape.shape[0])).astype(
        shape.dtype)

  return model, jax.tree.map(random_like, shapes)


def _test_split():
  rng = np.random.default_rng(1)
  images = rng.uniform(size=(NUM_TEST, 64)).astype(np.float32)
  return images, rng.integers(0, 10, size=NUM_TEST)


@pytest.mark.parametrize("latent_dim, with_labels, expected", [
    (2, True, set(visualize.FIGURE_NAMES)),
    (3, False, set(visualize.FIGURE_NAMES) - {"manifold"}),
])
def test_write_all_figures(tmp_path, latent_dim, with_labels, expected):
  model, params = _tiny_model(latent_dim)
  images, labels = _test_split()
  paths = visualize.write_all_figures(
      model, params, images, labels if with_labels else None, (8, 8, 1),
      _history(3, True),
      str(tmp_path / "figures"), jax.random.key(0),
      label_names=visualize.FASHION_MNIST_LABELS, chunk_size=16, **SMALL)
  assert set(paths) == expected
  assert sorted(os.listdir(tmp_path / "figures")) == sorted(
      f"{name}.png" for name in expected)
  sizes = {  # the docstring formulas of vae_jax.figures, for SMALL
      "reconstructions": (760, 300),  # 8 pairs in 1 row
      "prior_samples": (760, 260),  # 16 samples in 2 rows
      "latent_space": (760, 640),
      "manifold": (40 * 4 + 170, 40 * 4 + 150),
      "latent_traversals": (56 * 4 + 220, 56 * latent_dim + 150),
      "training_curves": (1500, 460),
  }
  for name, path in paths.items():
    assert path == str(tmp_path / "figures" / f"{name}.png")
    assert png_size(path) == sizes[name], name


def test_compute_figure_data_rejects_unscaled_pixels():
  model, params = _tiny_model(2)
  with pytest.raises(ValueError, match="floats in"):
    visualize.compute_figure_data(model, params, np.zeros((4, 64), np.uint8),
                                  None, (8, 8, 1), jax.random.key(0))


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
  logits_abs = np.asarray(model.decode(_abs_params(params), z_abs),
                          np.float64)
  roundings = z_roundings + (model.latent_dim + 1) + 17
  return (0.25 * rounding_atol(roundings / 2, logits_abs)
          + rounding_atol(2, 1.0))


def test_figure_data_are_probabilities_of_sampled_latents():
  model, params = _tiny_model(3)
  images, labels = _test_split()
  data = visualize.compute_figure_data(
      model, params, images, labels, (8, 8, 1), jax.random.key(0),
      chunk_size=16, num_traversal_steps=5)
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
  rounding = 2 * _decoded_atol(model, params, means_abs[:16],
                               _ENCODER_ROUNDINGS).reshape(16, 8, 8, 1)
  assert np.any(np.abs(data.reconstructions - from_mean) > rounding)
  # Traversal [d, s] sets z_d = values[s], the rest at μ(x) of test image 0.
  z = np.array(means[0])
  z[1] = data.traversal_values[4]
  z_abs = means_abs[0].copy()
  z_abs[1] = abs(data.traversal_values[4])
  assert_close(data.traversals[1, 4],
               _decode_mean(model, params, z).reshape(8, 8, 1),
               2 * _decoded_atol(model, params, z_abs,
                                 _ENCODER_ROUNDINGS).reshape(8, 8, 1))
  assert data.traversals.shape == (3, 5, 8, 8, 1) and data.manifold is None
  assert "μ(x) of test image 0" in data.traversal_title


def test_traversals_around_zero_and_of_the_most_active_dimensions():
  model, params = _tiny_model(3)
  images, labels = _test_split()
  data = visualize.compute_figure_data(
      model, params, images, labels, (8, 8, 1), jax.random.key(0),
      traverse_around="zero", max_traversal_dims=2, num_traversal_steps=3)
  active = np.argsort(-data.posterior_means.var(axis=0))[:2]
  np.testing.assert_array_equal(data.traversal_dims, np.sort(active))
  assert data.traversals.shape == (2, 3, 8, 8, 1)
  np.testing.assert_array_equal(data.traversal_base, np.zeros(3))
  assert "at 0" in data.traversal_title


def test_images_for_tensorboard_shapes():
  model, params = _tiny_model(2)
  images, labels = _test_split()
  data = visualize.compute_figure_data(
      model, params, images, labels, (8, 8, 1), jax.random.key(0),
      manifold_size=4)
  grids = visualize.images_for_tensorboard(data)
  assert {k: v.shape for k, v in grids.items()} == {
      "reconstructions": (2 * 17 + 2, 71),  # 2 rows of x, gap, 2 of E[x|z]
      "prior_samples": (71, 71),  # 8×8 cells of 8 px, 1 px apart
      "latent_traversals": (17, 80),  # 2 dims × 9 values
      "manifold": (35, 35),
  }
  for grid in grids.values():
    assert grid.dtype == np.float32 and grid.min() >= 0 and grid.max() <= 1


def test_figure_data_of_every_epoch_compiles_nothing_new():
  """The trainer computes the figures' data each epoch: only the first call
  of a model and input shape may trace and compile."""
  model, params = _tiny_model(2)
  images, labels = _test_split()
  compute = lambda params, rng: visualize.compute_figure_data(  # pylint: disable=g-long-lambda
      model, params, images, labels, (8, 8, 1), rng, chunk_size=16, **SMALL)
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
