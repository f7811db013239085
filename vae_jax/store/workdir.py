"""The run directory's contract: config.json, metrics.jsonl and resume checks.

    WORKDIR/config.json      the run's resolved config (every setting), the
                             config file it started from, the data source
    WORKDIR/metrics.jsonl    one JSON object per epoch, `EpochRecord`
                             (vae_jax.store.metrics)
    WORKDIR/tensorboard/     event files (vae_jax.run.tensorboard)
    WORKDIR/checkpoints/     latest/ and best/ (vae_jax.store.checkpoints)
    WORKDIR/figures/*.png    vae_jax.viz.figure_data.FIGURE_NAMES
    WORKDIR/eval.json        written by vae_jax.run.evaluate

Other tools and notebooks read a run through these files alone. Small files
are written to a temporary file and renamed (vae_jax.store.files), so a
kill never leaves one half-written. metrics.jsonl is appended to during a
run and rewritten whole on resume from the records kept in the restored
checkpoint, so a torn, emptied or overlong file is repaired. Its functions
and the atomic writes are re-exported here. `check_workdir` refuses a
directory the run could not use, before anything is created.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Optional

import ml_collections

from vae_jax import settings
from vae_jax import validation
from vae_jax.errors import ConfigError
from vae_jax.names import resolve_image_layout

# The run directory's files, re-exported: `workdir.read_metrics(...)` etc.
from vae_jax.store.files import write_json_atomic, write_text_atomic
from vae_jax.store.metrics import (
  METRIC_KEYS,
  EpochRecord,
  append_metrics,
  json_safe,
  keep_metrics_until,
  read_metrics,
  read_records,
  write_metrics,
)

__all__ = [
  "EpochRecord",
  "METRIC_KEYS",
  "load_config",
  "check_resumable",
  "write_config",
  "read_metrics",
  "read_records",
  "append_metrics",
  "keep_metrics_until",
  "write_metrics",
  "write_json_atomic",
  "write_text_atomic",
  "json_safe",
  "check_directory",
  "check_workdir",
]


def load_config(workdir: str) -> Optional[ml_collections.ConfigDict]:
  """The config stored in WORKDIR/config.json, or None if there is none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  from vae_jax.configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  try:
    with open(path) as f:
      stored = json.load(f)
    settings = stored["config"]
    if not isinstance(settings, dict):
      raise TypeError("'config' is not an object")
    for name, value in settings.items():
      if name in config:  # a value of the wrong type raises (type-safe)
        config[name] = tuple(value) if isinstance(value, list) else value
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ConfigError(
      f"{path} is unreadable ({type(e).__name__}: {e}); it is not a run "
      "directory of vae_jax, or it is damaged: choose another --workdir"
    ) from None
  return config


def _differences(stored, config) -> list[str]:
  diffs = []
  for name in sorted(set(stored.keys()) | set(config.keys())):
    if name in settings.resumable():
      continue
    old, new = stored.get(name), config.get(name)
    if name == "image_layout":  # '' and the model's own layout are one
      old = resolve_image_layout(stored.get("model"), old)
      new = resolve_image_layout(config.get("model"), new)
    if old != new:
      diffs.append(
        f"--config.{name}: the run has {settings.show(old)}, this "
        f"command {settings.show(new)}"
      )
  return diffs


def check_resumable(
  config, workdir: str
) -> Optional[ml_collections.ConfigDict]:
  """The stored config of the run in `workdir` (None if new), if `config` may resume it.

  Raises:
    ConfigError: naming every setting whose value differs from the stored
      run's, with both values; only the resumable settings may differ.
  """
  stored = load_config(workdir)
  if stored is None:
    return None
  diffs = _differences(stored, config)
  if diffs:
    raise ConfigError(
      f"--workdir={workdir} holds a run with other settings, so it cannot "
      f"resume it ({'; '.join(diffs)}); only "
      f"{', '.join('--config.' + n for n in settings.resumable())}, "
      "--quiet and the logging flags may change on resume: repeat the "
      "run's settings, or choose a new --workdir"
    )
  return stored


