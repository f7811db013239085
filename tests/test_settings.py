"""vae_jax/settings.py: each setting declared once, and what is derived from it.

The roles are checked against the records the run builds: changing a setting
changes the step's traced `Hyperparams` if it is traced, and a run-only
setting changes neither them (unless it is per sweep member: `epochs`
lengthens a schedule that follows it) nor the static `StepConfig`.
"""

from __future__ import annotations

import dataclasses

import pytest

from vae_jax import names
from vae_jax import settings
from vae_jax import validation
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.run import programs
from vae_jax.sweep import grid as sweep_grid

_STEPS_PER_EPOCH = 7


def _base():
  """The default config with every schedule option live, so that each
  traced setting has an effect (a floor needs a floored schedule, the
  reference batch size a batch scaling)."""
  config = default.get_config()
  config.lr_schedule = "cosine"
  config.lr_batch_scaling = "linear"
  config.validation_size = 10
  config.batch_size = 100  # not the reference 128: the scaling acts
  return config


def _alternative(setting, value):
  """Another valid value of `setting`, or None."""
  if isinstance(value, bool):
    return not value
  if isinstance(setting.check, settings.Choice):
    others = [o for o in setting.check.options if o and o != value]
    return others[0] if others else None
  if isinstance(value, int):
    return value + 1
  if isinstance(value, float):
    return value / 2 if value > 0.5 else value + 0.25
  return None


def test_the_default_config_is_the_declarations():
  config = default.get_config()
  assert dict(config.items()) == {s.name: s.default for s in settings.SETTINGS}
  assert len(settings.BY_NAME) == len(settings.SETTINGS)
  validation.validate(config)


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_described_and_its_default_passes_its_check(setting):
  assert setting.meaning.endswith(".") and setting.section
  assert isinstance(setting.role, settings.Role)
  if setting.check is not None:
    assert setting.check(setting.default) == ""


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.name)
def test_the_role_is_what_the_run_builds_from_it(setting):
  base = _base()
  value = _alternative(setting, base[setting.name])
  if value is None:
    pytest.skip("no other value to try")
  changed = base.copy_and_resolve_references()
  changed[setting.name] = value
  try:
    validation.validate(changed)
  except ConfigError:
    pytest.skip(f"{setting.name}={value!r} is not valid with the base")
  hyper = [programs.hyperparams(c, _STEPS_PER_EPOCH) for c in (base, changed)]
  moved_traced = any(float(a) != float(b) for a, b in zip(*hyper))
  moved_static = programs.step_config(base) != programs.step_config(changed)
  if setting.role is settings.TRACED:
    assert moved_traced, f"{setting.name} is declared traced"
    # Only whether the average is kept at all is static (StepConfig.ema).
    assert not moved_static or setting.name == "ema_decay", setting.name
  elif setting.role is settings.RUN:
    assert not moved_static, setting.name
    assert not moved_traced or setting.per_member, setting.name


def test_every_step_input_is_fed_by_a_declared_setting():
  """Each Hyperparams field moves with some traced or per-member setting."""
  base = _base()
  fed = set()
  before = programs.hyperparams(base, _STEPS_PER_EPOCH)
  for setting in settings.SETTINGS:
    if setting.role is not settings.TRACED and not setting.per_member:
      continue
    changed = base.copy_and_resolve_references()
    changed[setting.name] = _alternative(setting, base[setting.name])
    after = programs.hyperparams(changed, _STEPS_PER_EPOCH)
    fed |= {
      f
      for f, a, b in zip(before._fields, before, after)
      if float(a) != float(b)
    }
  assert fed == set(before._fields)
  step_fields = {f.name for f in dataclasses.fields(programs.step_config(base))}
  static = {s.name for s in settings.SETTINGS if s.role is settings.STATIC}
  # StepConfig's fields are static settings (ema: whether ema_decay > 0).
  assert step_fields - {"ema"} <= static


def test_sweep_groups_and_resume_follow_the_declarations():
  assert settings.resumable() == (
    "epochs",
    "streaming",
    "skip_nonfinite_updates",
    "num_devices",
  )
  shared = set(settings.shared_by_sweep_program())
  for s in settings.SETTINGS:
    assert (s.name in shared) == (
      s.role is not settings.TRACED and not s.per_member
    )
  base = _base()
  for name, value in (("kl_weight", 2.0), ("seed", 3), ("epochs", 4)):
    other = base.copy_and_resolve_references()
    other[name] = value
    assert sweep_grid.group_key(other) == sweep_grid.group_key(base), name
  for name, value in (("latent_dim", 4), ("batch_size", 64)):
    other = base.copy_and_resolve_references()
    other[name] = value
    assert sweep_grid.group_key(other) != sweep_grid.group_key(base), name


def test_checks_say_what_a_value_must_be():
  assert settings.Integer(1, 5)(0) == "it must be an integer from 1 to 5"
  assert settings.Number(0.0, inclusive=False)(0.0) == (
    "it must be a finite number > 0.0"
  )
  assert settings.Number(0.0, high=1.0)(float("nan")) == (
    "it must be a finite number >= 0.0 and <= 1"
  )
  assert settings.Choice(names.OBJECTIVES)("x") == (
    "choose one of ['elbo', 'iwae']"
  )
  with pytest.raises(
    ConfigError,
    match="--config.ema_decay=1.0 is invalid: it must be a number >= 0 and < 1",
  ):
    config = default.get_config()
    config.ema_decay = 1.0
    validation.validate(config)


def test_help_and_reference_name_every_setting():
  text, table = settings.help_text(), settings.reference_markdown()
  for s in settings.SETTINGS:
    assert f"  {s.name}={settings.show(s.default)} [" in text
    assert f"| `{s.name}` |" in table
