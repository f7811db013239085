"""The runs of test_mesh.py, in one process that has 4 CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python tests/mesh_runs.py DATA_DIR OUT_DIR

Trains the tiny config of `mesh_config` (one step per epoch) into OUT_DIR:
  one_device/, four_devices/   one epoch each;
  four_then_one/, four_then_four/   four_devices/ copied and extended to two
      epochs on 1 and on 4 devices (a checkpoint of 4 devices on 1, and
      the reference it must match; the 4 devices' extension streams its
      batches, sharded as they arrive);
  one_then_four/, one_then_one/   the same from one_device/.
"""

from __future__ import annotations

import os
import shutil
import sys

import jax
from absl import logging

from vae_jax.configs import default
from vae_jax.run import loop

NUM_TRAIN = 32  # = the batch: one step per epoch


def mesh_config(data_dir: str, **overrides):
  """A 784-16-2 MLP trained by SGD (whose update is linear in the
  gradient, so the tolerance of one step is derived from it)."""
  config = default.get_config()
  config.update(
    dict(
      dataset="idx",
      data_dir=data_dir,
      batch_size=NUM_TRAIN,
      latent_dim=2,
      hidden_dims=(16,),
      optimizer="sgd",
      learning_rate=1e-3,
      epochs=1,
      eval_batch_size=64,
      steps_per_chunk=1,
    )
    | overrides
  )
  return config


def _train(data_dir, workdir, **overrides):
  loop.train_and_evaluate(
    mesh_config(data_dir, **overrides),
    workdir,
    progress_bar=False,
    figures=False,
  )


def main(data_dir: str, out: str) -> None:
  logging.use_absl_handler()
  logging.set_verbosity(logging.INFO)  # the `mesh:` lines
  assert jax.local_device_count() == 4, jax.devices()
  for name, devices in (("one_device", 1), ("four_devices", 4)):
    _train(data_dir, os.path.join(out, name), num_devices=devices)
  for source, first in (("four_devices", "four"), ("one_device", "one")):
    for devices, then in ((1, "one"), (4, "four")):
      target = os.path.join(out, f"{first}_then_{then}")
      shutil.copytree(os.path.join(out, source), target)
      _train(
        data_dir,
        target,
        num_devices=devices,
        epochs=2,
        streaming=(first, then) == ("four", "four"),
      )


if __name__ == "__main__":
  main(*sys.argv[1:])
