"""A run: data → compiled chunks of steps → metrics, checkpoints, figures.

`train_and_evaluate(config, workdir)` is what `experiments/train.py` runs and
`evaluate_run(workdir, ...)` what `experiments/evaluate.py` runs. All
numerical work happens in the pure functions of `vae_jax.training`; this file
orders them, measures time and writes the run directory, the contract that
other tools and notebooks read:

    WORKDIR/config.json      the run's settings (TrainConfig) and data source
    WORKDIR/metrics.jsonl    one JSON object per epoch, keys METRIC_KEYS
    WORKDIR/tensorboard/     event files: each epoch's metrics (tags as in
                             metrics.jsonl) and image grids
    WORKDIR/checkpoints/     latest/ (chunk boundaries), best/ (by validation
                             ELBO); see vae_jax.checkpoints
    WORKDIR/figures/*.png    see vae_jax.visualize.FIGURE_NAMES
    WORKDIR/eval.json        written by evaluate_run

Resume. A checkpoint is taken at the end of every compiled chunk of steps
(one per epoch unless --steps_per_chunk is set). Running again with an
existing WORKDIR continues from its latest checkpoint (params, optimizer
state, step and rng; the step fixes the data position), so the run ends with the same parameters as an uninterrupted one —
bit for bit on CPU. metrics.jsonl keeps the epochs up to that checkpoint and
gets each later epoch once; so do the scalars and images of tensorboard/ as
TensorBoard reads them (the resumed run's event file purges the later steps
of the earlier files). Only `epochs` (a larger value extends a finished
run) and `streaming` (both input paths give the same batches, bit for bit)
may differ from the stored config; any other difference is refused.
The learning-rate schedule spans `lr_schedule_epochs` epochs, or `epochs`
when that is 0: extending such a run with a decaying schedule (cosine,
exponential) stretches the schedule over the new length, so the remaining
steps get other learning rates than the first run planned — set
`--lr_schedule_epochs` when a run may be extended.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from absl import logging

from vae_jax import checkpoints as checkpoints_lib
from vae_jax import config as config_lib
from vae_jax import summary_writer
from vae_jax import training
from vae_jax import visualize
from vae_jax.data.prepared import PreparedData, prepare_data
from vae_jax.errors import ConfigError
from vae_jax.model import VAEModel, make_mlp_vae

__all__ = ["METRIC_KEYS", "RESUMABLE_FIELDS", "train_and_evaluate",
           "evaluate_run", "build_model", "check_resumable", "read_metrics",
           "write_figures"]

# The keys of every line of metrics.jsonl (val_elbo is null without a
# validation split). Every ELBO is reported with KL weight 1, also during KL
# warm-up; kl_weight and learning_rate are the means over the epoch's steps.
METRIC_KEYS = ("epoch", "step", "train_elbo", "train_kl", "train_log_likelihood",
               "val_elbo", "test_elbo", "test_elbo_stderr", "test_kl",
               "test_log_likelihood", "learning_rate", "kl_weight",
               "grad_norm", "examples_per_sec", "wall_time_sec")

# The settings a resumed run may change (besides --workdir, --quiet and the
# logging flags, which are not part of the config): a larger --epochs extends
# the run; --streaming feeds the same batches, bit for bit, either way.
RESUMABLE_FIELDS = ("epochs", "streaming")

_DECAYING_SCHEDULES = ("cosine", "warmup_cosine", "exponential")
_TB_IMAGE_EXAMPLES = 1000  # test images encoded for TensorBoard's grids


# The model, optimizer, step settings and compiled programs of a config are
# built once per process: equal settings give the same objects, so a second
# run of a config (a notebook, a sweep, a resumed run, evaluation after
# training) reuses the compiled programs instead of compiling them again.


def build_model(config: config_lib.TrainConfig, data_dim: int) -> VAEModel:
  return _build_model(data_dim, config.latent_dim, tuple(config.hidden_dims),
                      config.activation, config.likelihood,
                      config.gaussian_variance)


_build_model = functools.lru_cache(maxsize=None)(make_mlp_vae)


@functools.lru_cache(maxsize=None)
def _optimizer(name: str, grad_clip_norm: float):
  return training.make_optimizer(name, grad_clip_norm)


@functools.lru_cache(maxsize=None)
def _step_config_of(num_samples: int, analytic_kl: bool, schedule: str,
                    schedule_steps: int, lr_warmup_steps: int,
                    kl_warmup_steps: int) -> training.StepConfig:
  return training.StepConfig(
      num_samples=num_samples, analytic_kl=analytic_kl,
      lr_schedule=training.make_lr_schedule(schedule, schedule_steps,
                                            lr_warmup_steps),
      kl_warmup_steps=kl_warmup_steps)


@functools.lru_cache(maxsize=64)
def _chunk_program(chunk_fn, model, optimizer, step_config, num_steps: int,
                   batch_size: int, binarize: bool, pixel_max: int):
  return jax.jit(functools.partial(chunk_fn, model, optimizer, step_config,
                                   num_steps, batch_size, binarize, pixel_max),
                 donate_argnums=(0,))


@functools.lru_cache(maxsize=64)
def _evaluate_program(model, batch_size: int, num_samples: int):
  return jax.jit(functools.partial(training.evaluate, model,
                                   batch_size=batch_size,
                                   num_samples=num_samples, analytic_kl=True))


def _chunk_lengths(steps_per_epoch: int, steps_per_chunk: int) -> list[int]:
  chunk = steps_per_epoch if steps_per_chunk <= 0 else min(steps_per_chunk,
                                                           steps_per_epoch)
  full, rest = divmod(steps_per_epoch, chunk)
  return [chunk] * full + ([rest] if rest else [])


def _to_float(tree) -> dict:
  return {k: float(v) for k, v in tree._asdict().items()}


# One compiled program instead of a compilation per eager op; the same values.
_init_train_state = jax.jit(training.init_train_state, static_argnums=(0, 1))


def _run_keys(config: config_lib.TrainConfig
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The (initialisation, evaluation, figures) keys of a run, from its seed.

  One place for both `train_and_evaluate` and `evaluate_run`, so that
  evaluating a checkpoint draws the z of the run's own evaluation. (Training
  draws its keys from the state's rng and step.)
  """
  root = jax.random.key(config.seed)
  return tuple(jax.random.fold_in(root, i) for i in range(3))


