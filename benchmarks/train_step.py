r"""Training throughput against its own baselines and the machine's limit.

    python benchmarks/train_step.py                  # both models, ~3 min
    python benchmarks/train_step.py --models=default --repeats=7
    python benchmarks/train_step.py --users          # as users see it, ~5 min
    python benchmarks/train_step.py --models=default --profile   # + per-op

Rows, each timed over one epoch of Fashion-MNIST (steady state, after
compilation), interleaved A B C D A B C D … so that load on a shared
machine hits every row alike, median of --repeats:

  trainer   the compiled chunk `make train` runs (vae_jax.run.programs:
            on-device data, shuffling and dynamic binarisation inside, the
            non-finite check, the step's metrics)
  plain     the careful user's program (benchmarks/plain_vae.py): bare jnp,
            one jitted lax.scan per epoch over batches binarised beforehand
  naive     the same step jitted alone, called from a Python loop on host
            NumPy batches binarised per step (how most examples train)
  matmuls   a step of nothing but the training matmuls of the model at its
            batch size: the machine's limit. Its GFLOP/s (the step's matmul
            FLOPs ÷ its time) is the "measured matmul GFLOP/s of the step's
            own shapes"; limit = that ÷ FLOPs per example.
  mm+adam   those matmuls and `optax.adam`'s update of every parameter:
            the least an Adam trainer of the model compiled by XLA does,
            so a bound on how far any such trainer can beat `plain`.

Columns: examples/s, % of the limit, the ratio to `plain` (median of the
per-repeat ratios), compile seconds, and the compiled program's memory
(arguments + temporaries, XLA's memory analysis). One JSON line per row
follows the table. The models: `default` (784-500-20, batch 128) and
`paper` (784-300-300-40, batch 100), each with its config's optimizer.
The rows compare one model, so the paper row uses ReLU layers as `plain`
does (the paper preset itself has gated layers, `activation=glu`).

--users measures the trainer as users see it: the best epoch's
examples_per_sec in metrics.jsonl of `python -m experiments.train
--config.epochs=3` (a subprocess), 5 runs interleaved with 5 three-epoch
runs of `plain` in a subprocess; medians and their ratio.

--profile adds, for the trainer and plain rows, where one epoch's time goes:
XLA:CPU's per-op trace, the top ops and their groups (benchmarks/op_profile).

Small sizes and other machines: --rows=trainer,plain,matmuls times those
rows only (plain and matmuls always: the ratios and the limit need them);
--override=hidden_dims=32/16,latent_dim=4 shrinks the model (tuples
joined by '/'); --synthetic=N or --data_dir=DIR (benchmarks/
bench_data.py) choose the data. --override=compute_dtype=bfloat16 runs the
trainer in bf16 (the baselines stay float32); --compute_dtypes=bfloat16
adds rows trainer-bf16 and matmuls-bf16 (the matmul bound with bf16
matmuls) beside the float32 ones.

--record=PATH also writes the table (or --users' medians) as a result
record (benchmarks/records.py), e.g. benchmarks/results/train_step.json,
for scripts/tables.py.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data  # pylint: disable=g-import-not-at-top,wrong-import-position
import op_profile  # pylint: disable=g-import-not-at-top,wrong-import-position
import plain_vae  # pylint: disable=g-import-not-at-top,wrong-import-position
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_MODELS = flags.DEFINE_list(
  "models", ["default", "paper"], "Configs whose models are measured."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Interleaved repeats.")
_USERS = flags.DEFINE_bool(
  "users", False, "3-epoch runs of the launcher vs plain instead."
)
_PLAIN_RUN = flags.DEFINE_integer(
  "plain_run",
  0,
  "(internal) run plain for N epochs, print the best epoch's ex/s.",
)
_PROFILE = flags.DEFINE_bool(
  "profile",
  False,
  "Also print where the trainer and plain spend an epoch, op by op.",
)
_CONFIG_OVERRIDES = flags.DEFINE_list(
  "override",
  [],
  "--config.K=V settings of the trainer row, e.g. "
  "compute_dtype=bfloat16; tuples joined by '/', hidden_dims=32/16.",
)
_ROWS = ["trainer", "plain", "naive", "matmuls", "mm+adam"]
_ROWS_TIMED = flags.DEFINE_list(
  "rows", _ROWS, "The rows timed (plain and matmuls always)."
)
_DTYPES = flags.DEFINE_list(
  "compute_dtypes",
  [],
  "Also these compute "
  "dtypes: a trainer and a matmuls row for each, "
  "e.g. bfloat16.",
)
_RECORD = flags.DEFINE_string(
  "record",
  "",
  "Also write the results as a record (JSON) to this path, e.g. "
  "benchmarks/results/train_step.json.",
)
_COLUMNS = (
  records.Column(key="model", header="model"),
  records.Column(key="row", header="row"),
  records.Column(key="examples_per_sec", header="examples/s", format=",.0f"),
  records.Column(
    key="percent_of_limit", header="% of limit", format=".0f", suffix="%"
  ),
  records.Column(key="ratio_to_plain", header="× plain", format=".2f"),
  records.Column(key="compile_sec", header="compile s", format=".1f"),
  records.Column(key="memory_mb", header="memory MB", format=".0f"),
)


def _config(name: str):
  config = importlib.import_module(f"vae_jax.configs.{name}").get_config()
  config.activation = "relu"  # the layers plain_vae implements
  bench_data.override(config, _CONFIG_OVERRIDES.value)
  bench_data.apply(config)
  return config


def _sizes(config) -> plain_vae.Sizes:
  return plain_vae.Sizes(
    tuple(config.hidden_dims), config.latent_dim, config.batch_size
  )


def _machine() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(
        line.split(":", 1)[1].strip()
        for line in f
        if line.startswith("model name")
      )
  except (OSError, StopIteration):
    pass
  return (
    f"{jax.devices()[0].device_kind} ({jax.default_backend()}, "
    f"{os.cpu_count()} cores: {cpu}), jax {jax.__version__}"
  )


def _memory_mb(compiled) -> float:
  m = compiled.memory_analysis()
  if m is None:
    return float("nan")
  return (m.argument_size_in_bytes + m.temp_size_in_bytes) / 2**20


class _Row:
  """A timed program: `run()` does one epoch and blocks."""

  def __init__(self, name, run, examples, compile_s, memory_mb, hlo=""):
    self.name, self.run, self.examples, self.hlo = name, run, examples, hlo
    self.compile_s, self.memory_mb, self.rates = compile_s, memory_mb, []

  def time(self):
    start = time.perf_counter()
    self.run()
    self.rates.append(self.examples / (time.perf_counter() - start))


def _trainer_row(config, data, name: str = "trainer") -> _Row:
  from vae_jax.nets import registry  # pylint: disable=g-import-not-at-top
  from vae_jax.run import programs  # pylint: disable=g-import-not-at-top

  model = registry.build_model(config, data.train.shape[1:])
  steps = data.num_train // config.batch_size
  step_cfg = programs.step_config(config)
  hparams = programs.hyperparams(config, steps)
  feed = programs.batch_feed(config, data)
  init_rng, _, _ = programs.run_keys(config)
  box = [programs.init_state(model, step_cfg, init_rng)]
  start = time.perf_counter()
  compiled = programs.compile_chunk(
    model, step_cfg, feed, steps, box[0], data.train, hparams
  )
  compile_s = time.perf_counter() - start

  def run():
    box[0], metrics, _ = compiled(box[0], data.train, hparams)
    jax.block_until_ready(metrics)

  return _Row(
    name,
    run,
    steps * config.batch_size,
    compile_s,
    _memory_mb(compiled),
    compiled.as_text(),
  )


def _compile(jitted, *args):
  """(the compiled program, seconds it took to compile)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def _matmul_row(config, batches, dtype: str) -> _Row:
  """`matmul_step` with its matmuls in `dtype` (parameters cast to it)."""
  sizes = _sizes(config)
  params = plain_vae.init(sizes, jax.random.key(0))
  compiled, compile_s = _compile(
    plain_vae.matmul_step(sizes, getattr(jax.numpy, dtype)), params, batches
  )
  run = lambda: jax.block_until_ready(compiled(params, batches))
  return _Row(
    f"matmuls-{_short(dtype)}",
    run,
    batches.shape[0] * sizes.batch,
    compile_s,
    _memory_mb(compiled),
  )


