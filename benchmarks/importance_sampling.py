r"""Throughput of the importance-sampled log p(x), against the machine's limit.

    python benchmarks/importance_sampling.py                   # default model
    python benchmarks/importance_sampling.py --hidden_dims=300,300 --latent_dim=40
    python benchmarks/importance_sampling.py --profile   # + where time goes

Measures, in one process, after compilation:

  estimator     `vae_jax.evaluation.dataset.dataset_log_px` (what
                experiments/evaluate.py runs) on --num_examples binary
                images at K = --num_samples: images/s, and the projected
                time of the full 10,000-image test set at K = 5000;
  matmuls       a compiled loop of nothing but the decoder's matmuls at the
                estimator's chunk size (z [C, D] → hidden → [C, 784]): the
                GFLOP/s this machine reaches on these very shapes;
  limit         that GFLOP/s ÷ the decoder's forward FLOPs per image
                (2 × MACs × K): the images/s no implementation of the same
                model and K can beat on this machine;
  + log p(x|z)  the same loop with the Bernoulli log-likelihood of each
                decoded sample added (a softplus per pixel and sample,
                summed): what the matmul limit leaves out but every
                estimator of this model must compute; the estimator's
                ratio to it is what its own work (the noise, the encoder,
                the running logsumexp) costs.
The three programs are measured --repeats times, alternating; the best of
each is compared (the least disturbed on a shared machine), and the median
of the per-repeat ratios is printed beside it. --profile adds the estimator's
per-op trace (benchmarks/op_profile.py): which ops take its time.
--record=PATH also writes the numbers as a result record
(benchmarks/records.py), e.g. benchmarks/results/importance_sampling.json.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from vae_jax.nets.mlp import make_mlp_vae
from vae_jax.evaluation import dataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import op_profile  # pylint: disable=g-import-not-at-top,wrong-import-position
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_K = flags.DEFINE_integer("num_samples", 1000, "K per image.")
_N = flags.DEFINE_integer("num_examples", 200, "Images timed per repeat.")
_LATENT = flags.DEFINE_integer("latent_dim", 20, "Latent size.")
_HIDDEN = flags.DEFINE_list("hidden_dims", ["500"], "Hidden widths.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Alternating repeats.")
_PROFILE = flags.DEFINE_bool(
  "profile", False, "Also print the estimator's time op by op."
)
_RECORD = flags.DEFINE_string(
  "record",
  "",
  "Also write the numbers as a record (JSON) to this path, e.g. "
  "benchmarks/results/importance_sampling.json.",
)


def _decoder_macs(latent: int, hidden: list[int], out: int) -> int:
  sizes = [latent, *reversed(hidden), out]
  return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _matmul_loop(model, params, chunk: int, steps: int, x=None):
  """`steps` decoder forwards of a [chunk, D] batch: the matmuls' cost.

  Each step's input depends on the last step's output (a scalar), so XLA
  cannot hoist or merge the steps; no random numbers are drawn inside.
  With an image `x`, each step also sums log p(x|z) of its chunk.
  """

  def body(carry, _):
    out = model.decode(params, z + carry)  # [chunk, 784]
    if x is None:
      return 1e-6 * out[0, 0], None
    log_px_z = jax.vmap(model.log_likelihood, (0, None))(out, x)
    return 1e-6 * jnp.sum(log_px_z), None

  z = jax.random.normal(jax.random.key(7), (chunk, model.latent_dim))

  @jax.jit
  def run(start):
    carry, _ = jax.lax.scan(body, start, None, length=steps)
    return carry

  return run


def _time(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def main(argv):
  del argv
  if _PROFILE.value:
    op_profile.enable()  # before JAX's backend starts
  hidden = [int(h) for h in _HIDDEN.value]
  model = make_mlp_vae(784, _LATENT.value, hidden)
  params = model.init(jax.random.key(0))
  k, n = _K.value, _N.value
  images = (np.random.default_rng(0).uniform(size=(n, 784)) < 0.3).astype(
    np.float32
  )
  rng = jax.random.key(1)
  chunk = dataset.chunk_size_for(k)
  steps = max(1, k * n // chunk // 4)  # a loop of about a quarter the work
  matmuls = _matmul_loop(model, params, chunk, steps)
  with_likelihood = _matmul_loop(
    model, params, chunk, steps, jnp.asarray(images[0])
  )
  flops_per_image = 2 * _decoder_macs(_LATENT.value, hidden, 784) * k

  estimate = lambda: dataset.dataset_log_px(
    model, params, images, rng, k, progress=False
  )
  estimate()  # compile
  _time(matmuls, jnp.float32(0))
  _time(with_likelihood, jnp.float32(0))
  est_rates, gflops, floors = [], [], []
  for r in range(_REPEATS.value):
    est_rates.append(n / _time(estimate))
    seconds = _time(matmuls, jnp.float32(r))
    gflops.append(steps * chunk * flops_per_image / k / seconds / 1e9)
    floors.append(steps * chunk / k / _time(with_likelihood, jnp.float32(r)))
  # Best against best: on a shared machine the fastest repeat of each is the
  # one least disturbed; medians are printed beside them.
  rate, flops = max(est_rates), max(gflops)
  limit = flops * 1e9 / flops_per_image
  median_pct = 100 * statistics.median(
    e / (g * 1e9 / flops_per_image) for e, g in zip(est_rates, gflops)
  )
  floor_median_pct = 100 * statistics.median(
    e / f for e, f in zip(est_rates, floors)
  )
  print(
    f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); "
    f"model 784-{'-'.join(map(str, hidden))}-{_LATENT.value}, K = {k}, "
    f"chunk {chunk}, {n} images, best of {_REPEATS.value} alternating "
    "repeats"
  )
  print(f"decoder matmuls: {flops:8.1f} GFLOP/s at [{chunk}, ...] shapes")
  print(
    f"limit:           {limit:8.1f} images/s "
    f"({flops_per_image / 1e9:.2f} GFLOP per image)"
  )
  floor = max(floors)
  print(
    f"+ log p(x|z):    {floor:8.1f} images/s (the matmuls and the "
    "likelihood's softplus sum, nothing else)"
  )
  print(
    f"estimator:       {rate:8.1f} images/s = {1e3 / rate:.2f} ms/image "
    f"= {100 * rate / limit:.0f}% of the limit (median of the "
    f"repeats' ratios: {median_pct:.0f}%); {100 * rate / floor:.0f}% of "
    f"matmuls + log p(x|z) (median {floor_median_pct:.0f}%)"
  )
  full = 10_000 * 5000 / k / rate
  print(
    f"projected: the 10,000 test images at K = 5000 in {full / 60:.1f} min "
    f"(limit: {10_000 * 5000 / k / limit / 60:.1f} min)"
  )
  if _RECORD.value:
    _write_record(
      hidden, k, n, chunk, rate, limit, floor, flops, full, median_pct
    )
  if _PROFILE.value:
    # The program of one call over all n images (n ≤ 200,000 / K: one block).
    hlo = (
      dataset._log_px_program.lower(  # pylint: disable=protected-access
        model,
        params,
        jnp.asarray(images),
        rng,
        num_samples=k,
        chunk_size=chunk,
        batch_size=max(1, dataset._DECODER_ROWS // k),
        offset=0,
      )
      .compile()
      .as_text()
    )
    print(
      f"\nestimator: {n} images at K = {k}, XLA:CPU's per-op trace "
      "(a step = an image)"
    )
    print(op_profile.table(op_profile.op_times(estimate), hlo, n))


def _write_record(hidden, k, n, chunk, rate, limit, floor, flops, full, median):
  model = f"784-{'-'.join(map(str, hidden))}-{_LATENT.value}"
  column = records.Column
  records.write(
    records.new(
      "importance_sampling",
      records.BENCHMARK,
      title=f"The importance-sampled log p(x) against the decoder-matmul "
      f"limit ({model}, K = {k})",
      config=dict(
        model=model,
        num_samples=k,
        num_examples=n,
        chunk=chunk,
        repeats=_REPEATS.value,
      ),
      numbers={
        "decoder matmuls, GFLOP/s": round(flops, 1),
        "the 10,000 test images at K = 5000, minutes": round(full / 60, 1),
        "the estimator's % of the limit, median of the repeats": round(median),
      },
      table=records.Table(
        columns=(
          column(key="row", header="program"),
          column(key="images_per_sec", header="images/s", format=",.1f"),
          column(
            key="percent_of_limit",
            header="% of limit",
            format=".0f",
            suffix="%",
          ),
        ),
        rows=(
          dict(
            row="estimator (`dataset_log_px`)",
            images_per_sec=rate,
            percent_of_limit=100 * rate / limit,
          ),
          dict(
            row="matmuls + log p(x|z)",
            images_per_sec=floor,
            percent_of_limit=100 * floor / limit,
          ),
          dict(
            row="limit (matmuls)", images_per_sec=limit, percent_of_limit=100
          ),
        ),
      ),
      notes=f"Best of {_REPEATS.value} alternating repeats, after compilation.",
    ),
    _RECORD.value,
  )
  print(f"wrote {_RECORD.value}")


if __name__ == "__main__":
  app.run(main)
