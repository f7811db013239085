"""Models and priors by name: `config.model` → a `VAEModel` for the data's
example shape, with the prior `config.prior` on its top latent layer.

    mlp                       the MLP VAE (`vae_jax.nets.mlp`), flat examples
    conv                      the conv VAE (`vae_jax.nets.conv`), images
                              [H, W, C]; `image_layout=''` (the default)
                              gives each model its own layout
                              (`vae_jax.names.MODEL_LAYOUTS`)
    hvae, conv_hvae           the two-layer HVAE of Tomczak & Welling
                              (`vae_jax.nets.hierarchical`), flat / images
    ladder                    L ≥ 2 layers of sizes `latent_dims`, bottom-up
                              then top-down (`vae_jax.nets.ladder`), flat
    package.module:factory    your own: `factory(config, event_shape)` returns
                              a model (the example shape comes from the data,
                              not the config)

Priors (`config.prior`, `vae_jax.math.priors`):

    standard_normal           N(0, I)
    vamp                      the VampPrior, `num_pseudo_inputs` pseudo-inputs
    mog                       a learned mixture of `num_components` Gaussians
    package.module:factory    your own: `factory(config, latent_dim)` returns
                              a prior component (init, log_prob, sample)

Every model so built gets the run directory, checkpoints, figures and
evaluation. A model must follow `vae_jax.math.model.VAEModel` and be hashable
by value (a frozen dataclass of plain values), because compiled programs are
keyed by it; so must a prior.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, Sequence

from vae_jax.errors import ConfigError, UserError

__all__ = [
  "MODELS",
  "PRIORS",
  "build_model",
  "build_prior",
  "check_model_name",
  "check_prior_name",
]


def _likelihood(config):
  from vae_jax.math.likelihoods import Likelihood  # pylint: disable=g-import-not-at-top

  return Likelihood(
    config.likelihood,
    float(config.gaussian_variance),
    float(config.min_log_variance),
  )


def _standard_normal(config, latent_dim, event_shape):
  del config, event_shape
  from vae_jax.math.priors import StandardNormal  # pylint: disable=g-import-not-at-top

  return StandardNormal(latent_dim)


def _vamp(config, latent_dim, event_shape):
  from vae_jax.math.priors import VampPrior  # pylint: disable=g-import-not-at-top

  return VampPrior(
    latent_dim, tuple(event_shape), int(config.num_pseudo_inputs)
  )


def _mog(config, latent_dim, event_shape):
  del event_shape
  from vae_jax.math.priors import MixtureOfGaussians  # pylint: disable=g-import-not-at-top

  return MixtureOfGaussians(latent_dim, int(config.num_components))


# The names are in vae_jax.names.PRIORS (JAX-free).
PRIORS: dict[str, Callable] = {
  "standard_normal": _standard_normal,
  "vamp": _vamp,
  "mog": _mog,
}
_PRIOR_METHODS = ("init", "log_prob", "sample")


def build_prior(config, latent_dim: int, event_shape: Sequence[int]):
  """The prior `config.prior` names, on a top layer of `latent_dim`."""
  name = config.prior
  if name in PRIORS:
    return PRIORS[name](config, latent_dim, event_shape)
  factory = _factory("prior", name)
  prior = _call_factory("prior", name, factory, config, latent_dim)
  missing = [m for m in _PRIOR_METHODS if not callable(getattr(prior, m, None))]
  if missing:
    raise ConfigError(
      f"--config.prior={name!r} returned "
      f"{type(prior).__name__}, which lacks the prior's "
      f"method(s) {', '.join(missing)} (init, log_prob and "
      "sample; see vae_jax.math.priors)"
    )
  _check_hashable("prior", name, prior)
  return prior


def _need_flat(config, event_shape):
  if len(event_shape) != 1:
    raise ConfigError(
      f"--config.model={config.model} takes flat examples, but the data's "
      f"examples have shape {tuple(event_shape)}: use "
      "--config.image_layout=flat or leave it unset"
    )


def _need_image(config, event_shape):
  from vae_jax.nets import conv  # pylint: disable=g-import-not-at-top

  problem = conv.check_image_shape(event_shape, config.conv_channels)
  if problem:
    raise ConfigError(
      f"--config.model={config.model}: {problem}; use "
      "--config.image_layout=image (or leave it unset), or "
      "fewer --config.conv_channels"
    )


def _mlp(config, event_shape):
  from vae_jax.nets.mlp import MLPVAE  # pylint: disable=g-import-not-at-top

  _need_flat(config, event_shape)
  return MLPVAE(
    event_shape=tuple(event_shape),
    latent_dim=config.latent_dim,
    hidden_dims=tuple(config.hidden_dims),
    activation=config.activation,
    likelihood=_likelihood(config),
    compute_dtype=config.compute_dtype,
    prior=_one_layer_prior(config, event_shape),
  )


def _one_layer_prior(config, event_shape, latent_dim=None):
  """The prior component of a top layer of `latent_dim` (default
  config.latent_dim), or None for N(0, I) (the models' default)."""
  if config.prior == "standard_normal":
    return None
  latent_dim = config.latent_dim if latent_dim is None else latent_dim
  return build_prior(config, latent_dim, event_shape)


def _conv(config, event_shape):
  from vae_jax.nets import conv  # pylint: disable=g-import-not-at-top

  _need_image(config, event_shape)
  return conv.ConvVAE(
    event_shape=tuple(event_shape),
    latent_dim=config.latent_dim,
    conv_channels=tuple(config.conv_channels),
    hidden_dims=tuple(config.hidden_dims),
    activation=config.activation,
    likelihood=_likelihood(config),
    compute_dtype=config.compute_dtype,
    prior=_one_layer_prior(config, event_shape),
  )


def _hierarchical_settings(config, event_shape, latent_dim):
  return dict(
    event_shape=tuple(event_shape),
    hidden_dims=tuple(config.hidden_dims),
    activation=config.activation,
    likelihood=_likelihood(config),
    compute_dtype=config.compute_dtype,
    prior=_one_layer_prior(config, event_shape, latent_dim),
  )


def _hvae(config, event_shape):
  from vae_jax.nets.hierarchical import HVAE  # pylint: disable=g-import-not-at-top

  _need_flat(config, event_shape)
  return HVAE(
    latent_dim=config.latent_dim,
    **_hierarchical_settings(config, event_shape, config.latent_dim),
  )


def _conv_hvae(config, event_shape):
  from vae_jax.nets.hierarchical import ConvHVAE  # pylint: disable=g-import-not-at-top

  _need_image(config, event_shape)
  return ConvHVAE(
    latent_dim=config.latent_dim,
    conv_channels=tuple(config.conv_channels),
    **_hierarchical_settings(config, event_shape, config.latent_dim),
  )


def _ladder(config, event_shape):
  from vae_jax.nets.ladder import LadderVAE  # pylint: disable=g-import-not-at-top

  _need_flat(config, event_shape)
  sizes = tuple(int(d) for d in config.latent_dims)
  if len(sizes) < 2:
    raise ConfigError(
      f"--config.latent_dims={','.join(map(str, sizes))} is "
      "invalid: the ladder has two or more layers, e.g. "
      "--config.latent_dims=40,20,10"
    )
  return LadderVAE(
    latent_dims=sizes, **_hierarchical_settings(config, event_shape, sizes[-1])
  )


# The layout each one takes is in vae_jax.names.MODEL_LAYOUTS (JAX-free).
MODELS: dict[str, Callable] = {
  "mlp": _mlp,
  "conv": _conv,
  "hvae": _hvae,
  "conv_hvae": _conv_hvae,
  "ladder": _ladder,
}


def _check_name(setting: str, name: str, registered) -> None:
  """Checks `name` without importing JAX: registered, or `module:factory`."""
  if name in registered:
    return
  module, sep, attr = name.partition(":")
  if not sep or not module or not attr:
    raise ConfigError(
      f"--config.{setting}={name!r} is invalid: choose one of "
      f"{sorted(registered)} or name your own as package.module:factory"
    )
  try:
    found = importlib.util.find_spec(module) is not None
  except Exception:  # pylint: disable=broad-except
    found = False  # (a parent package that raises on import, too)
  if not found:
    raise ConfigError(
      f"--config.{setting}={name!r}: no module {module!r} "
      "can be imported; check the name and your PYTHONPATH"
    )


def check_model_name(name: str) -> None:
  """Checks `name` without importing JAX: a registered name or `module:factory`."""
  _check_name("model", name, MODELS)


def check_prior_name(name: str) -> None:
  """Checks a prior's name as `check_model_name` does a model's."""
  _check_name("prior", name, PRIORS)


def _factory(setting: str, name: str) -> Callable:
  module, _, attr = name.partition(":")
  factory = getattr(importlib.import_module(module), attr, None)
  if not callable(factory):
    raise ConfigError(
      f"--config.{setting}={name!r}: {module} has no function {attr!r}"
    )
  return factory


def _call_factory(setting: str, name: str, factory: Callable, *args):
  """The factory's result; whatever it raises, one ConfigError naming it."""
  try:
    return factory(*args)
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(
      f"--config.{setting}={name!r}: the factory raised {type(e).__name__}: {e}"
    ) from None


def _check_hashable(setting: str, name: str, value) -> None:
  try:
    hash(value)
  except TypeError:
    raise ConfigError(
      f"--config.{setting}={name!r} returned an unhashable "
      f"{setting}; make it a frozen dataclass of plain "
      "values"
    ) from None


def _call_own_factory(name: str, config, event_shape: tuple[int, ...]):
  """`module:factory`(config, event_shape); whatever the user's code raises
  (a wrong signature, a bug) becomes one ConfigError naming it."""
  module, _, attr = name.partition(":")
  try:
    factory = getattr(importlib.import_module(module), attr, None)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(
      f"--config.model={name!r}: importing {module} raised {_describe(e)}"
    ) from None
  if not callable(factory):
    raise ConfigError(
      f"--config.model={name!r}: {module} has no function {attr!r}"
    )
  try:
    return factory(config, event_shape)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(
      f"--config.model={name!r}: {module}.{attr}(config, event_shape="
      f"{event_shape}) raised {_describe(e)}; a factory takes the run's "
      "config and the data's example shape and returns a VAEModel"
    ) from None


def _describe(error: BaseException) -> str:
  text = " ".join(str(error).split())
  return (
    f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
  )


def build_model(config, event_shape: Sequence[int]):
  """The model `config.model` names, for examples of shape `event_shape`."""
  from vae_jax.math import model as model_lib  # pylint: disable=g-import-not-at-top

  name = config.model
  check_model_name(name)
  check_prior_name(config.prior)
  event_shape = tuple(int(d) for d in event_shape)
  if name in MODELS:
    model = MODELS[name](config, event_shape)
  else:
    model = _call_own_factory(name, config, event_shape)
  missing = model_lib.missing_methods(model)
  if missing:
    raise ConfigError(
      f"--config.model={name!r} returned {type(model).__name__}"
      f", which lacks the model protocol's {', '.join(missing)}"
      " (see vae_jax.math.model)"
    )
  _check_hashable("model", name, model)
  return model
