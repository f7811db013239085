"""Run configurations as ml_collections ConfigDicts, one file per starting point.

    python -m experiments.train --config=vae_jax/configs/smoke.py --config.epochs=1

`default.py` defines every setting and its default (the one source of
truth); the others start from it and change a few fields. Each file's
docstring states its command and, in one `Result:` line, its result and the
record it comes from (benchmarks/results/NAME.json, which holds the time,
the machine and the date). `path(name)` gives a packaged config's file, for
installed wheels whose configs are not under the working directory.
"""

import os

__all__ = ["NAMES", "path"]

NAMES = (
  "default",
  "smoke",
  "paper",
  "fast",
  "vamp",
  "hvae",
  "hvae_vamp",
  "conv_hvae_vamp",
  "ladder",
)


def path(name: str) -> str:
  """The file of the packaged config `name` (one of NAMES)."""
  return os.path.join(os.path.dirname(__file__), f"{name}.py")
