"""The two-layer HVAE of Tomczak & Welling (VampPrior, 2018), MLP and conv.

    q(z|x; φ) = q(z2|x) q(z1|x, z2),   p(x, z; θ) = p(x|z1, z2) p(z1|z2) p(z2),

every conditional a diagonal Gaussian (the decoder's p(x|z1, z2) the
`likelihood`), p(z2) the prior component (N(0, I), the VampPrior
1/K Σ_k q(z2|u_k) over pseudo-inputs u_k, or a mixture), and both layers of
size `latent_dim`. With hidden widths H = (h_1, …, h_n) (`hidden_dims`,
gated layers with `activation=glu` as the reference code) and R = H
reversed:

    q(z2|x)       f(x) → H → (μ, logvar)
    q(z1|x, z2)   [f(x) → h_1, z2 → h_1] → h_2, …, h_n → (μ, logvar)
    p(z1|z2)      z2 → R → (μ, logvar)
    p(x|z1, z2)   [z1 → r_1, z2 → r_1] → r_2, …, r_n → the likelihood's
                  parameters

For n = 2 these are the reference code's networks. `HVAE` takes flat
examples `[P]` with f(x) = x; `ConvHVAE` takes images `[H, W, C]`, f(x) one
stack of stride-2 convolutions shared by both q layers, and ends p(x|z1,
z2) with the conv decoder's upsampling (`vae_jax.nets.conv`). Parameters:
{"encoder": {"x" (conv: f), "z2", "z1"}, "decoder": {"z1", "x"}}, and a
learned prior's under "prior". A frozen dataclass of plain values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.math.likelihoods import Likelihood
from vae_jax.nets import conv
from vae_jax.nets.flax_layers import DenseNet, FlaxGaussianLayers
from vae_jax.nets.flax_layers import GaussianNet, trunk

__all__ = ["HVAE", "ConvHVAE"]


@dataclasses.dataclass(frozen=True)
class HVAE(FlaxGaussianLayers):
  """The two-layer HVAE on flat examples `[P]` (layers "z2", "z1")."""

  event_shape: Tuple[int, ...] = (784,)
  latent_dim: int = 40  # D of z2 and of z1
  hidden_dims: Tuple[int, ...] = (300, 300)
  activation: str = "glu"
  likelihood: Likelihood = Likelihood()
  # float32 | bfloat16: the networks' dtype (FlaxVAE._apply's convention).
  compute_dtype: str = "float32"
  prior: Any = None  # a component on z2 (vae_jax.math.priors); None: N(0, I)

  @property
  def latent_shapes(self):
    return {"z2": (self.latent_dim,), "z1": (self.latent_dim,)}

  # --- The networks. -----------------------------------------------------

  @property
  def _features(self) -> Optional[nn.Module]:
    """f(x) `[..., F]` of x `[..., *event_shape]`; None: f(x) = x."""
    return None

  @property
  def _output_dim(self) -> int:
    return math.prod(self.event_shape) * self.likelihood.outputs_per_value

  @property
  def _decoder_output(self) -> nn.Module:
    """p(x|z1, z2): (z1, z2) `[K, D]` each → the likelihood's parameters."""
    widths = tuple(reversed(self.hidden_dims))
    return DenseNet(widths[1:], self.activation, widths[0], self._output_dim)

  def _networks(self):
    h, d, act = self.hidden_dims, self.latent_dim, self.activation
    return {
      "q_z2": GaussianNet(d, h, act),
      "q_z1": GaussianNet(d, h[1:], act, branch_width=h[0]),
      "p_z1": GaussianNet(d, tuple(reversed(h)), act),
      "p_x": self._decoder_output,
    }

  def init_networks(self, rng: chex.PRNGKey) -> Any:
    nets = self._networks()
    keys = jax.random.split(rng, 5)
    x: chex.Array = jnp.zeros((1, *self.event_shape))
    z = jnp.zeros((1, self.latent_dim))
    encoder = {}
    if self._features is not None:
      encoder["x"] = self._features.init(keys[4], x)["params"]
      x = self._features.apply({"params": encoder["x"]}, x)
    encoder["z2"] = nets["q_z2"].init(keys[0], x)["params"]
    encoder["z1"] = nets["q_z1"].init(keys[1], x, z)["params"]
    decoder = {
      "z1": nets["p_z1"].init(keys[2], z)["params"],
      "x": nets["p_x"].init(keys[3], z, z)["params"],
    }
    return {"encoder": encoder, "decoder": decoder}

  # --- The passes of GaussianLayers. --------------------------------------

  def _f(self, params, x):
    if self._features is None:
      return x
    return self._apply(self._features, params["encoder"]["x"], x)

  def encode_top(self, params, u):
    """q(z2|u) of a batch u `[M, *event_shape]`: (μ, logvar) `[M, D]`."""
    return self._apply(
      self._networks()["q_z2"], params["encoder"]["z2"], self._f(params, u)
    )

  def infer(self, params, x, pick):
    nets, encoder = self._networks(), params["encoder"]
    f = self._f(params, x)  # [F], once for the K draws
    q_z2 = self._apply(nets["q_z2"], encoder["z2"], f)  # [D] each
    z2 = pick("z2", *q_z2)  # [K, D]
    q_z1 = self._apply(nets["q_z1"], encoder["z1"], f, z2)  # [K, D] each
    pick("z1", *q_z1)
    return {"z2": q_z2, "z1": q_z1}

  def generate(self, params, z_top, pick):
    nets, decoder = self._networks(), params["decoder"]
    p_z1 = self._apply(nets["p_z1"], decoder["z1"], z_top)  # [K, D] each
    z1 = pick("z1", *p_z1)
    return {"z1": p_z1}, self._apply(nets["p_x"], decoder["x"], z1, z_top)


