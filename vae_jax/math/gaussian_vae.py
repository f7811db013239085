"""The one-layer VAE on the model protocol: one diagonal-Gaussian latent "z".

    q(z|x; φ) = N(z; μ(x), diag exp(logvar(x))),  (μ, logvar) = encode(params, x)
    p(x, z; θ) = p(x|z; θ) p(z),  p(x|z; θ) from decode(params, z),

with any prior component (`vae_jax.math.priors`; N(0, I) by default). A
subclass, a frozen dataclass, gives `latent_dim`, `init_networks(rng)` →
{"encoder", "decoder"}, `encode`, `decode`, `log_likelihood(output, x)` and
`mean_of_output(output)`, on one example; this class turns them into the
protocol's methods (`vae_jax.math.model`). A field `prior` (None: N(0, I))
chooses the prior; a prior's parameters go under params["prior"].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import distributions
from vae_jax.math import model as model_lib
from vae_jax.math import priors

__all__ = ["GaussianVAE", "LAYER"]

LAYER = "z"  # the one layer's name


class GaussianVAE:
  """The protocol's methods for a one-layer model (a mixin)."""

  latent_dim: int
  prior: Any = None  # a prior component; None: N(0, I)

  if TYPE_CHECKING:  # What the subclass gives (see the module docstring).

    @property
    def event_shape(self) -> Tuple[int, ...]: ...

    def init_networks(self, rng: chex.PRNGKey) -> Any: ...

    def encode(
      self, params: Any, x: chex.Array
    ) -> Tuple[chex.Array, chex.Array]: ...

    def decode(self, params: Any, z: chex.Array) -> Any: ...

    def log_likelihood(
      self, decoder_output: Any, x: chex.Array
    ) -> chex.Array: ...

    def mean_of_output(self, decoder_output: Any) -> chex.Array: ...

  @property
  def latent_shapes(self) -> Dict[str, Tuple[int, ...]]:
    return {LAYER: (self.latent_dim,)}

  @property
  def prior_component(self):
    """The prior p(z) (`vae_jax.math.priors`)."""
    if self.prior is None:
      return priors.StandardNormal(self.latent_dim)
    return self.prior

  def init(self, rng: chex.PRNGKey) -> Any:
    """The networks' parameters from `rng` and, for a learned prior, its
    own from fold_in(rng, 1) under "prior" (so the networks start as they
    would with N(0, I))."""
    return priors.with_prior_params(
      self.init_networks(rng), self.prior_component, rng
    )

  def _posterior(self, params, x) -> Tuple[chex.Array, chex.Array]:
    chex.assert_shape(x, tuple(self.event_shape))
    mean, logvar = self.encode(params, x)
    chex.assert_shape([mean, logvar], (self.latent_dim,))
    return mean, logvar

  def _draws(self, params, x, rng, num_samples, first):
    mean, logvar = self._posterior(params, x)
    eps = model_lib.layer_noise(
      rng, model_lib.draw_indices(num_samples, first), self.latent_shapes
    )[LAYER]
    z = mean + jnp.exp(0.5 * logvar) * eps  # [K, D]
    log_q = distributions.diagonal_gaussian_log_prob(z, mean, logvar)
    return mean, logvar, {LAYER: z}, log_q

  def sample_posterior(
    self, params, x, rng, num_samples: int, first: chex.Numeric = 0
  ):
    _, _, z, log_q = self._draws(params, x, rng, num_samples, first)
    return z, log_q

  def sample_posterior_with_kl(self, params, x, rng, num_samples: int):
    mean, logvar, z, log_q = self._draws(params, x, rng, num_samples, 0)
    return z, log_q, self._closed_form_kl(mean, logvar)

  def analytic_kl(self, params, x) -> Optional[Dict[str, chex.Array]]:
    """½ [μ_d² + σ_d² − 1 − log σ_d²] per dimension, for p(z) = N(0, I)."""
    return self._closed_form_kl(*self._posterior(params, x))

  def _closed_form_kl(self, mean, logvar):
    if not getattr(self.prior_component, "standard_normal", False):
      return None
    return {LAYER: 0.5 * (jnp.square(mean) + jnp.expm1(logvar) - logvar)}

  def _encode_batch(self, params):
    """encode(u) over a batch `[M, *event_shape]`, for a prior built on it."""
    return lambda u: jax.vmap(self.encode, in_axes=(None, 0))(params, u)

  def _prior_args(self, params) -> tuple:
    """The prior's parameters, and the encoder for a prior built on it."""
    prior = self.prior_component
    prior_params = params.get("prior") if isinstance(params, Mapping) else None
    if getattr(prior, "uses_encoder", False):
      return prior_params, self._encode_batch(params)
    return (prior_params,)

  def log_prior(self, params, z: chex.Array) -> chex.Array:
    """log p(z) of z `[..., latent_dim]` with the prior's parameters."""
    prior_params, *encode = self._prior_args(params)
    return self.prior_component.log_prob(prior_params, z, *encode)

  def log_joint(self, params, x, z):
    zs = z[LAYER]
    if zs.shape[0] == 1:
      # The same numbers without a K axis of size 1: vmapped over a batch, a
      # [B, 1, ...] decoder makes XLA transpose activations for the weight
      # gradients, which slows the default train step.
      log_likelihood = self.log_likelihood(self.decode(params, zs[0]), x)[None]
    else:
      outputs = jax.vmap(self.decode, in_axes=(None, 0))(params, zs)
      log_likelihood = jax.vmap(self.log_likelihood, in_axes=(0, None))(
        outputs, x
      )
    return log_likelihood, self.log_prior(params, zs)

  def sample_prior(self, params, rng, num: int):
    prior_params, *encode = self._prior_args(params)
    return {LAYER: self.prior_component.sample(prior_params, rng, num, *encode)}

  def decode_mean(self, params, z):
    return self.mean_of_output(self.decode(params, z[LAYER]))

  def posterior_stats(self, params, x, rng):
    del rng  # one layer: no parents to draw
    return {LAYER: self._posterior(params, x)}
