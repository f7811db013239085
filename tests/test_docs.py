"""Every shell and Python block of README.md and docs/*.md runs.

The blocks are the fenced ones (```); their info string is the language,
then, in braces, how the test runs the block (the braces are pymdownx's
attribute syntax, so MkDocs renders them as plain code):

    ```bash / ```python       run as written
    ```bash {tiny}            run on a tiny setting, the flags below added:
        experiments.train, experiments.sweep (and vae-jax-train, -sweep)
            TINY_TRAIN_FLAGS: a synthetic IDX dataset of 512 training and
            128 test images, one epoch, a 64-image validation split
        experiments.evaluate (vae-jax-evaluate)
            TINY_EVALUATE_FLAGS: 64 images, K = 100; with
            --gap_decomposition also TINY_GAP_FLAGS, a short gap fit
        make train
            the same through DATA_DIR and ARGS, the setup step left out
    ```bash {tiny="FLAGS"}    FLAGS added to every Python command instead
                              (a benchmark's own small sizes)
    ```bash {skip="reason"}   not run, for the reason given
    ```python {title="f.py"}  written to f.py for the blocks after it

Flags go at the end of their command (before `&`, `;`, `|`, a comment),
so they override the block's own. Lines that are `make test` or
`make docs` are not run: they are what runs this test. Languages other
than bash, sh, shell and python (text, json) are not code to run.

`test_every_block_is_run_or_says_why_not` (fast) checks the info strings:
a language, known attributes, a reason for every skip, and `{tiny}` or a
skip on every block that trains (so no block trains on the real data).
`test_code_blocks_run` (slow) runs each page's blocks in order, README.md
first and then the pages in mkdocs.yml's navigation order, each page in a
fresh copy of the repository (its `.venv` the environment running the
tests), so a block may use what an earlier block of its page made. A block
fails when it exits non-zero or prints a traceback.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO_ROOT
from conftest import write_idx_directory

RUN_LANGUAGES = ("bash", "sh", "shell", "python")
# Shell or Python under another name: refused, so no block escapes the test.
DISGUISED = ("console", "zsh", "shell-session", "py", "python3", "pycon")
ATTRIBUTES = ("tiny", "skip", "title")
TINY_TRAIN_FLAGS = (
  "--config.dataset=idx",
  "--config.data_dir={data}",
  "--config.epochs=1",
  "--config.validation_size=64",
)
TINY_EVALUATE_FLAGS = ("--max_examples=64", "--num_importance_samples=100")
# Added where the command asks for --gap_decomposition (else refused).
TINY_GAP_FLAGS = ("--gap_examples=16", "--gap_max_steps=100")
_LAUNCHES_TRAINING = re.compile(
  r"-m experiments\.(?:train|sweep)\b|vae-jax-(?:train|sweep)\b"
)
_TRAINS = re.compile(
  _LAUNCHES_TRAINING.pattern + r"|(?:^|[\s;&|(])make\b[^;&|]*\btrain\b"
)
_EVALUATES = re.compile(r"-m experiments\.evaluate\b|vae-jax-evaluate\b")
_MAKE_TRAIN = re.compile(r"(?:^|(?<=[\s;&|(]))make\b(?P<args>[^;&|]*)")
_PYTHON = re.compile(r"(?:^|(?<=[\s;&|(=]))(?:\S*/)?python3?(?=\s)")
_EXEMPT = re.compile(r"^\s*make (?:test|docs)\s*$")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<info>.*)$")
_INFO = re.compile(r"^(?P<lang>[\w+-]+)(?: \{(?P<attrs>[^{}]*)\})?$")
_ATTRIBUTE = re.compile(r'\s*(?P<key>\w+)(?:="(?P<value>[^"]*)")?\s*')
_BLOCK_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Block:
  page: str
  line: int  # of the opening fence, 1-based
  language: str
  attributes: dict
  code: str

  @property
  def where(self) -> str:
    return f"{self.page}:{self.line}"

  @property
  def runs(self) -> bool:
    return self.language in RUN_LANGUAGES and "skip" not in self.attributes


def _pages() -> list[str]:
  """README.md, then docs/ in the order of mkdocs.yml's navigation."""
  config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())

  def walk(node):
    if isinstance(node, str):
      yield node
    elif isinstance(node, list):
      for item in node:
        yield from walk(item)
    elif isinstance(node, dict):
      for value in node.values():
        yield from walk(value)

  return ["README.md"] + [f"docs/{page}" for page in walk(config["nav"])]


