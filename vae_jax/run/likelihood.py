"""How good is a trained VAE: log p(x), the gap to the ELBO, the latent usage.

`likelihood_report(model, params, images, rng, K)` measures, on a dataset:

    test_log_px          mean of log p̂_K(x_n), the importance-sampled estimate
                         (Burda et al. 2015), ± its standard error over x
    test_elbo            the ELBO of the same examples with the same keys
    test_gap             mean of log p̂_K(x_n) − ELBO(x_n) ± s.e.: the estimate of
                         KL(q(z|x) ‖ p(z|x)), the tightness of the bound
    kl_per_dim, active_units, aggregate_kl    see vae_jax.math.diagnostics

The estimate is computed a block of examples per compiled call, so a
progress bar can follow it; example n uses key fold_in(rng, n) whatever the
blocks. Nats per example; the standard errors are over the examples.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from vae_jax import evaluation
from vae_jax.math import diagnostics

__all__ = ["importance_sampled_log_px", "likelihood_report", "chunk_size_for",
           "latent_usage", "warn_if_collapsed", "bound_vs_k", "BOUND_KS"]

BOUND_KS = (1, 5, 50, 500, 5000)  # the K of figures/bound_vs_k.png

_DECODER_ROWS = 500  # z samples decoded together: the matmuls' batch
_ROWS_PER_CALL = 200_000  # z samples per compiled call (about a second)


def chunk_size_for(num_samples: int) -> int:
  """Samples per chunk of the running logsumexp: a divisor-friendly ≤ 500."""
  return min(num_samples, _DECODER_ROWS)


_log_px_program = jax.jit(
    evaluation.log_px_per_example,
    static_argnames=("model", "num_samples", "chunk_size", "batch_size"))
_elbo_program = jax.jit(
    evaluation.elbo_per_example,
    static_argnames=("model", "batch_size", "num_samples", "analytic_kl"))
_encode_program = jax.jit(evaluation.encode_all,
                          static_argnames=("model", "batch_size"))


def importance_sampled_log_px(model, params, images, rng: jax.Array,
                              num_samples: int,
                              progress: Optional[bool] = None) -> np.ndarray:
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
  padded = jnp.pad(jnp.asarray(images),
                   ((0, -(-n // block) * block - n),)
                   + ((0, 0),) * (images.ndim - 1))
  out = []
  if progress is None:
    progress = sys.stderr.isatty()
  with tqdm.tqdm(total=n, unit="example", file=sys.stderr, disable=not progress,
                 desc=f"log p(x), K={num_samples}") as bar:
    for start in range(0, n, block):
      values = _log_px_program(
          model, params, padded[start:start + block], rng,
          num_samples=num_samples, chunk_size=chunk, batch_size=vmapped,
          offset=start)
      out.append(np.asarray(values, np.float64))
      bar.update(min(block, n - start))
  return np.concatenate(out)[:n]


def _mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def latent_usage(model, params, images, batch_size: int = 1000
                 ) -> diagnostics.LatentDiagnostics:
  """KL per dimension, active units and q(z) vs p(z) over `images`."""
  means, logvars = _encode_program(model, params, images,
                                   batch_size=batch_size)
  return diagnostics.latent_diagnostics(means, logvars)


def warn_if_collapsed(active_units: int, latent_dim: int) -> bool:
  """Logs a posterior-collapse warning (< 1/4 of the dimensions active)."""
  if not diagnostics.collapsed(active_units, latent_dim):
    return False
  logging.warning(
      "posterior collapse: only %d of %d latent dimensions are active "
      "(Var_x E_q[z_d|x] > %g); the decoder ignores the others — consider KL "
      "warm-up or free bits", active_units, latent_dim,
      diagnostics.ACTIVE_THRESHOLD)
  return True


def bound_vs_k(model, params, images, rng: jax.Array, ks, elbo: np.ndarray,
               progress: Optional[bool] = None) -> dict[str, Any]:
  """log p̂_K(x) for each K of `ks` on `images`, with the ELBO of the same
  examples: the data of figures/bound_vs_k.png, JSON-ready. `stderr` is
  that of log p̂_K(x_n) − ELBO(x_n) over the examples (paired)."""
  estimates, stderrs = [], []
  for k in ks:
    values = importance_sampled_log_px(model, params, images, rng, k, progress)
    estimates.append(float(np.mean(values)))
    stderrs.append(_mean_and_stderr(values - elbo)[1])  # paired with the ELBO
  elbo_mean, elbo_se = _mean_and_stderr(elbo)
  return {"ks": [int(k) for k in ks], "log_px": estimates, "stderr": stderrs,
          "elbo": elbo_mean, "elbo_stderr": elbo_se,
          "num_examples": int(images.shape[0])}


def likelihood_report(model, params, images, rng: jax.Array,
                      num_samples: int, elbo_num_samples: int = 1,
                      batch_size: int = 1000,
                      progress: Optional[bool] = None) -> dict[str, Any]:
  """The measurements of the module docstring, as JSON-ready values."""
  start = time.perf_counter()
  log_px = importance_sampled_log_px(model, params, images, rng, num_samples,
                                     progress)
  seconds = time.perf_counter() - start
  parts = _elbo_program(model, params, images, rng, batch_size=batch_size,
                        num_samples=elbo_num_samples, analytic_kl=True)
  elbo = np.asarray(parts.elbo, np.float64)
  latent = latent_usage(model, params, images, batch_size)
  log_px_mean, log_px_se = _mean_and_stderr(log_px)
  elbo_mean, elbo_se = _mean_and_stderr(elbo)
  gap_mean, gap_se = _mean_and_stderr(log_px - elbo)
  return {
      "test_log_px": log_px_mean,
      "test_log_px_stderr": log_px_se,
      "num_importance_samples": int(num_samples),
      "test_elbo": elbo_mean,
      "test_elbo_stderr": elbo_se,
      "test_gap": gap_mean,
      "test_gap_stderr": gap_se,
      "kl_per_dim": [float(v) for v in np.asarray(latent.kl_per_dim)],
      "active_units": int(latent.active_units),
      "aggregate_kl": float(latent.aggregate_kl),
      "max_examples": int(images.shape[0]),
      "importance_seconds": seconds,
      "_log_px": log_px,  # per example, for callers; not JSON
      "_elbo": elbo,
  }