def _step_config(config: config_lib.TrainConfig,
                 steps_per_epoch: int) -> training.StepConfig:
  schedule_epochs = config.lr_schedule_epochs or config.epochs
  return _step_config_of(
      config.num_samples, config.analytic_kl, config.lr_schedule,
      round(schedule_epochs * steps_per_epoch),
      round(config.lr_warmup_epochs * steps_per_epoch),
      round(config.kl_warmup_epochs * steps_per_epoch))


# ---------------------------------------------------------- run directory


def _flag_value(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value)
  return repr(value) if isinstance(value, str) else str(value)


def _load_config(workdir: str) -> Optional[config_lib.TrainConfig]:
  """The TrainConfig stored in WORKDIR/config.json, or None if there is none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return config_lib.from_json_dict(json.load(f))
  except (OSError, ValueError, TypeError) as e:
    raise ConfigError(
        f"{path} is unreadable ({type(e).__name__}: {e}); it is not a run "
        "directory of vae_jax, or it is damaged: choose another --workdir"
    ) from None


def check_resumable(config: config_lib.TrainConfig,
                    workdir: str) -> Optional[config_lib.TrainConfig]:
  """The stored config of the run in `workdir` (None if new), if `config` may resume it.

  Raises:
    ConfigError: naming every flag whose value differs from the stored run's,
      with both values; only RESUMABLE_FIELDS may differ.
  """
  stored = _load_config(workdir)
  if stored is None:
    return None
  diffs = []
  for field in dataclasses.fields(config_lib.TrainConfig):
    if field.name in RESUMABLE_FIELDS:
      continue
    old, new = getattr(stored, field.name), getattr(config, field.name)
    if old != new:
      diffs.append(f"--{field.name}: the run has {_flag_value(old)}, this "
                   f"command {_flag_value(new)}")
  if diffs:
    raise ConfigError(
        f"--workdir={workdir} holds a run with other settings, so it cannot "
        f"resume it ({'; '.join(diffs)}); only "
        f"{', '.join('--' + name for name in RESUMABLE_FIELDS)}, --quiet and "
        "the logging flags may change on resume: repeat the run's flags, or "
        "choose a new --workdir")
  return stored


def read_metrics(workdir: str) -> list[dict]:
  """The records of WORKDIR/metrics.jsonl, one dict per epoch ([] if none)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _keep_metrics_until(workdir: str, step: int) -> list[dict]:
  """Drops the records after `step` (a crash after the record, before its
  checkpoint) from metrics.jsonl; returns the records kept."""
  records = read_metrics(workdir)
  kept = [r for r in records if r["step"] <= step]
  if len(kept) != len(records):
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    logging.info("metrics.jsonl: dropped %d epoch(s) after step %d, to redo",
                 len(records) - len(kept), step)
  return kept


