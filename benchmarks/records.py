"""Result records: one JSON file per measurement, in benchmarks/results/.

A record says what was measured (`title`, `numbers`, `table`), how
(`commands`, `config`), where (`machine`: the CPU model and cores, or the
accelerator) and when (`date`, `jax_version`). The README's and the docs'
tables are generated from these files by scripts/tables.py, so each
number is written once, here.

Two kinds:

  quality    a training run and its evaluation (scripts/record_run.py makes
             one from a run directory); `numbers` holds the fields of
             `Quality`, typed and checked on load
  benchmark  a timing; `table` holds its rows, `numbers` anything else,
             keyed by what each number is ("examples/s, trainer")

A benchmark writes its record with `--record=PATH` (every script of
benchmarks/ with a main: train_step.py, importance_sampling.py,
time_to_quality.py, sweep.py, inference_gap.py, conv.py, input_pipeline.py,
variants.py):

    record = records.new("train_step", "benchmark", title=..., table=...)
    records.write(record, path)

`new` fills the machine, the jax version, the date and the command line
itself. Records copied by hand from an earlier README or config header say
so in `source`, with the commit that added the number.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import shlex
import platform
import sys
from typing import Any, Optional

__all__ = [
  "BENCHMARK",
  "QUALITY",
  "RESULTS_DIR",
  "Column",
  "GapSplit",
  "Machine",
  "Quality",
  "Record",
  "RecordError",
  "Table",
  "command_line",
  "load",
  "load_all",
  "new",
  "this_machine",
  "write",
]

SCHEMA = 1
QUALITY = "quality"
BENCHMARK = "benchmark"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")


class RecordError(ValueError):
  """A record file that does not follow the schema."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Machine:
  """Where a record was measured."""

  cpu: str  # the CPU model, as /proc/cpuinfo names it or as stated; "": not recorded
  cores: int  # os.cpu_count()
  accelerator: str = ""  # the device kind when not the CPU, e.g. "H100"
  conditions: str = ""  # "idle", "shared with a test suite", …
  load_average: Optional[float] = None  # 1-minute, when the record was written

  def describe(self) -> str:
    """`2-core AMD EPYC`, `NVIDIA H100 (16-core host)`."""
    if self.accelerator:
      return f"{self.accelerator} ({self.cores}-core host)"
    return f"{self.cores}-core {self.cpu or 'CPU (model not recorded)'}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Column:
  """One column of a benchmark's table: `rows[i][key]`, formatted."""

  key: str
  header: str
  format: str = ""  # a format spec for numbers: ",.0f", ".2f"
  suffix: str = ""  # after each number: "%", "×"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Table:
  """A benchmark's rows. A cell is a number, a string, None (—), a range
  [low, high] or {"mean": m, "stderr": s}."""

  columns: tuple[Column, ...]
  rows: tuple[dict[str, Any], ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GapSplit:
  """`evaluate --gap_decomposition`'s split of the gap (eval.json's keys):
  log p(x) − L[q] = (log p(x) − L[q*]) + (L[q*] − L[q]), in nats, means
  over `examples` test images ± the s.e. of the per-image values."""

  examples: int
  inference_gap: float
  inference_gap_stderr: float
  approximation_gap: float
  approximation_gap_stderr: float
  amortisation_gap: float
  amortisation_gap_stderr: float
  elbo: float  # L[q], the encoder's
  elbo_optimized: float  # L[q*], q fitted to each image
  log_px_q_star: float  # log p(x), importance-sampled with proposal q*
  log_px_q: float  # the same with the encoder's q
  steps_mean: float  # Adam steps per image
  steps_max: int
  seconds: float
  num_importance_samples: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quality:
  """The numbers of a quality record: one training run and its evaluation.
  Nats per example; None where not measured."""

  config_file: str  # a file of vae_jax/configs/, "paper.py"
  variant: str = ""  # settings changed from that file, "activation=relu"
  epochs: int  # epochs reached
  max_epochs: Optional[int] = None  # config.epochs
  best_epoch: Optional[int] = None  # the evaluated (best) checkpoint's
  stopped: str  # "early-stopped", "finished", or how it ended otherwise
  test_elbo: Optional[float] = None
  test_elbo_stderr: Optional[float] = None
  elbo_note: str = ""  # "epoch 77, single-sample": not the evaluation's
  test_elbo_first_epoch: Optional[float] = None
  test_log_px: Optional[float] = None  # importance-sampled
  test_log_px_stderr: Optional[float] = None
  num_importance_samples: Optional[int] = None
  test_gap: Optional[float] = None  # log p(x) − ELBO
  test_gap_stderr: Optional[float] = None
  active_units_per_layer: Optional[dict[str, int]] = None
  latent_sizes: Optional[dict[str, int]] = None
  train_seconds: Optional[float] = None  # what `train_seconds_basis` says
  train_seconds_basis: str = ""
  command_seconds: Optional[float] = None  # the whole command, when timed
  examples_per_sec: Optional[float] = None  # the fastest epoch's training
  examples_per_sec_range: Optional[tuple[float, float]] = None
  importance_seconds: Optional[float] = None  # log p(x) over the test set
  per_image_csv: str = ""  # results/NAME.csv: eval_per_image.csv's copy
  time_ratio: Optional[float] = None  # wall time ÷ paper.py's, same machine
  gap: Optional[GapSplit] = None

  @classmethod
  def from_dict(cls, numbers: dict[str, Any]) -> "Quality":
    numbers = dict(numbers)
    if numbers.get("gap") is not None:
      numbers["gap"] = _build(GapSplit, numbers["gap"], "numbers.gap")
    if numbers.get("examples_per_sec_range") is not None:
      numbers["examples_per_sec_range"] = tuple(
        numbers["examples_per_sec_range"]
      )
    return _build(cls, numbers, "numbers")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Record:
  """One measurement (see the module's docstring)."""

  name: str  # the file's stem
  kind: str  # QUALITY or BENCHMARK
  # Where its table goes: "results" (a row of the results table), "speed"
  # (the speed page), or "" (a `record:NAME` region, a config's header).
  section: str
  title: str
  commands: tuple[str, ...]
  config: dict[str, Any]
  machine: Machine
  jax_version: str
  date: str  # YYYY-MM-DD
  numbers: dict[str, Any]
  table: Optional[Table] = None
  source: str = ""  # where the numbers were copied from, if by hand
  notes: str = ""
  schema: int = SCHEMA

  def quality(self) -> Quality:
    if self.kind != QUALITY:
      raise RecordError(f"{self.name}: a {self.kind} record, not {QUALITY}")
    return Quality.from_dict(self.numbers)

  def path(self) -> str:
    return f"benchmarks/results/{self.name}.json"

  def to_json(self) -> dict[str, Any]:
    return _plain(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, data: dict[str, Any]) -> "Record":
    data = dict(data)
    data["machine"] = _build(Machine, data.get("machine"), "machine")
    data["commands"] = tuple(data.get("commands", ()))
    if data.get("table") is not None:
      table = data["table"]
      data["table"] = Table(
        columns=tuple(
          _build(Column, c, "table.columns") for c in table["columns"]
        ),
        rows=tuple(table["rows"]),
      )
    record = _build(cls, data, "record")
    if record.schema != SCHEMA:
      raise RecordError(f"schema {record.schema}, expected {SCHEMA}")
    if record.kind not in (QUALITY, BENCHMARK):
      raise RecordError(f"kind {record.kind!r}: {QUALITY} or {BENCHMARK}")
    if record.kind == QUALITY:
      record.quality()  # checks the numbers' fields
    if not record.commands:
      raise RecordError("no command")
    datetime.date.fromisoformat(record.date)
    return record


def _build(cls, data, where: str):
  """cls(**data), with unknown and missing fields named."""
  if not isinstance(data, dict):
    raise RecordError(f"{where}: expected an object, got {data!r}")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = set(data) - set(fields)
  if unknown:
    raise RecordError(f"{where}: unknown field(s) {sorted(unknown)}")
  missing = [
    n
    for n, f in fields.items()
    if n not in data
    and f.default is dataclasses.MISSING
    and f.default_factory is dataclasses.MISSING
  ]
  if missing:
    raise RecordError(f"{where}: missing field(s) {missing}")
  return cls(**data)


def _plain(value):
  """Tuples as lists and NaN or ±inf as None (JSON has neither),
  recursively: what json.load reads back."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def load(path: str) -> Record:
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  try:
    record = Record.from_json(data)
  except (RecordError, TypeError, ValueError, KeyError) as e:
    raise RecordError(f"{path}: {e}") from e
  stem = os.path.splitext(os.path.basename(path))[0]
  if record.name != stem:
    raise RecordError(f"{path}: name {record.name!r} is not the file's stem")
  return record


def load_all(directory: str = RESULTS_DIR) -> list[Record]:
  """Every `*.json` record of `directory`, sorted by name."""
  return [
    load(os.path.join(directory, f))
    for f in sorted(os.listdir(directory))
    if f.endswith(".json")
  ]


def write(record: Record, path: str) -> None:
  """Writes `record` as indented JSON (its `name` becomes the file's stem)."""
  stem = os.path.splitext(os.path.basename(path))[0]
  record = dataclasses.replace(record, name=stem)
  Record.from_json(record.to_json())  # the same checks as a load
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(record.to_json(), f, indent=2, ensure_ascii=False)
    f.write("\n")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown"


def this_machine(conditions: str = "") -> Machine:
  """This machine: its CPU model and cores, the accelerator JAX uses (if
  not the CPU) and the load average now."""
  import jax  # pylint: disable=g-import-not-at-top

  accelerator = ""
  if jax.default_backend() != "cpu":
    accelerator = jax.devices()[0].device_kind
  try:
    load_average: Optional[float] = round(os.getloadavg()[0], 2)
  except OSError:
    load_average = None
  return Machine(
    cpu=_cpu_model(),
    cores=os.cpu_count() or 0,
    accelerator=accelerator,
    conditions=conditions,
    load_average=load_average,
  )


def command_line(argv: Optional[list[str]] = None) -> str:
  """`python benchmarks/x.py --flags` as run, without `--record=…`."""
  argv = list(sys.argv if argv is None else argv)
  script = os.path.relpath(os.path.abspath(argv[0]), REPO_ROOT)
  args = [a for a in argv[1:] if not a.startswith("--record")]
  return shlex.join(["python", script, *args])  # quoted: it can be rerun


def new(
  name: str,
  kind: str,
  *,
  title: str,
  section: str = "speed",
  numbers: Optional[dict[str, Any]] = None,
  table: Optional[Table] = None,
  config: Optional[dict[str, Any]] = None,
  commands: Optional[list[str]] = None,
  conditions: str = "",
  notes: str = "",
) -> Record:
  """A record measured now, on this machine, by this command line."""
  import jax  # pylint: disable=g-import-not-at-top

  return Record(
    name=name,
    kind=kind,
    section=section,
    title=title,
    commands=tuple(commands or [command_line()]),
    config=dict(config or {}),
    machine=this_machine(conditions),
    jax_version=jax.__version__,
    date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
    numbers=dict(numbers or {}),
    table=table,
    notes=notes,
  )
