"""The stages of a run that a single run and a sweep's members share.

`vae_jax.run.loop` (one run) and `vae_jax.run.sweep.group` (a vmapped group
of runs) order them differently; each stage does one thing the same way for
both: check the model against the data and memory, end an epoch (the
metrics.jsonl record, the log line, TensorBoard, the best checkpoint),
measure the trained model at the end, and say where a non-finite run stopped.
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from absl import logging

from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.chunks import ChunkHealth
from vae_jax.data.prepared import PreparedData
from vae_jax.errors import ConfigError, NonFiniteError
from vae_jax.evaluation import dataset as likelihood
from vae_jax.math import objectives
from vae_jax.nets import registry
from vae_jax.run import memory
from vae_jax.run.outputs import epoch_record, log_epoch, tensorboard_images
from vae_jax.run.store import checkpoints as checkpoints_lib
from vae_jax.run.store import resume
from vae_jax.run.store import workdir as workdir_lib

__all__ = [
  "check_model",
  "MAX_SKIPPED_SHARE",
  "chunk_failure",
  "nonfinite_message",
  "EpochEnd",
  "end_epoch",
  "final_measurements",
]

# With skip_nonfinite_updates a run skips a rare non-finite update; once more
# than this share of an epoch's updates were skipped it is diverging, not
# unlucky, and stops as an unskipped run does.
MAX_SKIPPED_SHARE = 0.1


def _last_good(ckpts: checkpoints_lib.RunCheckpoints) -> str:
  last = ckpts.latest_step()
  return (
    f"the last good checkpoint is step {last} in "
    f"{os.path.join(ckpts.directory, checkpoints_lib.LATEST, str(last))}"
    if last is not None
    else "no checkpoint was saved before it"
  )


def nonfinite_message(
  health: ChunkHealth,
  steps_per_epoch: int,
  epochs: int,
  ckpts: checkpoints_lib.RunCheckpoints,
) -> str:
  """What a run stopped by a non-finite step says: the step, the quantity
  and the last good checkpoint (`health`: a chunk's, on the host)."""
  step = int(health.first_bad_step)
  quantity = step_lib.NONFINITE_QUANTITIES[int(health.first_bad_quantity) - 1]
  epoch = step // steps_per_epoch + 1
  return (
    f"non-finite {quantity} at step {step} (epoch {epoch} of {epochs}): "
    "the run stopped there and saved nothing after it; "
    f"{_last_good(ckpts)}. Rerun with --config.skip_nonfinite_updates=true "
    "to skip such steps, or start a new run with a smaller "
    "--config.learning_rate"
  )


def chunk_failure(
  health: ChunkHealth,
  skipped_before: int,
  skip: bool,
  steps_per_epoch: int,
  epochs: int,
  ckpts: checkpoints_lib.RunCheckpoints,
) -> Optional[str]:
  """Why a trained chunk stops its run, or None when it may go on.

  A non-finite step stops a run unless `skip` (skip_nonfinite_updates); a
  non-finite state stops it always; and, with `skip`, so do more than
  MAX_SKIPPED_SHARE of an epoch's updates skipped (`skipped_before` in the
  epoch's earlier chunks).
  """
  if health.first_bad_step >= 0 and (
    not skip or health.first_bad_quantity >= 3
  ):
    return nonfinite_message(health, steps_per_epoch, epochs, ckpts)
  skipped = skipped_before + int(health.skipped_updates)
  if skipped <= MAX_SKIPPED_SHARE * steps_per_epoch:
    return None
  step = int(health.first_bad_step)
  epoch = step // steps_per_epoch + 1
  return (
    f"{skipped} of the {steps_per_epoch} updates of epoch {epoch} of "
    f"{epochs} were non-finite and skipped (this chunk's first at step "
    f"{step}), more than {MAX_SKIPPED_SHARE:.0%}: skipping is for a rare bad step, and this "
    "run diverges. The run stopped there and saved nothing after it; "
    f"{_last_good(ckpts)}. Start a new run with a smaller "
    "--config.learning_rate"
  )


def nonfinite_evaluation(record) -> Optional[str]:
  """Why an epoch's evaluation stops its run (a non-finite ELBO), or None."""
  bad = [
    f"{name} ELBO {value}"
    for name, value in (
      ("validation", record.val_elbo),
      ("test", record.test_elbo),
    )
    if value is not None and not math.isfinite(value)
  ]
  if not bad:
    return None
  return (
    f"the evaluation after epoch {record.epoch} (step {record.step}) is "
    f"non-finite ({', '.join(bad)}): the run stopped there and saved "
    "nothing after it"
  )


def check_model(config, data: PreparedData):
  """The run's model, once the data fit it and its state fits in memory.

  Raises:
    ConfigError: a likelihood that does not fit the data, a state too large,
      free bits for a model without the prior N(0, I).
  """
  validation.check_likelihood_fits(config, data.dataset.already_binary)
  model = registry.build_model(config, data.train.shape[1:])
  memory.check_fits(model, config)
  if config.free_bits > 0 and not (
    config.analytic_kl and closed_form_kl(model)
  ):
    raise ConfigError(
      f"--config.free_bits={config.free_bits} is invalid for "
      f"--config.model={config.model} with --config.prior={config.prior} "
      f"and --config.analytic_kl={config.analytic_kl}: free bits floor the "
      "closed-form KL of each latent dimension, which needs "
      "--config.analytic_kl=true and a Gaussian prior on every layer "
      "(standard_normal); use --config.free_bits=0"
    )
  return model


def closed_form_kl(model) -> bool:
  """Whether the model's ELBO has its KL in closed form (else Monte Carlo)."""
  params = jax.eval_shape(model.init, jax.random.key(0))
  x = jax.ShapeDtypeStruct(tuple(model.event_shape), jnp.float32)
  return objectives.uses_closed_form_kl(model, params, x)


def describe_model(config, model) -> dict:
  """config.json's record of the model: its layers and which KL it trains.

  `analytic_kl=True` is the closed form where the model has one, otherwise
  the Monte-Carlo KL; "kl" says which.
  """
  closed = config.analytic_kl and closed_form_kl(model)
  return {
    "latent_shapes": {
      name: list(shape) for name, shape in model.latent_shapes.items()
    },
    "prior": config.prior,
    "kl": "closed_form" if closed else "monte_carlo",
  }


class EpochEnd(NamedTuple):
  """What stays fixed for a run's epoch ends."""

  config: Any
  workdir: str
  model: Any
  data: PreparedData
  eval_rng: Any
  figure_rng: Any


def end_epoch(
  run: EpochEnd,
  epoch: int,
  state: step_lib.TrainState,
  done: list[resume.ChunkRecord],
  steps_per_epoch: int,
  train_seconds: float,
  wall_time_sec: float,
  history: list[dict],
  writer,
  stopping,
  ckpts: checkpoints_lib.RunCheckpoints,
  local: Optional[step_lib.TrainState] = None,
) -> None:
  """An epoch's record: metrics.jsonl (appended to `history`), the log
  line, TensorBoard, and the best checkpoint when its validation ELBO is.

  Raises:
    NonFiniteError: a non-finite validation or test ELBO (before anything
      of the epoch is written).

  `local` is the state evaluated (on a mesh: this process's replica of
  `state`, which is what the checkpoint saves); default `state`.
  """
  local = state if local is None else local
  record = epoch_record(
    epoch,
    local,
    done,
    steps_per_epoch,
    run.config,
    run.data,
    run.model,
    run.eval_rng,
    train_seconds,
    wall_time_sec,
  )
  failure = nonfinite_evaluation(record)
  if failure:
    raise NonFiniteError(
      f"{failure}; {_last_good(ckpts)}. Start a new run "
      "with a smaller --config.learning_rate"
    )
  history.append(workdir_lib.append_metrics(run.workdir, record))
  log_epoch(record, run.config.epochs)
  writer.write_scalars(
    record.step, {k: v for k, v in history[-1].items() if k != "step"}
  )
  writer.write_images(
    record.step,
    tensorboard_images(
      run.model, step_lib.evaluation_params(local), run.data, run.figure_rng
    ),
  )
  writer.flush()
  if stopping.update(history[-1]):
    # The progress of a latest/ step at an epoch's end (a run resumes from
    # best/ when every later latest/ step is damaged), and its val ELBO.
    ckpts.save_best(
      state,
      dict(
        resume.checkpoint_progress(epoch + 1, [], 0.0, wall_time_sec, history),
        val_elbo=record.val_elbo,
      ),
    )


def final_measurements(
  config, workdir, model, state, data, ckpts, history, writer, eval_rng
):
  """The latent usage (a collapse warning) and, with
  `final_importance_samples`, the test log p(x) of the best checkpoint (else
  the last state) on the last line of metrics.jsonl. Returns those params
  (the averaged ones when the run keeps an average)."""
  best = ckpts.best_step()
  params = (
    step_lib.evaluation_params(state)
    if best is None
    else ckpts.restore_params(best, checkpoints_lib.BEST)
  )
  usage = likelihood.latent_usage(
    model, params, data.test, config.eval_batch_size
  )
  likelihood.warn_if_collapsed(usage)
  k = config.final_importance_samples
  if k and history and history[-1].get("test_log_px") is None:
    report = likelihood.likelihood_report(
      model,
      params,
      data.test,
      eval_rng,
      k,
      elbo_num_samples=config.eval_num_samples,
      batch_size=config.eval_batch_size,
    )
    for record in history[:-1]:  # an extended run measured an earlier last
      record.update(test_log_px=None, test_log_px_stderr=None)
    history[-1].update(
      test_log_px=report["test_log_px"],
      test_log_px_stderr=report["test_log_px_stderr"],
    )
    workdir_lib.write_metrics(workdir, history)
    writer.write_scalars(
      history[-1]["step"],
      {
        "test_log_px": report["test_log_px"],
        "test_log_px_stderr": report["test_log_px_stderr"],
      },
    )
    writer.flush()
    logging.info(
      "test log p(x) %.2f ± %.2f (K = %d, %s checkpoint), gap to "
      "the ELBO %.2f ± %.2f",
      report["test_log_px"],
      report["test_log_px_stderr"],
      k,
      "last" if best is None else "best",
      report["test_gap"],
      report["test_gap_stderr"],
    )
  return params
