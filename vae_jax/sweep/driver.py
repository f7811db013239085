"""A sweep: its members trained group by group into SWEEP_DIR, then compared.

    SWEEP_DIR/sweep.json       the grid, its members' settings and the groups
    SWEEP_DIR/<member>/        a run directory (vae_jax.store.workdir),
                               one per member, read by every tool that reads
                               a run
    SWEEP_DIR/status.json      each finished member: done | early_stopped |
                               diverged, why, its active units
    SWEEP_DIR/summary.csv, summary.md, comparison.png   (sweep.summary)

A group runs vmapped (`vae_jax.sweep.group`) when vectorised, else its
members run one after another through `train_and_evaluate`: the same run
directories either way, so a member resumes in either mode (bit for bit in
the mode it began in). Running the same sweep again resumes every
unfinished member from its checkpoint; a member in status.json is not
trained again. Everything a command can get wrong is checked before the
first write: the grid (`sweep.grid`), each member's run directory and
settings, the data, each group's model.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable, Iterable, Optional

import jax
from absl import logging

from vae_jax import evaluation
from vae_jax.data.prepared import prepare_data
from vae_jax.errors import ConfigError, NonFiniteError
from vae_jax.math.model import VAEModel
from vae_jax.run import loop
from vae_jax.run import memory
from vae_jax.run import stages
from vae_jax.run.early_stopping import EarlyStopping
from vae_jax.store import checkpoints as checkpoints_lib
from vae_jax.store import workdir as workdir_lib
from vae_jax.store.lock import WorkdirLock
from vae_jax.sweep import group as sweep_group
from vae_jax.sweep import summary as sweep_summary
from vae_jax.sweep.grid import SWEEP_JSON, SweepPlan, check_sweep_dir

__all__ = ["run_sweep", "vectorize_choice", "read_status", "STATUS_JSON"]

STATUS_JSON = "status.json"
_DATA_SETTINGS = (
  "dataset",
  "data_dir",
  "binarization",
  "validation_size",
  "train_split",
  "test_split",
  "image_layout",
  "streaming",
  "batch_size",
  "model",
)


def vectorize_choice(vectorize: str, backend: Optional[str] = None) -> bool:
  """`on`/`off`, or `auto`: off on CPU, on on GPU and TPU.

  On the CPU a vmapped group trained slower than its members one after
  another (benchmarks/results/sweep.json); on an accelerator a small model
  leaves most of the device idle and a group fills it (not measured yet).
  """
  if vectorize in ("on", "off"):
    return vectorize == "on"
  return (backend or jax.default_backend()) != "cpu"


def _member_dir(sweep_dir: str, member) -> str:
  return os.path.join(sweep_dir, member.name)


def read_status(sweep_dir: str) -> dict:
  """The finished members; a damaged file only costs their final
  measurements again (each resumes from its checkpoint, already done)."""
  path = os.path.join(sweep_dir, STATUS_JSON)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      status = json.load(f)
    if isinstance(status, dict):
      return status
  except (OSError, ValueError):
    pass
  logging.warning(
    "%s is unreadable: every member is checked again from its run directory",
    path,
  )
  return {}


def _active_units(config, workdir: str, model, data) -> Optional[int]:
  """Of the member's best checkpoint, else its latest; None without one."""
  with checkpoints_lib.RunCheckpoints(
    os.path.join(workdir, "checkpoints"), read_only=True
  ) as ckpts:
    for which in (checkpoints_lib.BEST, checkpoints_lib.LATEST):
      steps = ckpts.steps(which)
      if steps:
        params = ckpts.restore_params(steps[-1], which)
        return int(
          evaluation.latent_usage(
            model, params, data.test, config.eval_batch_size
          ).active_units
        )
  return None


