"""The flax pieces of the hierarchical models (`hierarchical`, `ladder`).

A layer of a hierarchy is a network of several inputs whose leading axes
differ: features of x `[F]`, computed once per example, and the K draws
of a layer above `[K, D]`. `joined_layer` is a Dense layer on their
concatenation that multiplies each input by its own rows of the kernel,

    W [h_1; …; h_n] + b = Σ_i W_i h_i + b,

so an input shared by the K draws is multiplied once, not K times; its
parameters are nn.Dense's on the concatenation. `GaussianNet` and
`DenseNet` are MLPs built of such layers, with Gaussian heads or a Dense
output. `FlaxGaussianLayers` adds to `GaussianLayers` what the models share:
mixed precision (as `FlaxVAE._apply`) and the likelihood's methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.math.gaussian_layers import GaussianLayers
from vae_jax.math.likelihoods import Likelihood
from vae_jax.nets.modules import DenseParams, gaussian_heads, hidden_layer

__all__ = [
  "joined_layer",
  "trunk",
  "GaussianNet",
  "DenseNet",
  "FlaxGaussianLayers",
]


def joined_layer(
  inputs: Sequence[chex.Array], width: int, activation: str, name: str
) -> chex.Array:
  """activation(Σ_i W_i h_i + b) `[*lead, width]`, the inputs' leading axes
  broadcast; `glu` as `hidden_layer`. Call in a compact `__call__`."""
  features = 2 * width if activation == "glu" else width
  kernel, out = DenseParams(features, name=name)(
    sum(h.shape[-1] for h in inputs)
  )
  start = 0
  for h in inputs:
    out = out + h @ kernel[start : start + h.shape[-1]]
    start += h.shape[-1]
  if activation == "glu":
    return jax.nn.glu(out, axis=-1)
  return getattr(jax.nn, activation)(out)


def trunk(
  inputs: Sequence[chex.Array],
  widths: Sequence[int],
  activation: str,
  branch_width: int = 0,
) -> chex.Array:
  """The inputs, each through a hidden layer "branch_i" of `branch_width`
  (0: none), then hidden layers "hidden_j" of `widths` on their
  concatenation (`joined_layer`); `[*lead, ·]`. Call in a compact
  `__call__`."""
  hs = list(inputs)
  if branch_width:
    hs = [
      hidden_layer(h, branch_width, activation, f"branch_{i}")
      for i, h in enumerate(hs)
    ]
  for j, width in enumerate(widths):
    hs = [joined_layer(hs, width, activation, f"hidden_{j}")]
  if len(hs) == 1:
    return hs[0]
  lead = jnp.broadcast_shapes(*(h.shape[:-1] for h in hs))
  return jnp.concatenate(
    [jnp.broadcast_to(h, (*lead, h.shape[-1])) for h in hs], axis=-1
  )


class GaussianNet(nn.Module):
  """(h_1, …, h_n) → (μ, logvar) `[*lead, latent_dim]`: `trunk`, heads."""

  latent_dim: int
  widths: Sequence[int] = ()
  activation: str = "relu"
  branch_width: int = 0

  @nn.compact
  def __call__(self, *inputs: chex.Array):
    h = trunk(inputs, self.widths, self.activation, self.branch_width)
    return gaussian_heads(h, self.latent_dim)


class DenseNet(nn.Module):
  """(h_1, …, h_n) → `trunk`, then a Dense "output" (output_dim > 0)."""

  widths: Sequence[int] = ()
  activation: str = "relu"
  branch_width: int = 0
  output_dim: int = 0

  @nn.compact
  def __call__(self, *inputs: chex.Array) -> chex.Array:
    h = trunk(inputs, self.widths, self.activation, self.branch_width)
    if self.output_dim:
      h = nn.Dense(self.output_dim, name="output")(h)
    return h


class FlaxGaussianLayers(GaussianLayers):
  """`GaussianLayers` with flax networks: `_apply` of a module, the
  `likelihood`'s log density and mean."""

  if TYPE_CHECKING:
    likelihood: Likelihood  # the subclass's field

  def _apply(self, module: nn.Module, params: Any, *inputs: chex.Array):
    """module.apply in `compute_dtype`, outputs in float32 (as
    `FlaxVAE._apply`: parameters stay float32, cast on the way in)."""
    dtype = jnp.dtype(getattr(self, "compute_dtype", "float32"))
    if dtype == jnp.float32:
      return module.apply({"params": params}, *inputs)
    cast = lambda tree, to: jax.tree_util.tree_map(lambda a: a.astype(to), tree)
    out = module.apply({"params": cast(params, dtype)}, *cast(inputs, dtype))
    return cast(out, jnp.float32)

  def log_likelihood(self, output, x):
    return self.likelihood.log_prob(output, x)

  def mean_of_output(self, output):
    return self.likelihood.mean(output)
