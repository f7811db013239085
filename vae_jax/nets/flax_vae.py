"""The model protocol's methods for a VAE made of two flax.linen modules.

A subclass (a frozen dataclass) gives `_encoder` and `_decoder` (modules),
`_encoder_input_shape` (one example as the encoder takes it), `latent_dim`,
a `likelihood` (`vae_jax.math.likelihoods.Likelihood`) and a `prior` (a
component of `vae_jax.math.priors`, None for N(0, I)); `GaussianVAE` makes
the protocol's methods of them. Parameters are `{"encoder": ..., "decoder":
...}`, and a learned prior's under "prior".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.math.gaussian_vae import GaussianVAE
from vae_jax.math.likelihoods import Likelihood

__all__ = ["FlaxVAE"]


class FlaxVAE(GaussianVAE):
  """init_networks/encode/decode/log_likelihood/mean_of_output via flax."""

  if TYPE_CHECKING:  # What the subclass gives (see the module docstring).
    likelihood: Likelihood

    @property
    def _encoder(self) -> nn.Module: ...

    @property
    def _decoder(self) -> nn.Module: ...

    @property
    def _encoder_input_shape(self) -> Tuple[int, ...]: ...

  def init_networks(self, rng: chex.PRNGKey) -> Any:
    enc_rng, dec_rng = jax.random.split(rng)
    return {
      "encoder": self._encoder.init(
        enc_rng, jnp.zeros((1, *self._encoder_input_shape))
      )["params"],
      "decoder": self._decoder.init(dec_rng, jnp.zeros((1, self.latent_dim)))[
        "params"
      ],
    }

  def encode(self, params, x):
    return self._apply(self._encoder, params["encoder"], x)

  def decode(self, params, z):
    return self._apply(self._decoder, params["decoder"], z)

  def _apply(self, module, params, inputs):
    """module.apply in the model's `compute_dtype`, outputs in float32.

    Mixed precision: the parameters (and so the optimizer state) stay
    float32; with compute_dtype bfloat16 they and the inputs are cast on
    the way in, the networks' matmuls run in bfloat16, and the outputs are
    cast back, so densities, KL and losses are computed in float32. The
    gradients flow back through the casts to the float32 parameters.
    """
    dtype = jnp.dtype(getattr(self, "compute_dtype", "float32"))
    if dtype == jnp.float32:
      return module.apply({"params": params}, inputs)
    cast = lambda tree, to: jax.tree_util.tree_map(lambda a: a.astype(to), tree)
    out = module.apply({"params": cast(params, dtype)}, inputs.astype(dtype))
    return cast(out, jnp.float32)

  def log_likelihood(self, decoder_output, x):
    return self.likelihood.log_prob(decoder_output, x)

  def mean_of_output(self, decoder_output):
    return self.likelihood.mean(decoder_output)
