"""SummaryWriter: what tensorboardX writes, tensorboard's EventAccumulator
reads back."""

from __future__ import annotations

import numpy as np
import pytest

from vae_jax.run.tensorboard import (
  SummaryWriter,
  read_image_tags,
  read_images,
  read_scalars,
)

pytest.importorskip("tensorboard")


def test_scalars_round_trip(tmp_path):
  logdir = str(tmp_path / "tb")
  written = {
    1: {"train/elbo": -150.25, "test/elbo": -152.5, "val/elbo": None},
    2: {
      "train/elbo": -120.125,
      "test/elbo": np.float32(-121.3),
      "val/elbo": None,
    },
    7: {"train/elbo": -101.0, "test/elbo": -104.75, "lr": 1e-3},
  }
  with SummaryWriter(logdir) as writer:
    for step, scalars in written.items():
      writer.write_scalars(step, scalars)
  scalars = read_scalars(logdir)
  assert set(scalars) == {"train/elbo", "test/elbo", "lr"}  # None skipped
  for tag, events in scalars.items():
    expected = [
      (step, float(np.float32(values[tag])))
      for step, values in written.items()
      if values.get(tag) is not None
    ]
    assert events == expected, tag


def test_images_round_trip(tmp_path):
  logdir = str(tmp_path / "tb")
  rng = np.random.default_rng(0)
  grey = rng.uniform(size=(17, 23)).astype(np.float32)
  colour = rng.uniform(size=(9, 11, 3)).astype(np.float32)
  writer = SummaryWriter(logdir)
  writer.write_images(3, {"figures/prior_samples": grey})
  writer.write_images(
    5, {"figures/prior_samples": 1.0 - grey, "figures/colour": colour}
  )
  writer.flush()
  writer.close()

  assert read_image_tags(logdir) == ["figures/colour", "figures/prior_samples"]
  images = read_images(logdir)
  steps = [step for step, _ in images["figures/prior_samples"]]
  assert steps == [3, 5]
  for (_, decoded), expected in zip(
    images["figures/prior_samples"], (grey, 1.0 - grey)
  ):
    assert decoded.shape[:2] == (17, 23)
    np.testing.assert_array_equal(
      decoded[..., 0], np.round(expected * 255).astype(np.uint8)
    )
  [(step, decoded)] = images["figures/colour"]
  assert step == 5
  np.testing.assert_array_equal(
    decoded, np.round(colour * 255).astype(np.uint8)
  )


def test_write_images_rejects_a_batch(tmp_path):
  with SummaryWriter(str(tmp_path)) as writer:
    with pytest.raises(ValueError, match=r"\[H, W\]"):
      writer.write_images(0, {"x": np.zeros((2, 4, 4, 1))})


def test_purge_step_hides_the_events_a_crashed_run_wrote_again(tmp_path):
  """A run resumed from its checkpoint at step 3 writes steps 4 and 5 again."""
  logdir = str(tmp_path / "tb")
  grey = np.zeros((4, 4), np.float32)
  with SummaryWriter(logdir) as crashed:
    for step in range(1, 6):
      crashed.write_scalars(step, {"elbo": -step, "kl": step})
    crashed.write_images(5, {"samples": grey})
  # purge_step = the resumed step + 1; opened in the same second as the first
  # writer, the second file must not replace the first.
  with SummaryWriter(logdir, purge_step=4) as resumed:
    for step in (4, 5):
      resumed.write_scalars(step, {"elbo": -10 * step, "kl": 10 * step})
    resumed.write_images(5, {"samples": grey + 1})
  assert len(list((tmp_path / "tb").iterdir())) == 2
  assert read_scalars(logdir) == {
    "elbo": [(1, -1.0), (2, -2.0), (3, -3.0), (4, -40.0), (5, -50.0)],
    "kl": [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0)],
  }
  [(step, image)] = read_images(logdir)["samples"]
  assert step == 5 and image.min() == 255
