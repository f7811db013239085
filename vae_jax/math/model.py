"""The model protocol: what a VAE gives the objectives, the run and the figures.

The text's inference model is in general a PGM over M latent layers,

    q(z|x; φ) = ∏ⱼ q(zⱼ | Pa(zⱼ), x; φ),      p(x, z; θ) = p(x|z; θ) p(z; θ),

and the one-layer VAE, q(z|x) = N(z; μ(x), diag σ²(x)) with p(z) = N(0, I),
is its simplest case. The protocol says nothing about the layers' structure:

    z          one example's latents, a dict of named layers: {"z": [D]} for
               one layer, {"z2": [D2], "z1": [D1]} for two; K draws of an
               example have leaves `[K, *layer_shape]`
    params     a dict: the networks' parameters, and a learned prior's under
               params["prior"]

Every method is pure and takes one example x `[*event_shape]`, so `jit`,
`vmap` (over examples) and `grad` compose with it:

    init(rng) → params
    sample_posterior(params, x, rng, num_samples, first=0) → (z, log_q)
        K reparameterised draws z_k ~ q(z|x) and log q(z_k|x) `[K]`. Draw k
        depends on fold_in(rng, first + k) alone (`layer_noise`), so a
        draw is the same whatever K or however the draws are chunked.
    log_joint(params, x, z) → (log p(x|z_k), log p(z_k)), each `[K]`, for
        any z with leaves `[K, *layer_shape]`, the caller's own draws too
    sample_prior(params, rng, num) → z with leaves `[num, ...]`
    decode_mean(params, z) → E[x|z] `[*event_shape]` of one z (leaves
        `[*layer_shape]`), for the figures: probabilities, never logits
    posterior_stats(params, x, rng) → {layer: (mean, logvar)}: each Gaussian
        layer's parameters `[D]`; a conditional layer's given one posterior
        draw of its parents (from `rng`)

and `latent_shapes`, {layer: shape}, the top (the prior's) layer first.

Optional, where a closed form exists:

    analytic_kl(params, x) → {layer: [D]} or None: KL(q(zⱼ|x) ‖ p(zⱼ)) per
        dimension, for Gaussian layers against a fixed Gaussian prior
    sample_posterior_with_kl(params, x, rng, num_samples) → (z, log_q, kl):
        `sample_posterior` and the per-dimension KL of each layer in closed
        form given its parents' draws (mean over the K draws), or kl = None.
        From one pass of the encoder: the ELBO calling `sample_posterior`
        and `analytic_kl` would run the encoder, and its backward pass,
        twice (XLA does not merge the two gradients).

A model holds no parameters: it is a frozen dataclass of plain values
(sizes, names), so equal settings give equal models that hash alike, a
model can be a static argument of `jax.jit`, and equal settings reuse one
compiled program.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Protocol, Tuple
from typing import runtime_checkable

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import threefry

__all__ = [
  "VAEModel",
  "Params",
  "Latents",
  "PROTOCOL_METHODS",
  "missing_methods",
  "layer_noise",
  "layer_sizes",
  "top_layer",
  "draw_indices",
  "check_draws",
]

Params = Any
Latents = Dict[str, chex.Array]  # layer name → [*layer_shape] (or [K, ...])

# What a model must have; `missing_methods` names what one lacks.
PROTOCOL_METHODS = (
  "init",
  "sample_posterior",
  "log_joint",
  "sample_prior",
  "decode_mean",
  "posterior_stats",
)


@runtime_checkable
class VAEModel(Protocol):
  """The functions of a VAE (a structural type: no base class needed)."""

  event_shape: Tuple[int, ...]  # the shape of one example x

  @property
  def latent_shapes(self) -> Mapping[str, Tuple[int, ...]]:
    """{layer: shape of one example's z_layer}, the top layer first."""

  def init(self, rng: chex.PRNGKey) -> Params:
    """Fresh parameters (a dict; a learned prior's under "prior")."""

  def sample_posterior(
    self,
    params: Params,
    x: chex.Array,
    rng: chex.PRNGKey,
    num_samples: int,
    first: chex.Numeric = 0,
  ) -> Tuple[Latents, chex.Array]:
    """K draws z_k ~ q(z|x) (leaves `[K, ...]`) and log q(z_k|x) `[K]`."""

  def log_joint(
    self, params: Params, x: chex.Array, z: Latents
  ) -> Tuple[chex.Array, chex.Array]:
    """(log p(x|z_k), log p(z_k)), each `[K]`, nats."""

  def sample_prior(
    self, params: Params, rng: chex.PRNGKey, num: int
  ) -> Latents:
    """`num` draws z ~ p(z), leaves `[num, ...]`."""

  def decode_mean(self, params: Params, z: Latents) -> chex.Array:
    """E[x|z] `[*event_shape]` of one z."""

  def posterior_stats(
    self, params: Params, x: chex.Array, rng: chex.PRNGKey
  ) -> Dict[str, Tuple[chex.Array, chex.Array]]:
    """{layer: (mean, logvar)} of each Gaussian layer of q(z|x)."""


def missing_methods(model: Any) -> list[str]:
  """The protocol's names that `model` lacks (attributes included)."""
  names = PROTOCOL_METHODS + ("event_shape", "latent_shapes")
  return [n for n in names if not hasattr(model, n)]


def layer_sizes(latent_shapes: Mapping[str, Tuple[int, ...]]) -> Dict[str, int]:
  """{layer: number of values}, in the layers' order."""
  return {name: math.prod(shape) for name, shape in latent_shapes.items()}


def top_layer(model: VAEModel) -> str:
  """The name of the top layer, the one the prior p(z) is on."""
  return next(iter(model.latent_shapes))


def layer_noise(
  rng: chex.PRNGKey,
  indices: chex.Array,
  latent_shapes: Mapping[str, Tuple[int, ...]],
) -> Latents:
  """ε_k ~ N(0, I) of every layer for the draws k in `indices` `[K]`.

  Draw k's noise is threefry.normal(fold_in(rng, k), (Σⱼ Dⱼ,)) cut into the
  layers in their order: one hash per draw whatever the number of layers,
  and for one layer exactly the noise of jax.random.normal(fold_in(rng, k),
  (D,)). Leaves `[K, *layer_shape]`.
  """
  sizes = layer_sizes(latent_shapes)
  total = sum(sizes.values())
  bits = jax.vmap(lambda k: threefry.bits(threefry.fold_in(rng, k), (total,)))(
    indices
  )
  eps = threefry.normal_from_bits(bits)  # [K, total]
  out, start = {}, 0
  for name, shape in latent_shapes.items():
    out[name] = eps[:, start : start + sizes[name]].reshape(-1, *shape)
    start += sizes[name]
  return out


def draw_indices(num_samples: int, first: chex.Numeric = 0) -> chex.Array:
  """The draw indices first, …, first + K − 1 (int32)."""
  return jnp.asarray(first, jnp.int32) + jnp.arange(
    num_samples, dtype=jnp.int32
  )


def check_draws(
  z: Latents,
  latent_shapes: Mapping[str, Tuple[int, ...]],
  num: Optional[int] = None,
) -> int:
  """Asserts z's leaves are `[K, *layer_shape]` for every layer; returns K."""
  chex.assert_equal(sorted(z), sorted(latent_shapes))
  k = next(iter(z.values())).shape[0] if num is None else num
  for name, shape in latent_shapes.items():
    chex.assert_shape(z[name], (k, *shape))
  return k
