r"""The paired difference of two evaluations on the same test images.

    .venv/bin/python scripts/paired_difference.py results/vamp.csv results/paper.csv

Each file is an `eval_per_image.csv` that experiments/evaluate.py writes (the
per-image log p̂(x) and ELBO of a run's test images); results/ keeps those of
the README's results table. Prints mean(A − B) of log p(x) and of the ELBO
over the images both evaluated, with the standard error of the per-image
differences: the spread of log p(x) across images, common to both runs,
cancels, so the paired s.e. is far smaller than either run's own.
"""

from __future__ import annotations

import csv
import math
import sys


def _read(path: str) -> dict[int, tuple[float, float]]:
  with open(path, newline="") as f:
    return {
      int(r["image"]): (float(r["log_px"]), float(r["elbo"]))
      for r in csv.DictReader(f)
    }


def paired(a: dict, b: dict, column: int) -> tuple[float, float, int]:
  """(mean of a − b, its standard error, the number of images)."""
  images = sorted(set(a) & set(b))
  diffs = [a[n][column] - b[n][column] for n in images]
  mean = sum(diffs) / len(diffs)
  var = sum((d - mean) ** 2 for d in diffs) / len(diffs)
  return mean, math.sqrt(var / len(diffs)), len(diffs)


def main(argv: list[str]) -> int:
  if len(argv) != 3:
    print(
      "error: usage: paired_difference.py A.csv B.csv (two "
      "eval_per_image.csv files)",
      file=sys.stderr,
    )
    return 2
  try:
    a, b = _read(argv[1]), _read(argv[2])
  except (OSError, KeyError, ValueError) as e:
    print(f"error: cannot read the two files: {e}", file=sys.stderr)
    return 2
  if not set(a) & set(b):
    print("error: the two files share no test image", file=sys.stderr)
    return 2
  for name, column in (("log p(x)", 0), ("ELBO", 1)):
    mean, se, n = paired(a, b, column)
    print(
      f"{name}: {argv[1]} − {argv[2]} = {mean:+.2f} ± {se:.2f} nats "
      f"(paired over {n} images)"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
