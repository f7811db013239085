r"""Evaluates a checkpoint of a run and regenerates its figures.

    python -m experiments.evaluate --workdir=runs/fmnist
    python -m experiments.evaluate --workdir=runs/fmnist --checkpoint=latest
    python -m experiments.evaluate --workdir=runs/fmnist --checkpoint=4680 \
        --num_samples=10

Reloads WORKDIR/config.json, rebuilds the model and the data, restores the
checkpoint and writes WORKDIR/eval.json: the importance-sampled log p(x)
(K = --num_importance_samples per example) and the test ELBO (nats per
example, z sampled), each with its standard error, their gap (the estimate
of KL(q(z|x) ‖ p(z|x))), the KL and log-likelihood terms, the KL per latent
dimension and the active units; then redraws WORKDIR/figures. With
--gap_decomposition it also splits the gap, on the first --gap_examples test
images, into the approximation gap log p(x) − L[q*] and the amortisation gap
L[q*] − L[q], q* being q optimised for each image alone
(vae_jax/inference_gap.py). --checkpoint=best is the best by validation
ELBO (the default when there is one), latest the last one saved, or a step
number. A missing run, checkpoint or data file ends with one `error:` line
and exit status 2.
"""

from __future__ import annotations

from absl import flags
from absl import logging

from vae_jax import cli
from vae_jax.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run directory to evaluate.")
flags.DEFINE_string(
  "checkpoint",
  None,
  "best, latest or a step number; default: best when the "
  "run has one, else latest.",
)
flags.DEFINE_integer(
  "num_samples",
  None,
  "z samples per example in the ELBO estimate; default: "
  "the run's config.eval_num_samples.",
)
flags.DEFINE_integer(
  "num_importance_samples",
  5000,
  "K of the importance-sampled log p(x) per example "
  "(Burda et al.), and the gap to the ELBO.",
)
flags.DEFINE_integer(
  "max_examples", None, "Evaluate the first N test examples only; default all."
)
flags.DEFINE_bool(
  "gap_decomposition",
  False,
  "Split log p(x) − ELBO into the approximation gap "
  "(log p(x) − L[q*]) and the amortisation gap (L[q*] − L[q]), "
  "q* being q optimised for each image alone (one-layer "
  "models); eval.json gets the gap keys, figures/ "
  "gap_decomposition.png the picture.",
)
flags.DEFINE_integer(
  "gap_examples",
  1000,
  "Test images of --gap_decomposition (the first N); 0: "
  "all those evaluated. Not given: 1000, or all if fewer.",
)
flags.DEFINE_integer(
  "gap_max_steps",
  2000,
  "The cap on Adam steps per image of --gap_decomposition "
  "(an image stops earlier when its ELBO stops improving).",
)
flags.DEFINE_enum(
  "gap_init",
  "encoder",
  ["encoder", "prior"],
  "Where --gap_decomposition starts q: the encoder's output, or N(0, I).",
)
flags.DEFINE_bool("figures", True, "Regenerate WORKDIR/figures.")
flags.DEFINE_bool("quiet", False, "No INFO logs (for scripts).")


def main(argv):
  del argv  # checked by cli.parse_flags
  if FLAGS.quiet:
    logging.set_verbosity(logging.WARNING)
  try:
    if not FLAGS.workdir:
      raise UserError(
        "--workdir is required: the run directory that "
        "experiments/train.py wrote"
      )
    # pylint: disable-next=g-import-not-at-top
    from vae_jax.store import workdir as workdir_lib

    workdir_lib.check_workdir(FLAGS.workdir, for_training=False)
    if FLAGS.num_importance_samples < 1:
      raise UserError(
        f"--num_importance_samples="
        f"{FLAGS.num_importance_samples} is invalid: it must be "
        ">= 1, e.g. 5000"
      )
    if FLAGS.max_examples is not None and FLAGS.max_examples < 1:
      raise UserError(
        f"--max_examples={FLAGS.max_examples} is invalid: it must be >= 1"
      )
    gap_flags = [
      n
      for n in ("gap_examples", "gap_max_steps", "gap_init")
      if FLAGS[n].present
    ]
    if gap_flags and not FLAGS.gap_decomposition:
      raise UserError(
        f"--{gap_flags[0]} has no effect without "
        "--gap_decomposition: add --gap_decomposition"
      )
    # Imported here so that `--help` and flag errors need no JAX start-up.
    from vae_jax.run import evaluate  # pylint: disable=g-import-not-at-top

    gap = None
    if FLAGS.gap_decomposition:
      from vae_jax import inference_gap  # pylint: disable=g-import-not-at-top

      gap = evaluate.GapRequest(
        examples=(
          FLAGS.gap_examples if FLAGS["gap_examples"].present else None
        ),
        settings=inference_gap.GapSettings(
          init=FLAGS.gap_init, max_steps=FLAGS.gap_max_steps
        ),
      )
    record = evaluate.evaluate_run(
      FLAGS.workdir,
      FLAGS.checkpoint,
      FLAGS.num_samples,
      figures=FLAGS.figures,
      num_importance_samples=FLAGS.num_importance_samples,
      max_examples=FLAGS.max_examples,
      progress=None if not FLAGS.quiet else False,
      gap=gap,
    )
  except UserError as e:
    cli.fail(str(e))
  except OSError as e:  # a full disk, a directory removed or made read-only
    cli.fail(f"writing in --workdir={FLAGS.workdir} failed: {e}")
  if not FLAGS.quiet:
    print(
      f"{record['checkpoint']} checkpoint, step {record['step']}: test "
      f"log p(x) {record['test_log_px']:.2f} ± "
      f"{record['test_log_px_stderr']:.2f} (K = "
      f"{record['num_importance_samples']}), ELBO "
      f"{record['test_elbo']:.2f} ± {record['test_elbo_stderr']:.2f}, gap "
      f"{record['test_gap']:.2f} nats over {record['num_examples']} "
      f"examples; eval.json in {FLAGS.workdir}",
      flush=True,
    )
    if gap is not None:
      print(
        f"gap over {record['gap_examples']} images: inference "
        f"{record['inference_gap']:.2f} = approximation "
        f"{record['approximation_gap']:.2f} ± "
        f"{record['approximation_gap_stderr']:.2f} + amortisation "
        f"{record['amortisation_gap']:.2f} ± "
        f"{record['amortisation_gap_stderr']:.2f} nats",
        flush=True,
      )


def run():
  """The console script's entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
