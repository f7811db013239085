"""What the absl launchers share: the `--config` flag, flag errors, quiet JAX.

Every usage error ends the same way: one line `error: …` on stderr and exit
status 2, before JAX starts and before anything is written. That covers
absl's own parse errors (an unknown flag, `--config.latent_dim=abc`) and
ml_collections' (`--config.nosuch=1`, a config file that does not load),
which out of the box end in a traceback or exit status 1. This module imports
no JAX.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from typing import NoReturn, Optional

from absl import app
from absl import flags
from absl import logging

from vae_jax import configs
from vae_jax import settings

__all__ = [
  "define_config_flag",
  "parse_flags",
  "fail",
  "use_cpu_if_alone",
  "config_file",
  "run",
]

FLAGS = flags.FLAGS
_definition_error: Optional[BaseException] = None
_has_config_flag = False


def fail(message: str, status: int = 2) -> NoReturn:
  """Prints `error: message` (one line) and exits with `status` (2: usage)."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(status)


def define_config_flag(name: str = "config"):
  """`--config=FILE` (default: the packaged default.py) and `--config.K=V`.

  ml_collections applies the command line's overrides to the default config
  already while the flag is defined, so a bad override raises here; the
  error is kept and reported by `parse_flags` as a usage error.
  """
  global _definition_error, _has_config_flag
  _has_config_flag = True
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  try:
    return config_flags.DEFINE_config_file(
      name,
      configs.path("default"),
      "A config file (vae_jax/configs/*.py: default, smoke, paper, or your "
      "own); override any setting with --config.NAME=VALUE. The settings "
      "(vae_jax/settings.py), NAME=DEFAULT [role]:\n" + settings.help_text(),
      lock_config=True,
    )
  except Exception as e:  # pylint: disable=broad-except
    _definition_error = e
    return None


def _describe(error: BaseException) -> str:
  text = str(error).strip().strip("'\"") or type(error).__name__
  if isinstance(error, (AttributeError, KeyError)):
    return (
      f"unknown setting {text!r}: the settings are the fields of "
      "vae_jax/configs/default.py (--config.NAME=VALUE)"
    )
  return text.splitlines()[0] if "\n" in text else text


def _resolve_config_file(value: str) -> str:
  """A config file path; `smoke` or `vae_jax/configs/smoke.py` → the packaged
  file when no such path exists here (an installed wheel, another cwd)."""
  if os.path.exists(value):
    return value
  name = os.path.basename(value)
  name = name[:-3] if name.endswith(".py") else name
  if value in configs.NAMES or value == f"vae_jax/configs/{name}.py":
    if name in configs.NAMES:
      return configs.path(name)
  fail(
    f"--config={value}: no such config file; use one of "
    f"{', '.join(f'vae_jax/configs/{n}.py' for n in configs.NAMES)} or "
    "the path of your own"
  )


def _with_config_resolved(argv: list[str]) -> list[str]:
  out, i = [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config="):
      arg = "--config=" + _resolve_config_file(arg[len("--config=") :])
    elif arg == "--config" and i + 1 < len(argv):
      out.append(arg)
      i += 1
      arg = _resolve_config_file(argv[i])
    out.append(arg)
    i += 1
  return out


def _setting_names() -> list[str]:
  return list(settings.BY_NAME)


def _did_you_mean(name: str) -> str:
  close = difflib.get_close_matches(
    name.replace("-", "_"), _setting_names(), n=1
  )
  return f" (did you mean --config.{close[0]}?)" if close else ""


def _check_setting_names(argv: list[str]) -> None:
  """Every `--config.NAME=…` names a setting. ml_collections' own errors
  for one that does not are garbled: `malformed node or string …` for a
  dash in the name, the name quoted three times over for a typo."""
  names = _setting_names()
  for arg in argv[1:]:
    if arg == "--":
      break
    if not arg.startswith("--config."):
      continue
    name = arg[len("--config.") :].partition("=")[0]
    if name in names:
      continue
    if not name:
      fail(
        f"{arg}: name a setting, as in --config.NAME=VALUE, e.g. "
        "--config.epochs=3"
      )
    if name.replace("-", "_") in names:
      fail(
        f"{arg}: settings are written with underscores: "
        f"--config.{name.replace('-', '_')}=…"
      )
    fail(
      f"unknown setting {name!r}{_did_you_mean(name)}: the settings are "
      "the fields of vae_jax/configs/default.py (--config.NAME=VALUE)"
    )


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parser, with every failure turned into `error:` and exit 2."""
  if _has_config_flag:
    _check_setting_names(argv)
  if _definition_error is not None:
    fail(f"--config: {_describe(_definition_error)}")
  # ml_collections reads the overrides from sys.argv itself.
  argv = sys.argv = _with_config_resolved(argv)
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    unknown = re.match(r"Unknown command line flag '([^']*)'", message)
    if unknown and _has_config_flag:
      hint = _did_you_mean(unknown.group(1)) or " (e.g. --config.epochs=3)"
      message += (
        f"; settings of the run are given as --config.NAME=VALUE"
        f"{hint}, and --help lists the flags"
      )
    elif unknown:
      message += " (--help lists the flags)"
    fail(message)
  except Exception as e:  # pylint: disable=broad-except
    fail(f"--config: {_describe(e)}")
  if len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])}")
  if "config" in FLAGS:
    try:
      FLAGS.config.get("seed")  # a file that failed to load raises here
    except Exception as e:  # pylint: disable=broad-except
      fail(f"--config={config_file()}: {_describe(e)}")
  return rest


def config_file(name: str = "config") -> str:
  """The file `--config` loaded."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  return config_flags.get_config_filename(FLAGS[name])


def use_cpu_if_alone() -> None:
  """Sets JAX_PLATFORMS=cpu when no GPU or TPU plugin is installed.

  Otherwise JAX probes for a TPU on start and logs `Unable to initialize
  backend 'tpu'` on every CPU machine. An explicit JAX_PLATFORMS is kept.
  """
  if os.environ.get("JAX_PLATFORMS"):
    return
  plugins = (
    "libtpu",
    "jax_cuda12_plugin",
    "jax_cuda13_plugin",
    "jax_rocm60_plugin",
    "jax_plugins",
  )
  if not any(importlib.util.find_spec(p) for p in plugins):
    os.environ["JAX_PLATFORMS"] = "cpu"


def run(main) -> None:
  """`app.run(main)` with the usage errors above and quiet JAX start-up."""
  use_cpu_if_alone()  # before anything imports JAX
  logging.set_verbosity(logging.INFO)
  app.run(main, flags_parser=parse_flags)