class _ConvFeatures(nn.Module):
  """x `[..., H, W, C]` → the conv stack's flattened maps `[..., F]`."""

  conv_channels: Sequence[int]
  activation: str

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    lead = x.shape[:-3]
    h = conv.conv_features(
      x.reshape(-1, *x.shape[-3:]), self.conv_channels, self.activation
    )
    return h.reshape(*lead, h.shape[-1])


class _ImageOutput(nn.Module):
  """(z1, z2) `[..., D]` → `trunk` → upsampled to `[..., H, W, k·C]`."""

  image_shape: Tuple[int, int, int]
  conv_channels: Sequence[int]
  widths: Sequence[int]
  outputs_per_value: int
  activation: str

  @nn.compact
  def __call__(self, z1: chex.Array, z2: chex.Array) -> chex.Array:
    h = trunk((z1, z2), self.widths[1:], self.activation, self.widths[0])
    lead = h.shape[:-1]
    out = conv.upsample_to_image(
      h.reshape(-1, h.shape[-1]),
      self.image_shape,
      self.conv_channels,
      self.outputs_per_value,
      self.activation,
    )
    return out.reshape(*lead, *out.shape[1:])


@dataclasses.dataclass(frozen=True)
class ConvHVAE(HVAE):
  """The two-layer HVAE on images `[H, W, C]`: conv features and decoder.

  With `activation=glu` the convolutions are gated too (`conv.conv_layer`).
  """

  event_shape: Tuple[int, ...] = (28, 28, 1)
  conv_channels: Tuple[int, ...] = (32, 64)

  def __post_init__(self):
    problem = conv.check_image_shape(self.event_shape, self.conv_channels)
    if problem:
      raise ValueError(problem)

  @property
  def _features(self) -> nn.Module:
    return _ConvFeatures(self.conv_channels, self.activation)

  @property
  def _decoder_output(self) -> nn.Module:
    height, width, channels = self.event_shape
    return _ImageOutput(
      (height, width, channels),
      self.conv_channels,
      tuple(reversed(self.hidden_dims)),
      self.likelihood.outputs_per_value,
      self.activation,
    )
