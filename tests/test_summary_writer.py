"""SummaryWriter: what tensorboardX writes, tensorboard's EventAccumulator
reads back."""

from __future__ import annotations

import numpy as np
import pytest

from vae_jax.summary_writer import (SummaryWriter, read_image_tags,
                                    read_images, read_scalars)

pytest.importorskip("tensorboard")


def test_scalars_round_trip(tmp_path):
  logdir = str(tmp_path / "tb")
  written = {
      1: {"train/elbo": -150.25, "test/elbo": -152.5, "val/elbo": None},
      2: {"train/elbo": -120.125, "test/elbo": np.float32(-121.3),
          "val/elbo": None},
      7: {"train/elbo": -101.0, "test/elbo": -104.75, "lr": 1e-3},
  }
  with SummaryWriter(logdir) as writer:
    for step, scalars in written.items():
      writer.write_scalars(step, scalars)
  scalars = read_scalars(logdir)
  assert set(scalars) == {"train/elbo", "test/elbo", "lr"}  # None skipped
  for tag, events in scalars.items():
    expected = [(step, float(np.float32(values[tag])))
                for step, values in written.items()
                if values.get(tag) is not None]
    assert events == expected, tag


def test_images_round_trip(tmp_path):
  logdir = str(tmp_path / "tb")
  rng = np.random.default_rng(0)
  grey = rng.uniform(size=(17, 23)).astype(np.float32)
  colour = rng.uniform(size=(9, 11, 3)).astype(np.float32)
  writer = SummaryWriter(logdir)
  writer.write_images(3, {"figures/prior_samples": grey})
  writer.write_images(5, {"figures/prior_samples": 1.0 - grey,
                          "figures/colour": colour})
  writer.flush()
  writer.close()

  assert read_image_tags(logdir) == ["figures/colour", "figures/prior_samples"]
  images = read_images(logdir)
  steps = [step for step, _ in images["figures/prior_samples"]]
  assert steps == [3, 5]
  for (_, decoded), expected in zip(images["figures/prior_samples"],
                                    (grey, 1.0 - grey)):
    assert decoded.shape[:2] == (17, 23)
    np.testing.assert_array_equal(
        decoded[..., 0], np.round(expected * 255).astype(np.uint8))
  [(step, decoded)] = images["figures/colour"]
  assert step == 5
  np.testing.assert_array_equal(decoded,
                                np.round(colour * 255).astype(np.uint8))


def test_write_images_rejects_a_batch(tmp_path):
  with SummaryWriter(str(tmp_path)) as writer:
    with pytest.raises(ValueError, match=r"\[H, W\]"):
      writer.write_images(0, {"x": np.zeros((2, 4, 4, 1))})
