"""The model protocol: what a VAE must provide to the objectives and the run.

    q(z|x; φ) = N(z; μ, diag exp(logvar)),  (μ, logvar) = encode(params, x)
    p(x, z; θ) = p(x|z; θ) p(z),  p(x|z; θ) from decode(params, z)

A model holds no parameters: `params` is a separate pytree, so each method is
a pure function of (params, inputs) that `jit`, `vmap` and `grad` compose
with. Models are frozen dataclasses of plain values (sizes, names), so two
models built from equal settings are equal and hash alike: a model can be a
static argument of `jax.jit`, and equal settings reuse the compiled program.

Shapes: one example `x` has the model's `event_shape` (`[D]` for an MLP,
`[H, W, C]` for a conv net); `z` is `[latent_dim]`. The objectives call the
methods on one example and `vmap` over samples and batches; a model may also
accept leading batch axes (the MLP does), which the figures use.
"""

from __future__ import annotations

from typing import Any, Protocol, Tuple, runtime_checkable

import chex
import jax

from vae_jax.math import distributions

__all__ = ["VAEModel", "StandardNormalPrior", "Params"]

Params = Any


@runtime_checkable
class VAEModel(Protocol):
  """The functions of a VAE (a structural type: no base class needed)."""

  event_shape: Tuple[int, ...]  # the shape of one example x
  latent_dim: int  # the size of z

  def init(self, rng: chex.PRNGKey) -> Params:
    """Fresh parameters `{"encoder": ..., "decoder": ...}`."""

  def encode(self, params: Params, x: chex.Array) -> Tuple[chex.Array, chex.Array]:
    """x `[*event_shape]` → (μ, logvar) of q(z|x; φ), each `[latent_dim]`."""

  def decode(self, params: Params, z: chex.Array) -> chex.Array:
    """z `[latent_dim]` → the likelihood's parameters (logits for a Bernoulli)."""

  def log_likelihood(self, decoder_output: chex.Array, x: chex.Array) -> chex.Array:
    """log p(x|z; θ) of one example, a scalar (nats, summed over pixels)."""

  def mean_of_output(self, decoder_output: chex.Array) -> chex.Array:
    """E[x|z] (probabilities for a Bernoulli, never logits), for figures."""

  def log_prior(self, z: chex.Array) -> chex.Array:
    """log p(z) of z `[..., latent_dim]`, over the last axis."""

  def sample_prior(self, rng: chex.PRNGKey, num: int) -> chex.Array:
    """`[num, latent_dim]` draws z ~ p(z)."""


class StandardNormalPrior:
  """Mixin of the prior p(z) = N(0, I) for a model with `latent_dim`.

  The analytic KL of the ELBO is taken against this prior; a model with
  another prior overrides both methods and trains with `analytic_kl=False`.
  """

  latent_dim: int
  standard_normal_prior = True  # the analytic KL applies

  def log_prior(self, z: chex.Array) -> chex.Array:
    return distributions.standard_normal_log_prob(z)

  def sample_prior(self, rng: chex.PRNGKey, num: int) -> chex.Array:
    return jax.random.normal(rng, (num, self.latent_dim))
