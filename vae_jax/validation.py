"""Checks a run's config before anything is read, written or compiled.

`validate(config)` takes the ConfigDict of `vae_jax/configs/*.py` (after the
command line's `--config.NAME=VALUE` overrides) and raises `ConfigError`
naming the setting, its bad value and what it must be. It imports no JAX
except for the last check (the optimizer, which needs optax; its update is
traced abstractly, starting no device), so a bad setting is reported in a
fraction of a second.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import warnings
from typing import Any

from vae_jax.errors import ConfigError
from vae_jax.names import ACTIVATIONS, BINARIZATIONS, BINARY_LIKELIHOODS
from vae_jax.names import COMPUTE_DTYPES, ELEMENTWISE_ACTIVATIONS
from vae_jax.names import FLOORED_SCHEDULES, LR_BATCH_SCALINGS
from vae_jax.names import LAYOUTS, LIKELIHOODS, LR_SCHEDULES, MODEL_LAYOUTS
from vae_jax.names import OBJECTIVES
from vae_jax.names import resolve_image_layout

__all__ = ["validate", "check_likelihood_fits", "to_json_dict",
           "batch_scale", "RESUMABLE_FIELDS", "INT32_MAX"]

# The settings a resumed run may change: a larger `epochs` extends the run;
# `streaming` feeds the same batches, bit for bit, either way; so does
# `skip_nonfinite_updates` until a step is not finite (then it lets a run
# that stopped at one go on); `num_devices` only reorders the batch sum (a
# checkpoint restores onto any mesh).
RESUMABLE_FIELDS = ("epochs", "streaming", "skip_nonfinite_updates",
                    "num_devices")

INT32_MAX = 2**31 - 1
# Sizes past these would not fit in memory on any machine this runs on; they
# are refused here rather than hanging in initialisation.
_MAX_WIDTH = 1 << 16
_MAX_SAMPLES = 1 << 20


def _bad(name: str, value: Any, must: str) -> ConfigError:
  return ConfigError(f"--config.{name}={_show(value)} is invalid: {must}")


def _show(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return ",".join(_show(v) for v in value)
  return repr(value) if isinstance(value, str) else str(value)


def _fields(config) -> dict[str, Any]:
  return dict(config.items()) if hasattr(config, "items") else dict(
      vars(config))


def validate(config):
  """Checks every setting that can be checked without the data.

  Returns:
    `config`, unchanged.

  Raises:
    ConfigError: naming the setting, its bad value, and what it must be.
  """
  from vae_jax.configs import default  # pylint: disable=g-import-not-at-top
  expected = _fields(default.get_config())
  given = _fields(config)
  unknown = sorted(set(given) - set(expected))
  if unknown:
    raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; the settings "
                      "are those of vae_jax/configs/default.py")
  missing = sorted(set(expected) - set(given))
  if missing:
    raise ConfigError(f"the config lacks setting(s) {', '.join(missing)}; "
                      "start from vae_jax/configs/default.py's get_config()")
  for name, default_value in expected.items():
    _check_type(name, given[name], default_value)
  c = config

  def need(ok: bool, name: str, must: str) -> None:
    if not ok:
      raise _bad(name, getattr(c, name), must)

  def integer(name: str, low: int, high: int = INT32_MAX) -> None:
    need(low <= getattr(c, name) <= high, name,
         f"it must be an integer from {low} to {high}")

  def number(name: str, low: float, inclusive: bool = True,
             high: float = 1e30) -> None:
    value = getattr(c, name)
    ok = math.isfinite(value) and (value >= low if inclusive else value > low)
    need(ok and value <= high, name,
         f"it must be a finite number {'>=' if inclusive else '>'} {low}"
         + (f" and <= {high:g}" if high < 1e30 else ""))

  from vae_jax.nets import registry  # pylint: disable=g-import-not-at-top
  registry.check_model_name(c.model)
  registry.check_prior_name(c.prior)
  integer("latent_dim", 1, _MAX_WIDTH)
  need(len(c.latent_dims) >= 1
       and all(1 <= d <= _MAX_WIDTH for d in c.latent_dims), "latent_dims",
       f"give the layer sizes from 1 to {_MAX_WIDTH}, the bottom layer "
       "first, e.g. --config.latent_dims=40,20,10")
  need(c.model != "ladder" or len(c.latent_dims) >= 2, "latent_dims",
       "the ladder has two or more layers, e.g. --config.latent_dims=40,20,10")
  integer("num_pseudo_inputs", 1, _MAX_WIDTH)
  integer("num_components", 1, _MAX_WIDTH)
  need(len(c.hidden_dims) >= 1
       and all(1 <= h <= _MAX_WIDTH for h in c.hidden_dims), "hidden_dims",
       f"give one or more widths from 1 to {_MAX_WIDTH}, e.g. "
       "--config.hidden_dims=500 or 300,300")
  need(c.activation in ACTIVATIONS, "activation",
       f"choose one of {list(ACTIVATIONS)}")
  need(c.model != "conv" or c.activation in ELEMENTWISE_ACTIVATIONS,
       "activation", "the conv model's layers take an elementwise one: "
       f"choose one of {list(ELEMENTWISE_ACTIVATIONS)} (glu is for mlp)")
  need(len(c.conv_channels) >= 1
       and all(1 <= ch <= _MAX_WIDTH for ch in c.conv_channels),
       "conv_channels", f"give one or more channel counts from 1 to {_MAX_WIDTH}, e.g. "
       "--config.conv_channels=32,64")
  need(c.likelihood in LIKELIHOODS, "likelihood",
       f"choose one of {list(LIKELIHOODS)}")
  need(c.compute_dtype in COMPUTE_DTYPES, "compute_dtype",
       f"choose one of {list(COMPUTE_DTYPES)}")
  number("gaussian_variance", 0.0, inclusive=False)
  number("min_log_variance", -1e3, high=1e3)
  need(c.binarization in BINARIZATIONS, "binarization",
       f"choose one of {list(BINARIZATIONS)}")
  integer("validation_size", 0)
  need(bool(c.train_split), "train_split", "name a split, e.g. train")
  need(bool(c.test_split), "test_split", "name a split, e.g. test")
  need(c.image_layout in ("",) + LAYOUTS, "image_layout",
       f"choose one of {list(LAYOUTS)}, or '' for the model's own")
  layout = resolve_image_layout(c.model, c.image_layout)
  for model, own in MODEL_LAYOUTS.items():
    need(not (c.model == model and layout != own), "image_layout",
         f"--config.model={model} takes the {own} layout: set "
         f"--config.image_layout={own} or leave it unset ('')")
  need(c.objective in OBJECTIVES, "objective",
       f"choose one of {list(OBJECTIVES)}")
  number("free_bits", 0.0, high=1e6)
  need(not (c.free_bits > 0 and c.objective != "elbo"), "free_bits",
       f"free bits floor the KL of each latent dimension, which "
       f"--config.objective={c.objective} does not have: use "
       "--config.objective=elbo or --config.free_bits=0")
  need(not (c.streaming and c.steps_per_chunk == 0), "steps_per_chunk",
       "--config.streaming sends the data a chunk of steps at a time: set "
       "--config.steps_per_chunk, e.g. 50")
  integer("num_samples", 1, _MAX_SAMPLES)
  integer("eval_num_samples", 1, _MAX_SAMPLES)
  number("kl_weight", 0.0, high=1e6)
  number("kl_warmup_epochs", 0.0, high=1e9)
  number("learning_rate", 0.0, inclusive=False, high=1e3)
  need(c.lr_batch_scaling in LR_BATCH_SCALINGS, "lr_batch_scaling",
       f"choose one of {list(LR_BATCH_SCALINGS)}")
  integer("lr_reference_batch_size", 1, _MAX_SAMPLES)
  need(c.lr_schedule in LR_SCHEDULES, "lr_schedule",
       f"choose one of {list(LR_SCHEDULES)}")
  number("lr_warmup_epochs", 0.0, high=1e9)
  number("lr_schedule_epochs", 0.0, high=1e9)
  number("lr_floor", 0.0, high=1.0)
  need(c.lr_floor == 0 or c.lr_schedule in FLOORED_SCHEDULES, "lr_floor",
       f"--config.lr_schedule={c.lr_schedule} has no floor: choose one of "
       f"{list(FLOORED_SCHEDULES)} or --config.lr_floor=0")
  number("grad_clip_norm", 0.0)
  need(math.isfinite(c.ema_decay) and 0 <= c.ema_decay < 1, "ema_decay",
       "it must be a number >= 0 and < 1 (0 turns the average off), e.g. "
       "0.999")
  integer("batch_size", 1, _MAX_SAMPLES)
  scaled = c.learning_rate * batch_scale(
      c.lr_batch_scaling, c.batch_size, c.lr_reference_batch_size)
  need(scaled <= 1e3, "learning_rate",
       f"with --config.lr_batch_scaling={c.lr_batch_scaling} the rate used "
       f"is {scaled:g}: it must be <= 1000")
  integer("epochs", 1, 10**7)
  integer("steps_per_chunk", 0)
  integer("early_stopping_patience", 0)
  need(not (c.early_stopping_patience > 0 and c.validation_size == 0),
       "early_stopping_patience",
       "early stopping needs a validation split: set --config.validation_size")
  integer("eval_batch_size", 1, _MAX_SAMPLES)
  integer("final_importance_samples", 0, _MAX_SAMPLES)
  integer("seed", 0, INT32_MAX)
  integer("keep_checkpoints", 1, 1000)
  integer("num_devices", 0, 1 << 16)
  _check_optimizer(c.optimizer)  # last: the only check that imports JAX
  return config


def batch_scale(scaling: str, batch_size: int, reference: int) -> float:
  """The factor on the learning rate of `lr_batch_scaling`: (B / B_ref)^p.

  Linear for SGD (Goyal et al. 2017); the square root keeps the noise of
  an adaptive method's update (Malladi et al. 2022, for Adam).
  """
  ratio = batch_size / reference
  return {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[scaling]


def check_likelihood_fits(config, already_binary: bool) -> None:
  """Refuses a likelihood that is not a likelihood of the run's data.

  A Bernoulli on grey levels (binarization=none on data that is not already
  binary) is not a density of the data and can run to NaN. Checked once the
  data is loaded (only then is it known whether it is already binary), still
  before anything is written or compiled.
  """
  binary = config.binarization != "none" or already_binary
  if config.likelihood in BINARY_LIKELIHOODS and not binary:
    others = [n for n in LIKELIHOODS if n not in BINARY_LIKELIHOODS]
    raise _bad("likelihood", config.likelihood,
               "a Bernoulli likelihood needs binary data, and "
               "--config.binarization='none' keeps the grey levels: use "
               "--config.binarization=dynamic or static, or a likelihood of "
               f"continuous data: {', '.join(others)}")


def _check_type(name: str, value: Any, default_value: Any) -> None:
  kind = type(default_value)
  if kind is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif kind is tuple:
    ok = (isinstance(value, (tuple, list))
          and all(isinstance(v, int) and not isinstance(v, bool)
                  for v in value))
  elif kind is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  else:
    ok = isinstance(value, kind)
  if not ok:
    raise _bad(name, value, f"it must be a {kind.__name__}"
               + (" of integers" if kind is tuple else ""))


_WORKING_OPTIMIZERS = "adam, adamw, sgd, rmsprop, lamb"


def _check_optimizer(name: str) -> None:
  """An optax optimizer that fits the train step: a public function of optax
  taking `learning_rate`, whose update takes (gradients, state, params)
  alone and whose state holds no random key (checkpoints and the integrity
  checksums store arrays of numbers)."""
  import optax  # pylint: disable=g-import-not-at-top
  fn = getattr(optax, name, None) if not name.startswith("_") else None
  try:
    takes_rate = "learning_rate" in inspect.signature(fn).parameters
  except (TypeError, ValueError):
    takes_rate = False
  if not (inspect.isfunction(fn) and takes_rate):
    raise _bad("optimizer", name, "name an optax optimizer that takes a "
               f"learning rate, e.g. {_WORKING_OPTIMIZERS}")
  problem = _optimizer_misfit(name)
  if problem:
    raise _bad("optimizer", name, f"{problem}: use one that fits the train "
               f"step, e.g. {_WORKING_OPTIMIZERS}")


@functools.lru_cache(maxsize=None)
def _optimizer_misfit(name: str) -> str:
  """'' if optax.NAME fits the step, else why not. Found by tracing its init
  and update abstractly on a small tree of parameters (no device, no
  backend started: a run on several processes initialises JAX later)."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  f32 = jax.numpy.float32
  params = {"kernel": jax.ShapeDtypeStruct((3, 2), f32),
            "bias": jax.ShapeDtypeStruct((2,), f32)}
  with warnings.catch_warnings():  # e.g. noisy_sgd's warning about its key
    warnings.simplefilter("ignore")
    try:
      optimizer = getattr(optax, name)(learning_rate=1e-3)
      state = jax.eval_shape(optimizer.init, params)
    except Exception as e:  # pylint: disable=broad-except
      return f"it cannot be made from a learning rate alone ({_brief(e)})"
    if any(jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.extended)
           for leaf in jax.tree_util.tree_leaves(state)):
      return ("its state holds a random key, which the run's checkpoints do "
              "not store")
    try:
      jax.eval_shape(optimizer.update, params, state, params)
    except Exception as e:  # pylint: disable=broad-except
      return ("its update needs more than the (gradients, state, params) "
              f"that the train step gives ({_brief(e)})")
  return ""


def _brief(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:160]}"


def to_json_dict(config) -> dict[str, Any]:
  """The config as plain JSON values (tuples become lists)."""
  return json.loads(json.dumps(_fields(config)))
