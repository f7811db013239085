"""PNG figures of a trained VAE (matplotlib's Agg renderer, no display needed).

Every `save_*` function takes numpy arrays and a path, writes one titled PNG
and returns the path; none reads or changes global state. Figures are built
on `matplotlib.figure.Figure` directly, not through `pyplot`, so importing
this module does not switch the backend of a notebook that imports it, and
no figure is left registered with pyplot.

Sizes are deterministic: each figure is exactly the number of pixels its
function's docstring gives (`DPI` = 100, no `bbox_inches="tight"`), so tests
and web pages can rely on them.

Images are `[N, H, W, C]` (C = 1 or 3) or `[N, H, W]`, with values in [0, 1].
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = [
    "DPI",
    "image_grid",
    "manifold_grid",
    "pca_2d",
    "prior_quantile_grid",
    "save_latent_space",
    "save_latent_traversals",
    "save_manifold",
    "save_prior_samples",
    "save_reconstructions",
    "save_training_curves",
]

DPI = 100
# Pixels per image cell in the image-grid figures.
_CELL_PX = 90
_SMALL_CELL_PX = 56
_MANIFOLD_CELL_PX = 40
# Discrete colours for at most this many distinct labels, else a colour bar.
_MAX_DISCRETE_LABELS = 20


# ---------------------------------------------------------------------------
# Arrays.


def image_grid(images: np.ndarray, rows: int, cols: int, pad: int = 0,
               pad_value: float = 1.0) -> np.ndarray:
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
  grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad)
                 + images.shape[3:], pad_value, dtype=np.float32)
  for i in range(min(n, rows * cols)):
    r, c = divmod(i, cols)
    top, left = r * (h + pad), c * (w + pad)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def prior_quantile_grid(n: int, low: float = 0.05,
                        high: float = 0.95) -> np.ndarray:
  """`[n]` values of z with N(0, 1) CDF evenly spaced in [low, high].

  z_i = Φ⁻¹(low + i·(high − low)/(n − 1)), the grid of Kingma & Welling
  (2014, fig. 4): equal prior mass between neighbours, so the pictures of a
  manifold are spaced as the prior weights them. Uses the standard library's
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
  """The latents `[n·n, 2]` that `save_manifold` expects, in its order.

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
  power[:min(2, len(s))] = s[:2]**2
  explained = power / total if total > 0 else power
  return centred @ components.T, explained


# ---------------------------------------------------------------------------
# Figures.


def save_reconstructions(images: np.ndarray, reconstructions: np.ndarray,
                         path: str, title: str = "") -> str:
  """Test images (top panel) above their reconstructions E[x|z], z ~ q(z|x).

  Shows the first n = min(N, 16) pairs in rows of up to 8. Size in pixels:
  width max(400, 90·cols + 40), height 180·rows + 120.
  """
  n = min(len(images), len(reconstructions), 16)
  if n == 0:
    raise ValueError("save_reconstructions needs at least one image")
  cols = min(8, n)
  rows = math.ceil(n / cols)
  fig, axes = _figure(max(400, _CELL_PX * cols + 40), 180 * rows + 120,
                      nrows=2)
  for ax, batch, label in zip(
      axes, (images, reconstructions),
      ("test images x", "reconstructions E[x|z], one z ~ q(z|x) each")):
    _show(ax, image_grid(batch[:n], rows, cols, pad=1))
    ax.set_title(label, fontsize=9)
    ax.axis("off")
  fig.suptitle(title or "Reconstructions of test images", fontsize=11)
  return _save(fig, path)


def save_prior_samples(samples: np.ndarray, path: str, title: str = "",
                       cols: int = 8) -> str:
  """Decoder means E[x|z] for z ~ p(z) = N(0, I).

  Size in pixels: width max(400, 90·cols + 40), height 90·rows + 80.
  """
  cols = min(cols, len(samples))
  rows = max(1, math.ceil(len(samples) / cols))
  fig, ax = _figure(max(400, _CELL_PX * cols + 40), _CELL_PX * rows + 80)
  _show(ax, image_grid(samples, rows, cols, pad=1))
  ax.axis("off")
  ax.set_title(title or "Samples from the prior: E[x|z], z ~ N(0, I)",
               fontsize=11)
  return _save(fig, path)


def save_latent_space(means: np.ndarray, labels: Optional[np.ndarray],
                      path: str, label_names: Optional[Sequence[str]] = None,
                      title: str = "") -> str:
  """Scatter of posterior means μ(x) coloured by label. 760×640 pixels.

  D = 2: z₁ against z₂. D > 2: the first two principal components of the
  means (numpy SVD, `pca_2d`), with their share of the variance on the axes.
  D = 1: μ₁ against the label (jittered) or, without labels, the index.
  Up to 20 distinct integer labels get discrete colours and a legend (named
  by `label_names` when given); other labels get a colour bar.
  """
  means = np.asarray(means, dtype=np.float64)
  if means.ndim != 2 or means.shape[0] == 0:
    raise ValueError(f"means must be [N, D] with N > 0, got {means.shape}")
  n, d = means.shape
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (n,):
      raise ValueError(f"labels must be [{n}], got {labels.shape}")

  fig, ax = _figure(760, 640)
  if d == 1:
    x = means[:, 0]
    ax.set_xlabel(r"posterior mean $\mu_1$")
    if labels is not None:
      jitter = np.random.default_rng(0).uniform(-0.3, 0.3, size=n)
      y = labels.astype(np.float64) + jitter
      ax.set_ylabel("label (jittered)")
    else:
      y = np.arange(n, dtype=np.float64)
      ax.set_ylabel("test example index")
    what = "1-D latent"
  elif d == 2:
    x, y = means[:, 0], means[:, 1]
    ax.set_xlabel(r"posterior mean $\mu_1$")
    ax.set_ylabel(r"posterior mean $\mu_2$")
    what = "2-D latent"
  else:
    projection, explained = pca_2d(means)
    x, y = projection[:, 0], projection[:, 1]
    ax.set_xlabel(f"PC 1 of posterior means (SVD; {100 * explained[0]:.1f}% "
                  "of variance)")
    ax.set_ylabel(f"PC 2 of posterior means (SVD; {100 * explained[1]:.1f}% "
                  "of variance)")
    what = f"PCA of the {d}-D latent to 2-D"

  # Draw in a fixed random order so no class is painted over all the others.
  order = np.random.default_rng(0).permutation(n)
  size = 4 if n > 2000 else 10
  discrete = labels is not None and _is_discrete(labels)
  if labels is None:
    ax.scatter(x[order], y[order], s=size, alpha=0.6, color="tab:blue",
               linewidths=0)
  elif discrete:
    classes = np.unique(labels)
    cmap = _class_colours(len(classes))
    index = np.searchsorted(classes, labels)
    ax.scatter(x[order], y[order], s=size, alpha=0.7, linewidths=0,
               c=cmap[index[order]])
    handles = [
        Line2D([], [], marker="o", linestyle="", color=cmap[i],
               label=_label_name(k, label_names))
        for i, k in enumerate(classes)
    ]
    ax.legend(handles=handles, title="label", fontsize=8, title_fontsize=9,
              loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if d == 1:
      ax.set_yticks(classes, [_label_name(k, label_names) for k in classes],
                    fontsize=8)
  else:
    points = ax.scatter(x[order], y[order], s=size, alpha=0.7, linewidths=0,
                        c=labels[order].astype(np.float64), cmap="viridis")
    fig.colorbar(points, ax=ax, label="label")
  ax.grid(True, alpha=0.3)
  ax.set_title(title or f"Posterior means μ(x) of {n} test images ({what})",
               fontsize=11)
  return _save(fig, path)


def save_manifold(images: np.ndarray, grid_values: np.ndarray, path: str,
                  title: str = "") -> str:
  """Decoder means E[x|z] over an n×n grid of a 2-D latent.

  `images[r·n + c]` is decoded from z = (grid_values[c], grid_values[n−1−r]),
  the order `manifold_grid(grid_values)` gives. The ticks show z₁ and z₂.
  Size in pixels: width 40·n + 170, height 40·n + 150.
  """
  values = np.asarray(grid_values, dtype=np.float64)
  n = len(values)
  if len(images) != n * n:
    raise ValueError(f"need {n}×{n} = {n * n} images for {n} grid values, "
                     f"got {len(images)}")
  h, w = np.asarray(images).shape[1:3]
  pad = 1
  fig, ax = _figure(_MANIFOLD_CELL_PX * n + 170, _MANIFOLD_CELL_PX * n + 150)
  _show(ax, image_grid(images, n, n, pad=pad))
  centres_x = np.arange(n) * (w + pad) + (w - 1) / 2
  centres_y = np.arange(n) * (h + pad) + (h - 1) / 2
  ax.set_xticks(centres_x, [_tick(v) for v in values], rotation=90,
                fontsize=7)
  ax.set_yticks(centres_y, [_tick(v) for v in values[::-1]], fontsize=7)
  ax.set_xlabel(r"$z_1$ (prior quantiles)")
  ax.set_ylabel(r"$z_2$ (prior quantiles)")
  ax.set_title(title or "Learned manifold: E[x|z] over a grid of the prior's "
               "quantiles", fontsize=11)
  return _save(fig, path)


def save_latent_traversals(images: np.ndarray, values: np.ndarray, path: str,
                           title: str = "",
                           row_labels: Optional[Sequence[str]] = None) -> str:
  """One row per latent dimension d, one column per value of z_d.

  Args:
    images: `[D, S, H, W(, C)]`, `images[d, s]` decoded with z_d = values[s].
    values: `[S]`, the values of the traversed dimension (column ticks).
    path: where the PNG goes.
    title: replaces the default title; say what the other dimensions are.
    row_labels: `[D]` tick labels, default z_1 … z_D.

  Size in pixels: width 56·S + 220, height 56·D + 150.
  """
  images = np.asarray(images)
  values = np.asarray(values, dtype=np.float64)
  rows, cols = images.shape[:2]
  if cols != len(values):
    raise ValueError(f"images have {cols} columns but {len(values)} values")
  h, w = images.shape[2:4]
  pad = 1
  fig, ax = _figure(_SMALL_CELL_PX * cols + 220, _SMALL_CELL_PX * rows + 150)
  _show(ax, image_grid(images.reshape(rows * cols, *images.shape[2:]), rows,
                       cols, pad=pad))
  if row_labels is None:
    row_labels = [f"$z_{{{d + 1}}}$" for d in range(rows)]
  ax.set_xticks(np.arange(cols) * (w + pad) + (w - 1) / 2,
                [_tick(v) for v in values], fontsize=7)
  ax.set_yticks(np.arange(rows) * (h + pad) + (h - 1) / 2, list(row_labels),
                fontsize=7)
  ax.set_xlabel("value of the traversed dimension $z_d$")
  ax.set_ylabel("latent dimension d")
  ax.set_title(title or "Latent traversals: E[x|z] as one $z_d$ varies",
               fontsize=10)
  return _save(fig, path)


# (panel title, [(history key, legend label)]) of `save_training_curves`.
_CURVES = (
    ("ELBO", (("train_elbo", "train"), ("test_elbo", "test"),
              ("val_elbo", "validation"))),
    (r"KL$(q(z|x)\,\|\,p(z))$", (("train_kl", "train"), ("test_kl", "test"),
                                 ("val_kl", "validation"))),
    (r"reconstruction $E_q[\log p(x|z)]$",
     (("train_log_likelihood", "train"), ("test_log_likelihood", "test"),
      ("val_log_likelihood", "validation"))),
)
_SPLIT_STYLE = {"train": dict(color="tab:blue", marker="o"),
                "test": dict(color="tab:orange", marker="s"),
                "validation": dict(color="tab:green", marker="^")}


def save_training_curves(history: Sequence[Mapping[str, Optional[float]]],
                         path: str, title: str = "") -> str:
  """ELBO, KL and log-likelihood per epoch, train vs test (and validation).

  `history` is one dict per epoch, as the trainer's metrics.jsonl: keys
  epoch, train_elbo, test_elbo, val_elbo, train_kl, test_kl,
  train_log_likelihood, test_log_likelihood; a missing or None value is not
  drawn (a split with no values has no line). Units: nats per example.
  1500×460 pixels.
  """
  if not history:
    raise ValueError("save_training_curves needs at least one epoch")
  epochs = np.array([float(r.get("epoch", i + 1))
                     for i, r in enumerate(history)])
  fig, axes = _figure(1500, 460, ncols=3)
  for ax, (panel, series) in zip(axes, _CURVES):
    for key, split in series:
      values = np.array([np.nan if r.get(key) is None else float(r[key])
                         for r in history])
      if np.all(np.isnan(values)):
        continue
      ax.plot(epochs, values, label=split, markersize=4, linewidth=1.5,
              **_SPLIT_STYLE[split])
    ax.set_title(panel, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.grid(True, alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8)
  fig.suptitle(title or "Training curves (mean per example)", fontsize=11)
  return _save(fig, path)


# ---------------------------------------------------------------------------
# Helpers.


def _figure(width_px: int, height_px: int, **subplots):
  """A figure of exactly width_px × height_px pixels at `DPI`.

  Agg truncates the size in pixels (int(inches·dpi)); the half pixel keeps
  float rounding from losing one.
  """
  fig = Figure(figsize=((width_px + 0.5) / DPI, (height_px + 0.5) / DPI),
               dpi=DPI, layout="constrained")
  return fig, fig.subplots(**subplots)


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=DPI, format="png")
  return path


def _show(ax, grid: np.ndarray) -> None:
  ax.imshow(np.clip(grid, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0,
            interpolation="nearest")


def _tick(value: float) -> str:
  text = f"{value:.2f}"
  return "0.00" if text == "-0.00" else text


def _is_discrete(labels: np.ndarray) -> bool:
  integral = (np.issubdtype(labels.dtype, np.integer)
              or np.issubdtype(labels.dtype, np.bool_)
              or (np.issubdtype(labels.dtype, np.floating)
                  and np.all(np.isfinite(labels))
                  and np.all(labels == np.round(labels))))
  return bool(integral) and len(np.unique(labels)) <= _MAX_DISCRETE_LABELS


def _class_colours(k: int) -> np.ndarray:
  cmap = colormaps["tab10" if k <= 10 else "tab20"]
  return np.array([cmap(i) for i in range(k)])


def _label_name(label, label_names: Optional[Sequence[str]]) -> str:
  i = int(label)
  if label_names is not None and 0 <= i < len(label_names):
    return f"{i}: {label_names[i]}"
  return str(i)
