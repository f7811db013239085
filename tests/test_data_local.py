"""The local (IDX) data path: loading, source resolution, bad input.

Every test writes its own small IDX files; the real Fashion-MNIST files are
used where Debian's package installed them (skipped with a reason if not).
Nothing here touches the network.
"""

from __future__ import annotations

import gzip
import os
import socket

import numpy as np
import pytest

from vae_jax.data import datasets
from vae_jax.data import tfds_source
from vae_jax.data.idx import write_idx
from vae_jax.errors import DataError

_TRAIN, _TEST = "train-images-idx3-ubyte", "t10k-images-idx3-ubyte"
_TRAIN_LABELS, _TEST_LABELS = (
  "train-labels-idx1-ubyte",
  "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("a data test tried to use the network")

  monkeypatch.setattr(socket.socket, "connect", refuse)


def _write_idx_dir(
  directory,
  num_train=30,
  num_test=10,
  shape=(6, 5),
  pixel_max=255,
  labels=True,
  suffix=".gz",
  seed=0,
):
  os.makedirs(directory, exist_ok=True)
  rng = np.random.default_rng(seed)
  for stem, label_stem, n in (
    (_TRAIN, _TRAIN_LABELS, num_train),
    (_TEST, _TEST_LABELS, num_test),
  ):
    images = rng.integers(0, pixel_max + 1, (n, *shape), dtype=np.uint8)
    write_idx(os.path.join(directory, stem + suffix), images)
    if labels:
      write_idx(
        os.path.join(directory, label_stem + suffix),
        rng.integers(0, 10, n, dtype=np.uint8),
      )
  return str(directory)


def test_idx_directory_loads_as_uint8_nhwc_with_labels(tmp_path):
  d = _write_idx_dir(tmp_path / "d")
  ds = datasets.load_dataset("idx", d)
  assert ds.train.images.shape == (30, 6, 5, 1)
  assert ds.test.images.shape == (10, 6, 5, 1)
  assert ds.train.images.dtype == np.uint8
  assert ds.train.labels.dtype == np.int32 and ds.train.labels.shape == (30,)
  assert (ds.source, ds.source_kind, ds.pixel_max) == (d, "idx", 255)


def test_plain_files_and_missing_labels(tmp_path):
  d = _write_idx_dir(tmp_path / "d", suffix="", labels=False)
  ds = datasets.load_dataset("idx", d)
  assert ds.train.labels is None and len(ds.test) == 10


def test_validation_split_is_the_last_examples_of_train(tmp_path):
  d = _write_idx_dir(tmp_path / "d")
  full = datasets.load_dataset("idx", d)
  ds = datasets.load_dataset("idx", d, validation_size=8)
  assert len(ds.train) == 22 and len(ds.validation) == 8
  np.testing.assert_array_equal(ds.validation.images, full.train.images[22:])
  np.testing.assert_array_equal(ds.validation.labels, full.train.labels[22:])


def test_already_binary_data_has_pixel_max_one(tmp_path):
  d = _write_idx_dir(tmp_path / "d", pixel_max=1)
  ds = datasets.load_dataset("idx", d)
  assert ds.pixel_max == 1 and ds.already_binary


def test_fashion_mnist_resolves_data_dir_then_package_then_tfds(
  tmp_path, monkeypatch
):
  package = _write_idx_dir(tmp_path / "package", seed=1)
  monkeypatch.setitem(datasets.LOCAL_DATASETS, "fashion_mnist", package)
  given = _write_idx_dir(tmp_path / "given", seed=2)
  # 1. IDX files in --data_dir.
  assert datasets.resolve_source("fashion_mnist", given) == (
    datasets.ResolvedSource("idx", "fashion_mnist", given)
  )
  # 2. Without --data_dir: where the Debian package installs them.
  assert datasets.resolve_source("fashion_mnist") == (
    datasets.ResolvedSource("idx", "fashion_mnist", package)
  )
  ds = datasets.load_dataset("fashion_mnist")
  assert ds.source == package and ds.source_kind == "idx"
  # 3. Neither: TFDS, in --data_dir (TFDS's data directory) or its default.
  empty = str(tmp_path / "tfds")
  os.makedirs(empty)
  assert datasets.resolve_source("fashion_mnist", empty).kind == "tfds"
  monkeypatch.setitem(
    datasets.LOCAL_DATASETS, "fashion_mnist", str(tmp_path / "nowhere")
  )
  assert datasets.resolve_source("fashion_mnist") == (
    datasets.ResolvedSource("tfds", "fashion_mnist", None)
  )


def test_mnist_reads_idx_files_in_data_dir(tmp_path):
  d = _write_idx_dir(tmp_path / "mnist")
  ds = datasets.load_dataset("mnist", d)
  assert ds.source_kind == "idx" and ds.name == "mnist"


def test_data_source_interface_of_local_files(tmp_path):
  d = _write_idx_dir(tmp_path / "d")
  source = datasets.data_source("idx", "test", d)
  assert len(source) == 10
  example = source[3]
  assert example["image"].shape == (6, 5, 1) and "label" in example
  assert len(source.__getitems__([0, 1])) == 2


def test_every_public_name_is_importable_from_datasets():
  """What moved to tfds_source is re-exported, so callers keep working."""
  assert all(hasattr(datasets, name) for name in datasets.__all__)
  assert datasets.TFDS_EXTRA is tfds_source.TFDS_EXTRA


_FASHION = datasets.DEBIAN_FASHION_MNIST_DIR


@pytest.mark.slow
@pytest.mark.skipif(
  not os.path.isfile(os.path.join(_FASHION, _TRAIN + ".gz")),
  reason=f"Fashion-MNIST not installed in {_FASHION} (apt-get install "
  "dataset-fashion-mnist)",
)
def test_real_fashion_mnist_is_the_offline_default():
  ds = datasets.load_dataset("fashion_mnist", validation_size=10000)
  assert ds.source == _FASHION and ds.source_kind == "idx"
  assert ds.train.images.shape == (50000, 28, 28, 1)
  assert ds.validation.images.shape == (10000, 28, 28, 1)
  assert ds.test.images.shape == (10000, 28, 28, 1)
  assert set(np.unique(ds.test.labels)) == set(range(10))
  assert ds.pixel_max == 255


# ------------------------------------------------------------------ bad input


def _corrupt(d):
  path = os.path.join(d, _TRAIN + ".gz")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 2])


