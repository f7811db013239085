r"""Trains a VAE and writes its run directory.

    python -m experiments.train --workdir=runs/fmnist --epochs=10

Flags map one to one onto `vae_jax.config.TrainConfig`. A bad flag, missing or
corrupt data, or a run directory that would be overwritten ends with one
`error:` line and exit status 2, before any training starts.
"""

from __future__ import annotations

import datetime
import os
import sys

from absl import app
from absl import flags
from absl import logging

from vae_jax import config as config_lib
from vae_jax.errors import UserError

_D = config_lib.TrainConfig()

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory; default runs/<date-time>.")
flags.DEFINE_string("dataset", _D.dataset, "fashion_mnist, or idx (with --data_dir).")
flags.DEFINE_string("data_dir", None, "Directory of the dataset's files.")
flags.DEFINE_enum("binarization", _D.binarization, config_lib.BINARIZATIONS,
                  "Training-data binarisation.")
flags.DEFINE_integer("validation_size", _D.validation_size,
                     "Examples carved from the end of train for validation.")
flags.DEFINE_integer("latent_dim", _D.latent_dim, "Size of z.")
flags.DEFINE_list("hidden_dims", [str(h) for h in _D.hidden_dims],
                  "Encoder hidden widths (decoder mirrors them), e.g. 300,300.")
flags.DEFINE_string("activation", _D.activation, "Hidden activation.")
flags.DEFINE_string("likelihood", _D.likelihood, "bernoulli or gaussian.")
flags.DEFINE_float("gaussian_variance", _D.gaussian_variance,
                   "Fixed variance of a Gaussian likelihood.")
flags.DEFINE_integer("num_samples", _D.num_samples, "z samples per example.")
flags.DEFINE_bool("analytic_kl", _D.analytic_kl,
                  "Closed-form KL (else Monte-Carlo).")
flags.DEFINE_float("kl_weight", _D.kl_weight, "β: KL weight of the training loss.")
flags.DEFINE_float("kl_warmup_epochs", _D.kl_warmup_epochs,
                   "Epochs over which the KL weight rises linearly from 0.")
flags.DEFINE_string("optimizer", _D.optimizer, "An optax optimizer by name.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Base learning rate.")
flags.DEFINE_string("lr_schedule", _D.lr_schedule,
                    "constant, cosine, warmup_cosine or exponential.")
flags.DEFINE_float("lr_warmup_epochs", _D.lr_warmup_epochs,
                   "Linear learning-rate warm-up, in epochs.")
flags.DEFINE_float("grad_clip_norm", _D.grad_clip_norm,
                   "Clip gradients to this global norm; 0 = off.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Training batch size.")
flags.DEFINE_integer("epochs", _D.epochs, "Training epochs.")
flags.DEFINE_integer("steps_per_chunk", _D.steps_per_chunk,
                     "Steps per compiled dispatch; 0 = one epoch.")
flags.DEFINE_integer("early_stopping_patience", _D.early_stopping_patience,
                     "Stop after this many epochs without validation gain.")
flags.DEFINE_integer("eval_batch_size", _D.eval_batch_size, "Evaluation batch size.")
flags.DEFINE_integer("eval_num_samples", _D.eval_num_samples,
                     "z samples per example in the evaluation ELBO.")
flags.DEFINE_integer("seed", _D.seed, "Seed of initialisation, data order and z.")


def config_from_flags() -> config_lib.TrainConfig:
  """The TrainConfig the command line asks for (not yet validated)."""
  try:
    hidden = tuple(int(h) for h in FLAGS.hidden_dims)
  except ValueError:
    raise UserError(
        f"--hidden_dims={','.join(FLAGS.hidden_dims)!r} is invalid: give "
        "comma-separated integers, e.g. 500 or 300,300") from None
  return config_lib.TrainConfig(
      dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
      binarization=FLAGS.binarization, validation_size=FLAGS.validation_size,
      latent_dim=FLAGS.latent_dim, hidden_dims=hidden,
      activation=FLAGS.activation, likelihood=FLAGS.likelihood,
      gaussian_variance=FLAGS.gaussian_variance,
      num_samples=FLAGS.num_samples, analytic_kl=FLAGS.analytic_kl,
      kl_weight=FLAGS.kl_weight, kl_warmup_epochs=FLAGS.kl_warmup_epochs,
      optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
      lr_schedule=FLAGS.lr_schedule, lr_warmup_epochs=FLAGS.lr_warmup_epochs,
      grad_clip_norm=FLAGS.grad_clip_norm, batch_size=FLAGS.batch_size,
      epochs=FLAGS.epochs, steps_per_chunk=FLAGS.steps_per_chunk,
      early_stopping_patience=FLAGS.early_stopping_patience,
      eval_batch_size=FLAGS.eval_batch_size,
      eval_num_samples=FLAGS.eval_num_samples, seed=FLAGS.seed)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  workdir = FLAGS.workdir or os.path.join(
      "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
  try:
    config = config_lib.validate(config_from_flags())
    # Imported here so that `--help` and flag errors need no JAX start-up.
    from vae_jax import trainer  # pylint: disable=g-import-not-at-top
    print(f"run directory: {workdir}", flush=True)
    trainer.train_and_evaluate(config, workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"done: metrics, figures and config in {workdir}", flush=True)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
