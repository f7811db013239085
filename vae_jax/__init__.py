"""vae_jax: the variational autoencoder as pure JAX functions.

    q(z|x; φ) = N(z; μ, diag Σ),  (μ, log Σ) = DNN_enc(x; φ)     (encoder)
    p(x, z; θ) = p(x|z; θ) p(z),  p(z) = N(0, I)                  (decoder)
    ELBO = E_q[log p(x, z) − log q(z|x)] = log p(x) − KL(q(z|x) ‖ p(z|x))

The names below are imported on first use (PEP 562), so that importing a
light module such as `vae_jax.config` or `vae_jax.errors` does not start JAX:
the launchers check their flags first.
"""

import importlib

# name → the module that defines it. `elbo` is the module: vae_jax.elbo.elbo
# is the per-example ELBO.
_EXPORTS = {
    **dict.fromkeys(
        ("bernoulli_log_likelihood", "diagonal_gaussian_log_prob",
         "gaussian_log_likelihood", "kl_diagonal_gaussians",
         "kl_to_standard_normal", "monte_carlo_kl",
         "sample_diagonal_gaussian", "standard_normal_log_prob"),
        "vae_jax.distributions"),
    "elbo": None,
    **dict.fromkeys(("ElboParts", "batch_elbo"), "vae_jax.elbo"),
    **dict.fromkeys(("ConfigError", "DataError", "UserError"), "vae_jax.errors"),
    **dict.fromkeys(("VAEModel", "decoder_mean", "make_mlp_vae"),
                    "vae_jax.model"),
    **dict.fromkeys(
        ("EvalResult", "Hyperparams", "StepConfig", "StepMetrics",
         "TrainState", "evaluate", "init_train_state", "make_lr_schedule",
         "make_optimizer", "train_chunk", "train_step"),
        "vae_jax.training"),
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module = _EXPORTS[name]
  if module is None:  # a submodule
    return importlib.import_module(f"{__name__}.{name}")
  return getattr(importlib.import_module(module), name)


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
