"""Image datasets as uint8 arrays `[N, H, W, C]` with labels, by TFDS name.

`load_dataset(name, data_dir)` resolves a dataset to a source and reads its
train and test splits whole into host memory (`vae_jax.data.prepared` puts
them on the device). Two kinds of source stand behind one interface, a
sequence of examples `{"image": uint8 [H, W, C], "label": int}` shaped like
`tfds.data_source`'s:

  * "idx": a directory of MNIST-format IDX files, read directly as arrays
    (`ArraySource`). Used for `--dataset=idx`, and first for `fashion_mnist`
    and `mnist`: the IDX files in `--data_dir`, else (fashion_mnist, no
    `--data_dir`) where Debian's package `dataset-fashion-mnist` installs them.
  * "tfds": any TFDS image dataset, prepared as array_record in TFDS's data
    directory (`--data_dir`, else TFDS's default) and read with
    `builder.as_data_source`, which needs no TensorFlow. Preparing a stock
    dataset does (`pip install 'vae_jax[tfds]'`).

tensorflow_datasets is imported only when a TFDS source is used, so the
default run never imports it (nor TensorFlow).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
import re
from typing import Mapping, Optional, Sequence

import numpy as np
from absl import logging

from vae_jax.data.idx import read_idx
from vae_jax.errors import DataError

__all__ = ["Split", "ImageDataset", "ResolvedSource", "ArraySource",
           "DEBIAN_FASHION_MNIST_DIR", "LOCAL_DATASETS", "TFDS_EXTRA",
           "resolve_source", "data_source", "load_dataset",
           "load_idx_directory", "split_validation"]

# Where Debian's package `dataset-fashion-mnist` installs the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

# Datasets that can come from IDX files, with where a package installs them.
LOCAL_DATASETS = {"idx": None, "fashion_mnist": DEBIAN_FASHION_MNIST_DIR,
                  "mnist": None}

# What to install to prepare a stock TFDS dataset (it needs TensorFlow).
TFDS_EXTRA = "pip install 'vae_jax[tfds]'"

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
  return bool(directory) and os.path.isdir(directory) and any(
      _find(directory, stem) for stem in _IDX_FILES.values())


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
  if images.shape[0] == 0:
    raise DataError(f"{what}: the split holds no images; use a split with data")
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


# ----------------------------------------------------------------------- TFDS


def _import_tfds():
  """tensorflow_datasets, imported on first use (never by the default run)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(
        f"TFDS datasets need tensorflow-datasets ({e}); pip install "
        "tensorflow-datasets, or use IDX files: --dataset=idx "
        "--data_dir=DIR") from None
  return tfds


def _first_line(error: BaseException) -> str:
  """`Type: first line of the message`, for one-line DataErrors."""
  text = str(error).strip()
  return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _base_name(name: str) -> str:
  """'mnist/config:1.0.0' → 'mnist'."""
  return name.split(":")[0].split("/")[0]


def _unknown_dataset(name: str, candidates: Sequence[str], hint: str = ""):
  close = difflib.get_close_matches(name.lower(), candidates, n=3, cutoff=0.6)
  suggestion = (f" (did you mean {', '.join(close)}?)" if close else "")
  return DataError(
      f"unknown dataset {name!r}{suggestion}; use a TFDS image dataset name "
      f"(e.g. mnist, fashion_mnist, kmnist, binarized_mnist, cifar10) or "
      f"--dataset=idx --data_dir=DIR{hint}")


def _tfds_name_or_error(name: str) -> None:
  """Raises a DataError with close names when TFDS does not know `name`."""
  if importlib.util.find_spec("tensorflow_datasets") is None:
    raise _unknown_dataset(
        name, list(LOCAL_DATASETS),
        "; other TFDS names need tensorflow-datasets installed")
  tfds = _import_tfds()
  known = tfds.list_builders(with_community_datasets=False)
  if _base_name(name) not in known:
    raise _unknown_dataset(_base_name(name),
                           sorted(set(known) | set(LOCAL_DATASETS)))