def _write_config(workdir: str, config: config_lib.TrainConfig,
                  data: PreparedData) -> None:
  with open(os.path.join(workdir, "config.json"), "w") as f:
    record = config_lib.to_json_dict(config)
    record["data_source"] = data.dataset.source
    record["data"] = data.describe()  # resolved source and preprocessing
    json.dump(record, f, indent=2, sort_keys=True)


class _EarlyStopping:
  """The best validation ELBO so far and the epochs since it; from the records."""

  def __init__(self, patience: int, history: list[dict]):
    self.patience = patience
    self.best: Optional[float] = None
    self.best_epoch: Optional[int] = None
    self.epochs_since_best = 0
    for record in history:
      self.update(record)

  def update(self, record: dict) -> bool:
    """Takes an epoch's record; True if its val_elbo is the best so far."""
    value = record.get("val_elbo")
    if value is None:
      return False
    if not math.isnan(value) and (self.best is None or value > self.best):
      self.best, self.best_epoch = value, record["epoch"]
      self.epochs_since_best = 0
      return True
    self.epochs_since_best += 1
    return False

  @property
  def should_stop(self) -> bool:
    return self.patience > 0 and self.epochs_since_best >= self.patience


# --------------------------------------------------------------- training


def train_and_evaluate(
    config: config_lib.TrainConfig, workdir: str,
    data: Optional[PreparedData] = None, progress_bar: bool = True,
    after_chunk: Optional[Callable[[training.TrainState], None]] = None,
    figures: bool = True,
) -> list[dict]:
  """Trains `config` in WORKDIR, resuming the run there if there is one.

  Everything the user can get wrong (flags, data, a run directory with other
  settings) is checked before the first write or the first compiled step.

  Args:
    config: the run's settings.
    workdir: the run directory (created if missing).
    data: the prepared data of `config` (prepared here if None).
    progress_bar: a tqdm bar on stderr, advanced once per compiled chunk.
    after_chunk: called with the state after each chunk and its checkpoint.
    figures: write WORKDIR/figures at the end (TensorBoard gets its image
      grids every epoch regardless).

  Returns:
    The records of metrics.jsonl, one dict per epoch, from the first epoch.
  """
  config_lib.validate(config)
  stored = check_resumable(config, workdir)
  data = data or prepare_data(config)
  described = data.describe()
  logging.info("data: %s from %s (%s), train %s, test %s, binarization %s, "
               "input %s", config.dataset, data.dataset.source,
               data.dataset.source_kind, data.train.shape, data.test.shape,
               described["binarization"], described["input_path"])

  os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)

  model = build_model(config, data.data_dim)
  optimizer = _optimizer(config.optimizer, config.grad_clip_norm)
  steps_per_epoch = data.num_train // config.batch_size
  chunks = _chunk_lengths(steps_per_epoch, config.steps_per_chunk)
  chunk_starts = [sum(chunks[:i]) for i in range(len(chunks))]
  step_config = _step_config(config, steps_per_epoch)
  hparams = training.Hyperparams(
      learning_rate=jnp.float32(config.learning_rate),
      kl_weight=jnp.float32(config.kl_weight))

  init_rng, eval_rng, figure_rng = _run_keys(config)
  fresh_state = _init_train_state(model, optimizer, init_rng)
  state = fresh_state

  ckpts = checkpoints_lib.RunCheckpoints(
      os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints)
  writer = None
  stream = None
  try:
    progress = {}
    latest = ckpts.latest_step()
    if latest is not None:
      state, progress = ckpts.restore(latest, fresh_state)
      logging.info("resuming %s from its checkpoint at step %d (epoch %d of "
                   "%d)", workdir, latest, latest // steps_per_epoch + 1,
                   config.epochs)
      if (stored is not None and stored.epochs != config.epochs
          and config.lr_schedule in _DECAYING_SCHEDULES
          and not config.lr_schedule_epochs):
        logging.warning(
            "--epochs changed from %d to %d: the %s learning-rate schedule "
            "now spans %d epochs, so the remaining steps get other learning "
            "rates than the first run planned (set --lr_schedule_epochs to "
            "fix the schedule's length)", stored.epochs, config.epochs,
            config.lr_schedule, config.epochs)
    elif read_metrics(workdir):
      raise ConfigError(
          f"--workdir={workdir} holds metrics.jsonl but no checkpoint to "
          "resume from (a run from before checkpoints, or one killed before "
          "its first checkpoint); choose a new --workdir, or delete "
          f"{os.path.join(workdir, 'metrics.jsonl')} to start the run over")
    start_step = int(state.step)
    start_epoch, position = divmod(start_step, steps_per_epoch)
    if config.epochs < start_epoch:
      raise ConfigError(
          f"--epochs={config.epochs} is invalid: the run in {workdir} already "
          f"has {start_epoch} epochs; pass --epochs >= {start_epoch} (a larger "
          "value extends the run)")
    _write_config(workdir, config, data)
    history = _keep_metrics_until(workdir, start_step)
    if position not in chunk_starts:
      raise RuntimeError(
          f"checkpoint at step {start_step} is not at a chunk boundary of "
          f"chunks {chunks}; the run's chunking changed")
    start_chunk = chunk_starts.index(position)
    stopping = _EarlyStopping(config.early_stopping_patience, history)

    if data.streaming:
      chunk_fn = training.train_chunk_streamed
      if start_epoch < config.epochs:
        # Starts at the checkpoint's chunk: the chunks before it are never
        # gathered on the host nor sent to the device.
        stream = data.stream_chunks(state.rng, config.batch_size, chunks,
                                    first_epoch=start_epoch,
                                    num_epochs=config.epochs - start_epoch,
                                    first_chunk=start_chunk)
      next_input = lambda: next(stream)
    else:
      chunk_fn = training.train_chunk
      next_input = lambda: data.train

    compiled = {}
    compile_start = time.perf_counter()
    for n in sorted(set(chunks)):
      fn = _chunk_program(chunk_fn, model, optimizer, step_config, n,
                          config.batch_size, data.dynamic_binarization,
                          data.pixel_max)
      # Lowered for the fresh state, so a resumed run (whose restored arrays
      # are committed to the device) finds the programs a first run compiled.
      compiled[n] = fn.lower(fresh_state,
                             data.train_spec(n, config.batch_size),
                             hparams).compile()
    evaluate = _evaluate_program(model, config.eval_batch_size,
                                 config.eval_num_samples)
    logging.info("compiled %d chunk program(s) in %.1fs", len(compiled),
                 time.perf_counter() - compile_start)

    # On resume, readers drop the events that a crashed run wrote after the
    # checkpoint, steps > start_step, since this run writes them again (those
    # at start_step belong to the checkpoint's epoch and stay).
    writer = summary_writer.SummaryWriter(
        os.path.join(workdir, "tensorboard"),
        purge_step=None if latest is None else start_step + 1)
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    run_start = time.perf_counter() - progress.get("wall_time_sec", 0.0)
    done_chunks = min(start_epoch * len(chunks) + start_chunk,
                      config.epochs * len(chunks))
    bar = tqdm.tqdm(total=config.epochs * len(chunks), initial=done_chunks,
                    unit="chunk", file=sys.stderr, dynamic_ncols=True,
                    disable=not progress_bar, desc="train")
    if stopping.should_stop:
      logging.info("early stopping: the run already stopped after epoch %d",
                   history[-1]["epoch"])
    elif start_epoch >= config.epochs:
      logging.info("the run already has %d epochs; pass a larger --epochs to "
                   "extend it", start_epoch)

    with bar:
      for epoch in range(start_epoch, config.epochs):
        if stopping.should_stop:
          break
        resumed_mid_epoch = epoch == start_epoch and start_chunk > 0
        # (steps, metrics) of each chunk of the epoch; train seconds so far.
        done = ([(n, m) for n, m in progress["epoch_chunks"]]
                if resumed_mid_epoch else [])
        train_seconds = (progress["epoch_train_seconds"] if resumed_mid_epoch
                         else 0.0)
        for c in range(start_chunk if epoch == start_epoch else 0, len(chunks)):
          n = chunks[c]
          chunk_start = time.perf_counter()
          state, metrics = compiled[n](state, next_input(), hparams)
          metrics = _to_float(metrics)  # waits for the chunk
          train_seconds += time.perf_counter() - chunk_start
          done.append((n, metrics))
          steps_done = sum(k for k, _ in done)
          running = sum(k * m["elbo"] for k, m in done) / steps_done
          bar.set_postfix_str(f"epoch {epoch + 1}/{config.epochs} "
                              f"ELBO {running:.2f}", refresh=False)
          bar.update(1)
          end_of_epoch = c == len(chunks) - 1
          if end_of_epoch:
            record = _epoch_record(epoch, state, done, steps_per_epoch,
                                   config, data, evaluate, eval_rng,
                                   train_seconds, run_start)
            history.append(record)
            with open(metrics_path, "a") as f:
              f.write(json.dumps(record) + "\n")
            bar.clear()  # the log line goes above the bar, not into it
            _log_epoch(record, config.epochs)
            bar.refresh()
            writer.write_scalars(record["step"], {
                k: v for k, v in record.items() if k != "step"})
            writer.write_images(record["step"], _tensorboard_images(
                model, state.params, data, figure_rng))
            writer.flush()
            if stopping.update(record):
              ckpts.save_best(state, {"epoch": epoch + 1,
                                      "val_elbo": record["val_elbo"]})
          ckpts.save_latest(state, {
              "epoch": epoch + 1 if end_of_epoch else epoch,
              "epoch_chunks": [] if end_of_epoch else done,
              "epoch_train_seconds": 0.0 if end_of_epoch else train_seconds,
              "wall_time_sec": time.perf_counter() - run_start,
          })
          if after_chunk is not None:
            after_chunk(state)
        if stopping.should_stop:
          bar.clear()
          logging.info(
              "early stopping after epoch %d: no better validation ELBO in %d "
              "epochs (best %.2f at epoch %d)", epoch + 1, stopping.patience,
              stopping.best, stopping.best_epoch)

    if figures:
      write_figures(model, state.params, data, history,
                    os.path.join(workdir, "figures"), figure_rng)
  finally:
    if stream is not None:
      stream.close()
    if writer is not None:
      writer.close()
    ckpts.close()
  return history


