"""The convolutional VAE: strided convolutions down, sub-pixel ones up.

Encoder on one image x `[H, W, C]` (every convolution has SAME padding):

    x → [Conv 4×4, stride 2, channels c_i, activation] for c_i in conv_channels
      → flatten → [Dense h, activation] for h in hidden_dims → (μ, logvar)

Decoder, mirrored:

    z → [Dense h, activation] for h in reversed(hidden_dims)
      → Dense (H/2^L)·(W/2^L)·c_L, activation → reshape [H/2^L, W/2^L, c_L]
      → [Up c_i, activation] for the other c_i, reversed
      → Up k·C (no activation),   Up c = depth_to_space(Conv 3×3, 4c)

L = len(conv_channels) halvings, so H and W must be multiples of 2^L: 28×28×1
(Fashion-MNIST, MNIST: 28 → 14 → 7 with the default two layers) and
32×32×C (CIFAR: 32 → 16 → 8). k is the likelihood's outputs per value (2
for a learned variance).

Why sub-pixel convolutions (Shi et al. 2016) and not transposed ones: each
doubles H and W by a stride-1 convolution at the low resolution with 4×
the channels, then a reshape (depth_to_space), which spans the same maps
as a stride-2 transposed convolution of kernel 6. On XLA:CPU the gradient of
a transposed convolution (an input-dilated convolution) is several times
slower than that of this plain one, and it dominated the step.

Why the convolutions are written as patches times a matrix (`PatchConv`):
inside the `lax.scan` of a chunk of train steps, XLA:CPU runs the gradient
of `lax.conv_general_dilated` many times slower than outside one. Gathering
the k×k shifted, strided slices of the padded input and multiplying by the
kernel reshaped to a matrix is the same convolution (same parameters, same
SAME padding, equal up to float rounding) built from slices and one dot,
whose gradients are pads and dots. The timings of both choices are in
benchmarks/results/conv_forms.json; benchmarks/conv.py measures the patch
form against nn.Conv on the machine at hand.

Like the MLP, the model is a frozen dataclass of plain values and accepts
leading batch axes (x `[..., H, W, C]`, z `[..., latent_dim]`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence, Tuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.names import ELEMENTWISE_ACTIVATIONS
from vae_jax.math.likelihoods import Likelihood
from vae_jax.nets.flax_vae import FlaxVAE
from vae_jax.nets.modules import gaussian_heads, hidden_layer

__all__ = [
  "PatchConv",
  "ConvEncoder",
  "ConvDecoder",
  "ConvVAE",
  "check_image_shape",
  "conv_features",
  "conv_layer",
  "depth_to_space",
  "upsample_to_image",
]

_KERNEL = 4  # the encoder's stride-2 convolutions, 4×4
_STRIDE = 2
_UP_KERNEL = 3  # the decoder's, at the low resolution, 3×3


class PatchConv(nn.Module):
  """A k×k convolution with SAME padding, as patches @ kernel (see above).

  x `[B, H, W, C]` → `[B, ⌈H/s⌉, ⌈W/s⌉, features]`; the parameters are
  nn.Conv's: kernel `[k, k, C, features]` and bias `[features]`.
  """

  features: int
  kernel_size: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: chex.Array) -> chex.Array:
    k, s = self.kernel_size, self.stride
    kernel = self.param(
      "kernel",
      nn.initializers.lecun_normal(),
      (k, k, x.shape[-1], self.features),
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    _, height, width, _ = x.shape
    out_h, out_w = -(-height // s), -(-width // s)
    pad_h = max((out_h - 1) * s + k - height, 0)  # lax's SAME padding
    pad_w = max((out_w - 1) * s + k - width, 0)
    x = jnp.pad(
      x,
      (
        (0, 0),
        (pad_h // 2, pad_h - pad_h // 2),
        (pad_w // 2, pad_w - pad_w // 2),
        (0, 0),
      ),
    )
    patches = jnp.concatenate(
      [
        x[
          :, i : i + (out_h - 1) * s + 1 : s, j : j + (out_w - 1) * s + 1 : s, :
        ]
        for i in range(k)
        for j in range(k)
      ],
      axis=-1,
    )  # [B, h, w, k·k·C]
    return patches @ kernel.reshape(-1, self.features) + bias


def depth_to_space(h: chex.Array) -> chex.Array:
  """`[B, H, W, 4C]` → `[B, 2H, 2W, C]`: channel (2i + j)·C + c → pixel (i, j)."""
  batch, height, width, channels = h.shape
  c = channels // 4
  h = h.reshape(batch, height, width, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return h.reshape(batch, 2 * height, 2 * width, c)


def conv_layer(
  h: chex.Array,
  features: int,
  kernel_size: int,
  stride: int,
  activation: str,
  name: str,
) -> chex.Array:
  """activation(PatchConv(features)(h)), named `name`; call in a compact
  `__call__`. `glu` is a gated convolution, one PatchConv of 2·features
  split into value and gate halves (as `hidden_layer`)."""
  if activation == "glu":
    return jax.nn.glu(
      PatchConv(2 * features, kernel_size, stride, name=name)(h), axis=-1
    )
  return getattr(jax.nn, activation)(
    PatchConv(features, kernel_size, stride, name=name)(h)
  )


def conv_features(
  x: chex.Array, conv_channels: Sequence[int], activation: str
) -> chex.Array:
  """x `[B, H, W, C]` → the flattened maps of the stride-2 convolutions
  "conv_i", `[B, (H/2^L)·(W/2^L)·c_L]`; call in a compact `__call__`."""
  h = x
  for i, channels in enumerate(conv_channels):
    h = conv_layer(h, channels, _KERNEL, _STRIDE, activation, f"conv_{i}")
  return h.reshape(h.shape[0], -1)


def upsample_to_image(
  h: chex.Array,
  image_shape: Sequence[int],
  conv_channels: Sequence[int],
  outputs_per_value: int,
  activation: str,
) -> chex.Array:
  """h `[B, F]` → `[B, H, W, k·C]`: the decoder's layers from "project" on
  (see above); call in a compact `__call__`."""
  height, width, channels = image_shape
  factor = 2 ** len(conv_channels)
  deepest = conv_channels[-1]
  h = hidden_layer(
    h, height // factor * (width // factor) * deepest, activation, "project"
  )
  h = h.reshape(-1, height // factor, width // factor, deepest)
  for i, features in enumerate(reversed(conv_channels[:-1])):
    # An elementwise activation commutes with the reshape of depth_to_space.
    h = depth_to_space(
      conv_layer(h, 4 * features, _UP_KERNEL, 1, activation, f"up_{i}")
    )
  return depth_to_space(
    PatchConv(4 * channels * outputs_per_value, _UP_KERNEL, name="output")(h)
  )


def check_image_shape(
  event_shape: Sequence[int], conv_channels: Sequence[int]
) -> str:
  """'' if the conv VAE takes examples of `event_shape`, else why not."""
  if len(event_shape) != 3:
    return (
      f"the conv VAE takes images [H, W, C], but the examples have "
      f"shape {tuple(event_shape)}"
    )
  factor = 2 ** len(conv_channels)
  height, width, _ = event_shape
  if height % factor or width % factor:
    return (
      f"{len(conv_channels)} stride-2 layers need H and W divisible by "
      f"{factor}, but the images are {height}×{width}"
    )
  return ""


class ConvEncoder(nn.Module):
  """x `[..., H, W, C]` → (μ, logvar) of q(z|x; φ), each `[..., latent_dim]`."""

  conv_channels: Sequence[int] = (32, 64)
  hidden_dims: Sequence[int] = (500,)
  latent_dim: int = 20
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: chex.Array) -> Tuple[chex.Array, chex.Array]:
    batch_shape = x.shape[:-3]
    h = conv_features(
      x.reshape(-1, *x.shape[-3:]), self.conv_channels, self.activation
    )
    for i, width in enumerate(self.hidden_dims):
      h = hidden_layer(h, width, self.activation, f"hidden_{i}")
    mean, logvar = gaussian_heads(h, self.latent_dim)
    return (
      mean.reshape(*batch_shape, self.latent_dim),
      logvar.reshape(*batch_shape, self.latent_dim),
    )


class ConvDecoder(nn.Module):
  """z `[..., latent_dim]` → the likelihood's parameters `[..., H, W, k·C]`."""

  image_shape: Tuple[int, int, int] = (28, 28, 1)  # (H, W, C) of x
  conv_channels: Sequence[int] = (32, 64)  # the encoder's order
  hidden_dims: Sequence[int] = (500,)  # the encoder's order
  outputs_per_value: int = 1
  activation: str = "relu"

  @nn.compact
  def __call__(self, z: chex.Array) -> chex.Array:
    batch_shape = z.shape[:-1]
    h = z.reshape(-1, z.shape[-1])
    for i, width in enumerate(reversed(self.hidden_dims)):
      h = hidden_layer(h, width, self.activation, f"hidden_{i}")
    out = upsample_to_image(
      h,
      self.image_shape,
      self.conv_channels,
      self.outputs_per_value,
      self.activation,
    )
    return out.reshape(*batch_shape, *out.shape[1:])


