"""Pure-numpy arrays behind the figures: image tiles, latent grids, PCA.

No matplotlib and no JAX: `figure_data` uses these to build what it decodes
and what TensorBoard shows, `render` to lay out the PNGs.

Images are `[N, H, W, C]` (C = 1 or 3) or `[N, H, W]`, with values in [0, 1].
"""

from __future__ import annotations

import statistics

import numpy as np

__all__ = ["image_grid", "manifold_grid", "pca_2d", "prior_quantile_grid"]


def image_grid(
  images: np.ndarray, rows: int, cols: int, pad: int = 0, pad_value: float = 1.0
) -> np.ndarray:
  """Tiles images row-major into one picture.

  Args:
    images: `[N, H, W]`, `[N, H, W, 1]` or `[N, H, W, 3]`; the first
      rows·cols are used, missing cells stay `pad_value`.
    rows, cols: the grid.
    pad: pixels between cells, filled with `pad_value`.
    pad_value: the colour of the padding and of empty cells.

  Returns:
    float32 `[rows·H + (rows−1)·pad, cols·W + (cols−1)·pad]`, with a trailing
    channel axis of 3 for colour images.
  """
  images = np.asarray(images, dtype=np.float32)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  if images.ndim not in (3, 4):
    raise ValueError(f"images must be [N, H, W(, C)], got {images.shape}")
  n, h, w = images.shape[:3]
  grid = np.full(
    (rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad)
    + images.shape[3:],
    pad_value,
    dtype=np.float32,
  )
  for i in range(min(n, rows * cols)):
    r, c = divmod(i, cols)
    top, left = r * (h + pad), c * (w + pad)
    grid[top : top + h, left : left + w] = images[i]
  return grid


def prior_quantile_grid(
  n: int, low: float = 0.05, high: float = 0.95
) -> np.ndarray:
  """`[n]` values of z with N(0, 1) CDF evenly spaced in [low, high].

  z_i = Φ⁻¹(low + i·(high − low)/(n − 1)), the grid of Kingma & Welling
  (2014, fig. 4): equal prior mass between neighbours, so the pictures of a
  manifold are spaced as the prior weights them. The grid assumes the
  standard normal prior p(z) = N(0, I); for another prior it is still a
  grid, but no longer of that prior's quantiles. Uses the standard library's
  exact inverse normal CDF (no scipy).
  """
  if n < 1:
    raise ValueError(f"n must be >= 1, got {n}")
  if not 0.0 < low <= high < 1.0:
    raise ValueError(f"need 0 < low <= high < 1, got low={low}, high={high}")
  probs = np.linspace(low, high, n) if n > 1 else np.array([0.5 * (low + high)])
  standard_normal = statistics.NormalDist()
  z = np.array([standard_normal.inv_cdf(float(p)) for p in probs])
  return np.where(np.abs(z) < 1e-12, 0.0, z)  # Φ⁻¹(0.5) exactly 0, not -1e-16


def manifold_grid(grid_values: np.ndarray) -> np.ndarray:
  """The latents `[n·n, 2]` that `render.save_manifold` expects, in its order.

  Row r, column c of the picture (index r·n + c) is z = (z₁, z₂) =
  (grid_values[c], grid_values[n−1−r]): z₁ grows to the right and z₂ grows
  upwards, as on a plot.
  """
  values = np.asarray(grid_values, dtype=np.float32)
  z1, z2 = np.meshgrid(values, values[::-1])
  return np.stack([z1.ravel(), z2.ravel()], axis=-1)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Projection of `x: [N, D]` on its first two principal components.

  Computed by the SVD of the centred data, X − x̄ = U S Vᵀ; each component's
  sign is fixed so its largest loading is positive, so the picture does not
  flip between runs.

  Returns:
    (projection `[N, 2]`, explained variance ratio `[2]`: s_k² / Σ_j s_j²).
  """
  x = np.asarray(x, dtype=np.float64)
  centred = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  components = vt[:2].copy()
  if components.shape[0] < 2:  # D == 1: pad with a zero component.
    components = np.concatenate([components, np.zeros_like(components)])
  largest = np.argmax(np.abs(components), axis=1)
  signs = np.sign(components[np.arange(2), largest])
  components *= np.where(signs == 0, 1.0, signs)[:, None]
  total = np.sum(s**2)
  power = np.zeros(2)
  power[: min(2, len(s))] = s[:2] ** 2
  explained = power / total if total > 0 else power
  return centred @ components.T, explained
