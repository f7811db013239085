"""A sweep: a grid of settings × seeds, trained group by group, compared.

    driver    run_sweep(plan, sweep_dir): members group by group, status.json
    grid      --sweep specs × seeds → members, groups, sweep.json (no JAX)
    group     a group's members vmapped as one program
    stack     the member axis: states stacked and split, who trains
    summary   summary.csv, summary.md, comparison.png

`from vae_jax import sweep` then `sweep.run_sweep(...)`,
`sweep.plan_sweep(...)`: the grid's names are imported with this package
(pure Python), the driver's on first use (PEP 562), so a launcher checks a
sweep's command line before JAX starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vae_jax.sweep.grid import (
  SWEEP_JSON,
  SweepPlan,
  check_sweep_dir,
  plan_sweep,
)

if TYPE_CHECKING:
  from vae_jax.sweep.driver import (
    STATUS_JSON,
    read_status,
    run_sweep,
    vectorize_choice,
  )

_DRIVER = ("run_sweep", "vectorize_choice", "read_status", "STATUS_JSON")

__all__ = [
  "run_sweep",
  "vectorize_choice",
  "read_status",
  "STATUS_JSON",
  "SweepPlan",
  "plan_sweep",
  "check_sweep_dir",
  "SWEEP_JSON",
]


def __getattr__(name: str) -> Any:
  if name in _DRIVER:
    return getattr(importlib.import_module("vae_jax.sweep.driver"), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(_DRIVER))
