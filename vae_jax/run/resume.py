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

from vae_jax.run import checkpoints as checkpoints_lib
from vae_jax.run import workdir as workdir_lib
from vae_jax.step import TrainState

__all__ = ["Start", "start", "checkpoint_progress"]


class Start(NamedTuple):
  state: TrainState
  progress: dict[str, Any]  # the restored step's progress; {} when fresh
  history: list[dict]  # metrics.jsonl's records up to state.step
  restored_step: Optional[int]  # None: the run starts from the beginning
  restored_from: Optional[str] = None  # LATEST or BEST; None when fresh


def _count_lines(path: str) -> int:
  if not os.path.exists(path):
    return 0
  with open(path, "rb") as f:
    return sum(1 for line in f if line.strip())


def start(ckpts: checkpoints_lib.RunCheckpoints, fresh_state: TrainState,
          workdir: str) -> Start:
  """The state to train from and the metrics history that goes with it.

  Raises:
    CheckpointError: checkpoints exist and none is usable.
  """
  latest = ckpts.steps(checkpoints_lib.LATEST)
  best = [(checkpoints_lib.BEST, s)
          for s in reversed(ckpts.steps(checkpoints_lib.BEST))]
  # Newest first; at one step latest/ first (it carries a mid-epoch's
  # progress, best/ only epoch ends).
  candidates = sorted([(checkpoints_lib.LATEST, s) for s in latest] + best,
                      key=lambda c: (-c[1], c[0] != checkpoints_lib.LATEST))
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
        "(epoch %d) and trains the epochs after it again", ckpts.directory,
        f"no latest/ step from it on is intact ({', '.join(later)})" if later
        else "latest/ holds no step from it on", restored.step,
        restored.progress.get("epoch", 0))
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if restored is None:
    lines = _count_lines(metrics_path)
    if lines:
      logging.warning(
          "%s holds no checkpoint: the run starts over, and the %d line(s) "
          "of %s that a run killed before its first checkpoint wrote are "
          "dropped", workdir, lines, metrics_path)
    if os.path.lexists(metrics_path):
      workdir_lib.write_metrics(workdir, [])
    return Start(fresh_state, {}, [], None)
  progress = restored.progress
  if "records" in progress:
    history = [dict(r) for r in progress["records"]]
    on_disk = _count_lines(metrics_path)
    if on_disk != len(history):
      logging.warning("%s had %d line(s); rewritten with the %d epoch(s) of "
                      "the checkpoint at step %d", metrics_path, on_disk,
                      len(history), restored.step)
    workdir_lib.write_metrics(workdir, history)
  else:  # a checkpoint written before records were kept in it
    history = workdir_lib.keep_metrics_until(workdir, restored.step)
  return Start(restored.state, progress, history, restored.step,
               restored.which)


def checkpoint_progress(epoch: int, done: list, train_seconds: float,
                        wall_time_sec: float, history: list[dict]) -> dict:
  """The `progress` item of a latest/ checkpoint.

  Args:
    epoch: epochs completed at the checkpoint.
    done: (steps, metrics) of the chunks of an unfinished epoch, else [].
    train_seconds: the unfinished epoch's training seconds so far.
    wall_time_sec: the run's seconds so far.
    history: the records of metrics.jsonl up to the checkpoint.
  """
  return {"epoch": epoch, "epoch_chunks": done,
          "epoch_train_seconds": train_seconds,
          "wall_time_sec": wall_time_sec,
          "records": [workdir_lib.json_safe(r) for r in history]}
