"""Evaluation of a VAE: per example (pure JAX) and per data set (on the host).

    per_example   one value per example, jit-able, `[N]` arrays:
                  elbo_per_example, log_px_per_example, posterior_stats_all,
                  map_examples; evaluate → EvalResult (the ELBO's mean ± s.e.)
    dataset       a data set through compiled programs, numpy results:
                  dataset_log_px (log p̂_K(x_n) of every example),
                  likelihood_report, latent_usage, bound_vs_k, mean_and_stderr
    gap           the gap decomposition over a data set (eval.json's gap keys,
                  the figure): `from vae_jax.evaluation import gap`

The names of `per_example` and `dataset` are re-exported here
(`evaluation.evaluate`, `evaluation.dataset_log_px`); `gap` (which draws
with matplotlib) is imported on its own. The log p̂_K(x) of one example is
`vae_jax.math.objectives.importance_sampled_log_px`.
"""

from vae_jax.evaluation.dataset import (
  BOUND_KS,
  LatentUsage,
  LayerUsage,
  bound_vs_k,
  chunk_size_for,
  dataset_log_px,
  latent_usage,
  likelihood_report,
  mean_and_stderr,
  usage_record,
  warn_if_collapsed,
)
from vae_jax.evaluation.per_example import (
  EvalResult,
  elbo_per_example,
  evaluate,
  log_px_per_example,
  map_examples,
  posterior_stats_all,
)

__all__ = [
  # per example
  "EvalResult",
  "evaluate",
  "map_examples",
  "elbo_per_example",
  "log_px_per_example",
  "posterior_stats_all",
  # per data set
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
