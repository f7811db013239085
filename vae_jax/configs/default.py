"""The default run, and the definition of every setting: `make train`.

Command: make train  (python -m experiments.train --workdir=runs/default)
The Flax example's 784-500-20 MLP VAE with a Bernoulli decoder on
Fashion-MNIST, dynamic binarisation, Adam 1e-3, batch 128, 10 epochs, seed 0.
Measured (seed 0, 2-core Intel Xeon, jax 0.10.2, other jobs running): test
ELBO -259.14 nats after epoch 1 and -242.71 after epoch 10; 39 s of
training and evaluation for the 10 epochs (16,000-18,000 training
examples/s), 51 s for the whole `make train` (idle, before the fused
encoder heads: 32 s and 45 s). The last digits depend on the CPU (summation
order) and on how the same formulas are written: the same seed gave -242.80
before the encoder's two heads became one matmul, and before the redesign
-242.64 on an AMD EPYC and -242.70 on an Intel Xeon.
"""

import math

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
  # flat [N, H·W·C] | image [N, H, W, C] | '' = the model's own (mlp, hvae,
  # ladder: flat; conv, conv_hvae: image), so choosing a model needs no
  # second setting.
  c.image_layout = ""
  c.streaming = False  # host-side prefetching iterator, not on-device data
  # Model: 784-500-20 MLP, ReLU, Bernoulli decoder (the Flax example's).
  # mlp | conv | hvae | conv_hvae | ladder | package.module:factory
  # (vae_jax.nets.registry)
  c.model = "mlp"
  c.latent_dim = 20  # hvae, conv_hvae: the size of each of the two layers
  # ladder only: the sizes of its L ≥ 2 layers z_1 (bottom), …, z_L.
  c.latent_dims = (40, 20, 10)
  # p(z) of the top layer: standard_normal | vamp | mog |
  # package.module:factory (vae_jax.nets.registry)
  c.prior = "standard_normal"
  c.num_pseudo_inputs = 500  # vamp: K pseudo-inputs u_k, p(z) = 1/K Σ q(z|u_k)
  c.num_components = 10  # mog: mixture components
  c.hidden_dims = (500,)  # conv: the dense layers between convs and z
  c.conv_channels = (32, 64)  # conv, conv_hvae: stride-2 layers, H and W halve
  # A jax.nn function; glu = gated layers (not for conv; conv_hvae gates its
  # convolutions too).
  c.activation = "relu"
  # bernoulli (binary data) | gaussian (fixed variance) |
  # gaussian_learned_variance | continuous_bernoulli (data in [0, 1])
  c.likelihood = "bernoulli"
  c.gaussian_variance = 1.0  # gaussian
  c.min_log_variance = math.log(1e-3)  # gaussian_learned_variance's floor
  # float32 | bfloat16: the dtype the networks compute in (mixed precision
  # for GPU/TPU: parameters, optimizer state and the loss stay float32).
  c.compute_dtype = "float32"
  # Objective.
  c.objective = "elbo"  # elbo | iwae (Burda et al., K = num_samples)
  c.num_samples = 1  # K: z samples per example in the training objective
  c.analytic_kl = True  # iwae: only the reported ELBO's KL
  c.free_bits = 0.0  # λ nats per latent dimension (elbo only); 0 = off
  c.kl_weight = 1.0  # β of the training loss after warm-up
  c.kl_warmup_epochs = 0.0
  # Optimisation.
  c.optimizer = "adam"  # an optax optimizer taking learning_rate
  c.learning_rate = 1e-3
  # none | linear | sqrt: the rate used is learning_rate × (batch_size /
  # lr_reference_batch_size)^(0 | 1 | ½), so learning_rate is the rate at the
  # reference batch size. Computed on the host into the traced rate.
  c.lr_batch_scaling = "none"
  c.lr_reference_batch_size = 128
  # constant | cosine | warmup_cosine | exponential | linear | onecycle
  # (vae_jax.step.lr_factor); onecycle rises over lr_warmup_epochs.
  c.lr_schedule = "constant"
  c.lr_warmup_epochs = 0.0
  # The factor on learning_rate at the end of cosine, warmup_cosine, linear
  # and onecycle (0: they decay to 0); traced, so a sweep varies it in one
  # program.
  c.lr_floor = 0.0
  # Length of the cosine/exponential decay in epochs; 0 = epochs. Set it to
  # extend a run later (a larger epochs on resume) without changing the
  # learning rates of the steps already taken.
  c.lr_schedule_epochs = 0.0
  c.grad_clip_norm = 0.0  # 0 turns clipping off
  # d of an exponential moving average of the parameters (optax.ema's
  # debiased one, vae_jax.step.averaged_params), in [0, 1); 0 = off. When on,
  # evaluation, the best checkpoint and log p(x) use the average. Whether it
  # is on is static, the decay itself traced.
  c.ema_decay = 0.0
  c.batch_size = 128
  c.epochs = 10
  c.steps_per_chunk = 0  # steps per dispatch and checkpoint; 0 = an epoch
  c.early_stopping_patience = 0  # epochs without val improvement; 0 = off
  # A step with a non-finite loss, gradient or state stops the run (exit
  # status 3) at its last good checkpoint; True skips such updates instead
  # and counts them in metrics.jsonl's skipped_updates, and stops when more
  # than 10% of an epoch's are skipped (run.stages.MAX_SKIPPED_SHARE).
  c.skip_nonfinite_updates = False
  # Evaluation.
  c.eval_batch_size = 1000
  c.eval_num_samples = 1
  # K of the importance-sampled test log p(x) at the end of the run, on the
  # best checkpoint (else the last state); 0 = off. Minutes for K = 5000.
  c.final_importance_samples = 0
  c.seed = 0
  # Run directory.
  c.keep_checkpoints = 2  # latest chunk-boundary checkpoints kept
  # Devices (per process) of the data-parallel mesh: the batch is split over
  # them, parameters replicated (vae_jax/run/mesh.py); 0 = all local devices.
  # May change on resume. A sweep shards the members of a vmapped group over
  # them instead (experiments/sweep.py).
  c.num_devices = 1
  return c
