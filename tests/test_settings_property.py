"""Property tests (hypothesis): any setting, any run-directory state.

Validation only, in process, so hundreds of cases take seconds: every
value of every setting is either accepted — and then is one the program can
represent (finite, within int32) — or refused with a ConfigError that names
the setting; every state of a run directory is usable or refused with a
ConfigError, and checking it creates or changes nothing. No other exception
(a traceback at the command line) is allowed. The launchers turn a
ConfigError into one `error:` line and exit status 2 (tests/test_bad_input.py,
tests/test_bad_workdir.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import types

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vae_jax import validation
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.store import workdir as workdir_lib

# Property tests (hypothesis): many generated cases.
pytestmark = pytest.mark.slow

# Deterministic (CI reruns the same cases) and writes no .hypothesis/.
_SETTINGS = settings(
  max_examples=300,
  deadline=None,
  derandomize=True,
  database=None,
  suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_DEFAULTS = dict(default.get_config().items())

_ANY_VALUE = st.one_of(
  st.integers(min_value=-(2**70), max_value=2**70),
  st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63, 10**400 // 10**300]),
  st.floats(allow_nan=True, allow_infinity=True),
  st.sampled_from([1e308, -1e308, 1e-320, 0.0, -0.0]),
  st.booleans(),
  st.none(),
  st.text(max_size=12),
  st.sampled_from(
    [
      "adam",
      "sgd",
      "chain",
      "__class__",
      "identity",
      "mlp",
      "toy:nosuch",
      "cosine",
      "image",
      "gaussian",
      "",
      " ",
    ]
  ),
  st.lists(st.integers(min_value=-5, max_value=2**40), max_size=4).map(tuple),
  st.tuples(st.text(max_size=3)),
)


def _config(changes: dict) -> types.SimpleNamespace:
  return types.SimpleNamespace(**dict(_DEFAULTS, **changes))


def _representable(name: str, value) -> bool:
  if isinstance(value, bool) or isinstance(value, str):
    return True
  if isinstance(value, int) and isinstance(_DEFAULTS.get(name), float):
    return abs(value) <= 1e30  # a float setting: the number as a float
  if isinstance(value, int):
    if isinstance(_DEFAULTS[name], float):  # becomes a float32: 1e30 fits
      return abs(value) <= 1e30
    return abs(value) <= validation.INT32_MAX
  if isinstance(value, float):
    return math.isfinite(value)
  if isinstance(value, tuple):
    return all(_representable(name, v) for v in value)
  return False


@_SETTINGS
@given(name=st.sampled_from(sorted(_DEFAULTS)), value=_ANY_VALUE)
def test_one_setting_is_accepted_or_named(name, value):
  try:
    validation.validate(_config({name: value}))
  except ConfigError as e:
    assert f"--config.{name}" in str(e), str(e)
    assert "\n" not in str(e)
    return
  assert _representable(name, value), (name, value)


@_SETTINGS
@given(
  changes=st.dictionaries(
    st.sampled_from(sorted(_DEFAULTS)), _ANY_VALUE, min_size=2, max_size=6
  )
)
def test_several_settings_are_accepted_or_one_is_named(changes):
  try:
    validation.validate(_config(changes))
  except ConfigError as e:
    assert any(f"--config.{name}" in str(e) for name in changes), str(e)
    return
  assert all(_representable(n, v) for n, v in changes.items()), changes


_ENTRIES = (
  "config.json",
  "metrics.jsonl",
  "eval.json",
  ".lock",
  "checkpoints",
  "figures",
  "tensorboard",
)
_CONFIG_TEXTS = [
  json.dumps({"config": validation.to_json_dict(default.get_config())}),
  "[]",
  "null",
  "",
  "{",
  "{}",
  '{"config": 1}',
  '{"config": []}',
  '{"config": {"latent_dim": "x"}}',
  '{"config": {"streaming": 1}}',
  '{"config": {"nosuch": 1}}',
  "\x00\xff",
  '{"config": {"epochs": 1e999}}',
]


def _snapshot(root):
  return sorted((d, sorted(n), sorted(f)) for d, n, f in os.walk(root))


@_SETTINGS
@given(
  kind=st.sampled_from(["missing", "file", "dir", "under_file"]),
  entries=st.dictionaries(
    st.sampled_from(_ENTRIES), st.sampled_from(["file", "dir"]), max_size=7
  ),
  config_text=st.sampled_from(_CONFIG_TEXTS),
  for_training=st.booleans(),
)
def test_a_run_directory_is_usable_or_refused_creating_nothing(
  tmp_path, kind, entries, config_text, for_training
):
  root = os.path.join(tmp_path, "case")
  shutil.rmtree(root, ignore_errors=True)
  os.makedirs(root)
  workdir = os.path.join(root, "run")
  if kind == "file" or kind == "under_file":
    open(workdir, "w").close()
    workdir = workdir if kind == "file" else os.path.join(workdir, "run")
  elif kind == "dir":
    os.makedirs(workdir)
    for name, what in entries.items():
      path = os.path.join(workdir, name)
      if what == "dir":
        os.makedirs(path)
      else:
        with open(path, "w") as f:
          f.write(config_text if name == "config.json" else "")
  before = _snapshot(root)
  try:
    workdir_lib.check_workdir(workdir, for_training=for_training)
    usable = True
  except ConfigError as e:
    assert workdir in str(e) and "\n" not in str(e), str(e)
    usable = False
  assert _snapshot(root) == before
  if usable:
    assert kind == "dir" or (kind == "missing" and for_training)
  if usable and kind == "dir":
    assert all(
      (what == "dir") == (name in ("checkpoints", "figures", "tensorboard"))
      for name, what in entries.items()
    )
