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


def _parts(
  model, batch_size: int, num_samples: int, average: bool = False
) -> tuple[int, int]:
  """(bytes of the parameter copies, one more with the parameters'
  `average`; bytes of the decoder outputs)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0))  # allocates nothing
  num_params = sum(
    math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes)
  )
  outputs = batch_size * num_samples * math.prod(model.event_shape)
  return 4 * (_COPIES + average) * num_params, 4 * 2 * outputs


def training_bytes(
  model, batch_size: int, num_samples: int, average: bool = False
) -> int:
  """A lower estimate of a train step's memory: the parameter copies (one
  more with the parameters' `average`) plus one float32 decoder output per
  sample of the batch."""
  return sum(_parts(model, batch_size, num_samples, average))


def _physical_bytes() -> int:
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):  # not POSIX: no check
    return 0


def check_fits(model, config, members: int = 1) -> None:
  """ConfigError with the estimate when it exceeds this machine's memory
  (`members`: the runs of a sweep's group trained as one vmapped program).
  It names the settings of the larger part: the model's sizes, or the
  draws of z per batch (batch_size × num_samples)."""
  params, outputs = _parts(
    model, config.batch_size, config.num_samples, config.ema_decay > 0
  )
  need = members * (params + outputs)
  have = _physical_bytes()
  if not have or need <= have:
    return
  group = f"{members} vmapped members of " if members > 1 else ""
  if outputs >= params:
    what = (
      f"--config.num_samples={config.num_samples} draws of z for each "
      f"of --config.batch_size={config.batch_size} examples (a "
      f"decoder output of {math.prod(model.event_shape)} values each)"
    )
    fix = "choose a smaller num_samples or batch_size"
  else:
    what = (
      f"the model of --config.latent_dim={config.latent_dim} "
      f"--config.hidden_dims={','.join(map(str, config.hidden_dims))}"
    )
    fix = "choose smaller sizes"
  if members > 1:
    fix = f"train them one after another (--vectorize=off) or {fix}"
  raise ConfigError(
    f"{group}{what} need{'' if members > 1 or outputs >= params else 's'} "
    f"at least {need / 2**30:.1f} GiB to train (parameters, optimizer "
    f"state, gradients, decoder outputs), more than this machine's "
    f"{have / 2**30:.1f} GiB: {fix}"
  )
