"""figures/gap_decomposition.png: where log p(x) − ELBO comes from.

    log p(x) − L[q] = (log p(x) − L[q*]) + (L[q*] − L[q])
                      approximation gap    amortisation gap

Left, per image (sorted by the inference gap), relative to the image's own
log p̂(x): the encoder's ELBO L[q] and the optimised L[q*], the two gaps
between them. Right, on average: the two gaps stacked into the inference
gap, with the standard errors of the per-image differences.
"""

from __future__ import annotations

import math

import numpy as np

from vae_jax.viz.render import _figure, _save

__all__ = ["save_gap_decomposition"]


def save_gap_decomposition(
  elbo: np.ndarray, elbo_optimized: np.ndarray, log_px: np.ndarray, path: str
) -> str:
  """Writes the figure; `elbo`, `elbo_optimized`, `log_px` are `[N]` nats.

  1200×480 pixels.
  """
  elbo, optimized, log_px = (
    np.asarray(a, np.float64) for a in (elbo, elbo_optimized, log_px)
  )
  if (
    not elbo.shape == optimized.shape == log_px.shape
    or elbo.ndim != 1
    or (len(elbo) == 0)
  ):
    raise ValueError(
      f"elbo, elbo_optimized and log_px must be [N] with N > "
      f"0, got {elbo.shape}, {optimized.shape}, {log_px.shape}"
    )
  n = len(elbo)
  fig, (left, right) = _figure(
    1200, 480, ncols=2, gridspec_kw={"width_ratios": [2, 1]}
  )
  # Per image, relative to its own log p(x): the levels of log p(x) differ
  # by hundreds of nats between images, the gaps by a few.
  order = np.argsort(log_px - elbo)
  xs = np.arange(n)
  below_q = (elbo - log_px)[order]  # −(inference gap)
  below_star = (optimized - log_px)[order]  # −(approximation gap)
  left.fill_between(
    xs,
    below_q,
    below_star,
    color="tab:orange",
    alpha=0.6,
    linewidth=0,
    label="amortisation gap L[q*] − L[q]",
  )
  left.fill_between(
    xs,
    below_star,
    0.0,
    color="tab:green",
    alpha=0.6,
    linewidth=0,
    label="approximation gap log p(x) − L[q*]",
  )
  left.plot(
    xs,
    below_q,
    color="tab:orange",
    linewidth=0.8,
    label="L[q], the encoder's q",
  )
  left.plot(
    xs,
    below_star,
    color="tab:green",
    linewidth=0.8,
    label="L[q*], q optimised per image",
  )
  left.axhline(0.0, color="black", linewidth=1.0, label="log p̂(x), proposal q*")
  left.set_xlabel(f"test image ({n}, sorted by their inference gap)")
  left.set_ylabel("nats, relative to each image's log p(x)")
  left.grid(True, alpha=0.3)
  left.legend(fontsize=8, loc="lower left")
  left.set_title("Per image", fontsize=10)

  approx, amort = log_px - optimized, optimized - elbo
  se = lambda a: float(a.std() / math.sqrt(n))
  right.bar(
    [0],
    [amort.mean()],
    yerr=[se(amort)],
    capsize=4,
    color="tab:orange",
    label=f"amortisation {amort.mean():.2f} ± {se(amort):.2f}",
  )
  right.bar(
    [0],
    [approx.mean()],
    bottom=[amort.mean()],
    yerr=[se(approx)],
    capsize=4,
    color="tab:green",
    label=f"approximation {approx.mean():.2f} ± {se(approx):.2f}",
  )
  total = log_px - elbo
  right.set_xticks(
    [0], [f"inference gap\n{total.mean():.2f} ± {se(total):.2f} nats"]
  )
  right.set_xlim(-1, 1)
  right.set_ylabel("nats (mean over images)")
  right.grid(True, axis="y", alpha=0.3)
  right.legend(fontsize=8, loc="upper right")
  right.set_title("On average", fontsize=10)
  fig.suptitle(
    f"log p(x) − ELBO = approximation + amortisation gap ({n} test images)",
    fontsize=11,
  )
  return _save(fig, path)
