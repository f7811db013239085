"""The typed, frozen configuration of a training run, and its validation.

Every setting of a run lives in one `TrainConfig`; `experiments/train.py`
builds it from absl flags, `validate` checks it before anything is read or
written, and the run directory stores it as config.json.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional, Tuple

from vae_jax.errors import ConfigError

__all__ = ["TrainConfig", "validate", "to_json_dict", "from_json_dict",
           "LR_SCHEDULES", "BINARIZATIONS", "LIKELIHOODS", "ACTIVATIONS"]

# The names that settings choose from. They live here, in a module that
# imports no JAX, so that the launchers check flags before JAX starts
# (vae_jax.model and vae_jax.networks take LIKELIHOODS and ACTIVATIONS from
# here).
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")
BINARIZATIONS = ("dynamic", "static", "none")
LIKELIHOODS = ("bernoulli", "gaussian")  # p(x|z; θ) of make_mlp_vae
ACTIVATIONS = ("relu", "elu", "gelu", "silu", "softplus", "tanh",
               "leaky_relu")  # functions of jax.nn


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """All settings of a run. Defaults: the README's `make train`."""

  # Data.
  dataset: str = "fashion_mnist"
  data_dir: Optional[str] = None
  binarization: str = "dynamic"  # dynamic | static | none
  validation_size: int = 0  # examples carved from the end of train
  # Data (datasets issue)
  train_split: str = "train"  # the source's split names (TFDS slicing works)
  test_split: str = "test"
  image_layout: str = "flat"  # flat [N, H·W·C] for MLPs | image [N, H, W, C]
  streaming: bool = False  # host-side prefetching iterator, not on-device data
  # Model: 784-500-20 MLP, ReLU, Bernoulli decoder (the Flax example's).
  latent_dim: int = 20
  hidden_dims: Tuple[int, ...] = (500,)
  activation: str = "relu"
  likelihood: str = "bernoulli"
  gaussian_variance: float = 1.0
  # Objective.
  num_samples: int = 1  # z samples per example in the training ELBO
  analytic_kl: bool = True
  kl_weight: float = 1.0  # β of the training loss after warm-up
  kl_warmup_epochs: float = 0.0
  # Optimisation.
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  lr_schedule: str = "constant"
  lr_warmup_epochs: float = 0.0
  # Length of the cosine/exponential decay in epochs; 0 = --epochs. Set it to
  # extend a run later (a larger --epochs on resume) without changing the
  # learning rates of the steps already taken.
  lr_schedule_epochs: float = 0.0
  grad_clip_norm: float = 0.0  # 0 turns clipping off
  batch_size: int = 128
  epochs: int = 10
  steps_per_chunk: int = 0  # steps per dispatch and checkpoint; 0 = an epoch
  early_stopping_patience: int = 0  # epochs without val improvement; 0 = off
  # Evaluation.
  eval_batch_size: int = 1000
  eval_num_samples: int = 1
  seed: int = 0
  # Run directory.
  keep_checkpoints: int = 2  # latest chunk-boundary checkpoints kept
  preset: str = ""  # the --preset whose defaults the run started from


