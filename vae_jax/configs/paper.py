"""The standard VAE of Norouzi, Fleet & Norouzi (2020), Exemplar VAE, Table 1.

Their standard-prior VAE reaches 228.70 nats of importance-sampled negative
log-likelihood on dynamically binarised Fashion-MNIST. The setting is the
training protocol of Tomczak & Welling's VampPrior (2018) that the paper
follows: a 40-dim latent, two 300-unit gated dense layers (`activation=glu`,
(W h + b) ⊙ σ(V h + c), as the reference code) in encoder and decoder,
Adam 5e-4, batch 100, KL warm-up over 100 epochs, at most 2000 epochs with
early stopping after 50 epochs without a better validation ELBO on 10000
examples held out of the training split.

Command: python -m experiments.train --config=vae_jax/configs/paper.py --workdir=runs/paper
then:    python -m experiments.evaluate --workdir=runs/paper --checkpoint=best --num_importance_samples=5000
Result: test log p(x) -228.59 ± 0.76 nats (K = 5000), ELBO -231.30, 985 epochs (benchmarks/results/paper.json).
"""

from vae_jax.configs import default


def get_config():
  c = default.get_config()
  c.latent_dim = 40
  c.hidden_dims = (300, 300)
  c.activation = "glu"  # the reference code's gated dense layers
  c.learning_rate = 5e-4
  c.batch_size = 100
  c.kl_warmup_epochs = 100.0
  c.epochs = 2000
  c.validation_size = 10000
  c.early_stopping_patience = 50
  return c
