r"""The README's and the docs' tables of numbers, generated from the records.

    .venv/bin/python scripts/tables.py           # rewrite the regions
    .venv/bin/python scripts/tables.py --check   # exit 1 if one differs

Every number in those tables comes from a record in benchmarks/results/
(benchmarks/records.py; scripts/record_run.py and the benchmarks'
`--record=PATH` write them). The script rewrites, in README.md and every
docs/**/*.md, what lies between the lines

    <!-- BEGIN GENERATED: NAME -->
    <!-- END GENERATED: NAME -->

for each NAME (markers inside fenced code blocks are text, not regions):

  results      one row per config of vae_jax/configs/ run on the paper
               protocol (records of section "results"): epochs, log p(x)
               with its minus sign, ELBO, gap, active units, training time
               and machine, the paired difference to `paper.py` (from the
               per-image files in results/, as scripts/paired_difference.py
               computes it); a row saying "not yet run" for a config
               without a record
  gap          the gap split (approximation and amortisation gaps) of each
               record that has one
  speed        the speed table: benchmarks/train_step.py's record, with its
               title, command, machine, date, numbers and notes
  record:NAME  one record, benchmarks/results/NAME.json, the same way
               (`--list` lists them)
  speed:all    every benchmark record of section "speed", one after another

Files without markers are left alone. `--check` writes nothing and prints a
diff of each file whose regions differ from what it would write.

    .venv/bin/python scripts/tables.py --list    # the records, by region
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import glob
import os
import re
import sys
from typing import Any, Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(
  0,
  os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"
  ),
)
import paired_difference  # pylint: disable=g-import-not-at-top,wrong-import-position
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO_ROOT = records.REPO_ROOT

# The results table's order; other configs follow by name.
_CONFIG_ORDER = (
  "paper",
  "fast",
  "vamp",
  "hvae",
  "hvae_vamp",
  "conv_hvae_vamp",
  "ladder",
)
# Configs of their own protocol, not rows of the results table.
_NOT_RESULTS = ("default", "smoke")
_REFERENCE = "paper.py"  # the paired differences and time ratios are to it
_SPEED_TABLE = "train_step"  # the record of the `speed` region
_SPEED_ORDER = (
  "train_step",
  "train_step_users",
  "train_step_profile",
  "train_step_bf16",
  "importance_sampling",
  "sweep",
  "sweep_before_merge",
  "sweep_launcher",
  "inference_gap",
)
_MINUS = "\u2212"
_BEGIN = re.compile(r"^<!-- BEGIN GENERATED: (\S+) -->$")
_END = "<!-- END GENERATED: {} -->"
_FENCE = re.compile(r"^\s*(```|~~~)")
_PIPE = re.compile(r"(?<!\\)\|")
_NOT_RECORDED = "not recorded"


class TablesError(Exception):
  """A region or record the script cannot render."""


# ---------------------------------------------------------------- numbers


def number(value: float, spec: str = "", suffix: str = "") -> str:
  """`value` by `spec` with a true minus sign (U+2212); without a spec, as
  written in the record (integral values as integers, thousands
  separated)."""
  if not spec:
    if isinstance(value, float) and value.is_integer():
      value = int(value)
    spec = ","
  text = format(value, spec)
  return text.replace("-", _MINUS) + suffix


def cell(value: Any, spec: str = "", suffix: str = "") -> str:
  """A table cell: a number, a string, None (—), [low, high] (a range) or
  {"mean": m, "stderr": s}."""
  if value is None:
    return "—"
  if isinstance(value, bool):
    return "yes" if value else "no"
  if isinstance(value, (int, float)):
    return number(value, spec, suffix)
  if isinstance(value, (list, tuple)) and len(value) == 2:
    low, high = (number(v, spec) for v in value)
    return f"{low}–{high}{suffix}"
  if isinstance(value, dict) and set(value) == {"mean", "stderr"}:
    return (
      f"{number(value['mean'], spec)} ± {number(value['stderr'], spec)}{suffix}"
    )
  return str(value)


def _pm(mean: Optional[float], stderr: Optional[float], spec=".2f") -> str:
  if mean is None:
    return "—"
  if stderr is None:
    return number(mean, spec)
  return f"{number(mean, spec)} ± {number(stderr, spec)}"


def _minutes(seconds: float) -> str:
  return (
    f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"
  )


def _markdown(header: list[str], rows: list[list[str]]) -> str:
  """A markdown table; a `|` inside a cell is escaped."""
  line = lambda cells: (
    "| " + " | ".join(_PIPE.sub(r"\\|", c) for c in cells) + " |"
  )
  lines = [line(header), "|" + "---|" * len(header)]
  lines += [line(r) for r in rows]
  return "\n".join(lines)


def _where(record: records.Record) -> str:
  """`2-core AMD EPYC, idle`."""
  m = record.machine
  return m.describe() + (f", {m.conditions}" if m.conditions else "")


def _record_paths(rs: list[records.Record]) -> str:
  return ", ".join(f"`{r.path()}`" for r in rs)


# ---------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class _Row:
  record: records.Record
  quality: records.Quality
  others: tuple[records.Record, ...]  # earlier runs of the same settings


def _config_name(config_file: str) -> str:
  return os.path.splitext(config_file)[0]


def _order(name: str) -> tuple[int, str]:
  if name in _CONFIG_ORDER:
    return _CONFIG_ORDER.index(name), name
  return len(_CONFIG_ORDER), name


def _rows(rs: list[records.Record]) -> list[_Row]:
  """One row per (config, variant): its newest record, the others beside."""
  groups: dict[tuple[str, str], list[records.Record]] = {}
  for r in rs:
    if r.kind == records.QUALITY and r.section == "results":
      q = r.quality()
      groups.setdefault((q.config_file, q.variant), []).append(r)
  rows = []
  for group in groups.values():
    group.sort(key=lambda r: (r.date, r.name), reverse=True)
    rows.append(_Row(group[0], group[0].quality(), tuple(group[1:])))
  rows.sort(
    key=lambda row: (
      _order(_config_name(row.quality.config_file)),
      row.quality.variant,
    )
  )
  return rows


def _config_cell(q: records.Quality) -> str:
  text = f"`{q.config_file}`"
  if q.variant:
    flags = " ".join(f"`--config.{v}`" for v in q.variant.split(","))
    text += f" with {flags}"
  return text


def _epochs_cell(q: records.Quality) -> str:
  best = f", best at {q.best_epoch}" if q.best_epoch is not None else ""
  if q.stopped == "early-stopped":
    return f"{q.epochs} / early-stopped{best}"
  return f"{q.epochs} / no: {q.stopped}{best}"


def _units_cell(q: records.Quality) -> str:
  if not q.active_units_per_layer:
    return "—"
  sizes = q.latent_sizes or {}
  return ", ".join(
    f"{layer}: {n}" + (f" / {sizes[layer]}" if layer in sizes else "")
    for layer, n in q.active_units_per_layer.items()
  )


def _time_cell(row: _Row) -> str:
  q = row.quality
  if q.train_seconds is None:
    text = "not recorded"
  else:
    text = _minutes(q.train_seconds)
    if q.stopped not in ("early-stopped", "finished"):
      text += f" to epoch {q.epochs}"
  text += f", {_where(row.record)}"
  if q.time_ratio is not None:
    text += f", {number(q.time_ratio, '.2f')}× `{_REFERENCE}`'s time"
  for other in row.others:
    o = other.quality()
    if o.train_seconds is not None:
      text += (
        f" ({_minutes(o.train_seconds)} on the {_where(other)}: "
        f"`{other.path()}`)"
      )
  return text


def _paired_cell(row: _Row, reference: Optional[_Row], root: str) -> str:
  q = row.quality
  if reference is None or not q.per_image_csv:
    return "—"
  if row.record.name == reference.record.name:
    return "0"
  ref = reference.quality.per_image_csv
  paths = [os.path.join(root, q.per_image_csv), os.path.join(root, ref)]
  if not ref or not all(os.path.exists(p) for p in paths):
    return "—"
  a, b = (paired_difference._read(p) for p in paths)  # pylint: disable=protected-access
  if not set(a) & set(b):
    return "—"
  mean, stderr, _ = paired_difference.paired(a, b, 0)
  return f"{number(mean, '+.2f')} ± {stderr:.2f}"


def results_table(
  rs: list[records.Record], config_names: list[str], root: str
) -> str:
  """The results table: a row per run config and variant, then a row per
  config not yet run."""
  rows = _rows(rs)
  reference = next(
    (
      r
      for r in rows
      if r.quality.config_file == _REFERENCE and not r.quality.variant
    ),
    None,
  )
  k = {r.quality.num_importance_samples for r in rows} - {None}
  k_text = f", K = {k.pop()}" if len(k) == 1 else ""
  header = [
    "config",
    "epochs (reached / early-stopped)",
    f"test log p(x){k_text}",
    "test ELBO",
    "gap",
    "active units per layer",
    "training time, machine",
    f"Δ log p(x) against `{_REFERENCE}`, paired",
  ]
  body = []
  for row in rows:
    q = row.quality
    log_px = _pm(q.test_log_px, q.test_log_px_stderr)
    elbo = _pm(q.test_elbo, q.test_elbo_stderr)
    if q.elbo_note:
      elbo += f" ({q.elbo_note})"
    body.append(
      [
        _config_cell(q),
        _epochs_cell(q),
        f"**{log_px}**" if q.test_log_px is not None else "not measured",
        elbo,
        _pm(q.test_gap, q.test_gap_stderr),
        _units_cell(q),
        _time_cell(row),
        _paired_cell(row, reference, root),
      ]
    )
  run = {_config_name(r.quality.config_file) for r in rows}
  for name in sorted(set(config_names) - run, key=_order):
    body.append([f"`{name}.py`", "not yet run", *[""] * 6])
  used = [r.record for r in rows] + [o for r in rows for o in r.others]
  return (
    _markdown(header, body)
    + f"\n\nRecords: {_record_paths(sorted(used, key=lambda r: r.name))}."
  )


def gap_table(rs: list[records.Record]) -> str:
  """The gap split of each results record that has one."""
  rows = [r for r in _rows(rs) if r.quality.gap is not None]
  examples = {r.quality.gap.examples for r in rows}  # type: ignore[union-attr]
  each = f"for {examples.pop()} images" if len(examples) == 1 else ""
  header = [
    "config",
    "inference gap",
    "approximation gap",
    "amortisation gap",
    "L[q]",
    "L[q*]",
    "log p(x), proposal q* (q)",
    "Adam steps per image, mean / max",
    f"time {each}, machine" if each else "time, images, machine",
  ]
  body = []
  for row in rows:
    g = row.quality.gap
    assert g is not None
    time = _minutes(g.seconds) + ("" if each else f" for {g.examples} images")
    body.append(
      [
        _config_cell(row.quality),
        _pm(g.inference_gap, g.inference_gap_stderr),
        _pm(g.approximation_gap, g.approximation_gap_stderr),
        _pm(g.amortisation_gap, g.amortisation_gap_stderr),
        number(g.elbo, ".2f"),
        number(g.elbo_optimized, ".2f"),
        f"{number(g.log_px_q_star, '.2f')} ({number(g.log_px_q, '.2f')})",
        f"{g.steps_mean:.0f} / {g.steps_max}",
        f"{time}, {row.record.machine.describe()}",
      ]
    )
  return (
    _markdown(header, body)
    + f"\n\nRecords: {_record_paths([r.record for r in rows])}."
  )


# ------------------------------------------------------------- benchmarks


def benchmark_block(record: records.Record) -> str:
  """A record's title, command, machine, date, table, numbers and notes."""
  parts = [f"**{record.title}** (`{record.path()}`)"]
  commands = "; then ".join(
    c if c.startswith(_NOT_RECORDED) else f"`{c}`" for c in record.commands
  )
  parts.append(
    f"{commands}: {_where(record)}, jax {record.jax_version}, {record.date}."
  )
  if record.kind == records.QUALITY:
    parts.append(_quality_sentence(record.quality()))
  if record.table is not None:
    columns = record.table.columns
    rows = []
    previous = None
    for row in record.table.rows:
      cells = [cell(row.get(c.key), c.format, c.suffix) for c in columns]
      first = cells[0]
      if first == previous:  # the first column names a group of rows
        cells[0] = ""
      previous = first
      rows.append(cells)
    parts.append(_markdown([c.header for c in columns], rows))
  if record.kind == records.BENCHMARK and record.numbers:
    parts.append(
      "; ".join(f"{k}: {cell(v)}" for k, v in record.numbers.items()) + "."
    )
  if record.notes:
    parts.append(record.notes)
  return "\n\n".join(parts)


