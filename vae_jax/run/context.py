"""One run's host side: what stays fixed (`RunContext`) and where it is
(`RunTracker`), shared by a single run and each member of a sweep's group.

After each compiled chunk the tracker does the same for both: stop on a
non-finite chunk, keep the chunk's record, end the epoch (metrics.jsonl,
the log line, TensorBoard, the best checkpoint) and save the latest
checkpoint with the progress it resumes from. `vae_jax.run.loop` and
`vae_jax.sweep.group` differ only in how they dispatch the chunks.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import jax
from absl import logging

from vae_jax import step as step_lib
from vae_jax.chunks import ChunkHealth
from vae_jax.data.prepared import PreparedData
from vae_jax.errors import NonFiniteError
from vae_jax.evaluation import dataset as likelihood
from vae_jax.run import mesh
from vae_jax.run import stages
from vae_jax.run import tensorboard
from vae_jax.run.early_stopping import EarlyStopping
from vae_jax.run.outputs import epoch_record, log_epoch, tensorboard_images
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import resume
from vae_jax.store import workdir as workdir_lib
from vae_jax.store.metrics import EpochRecord

__all__ = ["RunContext", "RunTracker"]


@dataclasses.dataclass(frozen=True)
class RunContext:
  """What stays fixed while one run trains."""

  config: Any  # the run's ConfigDict
  model: Any
  data: PreparedData
  outputs: str  # config.json, metrics.jsonl, TensorBoard, figures
  ckpts: checkpoints_lib.RunCheckpoints  # in WORKDIR/checkpoints
  writer: tensorboard.SummaryWriter
  steps_per_epoch: int
  eval_rng: jax.Array
  figure_rng: jax.Array
  # The mesh of a sharded run: its evaluation runs on this process's
  # replica of the state (`mesh.local_copy`). None: one device.
  place: Optional[mesh.Placement] = None

  def local(self, state: step_lib.TrainState) -> step_lib.TrainState:
    """What this process evaluates of `state`."""
    return state if self.place is None else mesh.local_copy(state)


class RunTracker:
  """Where one run is: its history, its unfinished epoch, early stopping
  and the run's clock, from the checkpoint it started from."""

  def __init__(self, ctx: RunContext, start: resume.Start):
    self.ctx = ctx
    self.history: list[EpochRecord] = start.history
    self.stopping = EarlyStopping(
      ctx.config.early_stopping_patience, self.history
    )
    progress = start.progress
    mid_epoch = int(start.state.step) % ctx.steps_per_epoch > 0
    self.done: list[resume.ChunkRecord] = (
      list(progress.epoch_chunks) if mid_epoch else []
    )
    self.train_seconds = progress.epoch_train_seconds if mid_epoch else 0.0
    self._wall_before = progress.wall_time_sec
    self.start_clock()

  def start_clock(self) -> None:
    """The run's seconds go on from the checkpoint's, from now (a run
    starts its clock once its programs are compiled)."""
    self._run_start = time.perf_counter() - self._wall_before

  def wall_time(self) -> float:
    return time.perf_counter() - self._run_start

  def running_elbo(self) -> float:
    """The unfinished epoch's training ELBO so far."""
    steps = sum(c.steps for c in self.done)
    return sum(c.steps * float(c.metrics.elbo) for c in self.done) / steps

  def after_chunk(
    self,
    state: step_lib.TrainState,
    epoch: int,
    chunk: resume.ChunkRecord,
    health: ChunkHealth,
    seconds: float,
  ) -> None:
    """Takes a trained chunk of `epoch` (0-based; its record and health on
    the host, `seconds` of training) whose new state is `state`: ends the
    epoch if the chunk completes it, then saves the latest checkpoint.

    Raises:
      NonFiniteError: the chunk or the epoch's evaluation is non-finite;
        nothing of it was saved.
    """
    ctx = self.ctx
    failure = stages.chunk_failure(
      health,
      sum(c.skipped_updates for c in self.done),
      ctx.config.skip_nonfinite_updates,
      ctx.steps_per_epoch,
      ctx.config.epochs,
      ctx.ckpts,
    )
    if failure:
      raise NonFiniteError(failure)
    self.train_seconds += seconds
    self.done.append(chunk)
    end_of_epoch = sum(c.steps for c in self.done) == ctx.steps_per_epoch
    if end_of_epoch:
      self._end_epoch(epoch, state)
      self.done, self.train_seconds = [], 0.0
    ckpt_epoch = epoch + 1 if end_of_epoch else epoch
    ctx.ckpts.save_latest(state, self._progress(ckpt_epoch))

  def _progress(self, epoch: int) -> dict:
    """A checkpoint's progress at `epoch` epochs and this tracker's chunks."""
    return resume.checkpoint_progress(
      epoch, self.done, self.train_seconds, self.wall_time(), self.history
    )

  def _end_epoch(self, epoch: int, state: step_lib.TrainState) -> None:
    """The epoch's record: metrics.jsonl, the log line, TensorBoard, and
    the best checkpoint (of `state`, all of it) when its validation ELBO
    is the best."""
    ctx = self.ctx
    local = ctx.local(state)
    record = epoch_record(
      ctx, epoch, local, self.done, self.train_seconds, self.wall_time()
    )
    failure = stages.nonfinite_evaluation(record)
    if failure:
      raise NonFiniteError(
        f"{failure}; {stages.last_good(ctx.ckpts)}. Start a new run "
        "with a smaller --config.learning_rate"
      )
    workdir_lib.append_metrics(ctx.outputs, record)
    self.history.append(record)
    log_epoch(record, ctx.config.epochs)
    scalars = {k: v for k, v in record.to_json().items() if k != "step"}
    ctx.writer.write_scalars(record.step, scalars)
    ctx.writer.write_images(
      record.step,
      tensorboard_images(
        ctx.model,
        step_lib.evaluation_params(local),
        ctx.data,
        ctx.figure_rng,
      ),
    )
    ctx.writer.flush()
    if self.stopping.update(record):
      # The progress of a latest/ step at an epoch's end (a run resumes
      # from best/ when every later latest/ step is damaged), its val ELBO.
      best = resume.checkpoint_progress(
        epoch + 1, [], 0.0, record.wall_time_sec, self.history
      )
      ctx.ckpts.save_best(state, dict(best, val_elbo=record.val_elbo))

  def finish(self, state: step_lib.TrainState) -> Any:
    """The trained model's last measurements: the latent usage (a collapse
    warning) and, with `final_importance_samples`, the test log p(x) of the
    best checkpoint (else of `state`) on metrics.jsonl's last line. Returns
    those params (the averaged ones when the run keeps an average)."""
    ctx, history = self.ctx, self.history
    best = ctx.ckpts.best_step()
    params = (
      step_lib.evaluation_params(ctx.local(state))
      if best is None
      else ctx.ckpts.restore_params(best, checkpoints_lib.BEST)
    )
    config = ctx.config
    usage = likelihood.latent_usage(
      ctx.model, params, ctx.data.test, config.eval_batch_size
    )
    likelihood.warn_if_collapsed(usage)
    k = config.final_importance_samples
    if not (k and history and history[-1].test_log_px is None):
      return params
    report = likelihood.likelihood_report(
      ctx.model,
      params,
      ctx.data.test,
      ctx.eval_rng,
      k,
      elbo_num_samples=config.eval_num_samples,
      batch_size=config.eval_batch_size,
    )
    for record in history[:-1]:  # an extended run measured an earlier last
      record.test_log_px = record.test_log_px_stderr = None
    last = history[-1]
    last.test_log_px = report["test_log_px"]
    last.test_log_px_stderr = report["test_log_px_stderr"]
    workdir_lib.write_metrics(ctx.outputs, history)
    ctx.writer.write_scalars(
      last.step,
      {
        "test_log_px": last.test_log_px,
        "test_log_px_stderr": last.test_log_px_stderr,
      },
    )
    ctx.writer.flush()
    logging.info(
      "test log p(x) %.2f ± %.2f (K = %d, %s checkpoint), gap to "
      "the ELBO %.2f ± %.2f",
      last.test_log_px,
      last.test_log_px_stderr,
      k,
      "last" if best is None else "best",
      report["test_gap"],
      report["test_gap_stderr"],
    )
    return params
