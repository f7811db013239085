"""Image datasets as uint8 arrays `[N, H, W, C]` with labels, by TFDS name.

`load_dataset(name, data_dir)` resolves a dataset to a source and reads its
train and test splits whole into host memory (`vae_jax.data.prepared` puts
them on the device). Two kinds of source stand behind one interface, a
sequence of examples `{"image": uint8 [H, W, C], "label": int}` shaped like
`tfds.data_source`'s:

  * "idx": a directory of MNIST-format IDX files, read directly as arrays
    (`ArraySource`). Used for `--config.dataset=idx`, and first for `fashion_mnist`
    and `mnist`: the IDX files in `--config.data_dir`, else (fashion_mnist, no
    `--config.data_dir`) where Debian's package `dataset-fashion-mnist` installs them.
  * "tfds": any TFDS image dataset, prepared as array_record in TFDS's data
    directory (`--config.data_dir`, else TFDS's default) and read with
    `builder.as_data_source`, which needs no TensorFlow. Preparing a stock
    dataset does (`pip install 'vae_jax[tfds]'`). All of it is in
    `vae_jax.data.tfds_source`.

tensorflow_datasets is imported only when a TFDS source is used, so the
default run never imports it (nor TensorFlow).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Optional, Sequence

import numpy as np

from vae_jax.data import tfds_source
from vae_jax.data.idx import read_idx
from vae_jax.data.tfds_source import TFDS_EXTRA
from vae_jax.errors import DataError

# TFDS_EXTRA is re-exported from vae_jax.data.tfds_source.
__all__ = [
  "Split",
  "ImageDataset",
  "ResolvedSource",
  "ArraySource",
  "DEBIAN_FASHION_MNIST_DIR",
  "LOCAL_DATASETS",
  "TFDS_EXTRA",
  "resolve_source",
  "data_source",
  "load_dataset",
  "load_idx_directory",
  "split_validation",
]

# Where Debian's package `dataset-fashion-mnist` installs the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# Datasets that can come from IDX files, with where a package installs them.
LOCAL_DATASETS = {
  "idx": None,
  "fashion_mnist": DEBIAN_FASHION_MNIST_DIR,
  "mnist": None,
}

_IDX_FILES = {
  "train_images": "train-images-idx3-ubyte",
  "train_labels": "train-labels-idx1-ubyte",
  "test_images": "t10k-images-idx3-ubyte",
  "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_SPLITS = ("train", "test")


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
  pixel_max: int = 255  # images / pixel_max lie in [0, 1]; 1: already binary
  source_kind: str = "idx"  # "idx" or "tfds"
  splits: tuple = ("train", "test")  # the source's (train, test) split names

  @property
  def image_shape(self) -> tuple:
    return tuple(self.train.images.shape[1:])

  @property
  def already_binary(self) -> bool:
    """Pixels in {0, 1} (e.g. binarized_mnist): used as is, never re-binarised."""
    return self.pixel_max == 1


@dataclasses.dataclass(frozen=True)
class ResolvedSource:
  """Where dataset `name` is read from."""

  kind: str  # "idx": a directory of IDX files; "tfds": a TFDS data directory
  name: str  # the dataset name (TFDS syntax: name[/config][:version])
  location: Optional[str]  # the directory; None: TFDS's default data_dir


class ArraySource:
  """Examples of in-memory arrays behind the interface of `tfds.data_source`.

  A sequence: `len(source)`, `source[i]` and `source.__getitems__(keys)` give
  dicts `{"image": uint8 [H, W, C], "label": int}` ("label" only where the
  data have labels).
  """

  def __init__(self, images: np.ndarray, labels: Optional[np.ndarray] = None):
    self.images = images
    self.labels = labels

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def __getitem__(self, key) -> dict:
    i = key.__index__()
    example = {"image": self.images[i]}
    if self.labels is not None:
      example["label"] = self.labels[i]
    return example

  def __getitems__(self, keys: Sequence[int]) -> list:
    return [self[k] for k in keys]

  def __iter__(self):
    for i in range(len(self)):
      yield self[i]


# ------------------------------------------------------------------ IDX files


def _find(directory: str, stem: str) -> Optional[str]:
  for name in (stem + ".gz", stem):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def _has_idx_files(directory: Optional[str]) -> bool:
  if not directory:
    return False
  return os.path.isdir(directory) and any(
    _find(directory, stem) for stem in _IDX_FILES.values()
  )


def _check_split(
  images: np.ndarray, labels: Optional[np.ndarray], what: str
) -> Split:
  if images.dtype != np.uint8:
    raise DataError(
      f"{what}: images are {images.dtype}, expected 8-bit (uint8) pixels; "
      "convert them to uint8 in [0, 255]"
    )
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4:
    raise DataError(
      f"{what}: images have shape {images.shape}, expected [N, H, W] or "
      "[N, H, W, C]"
    )
  if images.shape[0] == 0:
    raise DataError(f"{what}: the split holds no images; use a split with data")
  if labels is not None:
    if labels.shape != (images.shape[0],):
      raise DataError(
        f"{what}: {images.shape[0]} images but labels of shape "
        f"{labels.shape}; images and labels must have the same length"
      )
    labels = labels.astype(np.int32)
  return Split(images, labels)


def load_idx_directory(directory: str) -> tuple[Split, Split]:
  """Loads the MNIST file layout (train-/t10k- images and labels, .gz or not)."""
  if not os.path.isdir(directory):
    raise DataError(
      f"data directory not found: {directory}; pass --config.data_dir=DIR with the "
      "IDX files, or install Debian's package dataset-fashion-mnist"
    )
  # The files found, in _IDX_FILES' order (labels are optional).
  paths = {
    k: p
    for k, v in _IDX_FILES.items()
    if (p := _find(directory, v)) is not None
  }
  for key in ("train_images", "test_images"):
    if key not in paths:
      raise DataError(
        f"{directory} has no {_IDX_FILES[key]}[.gz]; a data directory needs "
        f"the MNIST-format files {', '.join(_IDX_FILES.values())}"
      )
  arrays = {k: read_idx(p) for k, p in paths.items()}
  train = _check_split(
    arrays["train_images"], arrays.get("train_labels"), paths["train_images"]
  )
  test = _check_split(
    arrays["test_images"], arrays.get("test_labels"), paths["test_images"]
  )
  if train.images.shape[1:] != test.images.shape[1:]:
    raise DataError(
      f"{directory}: train images are {train.images.shape[1:]} but test "
      f"images are {test.images.shape[1:]}; both splits need one shape"
    )
  return train, test


def split_validation(train: Split, size: int) -> tuple[Split, Optional[Split]]:
  """Carves the last `size` training examples off as a validation split."""
  if size == 0:
    return train, None
  if size >= len(train):
    raise DataError(
      f"--config.validation_size={size} leaves no training data ({len(train)} "
      "training examples); choose a smaller validation split"
    )
  cut = len(train) - size
  labels = train.labels
  return (
    Split(train.images[:cut], None if labels is None else labels[:cut]),
    Split(train.images[cut:], None if labels is None else labels[cut:]),
  )


# ------------------------------------------------------------------- sources


def resolve_source(name: str, data_dir: Optional[str] = None) -> ResolvedSource:
  """Where `name` is read from; nothing is read yet.

  idx: `data_dir`. fashion_mnist, mnist: IDX files in `data_dir`; else
  (fashion_mnist, no `data_dir`) Debian's install location if it holds them;
  else TFDS (in `data_dir`, or TFDS's default data directory). Any other
  name: TFDS, where an unknown name is an error that suggests close names.
  """
  if name == "idx":
    if data_dir is None:
      raise DataError(
        "--config.dataset=idx needs --config.data_dir=DIR, a directory of "
        "MNIST-format IDX files"
      )
    return ResolvedSource("idx", name, os.path.abspath(data_dir))
  if name in LOCAL_DATASETS:
    if data_dir is not None and _has_idx_files(data_dir):
      return ResolvedSource("idx", name, os.path.abspath(data_dir))
    package_dir = LOCAL_DATASETS[name]
    if data_dir is None and _has_idx_files(package_dir):
      return ResolvedSource("idx", name, package_dir)
    if importlib.util.find_spec("tensorflow_datasets") is None:
      where = data_dir or package_dir or "--config.data_dir"
      raise DataError(
        f"{name} not found: no IDX files in {where}; install Debian's "
        "package dataset-fashion-mnist (fashion_mnist), pass --config.data_dir=DIR "
        "with its IDX files, or install tensorflow-datasets"
      )
    return ResolvedSource("tfds", name, data_dir)
  tfds_source.check_dataset_name(name, LOCAL_DATASETS)
  return ResolvedSource("tfds", name, data_dir)


def data_source(name: str, split: str, data_dir: Optional[str] = None):
  """The examples of one split, as a sequence like `tfds.data_source`'s."""
  source = resolve_source(name, data_dir)
  if source.kind == "idx":
    assert source.location is not None  # an IDX source is a directory
    if split not in _IDX_SPLITS:
      raise DataError(
        f"split {split!r} does not exist in {source.location}: "
        "IDX directories have the splits train and test"
      )
    train, test = load_idx_directory(source.location)
    s = train if split == "train" else test
    return ArraySource(s.images, s.labels)
  _, sources, _, _ = tfds_source.open_splits(name, data_dir, {"split": split})
  return sources["split"]


def _read_split(
  source, image_key: str, label_key: Optional[str], what: str
) -> Split:
  """A TFDS data source (or an `ArraySource`) read whole, then checked."""
  if isinstance(source, ArraySource):
    images, labels = source.images, source.labels
  else:
    images, labels = tfds_source.read_all(source, image_key, label_key, what)
  return _check_split(images, labels, what)


def _pixel_max(*splits: Split) -> int:
  """1 if every pixel is 0 or 1 (already binary data), else 255."""
  return 1 if all(int(s.images.max()) <= 1 for s in splits) else 255


def load_dataset(
  name: str,
  data_dir: Optional[str] = None,
  validation_size: int = 0,
  train_split: str = "train",
  test_split: str = "test",
) -> ImageDataset:
  """Loads dataset `name` whole into host memory.

  Args:
    name: a TFDS image dataset name (e.g. "mnist", "fashion_mnist",
      "binarized_mnist", "kmnist", "cifar10"), or "idx" for any directory of
      MNIST-format files. See `resolve_source` for where each is read from.
    data_dir: where this dataset's files are: the IDX directory for a local
      source, TFDS's data directory for a TFDS source.
    validation_size: examples carved from the end of train.
    train_split: the source's split to train on (TFDS slicing such as
      "train[:50%]" works for TFDS sources; IDX sources have train and test).
    test_split: the source's split to test on (the same names).

  Raises:
    DataError: one line saying what is wrong and what to do.
  """
  source = resolve_source(name, data_dir)
  requested = {"train_split": train_split, "test_split": test_split}
  if source.kind == "idx":
    assert source.location is not None  # an IDX source is a directory
    for flag, split in requested.items():
      if split not in _IDX_SPLITS:
        raise DataError(
          f"--{flag}={split!r}: split {split!r} does not exist in "
          f"{source.location}; IDX directories have the splits train and "
          "test (carve a validation split with --config.validation_size)"
        )
    idx_train, idx_test = load_idx_directory(source.location)
    by_name = {"train": idx_train, "test": idx_test}
    train, test = by_name[train_split], by_name[test_split]
    description = source.location
  else:
    description, sources, image_key, label_key = tfds_source.open_splits(
      name, source.location, requested
    )
    train = _read_split(
      sources["train_split"],
      image_key,
      label_key,
      f"{name} split {train_split!r}",
    )
    test = _read_split(
      sources["test_split"],
      image_key,
      label_key,
      f"{name} split {test_split!r}",
    )
    if train.images.shape[1:] != test.images.shape[1:]:
      raise DataError(
        f"{name}: train images are {train.images.shape[1:]} but test images "
        f"are {test.images.shape[1:]}; both splits need one shape"
      )
  pixel_max = _pixel_max(train, test)
  train, validation = split_validation(train, validation_size)
  return ImageDataset(
    name=name,
    source=description,
    train=train,
    test=test,
    validation=validation,
    pixel_max=pixel_max,
    source_kind=source.kind,
    splits=(train_split, test_split),
  )
