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

from vae_jax import settings
from vae_jax.errors import ConfigError
from vae_jax.names import BINARY_LIKELIHOODS, ELEMENTWISE_ACTIVATIONS
from vae_jax.names import FLOORED_SCHEDULES, LIKELIHOODS, MODEL_LAYOUTS
from vae_jax.names import resolve_image_layout

__all__ = [
  "validate",
  "check_likelihood_fits",
  "to_json_dict",
  "batch_scale",
  "INT32_MAX",
]

INT32_MAX = settings.INT32_MAX


def _bad(name: str, value: Any, must: str) -> ConfigError:
  return ConfigError(
    f"--config.{name}={settings.show(value)} is invalid: {must}"
  )


def _fields(config) -> dict[str, Any]:
  return (
    dict(config.items()) if hasattr(config, "items") else dict(vars(config))
  )


def validate(config):
  """Checks every setting that can be checked without the data: each
  against its declaration (`vae_jax.settings`: type and bounds), then the
  relations between settings, then the optimizer.

  Returns:
    `config`, unchanged.

  Raises:
    ConfigError: naming the setting, its bad value, and what it must be.
  """
  given = _fields(config)
  unknown = sorted(set(given) - set(settings.BY_NAME))
  if unknown:
    raise ConfigError(
      f"unknown setting(s) {', '.join(unknown)}; the settings "
      "are those of vae_jax/configs/default.py"
    )
  missing = sorted(set(settings.BY_NAME) - set(given))
  if missing:
    raise ConfigError(
      f"the config lacks setting(s) {', '.join(missing)}; "
      "start from vae_jax/configs/default.py's get_config()"
    )
  for setting in settings.SETTINGS:
    _check_type(setting.name, given[setting.name], setting.default)
  for setting in settings.SETTINGS:
    must = setting.check(given[setting.name]) if setting.check else ""
    if must:
      raise _bad(setting.name, given[setting.name], must)
  _check_relations(config)
  _check_optimizer(config.optimizer)  # last: the only check that imports JAX
  return config


def _check_relations(c) -> None:
  """What a setting must be given the others."""

  def need(ok: bool, name: str, must: str) -> None:
    if not ok:
      raise _bad(name, getattr(c, name), must)

  need(
    c.model != "ladder" or len(c.latent_dims) >= 2,
    "latent_dims",
    "the ladder has two or more layers, e.g. --config.latent_dims=40,20,10",
  )
  need(
    c.model != "conv" or c.activation in ELEMENTWISE_ACTIVATIONS,
    "activation",
    "the conv model's layers take an elementwise one: "
    f"choose one of {list(ELEMENTWISE_ACTIVATIONS)} (glu is for mlp)",
  )
  layout = resolve_image_layout(c.model, c.image_layout)
  for model, own in MODEL_LAYOUTS.items():
    need(
      not (c.model == model and layout != own),
      "image_layout",
      f"--config.model={model} takes the {own} layout: set "
      f"--config.image_layout={own} or leave it unset ('')",
    )
  need(
    not (c.free_bits > 0 and c.objective != "elbo"),
    "free_bits",
    f"free bits floor the KL of each latent dimension, which "
    f"--config.objective={c.objective} does not have: use "
    "--config.objective=elbo or --config.free_bits=0",
  )
  need(
    not (c.streaming and c.steps_per_chunk == 0),
    "steps_per_chunk",
    "--config.streaming sends the data a chunk of steps at a time: set "
    "--config.steps_per_chunk, e.g. 50",
  )
  scaled = c.learning_rate * batch_scale(
    c.lr_batch_scaling, c.batch_size, c.lr_reference_batch_size
  )
  need(
    scaled <= 1e3,
    "learning_rate",
    f"with --config.lr_batch_scaling={c.lr_batch_scaling} the rate used "
    f"is {scaled:g}: it must be <= 1000",
  )
  need(
    c.lr_floor == 0 or c.lr_schedule in FLOORED_SCHEDULES,
    "lr_floor",
    f"--config.lr_schedule={c.lr_schedule} has no floor: choose one of "
    f"{list(FLOORED_SCHEDULES)} or --config.lr_floor=0",
  )
  need(
    not (c.early_stopping_patience > 0 and c.validation_size == 0),
    "early_stopping_patience",
    "early stopping needs a validation split: set --config.validation_size",
  )


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
    raise _bad(
      "likelihood",
      config.likelihood,
      "a Bernoulli likelihood needs binary data, and "
      "--config.binarization='none' keeps the grey levels: use "
      "--config.binarization=dynamic or static, or a likelihood of "
      f"continuous data: {', '.join(others)}",
    )


