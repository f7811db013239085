r"""The variants side by side: IS-NLL, ELBO, active units, time per row.

    python benchmarks/variants.py            # the grid: about 70 min (below)
    python benchmarks/variants.py --quick    # the same rows, tiny: about 1 min

Trains each row on Fashion-MNIST with the same settings apart from the
row's own (784-500-20 MLP or the conv VAE with conv_channels 32,64 and a
500-unit dense layer, Bernoulli decoder, dynamic binarisation, Adam 1e-3,
batch 128, seed 0, --epochs epochs), then evaluates its last checkpoint with
`vae_jax.run.evaluate.evaluate_run` on the first --eval_examples test images:

    IS-NLL    −log p̂_K(x), K = --importance_samples (Burda et al.), ± s.e.
    ELBO      the plain single-sample test ELBO (analytic KL), same images
    active    active units, Var_x E_q[z_d|x] > 0.01 (Burda et al.)
    train s   the loop's wall time (training, per-epoch evaluation,
              checkpoints); eval s: the importance sampling
    train ex/s   training examples/s, the last epoch's steps only
    grid min  (--quick) the row's estimated minutes in the default grid

Rows: ELBO vs IWAE (K = 5, 50) of the MLP; free bits on (λ = --free_bits
nats per dimension) vs off (the ELBO row); MLP vs conv (ELBO).

Budget. An IWAE-50 step decodes 50 z per example and dominates the MLP
rows; the conv VAE's convolutions cost about as much. Measured by --quick
on the 2-core CPU (load ~3 from other jobs): 14,000 training examples/s
(ELBO, free bits), 8,200 (IWAE-5), 930 (IWAE-50), 1,300 (conv), i.e.
4, 7, 64 and 47 s an epoch of 60,000 images; with the K = 1000 evaluations
(about 12 min for the conv row, 2 min for the MLP rows together) the default
grid comes to about 56 min, plus compilation and each epoch's test ELBO
and TensorBoard images: about 70 minutes, inside the two hours asked for
at the default 20 epochs. The full grid run on the same CPU while it was
shared with test suites and other benchmarks (load average 2-8) took much
longer: 20 epochs of IWAE-50 alone 72 min (670 examples/s), the conv row
30 min of training and 8 min of evaluation (the README has its table).
--quick prints this estimate from its own
throughput ("grid min"); lower --epochs if it says more than two hours on
your machine. "train s" includes compilation, which rows with the same
program share (free bits is a traced hyperparameter: the free-bits row
reuses the ELBO row's program).

--quick: the first 2000 training and 500 test images (a local IDX copy), 1
epoch, K = 100 on 200 images: the same code path and architectures, for a
smoke test and the time estimate, not for the numbers.

--record=PATH also writes the table as a result record
(benchmarks/records.py), e.g. benchmarks/results/variants.json (the
--quick one: variants_quick.json).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_QUICK = flags.DEFINE_bool("quick", False, "A tiny run of every row.")
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Epochs of every row.")
_IMPORTANCE = flags.DEFINE_integer(
  "importance_samples", 1000, "K of the IS-NLL."
)
_EVAL_EXAMPLES = flags.DEFINE_integer(
  "eval_examples", 2000, "First N test images evaluated."
)
_FREE_BITS = flags.DEFINE_float(
  "free_bits", 0.5, "λ of the free-bits row, nats per dimension."
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST's IDX files."
)
_ROWS = flags.DEFINE_list("rows", None, "Run only these rows (their names).")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Where the runs go; default: a temporary one."
)
_RECORD = flags.DEFINE_string(
  "record", "", "Also write the table as a record (JSON) to this path."
)

_QUICK_TRAIN, _QUICK_TEST = 2000, 500
_QUICK_IMPORTANCE, _QUICK_EVAL = 100, 200
_FULL_TRAIN = 60000


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  settings: dict

  def describe(self) -> str:
    """`objective=iwae, num_samples=5`; `default`."""
    return ", ".join(f"{k}={v}" for k, v in self.settings.items()) or "default"


def _rows(free_bits: float) -> list[Row]:
  return [
    Row("mlp-elbo", {}),
    Row("mlp-iwae5", {"objective": "iwae", "num_samples": 5}),
    Row("mlp-iwae50", {"objective": "iwae", "num_samples": 50}),
    Row("mlp-freebits", {"free_bits": free_bits}),
    Row("conv-elbo", {"model": "conv"}),
  ]


@dataclasses.dataclass
class Result:
  row: Row
  test_elbo: float
  nll: float
  nll_stderr: float
  gap: float
  active_units: int
  train_seconds: float
  eval_seconds: float
  examples_per_sec: float  # training steps only, the last epoch's


def _quick_data(source: str, directory: str) -> None:
  """The first images of `source`'s IDX files, written to `directory`."""
  from vae_jax.data import idx  # pylint: disable=g-import-not-at-top

  for prefix, count in (("train", _QUICK_TRAIN), ("t10k", _QUICK_TEST)):
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
      name = f"{prefix}-{kind}"
      path = os.path.join(source, name + ".gz")
      path = path if os.path.exists(path) else os.path.join(source, name)
      idx.write_idx(os.path.join(directory, name), idx.read_idx(path)[:count])


