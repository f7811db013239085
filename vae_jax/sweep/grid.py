"""A sweep's grid: settings × seeds → members; members → groups; sweep.json.

    --sweep=kl_weight=0.5,1,2 --sweep=learning_rate=1e-3,3e-4 --seeds=3

is the product of the listed values of each setting, each point trained with
the seeds config.seed, …, config.seed + seeds − 1, on top of the base config.
A member is named by its settings, `kl_weight=0.5,learning_rate=0.001,seed=1`
(a tuple value joins its items with `-`: `hidden_dims=300-300`), and trains
in SWEEP_DIR/<name>/, a run directory like any other.

Members that differ only in the step's traced inputs and in their
per-member settings (the seed, and how long they train), as
`vae_jax.settings` declares them, compile to the same program and form one
group; the others (a latent size, hidden widths, a batch size) form groups
of their own.

Pure Python, no JAX: every mistake of a sweep's command line is found before
JAX starts and before anything is written.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, NamedTuple

from vae_jax import settings as settings_lib
from vae_jax import validation
from vae_jax.errors import ConfigError
from vae_jax.sweep.sweep_dir import SWEEP_JSON, check_sweep_dir

__all__ = [
  "SweepPlan",
  "plan_sweep",
  "MAX_MEMBERS",
  "LARGEST_SWEEP",
  "Axis",
  "Member",
  "parse_axis",
  "make_members",
  "group_members",
  "describe",
  "check_sweep_dir",
  "SWEEP_JSON",
]

MAX_MEMBERS = 64  # more needs --allow_large_sweep
# More is refused even with --allow_large_sweep, before any member is
# built: each member is a run directory, and building 2^31 of them (a typo
# in --seeds) would hang the command without a word.
LARGEST_SWEEP = 4096


@dataclasses.dataclass(frozen=True)
class Axis:
  """One `--sweep=NAME=V1,V2,…`: a setting and its values, in order."""

  name: str
  values: tuple


@dataclasses.dataclass(eq=False)
class Member:
  name: str  # its run directory under the sweep directory
  settings: dict[str, Any]  # the swept settings and the seed
  config: Any  # the member's whole ConfigDict


def _parse_value(name: str, text: str, default: Any) -> Any:
  """`text` as a value of the setting's type (that of default.py's value)."""
  try:
    if isinstance(default, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError("not true or false")
      return text.lower() in ("true", "1")
    if isinstance(default, tuple):
      kind = type(default[0]) if default else int
      return tuple(kind(t) for t in text.split("/"))
    return type(default)(text)
  except ValueError as e:
    raise ConfigError(
      f"--sweep={name}: {text!r} is not a value of {name} "
      f"({type(default).__name__}: {e}); tuples are written with '/', e.g. "
      "--sweep=hidden_dims=300/300,500"
    ) from None


def parse_axis(spec: str, base) -> Axis:
  """`NAME=V1,V2,…` → an Axis; each value checked by vae_jax.validation."""
  name, sep, text = spec.partition("=")
  name = name.strip()
  if not sep or not name:
    raise ConfigError(
      f"--sweep={spec}: write --sweep=NAME=V1,V2,… "
      "(e.g. --sweep=kl_weight=0.5,1,2)"
    )
  if name not in base:
    raise ConfigError(
      f"--sweep={spec}: unknown setting {name!r}; the "
      "settings are those of vae_jax/configs/default.py"
    )
  if name == "seed":
    raise ConfigError(
      f"--sweep={spec}: seeds are swept with --seeds=N (the "
      "seeds config.seed … config.seed + N − 1)"
    )
  texts = [t.strip() for t in text.split(",") if t.strip()]
  if not texts:
    raise ConfigError(
      f"--sweep={spec}: no values; list one or more, e.g. --sweep={name}=1,2"
    )
  if len(texts) > LARGEST_SWEEP:
    raise ConfigError(
      f"--sweep={name}=… lists {len(texts)} values, more "
      f"than a sweep may have members ({LARGEST_SWEEP}): "
      "list fewer"
    )
  values = tuple(_parse_value(name, t, base[name]) for t in texts)
  repeated = sorted(
    {_spell(v) for v in values if sum(u == v for u in values) > 1}
  )
  if repeated:
    raise ConfigError(
      f"--sweep={spec} lists {', '.join(repeated)} more than once"
    )
  for value in values:
    config = base.copy_and_resolve_references()
    config[name] = value
    try:
      validation.validate(config)
    except ConfigError as e:
      raise ConfigError(f"--sweep={name}={_spell(value)}: {e}") from None
  return Axis(name, values)


def _spell(value: Any) -> str:
  if isinstance(value, tuple):
    return "-".join(_spell(v) for v in value)
  if isinstance(value, bool):
    return str(value).lower()
  return str(value)


def make_members(
  base, axes: list[Axis], seeds: int, allow_large: bool = False
) -> list[Member]:
  """The grid's members, in the order of the command line (seeds last).

  Raises:
    ConfigError: no member, a setting swept twice, a seed past int32, a
      member that fails validation, more than MAX_MEMBERS without
      `allow_large`, or more than LARGEST_SWEEP.
  """
  names = [a.name for a in axes]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ConfigError(
      f"--sweep names {', '.join(twice)} more than once: "
      "give each setting's values in one --sweep"
    )
  if seeds < 1:
    raise ConfigError(
      f"--seeds={seeds}: the grid is empty; pass --seeds=1 or more"
    )
  if base.seed + seeds - 1 > validation.INT32_MAX:
    raise ConfigError(
      f"--seeds={seeds} from --config.seed={base.seed} passes the largest "
      f"seed, {validation.INT32_MAX}: pass at most "
      f"--seeds={validation.INT32_MAX - base.seed + 1}"
    )
  count = seeds
  for axis in axes:
    count *= len(axis.values)
  if count > LARGEST_SWEEP:
    product = " × ".join(
      [str(len(a.values)) for a in axes] + [f"{seeds} seed(s)"]
    )
    raise ConfigError(
      f"the grid has {count} members ({product}), more than a sweep may "
      f"have ({LARGEST_SWEEP}, even with --allow_large_sweep): shrink it"
    )
  if count > MAX_MEMBERS and not allow_large:
    raise ConfigError(
      f"the grid has {count} members, more than "
      f"{MAX_MEMBERS}: shrink it, or pass --allow_large_sweep"
    )
  members = []
  for point in itertools.product(*(a.values for a in axes)):
    for offset in range(seeds):
      config = base.copy_and_resolve_references()
      settings = dict(zip(names, point), seed=base.seed + offset)
      for name, value in settings.items():
        config[name] = value
      try:
        validation.validate(config)
      except ConfigError as e:
        raise ConfigError(
          f"the sweep's member {_name(settings)}: {e}"
        ) from None
      members.append(Member(_name(settings), settings, config))
  return members


def _name(settings: dict[str, Any]) -> str:
  return ",".join(f"{k}={_spell(v)}" for k, v in settings.items())


def _settings_json(config) -> dict[str, Any]:
  return json.loads(json.dumps(validation.to_json_dict(config)))


def group_key(config) -> str:
  """Equal for members that compile to the same program."""
  settings = _settings_json(config)
  key = {k: settings[k] for k in settings_lib.shared_by_sweep_program()}
  key["ema"] = settings["ema_decay"] > 0  # StepConfig.ema: the state's shape
  return json.dumps(key, sort_keys=True)


def group_members(members: list[Member]) -> list[list[int]]:
  """Indices of the members of each group, groups in order of appearance."""
  groups: dict[str, list[int]] = {}
  for i, member in enumerate(members):
    groups.setdefault(group_key(member.config), []).append(i)
  return list(groups.values())


def describe(
  config_file: str,
  axes: list[Axis],
  seeds: int,
  members: list[Member],
  groups: list[list[int]],
) -> dict:
  """The content of sweep.json: the grid, its members and groups."""
  return {
    "config_file": config_file,
    "axes": [
      {"name": a.name, "values": [_settings_json_value(v) for v in a.values]}
      for a in axes
    ],
    "seeds": seeds,
    "members": [
      {
        "name": m.name,
        "settings": {k: _settings_json_value(v) for k, v in m.settings.items()},
        "config": _settings_json(m.config),
      }
      for m in members
    ],
    "groups": [[members[i].name for i in g] for g in groups],
  }


def _settings_json_value(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


class SweepPlan(NamedTuple):
  members: list[Member]
  groups: list[list[int]]  # member indices per group
  description: dict  # sweep.json
  config_file: str = ""


def plan_sweep(
  config,
  sweep_specs: list[str],
  seeds: int = 1,
  allow_large: bool = False,
  config_file: str = "",
) -> SweepPlan:
  """The plan of `--sweep` specs and `--seeds` on top of `config`.

  Raises:
    ConfigError: a bad base config or grid (see `make_members`).
  """
  validation.validate(config)
  axes = [parse_axis(spec, config) for spec in sweep_specs]
  members = make_members(config, axes, seeds, allow_large)
  groups = group_members(members)
  return SweepPlan(
    members,
    groups,
    describe(config_file, axes, seeds, members, groups),
    config_file,
  )
