"""Seconds, for tests and for checking an installation end to end.

Command: python -m experiments.train --config=vae_jax/configs/smoke.py --workdir=runs/smoke
A 784-64-2 MLP VAE (a 2-D latent, so the manifold figure is drawn), 2 epochs
with one epoch of KL warm-up, a 1000-example validation split (best
checkpoint, early stopping) and one checkpoint per epoch.
Result: test ELBO -284.19 nats after 2 epochs (benchmarks/results/smoke.json).
"""

from vae_jax.configs import default


def get_config():
  c = default.get_config()
  c.latent_dim = 2
  c.hidden_dims = (64,)
  c.epochs = 2
  c.kl_warmup_epochs = 1.0
  c.validation_size = 1000
  c.early_stopping_patience = 2
  return c
