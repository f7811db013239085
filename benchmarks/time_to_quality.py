r"""Wall time to a validation ELBO: `paper` against `fast`, from run directories.

    python benchmarks/time_to_quality.py --runs=paper=runs/paper,fast=runs/fast
    python benchmarks/time_to_quality.py --train --runs=paper=runs/paper,fast=runs/fast
    python benchmarks/time_to_quality.py --thresholds=-250,-240,-235,-232

Reads each NAME=WORKDIR's metrics.jsonl (with --train, first trains or
resumes the run of vae_jax/configs/NAME.py there; a config file that does
not exist is reported and its run skipped) and prints, for each run:

  the wall-clock seconds to the first epoch whose validation ELBO reaches
  each threshold (`wall_time_sec` of metrics.jsonl: training and the
  epochs' evaluations after the training program's compilation, so the
  first evaluation's compilation counts in the second epoch; test ELBO for
  a run without a validation split), the best validation ELBO and the wall
  time to its epoch (the best checkpoint's), and the IS-NLL: −test_log_px of
  the run's eval.json (`experiments.evaluate --checkpoint=best
  --num_importance_samples=5000`) when there is one, else of metrics.jsonl's
  last line (config.final_importance_samples);

then the time ratio first run ÷ each other run per threshold, one JSON
line, and --plot (default time_to_quality.png): validation ELBO against
wall-clock seconds, every run, the thresholds dotted. --thresholds=auto (the
default) spaces four between the worst run's first-epoch ELBO and the worst
run's best one, so every run reaches them all.

--override=K=V,… changes the trained configs (e.g. epochs=2 for a smoke
test); --synthetic=N or --data_dir=DIR the data (benchmarks/bench_data.py).
--record=PATH also writes the table as a result record
(benchmarks/records.py), e.g. benchmarks/results/time_to_quality.json; its
"wall time ÷ FIRST's" numbers are what `scripts/record_run.py
--time_ratio` puts into a run's results row (`0.24×`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import NamedTuple, Optional

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data  # pylint: disable=g-import-not-at-top,wrong-import-position
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_RUNS = flags.DEFINE_list(
  "runs",
  ["paper=runs/paper", "fast=runs/fast"],
  "NAME=WORKDIR of each run; the first is the reference of the ratios.",
)
_TRAIN = flags.DEFINE_bool(
  "train",
  False,
  "Train (or resume) each run of vae_jax/configs/NAME.py in its WORKDIR first.",
)
_THRESHOLDS = flags.DEFINE_list(
  "thresholds", ["auto"], "Validation-ELBO thresholds in nats, or auto."
)
_OVERRIDES = flags.DEFINE_list(
  "override", [], "K=V settings of the trained configs; tuples joined by '/'."
)
_PLOT = flags.DEFINE_string("plot", "time_to_quality.png", "The figure.")
_CONDITIONS = flags.DEFINE_string(
  "conditions",
  "",
  "How the runs shared the machine, for the record (e.g. 'back to back, "
  "idle'); the record's machine is this one.",
)
_RECORD = flags.DEFINE_string(
  "record",
  "",
  "Also write the table as a record (JSON) to this path, e.g. "
  "benchmarks/results/time_to_quality.json.",
)


class Curve(NamedTuple):
  """One run's learning curve, from its metrics.jsonl."""

  name: str
  seconds: list[float]  # wall_time_sec at each epoch's end
  elbo: list[float]  # validation ELBO (else test ELBO) at each epoch's end
  metric: str  # "val_elbo" or "test_elbo"
  is_nll: Optional[float]  # −test_log_px of eval.json, else the last line
  is_nll_source: str  # "eval.json" or "metrics.jsonl"


def read_curve(name: str, workdir: str) -> Curve:
  records = []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      if line.strip():
        records.append(json.loads(line))
  if not records:
    raise ValueError(f"{workdir}/metrics.jsonl holds no epoch")
  metric = "val_elbo" if records[0].get("val_elbo") is not None else "test_elbo"
  log_px, source = records[-1].get("test_log_px"), "metrics.jsonl"
  evaluation = os.path.join(workdir, "eval.json")
  if os.path.exists(evaluation):
    with open(evaluation) as f:
      measured = json.load(f).get("test_log_px")
    if measured is not None:
      log_px, source = measured, "eval.json"
  return Curve(
    name,
    [r["wall_time_sec"] for r in records],
    [r[metric] for r in records],
    metric,
    None if log_px is None else -log_px,
    source,
  )