def _check(plan: SweepPlan, sweep_dir: str, vectorized: bool):
  """Every check before the first write. Returns (member indices, data,
  model) per group; a group whose members' models differ (a model of one's
  own built from a step input) is split by model."""
  check_sweep_dir(sweep_dir, plan.description)
  for member in plan.members:
    workdir = _member_dir(sweep_dir, member)
    workdir_lib.check_workdir(workdir)
    workdir_lib.check_resumable(member.config, workdir)
  prepared, groups = {}, []
  for group in plan.groups:
    config = plan.members[group[0]].config
    key = tuple(config[k] for k in _DATA_SETTINGS)
    if key not in prepared:
      prepared[key] = prepare_data(config)
    data = prepared[key]
    try:
      sweep_group.resolve_devices(config.num_devices)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    by_model: dict[VAEModel, list[int]] = {}
    for i in group:
      model = stages.check_model(plan.members[i].config, data)
      by_model.setdefault(model, []).append(i)
    for model, indices in by_model.items():
      if vectorized and len(indices) > 1 and not config.streaming:
        memory.check_fits(model, config, members=len(indices))
      groups.append((indices, data, model))
  return groups


def run_sweep(
  plan: SweepPlan,
  sweep_dir: str,
  vectorize: str = "auto",
  progress_bar: Optional[bool] = False,
  after_chunk: Optional[Callable[[int], None]] = None,
  figures: bool = True,
) -> dict:
  """Trains every unfinished member of `plan` in SWEEP_DIR; writes the
  summary. Returns status.json's content ({member: status, …}).

  `progress_bar` is that of the members trained one after another (None:
  when stderr is a terminal); a vmapped group logs a line per chunk.

  Raises:
    ConfigError (and other UserErrors): before anything is written.
  """
  vectorized = vectorize_choice(vectorize)
  groups = _check(plan, sweep_dir, vectorized)
  with WorkdirLock(sweep_dir, create=True):
    description = dict(
      plan.description,
      vectorize=vectorize,
      vectorized=vectorized,
      backend=jax.default_backend(),
      groups=[[plan.members[i].name for i in g] for g, _, _ in groups],
    )
    workdir_lib.write_json_atomic(
      os.path.join(sweep_dir, SWEEP_JSON), description
    )
    status = read_status(sweep_dir)
    for group, data, model in groups:
      pending = [i for i in group if plan.members[i].name not in status]
      if not pending:
        continue
      configs = [plan.members[i].config for i in pending]
      workdirs = [_member_dir(sweep_dir, plan.members[i]) for i in pending]
      outcomes: Iterable[sweep_group.Outcome]
      if vectorized and len(pending) > 1 and not configs[0].streaming:
        logging.info(
          "training %d members as one vmapped program: %s",
          len(pending),
          ", ".join(plan.members[i].name for i in pending),
        )
        with contextlib.ExitStack() as stack:
          for workdir in workdirs:
            stack.enter_context(WorkdirLock(workdir, create=True))
          outcomes = sweep_group.train_group(
            configs,
            workdirs,
            data,
            model,
            plan.config_file,
            after_chunk=after_chunk,
            figures=figures,
          )
      else:
        outcomes = (
          _train_alone(
            c, w, data, progress_bar, after_chunk, figures, plan.config_file
          )
          for c, w in zip(configs, workdirs)
        )
      for i, config, workdir, outcome in zip(
        pending, configs, workdirs, outcomes
      ):
        status[plan.members[i].name] = {
          "status": outcome.status,
          "message": outcome.message,
          "active_units": _active_units(config, workdir, model, data),
        }
        workdir_lib.write_json_atomic(
          os.path.join(sweep_dir, STATUS_JSON), status
        )
    sweep_summary.write_summary(sweep_dir, plan.description, status)
  return status


def _train_alone(
  config, workdir, data, progress_bar, after_chunk, figures, config_file
) -> sweep_group.Outcome:
  """One member through the single run's trainer."""
  count = [0]

  def counted(_):
    count[0] += 1
    after_chunk(count[0])

  try:
    history = loop.train_and_evaluate(
      config,
      workdir,
      data=data,
      progress_bar=progress_bar,
      after_chunk=counted if after_chunk is not None else None,
      figures=figures,
      config_file=config_file,
      checked=True,
    )
  except NonFiniteError as e:
    logging.warning("%s diverged (the others go on): %s", workdir, e)
    return sweep_group.Outcome("diverged", str(e))
  stopping = EarlyStopping(config.early_stopping_patience, history)
  if stopping.should_stop:
    return sweep_group.Outcome("early_stopped", stopping.describe())
  return sweep_group.Outcome("done", "")