@dataclasses.dataclass(frozen=True)
class ConvVAE(FlaxVAE):
  """A conv encoder and decoder on image examples `[H, W, C]`."""

  event_shape: Tuple[int, ...] = (28, 28, 1)
  latent_dim: int = 20
  conv_channels: Tuple[int, ...] = (32, 64)
  hidden_dims: Tuple[int, ...] = (500,)
  activation: str = "relu"
  likelihood: Likelihood = Likelihood()
  # float32 | bfloat16: the dtype the networks compute in (FlaxVAE._apply);
  # parameters and optimizer state are float32 either way.
  compute_dtype: str = "float32"
  prior: Any = None  # a vae_jax.math.priors component; None: N(0, I)

  def __post_init__(self):
    if self.activation not in ELEMENTWISE_ACTIVATIONS:
      raise ValueError(
        f"activation {self.activation!r}: the conv layers "
        "take an elementwise one; glu is for the MLP"
      )
    problem = check_image_shape(self.event_shape, self.conv_channels)
    if problem:
      raise ValueError(problem)

  @property
  def _encoder(self) -> ConvEncoder:
    return ConvEncoder(
      self.conv_channels, self.hidden_dims, self.latent_dim, self.activation
    )

  @property
  def _decoder(self) -> ConvDecoder:
    height, width, channels = self.event_shape
    return ConvDecoder(
      (height, width, channels),
      self.conv_channels,
      self.hidden_dims,
      self.likelihood.outputs_per_value,
      self.activation,
    )

  @property
  def _encoder_input_shape(self) -> Tuple[int, ...]:
    return tuple(self.event_shape)
