"""Tomczak & Welling's two-layer HVAE with the VampPrior, paper protocol.

configs/hvae.py (two 40-dim layers, 300-unit gated dense layers, the
protocol of configs/paper.py) with p(z2) = 1/K Σ_k q(z2|u_k) over K = 500
learned pseudo-inputs, which go through q(z2|x): the HVAE + VampPrior of
the paper. The KL is Monte Carlo (the prior has no closed form). Its
published test NLL is 226.72 nats (Norouzi, Fleet & Norouzi 2020, Table 1).

Command: python -m experiments.train --config=vae_jax/configs/hvae_vamp.py --workdir=runs/hvae_vamp
then:    python -m experiments.evaluate --workdir=runs/hvae_vamp --checkpoint=best --num_importance_samples=5000
Result: test log p(x) -227.53 ± 0.76 nats (K = 5000), 348 epochs, stopped by hand (benchmarks/results/hvae_vamp.json).
"""

from vae_jax.configs import hvae


def get_config():
  c = hvae.get_config()
  c.prior = "vamp"
  c.num_pseudo_inputs = 500
  c.final_importance_samples = 0
  return c
