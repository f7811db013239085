"""TensorBoard event files without TensorFlow: written with tensorboardX, read
back with the `tensorboard` package's own EventAccumulator.

    with SummaryWriter(os.path.join(workdir, "tensorboard")) as writer:
      writer.write_scalars(step, {"test/elbo": -95.3, "val/elbo": None})
      writer.write_images(step, {"reconstructions": grid})   # [H, W] in [0, 1]

    read_scalars(logdir)    # {"test/elbo": [(step, -95.3)]}

A run resumed at step S opens its writer with `purge_step=S + 1`, so that
readers drop what a crashed run wrote after S and show each step once.

`clu.metric_writers` would do the same but imports TensorFlow; tensorboardX
writes the same event-file format with protobuf alone. Reading needs the
`tensorboard` package (the `test` extra), imported only when a reader is
called.
"""

from __future__ import annotations

import io
import os
import time
from typing import Mapping, Optional, Union

import numpy as np
from tensorboardX import event_file_writer
from tensorboardX import summary as tb_summary
from tensorboardX.proto import event_pb2

__all__ = ["SummaryWriter", "read_image_tags", "read_images", "read_scalars"]

Scalar = Union[float, int, np.floating, np.integer]


class SummaryWriter:
  """Scalars and images of a run, as TensorBoard event files in `logdir`.

  tensorboardX's summaries, written synchronously: an event is in the file
  when `flush()` returns (tensorboardX's own SummaryWriter queues events for
  a thread, and its flush does not wait for the queue, so a process killed
  after a flush could lose the last events). Usable as a context manager
  (closes on exit).

  Args:
    logdir: the directory of the event files; each writer adds a new file.
    purge_step: for a run resumed from a checkpoint: readers (TensorBoard,
      `read_scalars`, `read_images`) drop the events of earlier files at
      steps >= purge_step, i.e. those a crashed run wrote after the
      checkpoint and the resumed run writes again. None: drop nothing.
  """

  def __init__(self, logdir: str, purge_step: Optional[int] = None):
    self.logdir = logdir
    os.makedirs(logdir, exist_ok=True)
    # Files are named by the second they were opened in, and opened with
    # "wb": the suffix keeps a second writer of the same second from
    # truncating the first one's file, and sorts it after that file.
    self._events = event_file_writer.EventsWriter(
      os.path.join(logdir, "events"), filename_suffix=f".{time.time_ns()}"
    )
    if purge_step is not None:
      self._events.write_event(
        event_pb2.Event(
          wall_time=time.time(),
          step=int(purge_step),
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
      )

  def write_scalars(
    self, step: int, scalars: Mapping[str, Optional[Scalar]]
  ) -> None:
    """One scalar event per tag at `step`; None values are skipped.

    Values are stored as float32 (TensorBoard's simple_value); NaN and ±inf
    are written as they are, so a diverging run shows.
    """
    for tag, value in scalars.items():
      if value is not None:
        self._write(step, tb_summary.scalar(tag, float(value)))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """One image event per tag at `step`.

    Args:
      step: the global step.
      images: tag → float `[H, W]`, `[H, W, 1]` or `[H, W, 3]` with values
        in [0, 1] (clipped), e.g. `visualize.images_for_tensorboard(...)`.
        Stored as 8-bit PNG, value v → round(255·v).
    """
    for tag, image in images.items():
      self._write(
        step, tb_summary.image(tag, _to_uint8(image), dataformats="HWC")
      )

  def _write(self, step: int, summary) -> None:
    self._events.write_event(
      event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
    )

  def flush(self) -> None:
    self._events.flush()

  def close(self) -> None:
    self._events.close()

  def __enter__(self) -> "SummaryWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """Every scalar in the event files of `logdir`: {tag: [(step, value), ...]}.

  Values come back as float32 rounded, as TensorBoard stores them.
  """
  accumulator = _load(logdir)
  return {
    tag: [(int(e.step), float(e.value)) for e in accumulator.Scalars(tag)]
    for tag in accumulator.Tags()["scalars"]
  }


def read_image_tags(logdir: str) -> list[str]:
  """The tags of the images in the event files of `logdir`, sorted."""
  return sorted(_load(logdir).Tags()["images"])


def read_images(logdir: str) -> dict[str, list[tuple[int, np.ndarray]]]:
  """Every image of `logdir`, decoded: {tag: [(step, uint8 [H, W, C]), ...]}.

  Greyscale images come back as RGB with three equal channels (tensorboardX
  stores them so).
  """
  # Pillow comes with matplotlib.
  from PIL import Image  # pylint: disable=g-import-not-at-top

  accumulator = _load(logdir)
  result = {}
  for tag in accumulator.Tags()["images"]:
    result[tag] = [
      (int(e.step), np.asarray(Image.open(io.BytesIO(e.encoded_image_string))))
      for e in accumulator.Images(tag)
    ]
  return result


def _to_uint8(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image, dtype=np.float32)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(
      f"an image must be [H, W], [H, W, 1] or [H, W, 3], got {image.shape}"
    )
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def _load(logdir: str):
  try:
    # pylint: disable-next=g-import-not-at-top
    from tensorboard.backend.event_processing import event_accumulator
  except ImportError as e:
    raise ImportError(
      "reading event files needs the `tensorboard` package: "
      "pip install tensorboard (or this project's `test` extra)"
    ) from e
  accumulator = event_accumulator.EventAccumulator(
    logdir,
    size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
  )
  accumulator.Reload()
  return accumulator


def for_run(outputs: str, start_step: int) -> SummaryWriter:
  """OUTPUTS/tensorboard's writer for a run that goes on from `start_step`.
  On resume (or a start over), readers drop the events a crashed run wrote
  after the checkpoint, steps > start_step, which this run writes again."""
  logdir = os.path.join(outputs, "tensorboard")
  return SummaryWriter(
    logdir, purge_step=start_step + 1 if os.path.isdir(logdir) else None
  )
