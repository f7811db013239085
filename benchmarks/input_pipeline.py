r"""Examples/s of the two input paths, in one process, on the same data.

    python benchmarks/input_pipeline.py                      # Fashion-MNIST
    python benchmarks/input_pipeline.py --dataset=idx --data_dir=DIR

Trains the default model (784-500-20 MLP, Bernoulli, dynamic binarisation,
batch 128) for --epochs timed epochs on each path, after one untimed warm-up
epoch each (compilation); the paths take turns epoch by epoch, so a change in
the machine's load falls on all of them alike:

  on-device       the split on the device once as uint8; one compiled
                  `lax.scan` per epoch gathers, binarises and trains
                  (`chunks.train_chunk`, the default run);
  on-device/50    the same, in chunks of --steps_per_chunk steps;
  streaming/50    the split on the host; a background thread gathers chunks
                  of --steps_per_chunk steps and puts them on the device while
                  the previous chunk trains (a streamed `feeds.BatchFeed`).

Both paths train on bit-identical batches (tests/test_data_*.py), so the
difference is the cost of the input path alone. --record=PATH also writes
the table as a result record (benchmarks/records.py).
"""

from __future__ import annotations

import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
from absl import app
from absl import flags

from vae_jax import chunks as chunks_lib
from vae_jax import step as step_lib
from vae_jax.configs import default
from vae_jax.data import feeds
from vae_jax.data import prepared
from vae_jax.data import streaming as streaming_lib
from vae_jax.nets.mlp import make_mlp_vae

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import records  # pylint: disable=g-import-not-at-top,wrong-import-position

_DATASET = flags.DEFINE_string("dataset", "fashion_mnist", "Dataset name.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Where its files are.")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs per path.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_CHUNK = flags.DEFINE_integer(
  "steps_per_chunk", 50, "Steps per streamed chunk."
)
_PREFETCH = flags.DEFINE_integer("prefetch", 2, "Chunks prefetched ahead.")
_RECORD = flags.DEFINE_string(
  "record", "", "Also write the table as a record (JSON) to this path."
)


def _chunk_lengths(steps_per_epoch: int, chunk: int) -> list[int]:
  full, rest = divmod(steps_per_epoch, chunk)
  return [chunk] * full + ([rest] if rest else [])


def _compile(data, model, chunks, streaming):
  """{steps: jitted chunk of that many steps} of one input path."""
  feed = feeds.BatchFeed(
    _BATCH.value, data.dynamic_binarization, data.pixel_max, streamed=streaming
  )
  return {
    n: jax.jit(
      functools.partial(
        chunks_lib.train_chunk, model, step_lib.StepConfig(), feed, n
      ),
      donate_argnums=(0,),
    )
    for n in set(chunks)
  }


def _config(**overrides):
  config = default.get_config()
  config.update(
    dict(
      dataset=_DATASET.value,
      data_dir=_DATA_DIR.value or "",
      batch_size=_BATCH.value,
    ),
    **overrides,
  )
  return config


def _epoch(data, compiled, state, hparams, chunks, stream):
  """Trains one epoch; returns (state, seconds)."""
  start = time.perf_counter()
  for n in chunks:
    images = data.train if stream is None else next(stream)
    state, _, _ = compiled[n](state, images, hparams)
  jax.block_until_ready(state)
  return state, time.perf_counter() - start