def _parse_attributes(text: str, where: str) -> dict:
  attributes, position = {}, 0
  while position < len(text):
    match = _ATTRIBUTE.match(text, position)
    if match is None or match.end() == position:
      raise ValueError(f"{where}: cannot read the attributes {{{text}}}")
    attributes[match.group("key")] = match.group("value")
    position = match.end()
  return attributes


def parse_blocks(page: str, text: str) -> list[Block]:
  """The fenced blocks of a Markdown page; ValueError for a bad info string."""
  blocks = []
  lines = text.splitlines()
  i = 0
  while i < len(lines):
    opening = _FENCE.match(lines[i])
    if opening is None:
      i += 1
      continue
    indent, fence = len(opening.group("indent")), opening.group("fence")
    where = f"{page}:{i + 1}"
    body = []
    i += 1
    while i < len(lines) and not re.match(rf"^ *{fence}`*\s*$", lines[i]):
      body.append(
        lines[i][indent:] if lines[i][:indent].isspace() else lines[i]
      )
      i += 1
    if i == len(lines):
      raise ValueError(f"{where}: the block is never closed")
    i += 1
    info = _INFO.match(opening.group("info").strip())
    if info is None:
      raise ValueError(
        f"{where}: the info string {opening.group('info')!r} is not "
        "LANGUAGE or LANGUAGE {ATTRIBUTES} (every block names its language)"
      )
    attributes = _parse_attributes(info.group("attrs") or "", where)
    blocks.append(
      Block(
        page,
        int(where.rsplit(":", 1)[1]),
        info.group("lang"),
        attributes,
        "\n".join(body) + "\n",
      )
    )
  return blocks


def _all_blocks() -> dict[str, list[Block]]:
  return {
    page: parse_blocks(page, (REPO_ROOT / page).read_text())
    for page in _pages()
  }


def _problems(block: Block) -> list[str]:
  """What is wrong with a block's marking; empty when it is fine."""
  problems = []
  unknown = set(block.attributes) - set(ATTRIBUTES)
  if unknown:
    problems.append(f"unknown attribute(s) {sorted(unknown)}")
  if block.language in DISGUISED:
    problems.append(f"write {block.language!r} as one of {RUN_LANGUAGES}")
  if block.attributes and block.language not in RUN_LANGUAGES:
    problems.append("attributes on a block that is not run")
  if "skip" in block.attributes and not block.attributes["skip"]:
    problems.append('skip without a reason: {skip="why"}')
  if "title" in block.attributes:
    if block.language != "python" or len(block.attributes) > 1:
      problems.append("title= is for a python file alone")
    elif not re.fullmatch(r"[\w.-]+\.py", block.attributes["title"] or ""):
      problems.append('title="NAME.py" names the file to write')
  if "tiny" in block.attributes and block.language == "python":
    problems.append("tiny is for shell blocks")
  if "tiny" in block.attributes and "skip" in block.attributes:
    problems.append("tiny and skip together")
  if (
    block.language in ("bash", "sh", "shell")
    and not block.attributes
    and any(_TRAINS.search(_command(line)) for line in _lines(block.code))
  ):
    problems.append("a block that trains is marked {tiny} (or skipped)")
  return problems


def test_every_block_is_run_or_says_why_not():
  problems, counts = [], {"run": 0, "skipped": 0, "file": 0}
  for blocks in _all_blocks().values():
    for block in blocks:
      problems += [f"{block.where}: {p}" for p in _problems(block)]
      if "skip" in block.attributes:
        counts["skipped"] += 1
      elif "title" in block.attributes:
        counts["file"] += 1
      elif block.runs:
        counts["run"] += 1
  assert not problems, "\n".join(problems)
  assert counts["run"] > 0, counts


def test_the_readme_is_short():
  lines = (REPO_ROOT / "README.md").read_text().splitlines()
  assert len(lines) <= 250, f"README.md has {len(lines)} lines (at most 250)"


# ------------------------------------------------------------ rewriting


