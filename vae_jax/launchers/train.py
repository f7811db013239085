r"""Trains a VAE and writes its run directory; resumes it when it exists.

    python -m experiments.train --workdir=runs/fmnist
    python -m experiments.train --config=vae_jax/configs/smoke.py --config.epochs=1
    vae-jax-train --config.latent_dim=2 --config.epochs=20    # installed

`--config` is an ml_collections config file (default: the packaged
vae_jax/configs/default.py) and `--config.NAME=VALUE` overrides one of its
settings. Running again with the same --workdir resumes the run from its
latest checkpoint; only config.epochs (a larger value extends a finished
run), config.streaming, config.skip_nonfinite_updates, config.num_devices,
--quiet and the logging flags may differ.

Several processes (hosts): the same command in each, with the same
--workdir on a shared file system, plus --coordinator_address=HOST:PORT
--num_processes=N --process_id=I (or none of them under SLURM's srun or on
a Cloud TPU pod slice, where JAX reads the environment); README.md "Several
devices and hosts" has the commands.

A bad flag, missing or corrupt data, a run directory that cannot be used, has other settings or is in use by another
training process ends with one `error:` line and exit status 2, before any
training starts. A non-finite loss, gradient or state ends the run with one
`error:` line and exit status 3 (its checkpoints stay finite).
"""

from __future__ import annotations

import datetime
import os

from absl import flags
from absl import logging

from vae_jax import cli
from vae_jax.errors import NonFiniteError, UserError

FLAGS = flags.FLAGS
_CONFIG = cli.define_config_flag()
flags.DEFINE_string(
  "workdir",
  None,
  "Run directory; default runs/<date-time>. An existing run "
  "directory is resumed.",
)
flags.DEFINE_bool(
  "quiet", False, "No progress bar and no INFO logs (for scripts)."
)
# Several processes (vae_jax/run/distributed.py): where they run, not what
# they compute, so not in the config (nor in config.json).
flags.DEFINE_string(
  "coordinator_address",
  None,
  "HOST:PORT of process 0 for jax.distributed (several "
  "processes, e.g. hosts); unset: one process, or the "
  "cluster's own (SLURM, Cloud TPU).",
)
flags.DEFINE_integer(
  "num_processes",
  None,
  "How many processes train the run (with --coordinator_address).",
)
flags.DEFINE_integer(
  "process_id",
  None,
  "This process's number, 0 to num_processes - 1; 0 "
  "writes metrics, figures and TensorBoard.",
)
flags.DEFINE_integer(
  "distributed_timeout_s", 300, "Seconds to wait for all processes to connect."
)


def main(argv):
  del argv  # checked by cli.parse_flags
  if FLAGS.quiet:
    logging.set_verbosity(logging.WARNING)
  workdir = FLAGS.workdir or os.path.join(
    "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  )
  config_file = cli.config_file()
  try:
    from vae_jax import validation  # pylint: disable=g-import-not-at-top

    # pylint: disable-next=g-import-not-at-top
    from vae_jax.store import workdir as workdir_lib

    workdir_lib.check_workdir(workdir)  # before JAX starts
    config = validation.validate(_CONFIG.value)
    # pylint: disable-next=g-import-not-at-top
    from vae_jax.run import distributed

    distributed.initialize(
      FLAGS.coordinator_address,
      FLAGS.num_processes,
      FLAGS.process_id,
      FLAGS.distributed_timeout_s,
    )
    # Imported here so that `--help` and flag errors need no JAX start-up.
    from vae_jax.run import loop  # pylint: disable=g-import-not-at-top

    # pylint: disable-next=g-import-not-at-top
    import jax

    primary = jax.process_index() == 0
    if jax.process_count() > 1 and not FLAGS.workdir:
      raise UserError(
        f"{jax.process_count()} processes train one run: give each the "
        "same --workdir, on a file system they share"
      )
    if not FLAGS.quiet and primary:
      print(f"run directory: {workdir}", flush=True)
    loop.train_and_evaluate(
      config,
      workdir,
      progress_bar=None if not FLAGS.quiet and primary else False,
      config_file=config_file,
      checked=True,
    )
  except UserError as e:
    cli.fail(str(e))
  except NonFiniteError as e:
    cli.fail(str(e), status=3)
  except OSError as e:  # a full disk, a directory removed or made read-only
    cli.fail(
      f"writing in --workdir={workdir} failed: {e}; what it holds "
      "stays resumable: make room (or fix the directory) and rerun "
      "the same command"
    )
  if not FLAGS.quiet and primary:
    print(
      f"done: metrics, checkpoints, figures and config in {workdir}", flush=True
    )


def run():
  """The console script's entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
