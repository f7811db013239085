"""The VampPrior VAE of Norouzi, Fleet & Norouzi (2020), Table 1: 227.35 nats.

The `paper` config's model and protocol (a 40-dim latent, two 300-unit gated
dense layers, Adam 5e-4, batch 100, KL warm-up over 100 epochs, at most 2000
epochs, early stopping after 50, 10000 validation examples) with the
VampPrior of Tomczak & Welling (2018): p(z) = 1/K Σ_k q(z|u_k) over K = 500
learned pseudo-inputs.

Command: python -m experiments.train --config=vae_jax/configs/vamp.py --workdir=runs/vamp
then:    python -m experiments.evaluate --workdir=runs/vamp --checkpoint=best --num_importance_samples=5000
Measured: see README.md's results table (the run that has been made, and how
far it got).
"""

from vae_jax.configs import paper


def get_config():
  c = paper.get_config()
  c.prior = "vamp"
  c.num_pseudo_inputs = 500
  c.final_importance_samples = 0
  return c
