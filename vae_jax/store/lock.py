"""One training process per run directory: an exclusive lock on WORKDIR/.lock.

A resubmitted job or a second terminal would otherwise interleave two runs'
checkpoints and metrics in one directory. `flock` is released by the kernel
when the holder exits, however it exits (kill -9 included), so a lock is never
stale and nothing has to clean it up. The file holds the holder's pid, for
the message of whoever is refused. Evaluation takes no lock: it reads a run
(a running one too) and writes only eval.json and figures/.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from typing import Optional

from vae_jax.errors import UserError

__all__ = ["WorkdirBusy", "WorkdirLock", "LOCK_FILE"]

LOCK_FILE = ".lock"
_PID_WAIT_SECONDS = 1.0  # the holder writes its pid right after locking


class WorkdirBusy(UserError):
  """Another process trains in the run directory."""


def _holder_pid(fd: int) -> Optional[int]:
  deadline = time.monotonic() + _PID_WAIT_SECONDS
  while True:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    if text.isdigit():
      return int(text)
    if time.monotonic() > deadline:
      return None
    time.sleep(0.05)


class WorkdirLock:
  """An exclusive lock on WORKDIR/.lock, held until `release()` or exit.

  Usable as a context manager. With `create`, a missing directory is made
  first, in the same step: whoever made it (this process or another that
  started at the same time), the lock decides who trains in it.
  """

  def __init__(self, workdir: str, create: bool = False):
    if create:
      os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, LOCK_FILE)
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        os.close(fd)
        raise
      pid = _holder_pid(fd)
      os.close(fd)
      holder = f"pid {pid}" if pid is not None else "a process"
      raise WorkdirBusy(
        f"--workdir={workdir} is in use: {holder} is training in it (it "
        f"holds {self.path}); wait for it to end, or choose another "
        "--workdir"
      ) from None
    # Ours now: replace the last holder's pid by this one.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    self._fd: Optional[int] = fd

  def release(self) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)  # a free lock names no holder
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()
