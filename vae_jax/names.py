"""The names that settings choose from.

They live in a module that imports nothing, so that the launchers check every
setting before JAX starts; the modules that implement them import the names
from here.
"""

__all__ = ["ACTIVATIONS", "ELEMENTWISE_ACTIVATIONS", "BINARIZATIONS",
           "COMPUTE_DTYPES", "LAYOUTS", "LIKELIHOODS", "BINARY_LIKELIHOODS",
           "LR_SCHEDULES", "FLOORED_SCHEDULES",
           "LR_BATCH_SCALINGS", "OBJECTIVES", "MODEL_LAYOUTS", "PRIORS",
           "resolve_image_layout"]

# Functions of jax.nn. glu (gated dense layers, vae_jax.nets.modules.
# hidden_layer) halves a doubled Dense, so it is for the MLP's hidden
# layers; the others apply elementwise, anywhere.
ELEMENTWISE_ACTIVATIONS = ("relu", "elu", "gelu", "silu", "softplus", "tanh",
                           "leaky_relu")
ACTIVATIONS = ELEMENTWISE_ACTIVATIONS + ("glu",)
BINARIZATIONS = ("dynamic", "static", "none")
LAYOUTS = ("flat", "image")  # [N, H·W·C] for MLPs, [N, H, W, C] for conv nets
# p(x|z; θ), vae_jax.math.likelihoods. Only the Bernoulli needs binary x; the
# others are densities on [0, 1] (continuous_bernoulli) or on R (Gaussians).
LIKELIHOODS = ("bernoulli", "gaussian", "gaussian_learned_variance",
               "continuous_bernoulli")
BINARY_LIKELIHOODS = ("bernoulli",)
# The factor on the learning rate over the steps (vae_jax.step.lr_factor).
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential",
                "linear", "onecycle")
# The schedules that end at config.lr_floor (exponential ends at 1%).
FLOORED_SCHEDULES = ("cosine", "warmup_cosine", "linear", "onecycle")
# The learning rate × (batch_size / lr_reference_batch_size)^p: p = 0, 1, ½
# (vae_jax.validation.batch_scale, applied in vae_jax.run.programs).
LR_BATCH_SCALINGS = ("none", "linear", "sqrt")
# The training objective (vae_jax.step): the β-weighted ELBO (with free bits),
# or the importance-weighted bound of Burda et al. with num_samples draws.
OBJECTIVES = ("elbo", "iwae")
COMPUTE_DTYPES = ("float32", "bfloat16")  # the networks' (FlaxVAE._apply)

# The layout each registered model takes; `image_layout=''` means this one.
MODEL_LAYOUTS = {"mlp": "flat", "conv": "image", "hvae": "flat",
                 "conv_hvae": "image", "ladder": "flat"}
# p(z) of the top latent layer (vae_jax.math.priors, vae_jax.nets.registry).
PRIORS = ("standard_normal", "vamp", "mog")


def resolve_image_layout(model: str, image_layout: str) -> str:
  """The layout of a run: `image_layout`, or '' → the model's own.

  A model of your own (`package.module:factory`) takes flat examples unless
  `image_layout=image` says otherwise.
  """
  if image_layout:
    return image_layout
  return MODEL_LAYOUTS.get(model, "flat")
