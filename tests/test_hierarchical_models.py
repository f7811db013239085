"""The hierarchical models (hvae, conv_hvae, ladder) through the objectives,
the registry, the settings and the launchers.

Tiny sizes: the protocol and the bounds' identities are under test, not
what the networks learn. The exact checks of a hierarchy's estimates are
in tests/test_hierarchical.py (a linear-Gaussian one, on the same base).
"""

from __future__ import annotations

import functools
import importlib
import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from conftest import REPO_ROOT
from tolerances import assert_close, assert_within_standard_errors
from tolerances import rounding_atol, sum_atol
from vae_jax import validation
from vae_jax.configs import default
from vae_jax.errors import ConfigError
from vae_jax.math import objectives
from vae_jax.math import priors
from vae_jax.math.model import VAEModel
from vae_jax.nets import registry
from vae_jax.nets.hierarchical import ConvHVAE, HVAE
from vae_jax.nets.ladder import LadderVAE

_FLAT, _IMAGE = (12,), (8, 8, 1)
_MODELS = {
  "hvae": HVAE(event_shape=_FLAT, latent_dim=3, hidden_dims=(8, 8)),
  "conv_hvae_vamp": ConvHVAE(
    event_shape=_IMAGE,
    latent_dim=3,
    hidden_dims=(8, 8),
    conv_channels=(4,),
    prior=priors.VampPrior(3, _IMAGE, 3),
  ),
  "ladder": LadderVAE(
    event_shape=_FLAT, latent_dims=(4, 3, 2), hidden_dims=(8, 8)
  ),
  # Only in the cheaper checks below.
  "hvae_vamp": HVAE(
    event_shape=_FLAT,
    latent_dim=3,
    hidden_dims=(8,),
    activation="relu",
    prior=priors.VampPrior(3, _FLAT, 4),
  ),
  "ladder_mog": LadderVAE(
    event_shape=_FLAT,
    latent_dims=(4, 3),
    hidden_dims=(8,),
    activation="elu",
    prior=priors.MixtureOfGaussians(3, 5),
  ),
  "hvae_bfloat16": HVAE(
    event_shape=_FLAT,
    latent_dim=3,
    hidden_dims=(8, 8),
    compute_dtype="bfloat16",
  ),
}
_MAIN = ["hvae", "conv_hvae_vamp", "ladder"]  # every objective
_K = 64  # draws of the chunked estimate


@functools.lru_cache(maxsize=None)
def _case(name, batch=3):
  """(model, params, x `[batch, ...]`); shared by the tests, not changed."""
  model = _MODELS[name]
  params = jax.jit(model.init)(jax.random.key(0))
  x = jax.random.bernoulli(
    jax.random.key(1), 0.4, (batch, *model.event_shape)
  ).astype(jnp.float32)
  return model, params, x


def _roundoff(num_terms, magnitude):
  return float(np.max(sum_atol(num_terms, np.abs(magnitude))))


@functools.lru_cache(maxsize=None)
def _bounds(name):
  """Every bound of the model on its batch, from one compiled program."""
  model, params, x = _case(name)
  rng = jax.random.key(2)

  @jax.jit
  def run(params, x):
    z, log_q = model.sample_posterior(params, x[0], rng, 1)
    log_px = lambda chunk_size: objectives.per_example(
      objectives.importance_sampled_log_px,
      model,
      params,
      x,
      rng,
      num_samples=_K,
      chunk_size=chunk_size,
    )
    return dict(
      elbo=objectives.batch_elbo(model, params, x, rng, num_samples=2),
      iwae=objectives.per_example(
        objectives.iwae_bound, model, params, x, rng, num_samples=_K
      ),
      log_px={c: log_px(c) for c in (7, _K)},
      iwae_of_example_1=objectives.iwae_bound(
        model, params, x[1], jax.random.fold_in(rng, 1), _K
      ),
      iwae_1=objectives.iwae_bound(model, params, x[0], rng, 1),
      mc_elbo_1=objectives.elbo(
        model, params, x[0], rng, 1, analytic_kl=False
      ).elbo,
      terms_1=jnp.concatenate([*model.log_joint(params, x[0], z), log_q]),
    )

  return jax.device_get(run(params, x))