def write_config(
  workdir: str,
  config,
  config_file: str,
  data_description: dict,
  model_description: dict,
) -> None:
  """WORKDIR/config.json: the resolved config, where the data came from and
  the model's layers and KL estimator (`stages.describe_model`)."""
  write_json_atomic(
    os.path.join(workdir, "config.json"),
    {
      "config": validation.to_json_dict(config),
      "config_file": config_file,
      "data_source": data_description["source"],
      "data": data_description,  # resolved source and preprocessing
      "model": model_description,
    },
  )


# What a run directory may hold: name → must be a directory (True) or a file.
_ENTRIES = {
  "config.json": False,
  "metrics.jsonl": False,
  "eval.json": False,
  ".lock": False,
  "checkpoints": True,
  "figures": True,
  "tensorboard": True,
}


def _nearest_existing(path: str) -> str:
  while not os.path.lexists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def _probe_writable(directory: str) -> Optional[str]:
  """None if a directory can be made in `directory`, else why not. (Tried
  for real and removed: root passes os.access on /proc and read-only mounts
  of some kinds.)"""
  try:
    os.rmdir(tempfile.mkdtemp(prefix=".vae_jax-probe-", dir=directory))
  except OSError as e:
    return e.strerror or type(e).__name__
  return None


def check_directory(path: str, flag_name: str = "workdir") -> bool:
  """Refuses a directory that could not be used or created, creating
  nothing (see `check_workdir`); the messages name `--FLAG_NAME=path`.

  Returns:
    Whether the directory exists.
  """
  flag = f"--{flag_name}={path}"
  absolute = os.path.abspath(path)
  if os.path.lexists(absolute) and not os.path.isdir(absolute):
    raise ConfigError(f"{flag} is a file, not a directory: choose a directory")
  anchor = _nearest_existing(absolute)
  if not os.path.isdir(anchor):
    raise ConfigError(
      f"{flag}: {anchor} is a file, so the directory cannot "
      f"be created there; choose another --{flag_name}"
    )
  limit = os.pathconf(anchor, "PC_NAME_MAX")
  if any(len(n.encode()) > limit for n in absolute.split(os.sep)) or len(
    absolute.encode()
  ) >= os.pathconf(anchor, "PC_PATH_MAX"):
    raise ConfigError(
      f"{flag}: the path is too long for the file system "
      f"(names of at most {limit} bytes); choose a shorter one"
    )
  why = _probe_writable(anchor)
  if why is not None:
    raise ConfigError(
      f"{flag}: cannot write in {anchor} ({why}); choose another --{flag_name}"
    )
  return anchor == absolute


def check_workdir(workdir: str, for_training: bool = True) -> None:
  """Refuses a run directory the run could not use, creating nothing.

  A file where the directory should be, a directory that cannot be written
  (or created: a read-only, full or pseudo file system such as /proc), a name
  too long for the file system, a config.json that is not a run's, or a
  `checkpoints` file or `metrics.jsonl` directory — each is one ConfigError.
  Evaluation (`for_training=False`) needs an existing run directory.
  """
  flag = f"--workdir={workdir}"
  absolute = os.path.abspath(workdir)
  if not for_training and not os.path.lexists(absolute):
    raise ConfigError(
      f"{flag}: no such directory; pass the run directory "
      "that experiments/train.py wrote"
    )
  if not check_directory(workdir):
    return  # a new directory: nothing else to check
  for name, is_dir in _ENTRIES.items():
    path = os.path.join(absolute, name)
    if os.path.lexists(path) and os.path.isdir(path) != is_dir:
      raise ConfigError(
        f"{flag} holds {name} as a {'file' if is_dir else 'directory'}, "
        f"where a run keeps a {'directory' if is_dir else 'file'}: it is "
        "not a run directory of vae_jax; choose another --workdir"
      )
  load_config(workdir)  # a damaged or foreign config.json: ConfigError
