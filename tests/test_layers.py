"""The layers stay apart: the math imports no flax, the package starts lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# Fresh interpreters, as subprocesses.
pytestmark = pytest.mark.slow

_HEAVY = (
  "flax",
  "optax",
  "orbax",
  "matplotlib",
  "tensorboardX",
  "tensorflow",
  "tensorflow_datasets",
)


def _imported_after(statement: str) -> set[str]:
  script = (
    f"import sys\n{statement}\n"
    f"print(' '.join(m for m in {_HEAVY!r} if m in sys.modules))"
  )
  result = subprocess.run(
    [sys.executable, "-c", script],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  return set(result.stdout.split())


def test_the_math_layer_imports_jax_chex_and_numpy_only():
  assert (
    _imported_after(
      "import vae_jax.math.distributions, vae_jax.math.likelihoods, "
      "vae_jax.math.model, vae_jax.math.objectives, "
      "vae_jax.math.diagnostics, vae_jax.math.linear_gaussian"
    )
    == set()
  )


def test_importing_the_package_and_checking_a_config_imports_no_jax():
  statement = (
    "import vae_jax, vae_jax.cli, vae_jax.names\n"
    "from vae_jax.configs import default\n"
    "from vae_jax.nets import registry\n"
    "registry.check_model_name(default.get_config().model)\n"
    "assert 'jax' not in sys.modules"
  )
  assert _imported_after(statement) == set()