def _mismatched_labels(d):
  write_idx(os.path.join(d, _TRAIN_LABELS + ".gz"), np.zeros(29, np.uint8))


def _not_8_bit(d):
  write_idx(os.path.join(d, _TRAIN + ".gz"), np.zeros((30, 6, 5), np.int32))


def _not_idx(d):
  with gzip.open(os.path.join(d, _TRAIN + ".gz"), "wb") as f:
    f.write(b"<html>not found</html>")


@pytest.mark.parametrize(
  "damage, expected",
  [
    (_corrupt, "truncated or corrupt"),
    (_mismatched_labels, "must have the same length"),
    (_not_8_bit, "expected 8-bit (uint8) pixels"),
    (_not_idx, "is not an IDX file"),
  ],
)
def test_damaged_files_give_one_clear_line(tmp_path, damage, expected):
  d = _write_idx_dir(tmp_path / "d")
  damage(d)
  with pytest.raises(DataError) as info:
    datasets.load_dataset("idx", d)
  message = str(info.value)
  assert expected in message and "\n" not in message


@pytest.mark.parametrize(
  "kwargs, expected",
  [
    (dict(name="idx", data_dir=None), "needs --config.data_dir"),
    (dict(name="idx", data_dir="/nonexistent/dir"), "not found"),
    (
      dict(name="idx", test_split="validation"),
      "--test_split='validation': split 'validation' does not exist",
    ),
    (dict(name="idx", train_split="train[:50%]"), "does not exist"),
    (dict(name="idx", validation_size=30), "leaves no training data"),
    (dict(name="fashon_mnist"), "did you mean fashion_mnist?"),
    (dict(name="cifar-10"), "did you mean cifar10"),
  ],
)
def test_bad_requests_give_one_clear_line(tmp_path, kwargs, expected):
  d = _write_idx_dir(tmp_path / "d")
  kwargs = {"data_dir": d, **kwargs}
  with pytest.raises(DataError) as info:
    datasets.load_dataset(**kwargs)
  message = str(info.value)
  assert expected in message and "\n" not in message
