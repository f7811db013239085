"""The default run: `make train`. Its settings are declared in vae_jax/settings.py.

Command: make train  (python -m experiments.train --workdir=runs/default)
The Flax example's 784-500-20 MLP VAE with a Bernoulli decoder on
Fashion-MNIST, dynamic binarisation, Adam 1e-3, batch 128, 10 epochs, seed 0.
Result: test ELBO -242.71 nats after 10 epochs (benchmarks/results/default.json).
The last digits depend on the CPU and on how the same formulas are written
(the order in which XLA sums).
"""

import ml_collections

from vae_jax import settings


def get_config() -> ml_collections.ConfigDict:
  """Every setting of a run, flat; `--config.NAME=VALUE` overrides one.

  The defaults, bounds, meanings and roles are declared in
  `vae_jax/settings.py`.
  """
  return ml_collections.ConfigDict(settings.defaults())
