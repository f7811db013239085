"""The streaming input path: chunks of batches gathered on the host, prefetched.

For data that does not fit in device memory. The host keeps the uint8 split;
a background thread gathers the rows of the next chunks of steps, in the
order of the on-device path (`pipeline.epoch_permutation` of the same key and
epoch), and puts them on the device while the current chunk trains:

    chunk c of epoch e: uint8 [n_c, B, D] = images[perm_e[s_c·B : (s_c + n_c)·B]]

`chunks.train_chunk` with a streamed `feeds.BatchFeed` then binarises each
batch inside its compiled scan with the same per-step key as the on-device
feed, so both paths train on bit-identical batches. Epoch e's chunks depend only on (key, e):
a resumed run streams from its first epoch without replaying the others.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator, Optional, Sequence

import chex
import jax
import numpy as np

from vae_jax.data import pipeline

__all__ = ["host_chunks", "Prefetcher", "stream_chunks"]


def host_chunks(
  images: np.ndarray,
  rng: chex.PRNGKey,
  batch_size: int,
  chunk_lengths: Sequence[int],
  first_epoch: int = 0,
  num_epochs: int = 1,
  first_chunk: int = 0,
) -> Iterator[np.ndarray]:
  """Yields the raw batches of epochs first_epoch.., chunk by chunk, on the host.

  Args:
    images: the training split on the host, uint8 `[N, ...]`.
    rng: the run's root training key (`TrainState.rng`).
    batch_size: B.
    chunk_lengths: the steps of each chunk of an epoch, in order; they sum to
      at most N // B (the remainder of the permutation is dropped, as on the
      device).
    first_epoch: the first epoch to stream.
    num_epochs: how many epochs to stream.
    first_chunk: the chunk of `first_epoch` to start at (a run resumed from a
      checkpoint inside an epoch); the chunks before it are skipped, not
      gathered.

  Yields:
    uint8 `[n, B, ...]` for each chunk of n steps.
  """
  num_examples = images.shape[0]
  steps_per_epoch = num_examples // batch_size
  if sum(chunk_lengths) > steps_per_epoch:
    raise ValueError(
      f"chunks of {sum(chunk_lengths)} steps exceed an epoch of "
      f"{steps_per_epoch} steps"
    )
  if not 0 <= first_chunk < max(len(chunk_lengths), 1):
    raise ValueError(
      f"first_chunk={first_chunk} is not a chunk of {list(chunk_lengths)}"
    )
  # Derived now, not at the first `next`: the trainer donates the state (and
  # with it `rng`) to the first compiled chunk.
  shuffle_key, _ = pipeline.data_keys(rng)
  return _host_chunks(
    images,
    shuffle_key,
    batch_size,
    tuple(chunk_lengths),
    first_epoch,
    num_epochs,
    first_chunk,
  )


# One compiled program (not a dozen eager ops) for each epoch's order.
_epoch_permutation = jax.jit(pipeline.epoch_permutation, static_argnums=2)


def _host_chunks(
  images,
  shuffle_key,
  batch_size,
  chunk_lengths,
  first_epoch,
  num_epochs,
  first_chunk,
):
  num_examples = images.shape[0]
  for epoch in range(first_epoch, first_epoch + num_epochs):
    permutation = np.asarray(
      _epoch_permutation(shuffle_key, epoch, num_examples)
    )
    start = 0
    for c, length in enumerate(chunk_lengths):
      if epoch != first_epoch or c >= first_chunk:
        idx = permutation[start * batch_size : (start + length) * batch_size]
        yield images[idx].reshape(length, batch_size, *images.shape[1:])
      start += length


class _Failure:
  def __init__(self, error: BaseException):
    self.error = error


_END = object()


class Prefetcher:
  """Iterates `items` in a background thread, `size` device arrays ahead.

  Each item is put on `device` (the default device if None) and waited for
  in the thread, so the consumer never waits on the host or the transfer
  while the queue is full. An exception in the thread is raised by `next`.
  Close it (or use it as a context manager) to stop the thread early.
  """

  def __init__(
    self,
    items: Iterable[Any],
    size: int = 2,
    device: Optional[jax.Device] = None,
  ):
    if size < 1:
      raise ValueError(f"prefetch size must be >= 1, got {size}")
    self._items = items
    self._device = device
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(
      target=self._work, daemon=True, name="vae_jax-prefetch"
    )
    self._thread.start()

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  def _work(self) -> None:
    try:
      for item in self._items:
        item = jax.block_until_ready(jax.device_put(item, self._device))
        if not self._put(item):
          return
    except BaseException as e:  # pylint: disable=broad-except
      self._put(_Failure(e))  # re-raised in the consumer's thread
      return
    self._put(_END)

  def __iter__(self) -> "Prefetcher":
    return self

  def __next__(self) -> Any:
    if self._done:
      raise StopIteration
    item = self._queue.get()
    if item is _END:
      self._done = True
      raise StopIteration
    if isinstance(item, _Failure):
      self._done = True
      raise item.error
    return item

  def close(self) -> None:
    """Stops the thread; pending items are dropped."""
    self._stop.set()
    self._done = True
    while True:
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    self._thread.join(timeout=10)

  def __enter__(self) -> "Prefetcher":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def stream_chunks(
  images: np.ndarray,
  rng: chex.PRNGKey,
  batch_size: int,
  chunk_lengths: Sequence[int],
  first_epoch: int = 0,
  num_epochs: int = 1,
  prefetch: int = 2,
  device: Optional[jax.Device] = None,
  first_chunk: int = 0,
) -> Prefetcher:
  """`host_chunks` on the device, `prefetch` chunks ahead of the consumer."""
  return Prefetcher(
    host_chunks(
      images,
      rng,
      batch_size,
      chunk_lengths,
      first_epoch,
      num_epochs,
      first_chunk,
    ),
    size=prefetch,
    device=device,
  )