def _epoch_record(epoch: int, state: training.TrainState, chunks: list,
                  steps_per_epoch: int, config: config_lib.TrainConfig,
                  data: PreparedData, evaluate, eval_rng, train_seconds: float,
                  run_start: float) -> dict:
  """The metrics.jsonl record of the epoch that ends at `state`."""
  train = {k: sum(n * m[k] for n, m in chunks) / steps_per_epoch
           for k in training.StepMetrics._fields}
  test = _to_float(evaluate(state.params, data.test, eval_rng))
  val_elbo = (float(evaluate(state.params, data.validation, eval_rng).elbo)
              if data.validation is not None else None)
  record = {
      "epoch": epoch + 1,
      "step": int(state.step),
      "train_elbo": train["elbo"],
      "train_kl": train["kl"],
      "train_log_likelihood": train["log_likelihood"],
      "val_elbo": val_elbo,
      "test_elbo": test["elbo"],
      "test_elbo_stderr": test["elbo_stderr"],
      "test_kl": test["kl"],
      "test_log_likelihood": test["log_likelihood"],
      "learning_rate": train["learning_rate"],
      "kl_weight": train["kl_weight"],
      "grad_norm": train["grad_norm"],
      "examples_per_sec": steps_per_epoch * config.batch_size / train_seconds,
      "wall_time_sec": time.perf_counter() - run_start,  # after evaluation
  }
  assert tuple(record) == METRIC_KEYS
  return record


