"""PNG figures of a trained VAE (matplotlib, Agg backend, no display needed).

Every function takes numpy arrays and a path, writes one titled PNG and
returns the path; none reads global state.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["image_grid", "save_reconstructions", "save_prior_samples"]


def image_grid(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """`[rows·cols, H, W]` or `[..., H, W, 1]` → one `[rows·H, cols·W]` image."""
  images = np.asarray(images)
  if images.ndim == 4:
    images = images[..., 0]
  n, h, w = images.shape
  grid = np.ones((rows * h, cols * w), dtype=np.float32)
  for i in range(min(n, rows * cols)):
    r, c = divmod(i, cols)
    grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
  return grid


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def save_reconstructions(images: np.ndarray, reconstructions: np.ndarray,
                         path: str, title: str = "") -> str:
  """Test images (top rows) above their reconstructions E[x|z], z ~ q(z|x)."""
  n = min(len(images), 16)
  cols = 8
  rows = max(1, n // cols)
  top = image_grid(images[:rows * cols], rows, cols)
  bottom = image_grid(reconstructions[:rows * cols], rows, cols)
  fig, axes = plt.subplots(2, 1, figsize=(cols * 0.9, rows * 2 * 0.9 + 0.8))
  for ax, grid, label in zip(axes, (top, bottom),
                             ("test images x", "reconstructions E[x|z], z ~ q(z|x)")):
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(label, fontsize=9)
    ax.axis("off")
  fig.suptitle(title or "Reconstructions", fontsize=10)
  fig.tight_layout()
  return _save(fig, path)


def save_prior_samples(samples: np.ndarray, path: str, title: str = "",
                       cols: int = 8) -> str:
  """Decoder means E[x|z] for z ~ p(z) = N(0, I)."""
  rows = max(1, len(samples) // cols)
  grid = image_grid(samples, rows, cols)
  fig, ax = plt.subplots(figsize=(cols * 0.9, rows * 0.9 + 0.5))
  ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  ax.axis("off")
  ax.set_title(title or "Samples from the prior, E[x|z], z ~ N(0, I)",
               fontsize=10)
  fig.tight_layout()
  return _save(fig, path)
