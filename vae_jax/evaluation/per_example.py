"""Per-example evaluation in JAX: the ELBO and log p̂(x) of every example.

`elbo_per_example`, `log_px_per_example` and `posterior_stats_all` return
one value per example (`[N]` arrays); `evaluate` summarises the ELBO as its
mean ± s.e. (the per-epoch evaluation of a run). Pure functions, jitted
by their callers (`vae_jax.evaluation.dataset` runs them over a data set).

z is sampled (never the mean); example n uses key fold_in(rng, n), so a
result does not depend on the batch size. The examples are processed
`batch_size` at a time in a `lax.map`, so memory is bounded by the batch.
Jit with `model`, `batch_size`, `num_samples` and `analytic_kl` static.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import objectives
from vae_jax.math.model import VAEModel

__all__ = [
  "EvalResult",
  "evaluate",
  "map_examples",
  "elbo_per_example",
  "log_px_per_example",
  "posterior_stats_all",
]


class EvalResult(NamedTuple):
  """Dataset means (nats per example) and the standard error of the ELBO."""

  elbo: chex.Array
  elbo_stderr: chex.Array
  log_likelihood: chex.Array
  kl: chex.Array


def map_examples(
  fn,
  images: chex.Array,
  rng: chex.PRNGKey,
  batch_size: int,
  offset: chex.Numeric = 0,
) -> Any:
  """`fn(x_n, fold_in(rng, offset + n))` for every example n, in batches.

  Args:
    fn: a per-example function of (x, key) returning a pytree of arrays.
    images: `[N, ...]` float (or uint8 0/1) examples.
    batch_size: examples vmapped together; a `lax.map` runs the batches.
    offset: the index of images[0] in its dataset, so a dataset evaluated
      in blocks draws what it draws in one call.

  Returns:
    The pytree of `fn`'s results with a leading axis `[N]`.
  """
  n = images.shape[0]
  batch_size = min(batch_size, n)
  num_batches = math.ceil(n / batch_size)
  pad = num_batches * batch_size - n
  x = jnp.pad(
    images.astype(jnp.float32), ((0, pad),) + ((0, 0),) * (images.ndim - 1)
  )
  keys = jax.vmap(jax.random.fold_in, (None, 0))(
    rng, offset + jnp.arange(n + pad)
  )
  results = jax.lax.map(
    lambda xk: jax.vmap(fn)(*xk),
    (
      x.reshape(num_batches, batch_size, *x.shape[1:]),
      keys.reshape(num_batches, batch_size, *keys.shape[1:]),
    ),
  )
  return jax.tree_util.tree_map(
    lambda a: a.reshape(num_batches * batch_size, *a.shape[2:])[:n], results
  )


def elbo_per_example(
  model: VAEModel,
  params: Any,
  images: chex.Array,
  rng: chex.PRNGKey,
  batch_size: int = 1000,
  num_samples: int = 1,
  analytic_kl: bool = True,
) -> objectives.ElboParts:
  """`ElboParts` of `[N]` arrays: the ELBO of every example of `images`."""
  one = functools.partial(
    objectives.elbo,
    model,
    params,
    num_samples=num_samples,
    analytic_kl=analytic_kl,
  )
  return map_examples(one, images, rng, batch_size)


def log_px_per_example(
  model: VAEModel,
  params: Any,
  images: chex.Array,
  rng: chex.PRNGKey,
  num_samples: int = 5000,
  chunk_size: int = 500,
  batch_size: int = 1,
  offset: chex.Numeric = 0,
) -> chex.Array:
  """log p̂_K(x_n) `[N]`, K = `num_samples` draws per example.

  `batch_size` examples are vmapped together, each drawing its K samples
  `chunk_size` at a time: memory ~ batch_size × chunk_size decoder outputs.
  Example n uses key fold_in(rng, n) like `elbo_per_example`, so with K = 1
  and the same key its estimate is the single-sample Monte-Carlo ELBO.
  """
  one = functools.partial(
    objectives.importance_sampled_log_px,
    model,
    params,
    num_samples=num_samples,
    chunk_size=chunk_size,
  )
  return map_examples(one, images, rng, batch_size, offset)


def posterior_stats_all(
  model: VAEModel,
  params: Any,
  images: chex.Array,
  rng: chex.PRNGKey,
  batch_size: int = 1000,
) -> dict[str, tuple[chex.Array, chex.Array]]:
  """{layer: (means, logvars)} of q(z|x_n) for every example, `[N, D]` each.

  A conditional layer's are given one posterior draw of its parents, from
  key fold_in(rng, n) for example n.
  """
  one = lambda x, key: model.posterior_stats(params, x, key)
  return map_examples(one, images, rng, batch_size)


def evaluate(
  model: VAEModel,
  params: Any,
  images: chex.Array,
  rng: chex.PRNGKey,
  batch_size: int = 1000,
  num_samples: int = 1,
  analytic_kl: bool = True,
) -> EvalResult:
  """The ELBO of every example in `images` `[N, *event_shape]`, summarised."""
  parts = elbo_per_example(
    model, params, images, rng, batch_size, num_samples, analytic_kl
  )
  n = images.shape[0]
  return EvalResult(
    elbo=jnp.mean(parts.elbo),
    elbo_stderr=jnp.std(parts.elbo) / jnp.sqrt(n),
    log_likelihood=jnp.mean(parts.log_likelihood),
    kl=jnp.mean(parts.kl),
  )
