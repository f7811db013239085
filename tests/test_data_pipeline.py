"""Batches: binarisation statistics, determinism, epoch-addressable order, and
the streaming path yielding the on-device path's batches bit for bit.

(Training on both paths to the same parameters is tested on TFDS mock data
in test_data_tfds.py, where one pair of compiled chunks serves both checks.)
"""

from __future__ import annotations

import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import assert_close
from tolerances import rounding_atol
from vae_jax import validation
from vae_jax.configs import default
from vae_jax.data import datasets
from vae_jax.data import feeds
from vae_jax.data import pipeline
from vae_jax.data import prepared
from vae_jax.data import streaming
from vae_jax.errors import ConfigError
from vae_jax.names import resolve_image_layout

_N, _B, _D = 40, 8, 12  # 5 steps per epoch

# Jitted once: eager calls would compile each primitive on its own.
_finish_batch = jax.jit(pipeline.finish_batch, static_argnums=(3, 4))


def _config(**overrides):
  """The default run's ConfigDict with `overrides`."""
  config = default.get_config()
  config.update(overrides)
  return config


def _prepared(dataset, **overrides):
  """PreparedData as `prepare_data` makes it from the config's settings."""
  c = _config(**overrides)
  return prepared.PreparedData(
    dataset,
    c.binarization,
    resolve_image_layout(c.model, c.image_layout),
    c.streaming,
  )


def _images(n=_N, d=_D, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, d), dtype=np.uint8)


def _dataset(n=_N, shape=(3, 4, 1), pixel_max=255, seed=0):
  rng = np.random.default_rng(seed)
  split = lambda m: datasets.Split(  # pylint: disable=g-long-lambda
    rng.integers(0, pixel_max + 1, (m, *shape), dtype=np.uint8),
    rng.integers(0, 10, m).astype(np.int32),
  )
  return datasets.ImageDataset(
    "idx", "/synthetic", split(n), split(16), pixel_max=pixel_max
  )


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _on_device_batches(
  images, rng, first_step, num_steps, batch_size, binarize
):
  """The batches `chunks.train_chunk` makes, with its pipeline calls."""
  shuffle_key, binarize_key = pipeline.data_keys(rng)
  steps_per_epoch = images.shape[0] // batch_size
  permutation = pipeline.epoch_permutation(
    shuffle_key, first_step // steps_per_epoch, images.shape[0]
  )

  def batch(i):
    step = first_step + i
    raw = images[
      pipeline.batch_indices(permutation, step % steps_per_epoch, batch_size)
    ]
    return pipeline.finish_batch(raw, binarize_key, step, binarize, 255)

  return jax.lax.map(batch, jnp.arange(num_steps))


@functools.partial(jax.jit, static_argnums=(3,))
def _finish_streamed(chunk, rng, first_step, binarize):
  _, binarize_key = pipeline.data_keys(rng)
  steps = first_step + jnp.arange(chunk.shape[0])
  return jax.lax.map(
    lambda a: pipeline.finish_batch(a[0], binarize_key, a[1], binarize, 255),
    (chunk, steps),
  )


# -------------------------------------------------------------- binarisation


def test_dynamic_binarisation_keeps_pixel_intensities_on_average():
  levels = np.arange(0, 256, 5, dtype=np.uint8)  # [52]
  images = jnp.asarray(np.tile(levels, (4000, 1)))  # every row the same
  draws = _finish_batch(images, jax.random.key(3), 7, True, 255)
  assert set(np.unique(np.asarray(draws))) <= {0.0, 1.0}
  p = levels / 255.0
  mean = np.asarray(draws).mean(axis=0)
  # 4 binomial standard errors. In float32, the draw u · 255 < pixel has
  # P(1) within eps · (1 + p/2) of p: u lies on a 2⁻²³ grid, and u · 255
  # rounds. The mean of 4000 zeros and ones rounds only at ÷4000.
  assert_close(
    mean,
    p,
    4 * np.sqrt(p * (1 - p) / 4000)
    + rounding_atol(1, 1 + p / 2)
    + rounding_atol(1, p),
  )
  assert mean[0] == 0.0 and mean[-1] == 1.0  # 0 and 255 are never flipped


