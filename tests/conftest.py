"""Shared fixtures and helpers of the tests.

One style. Tests are pytest functions: `pytest.mark.parametrize` for cases,
pytest fixtures for shared setup, plain `assert` and `pytest.raises`. A
`chex.TestCase` class is used only to hold tests decorated with
`@chex.variants(with_jit=True, without_jit=True)`, which run one body jitted
and not and need a unittest class; inside such a class, cases are
`absl.testing.parameterized` (pytest's parametrize does not reach unittest
methods), and any test of the file without variants stays a function beside
it, its setup in a module helper that the class's `setUp` and a fixture
both call. Why: one way to write a test, pytest's fixtures, ids and
assertion messages everywhere, and the class only where it buys something.

Two tiers. `make test` (CI) runs everything; `make test-fast` runs
`pytest -m "not slow"`, meant to take under a minute on an idle two-core
machine, and keeps a few tests of each part: the math, the objectives, the train step,
the models and one tiny in-process run (test_variants.py's IWAE run). Mark
`slow` what starts launcher subprocesses, kills and resumes, runs
notebooks, sweeps or device meshes, trains, or checks statistics over many
draws or cases: `pytestmark = pytest.mark.slow` for a file,
`@pytest.mark.slow` for a test, `pytest.param(..., marks=pytest.mark.slow)`
for a case. In a chex.TestCase the mark goes under `@chex.variants` (and
under `parameterized`), never over it. `--strict-markers` (pyproject.toml)
refuses a misspelt marker.

* Small synthetic image datasets in the MNIST IDX layout. Nothing here
  touches the network or an installed Fashion-MNIST: every test that needs
  image data gets a directory of IDX files written by
  `vae_jax.data.idx.write_idx` into pytest's temporary directory.
* `LinearGaussian`: float64 numpy reference values of a linear-Gaussian VAE
  whose posterior p(z|x) and evidence log p(x) are known in closed form, for
  exact checks of the ELBO and of evaluation; an oracle written apart from
  the library's model (`vae_jax.math.linear_gaussian`), which its
  `model()` and `exact_posterior_model()` wrap.
* JAX's persistent compilation cache in a private temporary directory, for
  the whole session, its xdist workers and the launchers they run as
  subprocesses (see `pytest_configure`), and XLA's generated code compiled
  without LLVM's optimisations (`_FAST_COMPILE`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
import shutil
import tempfile

# The tests compile hundreds of small programs, each run a few times: LLVM's
# optimisation of XLA's generated code costs them more time than it saves.
# XLA's own passes, which decide what is computed and fused, run as usual.
# Set before JAX starts, and inherited by the launchers the tests run as
# subprocesses.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), _FAST_COMPILE])
  )
# The tests are written for the CPU; naming it spares every process JAX's
# search for other backends (about half a second each). A caller's own
# JAX_PLATFORMS is kept.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import kl_diagonal_atol
from tolerances import rounding_atol
from tolerances import sum_atol
from vae_jax.data.idx import write_idx
from vae_jax.math import linear_gaussian
from vae_jax.math.gaussian_vae import GaussianVAE

# The repository root (the directory that holds vae_jax/ and experiments/).
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# JAX's settings of the persistent compilation cache, as environment
# variables (what a subprocess reads); the directory is set per session.
_CACHE_DIR_VARIABLE = "JAX_COMPILATION_CACHE_DIR"
_CACHE_SETTINGS = {
  "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",  # cache every program
  "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",  # of every size
}
_saved_environment: dict[str, str | None] = {}


def pytest_configure(config):
  """Shares compiled programs between the tests of a session.

  The tests, their xdist workers and the launchers they run as subprocesses
  compile the same few programs again and again; JAX's persistent
  compilation cache lets each load what another compiled. Its directory is
  a new temporary one for every session (never the user's cache, whatever
  JAX_COMPILATION_CACHE_DIR says), handed to the workers and subprocesses
  through the environment and removed at the end. Only speed depends on it.
  """
  if hasattr(config, "workerinput"):  # an xdist worker: the session's cache
    directory = os.environ[_CACHE_DIR_VARIABLE]
  else:
    directory = tempfile.mkdtemp(prefix="vae_jax_test_jax_cache_")
    settings = dict(_CACHE_SETTINGS, **{_CACHE_DIR_VARIABLE: directory})
    for name, value in settings.items():
      _saved_environment[name] = os.environ.get(name)
      os.environ[name] = value
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
  del config
  if _saved_environment:  # the process that made the directory
    shutil.rmtree(os.environ[_CACHE_DIR_VARIABLE], ignore_errors=True)
    for name, value in _saved_environment.items():
      if value is None:
        os.environ.pop(name, None)
      else:
        os.environ[name] = value
    _saved_environment.clear()


# The files that take longest, in that order, run first: `make test`'s two
# xdist workers take whole files (--dist loadfile) in collection order, and
# a long file started last would leave one worker idle for its length.
_SLOW_FILES = (
  "test_hierarchical_models.py",
  "test_docs.py",
  "test_device_check.py",
  "test_notebooks.py",
  "test_sweep_members.py",
  "test_conv.py",
  "test_bad_input.py",
  "test_experiments.py",
  "test_mesh.py",
  "test_optimization.py",
  "test_sweep.py",
  "test_reliability.py",
  "test_training.py",
  "test_workdir_lock.py",
  "test_kill_resume.py",
)


def pytest_collection_modifyitems(session, config, items):
  """The slow files first (_SLOW_FILES), the rest in collection order; the
  same order on every worker, as xdist requires."""
  del session, config
  rank = {name: i for i, name in enumerate(_SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


IMAGE_SIZE = 28
NUM_CLASSES = 4

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"


def synthetic_images(
  num: int, rng: np.random.Generator, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images `[num, size, size]` of four shapes at random offsets, labels.

  Class 0: a horizontal bar; 1: a vertical bar; 2: a filled square;
  3: a cross. A dark background, bright strokes with a little pixel noise:
  a dataset a VAE can learn a lot about in a few hundred steps.
  """
  labels = rng.integers(0, NUM_CLASSES, size=num).astype(np.uint8)
  images = np.zeros((num, size, size), np.float32)
  centre = size // 2
  for n, label in enumerate(labels):
    dy, dx = rng.integers(-4, 5, size=2)
    cy, cx = centre + dy, centre + dx
    if label == 0:
      images[n, cy - 2 : cy + 2, 4 : size - 4] = 1.0
    elif label == 1:
      images[n, 4 : size - 4, cx - 2 : cx + 2] = 1.0
    elif label == 2:
      images[n, cy - 6 : cy + 6, cx - 6 : cx + 6] = 1.0
    else:
      images[n, cy - 1 : cy + 2, cx - 8 : cx + 8] = 1.0
      images[n, cy - 8 : cy + 8, cx - 1 : cx + 2] = 1.0
  noise = rng.uniform(0.0, 0.15, size=images.shape)
  intensity = rng.uniform(0.8, 1.0, size=(num, 1, 1))
  pixels = np.clip(images * intensity + noise * (1.0 - images), 0.0, 1.0)
  return np.round(pixels * 255).astype(np.uint8), labels


