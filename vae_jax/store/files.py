"""Small files written whole: through a temporary file and a rename.

A kill (or a full disk) never leaves such a file half-written: the reader
sees the old content or the new. config.json, eval.json, metrics.jsonl when
rewritten (`vae_jax.store.metrics`), a sweep's sweep.json and
status.json.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["write_text_atomic", "write_json_atomic"]


def _write_atomic(path: str, text: str) -> None:
  tmp = f"{path}.{os.getpid()}.tmp"  # one per process: evaluations may overlap
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):  # a failed write (disk full) leaves no litter
      os.remove(tmp)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename."""
  _write_atomic(path, text)


def write_json_atomic(path: str, value: Any) -> None:
  """Writes JSON to `path` through a temporary file and a rename."""
  _write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")