def seconds_to_best(curve: Curve) -> float:
  """Wall time to the epoch of the best ELBO (the first, on a tie)."""
  return curve.seconds[curve.elbo.index(max(curve.elbo))]


def time_to(curve: Curve, threshold: float) -> Optional[float]:
  """Seconds to the first epoch whose ELBO ≥ threshold; None: never."""
  for seconds, elbo in zip(curve.seconds, curve.elbo):
    if elbo >= threshold:
      return seconds
  return None


def auto_thresholds(curves: list[Curve], count: int = 4) -> list[float]:
  """`count` thresholds from the worst first-epoch ELBO (exclusive) to the
  worst best ELBO (inclusive): reached by every run."""
  low = min(c.elbo[0] for c in curves)
  high = min(max(c.elbo) for c in curves)
  if high <= low:
    return [high]
  return [low + (high - low) * (i + 1) / count for i in range(count)]


def report(curves: list[Curve], thresholds: list[float]) -> dict:
  """The table's numbers: times per run and threshold, ratios, IS-NLL."""
  times = {c.name: [time_to(c, t) for t in thresholds] for c in curves}
  first = curves[0].name
  ratios = {}
  for c in curves[1:]:
    ratios[f"{first}/{c.name}"] = [
      a / b if a is not None and b else None
      for a, b in zip(times[first], times[c.name])
    ]
  return {
    "thresholds": thresholds,
    "seconds_to_threshold": times,
    "ratios": ratios,
    "best_elbo": {c.name: max(c.elbo) for c in curves},
    "metric": {c.name: c.metric for c in curves},
    "final_is_nll": {c.name: c.is_nll for c in curves},
    "total_seconds": {c.name: c.seconds[-1] for c in curves},
    "best_seconds": {c.name: seconds_to_best(c) for c in curves},
    "epochs": {c.name: len(c.elbo) for c in curves},
  }


def to_record(
  curves: list[Curve],
  result: dict,
  config: Optional[dict] = None,
  conditions: str = "",
) -> records.Record:
  """The report as a benchmark record: a row per threshold, the seconds of
  each run and the ratios; the totals, best ELBOs and IS-NLLs as numbers."""
  first = curves[0].name
  column = records.Column
  columns = [column(key="threshold", header="ELBO ≥", format=".2f")]
  columns += [
    column(key=f"{c.name}_s", header=f"{c.name} s", format=",.0f")
    for c in curves
  ]
  columns += [
    column(key=ratio, header=ratio, format=".2f", suffix="×")
    for ratio in result["ratios"]
  ]
  rows = []
  for i, threshold in enumerate(result["thresholds"]):
    row: dict = {"threshold": threshold}
    for c in curves:
      row[f"{c.name}_s"] = result["seconds_to_threshold"][c.name][i]
    for ratio, values in result["ratios"].items():
      row[ratio] = values[i]
    rows.append(row)
  numbers: dict = {}
  for c in curves:
    nll = result["final_is_nll"][c.name]
    numbers[f"{c.name}: best {c.metric}"] = round(
      result["best_elbo"][c.name], 2
    )
    numbers[f"{c.name}: final IS-NLL"] = None if nll is None else round(nll, 2)
    numbers[f"{c.name}: wall time, s"] = round(result["total_seconds"][c.name])
    numbers[f"{c.name}: wall time to the best epoch, s"] = round(
      result["best_seconds"][c.name]
    )
    numbers[f"{c.name}: epochs"] = result["epochs"][c.name]
  for c in curves[1:]:
    numbers[f"{c.name}: wall time ÷ {first}'s"] = round(
      result["total_seconds"][c.name] / result["total_seconds"][first], 3
    )
  return records.new(
    "time_to_quality",
    records.BENCHMARK,
    title="Wall time to validation-ELBO thresholds: "
    + " against ".join(c.name for c in curves),
    config=config or {},
    conditions=conditions,
    numbers=numbers,
    table=records.Table(columns=tuple(columns), rows=tuple(rows)),
  )


