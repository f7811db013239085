"""Image datasets as uint8 arrays `[N, H, W, C]` with labels, by name.

A dataset is resolved to a source (a directory of IDX files for now) and
loaded whole into host memory; `vae_jax.data.pipeline` puts it on the device.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from vae_jax.data.idx import read_idx
from vae_jax.errors import DataError

__all__ = ["Split", "ImageDataset", "DEBIAN_FASHION_MNIST_DIR",
           "load_dataset", "load_idx_directory", "split_validation"]

# Where Debian's package `dataset-fashion-mnist` installs the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: Optional[np.ndarray]  # int32 [N], or None

  def __len__(self) -> int:
    return int(self.images.shape[0])


@dataclasses.dataclass(frozen=True)
class ImageDataset:
  name: str
  source: str  # where the data came from, for logs and config.json
  train: Split
  test: Split
  validation: Optional[Split] = None
  pixel_max: int = 255  # images / pixel_max lie in [0, 1]

  @property
  def image_shape(self) -> tuple:
    return tuple(self.train.images.shape[1:])


def _find(directory: str, stem: str) -> Optional[str]:
  for name in (stem + ".gz", stem):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def _check_split(images: np.ndarray, labels: Optional[np.ndarray],
                 what: str) -> Split:
  if images.dtype != np.uint8:
    raise DataError(
        f"{what}: images are {images.dtype}, expected 8-bit (uint8) pixels; "
        "convert them to uint8 in [0, 255]")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise DataError(
        f"{what}: images have shape {images.shape}, expected [N, H, W] or "
        "[N, H, W, C]")
  if labels is not None:
    if labels.shape != (images.shape[0],):
      raise DataError(
          f"{what}: {images.shape[0]} images but labels of shape "
          f"{labels.shape}; images and labels must have the same length")
    labels = labels.astype(np.int32)
  return Split(images, labels)


def load_idx_directory(directory: str) -> tuple[Split, Split]:
  """Loads the MNIST file layout (train-/t10k- images and labels, .gz or not)."""
  if not os.path.isdir(directory):
    raise DataError(
        f"data directory not found: {directory}; pass --data_dir=DIR with the "
        "IDX files, or install Debian's package dataset-fashion-mnist")
  paths = {k: _find(directory, v) for k, v in _IDX_FILES.items()}
  for key in ("train_images", "test_images"):
    if paths[key] is None:
      raise DataError(
          f"{directory} has no {_IDX_FILES[key]}[.gz]; a data directory needs "
          f"the MNIST-format files {', '.join(_IDX_FILES.values())}")
  arrays = {k: (read_idx(p) if p else None) for k, p in paths.items()}
  train = _check_split(arrays["train_images"], arrays["train_labels"],
                       paths["train_images"])
  test = _check_split(arrays["test_images"], arrays["test_labels"],
                      paths["test_images"])
  if train.images.shape[1:] != test.images.shape[1:]:
    raise DataError(
        f"{directory}: train images are {train.images.shape[1:]} but test "
        f"images are {test.images.shape[1:]}; both splits need one shape")
  return train, test


def split_validation(train: Split, size: int) -> tuple[Split, Optional[Split]]:
  """Carves the last `size` training examples off as a validation split."""
  if size == 0:
    return train, None
  if size >= len(train):
    raise DataError(
        f"--validation_size={size} leaves no training data ({len(train)} "
        "training examples); choose a smaller validation split")
  cut = len(train) - size
  labels = train.labels
  return (Split(train.images[:cut], None if labels is None else labels[:cut]),
          Split(train.images[cut:], None if labels is None else labels[cut:]))


def load_dataset(name: str, data_dir: Optional[str] = None,
                 validation_size: int = 0) -> ImageDataset:
  """Loads dataset `name` from `data_dir`, or from where it is installed.

  Args:
    name: "fashion_mnist", or "idx" for any directory of MNIST-format files.
    data_dir: the directory of IDX files; for fashion_mnist, Debian's
      install location is used when it is None.
    validation_size: examples carved from the end of train.
  """
  if name == "fashion_mnist":
    directory = data_dir or DEBIAN_FASHION_MNIST_DIR
    if data_dir is None and not os.path.isdir(directory):
      raise DataError(
          "Fashion-MNIST not found: install Debian's package "
          "dataset-fashion-mnist (apt-get install dataset-fashion-mnist, or "
          "`make data`), or pass --data_dir=DIR with its IDX .gz files")
  elif name == "idx":
    if data_dir is None:
      raise DataError("--dataset=idx needs --data_dir=DIR, a directory of "
                      "MNIST-format IDX files")
    directory = data_dir
  else:
    raise DataError(f"unknown dataset {name!r}; known: fashion_mnist, idx")
  train, test = load_idx_directory(directory)
  train, validation = split_validation(train, validation_size)
  return ImageDataset(name=name, source=os.path.abspath(directory),
                      train=train, test=test, validation=validation)