def _check_type(name: str, value: Any, default_value: Any) -> None:
  kind = type(default_value)
  if kind is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  elif kind is tuple:
    ok = isinstance(value, (tuple, list)) and all(
      isinstance(v, int) and not isinstance(v, bool) for v in value
    )
  elif kind is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  else:
    ok = isinstance(value, kind)
  if not ok:
    raise _bad(
      name,
      value,
      f"it must be a {kind.__name__}"
      + (" of integers" if kind is tuple else ""),
    )


_WORKING_OPTIMIZERS = "adam, adamw, sgd, rmsprop, lamb"


def _check_optimizer(name: str) -> None:
  """An optax optimizer that fits the train step: a public function of optax
  taking `learning_rate`, whose update takes (gradients, state, params)
  alone and whose state holds no random key (checkpoints and the integrity
  checksums store arrays of numbers)."""
  import optax  # pylint: disable=g-import-not-at-top

  fn = getattr(optax, name, None) if not name.startswith("_") else None
  try:
    takes_rate = fn is not None and (
      "learning_rate" in inspect.signature(fn).parameters
    )
  except (TypeError, ValueError):
    takes_rate = False
  if not (inspect.isfunction(fn) and takes_rate):
    raise _bad(
      "optimizer",
      name,
      "name an optax optimizer that takes a "
      f"learning rate, e.g. {_WORKING_OPTIMIZERS}",
    )
  problem = _optimizer_misfit(name)
  if problem:
    raise _bad(
      "optimizer",
      name,
      f"{problem}: use one that fits the train "
      f"step, e.g. {_WORKING_OPTIMIZERS}",
    )


@functools.lru_cache(maxsize=None)
def _optimizer_misfit(name: str) -> str:
  """'' if optax.NAME fits the step, else why not. Found by tracing its init
  and update abstractly on a small tree of parameters (no device, no
  backend started: a run on several processes initialises JAX later)."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  f32 = jax.numpy.float32
  params = {
    "kernel": jax.ShapeDtypeStruct((3, 2), f32),
    "bias": jax.ShapeDtypeStruct((2,), f32),
  }
  with warnings.catch_warnings():  # e.g. noisy_sgd's warning about its key
    warnings.simplefilter("ignore")
    try:
      optimizer = getattr(optax, name)(learning_rate=1e-3)
      state = jax.eval_shape(optimizer.init, params)
    except Exception as e:  # pylint: disable=broad-except
      return f"it cannot be made from a learning rate alone ({_brief(e)})"
    if any(
      jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.extended)
      for leaf in jax.tree_util.tree_leaves(state)
    ):
      return (
        "its state holds a random key, which the run's checkpoints do not store"
      )
    try:
      jax.eval_shape(optimizer.update, params, state, params)
    except Exception as e:  # pylint: disable=broad-except
      return (
        "its update needs more than the (gradients, state, params) "
        f"that the train step gives ({_brief(e)})"
      )
  return ""


def _brief(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:160]}"


def to_json_dict(config) -> dict[str, Any]:
  """The config as plain JSON values (tuples become lists)."""
  return json.loads(json.dumps(_fields(config)))