def _show(value: Optional[float], spec: str = ".0f") -> str:
  return "never" if value is None else format(value, spec)


def print_table(curves: list[Curve], result: dict) -> None:
  names = [c.name for c in curves]
  print(
    f"{'ELBO ≥':>10} "
    + " ".join(f"{n + ' s':>12}" for n in names)
    + " "
    + " ".join(f"{r:>12}" for r in result["ratios"])
  )
  for i, threshold in enumerate(result["thresholds"]):
    cells = [_show(result["seconds_to_threshold"][n][i]) for n in names]
    ratios = [_show(v[i], ".2f") for v in result["ratios"].values()]
    print(
      f"{threshold:>10.2f} "
      + " ".join(f"{c:>12}" for c in cells)
      + " "
      + " ".join(f"{r:>12}" for r in ratios)
    )
  for c in curves:
    nll = result["final_is_nll"][c.name]
    print(
      f"{c.name}: best {c.metric} {max(c.elbo):.2f} after {len(c.elbo)} "
      f"epochs, {c.seconds[-1]:.0f} s ({result['best_seconds'][c.name]:.0f} s "
      "to the best epoch); IS-NLL "
      + (
        "n/a (run experiments.evaluate)"
        if nll is None
        else f"{nll:.2f} ({c.is_nll_source})"
      )
    )


def draw(curves: list[Curve], thresholds: list[float], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4.5))
  for c in curves:
    ax.plot(c.seconds, c.elbo, marker=".", label=f"{c.name} ({c.metric})")
  for t in thresholds:
    ax.axhline(t, color="grey", linestyle=":", linewidth=0.8)
  low = min(min(c.elbo) for c in curves)
  high = max(max(c.elbo) for c in curves)
  # The first epochs lie far below the rest: show the thresholds' range and
  # as much again below it.
  span = max(2.0, high - min(thresholds))
  ax.set_ylim(max(low, min(thresholds) - span) - 1, high + 1)
  ax.set_xlabel("wall-clock seconds (training and evaluation)")
  ax.set_ylabel("validation ELBO (nats)")
  ax.set_title("Time to quality")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _train(name: str, workdir: str) -> bool:
  """Trains or resumes vae_jax/configs/NAME.py in WORKDIR; False if there
  is no such config file."""
  from vae_jax import configs  # pylint: disable=g-import-not-at-top
  from vae_jax.run import loop  # pylint: disable=g-import-not-at-top

  path = configs.path(name)
  if not os.path.exists(path):
    print(f"{name}: {path} does not exist; its run is skipped")
    return False
  spec = importlib.util.spec_from_file_location(f"_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  bench_data.override(config, _OVERRIDES.value)
  bench_data.apply(config)
  loop.train_and_evaluate(
    config, workdir, progress_bar=False, figures=False, config_file=path
  )
  return True


def main(argv):
  del argv
  curves = []
  for item in _RUNS.value:
    name, _, workdir = item.partition("=")
    if _TRAIN.value and not _train(name, workdir):
      continue
    if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
      print(f"{name}: no metrics.jsonl in {workdir}; pass --train to train it")
      continue
    curves.append(read_curve(name, workdir))
  if not curves:
    print("no runs to compare")
    return 1
  if _THRESHOLDS.value == ["auto"]:
    thresholds = auto_thresholds(curves)
  else:
    thresholds = [float(t) for t in _THRESHOLDS.value]
  result = report(curves, thresholds)
  print_table(curves, result)
  print(json.dumps(result))
  if _RECORD.value:
    config = {"runs": _RUNS.value, "train": _TRAIN.value}
    records.write(
      to_record(curves, result, config, _CONDITIONS.value), _RECORD.value
    )
    print(f"wrote {_RECORD.value}")
  if _PLOT.value:
    draw(curves, thresholds, _PLOT.value)
    print(f"wrote {_PLOT.value}")
  return 0


if __name__ == "__main__":
  app.run(main)