@functools.lru_cache(maxsize=None)
def _gradients(name):
  """∇ of −ELBO (closed-form KL where there is one) and, for the ladder
  (whose KL is in closed form, so that the ELBO's gradient never passes
  through log q), of −L_4 as well."""
  model, params, x = _case(name)
  rng = jax.random.key(5)
  elbo = lambda p: -jnp.mean(objectives.batch_elbo(model, p, x, rng).elbo)
  iwae = lambda p: (
    -jnp.mean(
      objectives.per_example(
        objectives.iwae_bound, model, p, x, rng, num_samples=4
      )
    )
  )
  losses = (elbo, iwae) if name == "ladder" else (elbo,)
  return jax.device_get(
    jax.jit(lambda p: tuple(jax.grad(loss)(p) for loss in losses))(params)
  )


@pytest.mark.slow
class ObjectivesTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(("hvae",))
  def test_the_batch_elbo_with_and_without_jit(self, name):
    model, params, x = _case(name)
    parts = self.variant(
      lambda p, x_: objectives.batch_elbo(
        model, p, x_, jax.random.key(2), num_samples=2
      )
    )(params, x)
    want = _bounds(name)["elbo"]
    assert_close(parts.elbo, want.elbo, _roundoff(64, want.elbo))


@pytest.mark.parametrize("name", list(_MODELS))
def test_is_a_hashable_model_with_named_layers_top_first(name):
  model = _MODELS[name]
  assert isinstance(model, VAEModel)
  assert hash(model) == hash(
    type(model)(**{f: getattr(model, f) for f in model.__dataclass_fields__})
  )
  layers = list(model.latent_shapes)
  assert layers == sorted(layers, reverse=True)  # z_L … z_1


@pytest.mark.slow
@pytest.mark.parametrize("name", _MAIN)
def test_elbo_iwae_and_log_px_per_example(name):
  found = _bounds(name)
  elbo, iwae, log_px = found["elbo"], found["iwae"], found["log_px"]
  chex.assert_shape([elbo.elbo, elbo.kl, iwae, *log_px.values()], (3,))
  chex.assert_tree_all_finite((elbo, iwae, log_px))
  assert_close(
    elbo.elbo,
    elbo.log_likelihood - elbo.kl,
    rounding_atol(2, np.abs(elbo.log_likelihood) + np.abs(elbo.kl)),
  )
  # Example n's result depends on its key fold_in(rng, n) alone.
  one = found["iwae_of_example_1"]
  assert_close(iwae[1], one, _roundoff(2 * _K, one))


@pytest.mark.slow
@pytest.mark.parametrize("name", _MAIN)
def test_the_chunked_estimate_equals_the_unchunked_bound(name):
  found = _bounds(name)
  for estimate in found["log_px"].values():
    # Same draws; a running logsumexp over chunks rounds differently.
    assert_close(estimate, found["iwae"], _roundoff(2 * _K, found["iwae"]))


@pytest.mark.slow
@pytest.mark.parametrize("name", _MAIN)
def test_iwae_with_one_draw_is_the_monte_carlo_elbo(name):
  found = _bounds(name)
  # The same z, the same three terms, added in another order.
  assert_close(
    found["iwae_1"],
    found["mc_elbo_1"],
    rounding_atol(4, np.abs(found["terms_1"]).sum()),
  )


@pytest.mark.slow
@pytest.mark.parametrize("name", [*_MAIN, "hvae_bfloat16"])
def test_gradients_are_finite_and_reach_every_network(name):
  for grads in _gradients(name):
    chex.assert_tree_all_finite(grads)
    networks = [*grads["encoder"].values(), *grads["decoder"].values()]
    for part in networks + ([grads["prior"]] if "prior" in grads else []):
      top = max(float(np.abs(g).max()) for g in jax.tree_util.tree_leaves(part))
      assert top > 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hvae", "ladder"])
