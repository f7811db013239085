"""What a run reports: an epoch's record and log line, figures, image grids."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import numpy as np
from absl import logging

from vae_jax import step as step_lib
from vae_jax.data.prepared import PreparedData
from vae_jax.run import programs
from vae_jax.store.resume import ChunkRecord
from vae_jax.store.workdir import EpochRecord
from vae_jax.viz import figure_data

if TYPE_CHECKING:
  from vae_jax.run.context import RunContext

__all__ = [
  "epoch_record",
  "log_epoch",
  "tensorboard_images",
  "write_figures",
  "label_names",
]

_TB_IMAGE_EXAMPLES = 1000  # test images encoded for TensorBoard's grids


def _evaluate(config, model, params, images, rng):
  return programs.evaluate_program(
    model,
    params,
    images,
    rng,
    batch_size=config.eval_batch_size,
    num_samples=config.eval_num_samples,
    analytic_kl=True,
  )


def epoch_record(
  ctx: RunContext,
  epoch: int,
  state: step_lib.TrainState,
  chunks: list[ChunkRecord],
  train_seconds: float,
  wall_time_sec: float,
) -> EpochRecord:
  """The metrics.jsonl record of the epoch (0-based) that ends at `state`.

  Args:
    chunks: the epoch's chunks; their metrics are means over the chunk's
      steps whose update was taken.
  """
  config, data, model = ctx.config, ctx.data, ctx.model
  steps_per_epoch = ctx.steps_per_epoch
  taken = [c.steps - c.skipped_updates for c in chunks]
  total = sum(taken)
  train = {
    k: (
      sum(t * float(getattr(c.metrics, k)) for t, c in zip(taken, chunks))
      / total
      if total
      else float("nan")
    )
    for k in step_lib.StepMetrics._fields
  }
  params = step_lib.evaluation_params(state)  # the average, if kept
  test = _evaluate(config, model, params, data.test, ctx.eval_rng)
  val_elbo = (
    float(_evaluate(config, model, params, data.validation, ctx.eval_rng).elbo)
    if data.validation is not None
    else None
  )
  return EpochRecord(
    epoch=epoch + 1,
    step=int(state.step),
    train_elbo=train["elbo"],
    train_kl=train["kl"],
    train_log_likelihood=train["log_likelihood"],
    train_objective=train["objective"],
    val_elbo=val_elbo,
    test_elbo=float(test.elbo),
    test_elbo_stderr=float(test.elbo_stderr),
    test_kl=float(test.kl),
    test_log_likelihood=float(test.log_likelihood),
    learning_rate=train["learning_rate"],
    kl_weight=train["kl_weight"],
    grad_norm=train["grad_norm"],
    examples_per_sec=steps_per_epoch * config.batch_size / train_seconds,
    wall_time_sec=wall_time_sec,
    skipped_updates=steps_per_epoch - total,
  )


def log_epoch(record: EpochRecord, epochs: int) -> None:
  val = "" if record.val_elbo is None else f"  val ELBO {record.val_elbo:.2f}"
  logging.info(
    "epoch %d/%d  train ELBO %.2f%s  test ELBO %.2f ± %.2f (KL %.2f, "
    "log-lik %.2f)  KL weight %.3f  %.0f examples/s",
    record.epoch,
    epochs,
    record.train_elbo,
    val,
    record.test_elbo,
    record.test_elbo_stderr,
    record.test_kl,
    record.test_log_likelihood,
    record.kl_weight,
    record.examples_per_sec,
  )


def label_names(data: PreparedData):
  return (
    figure_data.FASHION_MNIST_LABELS
    if data.dataset.name == "fashion_mnist"
    else None
  )


def tensorboard_images(
  model, params, data: PreparedData, rng: jax.Array
) -> dict[str, np.ndarray]:
  """Image grids for TensorBoard, from the first test images."""
  n = min(_TB_IMAGE_EXAMPLES, data.test.shape[0])
  labels = data.dataset.test.labels
  data_for_figures = figure_data.compute_figure_data(
    model,
    params,
    data.test[:n],
    None if labels is None else labels[:n],
    data.image_shape,
    rng,
  )
  return figure_data.images_for_tensorboard(data_for_figures)


def write_figures(
  model,
  params,
  data: PreparedData,
  history: list[EpochRecord],
  directory: str,
  rng: jax.Array,
) -> dict[str, str]:
  """The PNGs of vae_jax.viz for the test split, and the training curves
  of `history`: {name: path}."""
  return figure_data.write_all_figures(
    model,
    params,
    data.test,
    data.dataset.test.labels,
    data.image_shape,
    [r.to_json() for r in history],
    directory,
    rng,
    label_names=label_names(data),
  )