def test_dynamic_binarisation_is_fresh_each_step_and_fixed_by_key():
  images = jnp.full((16, 50), 128, jnp.uint8)
  key = jax.random.key(0)
  a = _finish_batch(images, key, 0, True, 255)
  np.testing.assert_array_equal(a, _finish_batch(images, key, 0, True, 255))
  assert not np.array_equal(a, _finish_batch(images, key, 1, True, 255))


def test_binarisation_does_not_depend_on_layout():
  images = jnp.asarray(_images(8, 12).reshape(8, 3, 4, 1))
  key = jax.random.key(1)
  flat = _finish_batch(images.reshape(8, -1), key, 5, True, 255)
  image = _finish_batch(images, key, 5, True, 255)
  np.testing.assert_array_equal(flat, image.reshape(8, -1))
  np.testing.assert_array_equal(
    pipeline.binarize_once(np.asarray(images), 255).reshape(8, -1),
    pipeline.binarize_once(np.asarray(images).reshape(8, -1), 255),
  )


def test_static_binarisation_is_fixed_whatever_the_run_seed():
  ds = _dataset()
  a = _prepared(ds, binarization="static", seed=0)
  b = _prepared(ds, binarization="static", seed=9)
  np.testing.assert_array_equal(a.train, b.train)
  assert set(np.unique(np.asarray(a.train))) <= {0, 1}
  assert a.pixel_max == 1 and not a.dynamic_binarization


def test_no_binarisation_scales_by_the_pixel_range():
  ds = _dataset()
  data = _prepared(ds, binarization="none", likelihood="gaussian")
  expected = ds.test.images.reshape(16, -1) / 255.0
  # One float32 division per pixel.
  assert_close(np.asarray(data.test), expected, rounding_atol(1, expected))
  assert not data.dynamic_binarization and data.pixel_max == 255


# ------------------------------------------------- order: seed, epoch, stream


def test_same_seed_same_batches_other_seed_other_batches():
  images = _images()
  run = lambda seed: np.concatenate(
    list(
      streaming.host_chunks(  # pylint: disable=g-long-lambda
        images, jax.random.key(seed), _B, [2, 3], num_epochs=2
      )
    )
  )
  np.testing.assert_array_equal(run(0), run(0))
  assert not np.array_equal(run(0), run(1))


def test_epoch_order_is_addressable_without_replaying_epochs():
  images, rng = _images(), jax.random.key(4)
  replayed = list(streaming.host_chunks(images, rng, _B, [5], num_epochs=4))
  direct = list(streaming.host_chunks(images, rng, _B, [5], first_epoch=3))
  np.testing.assert_array_equal(direct[0], replayed[3])
  resumed = list(
    streaming.host_chunks(images, rng, _B, [2, 3], first_epoch=3, first_chunk=1)
  )
  np.testing.assert_array_equal(resumed[0], replayed[3][2:])
  # Each epoch is a permutation: no example twice within an epoch.
  rows = {bytes(r) for r in replayed[1].reshape(-1, _D)}
  assert len(rows) == len({bytes(r) for r in images}) == 5 * _B


def test_streaming_yields_the_on_device_batches():
  images, rng, binarize = _images(), jax.random.key(5), True
  device = _on_device_batches(jnp.asarray(images), rng, 5, 5, _B, binarize)
  with streaming.stream_chunks(
    images, rng, _B, [2, 3], first_epoch=1, prefetch=1
  ) as stream:
    chunks = list(stream)
  assert [c.shape for c in chunks] == [(2, _B, _D), (3, _B, _D)]
  assert all(isinstance(c, jax.Array) for c in chunks)
  streamed = _finish_streamed(jnp.concatenate(chunks), rng, 5, binarize)
  np.testing.assert_array_equal(np.asarray(device), np.asarray(streamed))


# ------------------------------------------------------------ the prefetcher


