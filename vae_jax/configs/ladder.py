"""A three-layer ladder VAE (40, 20, 10) on the paper protocol.

`vae_jax.nets.ladder`: a bottom-up pass of gated dense layers (300, 300,
then 300 per layer), then a top-down pass in which q(z_l|z_{>l}, x) and
p(z_l|z_{>l}) share the top-down state, z_1 40-dim, z_2 20, z_3 10,
p(z_3) = N(0, I), trained with the protocol of configs/paper.py: Adam
5e-4, batch 100, KL warm-up over 100 epochs, at most 2000 epochs, early
stopping after 50 without a better validation ELBO on 10000 held-out
training examples. The KL of each layer is in closed form given its
parents' draws.

Command: python -m experiments.train --config=vae_jax/configs/ladder.py --workdir=runs/ladder
then:    python -m experiments.evaluate --workdir=runs/ladder --checkpoint=best --num_importance_samples=5000
Result: not yet run (then: scripts/record_run.py runs/ladder writes benchmarks/results/ladder.json).
"""

from vae_jax.configs import paper


def get_config():
  c = paper.get_config()
  c.model = "ladder"
  c.latent_dims = (40, 20, 10)
  c.final_importance_samples = 0
  return c