def _log_epoch(record: dict, epochs: int) -> None:
  val = ("" if record["val_elbo"] is None
         else f"  val ELBO {record['val_elbo']:.2f}")
  logging.info(
      "epoch %d/%d  train ELBO %.2f%s  test ELBO %.2f ± %.2f (KL %.2f, "
      "log-lik %.2f)  KL weight %.3f  %.0f examples/s", record["epoch"],
      epochs, record["train_elbo"], val, record["test_elbo"],
      record["test_elbo_stderr"], record["test_kl"],
      record["test_log_likelihood"], record["kl_weight"],
      record["examples_per_sec"])


# ------------------------------------------------------------- figures


def _label_names(data: PreparedData):
  return (visualize.FASHION_MNIST_LABELS
          if data.dataset.name == "fashion_mnist" else None)


def _tensorboard_images(model: VAEModel, params, data: PreparedData,
                        rng: jax.Array) -> dict[str, np.ndarray]:
  """Image grids for TensorBoard, from the first test images."""
  n = min(_TB_IMAGE_EXAMPLES, data.test.shape[0])
  labels = data.dataset.test.labels
  figure_data = visualize.compute_figure_data(
      model, params, data.test[:n], None if labels is None else labels[:n],
      data.image_shape, rng)
  return visualize.images_for_tensorboard(figure_data)


