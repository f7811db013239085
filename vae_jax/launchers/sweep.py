r"""Trains a grid of runs, vmapped where they share a program; compares them.

    python -m experiments.sweep --config=vae_jax/configs/smoke.py \
        --sweep=kl_weight=0.5,1,2 --sweep=learning_rate=1e-3,3e-4 --seeds=3 \
        --sweep_dir=runs/beta_sweep
    vae-jax-sweep --sweep=latent_dim=2,20 --sweep_dir=runs/latents   # installed

Each `--sweep=NAME=V1,V2,…` lists the values of one setting (a tuple's
items joined by '/': `--sweep=hidden_dims=300/300,500`); the grid is their
product, each point with the seeds config.seed … config.seed + seeds − 1, on
top of `--config` and its `--config.NAME=VALUE` overrides. Every member gets
its own run directory SWEEP_DIR/<settings> (vae_jax.sweep describes the
rest). `--vectorize=on` trains the members that share a compiled program
(all but the traced step inputs and the seed equal) as one vmapped program,
`off` one after another, `auto` off on CPU and on on GPU/TPU. Running the
same command again resumes every unfinished member. A bad grid or flag, a
SWEEP_DIR of another grid, more than 64 members without
`--allow_large_sweep`: one `error:` line, exit status 2, nothing written.
"""

from __future__ import annotations

from absl import flags
from absl import logging

from vae_jax import cli
from vae_jax.errors import UserError

FLAGS = flags.FLAGS
_CONFIG = cli.define_config_flag()
flags.DEFINE_multi_string(
  "sweep", [], "NAME=V1,V2,…: a setting and its values (repeat for a grid)."
)
flags.DEFINE_integer(
  "seeds", 1, "Seeds per grid point: config.seed, config.seed + 1, …"
)
flags.DEFINE_string(
  "sweep_dir",
  None,
  "The sweep's directory (required); an existing one is resumed.",
)
flags.DEFINE_enum(
  "vectorize",
  "auto",
  ["auto", "on", "off"],
  "Train a group's members as one vmapped program (on), one "
  "after another (off), or as fits the device (auto: off on "
  "CPU, on on GPU/TPU).",
)
flags.DEFINE_bool(
  "allow_large_sweep", False, "Allow a grid of more than 64 members."
)
flags.DEFINE_bool("quiet", False, "No INFO logs (for scripts).")


def main(argv):
  del argv  # checked by cli.parse_flags
  if FLAGS.quiet:
    logging.set_verbosity(logging.WARNING)
  if not FLAGS.sweep_dir:
    cli.fail("--sweep_dir is required: the directory of the sweep's runs")
  try:
    # pylint: disable-next=g-import-not-at-top
    from vae_jax.sweep import grid as sweep_grid

    plan = sweep_grid.plan_sweep(
      _CONFIG.value,
      FLAGS.sweep,
      FLAGS.seeds,
      FLAGS.allow_large_sweep,
      cli.config_file(),
    )
    sweep_grid.check_sweep_dir(FLAGS.sweep_dir, plan.description)
    from vae_jax import sweep  # pylint: disable=g-import-not-at-top

    if not FLAGS.quiet:
      print(
        f"sweep of {len(plan.members)} member(s) in {len(plan.groups)} "
        f"group(s): {FLAGS.sweep_dir}",
        flush=True,
      )
    status = sweep.run_sweep(
      plan,
      FLAGS.sweep_dir,
      FLAGS.vectorize,
      progress_bar=False if FLAGS.quiet else None,
    )
  except UserError as e:
    cli.fail(str(e))
  except OSError as e:
    cli.fail(
      f"writing in --sweep_dir={FLAGS.sweep_dir} failed: {e}; rerun "
      "the same command to resume once it is fixed"
    )
  if not FLAGS.quiet:
    counts: dict[str, int] = {}
    for entry in status.values():
      counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    print(
      f"done: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))};"
      f" summary in {FLAGS.sweep_dir}/summary.md",
      flush=True,
    )


def run():
  """The console script's entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
