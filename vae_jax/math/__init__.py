"""The mathematics of the VAE: distributions, the model protocol, objectives.

This layer imports jax, chex and numpy only (no flax, optax, orbax or
plotting), so it can be read, tested and reused on its own:

    distributions   Gaussian sampling and densities, KL, log-likelihoods
    likelihoods     p(x|z; θ) by name, as a value-comparable record
    model           the `VAEModel` protocol and the N(0, I) prior
    objectives      `log_weights`, the one core of the ELBO, the IWAE bound
                    and the importance-sampled log p(x)
    diagnostics     KL per dimension, active units, the aggregate posterior
    linear_gaussian a VAE whose log p(x), p(z|x) and ELBO are exact (pPCA)
"""
