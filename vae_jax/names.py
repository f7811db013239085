"""The names that settings choose from.

They live in a module that imports no JAX, so that the launchers check every
setting before JAX starts. Where a name chooses an implementation
(likelihoods, objectives), the registry maps it to the implementation's
import path, `module:attribute`, imported when it is used
(`implementation`): adding one is one entry. Models and priors are
registered as factories in vae_jax.nets.registry, also JAX-free.
"""

import importlib

__all__ = [
  "ACTIVATIONS",
  "ELEMENTWISE_ACTIVATIONS",
  "BINARIZATIONS",
  "COMPUTE_DTYPES",
  "LAYOUTS",
  "LIKELIHOODS",
  "BINARY_LIKELIHOODS",
  "LR_SCHEDULES",
  "FLOORED_SCHEDULES",
  "LR_BATCH_SCALINGS",
  "OBJECTIVES",
  "MODEL_LAYOUTS",
  "resolve_image_layout",
  "implementation",
]

# Functions of jax.nn. glu (gated dense layers, vae_jax.nets.modules.
# hidden_layer) halves a doubled Dense, so it is for the MLP's hidden
# layers; the others apply elementwise, anywhere.
ELEMENTWISE_ACTIVATIONS = (
  "relu",
  "elu",
  "gelu",
  "silu",
  "softplus",
  "tanh",
  "leaky_relu",
)
ACTIVATIONS = ELEMENTWISE_ACTIVATIONS + ("glu",)
BINARIZATIONS = ("dynamic", "static", "none")
LAYOUTS = ("flat", "image")  # [N, H·W·C] for MLPs, [N, H, W, C] for conv nets
# p(x|z; θ), vae_jax.math.likelihoods.Family. Only the Bernoulli needs binary
# x; the others are densities on [0, 1] (continuous_bernoulli) or on R
# (Gaussians).
LIKELIHOODS = {
  "bernoulli": "vae_jax.math.likelihoods:BERNOULLI",
  "gaussian": "vae_jax.math.likelihoods:GAUSSIAN",
  "gaussian_learned_variance": "vae_jax.math.likelihoods:GAUSSIAN_LEARNED_VARIANCE",
  "continuous_bernoulli": "vae_jax.math.likelihoods:CONTINUOUS_BERNOULLI",
}
BINARY_LIKELIHOODS = ("bernoulli",)
# The factor on the learning rate over the steps (vae_jax.optim.lr_factor).
LR_SCHEDULES = (
  "constant",
  "cosine",
  "warmup_cosine",
  "exponential",
  "linear",
  "onecycle",
)
# The schedules that end at config.lr_floor (exponential ends at 1%).
FLOORED_SCHEDULES = ("cosine", "warmup_cosine", "linear", "onecycle")
# The learning rate × (batch_size / lr_reference_batch_size)^p: p = 0, 1, ½
# (vae_jax.validation.batch_scale, applied in vae_jax.run.programs).
LR_BATCH_SCALINGS = ("none", "linear", "sqrt")
# The training objective (vae_jax.step): the β-weighted ELBO (with free bits),
# or the importance-weighted bound of Burda et al. with num_samples draws.
OBJECTIVES = {
  "elbo": "vae_jax.step:elbo_objective",
  "iwae": "vae_jax.step:iwae_objective",
}
COMPUTE_DTYPES = ("float32", "bfloat16")  # the networks' (FlaxVAE._apply)

# The layout each registered model takes; `image_layout=''` means this one.
MODEL_LAYOUTS = {
  "mlp": "flat",
  "conv": "image",
  "hvae": "flat",
  "conv_hvae": "image",
  "ladder": "flat",
}


def resolve_image_layout(model: str, image_layout: str) -> str:
  """The layout of a run: `image_layout`, or '' → the model's own.

  A model of your own (`package.module:factory`) takes flat examples unless
  `image_layout=image` says otherwise.
  """
  if image_layout:
    return image_layout
  return MODEL_LAYOUTS.get(model, "flat")


def implementation(registry: dict, name: str):
  """The object registered as `name` in `registry` (LIKELIHOODS,
  OBJECTIVES), imported from its `module:attribute` path."""
  module, _, attribute = registry[name].partition(":")
  return getattr(importlib.import_module(module), attribute)
