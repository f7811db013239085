"""The run directory's contract: config.json, metrics.jsonl and resume checks.

    WORKDIR/config.json      the run's resolved config (every setting), the
                             config file it started from, the data source
    WORKDIR/metrics.jsonl    one JSON object per epoch, `EpochRecord`
    WORKDIR/tensorboard/     event files (vae_jax.run.tensorboard)
    WORKDIR/checkpoints/     latest/ and best/ (vae_jax.run.checkpoints)
    WORKDIR/figures/*.png    vae_jax.viz.figure_data.FIGURE_NAMES
    WORKDIR/eval.json        written by vae_jax.run.evaluate

Other tools and notebooks read a run through these files alone. Small files
are written to a temporary file and renamed, so a kill never leaves one
half-written.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import ml_collections
from absl import logging

from vae_jax import validation
from vae_jax.errors import ConfigError
from vae_jax.names import resolve_image_layout

__all__ = ["EpochRecord", "METRIC_KEYS", "load_config", "check_resumable",
           "write_config", "read_metrics", "append_metrics",
           "keep_metrics_until", "rewrite_metrics",
           "write_json_atomic"]


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
  # The importance-sampled test log p(x) (config.final_importance_samples):
  # null except on the last line of a run that measured it.
  test_log_px: Optional[float] = None
  test_log_px_stderr: Optional[float] = None


METRIC_KEYS = tuple(f.name for f in dataclasses.fields(EpochRecord))


def write_json_atomic(path: str, value: Any) -> None:
  """Writes JSON to `path` through a temporary file and a rename."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def load_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config stored in WORKDIR/config.json, or None if there is none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      stored = json.load(f)
    settings = stored["config"]
    if not isinstance(settings, dict):
      raise TypeError("'config' is not an object")
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ConfigError(
        f"{path} is unreadable ({type(e).__name__}: {e}); it is not a run "
        "directory of vae_jax, or it is damaged: choose another --workdir"
    ) from None
  from vae_jax.configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  for name, value in settings.items():
    if name in config:
      config[name] = tuple(value) if isinstance(value, list) else value
  return config


def _differences(stored, config) -> list[str]:
  diffs = []
  for name in sorted(set(stored.keys()) | set(config.keys())):
    if name in validation.RESUMABLE_FIELDS:
      continue
    old, new = stored.get(name), config.get(name)
    if name == "image_layout":  # '' and the model's own layout are one
      old = resolve_image_layout(stored.get("model"), old)
      new = resolve_image_layout(config.get("model"), new)
    if old != new:
      show = validation._show  # pylint: disable=protected-access
      diffs.append(f"--config.{name}: the run has {show(old)}, this command "
                   f"{show(new)}")
  return diffs


def check_resumable(config, workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The stored config of the run in `workdir` (None if new), if `config` may resume it.

  Raises:
    ConfigError: naming every setting whose value differs from the stored
      run's, with both values; only RESUMABLE_FIELDS may differ.
  """
  stored = load_config(workdir)
  if stored is None:
    return None
  diffs = _differences(stored, config)
  if diffs:
    raise ConfigError(
        f"--workdir={workdir} holds a run with other settings, so it cannot "
        f"resume it ({'; '.join(diffs)}); only "
        f"{', '.join('--config.' + n for n in validation.RESUMABLE_FIELDS)}, "
        "--quiet and the logging flags may change on resume: repeat the "
        "run's settings, or choose a new --workdir")
  return stored


def write_config(workdir: str, config, config_file: str,
                 data_description: dict) -> None:
  """WORKDIR/config.json: the resolved config and where the data came from."""
  write_json_atomic(os.path.join(workdir, "config.json"), {
      "config": validation.to_json_dict(config),
      "config_file": config_file,
      "data_source": data_description["source"],
      "data": data_description,  # resolved source and preprocessing
  })


def read_metrics(workdir: str) -> list[dict]:
  """The records of WORKDIR/metrics.jsonl, one dict per epoch ([] if none).

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
      raise ConfigError(f"{path}: line {i + 1} is not JSON; the file is "
                        "damaged: repair or delete it") from None
  return records


def _json_line(record: dict) -> str:
  # allow_nan=False: metrics.jsonl stays strict JSON (null, never NaN).
  clean = {k: (None if isinstance(v, float) and v != v else v)
           for k, v in record.items()}
  return json.dumps(clean, allow_nan=False) + "\n"


def append_metrics(workdir: str, record: EpochRecord) -> dict:
  """Appends `record` to WORKDIR/metrics.jsonl; returns it as a dict."""
  as_dict = dataclasses.asdict(record)
  with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
    f.write(_json_line(as_dict))
  return as_dict


def rewrite_metrics(workdir: str, records: list[dict]) -> None:
  """Replaces metrics.jsonl by `records` (atomically)."""
  path = os.path.join(workdir, "metrics.jsonl")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.writelines(_json_line(r) for r in records)
  os.replace(tmp, path)


def keep_metrics_until(workdir: str, step: int) -> list[dict]:
  """Drops the records after `step` (a crash after the record, before its
  checkpoint) from metrics.jsonl; returns the records kept."""
  records = read_metrics(workdir)
  kept = [r for r in records if r["step"] <= step]
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):  # rewritten whole: this also drops a torn line
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(_json_line(r) for r in kept)
    os.replace(tmp, path)
  if len(kept) != len(records):
    logging.info("metrics.jsonl: dropped %d epoch(s) after step %d, to redo",
                 len(records) - len(kept), step)
  return kept
