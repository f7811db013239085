"""A run: data → compiled chunks of steps → metrics, checkpoints, figures.

`train_and_evaluate(config, workdir)` is what `experiments/train.py` runs.
All numerical work happens in the pure functions of `vae_jax.step` and
`vae_jax.chunks`; this module orders them, measures time and writes the run
directory (`vae_jax.run.store.workdir` holds its contract).

Resume. A checkpoint is taken at the end of every compiled chunk of steps
(one per epoch unless `steps_per_chunk` is set). Running again with an
existing WORKDIR continues from its latest checkpoint (params, optimizer
state, step and rng; the step fixes the data position), so the run ends with
the same parameters as an uninterrupted one — bit for bit on CPU.
metrics.jsonl keeps the epochs up to that checkpoint and gets each later
epoch once; so do the scalars and images of tensorboard/. Only `epochs` (a
larger value extends a finished run), `streaming`, `skip_nonfinite_updates`
and `num_devices` may differ from the stored config. The learning-rate
schedule spans `lr_schedule_epochs`, or `epochs` when that is 0: extending
such a run with a decaying schedule stretches the schedule, so set
`lr_schedule_epochs` when a run may be extended.

Reliability. One training process per WORKDIR (`vae_jax.run.store.lock`);
the newest checkpoint that restores intact is resumed
(`vae_jax.run.store.resume`);
a run with no checkpoint starts over. Every step is checked for non-finite
numbers on the device: the first one stops the run with `NonFiniteError`
before anything non-finite is saved, or, with `skip_nonfinite_updates`, its
update is skipped and counted in the epoch's `skipped_updates` (until more
than `stages.MAX_SKIPPED_SHARE` of an epoch's updates are: then it stops as
well). A non-finite validation or test ELBO stops it too.

Several devices and processes (`vae_jax.run.mesh`, `vae_jax.run.distributed`):
the chunks run sharded over the mesh; evaluation and figures run on one
device of each process, on its replica of the parameters. Process 0 alone
locks WORKDIR and writes config.json, metrics, TensorBoard and figures
(the others write theirs to a temporary directory); every process takes
part in saving and restoring the checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Callable, Optional

import jax
import numpy as np
import tqdm
from absl import logging

from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.data import streaming
from vae_jax.data.prepared import PreparedData, prepare_data
from vae_jax.errors import NonFiniteError
from vae_jax.run import distributed
from vae_jax.run import mesh
from vae_jax.run import programs
from vae_jax.run import stages
from vae_jax.run import tensorboard
from vae_jax.run.early_stopping import EarlyStopping
from vae_jax.run.outputs import write_figures
from vae_jax.run.store import checkpoints as checkpoints_lib
from vae_jax.run.store import resume
from vae_jax.run.store import workdir as workdir_lib
from vae_jax.run.store.lock import WorkdirLock

__all__ = ["train_and_evaluate"]


def train_and_evaluate(
  config,
  workdir: str,
  data: Optional[PreparedData] = None,
  progress_bar: Optional[bool] = None,
  after_chunk: Optional[Callable[[step_lib.TrainState], None]] = None,
  figures: bool = True,
  config_file: str = "",
  checked: bool = False,
) -> list[dict]:
  """Trains `config` in WORKDIR, resuming the run there if there is one.

  Everything the user can get wrong (settings, data, a run directory with
  other settings) is checked before the first write or compiled step.

  Args:
    config: the run's ConfigDict (`vae_jax/configs/default.py`'s fields).
    workdir: the run directory (created if missing).
    data: the prepared data of `config` (prepared here if None).
    progress_bar: a tqdm bar on stderr, advanced once per compiled chunk;
      None: only when stderr is a terminal.
    after_chunk: called with the state after each chunk and its checkpoint.
    figures: write WORKDIR/figures at the end (TensorBoard gets its image
      grids every epoch regardless).
    config_file: the config file the run started from, for config.json.
    checked: the caller has validated `config` already (the launchers do,
      before JAX starts), so it is not validated twice.

  Returns:
    The records of metrics.jsonl, one dict per epoch, from the first epoch.
  """
  if not checked:
    validation.validate(config)
  workdir_lib.check_workdir(workdir)
  place = mesh.placement(config.num_devices)
  mesh.check_batch_size(config.batch_size, place)
  # Process 0 owns the directory: its lock, config.json, metrics, figures,
  # TensorBoard. The others write only their part of the checkpoints.
  primary = jax.process_index() == 0
  alone = jax.process_count() == 1
  with contextlib.ExitStack() as stack:
    # An existing directory is locked at once, a new one once the data are
    # ready (creating it earlier would leave it behind if the data fail).
    # Several processes lock once, below, all learning whether it failed.
    locked = alone and os.path.isdir(workdir)
    if locked:
      stack.enter_context(WorkdirLock(workdir))
    stored = workdir_lib.check_resumable(config, workdir)
    data = data or prepare_data(config)
    model = stages.check_model(config, data)

    def lock():
      nonlocal stored
      if not locked:
        # Created and locked in one step, whoever created it: a process
        # started at the same time may have made it meanwhile and hold it.
        stack.enter_context(WorkdirLock(workdir, create=True))
        # Checked again under the lock: another run may have begun meanwhile.
        stored = workdir_lib.check_resumable(config, workdir)

    distributed.on_first_process(lock)
    outputs = workdir
    if not primary:  # its metrics, figures and events go to a scratch copy
      outputs = stack.enter_context(
        tempfile.TemporaryDirectory(
          prefix=f"vae_jax-process{jax.process_index()}-"
        )
      )
    return _train(
      config,
      workdir,
      stored,
      data,
      model,
      progress_bar,
      after_chunk,
      figures and primary,
      config_file,
      place,
      outputs,
    )


def _train(
  config,
  workdir,
  stored,
  data,
  model,
  progress_bar,
  after_chunk,
  figures,
  config_file,
  place,
  outputs,
):
  """train_and_evaluate in a locked WORKDIR whose settings were checked;
  metrics, config.json, figures and TensorBoard go to OUTPUTS (WORKDIR on
  process 0), checkpoints to WORKDIR."""
  logging.info(mesh.describe(place))
  logging.info(
    "data: %s from %s (%s), train %s, test %s, binarization %s, input %s",
    config.dataset,
    data.dataset.source,
    data.dataset.source_kind,
    data.train.shape,
    data.test.shape,
    data.describe()["binarization"],
    data.describe()["input_path"],
  )

  steps_per_epoch = data.num_train // config.batch_size
  chunks = programs.chunk_lengths(steps_per_epoch, config.steps_per_chunk)
  step_cfg = programs.step_config(config)
  hparams = programs.hyperparams(config, steps_per_epoch)
  init_rng, eval_rng, figure_rng = programs.run_keys(config)
  fresh_state = programs.init_state(model, step_cfg, init_rng)
  train_split = data.train
  if place is not None:
    fresh_state, hparams = place.put((fresh_state, hparams))
    if not data.streaming:
      train_split = place.put(data.train)

  os.makedirs(os.path.join(outputs, "figures"), exist_ok=True)
  ckpts = checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints
  )
  writer = stream = None
  try:
    start = resume.start(ckpts, fresh_state, outputs)
    state, progress, history = start.state, start.progress, start.history
    start_epoch, start_chunk = resume.resume_point(
      config, stored, start, workdir, steps_per_epoch, chunks
    )
    start_step = int(state.step)
    workdir_lib.write_config(
      outputs,
      config,
      config_file,
      data.describe(),
      stages.describe_model(config, model),
    )
    stopping = EarlyStopping(config.early_stopping_patience, history)

    if data.streaming and start_epoch < config.epochs:
      # Starts at the checkpoint's chunk: the chunks before it are never
      # gathered on the host nor sent to the device.
      # (This process's copy of the key: the host draws the order.)
      rng = state.rng if place is None else mesh.local_copy(state.rng)
      stream = streaming.stream_chunks(
        np.asarray(data.train),
        rng,
        config.batch_size,
        chunks,
        first_epoch=start_epoch,
        num_epochs=config.epochs - start_epoch,
        first_chunk=start_chunk,
        device=None if place is None else place.streamed_chunk,
      )
    next_input = (
      (lambda: next(stream)) if stream is not None else (lambda: train_split)
    )

    compile_start = time.perf_counter()
    feed = programs.batch_feed(config, data, place)
    # Lowered for the fresh state, so a resumed run (whose restored arrays
    # are committed to the device) finds the programs a first run compiled.
    compiled = {
      n: programs.compile_chunk(
        model, step_cfg, feed, n, fresh_state, train_split, hparams, place
      )
      for n in sorted(set(chunks))
    }
    logging.info(
      "compiled %d chunk program(s) in %.1fs",
      len(compiled),
      time.perf_counter() - compile_start,
    )

    # On resume (or a start over), readers drop the events that a crashed
    # run wrote after the checkpoint, steps > start_step, since this run
    # writes them again.
    tensorboard_dir = os.path.join(outputs, "tensorboard")
    writer = tensorboard.SummaryWriter(
      tensorboard_dir,
      purge_step=start_step + 1 if os.path.isdir(tensorboard_dir) else None,
    )
    run_start = time.perf_counter() - progress.wall_time_sec
    done_chunks = min(
      start_epoch * len(chunks) + start_chunk, config.epochs * len(chunks)
    )
    if progress_bar is None:
      progress_bar = sys.stderr.isatty()
    bar = tqdm.tqdm(
      total=config.epochs * len(chunks),
      initial=done_chunks,
      unit="chunk",
      file=sys.stderr,
      dynamic_ncols=True,
      disable=not progress_bar,
      desc="train",
    )
    if stopping.should_stop:
      logging.info(
        "early stopping: the run already stopped after epoch %d",
        history[-1]["epoch"],
      )
    elif start_epoch >= config.epochs:
      logging.info(
        "the run already has %d epochs; pass a larger "
        "--config.epochs to extend it",
        start_epoch,
      )

    with bar:
      for epoch in range(start_epoch, config.epochs):
        if stopping.should_stop:
          break
        resumed_mid_epoch = epoch == start_epoch and start_chunk > 0
        # The epoch's chunks so far, and their train seconds.
        done = list(progress.epoch_chunks) if resumed_mid_epoch else []
        train_seconds = (
          progress.epoch_train_seconds if resumed_mid_epoch else 0.0
        )
        for c in range(start_chunk if epoch == start_epoch else 0, len(chunks)):
          n = chunks[c]
          chunk_start = time.perf_counter()
          state, metrics, health = compiled[n](state, next_input(), hparams)
          # The records themselves, on the host (waits for the chunk).
          metrics, health = jax.device_get((metrics, health))
          failure = stages.chunk_failure(
            health,
            sum(c.skipped_updates for c in done),
            config.skip_nonfinite_updates,
            steps_per_epoch,
            config.epochs,
            ckpts,
          )
          if failure:
            raise NonFiniteError(failure)
          train_seconds += time.perf_counter() - chunk_start
          done.append(
            resume.ChunkRecord(n, metrics, int(health.skipped_updates))
          )
          running = sum(c.steps * float(c.metrics.elbo) for c in done) / sum(
            c.steps for c in done
          )
          bar.set_postfix_str(
            f"epoch {epoch + 1}/{config.epochs} ELBO {running:.2f}",
            refresh=False,
          )
          bar.update(1)
          end_of_epoch = c == len(chunks) - 1
          if end_of_epoch:
            # Evaluation runs on one device: this process's replica.
            local = state if place is None else mesh.local_copy(state)
            bar.clear()  # the log line goes above the bar, not into it
            stages.end_epoch(
              stages.EpochEnd(
                config, outputs, model, data, eval_rng, figure_rng
              ),
              epoch,
              state,
              done,
              steps_per_epoch,
              train_seconds,
              time.perf_counter() - run_start,
              history,
              writer,
              stopping,
              ckpts,
              local=local,
            )
            bar.refresh()
          ckpts.save_latest(
            state,
            resume.checkpoint_progress(
              epoch + 1 if end_of_epoch else epoch,
              [] if end_of_epoch else done,
              0.0 if end_of_epoch else train_seconds,
              time.perf_counter() - run_start,
              history,
            ),
          )
          if after_chunk is not None:
            after_chunk(state)
        if stopping.should_stop:
          bar.clear()
          logging.info(
            "early stopping after epoch %d: %s", epoch + 1, stopping.describe()
          )

    final_params = stages.final_measurements(
      config,
      outputs,
      model,
      state if place is None else mesh.local_copy(state),
      data,
      ckpts,
      history,
      writer,
      eval_rng,
    )
    if figures:
      write_figures(
        model,
        final_params,
        data,
        history,
        os.path.join(outputs, "figures"),
        figure_rng,
      )
  finally:
    if stream is not None:
      stream.close()
    if writer is not None:
      writer.close()
    ckpts.close()
  return history
