"""The default run: `make train`. Its settings are declared in vae_jax/settings.py.

Command: make train  (python -m experiments.train --workdir=runs/default)
The Flax example's 784-500-20 MLP VAE with a Bernoulli decoder on
Fashion-MNIST, dynamic binarisation, Adam 1e-3, batch 128, 10 epochs, seed 0.
Measured (seed 0, 2-core Intel Xeon, jax 0.10.2, other jobs running): test
ELBO -259.14 nats after epoch 1 and -242.71 after epoch 10; 39 s of
training and evaluation for the 10 epochs (16,000-18,000 training
examples/s), 51 s for the whole `make train` (idle, before the fused
encoder heads: 32 s and 45 s). The last digits depend on the CPU (summation
order) and on how the same formulas are written: the same seed gave -242.80
before the encoder's two heads became one matmul, and before the redesign
-242.64 on an AMD EPYC and -242.70 on an Intel Xeon.
"""

import ml_collections

from vae_jax import settings


def get_config() -> ml_collections.ConfigDict:
  """Every setting of a run, flat; `--config.NAME=VALUE` overrides one.

  The defaults, bounds, meanings and roles are declared in
  `vae_jax/settings.py`.
  """
  return ml_collections.ConfigDict(settings.defaults())
