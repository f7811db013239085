"""The TFDS data path, through `tfds.testing.mock_data` and `as_data_source`.

Reading TFDS data (`builder.as_data_source`, array_record) needs no
TensorFlow, and neither do these tests: mock_data serves random examples
with the real features (and, with MockPolicy.USE_FILES, real split names
from metadata the test writes). Preparing a stock dataset needs TensorFlow
and the network; no test does that (the one test of that branch checks the
error that names the extra, and runs only where TensorFlow is absent).
Nothing here touches the network.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import chex  # pylint: disable=g-import-not-at-top
import jax

from vae_jax import chunks
from vae_jax import step
from vae_jax.configs import default
from vae_jax.data import datasets
from vae_jax.data import feeds
from vae_jax.data import prepared
from vae_jax.data import streaming
from vae_jax.data.idx import write_idx
from vae_jax.errors import DataError
from vae_jax.nets.mlp import make_mlp_vae

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_HAS_TENSORFLOW = importlib.util.find_spec("tensorflow") is not None


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("a data test tried to use the network")

  monkeypatch.setattr(socket.socket, "connect", refuse)


def _config(**overrides):
  """The default run's ConfigDict with `overrides`."""
  config = default.get_config()
  config.update(overrides)
  return config


def _code_mock(num_examples=24, **kwargs):
  return tfds.testing.mock_data(
    num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE, **kwargs
  )


def _write_metadata(data_dir, name, splits):
  """dataset_info.json of `name` with the given {split: size}, no data."""
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  template = tfds.core.naming.ShardedFileTemplate(
    data_dir=builder.data_path,
    dataset_name=name,
    filetype_suffix="array_record",
    split="train",
  )
  builder.info.set_splits(
    tfds.core.SplitDict(
      [
        tfds.core.SplitInfo(
          name=s,
          shard_lengths=[n],
          num_bytes=0,
          filename_template=template.replace(split=s),
        )
        for s, n in splits.items()
      ]
    )
  )
  builder.info.set_file_format(tfds.core.file_adapters.FileFormat.ARRAY_RECORD)
  os.makedirs(builder.data_path, exist_ok=True)
  builder.info.write_to_directory(builder.data_path)


def test_mnist_through_tfds_data_source(tmp_path):
  with _code_mock(num_examples=24):
    ds = datasets.load_dataset("mnist", str(tmp_path), validation_size=4)
  assert ds.source_kind == "tfds" and ds.source.startswith("tfds:mnist/")
  assert ds.train.images.shape == (20, 28, 28, 1)
  assert ds.validation.images.shape == (4, 28, 28, 1)
  assert ds.test.images.dtype == np.uint8 and ds.test.labels.shape == (24,)
  assert ds.pixel_max == 255
  assert "tensorflow" not in sys.modules or _HAS_TENSORFLOW


def test_cifar10_keeps_its_colour_image_layout(tmp_path):
  with _code_mock(num_examples=6):
    ds = datasets.load_dataset("cifar10", str(tmp_path))
  assert ds.train.images.shape == (6, 32, 32, 3)


def test_fashion_mnist_falls_back_to_tfds(tmp_path, monkeypatch):
  monkeypatch.setitem(
    datasets.LOCAL_DATASETS,
    "fashion_mnist",
    str(tmp_path / "no_debian_package"),
  )
  with _code_mock(num_examples=8):
    ds = datasets.load_dataset("fashion_mnist", str(tmp_path))
  assert ds.source_kind == "tfds" and "fashion_mnist" in ds.source


def _binary_source(builder, split, **kwargs):
  del builder, kwargs
  rng = np.random.default_rng(0 if split == "train" else 1)
  return [
    {"image": rng.integers(0, 2, (28, 28, 1), dtype=np.uint8)}
    for _ in range(10)
  ]


def test_binarized_mnist_is_used_as_is(tmp_path):
  with tfds.testing.mock_data(
    as_data_source_fn=_binary_source, policy=tfds.testing.MockPolicy.USE_CODE
  ):
    ds = datasets.load_dataset("binarized_mnist", str(tmp_path))
  assert ds.already_binary and ds.train.labels is None
  for binarization in ("dynamic", "static"):
    data = prepared.PreparedData(ds, binarization, "flat")
    assert not data.dynamic_binarization and data.pixel_max == 1
    np.testing.assert_array_equal(
      np.asarray(data.train), ds.train.images.reshape(10, -1)
    )
    np.testing.assert_array_equal(
      np.asarray(data.test), ds.test.images.reshape(10, -1)
    )
    assert data.describe()["binarization"].startswith("none (already binary")


def test_split_names_come_from_the_dataset(tmp_path):
  _write_metadata(str(tmp_path), "mnist", {"train": 12, "test": 5})
  with tfds.testing.mock_data(
    num_examples=12,
    data_dir=str(tmp_path),
    policy=tfds.testing.MockPolicy.USE_FILES,
  ):
    ds = datasets.load_dataset("mnist", str(tmp_path))
    assert len(ds.train) == 12
    with pytest.raises(DataError) as info:
      datasets.load_dataset("mnist", str(tmp_path), test_split="validation")
  message = str(info.value)
  assert (
    "--test_split='validation'" in message
    and "splits are test, train" in message
  )
  assert "\n" not in message


def _source_of(examples):
  def as_data_source(builder, split, **kwargs):
    del builder, split, kwargs
    return examples

  return as_data_source


class _Corrupt:
  def __len__(self):
    return 3

  def __getitem__(self, i):
    if i == 1:
      raise ValueError("Failed to read record 1: checksum mismatch\nmore")
    return {"image": np.zeros((28, 28, 1), np.uint8), "label": 0}