def _quality_sentence(q: records.Quality) -> str:
  items = [f"{_config_cell(q)}, {q.epochs} epoch{'s' * (q.epochs != 1)}"]
  if q.test_log_px is not None:
    items.append(f"test log p(x) {_pm(q.test_log_px, q.test_log_px_stderr)}")
  if q.test_elbo is not None:
    elbo = _pm(q.test_elbo, q.test_elbo_stderr)
    items.append(
      f"test ELBO {elbo}" + (f" ({q.elbo_note})" if q.elbo_note else "")
    )
  if q.train_seconds is not None:
    items.append(f"{q.train_seconds:.0f} s ({q.train_seconds_basis})")
  if q.examples_per_sec_range is not None:
    items.append(f"{cell(list(q.examples_per_sec_range))} training examples/s")
  elif q.examples_per_sec is not None:
    items.append(f"{cell(q.examples_per_sec, ',.0f')} training examples/s")
  return "; ".join(items) + "."


def speed(rs: list[records.Record]) -> str:
  chosen = [
    r for r in rs if r.kind == records.BENCHMARK and r.section == "speed"
  ]
  chosen.sort(
    key=lambda r: (
      _SPEED_ORDER.index(r.name)
      if r.name in _SPEED_ORDER
      else len(_SPEED_ORDER),
      r.name,
    )
  )
  return "\n\n".join(benchmark_block(r) for r in chosen)