def _tensorflow_installed() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _prepare(builder, name: str) -> None:
  """download_and_prepare, which needs TensorFlow (and the network)."""
  where = builder.data_dir
  if not _tensorflow_installed():
    raise DataError(
        f"TFDS dataset {name!r} is not prepared in {where}, and preparing it "
        f"needs TensorFlow: {TFDS_EXTRA} and rerun (it downloads once), or "
        "pass --data_dir=DIR where it is prepared as array_record"
        f"{_offline_hint(name)}")
  logging.info("preparing TFDS dataset %s in %s (downloads it)", name, where)
  try:
    builder.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f"could not download and prepare TFDS dataset {name!r} into {where} "
        f"({_first_line(e)}); check the network, or prepare it on a machine "
        "that has one and pass --data_dir") from None


def _image_feature(features, name: str) -> tuple[str, Optional[str]]:
  """(image key, label key or None) of a TFDS FeaturesDict."""
  tfds = _import_tfds()
  keys = list(features.keys()) if hasattr(features, "keys") else []
  images = [k for k in keys if isinstance(features[k], tfds.features.Image)]
  if "image" in images:
    image_key = "image"
  elif len(images) == 1:
    image_key = images[0]
  else:
    raise DataError(
        f"TFDS dataset {name!r} has {len(images)} image features (features: "
        f"{', '.join(keys) or 'none'}); choose an image dataset with one "
        "image per example, e.g. mnist or cifar10")
  shape = features[image_key].shape
  if shape is None or any(d is None for d in shape):
    raise DataError(
        f"TFDS dataset {name!r} has images of varying shape {shape}; choose "
        "a dataset whose images all have one shape (or resize them first)")
  label_key = None
  if "label" in keys and isinstance(features["label"],
                                    tfds.features.ClassLabel):
    label_key = "label"
  return image_key, label_key


def _check_split_names(builder, name: str, requested: Mapping[str, str]) -> None:
  known = list(builder.info.splits)
  if not known:  # not known before preparation (or under tfds mock_data)
    return
  for flag, split in requested.items():
    base = re.split(r"[\[+(]", split)[0]
    if base not in known:
      raise DataError(
          f"--{flag}={split!r}: TFDS dataset {name!r} has no split {base!r}; "
          f"its splits are {', '.join(sorted(known))} (carve a validation "
          "split from train with --validation_size)")


def _open_tfds_splits(name: str, data_dir: Optional[str],
                      requested: Mapping[str, str]
                      ) -> tuple[str, dict, str, Optional[str]]:
  """(source description, {flag: data source}, image key, label key)."""
  tfds = _import_tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(f"TFDS cannot make dataset {name!r} ({_first_line(e)}); "
                    "check --dataset and --data_dir") from None
  # Before any download: is it an image dataset we can use?
  image_key, label_key = _image_feature(builder.info.features, name)

  def open_all() -> dict:
    return {flag: builder.as_data_source(split=split)
            for flag, split in requested.items()}

  sources = None
  if not builder.is_prepared():
    try:  # prepared data that TFDS does not see as such, or tfds mock_data
      sources = open_all()
    except (KeyError, ValueError, NotImplementedError, FileNotFoundError,
            AssertionError):
      _prepare(builder, name)
  if sources is None:
    _check_split_names(builder, name, requested)
    try:
      sources = open_all()
    except (KeyError, ValueError, NotImplementedError, OSError,
            AssertionError) as e:
      raise DataError(
          f"cannot read TFDS dataset {name!r} in {builder.data_dir} "
          f"({_first_line(e)}); it may be corrupt or in another file format "
          f"(tfds.load writes tfrecord): delete {builder.data_dir} and "
          "prepare it again as array_record") from None
  description = f"tfds:{builder.info.full_name} ({builder.data_dir})"
  return description, sources, image_key, label_key


