"""Figures: every PNG is written, valid and of the size its docstring promises.

Sizes are read from the PNG's IHDR chunk; they are exact because
vae_jax.viz.render fixes figsize·dpi and never crops (no bbox_inches="tight").
These tests need no JAX: the grids of `vae_jax.viz.grids` and the PNGs of
`render` and `latent_space`. The JAX side, `figure_data`, is tested in
test_figure_data.py, which uses `png_size` and `history` from here.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from tolerances import F64_EPS
from tolerances import assert_close
from tolerances import rounding_atol
from tolerances import sum_atol
from vae_jax.viz import grids
from vae_jax.viz import latent_space
from vae_jax.viz import render
from vae_jax.viz.outputs import FASHION_MNIST_LABELS

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


def history(epochs: int, with_validation: bool) -> list[dict]:
  return [
    {
      "epoch": e + 1,
      "train_elbo": -120.0 + 5 * e,
      "test_elbo": -122.0 + 5 * e,
      "val_elbo": -121.0 + 5 * e if with_validation else None,
      "train_kl": 20.0 + e,
      "test_kl": 20.5 + e,
      "train_log_likelihood": -100.0 + 4 * e,
      "test_log_likelihood": -101.0 + 4 * e,
    }
    for e in range(epochs)
  ]


# ---------------------------------------------------------------------------
# Arrays.


def test_image_grid_tiles_row_major_with_padding():
  images = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones(
    (6, 2, 3, 1), np.float32
  )
  grid = grids.image_grid(images, rows=2, cols=4, pad=1, pad_value=-1.0)
  assert grid.shape == (2 * 2 + 1, 4 * 3 + 3)
  assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 0] == 4
  assert grid[2, 0] == -1.0  # the padding row
  assert np.all(grid[3:, 8:] == -1.0)  # cells 6 and 7 are empty


def test_image_grid_keeps_colour_channels():
  grid = grids.image_grid(np.zeros((4, 5, 5, 3)), rows=2, cols=2)
  assert grid.shape == (10, 10, 3)


def test_prior_quantile_grid_is_the_normal_inverse_cdf():
  values = grids.prior_quantile_grid(7, 0.05, 0.95)
  # Φ⁻¹ of 0.05, 0.2, 0.35 (scipy.special.ndtri), then 0 and the mirror image.
  lower = [-1.6448536269514729, -0.8416212335729143, -0.38532046640756773]
  expected = np.asarray(lower + [0.0] + [-v for v in lower[::-1]])
  # float64: linspace rounds p by ≤ 2 ulps, which moves Φ⁻¹(p) by that over
  # the density φ(z); inv_cdf (AS241) is good to ~1e-16 relative (4 ulps).
  probs = np.linspace(0.05, 0.95, 7)
  density = np.exp(-0.5 * expected**2) / math.sqrt(2 * math.pi)
  assert_close(
    values,
    expected,
    rounding_atol(2, probs / density, eps=F64_EPS)
    + rounding_atol(4, np.abs(expected), eps=F64_EPS),
  )
  assert values[3] == 0.0 and np.all(np.diff(values) > 0)


def test_prior_quantile_grid_rejects_bad_probabilities():
  with pytest.raises(ValueError):
    grids.prior_quantile_grid(5, 0.0, 0.9)


def test_manifold_grid_puts_z2_up_and_z1_right():
  z = grids.manifold_grid(np.array([-1.0, 0.0, 1.0]))
  assert z.shape == (9, 2)
  np.testing.assert_array_equal(z[0], [-1.0, 1.0])  # top left
  np.testing.assert_array_equal(z[2], [1.0, 1.0])  # top right
  np.testing.assert_array_equal(z[6], [-1.0, -1.0])  # bottom left


def test_pca_2d_finds_the_directions_of_largest_variance(rng):
  scales = np.array([5.0, 0.1, 2.0, 0.1])
  x = rng.normal(size=(4000, 4)) * scales + 3.0
  projection, explained = grids.pca_2d(x)
  assert projection.shape == (4000, 2)
  n = x.shape[0]
  # Centred data has mean 0 up to float64 rounding: the column means (n
  # terms), x − x̄, the 4-term projection on a unit vector (|vⱼ| ≤ 1), and
  # the mean of n projections.
  centred_abs = np.sum(np.mean(np.abs(x) + np.abs(x.mean(axis=0)), axis=0))
  assert_close(
    projection.mean(axis=0), 0.0, sum_atol(2 * n + 4, centred_abs, eps=F64_EPS)
  )
  # Monte Carlo. The explained ratios are those of the sample variances vₖ,
  # Var vₖ = 2σₖ⁴/n, up to the sample covariances' second-order effect on
  # the eigenvalues. Allow 5 standard errors by the delta method:
  # r = v₀/Σv has ∂r/∂vᵢ = (δ₀ᵢ·Σσ² − σ₀²)/(Σσ²)².
  variances = scales**2
  total = np.sum(variances)
  expected = variances[[0, 2]] / total
  gradient = (np.eye(4)[[0, 2]] * total - variances[[0, 2], None]) / total**2
  stderr = np.sqrt(gradient**2 @ (2 * variances**2 / n))
  # A sample covariance c₀ⱼ of 5 standard errors, 5σ₀σⱼ/√n, rotates the
  # first axis by θⱼ ≤ c₀ⱼ/(σ₀² − σⱼ²) and moves the eigenvalues by c₀ⱼθⱼ.
  covariance = 5 * scales[0] * scales / math.sqrt(n)
  theta = np.zeros(4)
  theta[1:] = covariance[1:] / (variances[0] - variances[1:])
  assert_close(
    explained, expected, 5 * stderr + np.sum(covariance * theta) / total
  )
  # The first projection is x₀ rotated by θ towards the other axes: its
  # correlation with x₀ is 1 − ½ Σⱼ θⱼ² σⱼ²/σ₀² to second order.
  correlation = np.corrcoef(projection[:, 0], x[:, 0])[0, 1]
  assert_close(
    np.abs(correlation), 1.0, 0.5 * np.sum(theta**2 * variances) / variances[0]
  )


# ---------------------------------------------------------------------------
# PNGs and their sizes.


@pytest.mark.parametrize(
  "n, channels, size",
  [
    (16, 1, (760, 480)),  # 2 rows of 8: 90·8 + 40, 180·2 + 120
    (5, 3, (490, 300)),  # 1 row of 5, colour
  ],
)
def test_save_reconstructions(tmp_path, rng, n, channels, size):
  images = rng.uniform(size=(n, 8, 8, channels))
  path = render.save_reconstructions(
    images, images**2, str(tmp_path / "sub" / "r.png")
  )
  assert path == str(tmp_path / "sub" / "r.png")
  assert png_size(path) == size


def test_save_prior_samples(tmp_path, rng):
  path = render.save_prior_samples(
    rng.uniform(size=(64, 8, 8, 1)), str(tmp_path / "p.png")
  )
  assert png_size(path) == (760, 800)  # 8×8 cells of 90 px


@pytest.mark.parametrize(
  "dim, label_kind",
  [
    (1, "int"),
    (2, None),
    (2, "continuous"),
    (5, "int"),  # PCA to 2-D
  ],
)
def test_save_latent_space(tmp_path, rng, dim, label_kind):
  n = 300
  labels = {
    "int": rng.integers(0, 10, size=n),
    "continuous": rng.normal(size=n),
    None: None,
  }[label_kind]
  path = latent_space.save_latent_space(
    rng.normal(size=(n, dim)),
    labels,
    str(tmp_path / "l.png"),
    label_names=FASHION_MNIST_LABELS,
  )
  assert png_size(path) == (760, 640)


def test_save_latent_space_rejects_mismatched_labels(tmp_path, rng):
  with pytest.raises(ValueError, match="labels"):
    latent_space.save_latent_space(
      rng.normal(size=(10, 2)), np.zeros(9), str(tmp_path / "l.png")
    )


def test_save_manifold(tmp_path, rng):
  values = grids.prior_quantile_grid(5)
  path = render.save_manifold(
    rng.uniform(size=(25, 8, 8, 1)), values, str(tmp_path / "m.png")
  )
  assert png_size(path) == (40 * 5 + 170, 40 * 5 + 150)


def test_save_manifold_needs_n_squared_images(tmp_path, rng):
  with pytest.raises(ValueError, match="25"):
    render.save_manifold(
      rng.uniform(size=(24, 8, 8, 1)),
      grids.prior_quantile_grid(5),
      str(tmp_path / "m.png"),
    )


def test_save_latent_traversals(tmp_path, rng):
  path = render.save_latent_traversals(
    rng.uniform(size=(3, 7, 8, 8, 1)),
    grids.prior_quantile_grid(7),
    str(tmp_path / "t.png"),
  )
  assert png_size(path) == (56 * 7 + 220, 56 * 3 + 150)


@pytest.mark.parametrize("epochs, with_validation", [(4, True), (1, False)])
def test_save_training_curves(tmp_path, epochs, with_validation):
  path = render.save_training_curves(
    history(epochs, with_validation), str(tmp_path / "c.png")
  )
  assert png_size(path) == (1500, 460)


@pytest.mark.parametrize("ks", [(1, 10, 100, 1000), (5000, 1, 50)])
def test_save_bound_vs_k(tmp_path, ks):
  estimates = -100.0 + np.log(np.asarray(ks, np.float64))  # rises with K
  path = render.save_bound_vs_k(
    ks,
    estimates,
    np.full(len(ks), 0.3),
    elbo=-101.5,
    elbo_stderr=0.4,
    path=str(tmp_path / "sub" / "k.png"),
    title="log p(x) of a test split",
  )
  assert path == str(tmp_path / "sub" / "k.png")
  assert png_size(path) == (760, 520)


@pytest.mark.parametrize(
  "ks, estimates, stderrs, match",
  [
    ((1, 10), (-100.0,), (0.1, 0.1), r"\[M\]"),
    ((), (), (), r"M > 0"),
    ((0, 10), (-100.0, -99.0), (0.1, 0.1), "K must be >= 1"),
  ],
)
def test_save_bound_vs_k_rejects_bad_input(
  tmp_path, ks, estimates, stderrs, match
):
  with pytest.raises(ValueError, match=match):
    render.save_bound_vs_k(
      ks, estimates, stderrs, -101.0, 0.1, str(tmp_path / "k.png")
    )
