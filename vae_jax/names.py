"""The names that settings choose from.

They live in a module that imports nothing, so that the launchers check every
setting before JAX starts; the modules that implement them import the names
from here.
"""

__all__ = ["ACTIVATIONS", "BINARIZATIONS", "LAYOUTS", "LIKELIHOODS",
           "LR_SCHEDULES"]

ACTIVATIONS = ("relu", "elu", "gelu", "silu", "softplus", "tanh",
               "leaky_relu")  # functions of jax.nn
BINARIZATIONS = ("dynamic", "static", "none")
LAYOUTS = ("flat", "image")  # [N, H·W·C] for MLPs, [N, H, W, C] for conv nets
LIKELIHOODS = ("bernoulli", "gaussian")  # p(x|z; θ), vae_jax.math.likelihoods
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")
