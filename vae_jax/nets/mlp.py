"""The MLP VAE: encoder data_dim-hidden-2×latent, decoder mirrored.

The default (784-500-20, ReLU, Bernoulli) is the model of the Flax VAE
example, so numbers compare. The model is a frozen dataclass of its sizes and
names (`vae_jax.math.model.VAEModel`): equal settings give equal models.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Tuple

from vae_jax.math.likelihoods import DEFAULT_MIN_LOG_VARIANCE, Likelihood
from vae_jax.nets.flax_vae import FlaxVAE
from vae_jax.nets.modules import MLPDecoder, MLPEncoder

__all__ = ["MLPVAE", "make_mlp_vae"]


@dataclasses.dataclass(frozen=True)
class MLPVAE(FlaxVAE):
  """An MLP encoder and decoder on flat examples `[data_dim]`.

  Accepts leading batch axes too: x `[..., data_dim]`, z `[..., latent_dim]`.
  """

  event_shape: Tuple[int, ...] = (784,)
  latent_dim: int = 20
  hidden_dims: Tuple[int, ...] = (500,)
  activation: str = "relu"
  likelihood: Likelihood = Likelihood()
  # float32 | bfloat16: the dtype the networks compute in (FlaxVAE._apply);
  # parameters and optimizer state are float32 either way.
  compute_dtype: str = "float32"
  prior: Any = None  # a vae_jax.math.priors component; None: N(0, I)

  @property
  def _encoder(self) -> MLPEncoder:
    return MLPEncoder(self.hidden_dims, self.latent_dim, self.activation)

  @property
  def _decoder(self) -> MLPDecoder:
    return MLPDecoder(
      tuple(reversed(self.hidden_dims)),
      math.prod(self.event_shape) * self.likelihood.outputs_per_value,
      self.activation,
    )

  @property
  def _encoder_input_shape(self) -> Tuple[int, ...]:
    return (math.prod(self.event_shape),)


def make_mlp_vae(
  data_dim: int = 784,
  latent_dim: int = 20,
  hidden_dims=(500,),
  activation: str = "relu",
  likelihood: str = "bernoulli",
  gaussian_variance: float = 1.0,
  min_log_variance: float = DEFAULT_MIN_LOG_VARIANCE,
) -> MLPVAE:
  """An `MLPVAE` from plain values (a shortcut for scripts and notebooks)."""
  return MLPVAE(
    event_shape=(int(data_dim),),
    latent_dim=int(latent_dim),
    hidden_dims=tuple(int(h) for h in hidden_dims),
    activation=activation,
    likelihood=Likelihood(
      likelihood, float(gaussian_variance), float(min_log_variance)
    ),
  )