def validate(config: TrainConfig) -> TrainConfig:
  """Checks every setting that can be checked without the data.

  Raises:
    ConfigError: naming the flag, its bad value, and what it must be.
  """
  def need(ok: bool, flag: str, value: Any, must: str) -> None:
    if not ok:
      raise ConfigError(f"--{flag}={value!r} is invalid: {must}")

  c = config
  need(c.latent_dim >= 1, "latent_dim", c.latent_dim, "it must be an integer >= 1")
  need(len(c.hidden_dims) >= 1 and all(h >= 1 for h in c.hidden_dims),
       "hidden_dims", ",".join(map(str, c.hidden_dims)),
       "give one or more positive widths, e.g. --hidden_dims=500 or 300,300")
  need(c.activation in ACTIVATIONS, "activation", c.activation,
       f"choose one of {sorted(ACTIVATIONS)}")
  need(c.likelihood in LIKELIHOODS, "likelihood", c.likelihood,
       f"choose one of {list(LIKELIHOODS)}")
  need(c.gaussian_variance > 0, "gaussian_variance", c.gaussian_variance,
       "it must be > 0")
  need(c.binarization in BINARIZATIONS, "binarization", c.binarization,
       f"choose one of {list(BINARIZATIONS)}")
  need(not (c.likelihood == "bernoulli" and c.binarization == "none"),
       "binarization", c.binarization,
       "a Bernoulli likelihood needs binary data: use dynamic or static "
       "binarisation, or --likelihood=gaussian")
  need(c.validation_size >= 0, "validation_size", c.validation_size,
       "it must be >= 0")
  # Data (datasets issue)
  need(bool(c.train_split), "train_split", c.train_split, "name a split, e.g. train")
  need(bool(c.test_split), "test_split", c.test_split, "name a split, e.g. test")
  need(c.image_layout == "flat", "image_layout", c.image_layout,
       "the MLP VAE needs --image_layout=flat (image is for conv nets)")
  need(not (c.streaming and c.steps_per_chunk == 0), "steps_per_chunk",
       c.steps_per_chunk, "--streaming sends the data a chunk of steps at a "
       "time: set --steps_per_chunk, e.g. 50")
  need(c.num_samples >= 1, "num_samples", c.num_samples, "it must be >= 1")
  need(c.eval_num_samples >= 1, "eval_num_samples", c.eval_num_samples,
       "it must be >= 1")
  need(c.kl_weight >= 0, "kl_weight", c.kl_weight, "it must be >= 0")
  need(c.kl_warmup_epochs >= 0, "kl_warmup_epochs", c.kl_warmup_epochs,
       "it must be >= 0")
  need(c.learning_rate > 0, "learning_rate", c.learning_rate,
       "it must be > 0, e.g. 1e-3")
  need(c.lr_schedule in LR_SCHEDULES, "lr_schedule", c.lr_schedule,
       f"choose one of {list(LR_SCHEDULES)}")
  need(c.lr_warmup_epochs >= 0, "lr_warmup_epochs", c.lr_warmup_epochs,
       "it must be >= 0")
  need(c.lr_schedule_epochs >= 0, "lr_schedule_epochs", c.lr_schedule_epochs,
       "it must be >= 0 (0 = the schedule spans --epochs)")
  need(c.grad_clip_norm >= 0, "grad_clip_norm", c.grad_clip_norm,
       "it must be >= 0 (0 turns clipping off)")
  need(c.batch_size >= 1, "batch_size", c.batch_size, "it must be >= 1")
  need(c.epochs >= 1, "epochs", c.epochs, "it must be >= 1")
  need(c.steps_per_chunk >= 0, "steps_per_chunk", c.steps_per_chunk,
       "it must be >= 0 (0 = one chunk per epoch)")
  need(c.early_stopping_patience >= 0, "early_stopping_patience",
       c.early_stopping_patience, "it must be >= 0 (0 = off)")
  need(not (c.early_stopping_patience > 0 and c.validation_size == 0),
       "early_stopping_patience", c.early_stopping_patience,
       "early stopping needs a validation split: set --validation_size")
  need(c.eval_batch_size >= 1, "eval_batch_size", c.eval_batch_size,
       "it must be >= 1")
  need(c.seed >= 0, "seed", c.seed, "it must be >= 0")
  need(c.keep_checkpoints >= 1, "keep_checkpoints", c.keep_checkpoints,
       "it must be >= 1")
  # Last, as the only check that imports JAX (optax does): every other bad
  # flag is reported without that wait.
  import optax  # pylint: disable=g-import-not-at-top
  need(hasattr(optax, c.optimizer) and callable(getattr(optax, c.optimizer)),
       "optimizer", c.optimizer,
       "name an optax optimizer, e.g. adam, adamw, sgd, rmsprop, lamb")
  return config


def to_json_dict(config: TrainConfig) -> dict:
  d = dataclasses.asdict(config)
  d["hidden_dims"] = list(config.hidden_dims)
  return d


def from_json_dict(d: dict) -> TrainConfig:
  names = {f.name for f in dataclasses.fields(TrainConfig)}
  kwargs = {k: v for k, v in d.items() if k in names}
  if "hidden_dims" in kwargs:
    kwargs["hidden_dims"] = tuple(kwargs["hidden_dims"])
  return TrainConfig(**kwargs)


def dumps(config: TrainConfig) -> str:
  return json.dumps(to_json_dict(config), indent=2, sort_keys=True)
