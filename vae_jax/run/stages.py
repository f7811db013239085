"""The checks a single run and a sweep's members share: the model against
the data and memory (before anything is written), and why a non-finite
chunk or evaluation stops a run, in words that name the step and the last
good checkpoint.
"""

from __future__ import annotations

import math
import os
from typing import Optional

import jax
import jax.numpy as jnp

from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.chunks import ChunkHealth
from vae_jax.data.prepared import PreparedData
from vae_jax.errors import ConfigError
from vae_jax.math import objectives
from vae_jax.nets import registry
from vae_jax.run import memory
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import workdir as workdir_lib

__all__ = [
  "check_model",
  "MAX_SKIPPED_SHARE",
  "chunk_failure",
  "nonfinite_message",
  "nonfinite_evaluation",
  "last_good",
  "describe_model",
  "write_run_config",
]

# With skip_nonfinite_updates a run skips a rare non-finite update; once more
# than this share of an epoch's updates were skipped it is diverging, not
# unlucky, and stops as an unskipped run does.
MAX_SKIPPED_SHARE = 0.1


def last_good(ckpts: checkpoints_lib.RunCheckpoints) -> str:
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
    f"{last_good(ckpts)}. Rerun with --config.skip_nonfinite_updates=true "
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
    f"{last_good(ckpts)}. Start a new run with a smaller "
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


def write_run_config(outputs: str, config, config_file: str, data, model):
  """OUTPUTS/config.json: the settings, the config file, the data, the
  model's layers and its KL."""
  workdir_lib.write_config(
    outputs,
    config,
    config_file,
    data.describe(),
    describe_model(config, model),
  )


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
