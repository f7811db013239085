"""Evaluating a saved run: `evaluate_run(workdir)` → eval.json, figures.

Reloads the run's config, data, model and a checkpoint (`vae_jax.run.load`),
evaluates the test ELBO with the run's own evaluation keys, and writes
WORKDIR/eval.json atomically. Training may be running in the same directory:
evaluation takes no lock and writes only eval.json and figures/.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
from absl import logging

from vae_jax import evaluation
from vae_jax.data.prepared import prepare_data
from vae_jax.errors import ConfigError
from vae_jax.evaluation import gap as gap_lib
from vae_jax.nets import registry
from vae_jax.run import load
from vae_jax.run import programs
from vae_jax.run import gap_request
from vae_jax.run.gap_request import GapRequest
from vae_jax.run.outputs import write_figures
from vae_jax.store import workdir as workdir_lib
from vae_jax.viz import render

__all__ = ["evaluate_run", "GapRequest", "PER_IMAGE_FILE", "GAP_PER_IMAGE_FILE"]

# log p̂_K(x_n) and ELBO(x_n) of every test image evaluated, in split order.
PER_IMAGE_FILE = "eval_per_image.csv"
# The gap split's per-image terms (--gap_decomposition).
GAP_PER_IMAGE_FILE = "eval_gap_per_image.csv"


_MAX_SAMPLES = 1 << 20
_BOUND_EXAMPLES = 1000  # test examples of figures/bound_vs_k.png
_DEFAULT_IMPORTANCE_SAMPLES = 5000
_GAP_STREAM = 7  # the gap split's keys: fold_in(eval key, 7), then per image


def _bound_vs_k_figure(
  model,
  params,
  images,
  rng,
  estimates: tuple[int, np.ndarray, np.ndarray],
  path: str,
  progress,
) -> dict:
  """figures/bound_vs_k.png on the first examples: the K of BOUND_KS up to
  `num_samples`, and `num_samples` itself, whose per-image log p(x) and
  ELBO are `estimates` = (num_samples, log_px, elbo), reused."""
  num_samples, log_px, elbo = estimates
  n = min(_BOUND_EXAMPLES, int(images.shape[0]))
  ks = [k for k in evaluation.BOUND_KS if k < num_samples]
  curve = evaluation.bound_vs_k(
    model, params, images[:n], rng, ks, elbo[:n], progress
  )
  mean = float(np.mean(log_px[:n]))
  curve["ks"].append(int(num_samples))
  curve["log_px"].append(mean)
  curve["stderr"].append(float(np.std(log_px[:n] - elbo[:n]) / np.sqrt(n)))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  render.save_bound_vs_k(
    curve["ks"],
    curve["log_px"],
    curve["stderr"],
    curve["elbo"],
    curve["elbo_stderr"],
    path,
    title=f"log p̂_K(x) rises with K towards log p(x) (first {n} test examples)",
  )
  return curve


def evaluate_run(
  workdir: str,
  checkpoint: Optional[str] = None,
  num_samples: Optional[int] = None,
  figures: bool = True,
  num_importance_samples: Optional[int] = None,
  max_examples: Optional[int] = None,
  progress: Optional[bool] = None,
  gap: Optional[GapRequest] = None,
) -> dict:
  """Evaluates a checkpoint of the run in `workdir` on its test split.

  Args:
    workdir: a run directory written by `train_and_evaluate`.
    checkpoint: "best" (by validation ELBO), "latest", or a step number;
      None: best when there is one, else latest.
    num_samples: z samples per example in the ELBO estimate; None: the run's
      eval_num_samples (then, at the latest checkpoint, test_elbo equals the
      last record of metrics.jsonl).
    figures: regenerate WORKDIR/figures from this checkpoint.
    num_importance_samples: K of the importance-sampled log p(x) and the
      gap (`vae_jax.evaluation.dataset`); None: the ELBO only.
    max_examples: evaluate the first N test examples only (quick looks).
    progress: a progress bar over the examples; None: if stderr is a tty.
    gap: split the gap into approximation and amortisation gaps
      (`vae_jax.evaluation.gap`) on the first `gap.examples` test images, with
      K = `num_importance_samples` (5000 when None); None: no split.

  Returns:
    The record written to WORKDIR/eval.json.

  Raises:
    ConfigError: no run in `workdir`, no such checkpoint, bad num_samples.
    DataError: the run's data cannot be read.
  """
  config = load.open_run(workdir)
  if num_samples is None:
    num_samples = config.eval_num_samples
  for flag, value in (
    ("num_samples", num_samples),
    ("num_importance_samples", num_importance_samples),
  ):
    if value is not None and not 1 <= value <= _MAX_SAMPLES:
      raise ConfigError(
        f"--{flag}={value} is invalid: it must be from 1 to {_MAX_SAMPLES}"
      )
  model = registry.build_model(config, load.event_shape(workdir, config))
  which, step, params = load.restore_params(workdir, checkpoint)
  load.check_params_fit(model, params, workdir, which, step)
  data = prepare_data(config)
  num_test = int(data.test.shape[0])
  if max_examples is not None and not 1 <= max_examples <= num_test:
    raise ConfigError(
      f"--max_examples={max_examples} is invalid: the test "
      f"split has {num_test} examples; pass 1 to {num_test}"
    )
  images = data.test if max_examples is None else data.test[:max_examples]
  gap_images = (
    None
    if gap is None
    else gap_request.gap_images(gap, model, num_test, max_examples)
  )
  _, eval_rng, figure_rng = programs.run_keys(config)
  logging.info(
    "evaluating %s checkpoint at step %d of %s", which, step, workdir
  )
  result = programs.evaluate_program(
    model,
    params,
    images,
    eval_rng,
    batch_size=config.eval_batch_size,
    num_samples=num_samples,
    analytic_kl=True,
  )
  record = {
    "checkpoint": which,  # the series the step was restored from
    "step": step,
    "epoch": step / (data.num_train // config.batch_size),
    "test_elbo": float(result.elbo),
    "test_elbo_stderr": float(result.elbo_stderr),
    "test_kl": float(result.kl),
    "test_log_likelihood": float(result.log_likelihood),
    "num_examples": int(images.shape[0]),
    "num_samples": num_samples,
  }
  if num_importance_samples is not None:
    report = evaluation.likelihood_report(
      model,
      params,
      images,
      eval_rng,
      num_importance_samples,
      elbo_num_samples=num_samples,
      batch_size=config.eval_batch_size,
      progress=progress,
    )
    log_px, elbo = report.pop("_log_px"), report.pop("_elbo")
    usage = report.pop("_usage")
    # test_elbo stays the run's own float32 evaluation (bit for bit that of
    # metrics.jsonl); the report's float64 mean of the same per-example
    # values differs in the last digits, so the gap is taken against it.
    for key in ("test_elbo", "test_elbo_stderr"):
      report.pop(key)
    record.update(report)
    record["test_gap"] = record["test_log_px"] - record["test_elbo"]
    # Per image, so that two runs' results can be paired image by image.
    workdir_lib.write_text_atomic(
      os.path.join(workdir, PER_IMAGE_FILE),
      "image,log_px,elbo\n"
      + "".join(
        f"{n},{a:.4f},{b:.4f}\n" for n, (a, b) in enumerate(zip(log_px, elbo))
      ),
    )
    evaluation.warn_if_collapsed(usage)
    logging.info(
      "test log p(x) %.2f ± %.2f (K = %d), gap to the ELBO %.2f "
      "± %.2f, %d active units, %.0f s",
      report["test_log_px"],
      report["test_log_px_stderr"],
      num_importance_samples,
      report["test_gap"],
      report["test_gap_stderr"],
      report["active_units"],
      report["importance_seconds"],
    )
    if figures:
      record["bound_vs_k"] = _bound_vs_k_figure(
        model,
        params,
        images,
        eval_rng,
        (num_importance_samples, log_px, elbo),
        os.path.join(workdir, "figures", "bound_vs_k.png"),
        progress,
      )
  if gap is not None:
    k = num_importance_samples or _DEFAULT_IMPORTANCE_SAMPLES
    result = gap_lib.gap_report(
      model,
      params,
      images[:gap_images],
      jax.random.fold_in(eval_rng, _GAP_STREAM),
      gap.settings,
      k,
      progress,
    )
    record.update(gap_lib.gap_record(result, gap.settings))
    record["gap_num_importance_samples"] = k
    workdir_lib.write_text_atomic(
      os.path.join(workdir, GAP_PER_IMAGE_FILE), gap_lib.per_image_csv(result)
    )
    logging.info(
      "gap split over %d images: inference %.2f = approximation %.2f + "
      "amortisation %.2f nats (L[q*] %.2f, log p(x) with q* %.2f), %.0f s",
      record["gap_examples"],
      record["inference_gap"],
      record["approximation_gap"],
      record["amortisation_gap"],
      record["elbo_optimized"],
      record["log_px_q_star"],
      result.seconds,
    )
    if figures:
      gap_lib.save_figure(
        result, os.path.join(workdir, "figures", "gap_decomposition.png")
      )
  workdir_lib.write_json_atomic(os.path.join(workdir, "eval.json"), record)
  logging.info(
    "test ELBO %.2f ± %.2f (KL %.2f, log-lik %.2f) over %d "
    "examples, %d z sample(s) each",
    record["test_elbo"],
    record["test_elbo_stderr"],
    record["test_kl"],
    record["test_log_likelihood"],
    record["num_examples"],
    num_samples,
  )
  if figures:
    write_figures(
      model,
      params,
      data,
      workdir_lib.read_records(workdir),
      os.path.join(workdir, "figures"),
      figure_rng,
    )
  return record
