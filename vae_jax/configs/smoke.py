"""Seconds, for tests and for checking an installation end to end.

Command: python -m experiments.train --config=vae_jax/configs/smoke.py --workdir=runs/smoke
A 784-64-2 MLP VAE (a 2-D latent, so the manifold figure is drawn), 2 epochs
with one epoch of KL warm-up, a 1000-example validation split (best
checkpoint, early stopping) and one checkpoint per epoch.
Measured (Fashion-MNIST, seed 0, 2-core Intel Xeon): test ELBO -292.84
nats after epoch 1 and -284.19 after epoch 2 (-284.17 before the encoder's
heads became one matmul); 97,500 training examples/s in epoch 2 with a
benchmark running beside it (58,000 before the bounds lost their K axis of
size 1; 49,000-71,000 and 18 s for the whole command on the idle machine,
before both).
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
