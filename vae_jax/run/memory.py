"""Refuses a model whose training state could not fit in memory, before JAX
allocates it (an oversized model otherwise hangs in initialisation or is
killed by the kernel, with no message)."""

from __future__ import annotations

import math
import os

import jax

from vae_jax.errors import ConfigError

__all__ = ["training_bytes", "check_fits"]

# Copies of the parameters alive during a step: the parameters, Adam's two
# moments, the gradients and the update.
_COPIES = 5


def training_bytes(model, batch_size: int, num_samples: int,
                   average: bool = False) -> int:
  """A lower estimate of a train step's memory: the parameter copies (one
  more with the parameters' `average`) plus one float32 decoder output per
  sample of the batch."""
  shapes = jax.eval_shape(model.init, jax.random.key(0))  # allocates nothing
  num_params = sum(math.prod(leaf.shape)
                   for leaf in jax.tree_util.tree_leaves(shapes))
  outputs = batch_size * num_samples * math.prod(model.event_shape)
  return 4 * ((_COPIES + average) * num_params + 2 * outputs)


def _physical_bytes() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):  # not POSIX: no check
    return 0


def check_fits(model, config, members: int = 1) -> None:
  """ConfigError with the estimate when it exceeds this machine's memory
  (`members`: the runs of a sweep's group trained as one vmapped program)."""
  need = members * training_bytes(model, config.batch_size,
                                  config.num_samples, config.ema_decay > 0)
  have = _physical_bytes()
  if have and need > have:
    what = f"{members} vmapped members of " if members > 1 else ""
    fix = ("train them one after another (--vectorize=off) or choose smaller "
           "sizes" if members > 1 else "choose smaller sizes")
    raise ConfigError(
        f"{what}the model of --config.latent_dim={config.latent_dim} "
        f"--config.hidden_dims={','.join(map(str, config.hidden_dims))} "
        f"need{'' if members > 1 else 's'} at least {need / 2**30:.1f} GiB to "
        "train (parameters, optimizer state, gradients), more than this "
        f"machine's {have / 2**30:.1f} GiB: {fix}")
