"""The default run, and the definition of every setting: `make train`.

Command: make train  (python -m experiments.train --workdir=runs/default)
The Flax example's 784-500-20 MLP VAE with a Bernoulli decoder on
Fashion-MNIST, dynamic binarisation, Adam 1e-3, batch 128, 10 epochs, seed 0.
Measured before the redesign (seed 0, 2-core AMD EPYC): test ELBO -259.00
nats after epoch 1 and -242.64 after epoch 10 (-242.70 on an Intel Xeon: the
last digits depend on the CPU's summation order); 43 s of training and
evaluation for the 10 epochs. RE-MEASURE PENDING.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Every setting of a run, flat; `--config.NAME=VALUE` overrides one."""
  c = ml_collections.ConfigDict()
  # Data.
  c.dataset = "fashion_mnist"  # a TFDS name, or idx (with data_dir)
  c.data_dir = ""  # where this dataset's files are; '' = the default places
  c.binarization = "dynamic"  # dynamic | static | none
  c.validation_size = 0  # examples carved from the end of train
  c.train_split = "train"  # the source's split names (TFDS slicing works)
  c.test_split = "test"
  c.image_layout = "flat"  # flat [N, H·W·C] | image [N, H, W, C]
  c.streaming = False  # host-side prefetching iterator, not on-device data
  # Model: 784-500-20 MLP, ReLU, Bernoulli decoder (the Flax example's).
  c.model = "mlp"  # a name of vae_jax.nets.registry, or package.module:factory
  c.latent_dim = 20
  c.hidden_dims = (500,)
  c.activation = "relu"
  c.likelihood = "bernoulli"  # bernoulli | gaussian
  c.gaussian_variance = 1.0
  # Objective.
  c.num_samples = 1  # z samples per example in the training ELBO
  c.analytic_kl = True
  c.kl_weight = 1.0  # β of the training loss after warm-up
  c.kl_warmup_epochs = 0.0
  # Optimisation.
  c.optimizer = "adam"  # an optax optimizer taking learning_rate
  c.learning_rate = 1e-3
  c.lr_schedule = "constant"  # constant | cosine | warmup_cosine | exponential
  c.lr_warmup_epochs = 0.0
  # Length of the cosine/exponential decay in epochs; 0 = epochs. Set it to
  # extend a run later (a larger epochs on resume) without changing the
  # learning rates of the steps already taken.
  c.lr_schedule_epochs = 0.0
  c.grad_clip_norm = 0.0  # 0 turns clipping off
  c.batch_size = 128
  c.epochs = 10
  c.steps_per_chunk = 0  # steps per dispatch and checkpoint; 0 = an epoch
  c.early_stopping_patience = 0  # epochs without val improvement; 0 = off
  # A step with a non-finite loss, gradient or state stops the run (exit
  # status 3) at its last good checkpoint; True skips such updates instead
  # and counts them in metrics.jsonl's skipped_updates.
  c.skip_nonfinite_updates = False
  # Evaluation.
  c.eval_batch_size = 1000
  c.eval_num_samples = 1
  c.seed = 0
  # Run directory.
  c.keep_checkpoints = 2  # latest chunk-boundary checkpoints kept
  return c
