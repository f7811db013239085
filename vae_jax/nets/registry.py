"""Models by name: `config.model` → a `VAEModel` for the data's example shape.

    mlp                       the MLP VAE (`vae_jax.nets.mlp`), flat examples
    conv                      the conv VAE (`vae_jax.nets.conv`), images
                              [H, W, C]; `image_layout=''` (the default)
                              gives each model its own layout
                              (`vae_jax.names.MODEL_LAYOUTS`)
    package.module:factory    your own: `factory(config, event_shape)` returns
                              a model (the example shape comes from the data,
                              not the config)

Every model so built gets the run directory, checkpoints, figures and
evaluation. A model must follow `vae_jax.math.model.VAEModel` and be hashable
by value (a frozen dataclass of plain values), because compiled programs are
keyed by it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Sequence

from vae_jax.errors import ConfigError, UserError

__all__ = ["MODELS", "build_model", "check_model_name"]


def _likelihood(config):
  from vae_jax.math.likelihoods import Likelihood  # pylint: disable=g-import-not-at-top
  return Likelihood(config.likelihood, float(config.gaussian_variance),
                    float(config.min_log_variance))


def _mlp(config, event_shape):
  from vae_jax.nets.mlp import MLPVAE  # pylint: disable=g-import-not-at-top
  if len(event_shape) != 1:
    raise ConfigError(
        f"--config.model=mlp takes flat examples, but the data's examples "
        f"have shape {tuple(event_shape)}: use --config.image_layout=flat "
        "or leave it unset")
  return MLPVAE(event_shape=tuple(event_shape), latent_dim=config.latent_dim,
                hidden_dims=tuple(config.hidden_dims),
                activation=config.activation, likelihood=_likelihood(config),
                compute_dtype=config.compute_dtype)


def _conv(config, event_shape):
  from vae_jax.nets import conv  # pylint: disable=g-import-not-at-top
  problem = conv.check_image_shape(event_shape, config.conv_channels)
  if problem:
    raise ConfigError(f"--config.model=conv: {problem}; use "
                      "--config.image_layout=image (or leave it unset), or "
                      "fewer --config.conv_channels")
  return conv.ConvVAE(event_shape=tuple(event_shape),
                      latent_dim=config.latent_dim,
                      conv_channels=tuple(config.conv_channels),
                      hidden_dims=tuple(config.hidden_dims),
                      activation=config.activation,
                      likelihood=_likelihood(config),
                      compute_dtype=config.compute_dtype)


# The layout each one takes is in vae_jax.names.MODEL_LAYOUTS (JAX-free).
MODELS: dict[str, Callable] = {"mlp": _mlp, "conv": _conv}


def check_model_name(name: str) -> None:
  """Checks `name` without importing JAX: a registered name or `module:factory`."""
  if name in MODELS:
    return
  module, sep, attr = name.partition(":")
  if not sep or not module or not attr:
    raise ConfigError(
        f"--config.model={name!r} is invalid: choose one of {sorted(MODELS)} "
        "or name your own as package.module:factory")
  try:
    found = importlib.util.find_spec(module) is not None
  except Exception:  # pylint: disable=broad-except
    found = False  # (a parent package that raises on import, too)
  if not found:
    raise ConfigError(f"--config.model={name!r}: no module {module!r} can be "
                      "imported; check the name and your PYTHONPATH")


def _call_own_factory(name: str, config, event_shape: tuple[int, ...]):
  """`module:factory`(config, event_shape); whatever the user's code raises
  (a wrong signature, a bug) becomes one ConfigError naming it."""
  module, _, attr = name.partition(":")
  try:
    factory = getattr(importlib.import_module(module), attr, None)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"--config.model={name!r}: importing {module} raised "
                      f"{_describe(e)}") from None
  if not callable(factory):
    raise ConfigError(f"--config.model={name!r}: {module} has no function "
                      f"{attr!r}")
  try:
    return factory(config, event_shape)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(
        f"--config.model={name!r}: {module}.{attr}(config, event_shape="
        f"{event_shape}) raised {_describe(e)}; a factory takes the run's "
        "config and the data's example shape and returns a VAEModel") from None


def _describe(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return f"{type(error).__name__}: {text[:300]}" if text else type(
      error).__name__


def build_model(config, event_shape: Sequence[int]):
  """The model `config.model` names, for examples of shape `event_shape`."""
  from vae_jax.math.model import VAEModel  # pylint: disable=g-import-not-at-top
  name = config.model
  check_model_name(name)
  shape = tuple(int(d) for d in event_shape)
  if name in MODELS:
    model = MODELS[name](config, shape)
  else:
    model = _call_own_factory(name, config, shape)
  if not isinstance(model, VAEModel):
    raise ConfigError(f"--config.model={name!r} returned {type(model).__name__}"
                      ", which lacks the VAEModel methods (init, encode, "
                      "decode, log_likelihood, mean_of_output, log_prior, "
                      "sample_prior, event_shape, latent_dim)")
  try:
    hash(model)
  except TypeError:
    raise ConfigError(f"--config.model={name!r} returned an unhashable model; "
                      "make it a frozen dataclass of plain values") from None
  return model
