"""`--gap_decomposition`'s request: how many test images, with which
optimiser settings, checked before any compute (one `error:` line each).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from vae_jax import inference_gap
from vae_jax.errors import ConfigError

__all__ = ["GapRequest", "gap_images"]


class GapRequest(NamedTuple):
  """`--gap_decomposition` on the first `examples` test images: 0 means
  all those evaluated, None the first 1000 of them (or all, if fewer)."""

  examples: Optional[int] = None
  settings: inference_gap.GapSettings = inference_gap.GapSettings()


_DEFAULT_GAP_IMAGES = 1000


def gap_images(
  request: GapRequest, model, num_test: int, max_examples: Optional[int]
) -> int:
  """How many test images the decomposition takes; ConfigError if it can't."""
  try:
    inference_gap.check_model(model)
  except ValueError as e:
    raise ConfigError(
      f"--gap_decomposition: {e}; train a one-layer model "
      "(e.g. configs/paper.py) to split its gap"
    ) from None
  limit = num_test if max_examples is None else max_examples
  n = request.examples
  if n is None:
    n = min(_DEFAULT_GAP_IMAGES, limit)
  if n < 0 or n > num_test:
    raise ConfigError(
      f"--gap_examples={n} is invalid: the test split has "
      f"{num_test} images; pass 1 to {num_test}, or 0 for all"
    )
  if max_examples is not None and n > max_examples:
    raise ConfigError(
      f"--gap_examples={n} is larger than --max_examples="
      f"{max_examples}: pass at most {max_examples}"
    )
  if request.settings.max_steps < 1:
    raise ConfigError(
      f"--gap_max_steps={request.settings.max_steps} is "
      "invalid: it must be >= 1, e.g. 2000"
    )
  if request.settings.init not in inference_gap.INITS:
    raise ConfigError(
      f"--gap_init={request.settings.init} is invalid: "
      f"choose one of {', '.join(inference_gap.INITS)}"
    )
  return n or limit