# ---------------------------------------------------------------- regions


def renderer(root: str, records_dir: str) -> Callable[[str], str]:
  """NAME → the region's text, from the records of `records_dir`."""
  rs = records.load_all(records_dir)
  by_name = {r.name: r for r in rs}
  config_dir = os.path.join(root, "vae_jax", "configs")
  config_names = sorted(
    os.path.splitext(f)[0]
    for f in os.listdir(config_dir)
    if f.endswith(".py") and not f.startswith("_")
  )
  config_names = [n for n in config_names if n not in _NOT_RESULTS]
  cache: dict[str, str] = {}

  def render(name: str) -> str:
    if name not in cache:
      if name == "results":
        cache[name] = results_table(rs, config_names, root)
      elif name == "gap":
        cache[name] = gap_table(rs)
      elif name == "speed" and _SPEED_TABLE in by_name:
        cache[name] = benchmark_block(by_name[_SPEED_TABLE])
      elif name == "speed:all":
        cache[name] = speed(rs)
      elif name.startswith("record:") and name[7:] in by_name:
        cache[name] = benchmark_block(by_name[name[7:]])
      else:
        raise TablesError(
          f"unknown region {name!r}: results, gap, speed, speed:all or "
          "record:NAME"
          f" of a file in {records_dir}"
        )
    return cache[name]

  return render


