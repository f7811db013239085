"""The data flags the benchmarks share: Fashion-MNIST, IDX files, or synthetic.

    --data_dir=DIR   the four IDX files of Fashion-MNIST in DIR (a machine
                     without TFDS or the Debian package, e.g. a GPU host
                     with no network)
    --synthetic=N    N synthetic 28×28 training images and N/4 test images,
                     written as IDX files to a temporary directory: for
                     runs at tiny sizes (benchmarks/device_check.sh --dry),
                     whose timings say nothing about Fashion-MNIST's
                     learning curves

Neither: the config's own dataset (Fashion-MNIST from its usual places).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
from absl import flags

from vae_jax.data.idx import write_idx

__all__ = ["apply", "describe"]

_DATA_DIR = flags.DEFINE_string(
  "data_dir", "", "Fashion-MNIST's four IDX files are in this directory."
)
_SYNTHETIC = flags.DEFINE_integer(
  "synthetic", 0, "Train on N synthetic images instead (tiny runs); 0 = off."
)

_NAMES = (
  ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
  ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
)
_written: dict[int, str] = {}


def _synthetic_dir(num_train: int) -> str:
  """IDX files of blurred random blobs (not uniform noise: a VAE learns)."""
  if num_train in _written:
    return _written[num_train]
  directory = tempfile.mkdtemp(prefix="vae_jax_bench_data_")
  atexit.register(shutil.rmtree, directory, ignore_errors=True)
  rng = np.random.default_rng(0)
  for (images_name, labels_name), n in zip(
    _NAMES, (num_train, max(1, num_train // 4))
  ):
    centres = rng.uniform(6, 22, size=(n, 2, 1, 1))
    yy, xx = np.mgrid[:28, :28]
    blob = np.exp(
      -((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 20.0
    )
    write_idx(
      os.path.join(directory, images_name), (255 * blob).astype(np.uint8)
    )
    write_idx(
      os.path.join(directory, labels_name),
      rng.integers(0, 10, n).astype(np.uint8),
    )
  _written[num_train] = directory
  return directory


def override(config, items) -> None:
  """Sets `KEY=VALUE` items on `config`, each as its field's type (a tuple
  written with slashes: hidden_dims=300/300)."""
  for item in items:
    key, value = item.split("=", 1)
    if isinstance(config[key], bool):
      config[key] = value.lower() in ("1", "true")
    elif isinstance(config[key], tuple):
      config[key] = tuple(int(v) for v in value.split("/"))
    else:
      config[key] = type(config[key])(value)


def apply(config) -> None:
  """Points `config` at the flags' data (in place); nothing without them."""
  if _SYNTHETIC.value:
    config.dataset, config.data_dir = "idx", _synthetic_dir(_SYNTHETIC.value)
    # A validation split that the tiny data can hold.
    config.validation_size = min(config.validation_size, _SYNTHETIC.value // 4)
  elif _DATA_DIR.value:
    config.dataset, config.data_dir = "idx", _DATA_DIR.value


def describe() -> str:
  if _SYNTHETIC.value:
    return f"{_SYNTHETIC.value} synthetic images"
  if _DATA_DIR.value:
    return f"Fashion-MNIST from {_DATA_DIR.value}"
  return "the config's dataset"