def _lines(code: str) -> list[str]:
  """Logical lines: a trailing backslash joins a line to the next."""
  return code.replace("\\\n", " ").splitlines()


def _unquoted(text: str):
  """(index, character) of `text` outside quotes."""
  quote = None
  for i, c in enumerate(text):
    if quote:
      if c == quote:
        quote = None
    elif c in "'\"":
      quote = c
    else:
      yield i, c


def _comment_start(line: str) -> int:
  for i, c in _unquoted(line):
    if c == "#" and (i == 0 or line[i - 1].isspace()):
      return i
  return len(line)


def _command(line: str) -> str:
  return line[: _comment_start(line)]


def _command_end(line: str, start: int, stop: int) -> int:
  """Where the command that starts at `start` ends: `&`, `;`, `|`, `)`."""
  for i, c in _unquoted(line[:stop]):
    if i >= start and c in "&;|)":
      return i
  return stop


def _insert_flags(line: str, pattern: re.Pattern, flags) -> str:
  """`flags` (or `flags(command)`) at the end of each command `pattern`
  finds in `line`."""
  stop = len(_command(line).rstrip())
  spans = sorted(
    {
      (m.start(), _command_end(line, m.end(), stop))
      for m in pattern.finditer(line[:stop])
    },
    reverse=True,
  )
  for start, end in spans:
    added = flags(line[start:end]) if callable(flags) else flags
    gap = "" if line[:end].endswith(" ") else " "
    line = f"{line[:end]}{gap}{added} {line[end:]}".rstrip()
  return line


def _tiny_evaluate_flags(command: str) -> str:
  gap = "--gap_decomposition" in command.split()
  return " ".join(TINY_EVALUATE_FLAGS + (TINY_GAP_FLAGS if gap else ()))


def _tiny_make_train(line: str, data: str) -> str:
  match = _MAKE_TRAIN.search(_command(line))
  if match is None or not re.search(r"\btrain\b", match.group("args")):
    return line
  args = match.group("args")
  extra = " ".join(TINY_TRAIN_FLAGS[:1] + TINY_TRAIN_FLAGS[2:])
  quoted = re.search(r'ARGS="([^"]*)"', args)
  if quoted:
    args = args.replace(quoted.group(0), f'ARGS="{quoted.group(1)} {extra}"')
  else:
    args = f'{args.rstrip()} ARGS="{extra}" '
  # The setup step (pip) is left out: the environment is this test's.
  new = f"make -o .venv/.installed{args.rstrip()} DATA_DIR={data}"
  return line[: match.start()] + new + " " + line[match.end() :]


def rewrite(block: Block, data: str) -> tuple[str, int]:
  """The script a shell block runs, and how many commands were shrunk."""
  out, changed = [], 0
  tiny = block.attributes.get("tiny", False)
  for line in _lines(block.code):
    if _EXEMPT.match(_command(line)):
      out.append(": " + shlex.quote(line))  # not run
      continue
    new = line
    if tiny is None:  # {tiny}: the launchers' own small settings
      train = " ".join(TINY_TRAIN_FLAGS).format(data=data)
      new = _insert_flags(new, _LAUNCHES_TRAINING, train)
      new = _insert_flags(new, _EVALUATES, _tiny_evaluate_flags)
      new = _tiny_make_train(new, data)
    elif tiny:  # {tiny="FLAGS"}
      new = _insert_flags(new, _PYTHON, tiny)
    changed += new != line
    out.append(new)
  return "\n".join(out) + "\n", changed