def test_the_closed_form_kl_is_the_monte_carlo_kl_in_expectation(name):
  """Per draw, KL_closed − (log q − log p) has mean 0 (paired draws)."""
  model, params, x = _case(name)
  keys = jax.random.split(jax.random.key(6), 4000)

  def per_draw(key):
    z, log_q, kl = model.sample_posterior_with_kl(params, x[0], key, 1)
    _, log_prior = model.log_joint(params, x[0], z)
    closed = sum(jnp.sum(v) for v in kl.values())
    return closed, log_q[0] - log_prior[0], kl

  closed, mc, kl = jax.jit(jax.vmap(per_draw))(keys)
  assert set(kl) == set(model.latent_shapes)
  for layer, shape in model.latent_shapes.items():
    chex.assert_shape(kl[layer], (len(keys), *shape))
  closed, mc = (np.asarray(a, np.float64) for a in (closed, mc))
  assert_within_standard_errors(
    np.mean(closed - mc),
    closed - mc,
    0.0,
    atol=rounding_atol(len(keys) + 50, np.mean(np.abs(closed) + np.abs(mc))),
  )
  # The ELBO's closed-form KL is the sum of the layers'.
  parts = objectives.elbo(model, params, x[0], keys[0], 1)
  assert_close(parts.kl, closed[0], _roundoff(8, closed[0]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hvae_vamp", "conv_hvae_vamp", "ladder_mog"])
def test_a_learned_prior_has_no_closed_form_kl(name):
  model, params, x = _case(name)
  assert not objectives.uses_closed_form_kl(model, params, x[0])
  assert "prior" in params


@pytest.mark.slow
@pytest.mark.parametrize("name", [*_MAIN, "ladder_mog"])
def test_prior_samples_decode_and_posterior_stats(name):
  model, params, x = _case(name)

  @jax.jit
  def run(params, x):
    z = model.sample_prior(params, jax.random.key(7), 5)
    mean = model.decode_mean(params, {n: v[0] for n, v in z.items()})
    return z, mean, model.posterior_stats(params, x, jax.random.key(8))

  z, mean, stats = run(params, x[0])
  for layer, shape in model.latent_shapes.items():
    chex.assert_shape(z[layer], (5, *shape))
    chex.assert_shape(list(stats[layer]), shape)
  chex.assert_shape(mean, model.event_shape)
  assert bool(jnp.all((mean >= 0) & (mean <= 1)))


@pytest.mark.slow
def test_the_vamp_prior_takes_the_top_layers_posterior():
  model, params, _ = _case("hvae_vamp")
  u = priors.pseudo_inputs(params["prior"])
  means, logvars = model.encode_top(params, u)
  chex.assert_shape([means, logvars], (4, 3))
  z = jax.random.normal(jax.random.key(9), (6, 3))
  want = priors.mixture_log_prob(z, means, logvars, jnp.full(4, -math.log(4)))
  got = model.prior_component.log_prob(
    params["prior"], z, lambda v: model.encode_top(params, v)
  )
  assert_close(got, want, 0.0)


@pytest.mark.parametrize(
  "name, shape, kind, top",
  [
    ("hvae", (784,), HVAE, "z2"),
    ("conv_hvae", (28, 28, 1), ConvHVAE, "z2"),
    ("ladder", (784,), LadderVAE, "z3"),
  ],
)
@pytest.mark.parametrize("prior", ["standard_normal", "vamp", "mog"])
def test_the_registry_builds_each_with_its_prior_on_the_top(
  name, shape, kind, top, prior
):
  config = default.get_config()
  config.model, config.prior, config.activation = name, prior, "glu"
  model = registry.build_model(config, shape)
  assert type(model) is kind
  assert next(iter(model.latent_shapes)) == top
  top_dim = model.latent_shapes[top][0]
  assert model.prior_component.latent_dim == top_dim
  assert model == registry.build_model(config, shape)


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(latent_dims=()), "--config.latent_dims= is invalid"),
    (dict(latent_dims=(40, 0)), "--config.latent_dims=40,0 is invalid"),
    (dict(model="ladder", latent_dims=(40,)), "two or more layers"),
    (dict(model="hvae", image_layout="image"), "takes the flat layout"),
    (dict(model="conv_hvae", image_layout="flat"), "takes the image layout"),
  ],
)
def test_bad_settings_are_one_config_error(changes, message):
  config = default.get_config()
  for key, value in changes.items():
    setattr(config, key, value)
  with pytest.raises(ConfigError, match=message):
    validation.validate(config)


