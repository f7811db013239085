r"""Trains a VAE and writes its run directory; resumes it when it exists.

    python -m experiments.train --workdir=runs/fmnist --epochs=10
    python -m experiments.train --preset=smoke --workdir=runs/smoke

Flags map one to one onto `vae_jax.config.TrainConfig`. `--preset=NAME`
(`vae_jax.presets`) sets the defaults, and flags given explicitly override
it. Running again with the same --workdir resumes the run from its latest
checkpoint; only --epochs (a larger value extends a finished run),
--streaming, --quiet and the logging flags may differ. A bad flag, missing or corrupt data, or a
run directory with other settings ends with one `error:` line and exit
status 2, before any training starts.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys

from absl import app
from absl import flags
from absl import logging

from vae_jax import config as config_lib
from vae_jax import presets
from vae_jax.errors import UserError

_D = config_lib.TrainConfig()

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None,
                    "Run directory; default runs/<date-time>. An existing run "
                    "directory is resumed.")
flags.DEFINE_string("preset", None,
                    f"Defaults from a named preset: {', '.join(presets.PRESETS)} "
                    "(see vae_jax/presets.py); explicit flags override it.")
flags.DEFINE_bool("quiet", False,
                  "No progress bar and no INFO logs (for scripts).")
flags.DEFINE_string(
    "dataset", _D.dataset,
    "A TFDS image dataset by name (fashion_mnist, mnist, binarized_mnist, "
    "kmnist, cifar10, ...), or idx (with --data_dir). fashion_mnist and mnist "
    "are read from IDX files first (--data_dir, then Debian's package).")
flags.DEFINE_string(
    "data_dir", None,
    "Where this dataset's files are: the IDX directory for a local source, "
    "TFDS's data directory for a TFDS source.")
flags.DEFINE_enum("binarization", _D.binarization, config_lib.BINARIZATIONS,
                  "Training-data binarisation.")
flags.DEFINE_integer("validation_size", _D.validation_size,
                     "Examples carved from the end of train for validation.")
# Data (datasets issue)
flags.DEFINE_string("train_split", _D.train_split,
                    "The source's training split (TFDS slicing works).")
flags.DEFINE_string("test_split", _D.test_split, "The source's test split.")
flags.DEFINE_enum("image_layout", _D.image_layout, ("flat", "image"),
                  "flat [N, H*W*C] for MLPs, image [N, H, W, C] for conv nets.")
flags.DEFINE_bool("streaming", _D.streaming,
                  "Stream batches from the host through a prefetching thread "
                  "(for data that does not fit in device memory); needs "
                  "--steps_per_chunk.")
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
flags.DEFINE_float("lr_schedule_epochs", _D.lr_schedule_epochs,
                   "Length of a decaying schedule in epochs; 0 = --epochs. "
                   "Set it if the run may be extended with a larger --epochs.")
flags.DEFINE_float("grad_clip_norm", _D.grad_clip_norm,
                   "Clip gradients to this global norm; 0 = off.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Training batch size.")
flags.DEFINE_integer("epochs", _D.epochs,
                     "Training epochs; a larger value on an existing "
                     "--workdir extends that run.")
flags.DEFINE_integer("steps_per_chunk", _D.steps_per_chunk,
                     "Steps per compiled dispatch, each followed by a "
                     "checkpoint; 0 = one epoch.")
flags.DEFINE_integer("early_stopping_patience", _D.early_stopping_patience,
                     "Stop after this many epochs without validation gain.")
flags.DEFINE_integer("eval_batch_size", _D.eval_batch_size, "Evaluation batch size.")
flags.DEFINE_integer("eval_num_samples", _D.eval_num_samples,
                     "z samples per example in the evaluation ELBO.")
flags.DEFINE_integer("seed", _D.seed, "Seed of initialisation, data order and z.")
flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints,
                     "How many of the latest checkpoints (one per chunk of "
                     "steps) to keep; the best by validation ELBO is kept too.")


def config_from_flags() -> config_lib.TrainConfig:
  """The TrainConfig the command line asks for (not yet validated).

  Each field comes from its flag when the flag is given, else from the
  preset when it sets the field, else from the flag's default (the
  TrainConfig default).
  """
  preset = presets.get_preset(FLAGS.preset) if FLAGS.preset else {}
  values = {}
  for field in dataclasses.fields(config_lib.TrainConfig):
    name = field.name
    if name == "preset":
      values[name] = FLAGS.preset or ""
    elif name in preset and not (name in FLAGS and FLAGS[name].present):
      values[name] = preset[name]
    elif name in FLAGS:
      values[name] = FLAGS[name].value
  if isinstance(values.get("hidden_dims"), list):
    try:
      values["hidden_dims"] = tuple(int(h) for h in values["hidden_dims"])
    except ValueError:
      raise UserError(
          f"--hidden_dims={','.join(FLAGS.hidden_dims)!r} is invalid: give "
          "comma-separated integers, e.g. 500 or 300,300") from None
  return config_lib.TrainConfig(**values)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.quiet:
    logging.set_verbosity(logging.WARNING)
  workdir = FLAGS.workdir or os.path.join(
      "runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
  try:
    config = config_lib.validate(config_from_flags())
    # Imported here so that `--help` and flag errors need no JAX start-up
    # (vae_jax.config imports none; only its check of --optimizer, the last,
    # imports optax).
    from vae_jax import trainer  # pylint: disable=g-import-not-at-top
    if not FLAGS.quiet:
      print(f"run directory: {workdir}", flush=True)
    trainer.train_and_evaluate(config, workdir, progress_bar=not FLAGS.quiet)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if not FLAGS.quiet:
    print(f"done: metrics, checkpoints, figures and config in {workdir}",
          flush=True)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  app.run(main)
