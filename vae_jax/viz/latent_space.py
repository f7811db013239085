"""The scatter of posterior means μ(x), coloured by label (a PNG).

Split from `vae_jax.viz.render` because of its share of label handling
(discrete colours, legends, names); it draws on render's pixel-exact
canvas, so its size is as deterministic as the other figures'.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.lines import Line2D

from vae_jax.viz.grids import pca_2d

# render's canvas, shared by every figure: exact pixel sizes, Agg, no pyplot.
from vae_jax.viz.render import _figure, _save

__all__ = ["save_latent_space"]

# Discrete colours for at most this many distinct labels, else a colour bar.
_MAX_DISCRETE_LABELS = 20


def save_latent_space(
  means: np.ndarray,
  labels: Optional[np.ndarray],
  path: str,
  label_names: Optional[Sequence[str]] = None,
  title: str = "",
) -> str:
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
    ax.set_xlabel(
      f"PC 1 of posterior means (SVD; {100 * explained[0]:.1f}% of variance)"
    )
    ax.set_ylabel(
      f"PC 2 of posterior means (SVD; {100 * explained[1]:.1f}% of variance)"
    )
    what = f"PCA of the {d}-D latent to 2-D"

  # Draw in a fixed random order so no class is painted over all the others.
  order = np.random.default_rng(0).permutation(n)
  size = 4 if n > 2000 else 10
  discrete = labels is not None and _is_discrete(labels)
  if labels is None:
    ax.scatter(
      x[order], y[order], s=size, alpha=0.6, color="tab:blue", linewidths=0
    )
  elif discrete:
    classes = np.unique(labels)
    cmap = _class_colours(len(classes))
    index = np.searchsorted(classes, labels)
    ax.scatter(
      x[order], y[order], s=size, alpha=0.7, linewidths=0, c=cmap[index[order]]
    )
    handles = [
      Line2D(
        [],
        [],
        marker="o",
        linestyle="",
        color=cmap[i],
        label=_label_name(k, label_names),
      )
      for i, k in enumerate(classes)
    ]
    ax.legend(
      handles=handles,
      title="label",
      fontsize=8,
      title_fontsize=9,
      loc="center left",
      bbox_to_anchor=(1.01, 0.5),
      frameon=False,
    )
    if d == 1:
      ax.set_yticks(
        classes, [_label_name(k, label_names) for k in classes], fontsize=8
      )
  else:
    points = ax.scatter(
      x[order],
      y[order],
      s=size,
      alpha=0.7,
      linewidths=0,
      c=labels[order].astype(np.float64),
      cmap="viridis",
    )
    fig.colorbar(points, ax=ax, label="label")
  ax.grid(True, alpha=0.3)
  ax.set_title(
    title or f"Posterior means μ(x) of {n} test images ({what})", fontsize=11
  )
  return _save(fig, path)


def _is_discrete(labels: np.ndarray) -> bool:
  integral = (
    np.issubdtype(labels.dtype, np.integer)
    or np.issubdtype(labels.dtype, np.bool_)
    or (
      np.issubdtype(labels.dtype, np.floating)
      and np.all(np.isfinite(labels))
      and np.all(labels == np.round(labels))
    )
  )
  return bool(integral) and len(np.unique(labels)) <= _MAX_DISCRETE_LABELS


def _class_colours(k: int) -> np.ndarray:
  cmap = colormaps["tab10" if k <= 10 else "tab20"]
  return np.array([cmap(i) for i in range(k)])


def _label_name(label, label_names: Optional[Sequence[str]]) -> str:
  i = int(label)
  if label_names is not None and 0 <= i < len(label_names):
    return f"{i}: {label_names[i]}"
  return str(i)
