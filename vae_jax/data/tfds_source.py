"""TFDS image datasets, read with `builder.as_data_source` (no TensorFlow).

Everything that touches tensorflow_datasets: importing it (on first use only,
so the default run never imports it, nor TensorFlow), checking a name
against its builders, preparing a dataset (which needs TensorFlow and the
network: `pip install 'vae_jax[tfds]'`), finding the image and label
features, checking split names, and reading a split whole. Data are prepared
as array_record in TFDS's data directory (`--config.data_dir`, else TFDS's
default). `vae_jax.data.datasets` decides when a dataset comes from here.
Every failure is a one-line `DataError` that says what to do.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import logging as std_logging
import os
import re
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np
from absl import logging

from vae_jax.errors import DataError

__all__ = ["TFDS_EXTRA", "check_dataset_name", "open_splits", "read_all"]

# What to install to prepare a stock TFDS dataset (it needs TensorFlow).
TFDS_EXTRA = "pip install 'vae_jax[tfds]'"


def _import_tfds():
  """tensorflow_datasets, imported on first use (never by the default run)."""
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError(
      f"TFDS datasets need tensorflow-datasets ({e}); pip install "
      "tensorflow-datasets, or use IDX files: --config.dataset=idx "
      "--config.data_dir=DIR"
    ) from None
  return tfds


class _QuietTfds(std_logging.Filter):
  """Drops TFDS's own warnings (e.g. `Variant folder … has no
  dataset_info.json` for a dataset not prepared there): what they say, the
  one-line DataError that follows says with what to do."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (
      f"{os.sep}tensorflow_datasets{os.sep}" not in record.pathname
      or record.levelno >= std_logging.ERROR
    )


@contextlib.contextmanager
def _quiet_tfds():
  quiet = _QuietTfds()
  logger = std_logging.getLogger("absl")  # TFDS logs through absl
  logger.addFilter(quiet)
  try:
    yield
  finally:
    logger.removeFilter(quiet)


def _first_line(error: BaseException) -> str:
  """`Type: first line of the message`, for one-line DataErrors."""
  text = str(error).strip()
  return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _base_name(name: str) -> str:
  """'mnist/config:1.0.0' → 'mnist'."""
  return name.split(":")[0].split("/")[0]


def _unknown_dataset(name: str, candidates: Sequence[str], hint: str = ""):
  close = difflib.get_close_matches(name.lower(), candidates, n=3, cutoff=0.6)
  suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
  return DataError(
    f"unknown dataset {name!r}{suggestion}; use a TFDS image dataset name "
    f"(e.g. mnist, fashion_mnist, kmnist, binarized_mnist, cifar10) or "
    f"--config.dataset=idx --config.data_dir=DIR{hint}"
  )


def check_dataset_name(name: str, local_names: Iterable[str] = ()) -> None:
  """Raises a DataError with close names when TFDS does not know `name`.

  `local_names` (datasets read without TFDS) are suggested too.
  """
  local_names = list(local_names)
  if importlib.util.find_spec("tensorflow_datasets") is None:
    raise _unknown_dataset(
      name, local_names, "; other TFDS names need tensorflow-datasets installed"
    )
  tfds = _import_tfds()
  known = tfds.list_builders(with_community_datasets=False)
  if _base_name(name) not in known:
    raise _unknown_dataset(
      _base_name(name), sorted(set(known) | set(local_names))
    )


def _tensorflow_installed() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


def _prepare(builder, name: str) -> None:
  """download_and_prepare, which needs TensorFlow (and the network)."""
  where = builder.data_dir
  if not _tensorflow_installed():
    raise DataError(
      f"TFDS dataset {name!r} is not prepared in {where}, and preparing it "
      f"needs TensorFlow: {TFDS_EXTRA} and rerun (it downloads once), or "
      "pass --config.data_dir=DIR where it is prepared as array_record"
      f"{_offline_hint(name)}"
    )
  logging.info("preparing TFDS dataset %s in %s (downloads it)", name, where)
  try:
    builder.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
      f"could not download and prepare TFDS dataset {name!r} into {where} "
      f"({_first_line(e)}); check the network, or prepare it on a machine "
      "that has one and pass --config.data_dir"
    ) from None


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
      "image per example, e.g. mnist or cifar10"
    )
  shape = features[image_key].shape
  if shape is None or any(d is None for d in shape):
    raise DataError(
      f"TFDS dataset {name!r} has images of varying shape {shape}; choose "
      "a dataset whose images all have one shape (or resize them first)"
    )
  label_key = None
  if "label" in keys and isinstance(
    features["label"], tfds.features.ClassLabel
  ):
    label_key = "label"
  return image_key, label_key


def _check_split_names(
  builder, name: str, requested: Mapping[str, str]
) -> None:
  known = list(builder.info.splits)
  if not known:  # not known before preparation (or under tfds mock_data)
    return
  for flag, split in requested.items():
    base = re.split(r"[\[+(]", split)[0]
    if base not in known:
      raise DataError(
        f"--{flag}={split!r}: TFDS dataset {name!r} has no split {base!r}; "
        f"its splits are {', '.join(sorted(known))} (carve a validation "
        "split from train with --config.validation_size)"
      )


def open_splits(
  name: str, data_dir: Optional[str], requested: Mapping[str, str]
) -> tuple[str, dict, str, Optional[str]]:
  """Opens the requested splits of TFDS dataset `name`, preparing it if need be.

  Args:
    name: TFDS syntax, `name[/config][:version]`.
    data_dir: TFDS's data directory; None: TFDS's default.
    requested: {flag: split name}, e.g. {"train_split": "train[:50%]"}; the
      flag names the setting in error messages.

  Returns:
    (source description, {flag: data source}, image key, label key or None);
    each data source is a sequence of feature dicts (`as_data_source`).
  """
  tfds = _import_tfds()
  with _quiet_tfds():
    try:
      builder = tfds.builder(
        name, data_dir=data_dir, file_format="array_record"
      )
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(
        f"TFDS cannot make dataset {name!r} "
        f"({_first_line(e)}); check --config.dataset and "
        "--config.data_dir"
      ) from None
    # Before any download: is it an image dataset we can use?
    image_key, label_key = _image_feature(builder.info.features, name)
    prepared = builder.is_prepared()

  def open_all() -> dict:
    return {
      flag: builder.as_data_source(split=split)
      for flag, split in requested.items()
    }

  sources = None
  if not prepared:
    try:  # prepared data that TFDS does not see as such, or tfds mock_data
      with _quiet_tfds():
        sources = open_all()
    except (
      KeyError,
      ValueError,
      NotImplementedError,
      FileNotFoundError,
      AssertionError,
    ):
      _prepare(builder, name)
  if sources is None:
    _check_split_names(builder, name, requested)
    try:
      sources = open_all()
    except (
      KeyError,
      ValueError,
      NotImplementedError,
      OSError,
      AssertionError,
    ) as e:
      raise DataError(
        f"cannot read TFDS dataset {name!r} in {builder.data_dir} "
        f"({_first_line(e)}); it may be corrupt or in another file format "
        f"(tfds.load writes tfrecord): delete {builder.data_dir} and "
        "prepare it again as array_record"
      ) from None
  description = f"tfds:{builder.info.full_name} ({builder.data_dir})"
  return description, sources, image_key, label_key


def read_all(
  source, image_key: str, label_key: Optional[str], what: str
) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """Every example of a data source as arrays: (images `[N, ...]`, labels `[N]`
  or None), in the source's dtypes (the caller checks them)."""
  n = len(source)
  if n == 0:
    raise DataError(
      f"{what}: the split holds no examples; choose another split"
    )
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
      "corrupt: delete it and prepare it again"
    ) from None
  return images, labels


def _offline_hint(name: str) -> str:
  if name == "fashion_mnist":
    return (
      " (offline: install Debian's package dataset-fashion-mnist, or "
      "pass --config.data_dir=DIR with its four IDX .gz files)"
    )
  if name == "mnist":
    return (
      " (offline: pass --config.data_dir=DIR with MNIST's four IDX .gz files)"
    )
  return ""
