"""Errors a user can fix: bad flags, missing or corrupt data.

They are raised before any compute starts; launchers print `str(error)` as one
line (no traceback) and exit with status 2. Each message says what was wrong
and how to fix it.
"""

__all__ = ["UserError", "ConfigError", "DataError", "NonFiniteError"]


class UserError(Exception):
  """An error in what the user asked for, not in vae_jax."""


class ConfigError(UserError, ValueError):
  """An invalid setting (flag, preset, or a resumed run's changed config)."""


class DataError(UserError, OSError):
  """Data that is missing, unreadable, or not what it claims to be."""


class NonFiniteError(Exception):
  """Training produced a non-finite number; the run stopped (exit status 3).

  Not a UserError: the settings were valid, the numbers diverged.
  """
