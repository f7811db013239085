"""How the latent space is used: KL per dimension, active units, q(z) vs p(z).

Inputs are the encoder's outputs over a dataset, μ(x_n) and log σ²(x_n),
`[N, D]`; every result is a pure function of them.

    kl_per_dim[d]     1/N Σ_n KL(q(z_d|x_n) ‖ N(0, 1)), nats (or against the
                      layer's own prior, given); they sum to the dataset's
                      mean KL term of the ELBO
    active_units      #{d : Var_n(μ_d(x_n)) > 0.01} (Burda et al. 2015): a
                      dimension whose posterior mean does not move with x
                      carries no information about x
    aggregate_kl      KL(N(m, S) ‖ N(0, I)) for the Gaussian moment-matched to
                      the aggregate posterior q(z) = 1/N Σ_n q(z|x_n):
                      m = mean_n μ_n, S = Cov_n(μ_n) + mean_n diag σ²_n.
                      0 when q(z) has the prior's first two moments. (The
                      moments of the means alone would make a collapsed
                      dimension, whose μ is constant, an infinite KL; with
                      its σ² ≈ 1 it matches the prior, as it should.)
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import chex
import jax.numpy as jnp

__all__ = [
  "LatentDiagnostics",
  "latent_diagnostics",
  "ACTIVE_THRESHOLD",
  "collapsed",
]

ACTIVE_THRESHOLD = 0.01  # Var_x(E_q[z_d | x]) above this: an active unit


class LatentDiagnostics(NamedTuple):
  kl_per_dim: chex.Array  # [D], nats
  mean_variance: chex.Array  # [D], Var_n(μ_d(x_n))
  active_units: chex.Array  # int32 scalar
  aggregate_kl: chex.Array  # scalar, nats


def latent_diagnostics(
  means: chex.Array, logvars: chex.Array, kl: Optional[chex.Array] = None
) -> LatentDiagnostics:
  """Diagnostics of posteriors q(z|x_n) = N(means[n], diag exp(logvars[n])).

  `kl` `[N, D]`: each example's KL per dimension to its prior, for a layer
  whose prior is not N(0, I) (default: the closed form against N(0, I)).
  """
  chex.assert_rank(means, 2)
  chex.assert_equal_shape([means, logvars])
  if kl is None:
    kl = 0.5 * (jnp.square(means) + jnp.expm1(logvars) - logvars)
  chex.assert_equal_shape([means, kl])
  mean_variance = jnp.var(means, axis=0)
  centred = means - jnp.mean(means, axis=0)
  cov = centred.T @ centred / means.shape[0] + jnp.diag(
    jnp.mean(jnp.exp(logvars), axis=0)
  )
  m = jnp.mean(means, axis=0)
  _, logdet = jnp.linalg.slogdet(cov)
  aggregate_kl = 0.5 * (jnp.trace(cov) + m @ m - means.shape[1] - logdet)
  return LatentDiagnostics(
    kl_per_dim=jnp.mean(kl, axis=0),
    mean_variance=mean_variance,
    active_units=jnp.sum(mean_variance > ACTIVE_THRESHOLD).astype(jnp.int32),
    aggregate_kl=aggregate_kl,
  )


def collapsed(active_units: int, latent_dim: int) -> bool:
  """Posterior collapse: fewer than a quarter of the dimensions are active."""
  return 4 * int(active_units) < int(latent_dim)
