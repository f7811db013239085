"""A VAE as a bundle of pure functions: encode, decode and log p(x|z).

    q(z|x; φ) = N(z; μ, diag exp(logvar)),  (μ, logvar) = encode(params, x)
    p(x|z; θ) = likelihood(decode(params, z)),  p(z) = N(0, I)

`VAEModel` holds no parameters: params is a separate pytree
`{"encoder": ..., "decoder": ...}`, so every function of the model is a pure
function of (params, x, rng) that `jit`, `vmap` and `grad` compose with.
Any callables with these signatures make a model (the tests build a
linear-Gaussian one by hand).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence, Tuple

import chex
import jax
import jax.numpy as jnp

from vae_jax import distributions
from vae_jax import networks
from vae_jax.config import LIKELIHOODS

__all__ = [
    "LIKELIHOODS",
    "VAEModel",
    "make_mlp_vae",
    "decoder_mean",
]

Params = Any

# LIKELIHOODS: the observation models p(x|z; θ) that `make_mlp_vae` knows by
# name (defined in vae_jax.config, which checks flags without JAX).


class VAEModel(NamedTuple):
  """The functions of a VAE; hashable, so it can be a static jit argument.

  Attributes:
    encode: (params, x `[..., data_dim]`) → (μ, logvar), each `[..., latent_dim]`.
    decode: (params, z `[..., latent_dim]`) → decoder output `[..., data_dim]`.
    log_likelihood: (decoder output, x) → scalar log p(x|z) for one example.
    mean_of_output: decoder output → E[x|z] (probabilities for a Bernoulli),
      for figures.
    init: rng → params.
    latent_dim: D, the size of z.
  """

  encode: Callable[[Params, chex.Array], Tuple[chex.Array, chex.Array]]
  decode: Callable[[Params, chex.Array], chex.Array]
  log_likelihood: Callable[[chex.Array, chex.Array], chex.Array]
  mean_of_output: Callable[[chex.Array], chex.Array]
  init: Callable[[chex.PRNGKey], Params]
  latent_dim: int


def make_mlp_vae(
    data_dim: int,
    latent_dim: int = 20,
    hidden_dims: Sequence[int] = (500,),
    activation: str = "relu",
    likelihood: str = "bernoulli",
    gaussian_variance: float = 1.0,
) -> VAEModel:
  """The MLP VAE: encoder data_dim-hidden-2×latent, decoder mirrored.

  The default (784-500-20, ReLU, Bernoulli) is the model of the Flax VAE
  example, so numbers compare.
  """
  hidden_dims = tuple(int(h) for h in hidden_dims)
  encoder = networks.MLPEncoder(hidden_dims, latent_dim, activation)
  decoder = networks.MLPDecoder(tuple(reversed(hidden_dims)), data_dim, activation)
  if likelihood == "bernoulli":
    log_likelihood = distributions.bernoulli_log_likelihood
    mean_of_output = jax.nn.sigmoid
  elif likelihood == "gaussian":
    log_likelihood = functools.partial(
        distributions.gaussian_log_likelihood, variance=gaussian_variance)
    mean_of_output = _identity
  else:
    raise ValueError(
        f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")

  def init(rng: chex.PRNGKey) -> Params:
    enc_rng, dec_rng = jax.random.split(rng)
    return {
        "encoder": encoder.init(enc_rng, jnp.zeros((1, data_dim)))["params"],
        "decoder": decoder.init(dec_rng, jnp.zeros((1, latent_dim)))["params"],
    }

  return VAEModel(
      encode=functools.partial(_apply, encoder, "encoder"),
      decode=functools.partial(_apply, decoder, "decoder"),
      log_likelihood=log_likelihood,
      mean_of_output=mean_of_output,
      init=init,
      latent_dim=latent_dim,
  )


def decoder_mean(model: VAEModel, params: Params, z: chex.Array) -> chex.Array:
  """E[x|z] under p(x|z; θ): probabilities, not logits, for a Bernoulli."""
  return model.mean_of_output(model.decode(params, z))


def _apply(module, name, params, inputs):
  return module.apply({"params": params[name]}, inputs)


def _identity(x):
  return x