def _config(row: Row, data_dir: str, epochs: int):
  from vae_jax.configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.update(
    dict(dataset="idx", data_dir=data_dir, epochs=epochs, **row.settings)
  )
  return config


def _run_row(
  row: Row,
  data_dir: str,
  root: str,
  epochs: int,
  importance: int,
  eval_examples: int,
) -> Result:
  from vae_jax.run import evaluate  # pylint: disable=g-import-not-at-top
  from vae_jax.run import loop  # pylint: disable=g-import-not-at-top

  workdir = os.path.join(root, row.name)
  start = time.perf_counter()
  history = loop.train_and_evaluate(
    _config(row, data_dir, epochs), workdir, progress_bar=False, figures=False
  )
  train_seconds = time.perf_counter() - start
  record = evaluate.evaluate_run(
    workdir,
    checkpoint="latest",
    figures=False,
    num_importance_samples=importance,
    max_examples=eval_examples,
    progress=False,
  )
  last = history[-1]
  return Result(
    row=row,
    test_elbo=record["test_elbo"],
    nll=-record["test_log_px"],
    nll_stderr=record["test_log_px_stderr"],
    gap=record["test_gap"],
    active_units=record["active_units"],
    train_seconds=train_seconds,
    eval_seconds=record["importance_seconds"],
    examples_per_sec=last.examples_per_sec,
  )


def _row_minutes(r: Result, importance: int, eval_examples: int) -> float:
  """Row r's time in the default grid from its measured throughput: the
  default epochs of 60000 examples, K = 1000 on 2000 images, no compiling."""
  train = _FULL_TRAIN * _EPOCHS.default / r.examples_per_sec
  evaluation = r.eval_seconds * (1000 * 2000) / (importance * eval_examples)
  return (train + evaluation) / 60