def _short(dtype: str) -> str:
  return {"bfloat16": "bf16", "float32": "f32"}.get(dtype, dtype)


def _plain_rows(config, images: np.ndarray, timed: set) -> list[_Row]:
  """The baseline rows named in `timed` (plain and matmuls always)."""
  sizes = _sizes(config)
  lr = config.learning_rate
  batches = jax.device_put(plain_vae.binarize_epoch(images, sizes, 0))
  examples = batches.shape[0] * sizes.batch
  box = [plain_vae.init_carry(sizes, lr)]
  compiled, compile_s = _compile(
    plain_vae.plain_epoch(sizes, lr), box[0], batches
  )

  def run_plain():
    box[0], elbo = compiled(box[0], batches)
    jax.block_until_ready(elbo)

  rows = [
    _Row(
      "plain",
      run_plain,
      examples,
      compile_s,
      _memory_mb(compiled),
      compiled.as_text(),
    )
  ]

  if "naive" in timed:
    naive_box = [plain_vae.init_carry(sizes, lr)]
    rng = np.random.default_rng(1)
    order = np.arange(examples)
    naive_compiled, naive_compile_s = _compile(
      plain_vae.naive_step(sizes, lr), naive_box[0], batches[0]
    )

    def run_naive():
      rng.shuffle(order)
      for s in range(examples // sizes.batch):
        raw = images[order[s * sizes.batch : (s + 1) * sizes.batch]]
        batch = (rng.uniform(size=raw.shape) < raw / 255.0).astype(np.float32)
        naive_box[0], elbo = naive_compiled(naive_box[0], batch)
      jax.block_until_ready(elbo)

    rows.append(
      _Row(
        "naive",
        run_naive,
        examples,
        naive_compile_s,
        _memory_mb(naive_compiled),
      )
    )

  params = plain_vae.init(sizes, jax.random.key(0))
  matmul_compiled, matmul_compile_s = _compile(
    plain_vae.matmul_step(sizes), params, batches
  )
  run_matmuls = lambda: jax.block_until_ready(matmul_compiled(params, batches))
  rows.append(
    _Row(
      "matmuls",
      run_matmuls,
      examples,
      matmul_compile_s,
      _memory_mb(matmul_compiled),
    )
  )

  if "mm+adam" in timed:
    adam_box = [plain_vae.init_adam_carry(sizes, lr)]
    adam_compiled, adam_compile_s = _compile(
      plain_vae.matmul_adam_step(sizes, lr), adam_box[0], batches
    )

    def run_adam():
      adam_box[0] = adam_compiled(adam_box[0], batches)
      jax.block_until_ready(adam_box[0])

    rows.append(
      _Row(
        "mm+adam", run_adam, examples, adam_compile_s, _memory_mb(adam_compiled)
      )
    )
  return rows


def _measure(name: str) -> list[dict]:
  """Times the rows of config `name`; their table rows for the record."""
  from vae_jax.data.prepared import prepare_data  # pylint: disable=g-import-not-at-top

  config = _config(name)
  config.validation_size = 0  # the whole training split, as the rows' epoch
  data = prepare_data(config)
  images = np.asarray(data.train)
  timed = set(_ROWS_TIMED.value) | {"plain", "matmuls"}
  rows = [
    *([_trainer_row(config, data)] if "trainer" in timed else []),
    *_plain_rows(config, images, timed),
  ]
  batches = jax.device_put(plain_vae.binarize_epoch(images, _sizes(config), 0))
  for dtype in _DTYPES.value:
    if dtype == config.compute_dtype:
      continue
    other = config.copy_and_resolve_references()
    other.compute_dtype = dtype
    if "trainer" in timed:
      rows.append(_trainer_row(other, data, f"trainer-{_short(dtype)}"))
    rows.append(_matmul_row(config, batches, dtype))
  for row in rows:  # warm-up: caches, allocator, first-call costs
    row.time()
    row.rates.clear()
  for _ in range(_REPEATS.value):
    for row in rows:
      row.time()
  sizes = _sizes(config)
  flops = plain_vae.matmul_flops(sizes)
  by_name = {row.name: row for row in rows}
  limit = statistics.median(by_name["matmuls"].rates)
  gflops = limit * flops / 1e9
  model = f"784-{'-'.join(map(str, sizes.hidden))}-{sizes.latent}"
  print(
    f"\n{name}: {model}, batch {sizes.batch}, {config.optimizer}, "
    f"trainer in {config.compute_dtype}, {bench_data.describe()}; "
    f"{flops / 1e6:.2f} MFLOP of matmuls per training example; matmuls "
    f"at {gflops:.1f} GFLOP/s; medians of {_REPEATS.value} interleaved "
    "repeats"
  )
  print(
    f"{'row':13} {'examples/s':>11} {'% limit':>8} {'× plain':>8} "
    f"{'compile s':>10} {'memory MB':>10}"
  )
  plain_rates = by_name["plain"].rates
  for row in rows:
    rate = statistics.median(row.rates)
    ratio = statistics.median(r / p for r, p in zip(row.rates, plain_rates))
    print(
      f"{row.name:13} {rate:11.0f} {100 * rate / limit:7.1f}% "
      f"{ratio:8.3f} {row.compile_s:10.2f} {row.memory_mb:10.1f}"
    )
    row.summary = dict(
      config=name,
      model=model,
      batch=sizes.batch,
      row=row.name,
      examples_per_sec=rate,
      percent_of_limit=100 * rate / limit,
      ratio_to_plain=ratio,
      compile_sec=row.compile_s,
      memory_mb=row.memory_mb,
      repeats=[round(r) for r in row.rates],
      matmul_gflops=gflops,
      machine=_machine(),
    )
  for row in rows:
    print(json.dumps(row.summary))
  table_rows = [
    dict(
      model=f"{name} {model}, batch {sizes.batch}",
      row=(
        f"matmuls (limit, {gflops:.0f} GFLOP/s)"
        if row.name == "matmuls"
        else row.name
      ),
      **{
        k: row.summary[k]
        for k in (
          "examples_per_sec",
          "percent_of_limit",
          "ratio_to_plain",
          "compile_sec",
          "memory_mb",
        )
      },
    )
    for row in rows
  ]
  if _PROFILE.value:
    heads = (sizes.hidden[-1], sizes.latent)  # the trainer's: two
    shapes = frozenset(
      d for layer in [*sizes.layers, heads] for d in (layer, layer[1:])
    )
    for row in rows:
      if row.hlo:
        steps = row.examples // sizes.batch
        print(f"\n{name} {row.name}: one epoch, XLA:CPU's per-op trace")
        print(
          op_profile.table(
            op_profile.op_times(row.run), row.hlo, steps, param_shapes=shapes
          )
        )
  return table_rows


def _settings() -> dict:
  return dict(
    models=_MODELS.value,
    repeats=_REPEATS.value,
    override=_CONFIG_OVERRIDES.value,
    rows=_ROWS_TIMED.value,
    compute_dtypes=_DTYPES.value,
    data=bench_data.describe(),
  )


def _plain_run(epochs: int) -> None:
  """Three epochs of `plain` as a user runs it: binarise, then the scan."""
  from vae_jax.data.prepared import prepare_data  # pylint: disable=g-import-not-at-top

  config = _config("default")
  images = np.asarray(prepare_data(config).train)
  sizes = _sizes(config)
  plain = plain_vae.plain_epoch(sizes, config.learning_rate)
  carry = plain_vae.init_carry(sizes, config.learning_rate)
  rates = []
  for epoch in range(epochs):
    batches = jax.device_put(plain_vae.binarize_epoch(images, sizes, epoch))
    start = time.perf_counter()
    carry, elbo = plain(carry, batches)
    jax.block_until_ready(elbo)
    rates.append(batches.shape[0] * sizes.batch / (time.perf_counter() - start))
  print(json.dumps({"best_examples_per_sec": max(rates)}))


def _users() -> None:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  trainer, plain = [], []
  for _ in range(5):
    with tempfile.TemporaryDirectory() as workdir:
      subprocess.run(
        [
          sys.executable,
          "-m",
          "experiments.train",
          f"--workdir={workdir}",
          "--config.epochs=3",
          *[f"--config.{o}" for o in _CONFIG_OVERRIDES.value],
        ],
        check=True,
        env=env,
        capture_output=True,
      )
      with open(os.path.join(workdir, "metrics.jsonl")) as f:
        trainer.append(max(json.loads(line)["examples_per_sec"] for line in f))
    out = subprocess.run(
      [sys.executable, __file__, "--plain_run=3"],
      check=True,
      env=env,
      capture_output=True,
      text=True,
    )
    plain.append(
      json.loads(out.stdout.strip().splitlines()[-1])["best_examples_per_sec"]
    )
    print(
      f"trainer {trainer[-1]:8.0f}   plain {plain[-1]:8.0f} examples/s",
      flush=True,
    )
  ratio = statistics.median(t / p for t, p in zip(trainer, plain))
  print(
    f"medians: trainer {statistics.median(trainer):.0f}, plain "
    f"{statistics.median(plain):.0f} examples/s; trainer / plain "
    f"{ratio:.3f} (median of the 5 pairs); {_machine()}"
  )
  print(
    json.dumps(
      dict(trainer=trainer, plain=plain, ratio=ratio, machine=_machine())
    )
  )
  if _RECORD.value:
    pairs = [t / p for t, p in zip(trainer, plain)]
    records.write(
      records.new(
        "train_step_users",
        records.BENCHMARK,
        title="Training throughput as users see it: 3-epoch runs of the "
        "launcher against plain",
        config=_settings(),
        numbers={"trainer ÷ plain, the 5 pairs": [min(pairs), max(pairs)]},
        table=records.Table(
          columns=(
            records.Column(key="row", header="row"),
            records.Column(
              key="examples_per_sec",
              header="examples/s (median of 5)",
              format=",.0f",
            ),
            records.Column(
              key="ratio_to_plain",
              header="× plain (median of the pairs)",
              format=".2f",
            ),
          ),
          rows=(
            dict(
              row="trainer (`make train`'s launcher)",
              examples_per_sec=statistics.median(trainer),
              ratio_to_plain=ratio,
            ),
            dict(
              row="plain",
              examples_per_sec=statistics.median(plain),
              ratio_to_plain=1.0,
            ),
          ),
        ),
      ),
      _RECORD.value,
    )
    print(f"wrote {_RECORD.value}")


def main(argv):
  del argv
  if _PROFILE.value:
    op_profile.enable()  # before JAX's backend starts
  if _PLAIN_RUN.value:
    return _plain_run(_PLAIN_RUN.value)
  print(_machine())
  if _USERS.value:
    return _users()
  rows = [row for name in _MODELS.value for row in _measure(name)]
  if _RECORD.value:
    records.write(
      records.new(
        "train_step",
        records.BENCHMARK,
        title="Training throughput: the trainer against plain JAX and the "
        "matmul limit",
        config=_settings(),
        table=records.Table(columns=_COLUMNS, rows=tuple(rows)),
        notes=f"Medians of {_REPEATS.value} interleaved repeats of one "
        "epoch each, after compilation.",
      ),
      _RECORD.value,
    )
    print(f"wrote {_RECORD.value}")


if __name__ == "__main__":
  app.run(main)
