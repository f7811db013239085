r"""Evaluates a checkpoint of a run and regenerates its figures.

    python -m experiments.evaluate --workdir=runs/fmnist
    python -m experiments.evaluate --workdir=runs/fmnist --checkpoint=latest
    python -m experiments.evaluate --workdir=runs/fmnist --checkpoint=4680 \
        --num_samples=10

Reloads WORKDIR/config.json, rebuilds the model and the data, restores the
checkpoint and writes WORKDIR/eval.json: the test ELBO (nats per example,
z sampled) with its standard error, the KL and log-likelihood terms, the step
and the number of examples; then redraws WORKDIR/figures from that
checkpoint. --checkpoint=best is the best by validation ELBO (the default
when the run has a validation split), latest the last one saved, or a step
number. A missing run, checkpoint or data file ends with one `error:` line
and exit status 2.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging

from vae_jax.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run directory to evaluate.")
flags.DEFINE_string("checkpoint", None,
                    "best, latest or a step number; default: best when the "
                    "run has a validation split, else latest.")
flags.DEFINE_integer("num_samples", None,
                     "z samples per example in the ELBO estimate; default: "
                     "the run's --eval_num_samples.")
flags.DEFINE_bool("figures", True, "Regenerate WORKDIR/figures.")
flags.DEFINE_bool("quiet", False, "No INFO logs (for scripts).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.quiet:
    logging.set_verbosity(logging.WARNING)
  try:
    if not FLAGS.workdir:
      raise UserError("--workdir is required: the run directory that "
                      "experiments/train.py wrote")
    # Imported here so that `--help` and flag errors need no JAX start-up.
    from vae_jax import trainer  # pylint: disable=g-import-not-at-top
    record = trainer.evaluate_run(FLAGS.workdir, FLAGS.checkpoint,
                                  FLAGS.num_samples, figures=FLAGS.figures)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if not FLAGS.quiet:
    print(f"{record['checkpoint']} checkpoint, step {record['step']}: test "
          f"ELBO {record['test_elbo']:.2f} ± {record['test_elbo_stderr']:.2f} "
          f"nats; eval.json and figures in {FLAGS.workdir}", flush=True)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
