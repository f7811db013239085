"""The run's data as flat arrays on the device, ready for compiled code.

Training images stay uint8 (binarised inside the compiled step when dynamic);
evaluation splits are binarised once with a seed fixed for all runs, so every
run is scored on the same binary images.
"""

from __future__ import annotations

import jax
import numpy as np

from vae_jax import config as config_lib
from vae_jax.data import datasets
from vae_jax.data import pipeline
from vae_jax.errors import ConfigError

__all__ = ["PreparedData", "prepare_data"]


class PreparedData:
  """The run's splits as flat arrays on the device, ready for compiled code."""

  def __init__(self, dataset: datasets.ImageDataset,
               config: config_lib.TrainConfig):
    self.dataset = dataset
    self.image_shape = dataset.image_shape
    train = pipeline.flatten(dataset.train.images)
    pixel_max = dataset.pixel_max
    if config.binarization == "static" and pixel_max > 1:
      train = pipeline.binarize_once(train, pixel_max,
                                     seed=pipeline.TEST_BINARIZATION_SEED + 1)
      pixel_max = 1
    self.dynamic_binarization = (config.binarization == "dynamic"
                                 and dataset.pixel_max > 1)
    self.pixel_max = pixel_max
    self.train = jax.device_put(train)  # uint8 [N, data_dim]
    self.test = self._eval_split(dataset.test, dataset.pixel_max, config)
    self.validation = (None if dataset.validation is None else
                       self._eval_split(dataset.validation, dataset.pixel_max,
                                        config))

  @staticmethod
  def _eval_split(split, pixel_max, config):
    x = pipeline.flatten(split.images)
    if config.binarization != "none" and pixel_max > 1:
      # Evaluation data are binarised once, with a seed fixed for all runs.
      x = pipeline.binarize_once(x, pixel_max)
      pixel_max = 1
    return jax.device_put(np.asarray(x, np.float32) / pixel_max)

  @property
  def data_dim(self) -> int:
    return int(self.train.shape[1])


def prepare_data(config: config_lib.TrainConfig) -> PreparedData:
  """Loads and checks the data of `config`; raises DataError/ConfigError."""
  dataset = datasets.load_dataset(config.dataset, config.data_dir,
                                  config.validation_size)
  if config.batch_size > len(dataset.train):
    raise ConfigError(
        f"--batch_size={config.batch_size} is invalid: the training split has "
        f"only {len(dataset.train)} examples; use a batch size <= "
        f"{len(dataset.train)}")
  return PreparedData(dataset, config)
