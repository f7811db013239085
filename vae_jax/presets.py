"""Named starting points for a run: `python -m experiments.train --preset=NAME`.

A preset is a function returning the `TrainConfig` fields it changes from the
defaults; flags given on the command line override it, field by field, and
config.json records the preset's name. Each docstring states the exact
command, the seconds per epoch and the test ELBO measured at the end of the
run on the 2-core CPU this project is developed on — "not yet measured" until
someone has run the command to the end, never a guess. Whoever measures a
preset writes the numbers here.
"""

from __future__ import annotations

from typing import Any, Callable

from vae_jax.errors import ConfigError

__all__ = ["PRESETS", "get_preset"]


def default() -> dict[str, Any]:
  """The README's `make train`: the Flax example's 784-500-20 MLP VAE.

  Command: python -m experiments.train --preset=default --workdir=runs/default
  (the same run as `make train`; no flags differ from the defaults).
  Fashion-MNIST, dynamic binarisation, Adam 1e-3, batch 128, 10 epochs, seed 0.
  Measured (seed 0): test ELBO -259.00 nats after epoch 1 and -242.64 after
  epoch 10. 3.3 s/epoch of training steps on an idle 2-core CPU (43 s of
  training and evaluation for the 10 epochs); 5-8 s/epoch while other jobs share the two cores.
  """
  return {}


def smoke() -> dict[str, Any]:
  """Seconds, for tests and for checking an installation end to end.

  Command: python -m experiments.train --preset=smoke --workdir=runs/smoke
  A 784-64-2 MLP VAE (a 2-D latent, so the manifold figure is drawn), 2
  epochs with one epoch of KL warm-up, a 1000-example validation split (best
  checkpoint, early stopping) and one checkpoint per epoch.
  Measured (Fashion-MNIST, seed 0): test ELBO -284.84 nats after epoch 2;
  2.0 s/epoch of training steps (about 5 s/epoch with evaluation and the
  checkpoint, 27 s for the whole command) on the 2-core CPU while another
  job shared it.
  """
  return dict(latent_dim=2, hidden_dims=(64,), epochs=2, kl_warmup_epochs=1.0,
              validation_size=1000, early_stopping_patience=2)


def paper() -> dict[str, Any]:
  """The standard VAE of Norouzi, Fleet & Norouzi (2020), Exemplar VAE, Table 1.

  Their standard-prior VAE reaches 228.70 nats of importance-sampled negative
  log-likelihood on dynamically binarised Fashion-MNIST. The setting, the
  training protocol of Tomczak & Welling's VampPrior (2018) that the paper
  follows: a 40-dim latent, two 300-unit hidden layers in encoder and
  decoder, Adam 5e-4, batch 100, KL warm-up over 100 epochs, at most 2000
  epochs with early stopping after 50 epochs without a better validation
  ELBO on 10000 examples held out of the training split.
  Differences to check before comparing numbers: the reference code uses
  gated dense layers, this preset plain ReLU layers; its quality target comes
  with a later issue, with the importance-sampled log p(x).

  Command: python -m experiments.train --preset=paper --workdir=runs/paper
  Measured (3 epochs only, `--epochs=3`, seed 0, Fashion-MNIST, while another
  job shared the 2-core CPU): 6.5 s/epoch of training steps (7,700 examples/s;
  about 9 s/epoch with validation and test evaluation and the checkpoint).
  Test ELBO at the end of the run: not yet measured (nobody has run it to
  the end; after 3 of the 100 warm-up epochs it was -329.89).
  """
  return dict(latent_dim=40, hidden_dims=(300, 300), learning_rate=5e-4,
              batch_size=100, kl_warmup_epochs=100.0, epochs=2000,
              validation_size=10000, early_stopping_patience=50)


PRESETS: dict[str, Callable[[], dict[str, Any]]] = {
    "default": default,
    "smoke": smoke,
    "paper": paper,
}


def get_preset(name: str) -> dict[str, Any]:
  """The TrainConfig fields preset `name` sets; raises ConfigError if unknown."""
  if name not in PRESETS:
    raise ConfigError(f"--preset={name!r} is invalid: choose one of "
                      f"{sorted(PRESETS)}")
  return dict(PRESETS[name]())
