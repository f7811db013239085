"""A ladder of L ≥ 2 Gaussian layers: a bottom-up pass, then a top-down one.

The shape of the LVAE (Sønderby et al. 2016), NVAE and VDVAE: q and p share
the top-down state. Layers z_1 (bottom), …, z_L of sizes `latent_dims`
(bottom first); W = hidden_dims[-1].

    bottom-up    h_0 = x,  h_1 = f_1(x) (hidden_dims),  h_l = f_l(h_{l−1})
                 (one hidden layer of W), l = 2, …, L
    top          q(z_L|x) = N(head(h_L)),  p(z_L) the prior component
    top-down     d_{L−1} = g_{L−1}(z_L),  d_l = g_l([z_{l+1}, d_{l+1}]),
                 one hidden layer of W each, l < L − 1
                 p(z_l|z_{>l}) = N(head_p(d_l)),
                 q(z_l|z_{>l}, x) = N(head_q([d_l, h_l])), a hidden layer of
                 W, then heads
    decoder      p(x|z) from g_0([z_1, d_1]): hidden_dims reversed, then the
                 likelihood's parameters

so the posterior of each layer below the top sees x through h_l and the
layers above through the state d_l that its prior is made of. Parameters:
{"encoder": {"up_l", "z_L", "z_l" (head_q)}, "decoder": {"down_l", "z_l"
(head_p), "x"}}, and a learned prior's under "prior". The VampPrior's
pseudo-inputs go through q(z_L|x). A frozen dataclass of plain values.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Tuple

import chex
import jax
import jax.numpy as jnp

from vae_jax.math.likelihoods import Likelihood
from vae_jax.nets.flax_layers import DenseNet, FlaxGaussianLayers
from vae_jax.nets.flax_layers import GaussianNet

__all__ = ["LadderVAE"]


@dataclasses.dataclass(frozen=True)
class LadderVAE(FlaxGaussianLayers):
  """L ≥ 2 layers "z1" (bottom) … "zL" on flat examples `[P]`."""

  event_shape: Tuple[int, ...] = (784,)
  latent_dims: Tuple[int, ...] = (40, 20, 10)  # z_1 (bottom), …, z_L
  hidden_dims: Tuple[int, ...] = (300, 300)
  activation: str = "glu"
  likelihood: Likelihood = Likelihood()
  # float32 | bfloat16: the networks' dtype (FlaxVAE._apply's convention).
  compute_dtype: str = "float32"
  prior: Any = None  # a component on z_L (vae_jax.math.priors); None: N(0, I)

  def __post_init__(self):
    if len(self.latent_dims) < 2:
      raise ValueError(
        f"a ladder has two or more layers, but latent_dims is "
        f"{self.latent_dims}"
      )

  @property
  def _num_layers(self) -> int:
    return len(self.latent_dims)

  @property
  def latent_shapes(self):
    return {
      f"z{l}": (self.latent_dims[l - 1],)
      for l in range(self._num_layers, 0, -1)
    }

  def _networks(self):
    """The networks by name; l = 1, …, L as above."""
    width, act = self.hidden_dims[-1], self.activation
    nets = {
      "up_1": DenseNet(self.hidden_dims, act),
      f"q_z{self._num_layers}": GaussianNet(self.latent_dims[-1]),
      "p_x": DenseNet(
        tuple(reversed(self.hidden_dims)),
        act,
        output_dim=math.prod(self.event_shape)
        * self.likelihood.outputs_per_value,
      ),
    }
    for l in range(2, self._num_layers + 1):
      nets[f"up_{l}"] = DenseNet((width,), act)
    for l in range(1, self._num_layers):
      size = self.latent_dims[l - 1]
      nets[f"down_{l}"] = DenseNet((width,), act)
      nets[f"p_z{l}"] = GaussianNet(size)
      nets[f"q_z{l}"] = GaussianNet(size, (width,), act)
    return nets

  def init_networks(self, rng: chex.PRNGKey) -> Any:
    nets, top = self._networks(), self._num_layers
    keys = dict(zip(nets, jax.random.split(rng, len(nets))))
    h = jnp.zeros((1, self.hidden_dims[-1]))  # h_l and d_l
    z = lambda l: jnp.zeros((1, self.latent_dims[l - 1]))
    init = lambda name, *inputs: nets[name].init(keys[name], *inputs)["params"]
    encoder = {
      "up_1": init("up_1", jnp.zeros((1, *self.event_shape))),
      f"z{top}": init(f"q_z{top}", h),
    }
    decoder = {"x": init("p_x", z(1), h)}
    for l in range(2, top + 1):
      encoder[f"up_{l}"] = init(f"up_{l}", h)
    for l in range(1, top):
      above = (z(l + 1),) if l == top - 1 else (z(l + 1), h)
      decoder[f"down_{l}"] = init(f"down_{l}", *above)
      decoder[f"z{l}"] = init(f"p_z{l}", h)
      encoder[f"z{l}"] = init(f"q_z{l}", h, h)
    return {"encoder": encoder, "decoder": decoder}

  # --- The passes of GaussianLayers. --------------------------------------

  def _bottom_up(self, params, x):
    """[h_1, …, h_L], each `[..., W]`."""
    nets, encoder = self._networks(), params["encoder"]
    hs = [x]
    for l in range(1, self._num_layers + 1):
      hs.append(self._apply(nets[f"up_{l}"], encoder[f"up_{l}"], hs[-1]))
    return hs[1:]

  def _down(self, params, l, z_above, d_above):
    """d_l = g_l([z_{l+1}, d_{l+1}]) (g_{L−1}(z_L) at the top)."""
    inputs = (z_above,) if d_above is None else (z_above, d_above)
    return self._apply(
      self._networks()[f"down_{l}"], params["decoder"][f"down_{l}"], *inputs
    )

  def encode_top(self, params, u):
    """q(z_L|u) of a batch u `[M, P]`: (μ, logvar) `[M, D_L]`."""
    top = self._num_layers
    return self._apply(
      self._networks()[f"q_z{top}"],
      params["encoder"][f"z{top}"],
      self._bottom_up(params, u)[-1],
    )

  def infer(self, params, x, pick):
    nets, encoder, top = self._networks(), params["encoder"], self._num_layers
    hs = self._bottom_up(params, x)  # [W] each, once for the K draws
    stats = {
      f"z{top}": self._apply(nets[f"q_z{top}"], encoder[f"z{top}"], hs[-1])
    }
    z, d = pick(f"z{top}", *stats[f"z{top}"]), None
    for l in range(top - 1, 0, -1):
      d = self._down(params, l, z, d)  # [K, W]
      stats[f"z{l}"] = self._apply(
        nets[f"q_z{l}"], encoder[f"z{l}"], d, hs[l - 1]
      )
      z = pick(f"z{l}", *stats[f"z{l}"])
    return stats

  def generate(self, params, z_top, pick):
    nets, decoder = self._networks(), params["decoder"]
    stats, z, d = {}, z_top, None
    for l in range(self._num_layers - 1, 0, -1):
      d = self._down(params, l, z, d)
      stats[f"z{l}"] = self._apply(nets[f"p_z{l}"], decoder[f"z{l}"], d)
      z = pick(f"z{l}", *stats[f"z{l}"])
    return stats, self._apply(nets["p_x"], decoder["x"], z, d)