def test_prefetcher_keeps_order_and_puts_items_on_the_device():
  with streaming.Prefetcher((np.full(3, i) for i in range(7)), size=2) as p:
    items = list(p)
  assert [int(x[0]) for x in items] == list(range(7))
  assert all(isinstance(x, jax.Array) for x in items)


def test_prefetcher_raises_the_producer_error_in_the_consumer():
  def items():
    yield np.zeros(2)
    raise OSError("disk went away")

  p = streaming.Prefetcher(items())
  next(p)
  with pytest.raises(OSError, match="disk went away"):
    next(p)


def test_prefetcher_close_stops_its_thread():
  produced = []

  def items():
    for i in range(10**6):
      produced.append(i)
      yield np.zeros(1)

  p = streaming.Prefetcher(items(), size=1)
  next(p)
  p.close()
  assert not any(
    t.name == "vae_jax-prefetch" and t.is_alive()
    for t in threading.enumerate()
    if t is p._thread
  )  # pylint: disable=protected-access
  assert len(produced) < 10


# --------------------------------------------------------- PreparedData paths


def test_prepared_data_on_device_and_streaming():
  ds = _dataset()
  on_device = _prepared(ds)
  assert isinstance(on_device.train, jax.Array)
  assert on_device.train.dtype == jnp.uint8 and on_device.train.shape == (
    40,
    12,
  )
  feed = feeds.BatchFeed(_B, True, 255)
  assert feed.source_spec(on_device.train, 3) is on_device.train
  stream = _prepared(ds, streaming=True, steps_per_chunk=2)
  assert isinstance(stream.train, np.ndarray)  # stays on the host
  streamed = feeds.BatchFeed(_B, True, 255, streamed=True)
  assert streamed.source_spec(stream.train, 3) == jax.ShapeDtypeStruct(
    (3, _B, 12), jnp.uint8
  )
  assert stream.describe()["input_path"] == "streaming"
  with streaming.stream_chunks(
    stream.train, jax.random.key(0), _B, [2, 3]
  ) as chunks:
    assert [c.shape[0] for c in chunks] == [2, 3]


def test_image_layout_keeps_nhwc():
  ds = _dataset()
  config = _config(image_layout="image")
  data = _prepared(ds, image_layout="image")
  assert data.train.shape == (40, 3, 4, 1) and data.test.shape == (16, 3, 4, 1)
  assert data.data_dim == 12 and data.describe()["layout"] == "image"
  with pytest.raises(ConfigError, match="image_layout"):
    validation.validate(config)  # the MLP VAE needs flat data


def test_describe_records_source_and_preprocessing():
  d = _prepared(_dataset()).describe()
  assert d["source"] == "/synthetic" and d["source_kind"] == "idx"
  assert d["binarization"] == "dynamic" and d["layout"] == "flat"
  assert d["pixel_max"] == 255 and d["input_path"] == "on_device"
  assert d["num_examples"] == {"train": 40, "test": 16, "validation": 0}


def test_streaming_needs_chunks_of_steps():
  with pytest.raises(ConfigError, match="steps_per_chunk"):
    validation.validate(_config(streaming=True))


def test_an_invalid_layout_is_refused_by_the_data_too():
  with pytest.raises(ConfigError, match="image_layout='nchw'"):
    _prepared(_dataset(), image_layout="nchw")


@pytest.mark.parametrize("data_dir", ["", None])
def test_prepare_data_takes_an_empty_data_dir_as_not_given(
  monkeypatch, data_dir
):
  """A ConfigDict's data_dir is '' when not given: the loader gets None."""
  seen = []

  def load_dataset(name, given_dir, *args, **kwargs):
    del args, kwargs
    seen.append((name, given_dir))
    return _dataset()

  monkeypatch.setattr(datasets, "load_dataset", load_dataset)
  data = prepared.prepare_data(
    _config(dataset="idx", data_dir=data_dir, batch_size=8)
  )
  assert seen == [("idx", None)] and data.num_train == _N
