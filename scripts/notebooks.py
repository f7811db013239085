"""Keeps notebooks/ fit to commit: outputs stripped, Colab links consistent.

    python scripts/notebooks.py strip
    python scripts/notebooks.py set-repo-url https://github.com/OWNER/vae_jax

`strip` removes every output, execution count and timing from the
notebooks (tests/test_notebooks.py refuses committed outputs; the README
shows the figures instead). `set-repo-url` points the notebooks at the
repository: the constant REPO_URL in each notebook's first cell (what Colab
installs) and every "Open in Colab" badge, in the notebooks and README.md,
whose links are `colab_url(REPO_URL, notebook)`.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent
_GITHUB = "https://github.com/"
_COLAB = "https://colab.research.google.com/github/"
_REPO_URL_LINE = re.compile(r'^REPO_URL = "([^"]+)"', re.MULTILINE)
_VALID_URL = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+")


def colab_url(repo_url: str, notebook: str, branch: str = "main") -> str:
  """The link that opens notebooks/`notebook` of `repo_url` in Colab."""
  return (
    f"{_COLAB}{repo_url[len(_GITHUB) :]}/blob/{branch}/notebooks/{notebook}"
  )


def notebook_paths(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
  return sorted((root / "notebooks").glob("*.ipynb"))


def repo_url(root: pathlib.Path = ROOT) -> str:
  """REPO_URL as the first notebook's first code cell sets it."""
  nb = nbformat.read(notebook_paths(root)[0], as_version=4)
  install = next(c for c in nb.cells if c.cell_type == "code")
  match = _REPO_URL_LINE.search(install.source)
  if match is None:
    raise SystemExit("error: no REPO_URL line in the first notebook")
  return match.group(1)


def strip(root: pathlib.Path = ROOT) -> None:
  for path in notebook_paths(root):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
      cell.metadata.pop("execution", None)
      if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    nbformat.write(nb, path)


def set_repo_url(new: str, root: pathlib.Path = ROOT) -> None:
  new = new.rstrip("/")
  if not _VALID_URL.fullmatch(new):
    raise SystemExit(
      f"error: {new!r} is not https://github.com/OWNER/NAME "
      "(Colab opens notebooks from GitHub)"
    )
  old = repo_url(root)
  old_colab, new_colab = colab_url(old, ""), colab_url(new, "")
  for path in notebook_paths(root) + [root / "README.md"]:
    text = path.read_text()
    text = text.replace(f'REPO_URL = \\"{old}\\"', f'REPO_URL = \\"{new}\\"')
    path.write_text(text.replace(old_colab, new_colab))


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--root",
    type=pathlib.Path,
    default=ROOT,
    help="the repository (default: this one)",
  )
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("strip", help="remove outputs and execution counts")
  setter = commands.add_parser(
    "set-repo-url",
    help="point REPO_URL and the Colab badges at a GitHub repository",
  )
  setter.add_argument("url")
  args = parser.parse_args(argv)
  if args.command == "strip":
    strip(args.root)
  else:
    set_repo_url(args.url, args.root)


if __name__ == "__main__":
  sys.exit(main())