def rewrite(text: str, render: Callable[[str], str]) -> str:
  """`text` with every region's inside replaced by `render(NAME)`."""
  lines = text.split("\n")
  out: list[str] = []
  fence: Optional[str] = None
  i = 0
  while i < len(lines):
    line = lines[i]
    fence_match = _FENCE.match(line)
    if fence_match:
      mark = fence_match.group(1)
      fence = mark if fence is None else (None if mark == fence else fence)
    begin = _BEGIN.match(line) if fence is None else None
    if not begin:
      out.append(line)
      i += 1
      continue
    name = begin.group(1)
    end = _END.format(name)
    try:
      j = lines.index(end, i + 1)
    except ValueError:
      raise TablesError(f"line {i + 1}: {line} has no {end}") from None
    out += [line, "", render(name), "", end]
    i = j + 1
  return "\n".join(out)


def targets(root: str) -> list[str]:
  """README.md and the docs' markdown files."""
  files = [os.path.join(root, "README.md")]
  files += sorted(
    glob.glob(os.path.join(root, "docs", "**", "*.md"), recursive=True)
  )
  return [f for f in files if os.path.isfile(f)]


def run(root: str, records_dir: str, check: bool) -> int:
  """Rewrites (or, with `check`, compares) every target; the exit status."""
  render = renderer(root, records_dir)
  differ = []
  for path in targets(root):
    with open(path, encoding="utf-8") as f:
      old = f.read()
    try:
      new = rewrite(old, render)
    except TablesError as e:
      print(f"error: {os.path.relpath(path, root)}: {e}", file=sys.stderr)
      return 2
    if new == old:
      continue
    rel = os.path.relpath(path, root)
    if check:
      differ.append(rel)
      sys.stdout.writelines(
        difflib.unified_diff(
          old.splitlines(keepends=True),
          new.splitlines(keepends=True),
          f"{rel} (committed)",
          f"{rel} (from the records)",
        )
      )
    else:
      with open(path, "w", encoding="utf-8") as f:
        f.write(new)
      print(f"wrote {rel}")
  if differ:
    print(
      f"error: the generated tables of {', '.join(differ)} differ from the "
      "records in benchmarks/results/; run .venv/bin/python "
      "scripts/tables.py",
      file=sys.stderr,
    )
    return 1
  return 0


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--check",
    action="store_true",
    help="write nothing; exit 1 with a diff if a file differs",
  )
  parser.add_argument(
    "--list", action="store_true", help="list the records and their regions"
  )
  parser.add_argument("--root", default=REPO_ROOT, help=argparse.SUPPRESS)
  parser.add_argument("--records", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  records_dir = args.records or os.path.join(args.root, "benchmarks", "results")
  try:
    if args.list:
      for r in records.load_all(records_dir):
        print(f"record:{r.name:24} {r.kind:9} {r.section or '-':8} {r.title}")
      return 0
    return run(args.root, records_dir, args.check)
  except (records.RecordError, TablesError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