def main(argv):
  del argv
  on_device = prepared.prepare_data(_config())
  streamed = prepared.PreparedData(
    on_device.dataset, on_device.binarization, on_device.layout, streaming=True
  )
  steps_per_epoch = on_device.num_train // _BATCH.value
  examples = _EPOCHS.value * steps_per_epoch * _BATCH.value
  model = make_mlp_vae(on_device.data_dim)
  hparams = step_lib.Hyperparams(jnp.float32(1e-3), jnp.float32(1.0))
  print(
    f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}); "
    f"data: {on_device.dataset.source}, train {on_device.train.shape}, "
    f"{steps_per_epoch} steps of {_BATCH.value} per epoch"
  )

  paths = [
    ("on-device", on_device, [steps_per_epoch], False),
    (
      f"on-device/{_CHUNK.value}",
      on_device,
      _chunk_lengths(steps_per_epoch, _CHUNK.value),
      False,
    ),
    (
      f"streaming/{_CHUNK.value}",
      streamed,
      _chunk_lengths(steps_per_epoch, _CHUNK.value),
      True,
    ),
  ]
  # Warm-up epoch 0 of each path (compilation), then the timed epochs 1..E,
  # the paths taking turns epoch by epoch so that a change in the machine's
  # load falls on all of them alike. A path's stream spans its epochs 1..E,
  # as in a run (it prefetches the next epoch's first chunks).
  runs = []
  for name, data, chunks, streaming in paths:
    compiled = _compile(data, model, chunks, streaming)
    state = step_lib.init_train_state(
      model, step_lib.StepConfig(), jax.random.key(0)
    )
    warm_up = (
      streaming_lib.stream_chunks(
        data.train, state.rng, _BATCH.value, chunks, 0, 1
      )
      if streaming
      else None
    )
    state, _ = _epoch(data, compiled, state, hparams, chunks, warm_up)
    stream = (
      streaming_lib.stream_chunks(
        data.train,
        state.rng,
        _BATCH.value,
        chunks,
        1,
        _EPOCHS.value,
        prefetch=_PREFETCH.value,
      )
      if streaming
      else None
    )
    runs.append([name, data, compiled, state, chunks, stream, 0.0])
  for _ in range(_EPOCHS.value):
    for run in runs:
      name, data, compiled, state, chunks, stream, _ = run
      run[3], seconds = _epoch(data, compiled, state, hparams, chunks, stream)
      run[6] += seconds
  results, seconds_of = {}, {}
  for name, _, _, _, _, stream, seconds in runs:
    if stream is not None:
      stream.close()
    results[name], seconds_of[name] = examples / seconds, seconds
    print(
      f"{name:>14}: {results[name]:10.0f} examples/s "
      f"({_EPOCHS.value} epochs in {seconds:.2f}s)",
      flush=True,
    )
  reference = results["on-device"]
  for name in list(results)[1:]:
    print(f"{name:>14} / on-device: {results[name] / reference:.3f}")
  if _RECORD.value:
    column = records.Column
    records.write(
      records.new(
        "input_pipeline",
        records.BENCHMARK,
        title="The input paths: the split on the device against chunks "
        f"streamed from the host ({on_device.dataset.source}, batch "
        f"{_BATCH.value})",
        config=dict(
          dataset=_DATASET.value,
          data_dir=_DATA_DIR.value or "",
          train_shape=list(on_device.train.shape),
          batch_size=_BATCH.value,
          steps_per_epoch=steps_per_epoch,
          epochs=_EPOCHS.value,
          steps_per_chunk=_CHUNK.value,
          prefetch=_PREFETCH.value,
        ),
        table=records.Table(
          columns=(
            column(key="path", header="path"),
            column(key="examples_per_sec", header="examples/s", format=",.0f"),
            column(key="seconds", header="s", format=".2f"),
            column(
              key="ratio_to_on_device",
              header="÷ on-device",
              format=".3f",
            ),
          ),
          rows=tuple(
            dict(
              path=name,
              examples_per_sec=rate,
              seconds=seconds_of[name],
              ratio_to_on_device=rate / reference,
            )
            for name, rate in results.items()
          ),
        ),
        notes=f"The default model (784-500-20 MLP); {_EPOCHS.value} timed "
        "epochs per path after a warm-up epoch, the paths taking turns "
        "epoch by epoch; s: the timed epochs' sum.",
      ),
      _RECORD.value,
    )
    print(f"wrote {_RECORD.value}")


if __name__ == "__main__":
  app.run(main)