def _table(
  results: list[Result],
  epochs: int,
  importance: int,
  eval_examples: int,
  estimate: bool,
) -> str:
  lines = [
    f"epochs {epochs}, IS-NLL with K = {importance} on the first "
    f"{eval_examples} test images (nats; lower is better)",
    "",
    "| row | settings | IS-NLL | test ELBO | gap | active units | train s "
    "| eval s | train ex/s |" + (" grid min |" if estimate else ""),
    "|---|---|---|---|---|---|---|---|---|" + ("---|" if estimate else ""),
  ]
  for r in results:
    lines.append(
      f"| {r.row.name} | {r.row.describe()} | "
      f"{r.nll:.2f} ± {r.nll_stderr:.2f} | "
      f"{r.test_elbo:.2f} | {r.gap:.2f} | {r.active_units} | "
      f"{r.train_seconds:.1f} | {r.eval_seconds:.1f} | "
      f"{r.examples_per_sec:.0f} |"
      + (
        f" {_row_minutes(r, importance, eval_examples):.0f} |"
        if estimate
        else ""
      )
    )
  return "\n".join(lines)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  quick = _QUICK.value
  epochs = 1 if quick else _EPOCHS.value
  importance = _QUICK_IMPORTANCE if quick else _IMPORTANCE.value
  eval_examples = _QUICK_EVAL if quick else _EVAL_EXAMPLES.value
  rows = [
    r
    for r in _rows(_FREE_BITS.value)
    if not _ROWS.value or r.name in _ROWS.value
  ]
  with tempfile.TemporaryDirectory(prefix="vae_jax_variants_") as tmp:
    root = _WORKDIR.value or tmp
    data_dir = _DATA_DIR.value
    if quick:
      data_dir = os.path.join(tmp, "data")
      os.makedirs(data_dir)
      _quick_data(_DATA_DIR.value, data_dir)
    results = []
    for row in rows:
      print(f"{row.name} ...", file=sys.stderr, flush=True)
      results.append(
        _run_row(row, data_dir, root, epochs, importance, eval_examples)
      )
  print(_table(results, epochs, importance, eval_examples, quick))
  total = sum(_row_minutes(r, importance, eval_examples) for r in results)
  if quick:
    print(
      f"\ngrid min: each row's time in the default grid "
      f"({_EPOCHS.default} epochs of 60000 images, K = 1000 on 2000 "
      f"images), from its throughput here; {total:.0f} min in all, "
      "plus compilation"
    )
  if _RECORD.value:
    _write_record(results, epochs, importance, eval_examples, quick, total)


def _write_record(results, epochs, importance, eval_examples, quick, total):
  column = records.Column
  columns = [
    column(key="row", header="row"),
    column(key="settings", header="settings"),
    column(key="is_nll", header="IS-NLL", format=".2f"),
    column(key="test_elbo", header="test ELBO", format=".2f"),
    column(key="gap", header="gap", format=".2f"),
    column(key="active_units", header="active units"),
    column(key="train_s", header="train s", format=".1f"),
    column(key="eval_s", header="eval s", format=".1f"),
    column(key="train_eps", header="train ex/s", format=",.0f"),
  ]
  if quick:
    columns.append(column(key="grid_min", header="grid min", format=".0f"))
  rows = []
  for r in results:
    row = dict(
      row=r.row.name,
      settings=r.row.describe(),
      is_nll=dict(mean=r.nll, stderr=r.nll_stderr),
      test_elbo=r.test_elbo,
      gap=r.gap,
      active_units=r.active_units,
      train_s=r.train_seconds,
      eval_s=r.eval_seconds,
      train_eps=r.examples_per_sec,
    )
    if quick:
      row["grid_min"] = _row_minutes(r, importance, eval_examples)
    rows.append(row)
  title = (
    f"The variants at equal architecture and epochs ({epochs} epochs, "
    f"IS-NLL with K = {importance} on the first {eval_examples} test images)"
  )
  if quick:
    title = (
      "The variants' grid, tiny (--quick): a smoke test and the time "
      "estimate, not a comparison"
    )
  numbers = {}
  if quick:
    numbers[
      f"the default grid's minutes ({_EPOCHS.default} epochs of 60000 "
      "images, K = 1000 on 2000 images), from these rows' throughput"
    ] = round(total)
  records.write(
    records.new(
      "variants_quick" if quick else "variants",
      records.BENCHMARK,
      section="",
      title=title,
      config=dict(
        quick=quick,
        rows=[r.row.name for r in results],
        epochs=epochs,
        importance_samples=importance,
        eval_examples=eval_examples,
        free_bits=_FREE_BITS.value,
        data_dir=_DATA_DIR.value,
      ),
      numbers=numbers,
      table=records.Table(columns=tuple(columns), rows=tuple(rows)),
      notes="784-500-20 MLP, or the conv VAE with channels 32, 64 and a "
      "500-unit dense layer; seed 0. 'train s' is the loop's wall time "
      "(with compilation); 'train ex/s' the last epoch's.",
    ),
    _RECORD.value,
  )
  print(f"wrote {_RECORD.value}")


if __name__ == "__main__":
  app.run(main)