def write_idx_directory(
  directory: os.PathLike,
  num_train: int,
  num_test: int,
  seed: int = 0,
  compress: bool = True,
) -> str:
  """Writes train-/t10k- images and labels (IDX, `.gz` if `compress`)."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  suffix = ".gz" if compress else ""
  for (images_name, labels_name), num in (
    ((TRAIN_IMAGES, TRAIN_LABELS), num_train),
    ((TEST_IMAGES, TEST_LABELS), num_test),
  ):
    images, labels = synthetic_images(num, rng)
    write_idx(str(directory / (images_name + suffix)), images)
    write_idx(str(directory / (labels_name + suffix)), labels)
  return str(directory)


@pytest.fixture(scope="session")
def idx_data_dir(tmp_path_factory) -> str:
  """512 train / 256 test 28×28 uint8 images with labels, gzip-compressed."""
  return write_idx_directory(
    tmp_path_factory.mktemp("idx_data"), num_train=512, num_test=256, seed=0
  )


@dataclasses.dataclass(frozen=True, eq=False)
class LinearGaussian:
  """p(z) = N(0, I_D), p(x|z) = N(W z + b, σ² I_P), W = Q diag(s) with QᵀQ = I.

  WᵀW = diag(s²), so the true posterior is the diagonal Gaussian
      p(z|x) = N(Σ Wᵀ(x − b)/σ², Σ),  Σ = (I + WᵀW/σ²)⁻¹,
  and log p(x) = log N(x; b, W Wᵀ + σ² I). Reference values are float64
  numpy; the models run in float32 like the project's code.
  """

  weight: np.ndarray  # W, float64 [P, D]
  bias: np.ndarray  # b, float64 [P]
  variance: float  # σ²

  @property
  def data_dim(self) -> int:
    return self.weight.shape[0]

  @property
  def latent_dim(self) -> int:
    return self.weight.shape[1]

  def sample_x(self, rng: np.random.Generator, num: int) -> np.ndarray:
    z = rng.normal(size=(num, self.latent_dim))
    noise = rng.normal(size=(num, self.data_dim)) * math.sqrt(self.variance)
    return z @ self.weight.T + self.bias + noise

  def posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, logvar) of p(z|x), float64, `[..., D]`."""
    scales_sq = np.sum(self.weight**2, axis=0)  # diag WᵀW = s²
    var = 1.0 / (1.0 + scales_sq / self.variance)
    mean = var * ((np.asarray(x) - self.bias) @ self.weight) / self.variance
    return mean, np.broadcast_to(np.log(var), mean.shape)

  def log_marginal(self, x: np.ndarray) -> np.ndarray:
    """log p(x) = log N(x; b, W Wᵀ + σ² I) in float64, `[...]`."""
    cov = self.weight @ self.weight.T + self.variance * np.eye(self.data_dim)
    _, logdet = np.linalg.slogdet(cov)
    r = np.asarray(x, np.float64) - self.bias
    flat = r.reshape(-1, self.data_dim)
    maha = np.sum(flat * np.linalg.solve(cov, flat.T).T, axis=-1)
    maha = maha.reshape(r.shape[:-1])
    return -0.5 * (self.data_dim * math.log(2 * math.pi) + logdet + maha)

  def expected_log_likelihood(self, x, mean, logvar) -> np.ndarray:
    """E_q[log p(x|z)] for q = N(mean, diag exp(logvar)), in closed form.

    E‖x − b − W z‖² = ‖x − b − W m‖² + tr(WᵀW diag v) = ‖r − W m‖² + Σ s² v.
    """
    mean, var = (
      np.asarray(mean, np.float64),
      np.exp(np.asarray(logvar, np.float64)),
    )
    r = np.asarray(x, np.float64) - self.bias
    residual = r - mean @ self.weight.T
    scales_sq = np.sum(self.weight**2, axis=0)
    sq = np.sum(residual**2, axis=-1) + np.sum(scales_sq * var, axis=-1)
    return (
      -0.5 * self.data_dim * math.log(2 * math.pi * self.variance)
      - 0.5 * sq / self.variance
    )

  def log_likelihood_np(self, x, z) -> np.ndarray:
    """log p(x|z) in float64 for z `[..., D]`."""
    mean = np.asarray(z, np.float64) @ self.weight.T + self.bias
    return np.sum(
      -0.5 * math.log(2 * math.pi * self.variance)
      - 0.5 * (np.asarray(x, np.float64) - mean) ** 2 / self.variance,
      axis=-1,
    )

  def elbo_atol(
    self,
    x,
    z,
    mean,
    logvar,
    analytic_kl,
    exact_posterior_encoder=False,
    part="elbo",
  ):
    """Bound on the float32 rounding error of `vae_jax.math.objectives.elbo` here.

    Args:
      x: the example(s), float64 `[..., P]`; the model sees them in float32.
      z: the float32 draws of z ~ q, `[..., S, D]`.
      mean, logvar: q's parameters, `[..., D]`. They are float32 inputs, or
        they come from `exact_posterior_model` (exact_posterior_encoder), whose
        μ is then bounded by its absolute-valued evaluation.
      analytic_kl: the KL in closed form, or the Monte-Carlo KL on z.
      part: "elbo", "log_likelihood" or "kl": the `ElboParts` field.

    Returns:
      `[...]`: the mean over S sums with `sum_atol` over the actual
      per-draw values. Each draw then adds its own roundings, counted on the
      absolute-valued evaluation of its terms (tests/tolerances.py).
      `rounding_atol` charges eps = 2u per operation, hence the / 2 on the
      counts of roundings below.
    """
    x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    num_samples, d, p = z.shape[-2], self.latent_dim, self.data_dim
    if exact_posterior_encoder:
      # μ = var · ((x − b) @ W) / σ², var = 1 / (1 + Σ_p W² / σ²): x, b and W
      # rounded (3), x − b, the P-term product with W, var (P + 6), ÷.
      var = np.exp(logvar)
      mean_abs = (
        var
        * ((np.abs(x) + np.abs(self.bias)) @ np.abs(self.weight))
        / self.variance
      )
      encoder_ops = 2 * p + 12
    else:
      mean_abs, encoder_ops = np.abs(mean), 1  # rounded to float32 once
    mean, mean_abs, logvar = (a[..., None, :] for a in (mean, mean_abs, logvar))
    z_abs = mean_abs + np.abs(z - mean)  # bounds z = μ + σε and its rounding

    def mean_over_draws(values, magnitude, num_roundings):
      return sum_atol(
        num_samples, np.mean(np.abs(values), axis=-1), ops_per_term=0
      ) + rounding_atol(num_roundings / 2, np.mean(magnitude, axis=-1))

    # log p(x|z) = −½ Σ_p [log 2πσ² + (x − z Wᵀ − b)² / σ²]. On its longest
    # path: x's rounding, the draw z (encoder_ops + 4), the decoder's D-term
    # product and bias (D + 3), −; all of them twice through the square; then
    # ÷σ², + log 2πσ², the P-term sum, the mean's ÷S and ELBO = ll − KL.
    residual_abs = (
      np.abs(x)[..., None, :]
      + z_abs @ np.abs(self.weight).T
      + np.abs(self.bias)
    )
    log_lik_atol = mean_over_draws(
      self.log_likelihood_np(x[..., None, :], z),
      0.5
      * np.sum(
        abs(math.log(2 * math.pi * self.variance))
        + residual_abs**2 / self.variance,
        axis=-1,
      ),
      2 * (encoder_ops + d + 9) + p + 4,
    )
    if analytic_kl:
      kl_atol = kl_diagonal_atol(mean[..., 0, :], logvar[..., 0, :])
    else:
      # log q(z) − log p(z) = ½ Σ_d [z² − logvar − (z − μ)² e^−logvar]: the
      # draw, z − μ and μ (encoder_ops each), twice through the square, exp,
      # ×, + log 2π, the D-term sums, −, ÷S, −.
      kl_atol = mean_over_draws(
        0.5
        * np.sum(z**2 - logvar - (z - mean) ** 2 * np.exp(-logvar), axis=-1),
        0.5
        * np.sum(
          2 * math.log(2 * math.pi)
          + np.abs(logvar)
          + (z_abs + mean_abs) ** 2 * np.exp(-logvar)
          + z_abs**2,
          axis=-1,
        ),
        3 * encoder_ops + d + 18,
      )
    return {
      "elbo": log_lik_atol + kl_atol,
      "log_likelihood": log_lik_atol,
      "kl": kl_atol,
    }[part]

  def model(self) -> "LinearGaussianVAE":
    """The VAE whose q is given directly: params = {"mean", "logvar"}, `[D]`."""
    return LinearGaussianVAE(self, exact_posterior=False)

  def exact_posterior_model(self) -> "LinearGaussianVAE":
    """The VAE whose encoder returns the true posterior p(z|x) for every x."""
    return LinearGaussianVAE(self, exact_posterior=True)