def test_rewrite_puts_flags_at_the_end_of_each_command():
  block = Block(
    "x.md",
    1,
    "bash",
    {"tiny": None},
    "for i in 0 1; do\n"
    "  A=1 .venv/bin/python -m experiments.train --config=smoke \\\n"
    "    --process_id=$i &   # a comment\n"
    "done; wait\n"
    ".venv/bin/python -m experiments.evaluate --workdir=r && echo ok\n"
    ".venv/bin/python -m experiments.evaluate --gap_decomposition\n"
    'make train ARGS="--config.latent_dim=2"  # train\n'
    "make test      # not run\n",
  )
  script, changed = rewrite(block, "/d")
  lines = script.splitlines()
  assert changed == 4
  assert lines[1].startswith(
    "  A=1 .venv/bin/python -m experiments.train --config=smoke "
    "     --process_id=$i --config.dataset=idx --config.data_dir=/d "
  )
  assert lines[1].split("--config.validation_size=64")[1].lstrip()[0] == "&"
  assert " ".join(TINY_EVALUATE_FLAGS) + " && echo ok" in lines[3]
  assert lines[4].endswith(
    "--gap_decomposition " + " ".join(TINY_EVALUATE_FLAGS + TINY_GAP_FLAGS)
  )
  assert lines[5].startswith(
    'make -o .venv/.installed train ARGS="--config.latent_dim=2 '
    '--config.dataset=idx --config.epochs=1 --config.validation_size=64"'
    " DATA_DIR=/d"
  )
  assert lines[6] == ": 'make test      # not run'"
  explicit = dataclasses.replace(
    block,
    attributes={"tiny": "--repeats=1"},
    code="python b.py --x=1 | tee o\n",
  )
  assert rewrite(explicit, "/d")[0] == "python b.py --x=1 --repeats=1 | tee o\n"


# -------------------------------------------------------------- running


def _copy_of_the_repository(destination: pathlib.Path) -> pathlib.Path:
  ignored = {
    ".git",
    ".venv",
    "runs",
    "site",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "dist",
  }
  shutil.copytree(
    REPO_ROOT,
    destination,
    ignore=lambda _, names: [
      n for n in names if n in ignored or n.endswith(".egg-info")
    ],
    symlinks=True,
  )
  # The blocks call .venv/bin/python: the environment running the tests.
  (destination / ".venv").symlink_to(pathlib.Path(sys.prefix))
  return destination


def _children_cpu_s() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
  return write_idx_directory(
    tmp_path_factory.mktemp("tiny_idx"), num_train=512, num_test=128, seed=0
  )


def _runnable_pages() -> list:
  """The pages with a block to run (and any page that does not parse, for
  the test to report)."""
  pages = []
  for page in _pages():
    try:
      blocks = parse_blocks(page, (REPO_ROOT / page).read_text())
    except ValueError:
      blocks = None
    if blocks is None or any(b.runs for b in blocks):
      pages.append(pytest.param(page, id=page))
  return pages


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable_pages())
def test_code_blocks_run(page, tiny_data, tmp_path):
  if sys.prefix == sys.base_prefix:
    pytest.skip("the blocks call .venv/bin/python: run the tests in a venv")
  if (
    shutil.which("make") is None
    and "make train" in (REPO_ROOT / page).read_text()
  ):
    pytest.fail(f"{page} runs make, which is not installed")
  workdir = _copy_of_the_repository(tmp_path / "repo")
  env = dict(
    os.environ,
    PATH=f"{workdir / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
    MPLBACKEND="Agg",
  )
  timings = []
  for block in parse_blocks(page, (REPO_ROOT / page).read_text()):
    if "title" in block.attributes:
      compile(block.code, block.attributes["title"], "exec")
      (workdir / block.attributes["title"]).write_text(block.code)
      continue
    if not block.runs:
      continue
    if block.language == "python":
      command, stdin = [str(workdir / ".venv/bin/python"), "-"], block.code
    else:
      script, changed = rewrite(block, tiny_data)
      if "tiny" in block.attributes and not changed:
        pytest.fail(f"{block.where}: {{tiny}}, but no command to shrink")
      command, stdin = ["bash", "-e", "-o", "pipefail", "-c", script], None
    start, cpu = time.perf_counter(), _children_cpu_s()
    result = subprocess.run(
      command,
      input=stdin,
      cwd=workdir,
      env=env,
      capture_output=True,
      text=True,
      timeout=_BLOCK_TIMEOUT_S,
    )
    timings.append(
      f"{block.where}: {time.perf_counter() - start:.1f} s, "
      f"{_children_cpu_s() - cpu:.1f} s of CPU"
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 or "Traceback (most recent call last)" in output:
      pytest.fail(
        f"{block.where}: exit status {result.returncode}\n"
        f"--- ran\n{command[-1] if stdin is None else stdin}"
        f"--- output (last 4000 characters)\n{output[-4000:]}"
      )
  print("\n".join(timings))
