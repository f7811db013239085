"""Checks around orbax: that a checkpoint is intact, that it can be written.

    checksums(tree)        SHA-256 of each part of a saved state
    verify(tree, progress) the restored tree matches its checksums, is finite
    check_files(step_dir)  the files orbax reads are there and the OCDBT
                           manifest decodes (before orbax touches the step)
    check_room(dir, tree)  room for a checkpoint of `tree` (before a save)

and orbax's noise kept out of the run's log: its INFO records, the
tracebacks it logs beside the exception it raises, and the "Event loop is
closed" tracebacks that tensorstore's late callbacks print after a failed
read or write (unraisable exceptions of an operation already reported).
"""

from __future__ import annotations

import errno
import hashlib
import logging as std_logging
import os
import sys
import tempfile
from typing import Any

import jax
import numpy as np
import tensorstore as ts

__all__ = ["checksums", "verify", "check_files", "check_room", "describe"]

# orbax's largest file holds the (compressed) arrays; its metadata files
# are a few KiB.
_METADATA_BYTES = 64 * 1024


def checksums(tree: dict[str, Any]) -> dict[str, str]:
  """SHA-256 of each top-level part of a state tree (dtype, shape, bytes of
  every leaf in tree order), as stored in a checkpoint's `progress`."""
  out = {}
  for name, part in sorted(tree.items()):
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(part):
      leaf = np.ascontiguousarray(np.asarray(leaf))
      digest.update(f"{leaf.dtype.str}{leaf.shape}".encode())
      digest.update(leaf.tobytes())
    out[name] = digest.hexdigest()
  return out


def verify(tree: dict[str, Any], progress: dict[str, Any]) -> None:
  """Raises ValueError unless `tree` matches its checksums and is finite.

  Only the parts in `tree` are checked (evaluation restores the params).
  Checkpoints written before checksums existed are checked for finiteness.
  """
  stored = progress.get("checksums") or {}
  actual = checksums(tree)
  bad = [
    name for name in actual if name in stored and stored[name] != actual[name]
  ]
  if bad:
    raise ValueError(f"checksum mismatch in {', '.join(bad)}")
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.inexact) and not np.all(np.isfinite(leaf)):
      raise ValueError(f"non-finite values in {jax.tree_util.keystr(path)}")


def check_files(step_dir: str) -> None:
  """Raises for a step without the files orbax reads, or whose OCDBT
  manifest does not decode.

  Checked before orbax opens the step, synchronously: a missing or damaged
  manifest fails inside the asyncio callbacks of orbax's many concurrent
  reads, which print tracebacks of their own after orbax has raised.
  """
  needed = [
    os.path.join("state", "_METADATA"),
    os.path.join("progress", "metadata"),
  ]
  ocdbt = os.path.isdir(os.path.join(step_dir, "state", "ocdbt.process_0"))
  if ocdbt:
    needed.append(os.path.join("state", "manifest.ocdbt"))
  missing = [n for n in needed if not os.path.isfile(os.path.join(step_dir, n))]
  if missing:
    raise FileNotFoundError(f"missing {', '.join(missing)}")
  if ocdbt:
    base = "file://" + os.path.join(os.path.abspath(step_dir), "state", "")
    ts.KvStore.open({"driver": "ocdbt", "base": base}).result().list().result()


def describe(error: BaseException) -> str:
  text = " ".join(str(error).split()) or "no message"
  text = text.split(" See full TensorStore details")[0]
  return f"{type(error).__name__}: {text[:200]}"


def check_room(directory: str, tree: Any) -> None:
  """Raises OSError (ENOSPC, EFBIG) unless `directory` has room for a
  checkpoint of `tree`: the bytes are reserved (fallocate, nothing written)
  and released. A save that fails inside orbax floods the log from its
  threads; this fails first, in one line, in the common case of a full disk.
  """
  size = (
    sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(tree))
    + _METADATA_BYTES
  )
  fd, path = tempfile.mkstemp(prefix=".room-", dir=directory)
  try:
    os.posix_fallocate(fd, 0, size)
  except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
      return  # a file system without fallocate: orbax will tell
    raise OSError(
      e.errno,
      f"no room for a checkpoint of {size} bytes in "
      f"{directory} ({os.strerror(e.errno)})",
    ) from None
  finally:
    os.close(fd)
    os.remove(path)


class _QuietOrbax(std_logging.Filter):
  """Drops orbax's INFO records (dozens per save) and the tracebacks of its
  warnings and errors: the exception reaches the run, which reports it."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    return record.levelno >= std_logging.WARNING


# orbax logs through absl, whose Python logger is "absl".
std_logging.getLogger("absl").addFilter(_QuietOrbax())

_default_unraisablehook = sys.unraisablehook


def _unraisablehook(unraisable) -> None:
  if (
    isinstance(unraisable.exc_value, RuntimeError)
    and str(unraisable.exc_value) == "Event loop is closed"
  ):
    return  # a late tensorstore callback of a failed orbax operation
  _default_unraisablehook(unraisable)


sys.unraisablehook = _unraisablehook