def test_a_model_refuses_examples_of_the_other_layout():
  config = default.get_config()
  config.model = "hvae"
  with pytest.raises(ConfigError, match="takes flat examples"):
    registry.build_model(config, (28, 28, 1))
  config.model = "conv_hvae"
  with pytest.raises(ConfigError, match="conv_hvae"):
    registry.build_model(config, (784,))


def _launch(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


@pytest.mark.slow
def test_a_bad_latent_dims_is_one_error_line(tmp_path):
  result = _launch(
    "experiments.train",
    "--config=vae_jax/configs/smoke.py",
    "--config.latent_dims=40,0",
    f"--workdir={tmp_path / 'run'}",
  )
  assert result.returncode == 2
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "--config.latent_dims" in errors[0]
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_an_hvae_trains_and_is_evaluated_per_layer(idx_data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  result = _launch(
    "experiments.train",
    "--config=vae_jax/configs/smoke.py",
    "--config.model=hvae",
    "--config.epochs=1",
    "--config.dataset=idx",
    f"--config.data_dir={idx_data_dir}",
    "--config.batch_size=32",
    "--config.validation_size=64",
    "--config.eval_batch_size=128",
    f"--workdir={workdir}",
    "--quiet",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert {
    "config.json",
    "metrics.jsonl",
    "checkpoints",
    "figures",
    "tensorboard",
  } <= set(os.listdir(workdir))
  stored = json.load(open(os.path.join(workdir, "config.json")))
  assert stored["model"]["kl"] == "closed_form"
  assert set(stored["model"]["latent_shapes"]) == {"z2", "z1"}
  records = [
    json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))
  ]
  assert records and all(math.isfinite(r["test_elbo"]) for r in records)
  assert {
    "reconstructions.png",
    "prior_samples.png",
    "latent_space.png",
    "training_curves.png",
  } <= set(os.listdir(os.path.join(workdir, "figures")))
  result = _launch(
    "experiments.evaluate",
    f"--workdir={workdir}",
    "--num_importance_samples=20",
    "--nofigures",
    "--quiet",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.load(open(os.path.join(workdir, "eval.json")))
  assert set(record["kl_per_layer"]) == {"z2", "z1"}
  assert set(record["active_units_per_layer"]) == {"z2", "z1"}
  assert all(len(v) == 2 for v in record["kl_per_layer"].values())
  assert math.isfinite(record["test_log_px"])


@pytest.mark.parametrize(
  "name, kind, prior",
  [
    ("vamp", "MLPVAE", "vamp"),
    ("hvae", "HVAE", "standard_normal"),
    ("hvae_vamp", "HVAE", "vamp"),
    ("conv_hvae_vamp", "ConvHVAE", "vamp"),
    ("ladder", "LadderVAE", "standard_normal"),
  ],
)
def test_the_configs_are_the_paper_protocol_with_their_model(name, kind, prior):
  config = importlib.import_module(f"vae_jax.configs.{name}").get_config()
  paper = importlib.import_module("vae_jax.configs.paper").get_config()
  validation.validate(config)
  for setting in (
    "latent_dim",
    "hidden_dims",
    "activation",
    "learning_rate",
    "batch_size",
    "kl_warmup_epochs",
    "epochs",
    "validation_size",
    "early_stopping_patience",
  ):
    assert config[setting] == paper[setting], setting
  assert config.prior == prior and config.final_importance_samples == 0
  shape = (28, 28, 1) if name.startswith("conv") else (784,)
  model = registry.build_model(config, shape)
  assert type(model).__name__ == kind
  if prior == "vamp":
    assert model.prior_component.num_pseudo_inputs == 500
