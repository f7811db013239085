"""A run: data → compiled chunks of steps → metrics, checkpoints, figures.

`train_and_evaluate(config, workdir)` is what `experiments/train.py` runs.
The numerical work is the pure functions of `vae_jax.step` and
`vae_jax.chunks`; this module orders them, and `vae_jax.run.context` keeps
the run's host side. A checkpoint ends every compiled chunk, and running
again in WORKDIR resumes from the newest intact one, bit for bit on CPU
(`vae_jax.store`: the lock, the checkpoints, resume). A non-finite step or
evaluation stops the run before anything non-finite is saved. On a mesh
(`vae_jax.run.mesh`, `vae_jax.run.distributed`) the chunks run sharded;
evaluation and figures run on each process's replica, and process 0 alone
writes config.json, metrics, TensorBoard and figures.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from typing import Callable, NamedTuple, Optional

import jax
import tqdm
from absl import logging

from vae_jax import step as step_lib
from vae_jax import validation
from vae_jax.data.prepared import PreparedData, prepare_data
from vae_jax.run import distributed
from vae_jax.run import mesh
from vae_jax.run import programs
from vae_jax.run import stages
from vae_jax.run import tensorboard
from vae_jax.run.context import RunContext, RunTracker
from vae_jax.run.outputs import write_figures
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import resume
from vae_jax.store import workdir as workdir_lib
from vae_jax.store.lock import WorkdirLock
from vae_jax.store.metrics import EpochRecord

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
) -> list[EpochRecord]:
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
    The records of metrics.jsonl, one `EpochRecord` per epoch, from the
    first epoch.
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
    options = _Options(
      progress_bar, after_chunk, figures and primary, config_file
    )
    return _train(
      config, workdir, outputs, stored, (data, model), place, options
    )


class _Options(NamedTuple):
  """How train_and_evaluate reports: its arguments of the same names."""

  progress_bar: Optional[bool]
  after_chunk: Optional[Callable[[step_lib.TrainState], None]]
  figures: bool
  config_file: str


def _train(config, workdir, outputs, stored, data_model, place, options):
  """train_and_evaluate in a locked WORKDIR whose settings were checked;
  metrics, config.json, figures and TensorBoard go to OUTPUTS (WORKDIR on
  process 0), checkpoints to WORKDIR."""
  data, model = data_model
  logging.info(mesh.describe(place))
  about = data.describe()
  logging.info(
    f"data: {config.dataset} from {data.dataset.source} "
    f"({data.dataset.source_kind}), train {data.train.shape}, test "
    f"{data.test.shape}, binarization {about['binarization']}, input "
    f"{about['input_path']}"
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
    start_epoch, start_chunk = resume.resume_point(
      config, stored, start, workdir, steps_per_epoch, chunks
    )
    stages.write_run_config(outputs, config, options.config_file, data, model)
    if data.streaming and start_epoch < config.epochs:
      rng = start.state.rng
      stream = programs.train_stream(
        config,
        data,
        place,
        rng if place is None else mesh.local_copy(rng),
        chunks,
        (start_epoch, start_chunk),
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

    writer = tensorboard.for_run(outputs, int(start.state.step))
    ctx = RunContext(
      config,
      model,
      data,
      outputs,
      ckpts,
      writer,
      steps_per_epoch,
      eval_rng,
      figure_rng,
      place,
    )
    tracker = RunTracker(ctx, start)  # its clock starts after compiling
    next_input = (
      (lambda: next(stream)) if stream is not None else (lambda: train_split)
    )
    state = _epochs(
      tracker,
      start.state,
      (start_epoch, start_chunk, chunks),
      lambda n, state: compiled[n](state, next_input(), hparams),
      options,
    )
    params = tracker.finish(state)
    if options.figures:
      write_figures(
        model,
        params,
        data,
        tracker.history,
        os.path.join(outputs, "figures"),
        figure_rng,
      )
  finally:
    if stream is not None:
      stream.close()
    if writer is not None:
      writer.close()
    ckpts.close()
  return tracker.history


def _epochs(tracker: RunTracker, state, start, run_chunk, options):
  """The epochs from `start` = (epoch, chunk, chunk lengths) on, each chunk
  `run_chunk(n, state) → (state, metrics, health)`; the last state."""
  config = tracker.ctx.config
  start_epoch, start_chunk, chunks = start
  stopping, history = tracker.stopping, tracker.history
  progress_bar = options.progress_bar
  if progress_bar is None:
    progress_bar = sys.stderr.isatty()
  bar = tqdm.tqdm(
    total=config.epochs * len(chunks),
    initial=min(
      start_epoch * len(chunks) + start_chunk, config.epochs * len(chunks)
    ),
    unit="chunk",
    file=sys.stderr,
    dynamic_ncols=True,
    disable=not progress_bar,
    desc="train",
  )
  if stopping.should_stop:
    logging.info(
      "early stopping: the run already stopped after epoch %d",
      history[-1].epoch,
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
      for c in range(start_chunk if epoch == start_epoch else 0, len(chunks)):
        chunk_start = time.perf_counter()
        state, metrics, health = run_chunk(chunks[c], state)
        # The records themselves, on the host (waits for the chunk).
        metrics, health = jax.device_get((metrics, health))
        chunk = resume.ChunkRecord(
          chunks[c], metrics, int(health.skipped_updates)
        )
        seconds = time.perf_counter() - chunk_start
        if c == len(chunks) - 1:
          bar.clear()  # the epoch's log line goes above the bar
        tracker.after_chunk(state, epoch, chunk, health, seconds)
        bar.set_postfix_str(
          f"epoch {epoch + 1}/{config.epochs} ELBO "
          f"{tracker.running_elbo() if tracker.done else metrics.elbo:.2f}",
          refresh=False,
        )
        bar.update(1)
        if options.after_chunk is not None:
          options.after_chunk(state)
      if stopping.should_stop:
        bar.clear()
        logging.info(
          "early stopping after epoch %d: %s", epoch + 1, stopping.describe()
        )
  return state
