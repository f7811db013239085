"""How good is a trained VAE on a data set: log p(x), the gap, latent usage.

The per-data-set side of the evaluation: compiled programs of
`vae_jax.evaluation.per_example` run over a data set, with host (numpy)
results. `dataset_log_px` is log p̂_K(x_n) for every example of a data set;
`vae_jax.math.objectives.importance_sampled_log_px` is that of one example.

`likelihood_report(model, params, images, rng, K)` measures, on a dataset:

    test_log_px          mean of log p̂_K(x_n), the importance-sampled estimate
                         (Burda et al. 2015), ± its standard error over x
    test_elbo            the ELBO of the same examples with the same keys
    test_gap             mean of log p̂_K(x_n) − ELBO(x_n) ± s.e.: the estimate of
                         KL(q(z|x) ‖ p(z|x)), the tightness of the bound
    kl_per_layer, active_units_per_layer      per latent layer: the KL per
                         dimension (closed form given the layer's parents;
                         null without one) and the active units
    kl_per_dim, active_units, aggregate_kl    all layers together (see
                         vae_jax.math.diagnostics); aggregate_kl is the top
                         layer's against N(0, I), null for another prior

The estimate is computed a block of examples per compiled call, so a
progress bar can follow it; example n uses key fold_in(rng, n) whatever the
blocks. Nats per example; the standard errors are over the examples.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from vae_jax.evaluation import per_example
from vae_jax.math import diagnostics
from vae_jax.math import objectives
from vae_jax.math.model import top_layer

__all__ = [
  "dataset_log_px",
  "likelihood_report",
  "chunk_size_for",
  "LayerUsage",
  "LatentUsage",
  "latent_usage",
  "usage_record",
  "warn_if_collapsed",
  "mean_and_stderr",
  "bound_vs_k",
  "BOUND_KS",
]

BOUND_KS = (1, 5, 50, 500, 5000)  # the K of figures/bound_vs_k.png

_DECODER_ROWS = 500  # z samples decoded together: the matmuls' batch
_ROWS_PER_CALL = 200_000  # z samples per compiled call (about a second)


def chunk_size_for(num_samples: int) -> int:
  """Samples per chunk of the running logsumexp: a divisor-friendly ≤ 500."""
  return min(num_samples, _DECODER_ROWS)


_log_px_program = jax.jit(
  per_example.log_px_per_example,
  static_argnames=("model", "num_samples", "chunk_size", "batch_size"),
)
_elbo_program = jax.jit(
  per_example.elbo_per_example,
  static_argnames=("model", "batch_size", "num_samples", "analytic_kl"),
)
_stats_program = jax.jit(
  per_example.posterior_stats_all, static_argnames=("model", "batch_size")
)
_kl_program = jax.jit(
  lambda model, params, images, rng, batch_size: per_example.map_examples(
    lambda x, key: objectives.closed_form_kl(model, params, x, key),
    images,
    rng,
    batch_size,
  ),
  static_argnames=("model", "batch_size"),
)
_USAGE_RNG = 0  # the key of the parents' draws of conditional layers


def dataset_log_px(
  model,
  params,
  images,
  rng: jax.Array,
  num_samples: int,
  progress: Optional[bool] = None,
) -> np.ndarray:
  """log p̂_K(x_n) for every example, `[N]` float64 on the host.

  Args:
    progress: a tqdm bar over the examples on stderr; None: when stderr is a
      terminal.
  """
  n = int(images.shape[0])
  chunk = chunk_size_for(num_samples)
  vmapped = max(1, _DECODER_ROWS // num_samples)  # examples decoded together
  block = max(vmapped, min(n, _ROWS_PER_CALL // num_samples))
  block = -(-block // vmapped) * vmapped
  padded = jnp.pad(
    jnp.asarray(images),
    ((0, -(-n // block) * block - n),) + ((0, 0),) * (images.ndim - 1),
  )
  out = []
  if progress is None:
    progress = sys.stderr.isatty()
  with tqdm.tqdm(
    total=n,
    unit="example",
    file=sys.stderr,
    disable=not progress,
    desc=f"log p(x), K={num_samples}",
  ) as bar:
    for start in range(0, n, block):
      values = _log_px_program(
        model,
        params,
        padded[start : start + block],
        rng,
        num_samples=num_samples,
        chunk_size=chunk,
        batch_size=vmapped,
        offset=start,
      )
      out.append(np.asarray(values, np.float64))
      bar.update(min(block, n - start))
  return np.concatenate(out)[:n]


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std() / math.sqrt(len(values)))


class LayerUsage(NamedTuple):
  """How one latent layer is used, over a dataset (host values)."""

  kl_per_dim: Optional[np.ndarray]  # [D] nats; None without a closed form
  active_units: int  # #{d : Var_n(E_q[z_d|x_n]) > 0.01}
  latent_dim: int


class LatentUsage(NamedTuple):
  """Every layer's usage, the top layer first, and q(z) against N(0, I)."""

  layers: dict[str, LayerUsage]
  aggregate_kl: Optional[float]  # the top layer's; None if p(z) ≠ N(0, I)

  @property
  def active_units(self) -> int:
    return sum(u.active_units for u in self.layers.values())

  @property
  def kl_per_dim(self) -> Optional[np.ndarray]:
    """All layers' KL per dimension, in order; None if one lacks it."""
    parts = [u.kl_per_dim for u in self.layers.values()]
    found = [p for p in parts if p is not None]
    return np.concatenate(found) if len(found) == len(parts) else None


