"""The gap decomposition over a dataset: eval.json's gap keys and the figure.

`gap_report(model, params, images, rng, settings, K)` runs
`vae_jax.inference_gap.decompose` on every image, a block of images per
compiled call (so a progress bar can follow it), and summarises:

    approximation_gap   mean of log p̂(x; q*) − L[q*]     KL(q* ‖ p(z|x))
    amortisation_gap    mean of L[q*] − L[q]              what amortising costs
    inference_gap       mean of log p̂(x; q*) − L[q]       their sum
    elbo_optimized      mean L[q*];   log_px_q_star  mean log p̂(x) with q*

each with `<key>_stderr`, the standard error over the images of the per-image
differences (paired, like test_gap_stderr). log p(x) is the estimate with
proposal q* (`gap_log_px_proposal: "q_star"`); the one with the encoder's q
is reported beside it as `gap_log_px_q`. Image n uses key fold_in(rng, n).
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from vae_jax import inference_gap
from vae_jax.evaluation import dataset
from vae_jax.evaluation import per_example
from vae_jax.viz.gap_figure import save_gap_decomposition

__all__ = [
  "GapResult",
  "gap_report",
  "gap_record",
  "per_image_csv",
  "save_figure",
]

_BLOCK = 50  # images per compiled call: a progress-bar tick


@functools.partial(
  jax.jit,
  static_argnames=("model", "settings", "num_importance_samples", "chunk_size"),
)
def _block_program(
  model,
  params,
  images,
  rng,
  offset,
  settings,
  num_importance_samples,
  chunk_size,
):
  one = functools.partial(
    inference_gap.decompose,
    model,
    params,
    settings=settings,
    num_importance_samples=num_importance_samples,
    chunk_size=chunk_size,
  )
  return per_example.map_examples(one, images, rng, images.shape[0], offset)


class GapResult(NamedTuple):
  """Per-image terms (host float64 arrays `[N]`) and the wall time."""

  terms: inference_gap.GapTerms
  seconds: float


def gap_report(
  model,
  params,
  images,
  rng: jax.Array,
  settings: inference_gap.GapSettings,
  num_importance_samples: int,
  progress: Optional[bool] = None,
) -> GapResult:
  """`decompose` on every image of `images` `[N, ...]`, block by block."""
  n = int(images.shape[0])
  block = min(_BLOCK, n)
  padded = jnp.pad(
    jnp.asarray(images, jnp.float32),
    ((0, -(-n // block) * block - n),) + ((0, 0),) * (images.ndim - 1),
  )
  chunk = dataset.chunk_size_for(num_importance_samples)
  if progress is None:
    progress = sys.stderr.isatty()
  parts, start = [], time.perf_counter()
  with tqdm.tqdm(
    total=n,
    unit="image",
    file=sys.stderr,
    disable=not progress,
    desc="gap decomposition",
  ) as bar:
    for first in range(0, n, block):
      out = _block_program(
        model,
        params,
        padded[first : first + block],
        rng,
        first,
        settings,
        num_importance_samples,
        chunk,
      )
      parts.append(
        jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), out)
      )
      bar.update(min(block, n - first))
  terms = jax.tree_util.tree_map(lambda *a: np.concatenate(a)[:n], *parts)
  return GapResult(terms=terms, seconds=time.perf_counter() - start)


def gap_record(
  result: GapResult, settings: inference_gap.GapSettings
) -> dict[str, Any]:
  """eval.json's gap keys (module docstring), JSON-ready."""
  t = result.terms
  record: dict[str, Any] = {}
  for key, values in (
    ("approximation_gap", t.log_px_q_star - t.elbo_optimized),
    ("amortisation_gap", t.elbo_optimized - t.elbo),
    ("inference_gap", t.log_px_q_star - t.elbo),
    ("elbo_optimized", t.elbo_optimized),
    ("log_px_q_star", t.log_px_q_star),
    ("gap_elbo", t.elbo),
    ("gap_log_px_q", t.log_px),
  ):
    record[key], record[f"{key}_stderr"] = dataset.mean_and_stderr(values)
  record.update(
    gap_log_px_proposal="q_star",
    gap_examples=int(len(t.elbo)),
    gap_steps_mean=float(np.mean(t.steps)),
    gap_steps_max=int(np.max(t.steps)),
    gap_init=settings.init,
    gap_max_steps=settings.max_steps,
    gap_num_samples=settings.num_samples,
    gap_final_samples=settings.final_samples,
    gap_seconds=result.seconds,
  )
  return record


def per_image_csv(result: GapResult) -> str:
  """eval_gap_per_image.csv's text: one row per image, nats."""
  t = result.terms
  rows = zip(t.elbo, t.elbo_optimized, t.log_px, t.log_px_q_star, t.steps)
  return "image,elbo,elbo_optimized,log_px_q,log_px_q_star,steps\n" + "".join(
    f"{n},{a:.4f},{b:.4f},{c:.4f},{d:.4f},{int(e)}\n"
    for n, (a, b, c, d, e) in enumerate(rows)
  )


def save_figure(result: GapResult, path: str) -> str:
  """figures/gap_decomposition.png: per image and on average."""
  t = result.terms
  return save_gap_decomposition(
    elbo=t.elbo,
    elbo_optimized=t.elbo_optimized,
    log_px=t.log_px_q_star,
    path=path,
  )
