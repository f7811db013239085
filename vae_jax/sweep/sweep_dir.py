"""A sweep's directory: SWEEP_DIR/sweep.json names its grid, and a rerun
must be of the same grid (settings that a resumed run may change aside).

Pure Python, no JAX: checked before JAX starts and before anything is
written.
"""

from __future__ import annotations

import json
import os

from vae_jax import settings as settings_lib
from vae_jax.errors import ConfigError
from vae_jax.store import workdir as workdir_lib

__all__ = ["SWEEP_JSON", "check_sweep_dir"]

SWEEP_JSON = "sweep.json"

# What a resumed sweep may change, as a resumed run: not `epochs`, since a
# finished member is not trained again.
_MAY_CHANGE = tuple(f for f in settings_lib.resumable() if f != "epochs")


def _identity(members: list) -> list:
  return [
    (name, {k: v for k, v in config.items() if k not in _MAY_CHANGE})
    for name, config in members
  ]


def check_sweep_dir(sweep_dir: str, description: dict) -> None:
  """Refuses a sweep directory that holds another grid, or that could not
  be used or created (named as --sweep_dir: its members' run directories,
  checked later, would name --workdir=SWEEP_DIR/<member>). Creates nothing.
  """
  flag = f"--sweep_dir={sweep_dir}"
  if os.path.lexists(sweep_dir) and not os.path.isdir(sweep_dir):
    raise ConfigError(f"{flag} is a file, not a directory: choose a directory")
  path = os.path.join(sweep_dir, SWEEP_JSON)
  if os.path.exists(path):
    _check_same_grid(flag, path, description)
  elif os.path.isdir(sweep_dir) and set(os.listdir(sweep_dir)) - {".lock"}:
    # (.lock alone: a sweep killed before it wrote sweep.json.)
    raise ConfigError(
      f"{flag} holds files but no {SWEEP_JSON}: it is not "
      "a sweep directory; choose an empty or new one"
    )
  # Last: it tries a write (a directory made and removed) in it.
  workdir_lib.check_directory(sweep_dir, "sweep_dir")


def _check_same_grid(flag: str, path: str, description: dict) -> None:
  try:
    with open(path) as f:
      stored = json.load(f)
    stored_members = [(m["name"], m["config"]) for m in stored["members"]]
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise ConfigError(
      f"{path} is unreadable ({type(e).__name__}: {e}); "
      "choose another --sweep_dir"
    ) from None
  members = [(m["name"], m["config"]) for m in description["members"]]
  stored_members, members = _identity(stored_members), _identity(members)
  if stored_members != members:
    ours = {n for n, _ in members}
    theirs = {n for n, _ in stored_members}
    changed = sorted(
      n for n, c in members if n in theirs and c != dict(stored_members)[n]
    )
    what = "; ".join(
      filter(
        None,
        (
          f"members only in it: {', '.join(sorted(theirs - ours))}"
          if theirs - ours
          else "",
          f"members only in this command: {', '.join(sorted(ours - theirs))}"
          if ours - theirs
          else "",
          f"members with other settings: {', '.join(changed)}"
          if changed
          else "",
        ),
      )
    )
    raise ConfigError(
      f"{flag} holds a sweep of another grid ({what}): rerun "
      "that sweep's own command, or choose another "
      "--sweep_dir"
    )