def latent_usage(model, params, images, batch_size: int = 1000) -> LatentUsage:
  """KL per dimension and active units per layer, and q(z) vs p(z)."""
  rng = jax.random.key(_USAGE_RNG)
  stats = _stats_program(model, params, images, rng, batch_size=batch_size)
  kls = _kl_program(model, params, images, rng, batch_size=batch_size)
  top = top_layer(model)
  standard_prior = kls is not None and getattr(
    getattr(model, "prior_component", None), "standard_normal", False
  )
  layers, aggregate_kl = {}, None
  for name, (means, logvars) in stats.items():
    means = means.reshape(means.shape[0], -1)
    logvars = logvars.reshape(logvars.shape[0], -1)
    kl = None if kls is None else kls[name].reshape(means.shape)
    found = diagnostics.latent_diagnostics(means, logvars, kl)
    layers[name] = LayerUsage(
      kl_per_dim=None if kl is None else np.asarray(found.kl_per_dim),
      active_units=int(found.active_units),
      latent_dim=means.shape[1],
    )
    if name == top and standard_prior:
      aggregate_kl = float(found.aggregate_kl)
  return LatentUsage(layers=layers, aggregate_kl=aggregate_kl)


def warn_if_collapsed(usage: LatentUsage) -> bool:
  """Logs a posterior-collapse warning for each layer with fewer than a
  quarter of its dimensions active; True if one has."""
  found = False
  for name, layer in usage.layers.items():
    if not diagnostics.collapsed(layer.active_units, layer.latent_dim):
      continue
    found = True
    logging.warning(
      "posterior collapse in layer %s: only %d of %d latent dimensions are "
      "active (Var_x E_q[z_d|x] > %g); the decoder ignores the others — "
      "consider KL warm-up or free bits",
      name,
      layer.active_units,
      layer.latent_dim,
      diagnostics.ACTIVE_THRESHOLD,
    )
  return found


def usage_record(usage: LatentUsage) -> dict[str, Any]:
  """The eval.json keys of `usage`, JSON-ready."""
  as_list = lambda a: None if a is None else [float(v) for v in a]
  return {
    "kl_per_dim": as_list(usage.kl_per_dim),
    "active_units": usage.active_units,
    "aggregate_kl": usage.aggregate_kl,
    "kl_per_layer": {n: as_list(u.kl_per_dim) for n, u in usage.layers.items()},
    "active_units_per_layer": {
      n: u.active_units for n, u in usage.layers.items()
    },
  }


def bound_vs_k(
  model,
  params,
  images,
  rng: jax.Array,
  ks,
  elbo: np.ndarray,
  progress: Optional[bool] = None,
) -> dict[str, Any]:
  """log p̂_K(x) for each K of `ks` on `images`, with the ELBO of the same
  examples: the data of figures/bound_vs_k.png, JSON-ready. `stderr` is
  that of log p̂_K(x_n) − ELBO(x_n) over the examples (paired)."""
  estimates, stderrs = [], []
  for k in ks:
    values = dataset_log_px(model, params, images, rng, k, progress)
    estimates.append(float(np.mean(values)))
    stderrs.append(mean_and_stderr(values - elbo)[1])  # paired with the ELBO
  elbo_mean, elbo_se = mean_and_stderr(elbo)
  return {
    "ks": [int(k) for k in ks],
    "log_px": estimates,
    "stderr": stderrs,
    "elbo": elbo_mean,
    "elbo_stderr": elbo_se,
    "num_examples": int(images.shape[0]),
  }


def likelihood_report(
  model,
  params,
  images,
  rng: jax.Array,
  num_samples: int,
  elbo_num_samples: int = 1,
  batch_size: int = 1000,
  progress: Optional[bool] = None,
) -> dict[str, Any]:
  """The measurements of the module docstring, as JSON-ready values."""
  start = time.perf_counter()
  log_px = dataset_log_px(model, params, images, rng, num_samples, progress)
  seconds = time.perf_counter() - start
  parts = _elbo_program(
    model,
    params,
    images,
    rng,
    batch_size=batch_size,
    num_samples=elbo_num_samples,
    analytic_kl=True,
  )
  elbo = np.asarray(parts.elbo, np.float64)
  latent = latent_usage(model, params, images, batch_size)
  log_px_mean, log_px_se = mean_and_stderr(log_px)
  elbo_mean, elbo_se = mean_and_stderr(elbo)
  gap_mean, gap_se = mean_and_stderr(log_px - elbo)
  return {
    "test_log_px": log_px_mean,
    "test_log_px_stderr": log_px_se,
    "num_importance_samples": int(num_samples),
    "test_elbo": elbo_mean,
    "test_elbo_stderr": elbo_se,
    "test_gap": gap_mean,
    "test_gap_stderr": gap_se,
    **usage_record(latent),
    "max_examples": int(images.shape[0]),
    "importance_seconds": seconds,
    "_log_px": log_px,  # per example, for callers; not JSON
    "_elbo": elbo,
    "_usage": latent,
  }
