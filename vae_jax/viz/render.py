"""PNG figures of a trained VAE (matplotlib's Agg renderer, no display needed).

Every `save_*` function takes numpy arrays and a path, writes one titled PNG
and returns the path; none reads or changes global state. Figures are built
on `matplotlib.figure.Figure` directly, not through `pyplot`, so importing
this module does not switch the backend of a notebook that imports it, and
no figure is left registered with pyplot.

Sizes are deterministic: each figure is exactly the number of pixels its
function's docstring gives (`DPI` = 100, no `bbox_inches="tight"`), so tests
and web pages can rely on them. The scatter of posterior means is in
`vae_jax.viz.latent_space`; the arrays the figures tile, in `vae_jax.viz.grids`.

Images are `[N, H, W, C]` (C = 1 or 3) or `[N, H, W]`, with values in [0, 1].
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from vae_jax.viz.grids import image_grid

__all__ = [
  "DPI",
  "save_bound_vs_k",
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


# ---------------------------------------------------------------------------
# Figures.


def save_reconstructions(
  images: np.ndarray, reconstructions: np.ndarray, path: str, title: str = ""
) -> str:
  """Test images (top panel) above their reconstructions E[x|z], z ~ q(z|x).

  Shows the first n = min(N, 16) pairs in rows of up to 8. Size in pixels:
  width max(400, 90·cols + 40), height 180·rows + 120.
  """
  n = min(len(images), len(reconstructions), 16)
  if n == 0:
    raise ValueError("save_reconstructions needs at least one image")
  cols = min(8, n)
  rows = math.ceil(n / cols)
  fig, axes = _figure(max(400, _CELL_PX * cols + 40), 180 * rows + 120, nrows=2)
  for ax, batch, label in zip(
    axes,
    (images, reconstructions),
    ("test images x", "reconstructions E[x|z], one z ~ q(z|x) each"),
  ):
    _show(ax, image_grid(batch[:n], rows, cols, pad=1))
    ax.set_title(label, fontsize=9)
    ax.axis("off")
  fig.suptitle(title or "Reconstructions of test images", fontsize=11)
  return _save(fig, path)


def save_prior_samples(
  samples: np.ndarray, path: str, title: str = "", cols: int = 8
) -> str:
  """Decoder means E[x|z] for z ~ p(z), the model's prior.

  Size in pixels: width max(400, 90·cols + 40), height 90·rows + 80.
  """
  cols = min(cols, len(samples))
  rows = max(1, math.ceil(len(samples) / cols))
  fig, ax = _figure(max(400, _CELL_PX * cols + 40), _CELL_PX * rows + 80)
  _show(ax, image_grid(samples, rows, cols, pad=1))
  ax.axis("off")
  ax.set_title(title or "Samples from the prior: E[x|z], z ~ p(z)", fontsize=11)
  return _save(fig, path)


def save_manifold(
  images: np.ndarray, grid_values: np.ndarray, path: str, title: str = ""
) -> str:
  """Decoder means E[x|z] over an n×n grid of a 2-D latent.

  `images[r·n + c]` is decoded from z = (grid_values[c], grid_values[n−1−r]),
  the order `grids.manifold_grid(grid_values)` gives. The ticks show z₁ and
  z₂; the axis labels call them prior quantiles, which holds for the grid of
  `grids.prior_quantile_grid` under p(z) = N(0, I).
  Size in pixels: width 40·n + 170, height 40·n + 150.
  """
  values = np.asarray(grid_values, dtype=np.float64)
  n = len(values)
  if len(images) != n * n:
    raise ValueError(
      f"need {n}×{n} = {n * n} images for {n} grid values, got {len(images)}"
    )
  h, w = np.asarray(images).shape[1:3]
  pad = 1
  fig, ax = _figure(_MANIFOLD_CELL_PX * n + 170, _MANIFOLD_CELL_PX * n + 150)
  _show(ax, image_grid(images, n, n, pad=pad))
  centres_x = np.arange(n) * (w + pad) + (w - 1) / 2
  centres_y = np.arange(n) * (h + pad) + (h - 1) / 2
  ax.set_xticks(centres_x, [_tick(v) for v in values], rotation=90, fontsize=7)
  ax.set_yticks(centres_y, [_tick(v) for v in values[::-1]], fontsize=7)
  ax.set_xlabel(r"$z_1$ (prior quantiles)")
  ax.set_ylabel(r"$z_2$ (prior quantiles)")
  ax.set_title(
    title or "Learned manifold: E[x|z] over a grid of the prior's quantiles",
    fontsize=11,
  )
  return _save(fig, path)


def save_latent_traversals(
  images: np.ndarray,
  values: np.ndarray,
  path: str,
  title: str = "",
  row_labels: Optional[Sequence[str]] = None,
) -> str:
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
  _show(
    ax,
    image_grid(
      images.reshape(rows * cols, *images.shape[2:]), rows, cols, pad=pad
    ),
  )
  if row_labels is None:
    row_labels = [f"$z_{{{d + 1}}}$" for d in range(rows)]
  ax.set_xticks(
    np.arange(cols) * (w + pad) + (w - 1) / 2,
    [_tick(v) for v in values],
    fontsize=7,
  )
  ax.set_yticks(
    np.arange(rows) * (h + pad) + (h - 1) / 2, list(row_labels), fontsize=7
  )
  ax.set_xlabel("value of the traversed dimension $z_d$")
  ax.set_ylabel("latent dimension d")
  ax.set_title(
    title or "Latent traversals: E[x|z] as one $z_d$ varies", fontsize=10
  )
  return _save(fig, path)


# (panel title, [(history key, legend label)]) of `save_training_curves`.
_CURVES = (
  (
    "ELBO",
    (
      ("train_elbo", "train"),
      ("test_elbo", "test"),
      ("val_elbo", "validation"),
    ),
  ),
  (
    r"KL$(q(z|x)\,\|\,p(z))$",
    (("train_kl", "train"), ("test_kl", "test"), ("val_kl", "validation")),
  ),
  (
    r"reconstruction $E_q[\log p(x|z)]$",
    (
      ("train_log_likelihood", "train"),
      ("test_log_likelihood", "test"),
      ("val_log_likelihood", "validation"),
    ),
  ),
)
_SPLIT_STYLE = {
  "train": dict(color="tab:blue", marker="o"),
  "test": dict(color="tab:orange", marker="s"),
  "validation": dict(color="tab:green", marker="^"),
}


def save_training_curves(
  history: Sequence[Mapping[str, Optional[float]]], path: str, title: str = ""
) -> str:
  """ELBO, KL and log-likelihood per epoch, train vs test (and validation).

  `history` is one dict per epoch, as the trainer's metrics.jsonl: keys
  epoch, train_elbo, test_elbo, val_elbo, train_kl, test_kl,
  train_log_likelihood, test_log_likelihood; a missing or None value is not
  drawn (a split with no values has no line). Units: nats per example.
  1500×460 pixels.
  """
  if not history:
    raise ValueError("save_training_curves needs at least one epoch")
  epochs = np.array(
    [
      float(i + 1 if (e := r.get("epoch")) is None else e)
      for i, r in enumerate(history)
    ]
  )
  fig, axes = _figure(1500, 460, ncols=3)
  for ax, (panel, series) in zip(axes, _CURVES):
    for key, split in series:
      values = np.array(
        [np.nan if (v := r.get(key)) is None else float(v) for r in history]
      )
      if np.all(np.isnan(values)):
        continue
      ax.plot(
        epochs,
        values,
        label=split,
        markersize=4,
        linewidth=1.5,
        **_SPLIT_STYLE[split],
      )
    ax.set_title(panel, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.grid(True, alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8)
  fig.suptitle(title or "Training curves (mean per example)", fontsize=11)
  return _save(fig, path)


def save_bound_vs_k(
  ks: Sequence[int],
  estimates: Sequence[float],
  stderrs: Sequence[float],
  elbo: float,
  elbo_stderr: float,
  path: str,
  title: str = "",
) -> str:
  """The importance-sampled log p̂_K(x) against K, with the ELBO for scale.

      log p̂_K(x) = log 1/K Σ_k p(x, z_k) / q(z_k|x),  z_k ~ q(z|x; φ),

  averaged over test examples, rises with K towards log p(x) (Burda et al.,
  2016), and log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)). The gap between the
  estimate at the largest K and the ELBO is annotated as that KL: an
  estimate from below, since E[log p̂_K(x)] ≤ log p(x) for every K.

  Args:
    ks: `[M]` sample counts K ≥ 1, drawn on a log x-axis.
    estimates: `[M]` mean log p̂_K(x), nats per example.
    stderrs: `[M]` error bars: the standard errors of the mean differences
      log p̂_K(x_n) − ELBO(x_n), paired over the same examples (the spread of
      log p(x) across examples is common to every K and would hide the
      trend).
    elbo: the mean ELBO, nats per example (a horizontal line).
    elbo_stderr: its standard error over the examples (in the legend).
    path: where the PNG goes.
    title: replaces the default title.

  760×520 pixels.
  """
  x = np.asarray(ks, dtype=np.float64)
  y = np.asarray(estimates, dtype=np.float64)
  yerr = np.asarray(stderrs, dtype=np.float64)
  if x.ndim != 1 or len(x) == 0 or y.shape != x.shape or yerr.shape != x.shape:
    raise ValueError(
      f"ks, estimates and stderrs must be [M] with M > 0, got {x.shape}, "
      f"{y.shape} and {yerr.shape}"
    )
  if np.any(x < 1):
    raise ValueError(f"every K must be >= 1, got {x.tolist()}")
  order = np.argsort(x, kind="stable")  # the line runs left to right
  x, y, yerr = x[order], y[order], yerr[order]
  fig, ax = _figure(760, 520)
  ax.axhline(
    elbo,
    color="tab:orange",
    linestyle="--",
    linewidth=1.5,
    label=f"ELBO = {elbo:.2f} ± {elbo_stderr:.2f}",
  )
  ax.errorbar(
    x,
    y,
    yerr=yerr,
    color="tab:blue",
    marker="o",
    markersize=4,
    capsize=3,
    linewidth=1.5,
    label=r"$\log \hat{p}_K(x)$ ± s.e. of its difference to the "
    "ELBO (paired over examples)",
  )
  ax.set_xscale("log")
  ax.set_xticks(x, [f"{k:g}" for k in x])
  ax.minorticks_off()
  k_max, best = x[-1], y[-1]
  gap = best - elbo
  ax.annotate(
    "",
    xy=(k_max, best),
    xytext=(k_max, elbo),
    arrowprops=dict(arrowstyle="<->", color="black", linewidth=1),
  )
  ax.annotate(
    f"KL(q‖p(z|x)) ≈ {gap:.2f} nats",
    xy=(k_max, 0.5 * (best + elbo)),
    xytext=(-8, 0),
    textcoords="offset points",
    ha="right",
    va="center",
    fontsize=9,
  )
  ax.set_xlabel("importance samples K (log scale)")
  ax.set_ylabel("nats per example")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8, loc="upper left")  # the estimates rise to the right
  ax.set_title(
    title
    or r"Importance-sampled $\log \hat{p}_K(x)$ against K, "
    "and the ELBO",
    fontsize=11,
  )
  return _save(fig, path)


# ---------------------------------------------------------------------------
# Helpers.


def _figure(width_px: int, height_px: int, **subplots):
  """A figure of exactly width_px × height_px pixels at `DPI`.

  Agg truncates the size in pixels (int(inches·dpi)); the half pixel keeps
  float rounding from losing one.
  """
  fig = Figure(
    figsize=((width_px + 0.5) / DPI, (height_px + 0.5) / DPI),
    dpi=DPI,
    layout="constrained",
  )
  return fig, fig.subplots(**subplots)


def _save(fig: Figure, path: str) -> str:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = f"{path}.{os.getpid()}.tmp"  # renamed: a reader never sees half a PNG
  fig.savefig(tmp, dpi=DPI, format="png")
  os.replace(tmp, path)
  return path


def _show(ax, grid: np.ndarray) -> None:
  ax.imshow(
    np.clip(grid, 0.0, 1.0),
    cmap="gray",
    vmin=0.0,
    vmax=1.0,
    interpolation="nearest",
  )


def _tick(value: float) -> str:
  text = f"{value:.2f}"
  return "0.00" if text == "-0.00" else text
