"""A sweep's comparison: summary.csv, summary.md and comparison.png.

One row per member, from its run directory and status.json: the swept
settings and seed, the final test ELBO, the importance-sampled test log p(x)
where it was measured (`final_importance_samples`, else the member's
eval.json from experiments/evaluate.py), the active units of
its best (else last) parameters, epochs, wall time and status; and the
approximation and amortisation gaps when a member's eval.json has them
(`experiments/evaluate.py --gap_decomposition`). The figure
plots the final test ELBO against each swept setting (mean over seeds, their
standard deviation as error bars, one line per value of the other settings)
and every member's test-ELBO learning curve.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import math
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from vae_jax.store import workdir as workdir_lib

__all__ = ["summary_rows", "write_summary"]

_COLUMNS = (
  "test_elbo",
  "test_elbo_stderr",
  "test_log_px",
  "test_log_px_stderr",
  "active_units",
  "epochs",
  "wall_time_sec",
  "status",
)
_GAP_COLUMNS = ("approximation_gap", "amortisation_gap")  # when evaluated
_DPI = 100


def summary_rows(
  sweep_dir: str, description: dict, status: dict
) -> list[dict[str, Any]]:
  """One dict per member: its settings, then `_COLUMNS`, then the gap
  columns if any member's eval.json has them."""
  rows, gaps = [], []
  for member in description["members"]:
    history = workdir_lib.read_metrics(os.path.join(sweep_dir, member["name"]))
    last = dict(history[-1]) if history else {}
    evaluated = _evaluated(os.path.join(sweep_dir, member["name"]))
    gaps.append({k: evaluated.get(k) for k in _GAP_COLUMNS})
    if last.get("test_log_px") is None:
      last.update(
        {
          k: evaluated[k]
          for k in ("test_log_px", "test_log_px_stderr")
          if k in evaluated
        }
      )
    done = status.get(member["name"], {})
    row = {"name": member["name"], **member["settings"]}
    row.update(
      test_elbo=last.get("test_elbo"),
      test_elbo_stderr=last.get("test_elbo_stderr"),
      test_log_px=last.get("test_log_px"),
      test_log_px_stderr=last.get("test_log_px_stderr"),
      active_units=done.get("active_units"),
      epochs=last.get("epoch", 0),
      wall_time_sec=last.get("wall_time_sec"),
      status=done.get("status", "unfinished"),
    )
    rows.append(row)
  if any(v is not None for g in gaps for v in g.values()):
    for row, gap in zip(rows, gaps):
      row.update(gap)
  return rows


def _evaluated(workdir: str) -> dict[str, Any]:
  """test_log_px, its stderr and the gaps from eval.json
  (experiments/evaluate.py), those the member has."""
  path = os.path.join(workdir, "eval.json")
  try:
    with open(path) as f:
      report = json.load(f)
  except (OSError, ValueError):
    return {}
  found = {}
  for k in ("test_log_px", "test_log_px_stderr") + _GAP_COLUMNS:
    try:
      found[k] = float(report[k])
    except (KeyError, TypeError, ValueError):
      pass
  return found


def _text(value: Any, setting: bool = False) -> str:
  """A cell: a measurement to two decimals; a swept setting as written
  (`g`: 0.0015, 1e-05), which two decimals would round to 0.00."""
  if value is None:
    return ""
  if isinstance(value, float):
    if not math.isfinite(value):
      return str(value)
    return f"{value:g}" if setting else f"{value:.2f}"
  if isinstance(value, (list, tuple)):
    return "/".join(map(str, value))
  return str(value)


def write_summary(sweep_dir: str, description: dict, status: dict) -> None:
  rows = summary_rows(sweep_dir, description, status)
  keys = list(rows[0].keys())
  out = io.StringIO()
  writer = csv.DictWriter(out, keys, lineterminator="\n")
  writer.writeheader()
  for row in rows:
    writer.writerow(
      {
        k: (
          "/".join(map(str, v))
          if isinstance(v, list)
          else ""
          if v is None
          else v
        )
        for k, v in row.items()
      }
    )
  workdir_lib.write_text_atomic(
    os.path.join(sweep_dir, "summary.csv"), out.getvalue()
  )
  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  settings = set(description["members"][0]["settings"])
  lines += [
    "| " + " | ".join(_text(r[k], k in settings) for k in keys) + " |"
    for r in rows
  ]
  workdir_lib.write_text_atomic(
    os.path.join(sweep_dir, "summary.md"), "\n".join(lines) + "\n"
  )
  _plot(
    os.path.join(sweep_dir, "comparison.png"),
    description,
    rows,
    [
      workdir_lib.read_metrics(os.path.join(sweep_dir, r["name"])) for r in rows
    ],
  )


def _mean_std(values: list[float]) -> tuple[float, float]:
  return float(np.mean(values)), float(np.std(values))


def _plot(
  path: str, description: dict, rows: list[dict], histories: list[list[dict]]
) -> None:
  axes = [a["name"] for a in description["axes"]]
  fig = Figure(
    figsize=(4.5 * (len(axes) + 1), 3.6), dpi=_DPI, layout="constrained"
  )
  panels = fig.subplots(1, len(axes) + 1, squeeze=False)[0]
  for panel, name in zip(panels, axes):
    values = [a["values"] for a in description["axes"] if a["name"] == name][0]
    others = [a for a in axes if a != name]
    lines: dict[tuple, dict[int, list[float]]] = collections.defaultdict(
      lambda: collections.defaultdict(list)
    )
    for row in rows:
      if row["test_elbo"] is not None and math.isfinite(row["test_elbo"]):
        key = tuple(_text(row[o], setting=True) for o in others)
        lines[key][values.index(row[name])].append(row["test_elbo"])
    numeric = all(
      isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )
    for key, points in sorted(lines.items()):
      xs = sorted(points)
      stats = [_mean_std(points[x]) for x in xs]
      label = ", ".join(f"{o}={k}" for o, k in zip(others, key)) or None
      panel.errorbar(
        [values[x] if numeric else x for x in xs],
        [m for m, _ in stats],
        yerr=[s for _, s in stats],
        marker="o",
        capsize=3,
        label=label,
      )
    if not numeric:
      panel.set_xticks(range(len(values)), [_text(v) for v in values])
    elif (
      len(values) > 2 and min(values) > 0 and max(values) / min(values) >= 10
    ):
      panel.set_xscale("log")
    panel.set_xlabel(name)
    panel.set_ylabel("final test ELBO (nats)")
    if any(k for k in lines):
      panel.legend(fontsize=7)
  curves = panels[-1]
  for row, history in zip(rows, histories):
    if history:
      curves.plot(
        [r["epoch"] for r in history],
        [r["test_elbo"] for r in history],
        marker=".",
        label=row["name"],
        alpha=0.8,
      )
  curves.set_xlabel("epoch")
  curves.set_ylabel("test ELBO (nats)")
  curves.set_title("learning curves")
  if len(rows) <= 12:
    curves.legend(fontsize=6)
  tmp = f"{path}.{os.getpid()}.tmp"
  fig.savefig(tmp, dpi=_DPI, format="png")
  os.replace(tmp, path)
