"""The member axis of a vmapped group: members' pytrees stacked and split.

Stacked on the host (one transfer per tree, no program per leaf); typed
PRNG keys travel as their raw key data and are wrapped back.
"""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.step import TrainState

__all__ = ["stack", "stack_states", "unstack_states", "active_mask"]


def stack(trees):
  """Stacked on a new leading axis, on the host (one transfer, no program
  per leaf)."""
  return jax.tree_util.tree_map(
    lambda *xs: np.stack([np.asarray(jax.device_get(x)) for x in xs]), *trees
  )


def stack_states(states: list[TrainState]) -> TrainState:
  impl = jax.random.key_impl(states[0].rng)
  stacked = stack([s.replace(rng=jax.random.key_data(s.rng)) for s in states])
  return stacked.replace(rng=jax.random.wrap_key_data(stacked.rng, impl=impl))


def unstack_states(states: TrainState, count: int) -> list[TrainState]:
  """The first `count` members' states, on the host (whatever the
  sharding), fetched in one transfer."""
  impl = jax.random.key_impl(states.rng)
  host = jax.device_get(states.replace(rng=jax.random.key_data(states.rng)))
  return [
    jax.tree_util.tree_map(operator.itemgetter(i), host).replace(
      rng=jax.random.wrap_key_data(host.rng[i], impl=impl)
    )
    for i in range(count)
  ]


def active_mask(flags: list[bool], members) -> jax.Array:
  """Which members train, `[members]` bool, sharded as the states are."""
  active = jnp.asarray(flags)
  return active if members is None else jax.device_put(active, members)
