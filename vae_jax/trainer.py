"""The training loop of a run: data → compiled chunks of steps → metrics, figures.

`train_and_evaluate(config, workdir)` is what `experiments/train.py` runs. All
numerical work happens in the pure functions of `vae_jax.training`; this file
only orders them, measures time and writes the run directory:

    WORKDIR/config.json     the run's settings
    WORKDIR/metrics.jsonl   one JSON object per epoch
    WORKDIR/figures/*.png   reconstructions, samples from the prior
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import config as config_lib
from vae_jax import figures
from vae_jax import training
from vae_jax.data.prepared import PreparedData, prepare_data
from vae_jax.errors import ConfigError
from vae_jax.model import VAEModel, decoder_mean, make_mlp_vae

__all__ = ["train_and_evaluate", "build_model", "write_figures"]


def build_model(config: config_lib.TrainConfig, data_dim: int) -> VAEModel:
  return make_mlp_vae(data_dim, config.latent_dim, config.hidden_dims,
                      config.activation, config.likelihood,
                      config.gaussian_variance)


def _chunk_lengths(steps_per_epoch: int, steps_per_chunk: int) -> list[int]:
  chunk = steps_per_epoch if steps_per_chunk <= 0 else min(steps_per_chunk,
                                                           steps_per_epoch)
  full, rest = divmod(steps_per_epoch, chunk)
  return [chunk] * full + ([rest] if rest else [])


def _to_float(tree) -> dict:
  return {k: float(v) for k, v in tree._asdict().items()}


def train_and_evaluate(config: config_lib.TrainConfig, workdir: str,
                       data: Optional[PreparedData] = None) -> list[dict]:
  """Trains `config` and writes WORKDIR; returns the metrics, one dict per epoch.

  Everything the user can get wrong (flags, data, the run directory) is
  checked before the first write or the first compiled step.
  """
  config_lib.validate(config)
  if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    raise ConfigError(
        f"--workdir={workdir} already holds a run (metrics.jsonl); choose a "
        "new directory so nothing there is overwritten")
  data = data or prepare_data(config)
  logging.info("data: %s from %s, train %s, test %s", config.dataset,
               data.dataset.source, data.train.shape, data.test.shape)

  os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    record = config_lib.to_json_dict(config)
    record["data_source"] = data.dataset.source
    json.dump(record, f, indent=2, sort_keys=True)

  model = build_model(config, data.data_dim)
  optimizer = training.make_optimizer(config.optimizer, config.grad_clip_norm)
  steps_per_epoch = data.train.shape[0] // config.batch_size
  total_steps = steps_per_epoch * config.epochs
  step_config = training.StepConfig(
      num_samples=config.num_samples, analytic_kl=config.analytic_kl,
      lr_schedule=training.make_lr_schedule(
          config.lr_schedule, total_steps,
          round(config.lr_warmup_epochs * steps_per_epoch)),
      kl_warmup_steps=round(config.kl_warmup_epochs * steps_per_epoch))
  hparams = training.Hyperparams(
      learning_rate=jnp.float32(config.learning_rate),
      kl_weight=jnp.float32(config.kl_weight))

  root = jax.random.key(config.seed)
  state = training.init_train_state(model, optimizer,
                                    jax.random.fold_in(root, 0))
  eval_rng = jax.random.fold_in(root, 1)

  compiled = {}
  compile_start = time.perf_counter()
  for n in sorted(set(_chunk_lengths(steps_per_epoch, config.steps_per_chunk))):
    fn = jax.jit(functools.partial(
        training.train_chunk, model, optimizer, step_config, n,
        config.batch_size, data.dynamic_binarization, data.pixel_max),
        donate_argnums=(0,))
    compiled[n] = fn.lower(state, data.train, hparams).compile()
  evaluate = jax.jit(functools.partial(
      training.evaluate, model, batch_size=config.eval_batch_size,
      num_samples=config.eval_num_samples, analytic_kl=True))
  logging.info("compiled %d chunk program(s) in %.1fs", len(compiled),
               time.perf_counter() - compile_start)

  history = []
  run_start = time.perf_counter()
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  for epoch in range(config.epochs):
    epoch_start = time.perf_counter()
    chunk_metrics = []
    for n in _chunk_lengths(steps_per_epoch, config.steps_per_chunk):
      state, m = compiled[n](state, data.train, hparams)
      chunk_metrics.append((n, m))
    jax.block_until_ready(state)
    train_seconds = time.perf_counter() - epoch_start
    train = {k: sum(n * float(getattr(m, k)) for n, m in chunk_metrics)
             / steps_per_epoch for k in training.StepMetrics._fields}
    test = _to_float(evaluate(state.params, data.test, eval_rng))
    record = {
        "epoch": epoch + 1,
        "step": int(state.step),
        "train_elbo": train["elbo"],
        "train_kl": train["kl"],
        "train_log_likelihood": train["log_likelihood"],
        "val_elbo": (float(evaluate(state.params, data.validation,
                                    eval_rng).elbo)
                     if data.validation is not None else None),
        "test_elbo": test["elbo"],
        "test_elbo_stderr": test["elbo_stderr"],
        "test_kl": test["kl"],
        "test_log_likelihood": test["log_likelihood"],
        "learning_rate": train["learning_rate"],
        "kl_weight": train["kl_weight"],
        "grad_norm": train["grad_norm"],
        "examples_per_sec": steps_per_epoch * config.batch_size / train_seconds,
        "wall_time_sec": time.perf_counter() - run_start,
    }
    history.append(record)
    with open(metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info(
        "epoch %d/%d  train ELBO %.2f  test ELBO %.2f ± %.2f (KL %.2f, "
        "log-lik %.2f)  %.0f examples/s", epoch + 1, config.epochs,
        record["train_elbo"], test["elbo"], test["elbo_stderr"], test["kl"],
        test["log_likelihood"], record["examples_per_sec"])

  write_figures(model, state.params, data, os.path.join(workdir, "figures"),
                jax.random.fold_in(root, 2))
  return history


def write_figures(model: VAEModel, params, data: PreparedData, directory: str,
                  rng: jax.Array) -> list[str]:
  """Reconstructions of test images and samples from the prior, as PNGs."""
  shape = data.image_shape
  x = data.test[:16]
  z_rng, prior_rng = jax.random.split(rng)
  mean, logvar = model.encode(params, x)
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(z_rng, mean.shape)
  recon = decoder_mean(model, params, z)
  samples = decoder_mean(model, params,
                         jax.random.normal(prior_rng, (64, model.latent_dim)))
  return [
      figures.save_reconstructions(
          np.asarray(x).reshape(-1, *shape), np.asarray(recon).reshape(-1, *shape),
          os.path.join(directory, "reconstructions.png")),
      figures.save_prior_samples(np.asarray(samples).reshape(-1, *shape),
                                 os.path.join(directory, "prior_samples.png")),
  ]
