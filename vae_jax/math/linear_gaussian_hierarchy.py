"""A two-layer linear-Gaussian VAE: a hierarchy whose log p(x) is exact.

    p(z2) = N(0, I_{D2}),
    p(z1|z2; θ) = N(z1; A z2 + a, diag exp(ℓ_p)),
    p(x|z1; θ) = N(x; W z1 + b, σ² I_P),
    q(z2|x; φ) = N(z2; B x + c, diag exp(ℓ_2)),
    q(z1|x, z2; φ) = N(z1; C x + E z2 + e, diag exp(ℓ_1)),

σ² fixed. Every layer is linear-Gaussian, so the marginal is Gaussian,

    log p(x) = log N(x; W a + b, W (A Aᵀ + diag exp(ℓ_p)) Wᵀ + σ² I),

and q(z1, z2|x) is one joint Gaussian (q(z1|x, z2) is linear in z2): the
objectives' estimates of a hierarchy meet exact values (tests/
test_hierarchical.py). The protocol's methods are `GaussianLayers`'.
Params: {"encoder": {"z2": {"weight" B `[D2, P]`, "bias" c, "logvar" ℓ_2},
"z1": {"weight_x" C `[D1, P]`, "weight_z" E `[D1, D2]`, "bias" e, "logvar"
ℓ_1}}, "decoder": {"z1": {"weight" A `[D1, D2]`, "bias" a, "logvar" ℓ_p},
"x": {"weight" W `[P, D1]`, "bias" b}}}. jax only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import distributions
from vae_jax.math.gaussian_layers import GaussianLayers

__all__ = ["TwoLayerLinearGaussian"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class TwoLayerLinearGaussian(GaussianLayers):
  """Linear-Gaussian layers z2 → z1 → x, observation noise σ² = `variance`."""

  data_dim: int = 6  # P
  z1_dim: int = 3  # D1
  z2_dim: int = 2  # D2
  variance: float = 0.5  # σ², fixed
  prior: Any = None  # None: N(0, I)

  @property
  def event_shape(self) -> tuple[int]:
    return (self.data_dim,)

  @property
  def latent_shapes(self):
    return {"z2": (self.z2_dim,), "z1": (self.z1_dim,)}

  def init_networks(self, rng: chex.PRNGKey) -> Any:
    """Small random weights, zero biases and log-variances."""
    p, d1, d2 = self.data_dim, self.z1_dim, self.z2_dim
    keys = jax.random.split(rng, 5)
    normal = lambda key, shape: (
      jax.random.normal(key, shape) / math.sqrt(shape[1])
    )
    return {
      "encoder": {
        "z2": {
          "weight": normal(keys[0], (d2, p)),
          "bias": jnp.zeros(d2),
          "logvar": jnp.zeros(d2),
        },
        "z1": {
          "weight_x": normal(keys[1], (d1, p)),
          "weight_z": normal(keys[2], (d1, d2)),
          "bias": jnp.zeros(d1),
          "logvar": jnp.zeros(d1),
        },
      },
      "decoder": {
        "z1": {
          "weight": normal(keys[3], (d1, d2)),
          "bias": jnp.zeros(d1),
          "logvar": jnp.zeros(d1),
        },
        "x": {"weight": normal(keys[4], (p, d1)), "bias": jnp.zeros(p)},
      },
    }

  def encode_top(self, params, u):
    """(B u + c, ℓ_2) over a batch u `[M, P]`."""
    q2 = params["encoder"]["z2"]
    mean = u @ q2["weight"].T + q2["bias"]
    return mean, jnp.broadcast_to(q2["logvar"], mean.shape)

  def infer(self, params, x, pick):
    q2, q1 = params["encoder"]["z2"], params["encoder"]["z1"]
    mean2 = x @ q2["weight"].T + q2["bias"]  # [D2]
    z2 = pick("z2", mean2, q2["logvar"])  # [K, D2]
    mean1 = (x @ q1["weight_x"].T + q1["bias"]) + z2 @ q1["weight_z"].T
    pick("z1", mean1, q1["logvar"])
    return {"z2": (mean2, q2["logvar"]), "z1": (mean1, q1["logvar"])}

  def generate(self, params, z_top, pick):
    p1, px = params["decoder"]["z1"], params["decoder"]["x"]
    mean1 = z_top @ p1["weight"].T + p1["bias"]  # [K, D1]
    z1 = pick("z1", mean1, p1["logvar"])
    return {"z1": (mean1, p1["logvar"])}, z1 @ px["weight"].T + px["bias"]

  def log_likelihood(self, output, x):
    return distributions.gaussian_log_likelihood(output, x, self.variance)

  def mean_of_output(self, output):
    return output

  def log_px(self, params, x) -> chex.Array:
    """log p(x; θ) = log N(x; W a + b, W (A Aᵀ + S_p) Wᵀ + σ² I) of one x `[P]`,
    S_p = diag exp(ℓ_p), nats."""
    p1, px = params["decoder"]["z1"], params["decoder"]["x"]
    cov_z1 = p1["weight"] @ p1["weight"].T + jnp.diag(jnp.exp(p1["logvar"]))
    w = px["weight"]
    cov = w @ cov_z1 @ w.T + self.variance * jnp.eye(self.data_dim)
    r = x - (w @ p1["bias"] + px["bias"])
    _, logdet = jnp.linalg.slogdet(cov)
    return -0.5 * (
      self.data_dim * _LOG_2PI + logdet + r @ jnp.linalg.solve(cov, r)
    )