@pytest.mark.parametrize(
  "examples, expected",
  [
    (
      [{"image": np.zeros((28, 28, 1), np.uint16), "label": 0}] * 3,
      "expected 8-bit (uint8) pixels",
    ),
    (_Corrupt(), "cannot read example 1 (ValueError: Failed to read record 1"),
    ([], "the split holds no examples"),
  ],
)
def test_bad_tfds_data_give_one_clear_line(tmp_path, examples, expected):
  with tfds.testing.mock_data(
    as_data_source_fn=_source_of(examples),
    policy=tfds.testing.MockPolicy.USE_CODE,
  ):
    with pytest.raises(DataError) as info:
      datasets.load_dataset("mnist", str(tmp_path))
  assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_dataset_without_images_is_refused_before_any_download(tmp_path):
  with pytest.raises(DataError, match="has 0 image features"):
    datasets.load_dataset("imdb_reviews", str(tmp_path))


def test_unknown_name_suggests_close_tfds_names():
  with pytest.raises(DataError) as info:
    datasets.load_dataset("kmnsit")
  assert "did you mean kmnist" in str(info.value)


@pytest.mark.skipif(
  _HAS_TENSORFLOW,
  reason="with TensorFlow installed this "
  "would download and prepare the dataset (network)",
)
def test_unprepared_dataset_names_the_extra(tmp_path):
  with pytest.raises(DataError) as info:
    datasets.load_dataset("kmnist", str(tmp_path))
  message = str(info.value)
  assert "pip install 'vae_jax[tfds]'" in message and "\n" not in message
  assert "not prepared in" in message


@pytest.mark.slow
def test_mnist_trains_identically_on_device_and_streaming(tmp_path):
  """`--dataset=mnist` on mock data: prepared, then trained on both paths."""
  config = _config(
    dataset="mnist",
    data_dir=str(tmp_path),
    batch_size=8,
    hidden_dims=(8,),
    latent_dim=2,
  )
  with _code_mock(num_examples=40):
    data = prepared.prepare_data(config)
  assert data.describe()["source_kind"] == "tfds"
  assert data.describe()["binarization"] == "dynamic"
  assert data.train.shape == (40, 784) and data.train.dtype == np.uint8
  model = make_mlp_vae(data.data_dim, 2, (8,))
  step_config = step.StepConfig()
  hparams = step.Hyperparams(np.float32(1e-2), np.float32(1.0))
  state = step.init_train_state(model, step_config, jax.random.key(2))
  steps = 5  # one chunk per epoch of 40 // 8 steps
  bind = lambda streamed: jax.jit(
    functools.partial(  # pylint: disable=g-long-lambda
      chunks.train_chunk,
      model,
      step_config,
      feeds.BatchFeed(
        8, data.dynamic_binarization, data.pixel_max, streamed=streamed
      ),
      steps,
    )
  )
  on_device, streamed = bind(False), bind(True)
  stream = streaming.stream_chunks(
    np.asarray(data.train), state.rng, 8, [steps], num_epochs=2
  )
  # Both paths run the same steps on bit-identical batches: on CPU, which
  # compiles both the same, bit for bit. Elsewhere two programs may fuse
  # differently, and no a-priori float32 bound survives Adam steps (÷√v̂
  # amplifies the rounding of small gradients), so only the CPU compares.
  same_steps = jax.default_backend() == "cpu"
  a = b = state
  for _ in range(2):
    a, metrics_a, _ = on_device(a, data.train, hparams)
    b, metrics_b, _ = streamed(b, next(stream), hparams)
    if same_steps:
      chex.assert_trees_all_equal(metrics_a, metrics_b)
  if same_steps:
    chex.assert_trees_all_equal(a.params, b.params)
  assert int(a.step) == int(b.step) == 10 and np.isfinite(float(metrics_a.elbo))
  with pytest.raises(StopIteration):
    next(stream)


_NO_TENSORFLOW_RUN = textwrap.dedent("""
    import sys
    from vae_jax.configs import default
    from vae_jax.run import loop
    # The default dataset, resolved to the test's IDX files.
    c = default.get_config()
    c.update(data_dir=sys.argv[1], epochs=1, batch_size=8, hidden_dims=(8,),
             latent_dim=2, eval_batch_size=16)
    # No PNGs: matplotlib time (TensorBoard's grids are still made).
    loop.train_and_evaluate(c, sys.argv[2], progress_bar=False, figures=False)
    assert "tensorflow" not in sys.modules, "the default run imported TF"
    assert "tensorflow_datasets" not in sys.modules, "it imported TFDS"
    print("no tensorflow")
""")


@pytest.mark.slow
def test_default_training_never_imports_tensorflow(tmp_path):
  data = tmp_path / "idx"
  os.makedirs(data)
  rng = np.random.default_rng(0)
  for stem, n in (("train", 32), ("t10k", 16)):
    write_idx(
      str(data / f"{stem}-images-idx3-ubyte.gz"),
      rng.integers(0, 256, (n, 8, 8), dtype=np.uint8),
    )
    write_idx(
      str(data / f"{stem}-labels-idx1-ubyte.gz"),
      rng.integers(0, 10, n, dtype=np.uint8),
    )
  result = subprocess.run(
    [
      sys.executable,
      "-c",
      _NO_TENSORFLOW_RUN,
      str(data),
      str(tmp_path / "run"),
    ],
    cwd=_REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "no tensorflow" in result.stdout