def write_figures(model: VAEModel, params, data: PreparedData,
                  history: Optional[list[dict]], directory: str,
                  rng: jax.Array) -> dict[str, str]:
  """The PNGs of vae_jax.visualize for the test split: {name: path}."""
  return visualize.write_all_figures(
      model, params, data.test, data.dataset.test.labels, data.image_shape,
      history, directory, rng, label_names=_label_names(data))


# ------------------------------------------------------------- evaluation


def evaluate_run(workdir: str, checkpoint: Optional[str] = None,
                 num_samples: Optional[int] = None,
                 figures: bool = True) -> dict:
  """Reloads a run, evaluates a checkpoint on the test split, writes eval.json.

  Args:
    workdir: a run directory written by `train_and_evaluate`.
    checkpoint: "best" (by validation ELBO), "latest", or a step number;
      None: best when the run has a validation split, else latest.
    num_samples: z samples per example in the ELBO estimate; None: the run's
      eval_num_samples (then, at the latest checkpoint, test_elbo equals the
      last record of metrics.jsonl).
    figures: regenerate WORKDIR/figures from this checkpoint.

  Returns:
    The record written to WORKDIR/eval.json.

  Raises:
    ConfigError: no run in `workdir`, no such checkpoint, bad num_samples.
    DataError: the run's data cannot be read.
  """
  if not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir}: no such directory; pass the run "
                      "directory that experiments/train.py wrote")
  config = _load_config(workdir)
  if config is None:
    raise ConfigError(f"--workdir={workdir} holds no run (no config.json); "
                      "pass the run directory that experiments/train.py wrote")
  if num_samples is None:
    num_samples = config.eval_num_samples
  if num_samples < 1:
    raise ConfigError(f"--num_samples={num_samples} is invalid: it must be "
                      ">= 1")
  ckpts = checkpoints_lib.RunCheckpoints(os.path.join(workdir, "checkpoints"),
                                         read_only=True)
  try:
    which, step = _choose_checkpoint(ckpts, checkpoint, config, workdir)
    data = prepare_data(config)
    model = build_model(config, data.data_dim)
    optimizer = _optimizer(config.optimizer, config.grad_clip_norm)
    init_rng, eval_rng, figure_rng = _run_keys(config)
    template = _init_train_state(model, optimizer, init_rng)
    state, _ = ckpts.restore(step, template, which)
  finally:
    ckpts.close()
  logging.info("evaluating %s checkpoint at step %d of %s", which, step,
               workdir)
  evaluate = _evaluate_program(model, config.eval_batch_size, num_samples)
  result = _to_float(evaluate(state.params, data.test, eval_rng))
  record = {
      "checkpoint": which,  # the series the step was restored from
      "step": step,
      "epoch": step / (data.num_train // config.batch_size),
      "test_elbo": result["elbo"],
      "test_elbo_stderr": result["elbo_stderr"],
      "test_kl": result["kl"],
      "test_log_likelihood": result["log_likelihood"],
      "num_examples": int(data.test.shape[0]),
      "num_samples": num_samples,
  }
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(record, f, indent=2)
  logging.info("test ELBO %.2f ± %.2f (KL %.2f, log-lik %.2f) over %d "
               "examples, %d z sample(s) each", record["test_elbo"],
               record["test_elbo_stderr"], record["test_kl"],
               record["test_log_likelihood"], record["num_examples"],
               num_samples)
  if figures:
    write_figures(model, state.params, data, read_metrics(workdir),
                  os.path.join(workdir, "figures"), figure_rng)
  return record


def _choose_checkpoint(ckpts: checkpoints_lib.RunCheckpoints,
                       checkpoint: Optional[str],
                       config: config_lib.TrainConfig,
                       workdir: str) -> tuple[str, int]:
  """(which series, step) that --checkpoint names; ConfigError if none."""
  latest, best = ckpts.steps(checkpoints_lib.LATEST), ckpts.steps(
      checkpoints_lib.BEST)
  if not latest and not best:
    raise ConfigError(f"--workdir={workdir} holds no checkpoint yet; train "
                      "the run for at least one chunk of steps first")
  if checkpoint is None:
    checkpoint = "best" if config.validation_size > 0 and best else "latest"
  if checkpoint == "best":
    if not best:
      raise ConfigError(
          f"--checkpoint=best: {workdir} has no best checkpoint"
          + (" (the run has no validation split, --validation_size=0)"
             if config.validation_size == 0 else "")
          + "; use --checkpoint=latest")
    return checkpoints_lib.BEST, best[-1]
  if checkpoint == "latest":
    return checkpoints_lib.LATEST, latest[-1]
  try:
    step = int(checkpoint)
  except ValueError:
    raise ConfigError(f"--checkpoint={checkpoint!r} is invalid: use best, "
                      "latest or a step number") from None
  if step in latest:
    return checkpoints_lib.LATEST, step
  if step in best:
    return checkpoints_lib.BEST, step
  raise ConfigError(
      f"--checkpoint={step}: {workdir} has no checkpoint at step {step}; it "
      f"has steps {', '.join(map(str, sorted(set(latest) | set(best))))}")
