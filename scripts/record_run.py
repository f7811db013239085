r"""A results record from a run directory: the quality path's --record.

    .venv/bin/python scripts/record_run.py runs/paper
    .venv/bin/python scripts/record_run.py runs/vamp \
        --stopped="stopped by hand at the session's end" \
        --conditions="shared with test suites for most of the run"

Reads RUN_DIR's config.json, metrics.jsonl and eval.json (run
`experiments.evaluate` first) and writes benchmarks/results/NAME.json
(NAME: the config file's stem, or --name), a record of kind "quality"
(benchmarks/records.py):

  epochs      metrics.jsonl's last epoch; the best one is the evaluated
              checkpoint's (eval.json `epoch`); "early-stopped" when the
              run ended `early_stopping_patience` epochs after it,
              "finished" at config.epochs, else --stopped says how
  time        metrics.jsonl's last `wall_time_sec` (training and the
              per-epoch evaluations, compilation not), and the fastest
              epoch's `examples_per_sec`
  quality     eval.json's log p(x), ELBO, gap, active units, and the gap
              split when evaluated with --gap_decomposition
  variant     the settings in which config.json differs from the config
              file's `get_config()` (or --variant)
  per image   eval_per_image.csv copied to results/NAME.csv (--per_image),
              for the paired differences of the results table
  time ratio  --time_ratio: this run's wall time ÷ paper.py's on the same
              machine, from benchmarks/time_to_quality.py's record (the
              results table writes it `0.24×`)

The machine is this one (the CPU model from /proc/cpuinfo, its cores),
unless --cpu and --cores name the one that ran it; the date is eval.json's
(--date); the commands are rebuilt from config.json and eval.json
(--commands to give them). Then `scripts/tables.py` puts the record into
the README's and the docs' tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import math
import os
import shutil
import sys
from typing import Any, Optional

sys.path.insert(
  0,
  os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"
  ),
)
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = records.REPO_ROOT

# Where the run reads its data, not what it computes.
_NOT_A_VARIANT = ("data_dir",)
_GAP_KEYS = {
  "examples": "gap_examples",
  "inference_gap": "inference_gap",
  "inference_gap_stderr": "inference_gap_stderr",
  "approximation_gap": "approximation_gap",
  "approximation_gap_stderr": "approximation_gap_stderr",
  "amortisation_gap": "amortisation_gap",
  "amortisation_gap_stderr": "amortisation_gap_stderr",
  "elbo": "gap_elbo",
  "elbo_optimized": "elbo_optimized",
  "log_px_q_star": "log_px_q_star",
  "log_px_q": "gap_log_px_q",
  "steps_mean": "gap_steps_mean",
  "steps_max": "gap_steps_max",
  "seconds": "gap_seconds",
  "num_importance_samples": "gap_num_importance_samples",
}


def _read_json(path: str) -> Any:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _metrics(run_dir: str) -> list[dict]:
  with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _plain(value):
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def variant_of(config_file: str, settings: dict) -> str:
  """`key=value,…` where `settings` differ from the file's get_config()."""
  path = os.path.join(REPO_ROOT, config_file)
  spec = importlib.util.spec_from_file_location("_recorded_config", path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  base = _plain(module.get_config().to_dict())
  changed = []
  for key in sorted(set(base) & set(settings)):
    if key in _NOT_A_VARIANT or base[key] == _plain(settings[key]):
      continue
    value = settings[key]
    if isinstance(value, list):
      value = ",".join(map(str, value))
    changed.append(f"{key}={value}")
  return ",".join(changed)


def _stopped(epochs: int, best: Optional[int], settings: dict) -> str:
  if epochs >= settings.get("epochs", math.inf):
    return "finished"
  patience = settings.get("early_stopping_patience", 0)
  if patience and best is not None and epochs - best >= patience:
    return "early-stopped"
  return "stopped before its end"


def _commands(
  config_file: str, variant: str, workdir: str, ev: dict, data: dict
) -> list[str]:
  flags = "".join(f" --config.{v}" for v in variant.split(",") if v)
  train = (
    f"python -m experiments.train --config={config_file}{flags} "
    f"--workdir={workdir}"
  )
  evaluate = f"python -m experiments.evaluate --workdir={workdir}"
  evaluate += f" --checkpoint={ev.get('checkpoint', 'best')}"
  if ev.get("num_importance_samples"):
    evaluate += f" --num_importance_samples={ev['num_importance_samples']}"
  test_size = data.get("num_examples", {}).get("test")
  if ev.get("num_examples") and test_size and ev["num_examples"] < test_size:
    evaluate += f" --max_examples={ev['num_examples']}"
  if "inference_gap" in ev:
    evaluate += " --gap_decomposition"
    if ev.get("gap_examples", 1000) != 1000:
      evaluate += f" --gap_examples={ev['gap_examples']}"
  return [train, evaluate]


def build(args: argparse.Namespace) -> records.Record:
  run_dir = args.run_dir
  config_json = _read_json(os.path.join(run_dir, "config.json"))
  eval_path = os.path.join(run_dir, "eval.json")
  ev = _read_json(eval_path)
  lines = _metrics(run_dir)
  settings = config_json["config"]
  config_file = config_json.get("config_file") or "vae_jax/configs/default.py"
  name = args.name or os.path.splitext(os.path.basename(config_file))[0]
  variant = args.variant
  if variant is None:
    variant = variant_of(config_file, settings)
  epochs = int(lines[-1]["epoch"])
  best: Optional[int] = None
  if ev.get("checkpoint") == "best" and ev.get("epoch") is not None:
    best = int(ev["epoch"])
  elif any(line.get("val_elbo") is not None for line in lines):
    best = int(
      max(lines, key=lambda line: line.get("val_elbo") or -math.inf)["epoch"]
    )
  stopped = _stopped(epochs, best, settings)
  if stopped == "stopped before its end" and args.stopped:
    stopped = args.stopped
  shapes = config_json.get("model", {}).get("latent_shapes", {})
  gap = None
  if "inference_gap" in ev:
    gap = {field: ev[key] for field, key in _GAP_KEYS.items()}
  per_image = ""
  source_csv = os.path.join(run_dir, "eval_per_image.csv")
  if args.per_image != "-" and os.path.exists(source_csv):
    per_image = args.per_image or f"results/{name}.csv"
    target = os.path.join(REPO_ROOT, per_image)
    if not os.path.exists(target) or not _same(source_csv, target):
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.copyfile(source_csv, target)
      print(f"wrote {per_image}")
  quality = records.Quality(
    config_file=os.path.basename(config_file),
    variant=variant,
    epochs=epochs,
    max_epochs=settings.get("epochs"),
    best_epoch=best,
    stopped=stopped,
    test_elbo=ev.get("test_elbo"),
    test_elbo_stderr=ev.get("test_elbo_stderr"),
    test_elbo_first_epoch=lines[0].get("test_elbo"),
    test_log_px=ev.get("test_log_px"),
    test_log_px_stderr=ev.get("test_log_px_stderr"),
    num_importance_samples=ev.get("num_importance_samples"),
    test_gap=ev.get("test_gap"),
    test_gap_stderr=ev.get("test_gap_stderr"),
    active_units_per_layer=ev.get("active_units_per_layer"),
    latent_sizes={k: math.prod(v) for k, v in shapes.items()} or None,
    train_seconds=lines[-1].get("wall_time_sec"),
    train_seconds_basis=(
      "metrics.jsonl's wall_time_sec at the last epoch: training and the "
      "per-epoch evaluations, compilation not"
    ),
    examples_per_sec=max(line.get("examples_per_sec", 0) for line in lines),
    importance_seconds=ev.get("importance_seconds"),
    per_image_csv=per_image,
    time_ratio=args.time_ratio,
    gap=None if gap is None else records.GapSplit(**gap),
  )
  machine = records.Machine(
    cpu=args.cpu or records.this_machine().cpu,
    cores=args.cores or os.cpu_count() or 0,
    conditions=args.conditions,
  )
  date = args.date or (
    datetime.datetime.fromtimestamp(
      os.path.getmtime(eval_path), datetime.timezone.utc
    )
    .date()
    .isoformat()
  )
  workdir = args.workdir_in_command or f"runs/{name}"
  import jax  # pylint: disable=g-import-not-at-top

  return records.Record(
    name=name,
    kind=records.QUALITY,
    section=args.section,
    title=args.title
    or (
      f"{os.path.basename(config_file)}"
      + (f" with {variant}" if variant else "")
      + f", {config_json.get('data', {}).get('dataset', '')}, seed "
      f"{settings.get('seed')}"
    ),
    commands=tuple(
      args.commands
      or _commands(
        config_file, variant, workdir, ev, config_json.get("data", {})
      )
    ),
    config=config_json,
    machine=machine,
    jax_version=args.jax_version or jax.__version__,
    date=date,
    numbers=_plain(dataclasses.asdict(quality)),
    source=f"scripts/record_run.py on the run directory {workdir}",
  )


def _same(a: str, b: str) -> bool:
  with open(a, "rb") as fa, open(b, "rb") as fb:
    return fa.read() == fb.read()


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("run_dir")
  parser.add_argument("--name", default="", help="the record's file stem")
  parser.add_argument("--output", default="", help="default: results dir")
  parser.add_argument("--section", default="results")
  parser.add_argument("--title", default="")
  parser.add_argument(
    "--stopped", default="", help="how the run ended, if not by itself"
  )
  parser.add_argument("--conditions", default="", help="idle, shared, …")
  parser.add_argument("--cpu", default="", help="default: this machine's")
  parser.add_argument("--cores", type=int, default=0)
  parser.add_argument("--date", default="", help="default: eval.json's")
  parser.add_argument("--jax_version", default="")
  parser.add_argument(
    "--variant", default=None, help="default: the settings that differ"
  )
  parser.add_argument(
    "--per_image", default="", help="default results/NAME.csv; - for none"
  )
  parser.add_argument(
    "--time_ratio", type=float, default=None, help="wall time ÷ paper.py's"
  )
  parser.add_argument("--workdir_in_command", default="")
  parser.add_argument("--commands", nargs="*", default=None)
  args = parser.parse_args(argv)
  try:
    record = build(args)
  except (OSError, KeyError, ValueError, records.RecordError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  output = args.output or os.path.join(
    records.RESULTS_DIR, f"{record.name}.json"
  )
  records.write(record, output)
  print(f"wrote {os.path.relpath(output, os.getcwd())}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
