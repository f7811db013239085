"""vae_jax: the variational autoencoder as pure JAX functions.

    q(z|x; φ) = N(z; μ, diag Σ),  (μ, log Σ) = DNN_enc(x; φ)     (encoder)
    p(x, z; θ) = p(x|z; θ) p(z),  p(z) = N(0, I)                  (decoder)
    ELBO = E_q[log p(x, z) − log q(z|x)] = log p(x) − KL(q(z|x) ‖ p(z|x))
"""

from vae_jax.distributions import (bernoulli_log_likelihood,
                                   diagonal_gaussian_log_prob,
                                   gaussian_log_likelihood,
                                   kl_diagonal_gaussians,
                                   kl_to_standard_normal, monte_carlo_kl,
                                   sample_diagonal_gaussian,
                                   standard_normal_log_prob)
from vae_jax import elbo  # the module: vae_jax.elbo.elbo is the per-example ELBO
from vae_jax.elbo import ElboParts, batch_elbo
from vae_jax.errors import ConfigError, DataError, UserError
from vae_jax.model import VAEModel, decoder_mean, make_mlp_vae
from vae_jax.training import (EvalResult, Hyperparams, StepConfig, StepMetrics,
                              TrainState, evaluate, init_train_state,
                              make_lr_schedule, make_optimizer, train_chunk,
                              train_step)

__version__ = "0.1.0"
