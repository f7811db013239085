r"""A sweep's group of 8 vmapped as one program against 8 runs in turn.

    .venv/bin/python benchmarks/sweep.py             # default model, 8 members
    .venv/bin/python benchmarks/sweep.py --members=4 --steps=20 --repeats=3
    .venv/bin/python benchmarks/sweep.py --synthetic=512 --hidden_dims=32 \
        --latent_dim=4 --members=2 --steps=4 --repeats=1   # tiny: seconds

Trains `--members` copies of the default config's model (784-500-20 MLP,
batch 128, Adam; each its own seed and learning rate) for `--steps` steps on
Fashion-MNIST, with the training split on the device:

  sequential  each member's compiled chunk (vae_jax.run.programs), one
              member after another: what --vectorize=off does
  vmapped     vae_jax.sweep.group.group_chunk, all members in one
              program: what --vectorize=on does

Compilation is done before timing. Repeats alternate the two modes (so a
busy machine slows both alike); examples/s counts every member's examples
(members × steps × batch) and the table gives the median over repeats. The
row `auto` is the mode `--vectorize=auto` picks on this backend, with its
ratio to the faster of the two. Prints a table, then one JSON line per row.
--hidden_dims and --latent_dim change the model, --synthetic=N and
--data_dir=DIR the data (benchmarks/bench_data.py). --record=PATH also
writes the table as a result record (benchmarks/records.py), e.g.
benchmarks/results/sweep.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_integer("members", 8, "Members of the group.")
flags.DEFINE_integer("steps", 50, "Steps per timed chunk.")
flags.DEFINE_integer("repeats", 5, "Alternating repeats of both modes.")
flags.DEFINE_list("hidden_dims", ["500"], "The members' hidden widths.")
flags.DEFINE_integer("latent_dim", 20, "The members' latent size.")
flags.DEFINE_string(
  "record", "", "Also write the table as a record (JSON) to this path."
)
FLAGS = flags.FLAGS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_data  # pylint: disable=g-import-not-at-top,wrong-import-position
import records  # pylint: disable=g-import-not-at-top,wrong-import-position


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from vae_jax.configs import default  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top
  from vae_jax.data.prepared import prepare_data
  from vae_jax.nets import registry  # pylint: disable=g-import-not-at-top
  from vae_jax.run import programs  # pylint: disable=g-import-not-at-top
  from vae_jax import sweep  # pylint: disable=g-import-not-at-top

  # pylint: disable-next=g-import-not-at-top
  from vae_jax.sweep import group as sweep_group

  config = default.get_config()
  config.hidden_dims = tuple(int(h) for h in FLAGS.hidden_dims)
  config.latent_dim = FLAGS.latent_dim
  bench_data.apply(config)
  data = prepare_data(config)
  model = registry.build_model(config, data.train.shape[1:])
  step_cfg = programs.step_config(config)
  feed = programs.batch_feed(config, data)
  steps_per_epoch = data.num_train // config.batch_size
  n = min(FLAGS.steps, steps_per_epoch)
  states, hparams = [], []
  for i in range(FLAGS.members):
    member = config.copy_and_resolve_references()
    member.seed, member.learning_rate = i, 1e-3 * (1 + i / FLAGS.members)
    states.append(
      programs.init_state(model, step_cfg, programs.run_keys(member)[0])
    )
    hparams.append(programs.hyperparams(member, steps_per_epoch))
  single = programs.compile_chunk(
    model, step_cfg, feed, n, states[0], data.train, hparams[0]
  )
  stack = lambda trees: jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)
  group_states, group_hparams = stack(states), stack(hparams)
  active = jnp.ones(FLAGS.members, bool)
  group = sweep_group.group_chunk.lower(
    model, step_cfg, feed, n, group_states, data.train, group_hparams, active
  ).compile()

  def sequential():
    for i in range(FLAGS.members):
      states[i], metrics, _ = single(states[i], data.train, hparams[i])
      jax.block_until_ready(metrics)

  def vmapped():
    nonlocal group_states
    group_states, metrics, _ = group(
      group_states, data.train, group_hparams, active
    )
    jax.block_until_ready(metrics)

  examples = FLAGS.members * n * config.batch_size
  rates = {"sequential": [], "vmapped": []}
  modes = [("sequential", sequential), ("vmapped", vmapped)]
  for repeat in range(FLAGS.repeats):
    for name, run in modes if repeat % 2 == 0 else modes[::-1]:
      start = time.perf_counter()
      run()
      rates[name].append(examples / (time.perf_counter() - start))
  medians = {k: statistics.median(v) for k, v in rates.items()}
  auto = "vmapped" if sweep.vectorize_choice("auto") else "sequential"
  best = max(medians.values())
  rows = [
    {
      "mode": k,
      "examples_per_sec": medians[k],
      "speedup_vs_sequential": medians[k] / medians["sequential"],
      "of_best": medians[k] / best,
      "repeats": v,
    }
    for k, v in rates.items()
  ]
  rows.append(
    {
      "mode": f"auto ({auto})",
      "examples_per_sec": medians[auto],
      "speedup_vs_sequential": medians[auto] / medians["sequential"],
      "of_best": medians[auto] / best,
      "repeats": rates[auto],
    }
  )
  model_name = "-".join(map(str, (784, *config.hidden_dims, config.latent_dim)))
  print(
    f"{model_name} MLP, {bench_data.describe()}; "
    f"{FLAGS.members} members × {n} steps × batch {config.batch_size}, "
    f"{jax.default_backend()} ({jax.devices()[0].device_kind}), median "
    f"of {FLAGS.repeats} alternating repeats"
  )
  print(f"{'mode':<18} {'examples/s':>12} {'vs sequential':>14} {'of best':>8}")
  for row in rows:
    print(
      f"{row['mode']:<18} {row['examples_per_sec']:>12.0f} "
      f"{row['speedup_vs_sequential']:>13.2f}× {row['of_best']:>8.2f}"
    )
  for row in rows:
    print(
      json.dumps(
        dict(row, members=FLAGS.members, steps=n, backend=jax.default_backend())
      )
    )
  if FLAGS.record:
    column = records.Column
    records.write(
      records.new(
        "sweep",
        records.BENCHMARK,
        title=f"A sweep's group of {FLAGS.members} {model_name} models: "
        "vmapped against one after another",
        config=dict(
          members=FLAGS.members,
          steps=n,
          batch_size=config.batch_size,
          repeats=FLAGS.repeats,
          data=bench_data.describe(),
        ),
        table=records.Table(
          columns=(
            column(key="mode", header="mode"),
            column(key="examples_per_sec", header="examples/s", format=",.0f"),
            column(
              key="speedup_vs_sequential",
              header="vs sequential",
              format=".2f",
              suffix="×",
            ),
          ),
          rows=tuple(
            {
              k: row[k]
              for k in ("mode", "examples_per_sec", "speedup_vs_sequential")
            }
            for row in rows
          ),
        ),
        notes=f"Compiled beforehand; {FLAGS.repeats} alternating repeats, "
        "medians.",
      ),
      FLAGS.record,
    )
    print(f"wrote {FLAGS.record}")
  sys.stdout.flush()


if __name__ == "__main__":
  from vae_jax import cli  # pylint: disable=g-import-not-at-top

  cli.use_cpu_if_alone()
  app.run(main)
