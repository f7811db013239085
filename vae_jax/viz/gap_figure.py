"""figures/gap_decomposition.png: where log p(x) − ELBO comes from.

    log p(x) − L[q] = (log p(x) − L[q*]) + (L[q*] − L[q])
                      approximation gap    amortisation gap

Left, per image (sorted by log p(x)): the encoder's ELBO L[q], the optimised
L[q*] and log p̂(x). Right, on average: the two gaps stacked into the
inference gap, with the standard errors of the per-image differences.
"""

from __future__ import annotations

import math

import numpy as np

from vae_jax.viz.render import _figure, _save

__all__ = ["save_gap_decomposition"]

_MAX_SHOWN = 200  # images on the left panel


def save_gap_decomposition(elbo: np.ndarray, elbo_optimized: np.ndarray,
                           log_px: np.ndarray, path: str) -> str:
  """Writes the figure; `elbo`, `elbo_optimized`, `log_px` are `[N]` nats.

  1200×480 pixels.
  """
  elbo, optimized, log_px = (np.asarray(a, np.float64)
                             for a in (elbo, elbo_optimized, log_px))
  if not elbo.shape == optimized.shape == log_px.shape or elbo.ndim != 1 or (
      len(elbo) == 0):
    raise ValueError(f"elbo, elbo_optimized and log_px must be [N] with N > "
                     f"0, got {elbo.shape}, {optimized.shape}, {log_px.shape}")
  n = len(elbo)
  fig, (left, right) = _figure(1200, 480, ncols=2,
                               gridspec_kw={"width_ratios": [2, 1]})
  shown = np.argsort(log_px[:_MAX_SHOWN])
  xs = np.arange(len(shown))
  for values, label, color in ((log_px, "log p̂(x) (proposal q*)", "black"),
                               (optimized, "L[q*], q optimised per image",
                                "tab:green"),
                               (elbo, "L[q], the encoder's q", "tab:orange")):
    left.plot(xs, values[:_MAX_SHOWN][shown], marker="o", markersize=2.5,
              linewidth=0.8, color=color, label=label)
  left.set_xlabel(f"test image (first {len(shown)}, sorted by log p(x))")
  left.set_ylabel("nats")
  left.grid(True, alpha=0.3)
  left.legend(fontsize=8, loc="upper left")
  left.set_title("Per image", fontsize=10)

  approx, amort = log_px - optimized, optimized - elbo
  se = lambda a: float(a.std() / math.sqrt(n))
  right.bar([0], [amort.mean()], yerr=[se(amort)], capsize=4,
            color="tab:orange", label=f"amortisation {amort.mean():.2f} ± "
            f"{se(amort):.2f}")
  right.bar([0], [approx.mean()], bottom=[amort.mean()], yerr=[se(approx)],
            capsize=4, color="tab:green", label=f"approximation "
            f"{approx.mean():.2f} ± {se(approx):.2f}")
  total = log_px - elbo
  right.set_xticks([0], [f"inference gap\n{total.mean():.2f} ± "
                         f"{se(total):.2f} nats"])
  right.set_xlim(-1, 1)
  right.set_ylabel("nats (mean over images)")
  right.grid(True, axis="y", alpha=0.3)
  right.legend(fontsize=8, loc="upper right")
  right.set_title("On average", fontsize=10)
  fig.suptitle(f"log p(x) − ELBO = approximation + amortisation gap "
               f"({n} test images)", fontsize=11)
  return _save(fig, path)
