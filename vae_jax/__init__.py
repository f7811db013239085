"""vae_jax: the variational autoencoder as pure JAX functions.

    q(z|x; φ) = N(z; μ, diag Σ),  (μ, log Σ) = DNN_enc(x; φ)     (encoder)
    p(x, z; θ) = p(x|z; θ) p(z),  p(z) = N(0, I)                  (decoder)
    ELBO = E_q[log p(x, z) − log q(z|x)] = log p(x) − KL(q(z|x) ‖ p(z|x))

Layers, each importing only those before it:

    vae_jax.math        distributions, likelihoods, the model protocol,
                        objectives (jax, chex and numpy only)
    vae_jax.nets        flax networks and the model registry
    vae_jax.step, .chunks    the pure train step and its compiled chunks
    vae_jax.evaluation  per example (pure JAX) and per data set: the ELBO,
                        log p(x), the gap, latent usage
    vae_jax.store       the run directory on disk: config.json,
                        metrics.jsonl, checkpoints, lock, resume
    vae_jax.run         one run: the loop, its host-side tracker,
                        evaluate_run, load_run, devices
    vae_jax.sweep       many runs: a grid trained as vmapped groups
    vae_jax.launchers   the absl mains (experiments/*.py)

The names below are imported on first use (PEP 562), so `import vae_jax`
starts nothing heavy: the launchers check their flags before JAX starts.
"""

import importlib

# name → the module that defines it.
_EXPORTS = {
  **dict.fromkeys(
    (
      "bernoulli_log_likelihood",
      "diagonal_gaussian_log_prob",
      "gaussian_log_likelihood",
      "kl_diagonal_gaussians",
      "kl_to_standard_normal",
      "monte_carlo_kl",
      "sample_diagonal_gaussian",
      "standard_normal_log_prob",
    ),
    "vae_jax.math.distributions",
  ),
  **dict.fromkeys(
    (
      "ElboParts",
      "ExampleTerms",
      "log_weights",
      "elbo",
      "example_terms",
      "iwae_bound",
      "importance_sampled_log_px",
      "batch_elbo",
    ),
    "vae_jax.math.objectives",
  ),
  "VAEModel": "vae_jax.math.model",
  "GaussianVAE": "vae_jax.math.gaussian_vae",
  **dict.fromkeys(
    ("StandardNormal", "MixtureOfGaussians", "VampPrior"), "vae_jax.math.priors"
  ),
  "LinearGaussianVAE": "vae_jax.math.linear_gaussian",
  **dict.fromkeys(("ConfigError", "DataError", "UserError"), "vae_jax.errors"),
  **dict.fromkeys(("MLPVAE", "make_mlp_vae"), "vae_jax.nets.mlp"),
  "ConvVAE": "vae_jax.nets.conv",
  "Likelihood": "vae_jax.math.likelihoods",
  **dict.fromkeys(
    (
      "Hyperparams",
      "StepConfig",
      "StepMetrics",
      "TrainState",
      "init_train_state",
      "make_optimizer",
      "training_objective",
      "train_step",
    ),
    "vae_jax.step",
  ),
  **dict.fromkeys(("EvalResult", "evaluate"), "vae_jax.evaluation"),
  "load_run": "vae_jax.run.load",
  "train_and_evaluate": "vae_jax.run.loop",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.2.0"


def __getattr__(name: str):
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
