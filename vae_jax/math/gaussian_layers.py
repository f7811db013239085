"""The protocol's methods for a chain of conditional diagonal-Gaussian layers.

Layers z_L, …, z_1 (`latent_shapes`, the top first), with inference and
generative models that both run top-down:

    q(z|x; φ) = q(z_L|x) ∏_{l<L} q(z_l | z_{>l}, x),
    p(x, z; θ) = p(x|z) p(z_L) ∏_{l<L} p(z_l | z_{>l}),

every q(z_l|·) and every p(z_l|·) below the top a diagonal Gaussian whose
(mean, logvar) are networks of the layers above, and p(z_L) any prior
component (`vae_jax.math.priors`; N(0, I) by default, `prior`). A subclass,
a frozen dataclass, gives `latent_shapes`, `event_shape`, `prior` and, on
one example x `[*event_shape]` and K draws (z leaves `[K, *shape]`):

    init_networks(rng) → params (a dict; "prior" is added here)
    infer(params, x, pick) → {layer: (mean, logvar)} of q, top first
    generate(params, z_top, pick) → ({layer: (mean, logvar)} of
        p(z_l|z_{>l}) for l < L, the decoder's output `[K, ...]`)
    encode_top(params, u) → (mean, logvar) `[M, D_L]` of q(z_L|u_m) over a
        batch u `[M, *event_shape]` (the VampPrior's components)
    log_likelihood(output, x), mean_of_output(output): of one draw

A pass calls pick(layer, mean, logvar) → z_layer `[K, *shape]` for each
layer in turn and conditions the layers below on what it returns: the
reparameterised draw mean + exp(logvar / 2) ⊙ ε (`sample_posterior`,
`sample_prior`), or the caller's z (`log_joint`, `decode_mean`), so one
pass serves sampling and densities. Means and logvars are `[*shape]` or
`[K, *shape]` (they broadcast against the draws).

The ε of all layers come from one hash per draw (`model.layer_noise`), and

    log q(z|x) = Σ_l log N(z_l; μ_l, diag exp(ℓ_l)).

With p(z_L) = N(0, I), the KL of the ELBO is a sum of per-layer closed
forms, each given its parents' draws:

    KL(q ‖ p) = KL(q(z_L|x) ‖ N(0, I))
                + Σ_{l<L} E_q KL(q(z_l|z_{>l}, x) ‖ p(z_l|z_{>l})),

with, per dimension, KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) = ½ [expm1(r) − r +
(μ_q − μ_p)² e^{−ℓ_p}], r = ℓ_q − ℓ_p, and E_q the mean over the K draws.
Under `jit` a pass's unused outputs (the decoder's, when only the KL is
wanted) cost nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Tuple

import chex
import jax
import jax.numpy as jnp

from vae_jax.math import distributions
from vae_jax.math import model as model_lib
from vae_jax.math import priors

__all__ = ["GaussianLayers", "Pick", "kl_per_dimension"]

# pick(layer, mean, logvar) → the layer's z `[K, *shape]`
Pick = Callable[[str, chex.Array, chex.Array], chex.Array]
# {layer: (mean, logvar)} of Gaussian layers
Stats = Dict[str, Tuple[chex.Array, chex.Array]]


def kl_per_dimension(mean_q, logvar_q, mean_p=0.0, logvar_p=0.0):
  """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) of each dimension (no sum), broadcast."""
  log_ratio = logvar_q - logvar_p
  return 0.5 * (
    jnp.expm1(log_ratio)
    - log_ratio
    + jnp.square(mean_q - mean_p) * jnp.exp(-logvar_p)
  )


def _log_density(z, mean, logvar):
  """log N(z; mean, diag exp(logvar)) of draws z `[K, *shape]`, `[K]`."""
  k = z.shape[0]
  flat = lambda a: jnp.broadcast_to(a, z.shape).reshape(k, -1)
  return distributions.diagonal_gaussian_log_prob(
    flat(z), flat(mean), flat(logvar)
  )


def _given(z) -> Pick:
  return lambda name, mean, logvar: z[name]


class GaussianLayers:
  """The protocol's methods for conditional Gaussian layers (a mixin)."""

  prior: Any = None  # a prior component on the top layer; None: N(0, I)

  if TYPE_CHECKING:  # What the subclass gives (see the module docstring).

    @property
    def latent_shapes(self) -> Dict[str, Tuple[int, ...]]: ...

    @property
    def event_shape(self) -> Tuple[int, ...]: ...

    def init_networks(self, rng: chex.PRNGKey) -> Any: ...

    def infer(self, params: Any, x: chex.Array, pick: Pick) -> Stats: ...

    def generate(
      self, params: Any, z_top: chex.Array, pick: Pick
    ) -> Tuple[Stats, Any]: ...

    def encode_top(
      self, params: Any, u: chex.Array
    ) -> Tuple[chex.Array, chex.Array]: ...

    def log_likelihood(self, output: Any, x: chex.Array) -> chex.Array: ...

    def mean_of_output(self, output: Any) -> chex.Array: ...

  @property
  def _top(self) -> str:
    return next(iter(self.latent_shapes))

  @property
  def prior_component(self):
    """The prior p(z_L) of the top layer (`vae_jax.math.priors`)."""
    if self.prior is None:
      return priors.StandardNormal(math.prod(self.latent_shapes[self._top]))
    return self.prior

  def init(self, rng: chex.PRNGKey) -> Any:
    """The networks' parameters from `rng`; a learned prior's from
    fold_in(rng, 1), under "prior" (as `GaussianVAE.init`)."""
    return priors.with_prior_params(
      self.init_networks(rng), self.prior_component, rng
    )

  def _prior_args(self, params) -> tuple:
    """The prior's parameters, and q(z_L|u) for a prior built on it."""
    prior_params = params.get("prior") if isinstance(params, Mapping) else None
    if getattr(self.prior_component, "uses_encoder", False):
      return prior_params, lambda u: self.encode_top(params, u)
    return (prior_params,)

  def _draws(
    self, params, x, eps
  ) -> Tuple[Dict[str, chex.Array], Stats, chex.Array]:
    """(z, {layer: (mean, logvar)} of q, log q(z|x) `[K]`) from noise ε."""
    chex.assert_shape(x, tuple(self.event_shape))
    z = {}

    def pick(name, mean, logvar):
      z[name] = mean + jnp.exp(0.5 * logvar) * eps[name]
      return z[name]

    stats = self.infer(params, x, pick)
    chex.assert_equal(list(stats), list(self.latent_shapes))
    log_q = sum(_log_density(z[n], *stats[n]) for n in self.latent_shapes)
    return z, stats, log_q

  def _noise(self, rng, num_samples, first):
    return model_lib.layer_noise(
      rng, model_lib.draw_indices(num_samples, first), self.latent_shapes
    )

  def sample_posterior(
    self, params, x, rng, num_samples: int, first: chex.Numeric = 0
  ):
    z, _, log_q = self._draws(params, x, self._noise(rng, num_samples, first))
    return z, log_q

  def sample_posterior_with_kl(self, params, x, rng, num_samples: int):
    z, q_stats, log_q = self._draws(params, x, self._noise(rng, num_samples, 0))
    if not getattr(self.prior_component, "standard_normal", False):
      return z, log_q, None
    p_stats, _ = self.generate(params, z[self._top], _given(z))
    p_stats = dict(p_stats, **{self._top: (0.0, 0.0)})  # N(0, I)
    kl = {}
    for name, shape in self.latent_shapes.items():
      per_draw = kl_per_dimension(*q_stats[name], *p_stats[name])
      kl[name] = jnp.mean(
        jnp.broadcast_to(per_draw, (num_samples, *shape)), axis=0
      )
    return z, log_q, kl

  def log_joint(self, params, x, z):
    model_lib.check_draws(z, self.latent_shapes)
    prior_params, *encode = self._prior_args(params)
    top = self._top
    p_stats, output = self.generate(params, z[top], _given(z))
    log_likelihood = jax.vmap(self.log_likelihood, in_axes=(0, None))(output, x)
    # log p(z) = log p(z_L) + Σ_{l<L} log p(z_l|z_{>l})
    log_prior = self.prior_component.log_prob(
      prior_params, z[top], *encode
    ) + sum(_log_density(z[n], *p_stats[n]) for n in p_stats)
    return log_likelihood, log_prior

  def sample_prior(self, params, rng, num: int):
    """z_L ~ p(z_L), then each z_l ~ p(z_l|z_{>l}) in turn."""
    top_rng, noise_rng = jax.random.split(rng)
    prior_params, *encode = self._prior_args(params)
    top = self._top
    z = {top: self.prior_component.sample(prior_params, top_rng, num, *encode)}
    eps = self._noise(noise_rng, num, 0)

    def pick(name, mean, logvar):
      z[name] = mean + jnp.exp(0.5 * logvar) * eps[name]
      return z[name]

    self.generate(params, z[top], pick)
    return {name: z[name] for name in self.latent_shapes}

  def decode_mean(self, params, z):
    one = {name: v[None] for name, v in z.items()}
    _, output = self.generate(params, one[self._top], _given(one))
    return self.mean_of_output(output[0])

  def posterior_stats(
    self, params, x, rng
  ) -> Dict[str, Tuple[chex.Array, chex.Array]]:
    """Each layer's (mean, logvar) `[*shape]` given one draw of its parents
    (draw 0 of `rng`)."""
    _, stats, _ = self._draws(params, x, self._noise(rng, 1, 0))
    out = {}
    for name, shape in self.latent_shapes.items():
      mean, logvar = (jnp.broadcast_to(a, (1, *shape))[0] for a in stats[name])
      out[name] = (mean, logvar)
    return out