@dataclasses.dataclass(frozen=True, eq=False)
class LinearGaussianVAE(GaussianVAE):
  """`LinearGaussian` as a `VAEModel` with θ = (W, b) fixed (float32).

  The library's `vae_jax.math.linear_gaussian.LinearGaussianVAE` with
  params fixed to `lg`'s: its encoder gives q = p(z|x) (`exact_posterior`),
  or q is given directly as params = {"mean", "logvar"}, `[D]`.
  """

  lg: LinearGaussian
  exact_posterior: bool

  @property
  def event_shape(self) -> tuple[int]:
    return (self.lg.data_dim,)

  @property
  def latent_dim(self) -> int:
    return self.lg.latent_dim

  @property
  def _library(self) -> linear_gaussian.LinearGaussianVAE:
    return linear_gaussian.LinearGaussianVAE(
      self.lg.data_dim, self.lg.latent_dim, self.lg.variance
    )

  def _params(self):
    decoder = {
      "weight": jnp.asarray(self.lg.weight, jnp.float32),
      "bias": jnp.asarray(self.lg.bias, jnp.float32),
    }
    return {
      "encoder": self._library.best_encoder({"decoder": decoder}),
      "decoder": decoder,
    }

  def init_networks(self, rng):
    del rng
    zeros = jnp.zeros(self.latent_dim)
    return {"mean": zeros, "logvar": zeros}

  def encode(self, params, x):
    if not self.exact_posterior:
      return params["mean"], params["logvar"]
    return self._library.encode(self._params(), x)

  def decode(self, params, z):
    del params
    return self._library.decode(self._params(), z)

  def log_likelihood(self, decoder_output, x):
    return self._library.log_likelihood(decoder_output, x)

  def mean_of_output(self, decoder_output):
    return decoder_output


def make_linear_gaussian(
  data_dim: int = 6, latent_dim: int = 3, variance: float = 0.5, seed: int = 0
) -> LinearGaussian:
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(data_dim, latent_dim)))  # QᵀQ = I
  scales = np.linspace(2.0, 0.5, latent_dim)
  return LinearGaussian(
    weight=q * scales, bias=rng.normal(size=data_dim), variance=variance
  )
