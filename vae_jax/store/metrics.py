"""WORKDIR/metrics.jsonl: one JSON object per epoch, `EpochRecord`.

The file is appended to during a run and rewritten whole on resume from
the records kept in the restored checkpoint (`vae_jax.store.resume`),
so a torn, emptied or overlong file is repaired. Strict JSON: NaN and ±inf
are written as null.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Optional

from absl import logging

from vae_jax.errors import ConfigError
from vae_jax.store.files import write_text_atomic

__all__ = [
  "EpochRecord",
  "METRIC_KEYS",
  "read_metrics",
  "read_records",
  "append_metrics",
  "keep_metrics_until",
  "write_metrics",
  "json_safe",
]


@dataclasses.dataclass
class EpochRecord:
  """One line of metrics.jsonl: an epoch's means, nats per example.

  Every ELBO is reported with KL weight 1, also during KL warm-up, and
  without free bits, whatever the training objective; `train_objective` is
  the objective trained (the β-weighted ELBO, with free bits if set, or the
  IWAE bound), averaged over the epoch's steps, as are `kl_weight` and
  `learning_rate`;
  `val_elbo` is None without a validation split; `examples_per_sec` counts
  training steps only; `test_log_px` is null except on the last line of a
  run with `final_importance_samples` > 0.
  """

  epoch: int
  step: int
  train_elbo: float
  train_kl: float
  train_log_likelihood: float
  train_objective: float
  val_elbo: Optional[float]
  test_elbo: float
  test_elbo_stderr: float
  test_kl: float
  test_log_likelihood: float
  learning_rate: float
  kl_weight: float
  grad_norm: float
  examples_per_sec: float
  wall_time_sec: float
  skipped_updates: int  # non-finite steps skipped (skip_nonfinite_updates)
  # The importance-sampled test log p(x) (config.final_importance_samples):
  # null except on the last line of a run that measured it.
  test_log_px: Optional[float] = None
  test_log_px_stderr: Optional[float] = None

  def to_json(self) -> dict:
    """metrics.jsonl's object of this record (NaN and ±inf as null)."""
    return json_safe(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, item: dict) -> "EpochRecord":
    """The record of one metrics.jsonl object (keys not in it: defaults)."""
    return cls(**{k: item[k] for k in METRIC_KEYS if k in item})


METRIC_KEYS = tuple(f.name for f in dataclasses.fields(EpochRecord))


def read_metrics(workdir: str) -> list[dict]:
  """WORKDIR/metrics.jsonl's JSON objects, one per epoch ([] if none), as
  tools and notebooks read any run directory; the run itself keeps
  `EpochRecord`s (`read_records`).

  A torn last line (a kill during the append) is dropped with a warning.
  """
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except ValueError:
      if i == len(lines) - 1:
        logging.warning("%s: dropped a torn last line", path)
        break
      raise ConfigError(
        f"{path}: line {i + 1} is not JSON; the file is "
        "damaged: repair or delete it"
      ) from None
  return records


def read_records(workdir: str) -> list[EpochRecord]:
  """WORKDIR/metrics.jsonl as `EpochRecord`s ([] if none)."""
  return [EpochRecord.from_json(r) for r in read_metrics(workdir)]


def json_safe(record: dict) -> dict:
  """`record` with NaN and ±inf as None: strict JSON."""
  return {
    k: (None if isinstance(v, float) and not math.isfinite(v) else v)
    for k, v in record.items()
  }


def _json_line(record: dict) -> str:
  # allow_nan=False: metrics.jsonl stays strict JSON (null, never NaN).
  return json.dumps(json_safe(record), allow_nan=False) + "\n"


def append_metrics(workdir: str, record: EpochRecord) -> None:
  """Appends `record` to WORKDIR/metrics.jsonl."""
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(_json_line(record.to_json()))


def write_metrics(workdir: str, records: list[EpochRecord]) -> None:
  """Replaces WORKDIR/metrics.jsonl by `records`, atomically."""
  write_text_atomic(
    os.path.join(workdir, "metrics.jsonl"),
    "".join(_json_line(r.to_json()) for r in records),
  )


def keep_metrics_until(workdir: str, step: int) -> list[EpochRecord]:
  """Drops the records after `step` (a crash after the record, before its
  checkpoint) from metrics.jsonl; returns the records kept. (For
  checkpoints that carry no records of their own.)"""
  records = read_records(workdir)
  kept = [r for r in records if r.step <= step]
  if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    write_metrics(workdir, kept)  # rewritten whole: drops a torn line too
  if len(kept) != len(records):
    logging.info(
      "metrics.jsonl: dropped %d epoch(s) after step %d, to redo",
      len(records) - len(kept),
      step,
    )
  return kept
