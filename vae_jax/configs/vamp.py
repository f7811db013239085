"""The paper protocol's one-layer VAE with the VampPrior (Tomczak, Welling).

configs/paper.py's model and protocol (40-dim latent, two 300-unit gated
dense layers, Adam 5e-4, batch 100, KL warm-up over 100 epochs, at most
2000 epochs, early stopping after 50 without a better validation ELBO on
10000 held-out training examples), with the prior p(z) = 1/K Σ_k q(z|u_k)
over K = 500 learned pseudo-inputs u_k (`prior=vamp`). The KL is Monte
Carlo (the prior has no closed form). The published test NLL of this model
is 227.35 nats (Norouzi, Fleet & Norouzi 2020, Exemplar VAE, Table 1).

Command: python -m experiments.train --config=vae_jax/configs/vamp.py --workdir=runs/vamp
then:    python -m experiments.evaluate --workdir=runs/vamp --checkpoint=best --num_importance_samples=5000
Result: test log p(x) -227.77 ± 0.75 nats (K = 5000) after 418 epochs, stopped by hand (benchmarks/results/vamp.json).
"""

from vae_jax.configs import paper


def get_config():
  c = paper.get_config()
  c.prior = "vamp"
  c.num_pseudo_inputs = 500
  c.final_importance_samples = 0
  return c