def _read_all(source, image_key: str, label_key: Optional[str],
              what: str) -> Split:
  """Reads every example of a data source into arrays, then checks them."""
  if isinstance(source, ArraySource):
    return _check_split(source.images, source.labels, what)
  n = len(source)
  if n == 0:
    raise DataError(f"{what}: the split holds no examples; choose another split")
  i = 0
  try:
    first = source[0]
    image = np.asarray(first[image_key])
    images = np.empty((n, *image.shape), image.dtype)
    labels = np.empty((n,), np.int64) if label_key else None
    for i in range(n):
      example = first if i == 0 else source[i]
      images[i] = example[image_key]
      if labels is not None:
        labels[i] = example[label_key]
  except (ValueError, OSError, RuntimeError, KeyError) as e:
    raise DataError(
        f"{what}: cannot read example {i} ({_first_line(e)}); the data may be "
        "corrupt: delete it and prepare it again") from None
  return _check_split(images, labels, what)


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
      raise DataError("--dataset=idx needs --data_dir=DIR, a directory of "
                      "MNIST-format IDX files")
    return ResolvedSource("idx", name, os.path.abspath(data_dir))
  if name in LOCAL_DATASETS:
    if data_dir is not None and _has_idx_files(data_dir):
      return ResolvedSource("idx", name, os.path.abspath(data_dir))
    package_dir = LOCAL_DATASETS[name]
    if data_dir is None and _has_idx_files(package_dir):
      return ResolvedSource("idx", name, package_dir)
    if importlib.util.find_spec("tensorflow_datasets") is None:
      where = data_dir or package_dir or "--data_dir"
      raise DataError(
          f"{name} not found: no IDX files in {where}; install Debian's "
          "package dataset-fashion-mnist (fashion_mnist), pass --data_dir=DIR "
          "with its IDX files, or install tensorflow-datasets")
    return ResolvedSource("tfds", name, data_dir)
  _tfds_name_or_error(name)
  return ResolvedSource("tfds", name, data_dir)


def _offline_hint(name: str) -> str:
  if name == "fashion_mnist":
    return (" (offline: install Debian's package dataset-fashion-mnist, or "
            "pass --data_dir=DIR with its four IDX .gz files)")
  if name == "mnist":
    return " (offline: pass --data_dir=DIR with MNIST's four IDX .gz files)"
  return ""


def data_source(name: str, split: str, data_dir: Optional[str] = None):
  """The examples of one split, as a sequence like `tfds.data_source`'s."""
  source = resolve_source(name, data_dir)
  if source.kind == "idx":
    if split not in _IDX_SPLITS:
      raise DataError(f"split {split!r} does not exist in {source.location}: "
                      "IDX directories have the splits train and test")
    train, test = load_idx_directory(source.location)
    s = train if split == "train" else test
    return ArraySource(s.images, s.labels)
  _, sources, _, _ = _open_tfds_splits(name, data_dir, {"split": split})
  return sources["split"]


def _pixel_max(*splits: Split) -> int:
  """1 if every pixel is 0 or 1 (already binary data), else 255."""
  return 1 if all(int(s.images.max()) <= 1 for s in splits) else 255


def load_dataset(name: str, data_dir: Optional[str] = None,
                 validation_size: int = 0, train_split: str = "train",
                 test_split: str = "test") -> ImageDataset:
  """Loads dataset `name` whole into host memory.

  Args:
    name: a TFDS image dataset name (e.g. "mnist", "fashion_mnist",
      "binarized_mnist", "kmnist", "cifar10"), or "idx" for any directory of
      MNIST-format files. See `resolve_source` for where each is read from.
    data_dir: where this dataset's files are: the IDX directory for a local
      source, TFDS's data directory for a TFDS source.
    validation_size: examples carved from the end of train.
    train_split, test_split: split names of the source (TFDS slicing such as
      "train[:50%]" works for TFDS sources; IDX sources have train and test).

  Raises:
    DataError: one line saying what is wrong and what to do.
  """
  source = resolve_source(name, data_dir)
  requested = {"train_split": train_split, "test_split": test_split}
  if source.kind == "idx":
    for flag, split in requested.items():
      if split not in _IDX_SPLITS:
        raise DataError(
            f"--{flag}={split!r}: split {split!r} does not exist in "
            f"{source.location}; IDX directories have the splits train and "
            "test (carve a validation split with --validation_size)")
    idx_train, idx_test = load_idx_directory(source.location)
    by_name = {"train": idx_train, "test": idx_test}
    train, test = by_name[train_split], by_name[test_split]
    description = source.location
  else:
    description, sources, image_key, label_key = _open_tfds_splits(
        name, source.location, requested)
    train = _read_all(sources["train_split"], image_key, label_key,
                      f"{name} split {train_split!r}")
    test = _read_all(sources["test_split"], image_key, label_key,
                     f"{name} split {test_split!r}")
    if train.images.shape[1:] != test.images.shape[1:]:
      raise DataError(
          f"{name}: train images are {train.images.shape[1:]} but test images "
          f"are {test.images.shape[1:]}; both splits need one shape")
  pixel_max = _pixel_max(train, test)
  train, validation = split_validation(train, validation_size)
  return ImageDataset(name=name, source=description, train=train, test=test,
                      validation=validation, pixel_max=pixel_max,
                      source_kind=source.kind, splits=(train_split, test_split))
