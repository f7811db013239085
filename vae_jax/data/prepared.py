"""The run's data, preprocessed and placed for compiled code.

Preprocessing, chosen by the config and recorded by `describe()`:

  * pixel scaling by the dataset's own range: x / pixel_max, where
    pixel_max = 255, or 1 for data that is already binary (binarized_mnist),
    which is used as is and never re-binarised;
  * binarisation of the training split: "dynamic" (a fresh Bernoulli draw for
    every batch, from the run's key and the step, inside the compiled step),
    "static" (once, with a fixed seed), or "none" (continuous likelihoods);
    evaluation splits are binarised once with a seed fixed for all runs, so
    every run is scored on the same binary images;
  * layout: "flat" `[N, H·W·C]` for MLPs, or "image" `[N, H, W, C]`;
    '' (the default) takes the model's own (`vae_jax.names.MODEL_LAYOUTS`).

Input path: the training split is placed on the device once as uint8
(`train`), and shuffling, batching and binarisation happen inside the
compiled chunk (`vae_jax.data.feeds`); or, with `streaming`, it stays on the
host and `vae_jax.data.streaming` sends the chunks' batches from a
prefetching thread.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import numpy as np

from vae_jax.data import datasets
from vae_jax.data import pipeline
from vae_jax.errors import ConfigError
from vae_jax.names import LAYOUTS, resolve_image_layout

__all__ = ["PreparedData", "prepare_data"]


class PreparedData:
  """The run's splits, preprocessed, ready for compiled code.

  Attributes:
    train: uint8 training images, `[N, D]` (flat) or `[N, H, W, C]` (image);
      on the device, or on the host (numpy) when `streaming`.
    test, validation: float32 in [0, 1] on the device (validation: or None).
    pixel_max: the training images / pixel_max lie in [0, 1].
    dynamic_binarization: whether the compiled step draws the binary batch.
  """

  def __init__(
    self,
    dataset: datasets.ImageDataset,
    binarization: str,
    layout: str,
    streaming: bool = False,
  ):
    """binarization: dynamic | static | none; layout: flat | image;
    streaming: keep the training split on the host."""
    self.dataset = dataset
    self.image_shape = dataset.image_shape
    self.binarization = binarization
    self.layout = layout
    self.streaming = streaming
    if self.layout not in LAYOUTS:
      raise ConfigError(
        f"--config.image_layout={self.layout!r} is invalid: "
        f"choose one of {list(LAYOUTS)}"
      )
    train = self._layout(dataset.train.images)
    pixel_max = dataset.pixel_max
    if binarization == "static" and not dataset.already_binary:
      train = pipeline.binarize_once(
        train, pixel_max, seed=pipeline.TRAIN_BINARIZATION_SEED
      )
      pixel_max = 1
    self.dynamic_binarization = (
      binarization == "dynamic" and not dataset.already_binary
    )
    self.pixel_max = pixel_max
    # uint8 [N, D] or [N, H, W, C]: on the device once, or on the host.
    self.train = train if self.streaming else jax.device_put(train)
    self.test = self._eval_split(dataset.test, dataset.pixel_max)
    self.validation = (
      None
      if dataset.validation is None
      else self._eval_split(dataset.validation, dataset.pixel_max)
    )

  def _layout(self, images: np.ndarray) -> np.ndarray:
    return pipeline.flatten(images) if self.layout == "flat" else images

  def _eval_split(self, split: datasets.Split, pixel_max: int) -> chex.Array:
    x = split.images
    if self.binarization != "none" and pixel_max > 1:
      # Evaluation data are binarised once, with a seed fixed for all runs.
      x = pipeline.binarize_once(x, pixel_max)
      pixel_max = 1
    return jax.device_put(self._layout(np.asarray(x, np.float32) / pixel_max))

  @property
  def data_dim(self) -> int:
    return int(np.prod(self.image_shape))

  @property
  def num_train(self) -> int:
    return int(self.train.shape[0])

  def describe(self) -> dict:
    """The resolved source and preprocessing, for logs and config.json."""
    d = self.dataset
    if d.already_binary:
      binarization = "none (already binary: used as is)"
    else:
      binarization = self.binarization
    return {
      "dataset": d.name,
      "source": d.source,
      "source_kind": d.source_kind,
      "splits": {
        "train": d.splits[0],
        "test": d.splits[1],
        "validation": (
          f"last {len(d.validation)} of train"
          if d.validation is not None
          else None
        ),
      },
      "num_examples": {
        "train": len(d.train),
        "test": len(d.test),
        "validation": (len(d.validation) if d.validation is not None else 0),
      },
      "image_shape": list(d.image_shape),
      "pixel_max": d.pixel_max,
      "already_binary": d.already_binary,
      "binarization": binarization,
      "eval_binarization": (
        f"static, seed {pipeline.TEST_BINARIZATION_SEED}"
        if self.binarization != "none" and not d.already_binary
        else "none"
      ),
      "layout": self.layout,
      "input_path": "streaming" if self.streaming else "on_device",
    }


def prepare_data(config: Any) -> PreparedData:
  """Loads and checks the run's data; raises DataError or ConfigError.

  Reads dataset, data_dir ('' or None: not given), validation_size,
  train_split, test_split, batch_size, binarization, streaming and the
  layout (image_layout; '' = the model's own).
  """
  dataset = datasets.load_dataset(
    config.dataset,
    config.data_dir or None,
    config.validation_size,
    train_split=config.train_split,
    test_split=config.test_split,
  )
  if config.batch_size > len(dataset.train):
    raise ConfigError(
      f"--config.batch_size={config.batch_size} is invalid: the training "
      f"split has only {len(dataset.train)} examples; use a batch size <= "
      f"{len(dataset.train)}"
    )
  layout = resolve_image_layout(config.model, config.image_layout)
  return PreparedData(dataset, config.binarization, layout, config.streaming)
