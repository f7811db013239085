"""Tomczak & Welling's two-layer HVAE with the standard prior, paper protocol.

q(z2|x) q(z1|x, z2) and p(x|z1, z2) p(z1|z2) p(z2), p(z2) = N(0, I), both
layers 40-dim, every network of two 300-unit gated dense layers
(`vae_jax.nets.hierarchical`), trained with the protocol of
configs/paper.py: Adam 5e-4, batch 100, KL warm-up over 100 epochs, at
most 2000 epochs, early stopping after 50 without a better validation ELBO
on 10000 held-out training examples. The KL of each layer is in closed form
given its parents' draws.

Command: python -m experiments.train --config=vae_jax/configs/hvae.py --workdir=runs/hvae
then:    python -m experiments.evaluate --workdir=runs/hvae --checkpoint=best --num_importance_samples=5000
Result: not yet run (then: scripts/record_run.py runs/hvae writes benchmarks/results/hvae.json).
"""

from vae_jax.configs import paper


def get_config():
  c = paper.get_config()
  c.model = "hvae"
  c.final_importance_samples = 0
  return c
