"""The linear-Gaussian VAE: every term of the ELBO identity in closed form.

    p(z) = N(0, I_D),   p(x|z; θ) = N(x; W z + b, σ² I_P),   θ = (W, b)
    q(z|x; φ) = N(z; μ(x), diag exp(ℓ)),   μ(x) = x A + a,   φ = (A, a, ℓ)

σ² is fixed. For this model (probabilistic PCA) nothing needs sampling:

    log p(x; θ)    = log N(x; b, W Wᵀ + σ² I)
    p(z|x; θ)      = N(m, Λ⁻¹),  Λ = I + WᵀW / σ²,  m = Λ⁻¹ Wᵀ (x − b) / σ²
    E_q[log p(x|z)] = −P/2 log 2πσ² − [‖x − b − W μ‖² + Σ_d (WᵀW)_dd v_d] / 2σ²
    KL(q ‖ p(z|x)) = ½ [Σ_d Λ_dd v_d + (μ − m)ᵀ Λ (μ − m) − D − log det Λ − Σ_d log v_d]

with v = exp(ℓ), so log p(x) = ELBO(q) + KL(q(z|x) ‖ p(z|x)) can be checked
for any q, exactly. The true posterior is a diagonal Gaussian only when the
columns of W are orthogonal (WᵀW diagonal); otherwise the best diagonal q,
argmin_q KL(q ‖ p(z|x)), has mean m and variances 1/Λ_dd, and the gap left
is the price of the mean-field family. Both m and Λ are affine in x and
constant in x respectively, so the encoder family above always contains the
best q (`best_encoder`): no amortisation gap.

The model follows `vae_jax.math.model.VAEModel` (through `GaussianVAE`), so
the objectives, the train step and the evaluation take it like any other;
the closed forms are extra methods. Methods take one example x `[P]` (leading batch axes work too) and
params `{"encoder": {"weight", "bias", "logvar"}, "decoder": {"weight",
"bias"}}`. jax and numpy only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import distributions
from vae_jax.math.gaussian_vae import GaussianVAE
from vae_jax.math.objectives import ElboParts

__all__ = ["LinearGaussianVAE"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class LinearGaussianVAE(GaussianVAE):
  """A linear encoder and decoder with Gaussian noise σ² = `variance`."""

  data_dim: int = 6  # P
  latent_dim: int = 2  # D
  variance: float = 0.5  # σ², fixed

  @property
  def event_shape(self) -> tuple[int]:
    return (self.data_dim,)

  # --- What GaussianVAE makes the protocol of. ---------------------------

  def init_networks(self, rng: chex.PRNGKey) -> Any:
    """Small random W and A, b = a = 0, ℓ = 0 (q starts at unit variance)."""
    dec_rng, enc_rng = jax.random.split(rng)
    shape = (self.data_dim, self.latent_dim)
    scale = 1.0 / math.sqrt(self.data_dim)
    return {
      "encoder": {
        "weight": scale * jax.random.normal(enc_rng, shape),
        "bias": jnp.zeros(self.latent_dim),
        "logvar": jnp.zeros(self.latent_dim),
      },
      "decoder": {
        "weight": scale * jax.random.normal(dec_rng, shape),
        "bias": jnp.zeros(self.data_dim),
      },
    }

  def encode(self, params, x):
    """x `[..., P]` → (μ, ℓ) `[..., D]`: μ = x A + a, ℓ the same for every x."""
    enc = params["encoder"]
    mean = x @ enc["weight"] + enc["bias"]
    return mean, jnp.broadcast_to(enc["logvar"], mean.shape)

  def decode(self, params, z):
    """z `[..., D]` → the mean W z + b of p(x|z), `[..., P]`."""
    dec = params["decoder"]
    return z @ dec["weight"].T + dec["bias"]

  def log_likelihood(self, decoder_output, x):
    return distributions.gaussian_log_likelihood(
      decoder_output, x, self.variance
    )

  def mean_of_output(self, decoder_output):
    return decoder_output

  # --- Closed forms. --------------------------------------------------------

  def _precision(self, params) -> chex.Array:
    """Λ = I + WᵀW / σ², the posterior precision `[D, D]` (the same for all x)."""
    w = params["decoder"]["weight"]
    return jnp.eye(self.latent_dim) + w.T @ w / self.variance

  def posterior(self, params, x) -> tuple[chex.Array, chex.Array]:
    """p(z|x; θ) = N(m, Λ⁻¹): (m `[..., D]`, the covariance Λ⁻¹ `[D, D]`)."""
    dec = params["decoder"]
    cov = jnp.linalg.inv(self._precision(params))
    mean = ((x - dec["bias"]) @ dec["weight"]) @ cov / self.variance
    return mean, cov

  def log_px(self, params, x) -> chex.Array:
    """log p(x; θ) = log N(x; b, W Wᵀ + σ² I), `[...]`, nats.

    By the determinant lemma and Woodbury's identity, with r = x − b,
        log p(x) = −½ [P log 2πσ² + log det Λ + ‖r‖²/σ² − mᵀ Λ m],
    so only D × D matrices are factorised.
    """
    r = x - params["decoder"]["bias"]
    precision = self._precision(params)
    mean, _ = self.posterior(params, x)
    _, logdet = jnp.linalg.slogdet(precision)
    quad = jnp.sum(jnp.square(r), axis=-1) / self.variance - jnp.sum(
      (mean @ precision) * mean, axis=-1
    )
    return -0.5 * (
      self.data_dim * (_LOG_2PI + math.log(self.variance)) + logdet + quad
    )

  def closed_form_elbo(self, params, x, mean, logvar) -> ElboParts:
    """The ELBO of q = N(mean, diag exp(logvar)) with no sampling, `[...]` each.

    E_q[log p(x|z)] in closed form minus KL(q ‖ p(z)); `mean` and `logvar`
    are any q's (`[..., D]`), not necessarily the encoder's.
    """
    w, b = params["decoder"]["weight"], params["decoder"]["bias"]
    residual = x - b - mean @ w.T
    spread = jnp.sum(jnp.sum(jnp.square(w), axis=0) * jnp.exp(logvar), axis=-1)
    log_likelihood = -0.5 * (
      self.data_dim * (_LOG_2PI + math.log(self.variance))
      + (jnp.sum(jnp.square(residual), axis=-1) + spread) / self.variance
    )
    kl = distributions.kl_to_standard_normal(mean, logvar)
    return ElboParts(
      elbo=log_likelihood - kl, log_likelihood=log_likelihood, kl=kl
    )

  def kl_to_posterior(self, params, x, mean, logvar) -> chex.Array:
    """KL(q ‖ p(z|x; θ)) for q = N(mean, diag exp(logvar)), `[...]`, nats."""
    precision = self._precision(params)
    post_mean, _ = self.posterior(params, x)
    delta = mean - post_mean
    _, logdet = jnp.linalg.slogdet(precision)
    return 0.5 * (
      jnp.sum(jnp.diag(precision) * jnp.exp(logvar), axis=-1)
      + jnp.sum((delta @ precision) * delta, axis=-1)
      - self.latent_dim
      - logdet
      - jnp.sum(logvar, axis=-1)
    )

  def best_encoder(self, params) -> dict:
    """φ* with q(z|x; φ*) = argmin over diagonal q of KL(q ‖ p(z|x; θ)), all x.

    μ(x) = m(x) = (x − b) W Λ⁻¹ / σ², ℓ_d = −log Λ_dd; q = p(z|x) when WᵀW
    is diagonal. Returns encoder params for `params["encoder"]`.
    """
    w, b = params["decoder"]["weight"], params["decoder"]["bias"]
    precision = self._precision(params)
    weight = w @ jnp.linalg.inv(precision) / self.variance  # A, [P, D]
    return {
      "weight": weight,
      "bias": -b @ weight,
      "logvar": -jnp.log(jnp.diag(precision)),
    }

  def ground_truth(
    self, rng: chex.PRNGKey, scales: Optional[Sequence[float]] = None
  ) -> Any:
    """Params of a data-generating model with W = Q diag(s), QᵀQ = I.

    The columns of W are orthogonal, so p(z|x) is diagonal and the encoder
    (`best_encoder`) is the exact posterior. s defaults to D values from 2
    down to 0.5; b ~ N(0, I).
    """
    q_rng, b_rng = jax.random.split(rng)
    s = jnp.asarray(
      jnp.linspace(2.0, 0.5, self.latent_dim) if scales is None else scales,
      jnp.float32,
    )
    q, _ = jnp.linalg.qr(
      jax.random.normal(q_rng, (self.data_dim, self.latent_dim))
    )
    decoder = {
      "weight": q * s,
      "bias": jax.random.normal(b_rng, (self.data_dim,)),
    }
    return {
      "encoder": self.best_encoder({"decoder": decoder}),
      "decoder": decoder,
    }

  def sample(self, rng: chex.PRNGKey, params, num: int) -> chex.Array:
    """`[num, P]` draws x = W z + b + σ ε from p(x; θ), z, ε standard normal."""
    z_rng, noise_rng = jax.random.split(rng)
    z = jax.random.normal(z_rng, (num, self.latent_dim))
    noise = jax.random.normal(noise_rng, (num, self.data_dim))
    return self.decode(params, z) + math.sqrt(self.variance) * noise
