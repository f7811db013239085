"""Where a run starts: its newest usable checkpoint, or the beginning.

`start(...)` restores the newest step that restores intact (see
`RunCheckpoints.restore_newest`), latest/ or best/: when every later
latest/ step is damaged or deleted, the best checkpoint (an epoch's end) is
the newest intact state, and going back to it costs only the epochs after
it, with a warning that says so. metrics.jsonl is rebuilt from the records
that checkpoint keeps (each epoch's record up to its step), so a torn,
emptied or longer file ends with exactly the epochs of the restored state.
A directory with no checkpoint at all (a run killed before its first one)
starts over: whatever metrics lines it wrote are dropped with a warning.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

from absl import logging

from vae_jax.errors import ConfigError
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import workdir as workdir_lib
from vae_jax.store.metrics import EpochRecord
from vae_jax.step import StepMetrics, TrainState

__all__ = [
  "Start",
  "start",
  "checkpoint_progress",
  "ChunkRecord",
  "Progress",
  "resume_point",
]


class ChunkRecord(NamedTuple):
  """A trained chunk of an epoch, on the host."""

  steps: int
  metrics: StepMetrics  # means over the steps whose update was taken
  skipped_updates: int  # non-finite updates skipped (skip_nonfinite_updates)

  def to_json(self) -> list:
    """As a checkpoint keeps it: [steps, {metric: value, skipped_updates}]."""
    values = {k: float(v) for k, v in self.metrics._asdict().items()}
    return [self.steps, dict(values, skipped_updates=self.skipped_updates)]

  @classmethod
  def from_json(cls, item) -> "ChunkRecord":
    steps, values = item
    return cls(
      int(steps),
      StepMetrics(**{k: values[k] for k in StepMetrics._fields}),
      int(values.get("skipped_updates", 0)),
    )


class Progress(NamedTuple):
  """Where a checkpoint stands in its run (a latest/ checkpoint's progress
  item, stored as JSON; `records` is metrics.jsonl up to its step)."""

  epoch: int = 0  # epochs completed
  epoch_chunks: tuple = ()  # ChunkRecords of an unfinished epoch
  epoch_train_seconds: float = 0.0  # that epoch's training seconds so far
  wall_time_sec: float = 0.0  # the run's seconds so far
  # metrics.jsonl up to the step; None: a checkpoint from before records.
  records: Optional[list[EpochRecord]] = None

  def to_json(self) -> dict[str, Any]:
    return {
      "epoch": self.epoch,
      "epoch_chunks": [c.to_json() for c in self.epoch_chunks],
      "epoch_train_seconds": self.epoch_train_seconds,
      "wall_time_sec": self.wall_time_sec,
      "records": [r.to_json() for r in self.records or []],
    }

  @classmethod
  def from_json(cls, stored: dict[str, Any]) -> "Progress":
    return cls(
      int(stored.get("epoch", 0)),
      tuple(ChunkRecord.from_json(c) for c in stored.get("epoch_chunks", [])),
      float(stored.get("epoch_train_seconds", 0.0)),
      float(stored.get("wall_time_sec", 0.0)),
      (
        [EpochRecord.from_json(r) for r in stored["records"]]
        if "records" in stored
        else None
      ),
    )


class Start(NamedTuple):
  state: TrainState
  progress: Progress  # the restored step's progress; Progress() when fresh
  history: list[EpochRecord]  # metrics.jsonl's records up to state.step
  restored_step: Optional[int]  # None: the run starts from the beginning
  restored_from: Optional[str] = None  # LATEST or BEST; None when fresh


def _count_lines(path: str) -> int:
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    return sum(1 for line in f if line.strip())


def start(
  ckpts: checkpoints_lib.RunCheckpoints, fresh_state: TrainState, workdir: str
) -> Start:
  """The state to train from and the metrics history that goes with it.

  Raises:
    CheckpointError: checkpoints exist and none is usable.
  """
  latest = ckpts.steps(checkpoints_lib.LATEST)
  best = [
    (checkpoints_lib.BEST, s)
    for s in reversed(ckpts.steps(checkpoints_lib.BEST))
  ]
  # Newest first; at one step latest/ first (it carries a mid-epoch's
  # progress, best/ only epoch ends).
  candidates = sorted(
    [(checkpoints_lib.LATEST, s) for s in latest] + best,
    key=lambda c: (-c[1], c[0] != checkpoints_lib.LATEST),
  )
  restored = ckpts.restore_newest(candidates, fresh_state)
  if restored is None or restored.which != checkpoints_lib.BEST:
    # The best checkpoint is otherwise only read by evaluation; check it
    # now, so that a damaged one is moved aside (and warned about) while
    # the run can still save a new best.
    try:
      ckpts.restore_newest(best, fresh_state)
    except checkpoints_lib.CheckpointError:
      pass  # warned per step; the next better epoch saves a new best
  else:
    later = [str(s) for s in latest if s >= restored.step]
    logging.warning(
      "%s: %s, so the run went back to its best checkpoint at step %d "
      "(epoch %d) and trains the epochs after it again",
      ckpts.directory,
      f"no latest/ step from it on is intact ({', '.join(later)})"
      if later
      else "latest/ holds no step from it on",
      restored.step,
      restored.progress.get("epoch", 0),
    )
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if restored is None:
    lines = _count_lines(metrics_path)
    if lines:
      logging.warning(
        "%s holds no checkpoint: the run starts over, and the %d line(s) "
        "of %s that a run killed before its first checkpoint wrote are "
        "dropped",
        workdir,
        lines,
        metrics_path,
      )
    if os.path.lexists(metrics_path):
      workdir_lib.write_metrics(workdir, [])
    return Start(fresh_state, Progress(), [], None)
  progress = Progress.from_json(restored.progress)
  if progress.records is not None:
    history = progress.records
    on_disk = _count_lines(metrics_path)
    if on_disk != len(history):
      logging.warning(
        "%s had %d line(s); rewritten with the %d epoch(s) of "
        "the checkpoint at step %d",
        metrics_path,
        on_disk,
        len(history),
        restored.step,
      )
    workdir_lib.write_metrics(workdir, history)
  else:  # a checkpoint written before records were kept in it
    history = workdir_lib.keep_metrics_until(workdir, restored.step)
  return Start(restored.state, progress, history, restored.step, restored.which)


def checkpoint_progress(
  epoch: int,
  done: list,
  train_seconds: float,
  wall_time_sec: float,
  history: list[EpochRecord],
) -> dict:
  """The `progress` item of a latest/ checkpoint, as JSON (`Progress`).

  Args:
    epoch: epochs completed at the checkpoint.
    done: the ChunkRecords of an unfinished epoch, else [].
    train_seconds: the unfinished epoch's training seconds so far.
    wall_time_sec: the run's seconds so far.
    history: the records of metrics.jsonl up to the checkpoint.
  """
  return Progress(
    epoch, tuple(done), train_seconds, wall_time_sec, history
  ).to_json()


def resume_point(
  config,
  stored,
  start: Start,
  workdir: str,
  steps_per_epoch: int,
  chunks: list[int],
) -> tuple[int, int]:
  """(epoch, chunk) a run goes on from `start`, once its restored step fits
  the config (`stored`: the run's stored config, None if new)."""
  latest = start.restored_step
  if latest is not None:
    logging.info(
      "resuming %s from its checkpoint at step %d (epoch %d of %d)",
      workdir,
      latest,
      latest // steps_per_epoch + 1,
      config.epochs,
    )
    if (
      stored is not None
      and stored.epochs != config.epochs
      and config.lr_schedule != "constant"
      and not config.lr_schedule_epochs
    ):
      logging.warning(
        "epochs changed from %d to %d: the %s learning-rate schedule now "
        "spans %d epochs, so the remaining steps get other learning rates "
        "than the first run planned (set lr_schedule_epochs to fix the "
        "schedule's length)",
        stored.epochs,
        config.epochs,
        config.lr_schedule,
        config.epochs,
      )
  start_step = int(start.state.step)
  start_epoch, position = divmod(start_step, steps_per_epoch)
  if config.epochs < start_epoch:
    raise ConfigError(
      f"--config.epochs={config.epochs} is invalid: the run in {workdir} "
      f"already has {start_epoch} epochs; pass epochs >= {start_epoch} (a "
      "larger value extends the run)"
    )
  chunk_starts = [sum(chunks[:i]) for i in range(len(chunks))]
  if position not in chunk_starts:
    raise RuntimeError(
      f"checkpoint at step {start_step} is not at a chunk boundary of "
      f"chunks {chunks}; the run's chunking changed"
    )
  return start_epoch, chunk_starts.index(position)
