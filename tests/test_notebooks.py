"""The notebooks run top to bottom, and stay fit to commit and to open in Colab.

Each notebook is executed by nbclient in a fresh kernel with
VAE_JAX_NOTEBOOK_QUICK=1 (small budgets: epochs, K, the grid), in a
temporary working directory, importing vae_jax from this checkout; a cell
that raises fails the test. Notebooks 2 and 3 read Fashion-MNIST where the
default config looks for it (`make test` installs it) and skip without it.

The committed files carry no outputs; their first code cell, the Colab
install, is the same in every notebook and does nothing where google.colab
cannot be imported (run here with pip and the download stubbed out); every
"Open in Colab" link, in the notebooks and the README, is built from its
REPO_URL (`scripts/notebooks.py`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
import urllib.request

import nbformat
import pytest

from conftest import REPO_ROOT

# Notebooks executed in a Jupyter kernel.
pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
  "notebook_tools", REPO_ROOT / "scripts" / "notebooks.py"
)
notebook_tools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebook_tools)

NOTEBOOKS = notebook_tools.notebook_paths(REPO_ROOT)
_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
_CELL_TIMEOUT = 600  # seconds
_COLAB_LINK = re.compile(
  r"https://colab\.research\.google\.com/github/[^)\s\"\\]+"
)
_ID = lambda path: path.stem


def _install_source(path) -> str:
  nb = nbformat.read(path, as_version=4)
  return next(c for c in nb.cells if c.cell_type == "code").source


def test_there_are_the_three_notebooks_of_the_readme():
  assert [p.name for p in NOTEBOOKS] == [
    "01_vae_and_elbo.ipynb",
    "02_train_and_explore.ipynb",
    "03_sweep_and_compare.ipynb",
  ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ID)
def test_runs_top_to_bottom_with_quick_budgets(path, tmp_path, monkeypatch):
  import nbclient  # pylint: disable=g-import-not-at-top

  nb = nbformat.read(path, as_version=4)
  reads_data = any(
    "DATA_DIR" in c.source for c in nb.cells[2:] if c.cell_type == "code"
  )  # past the install cell
  if reads_data and not os.path.isdir(_FASHION_MNIST):
    pytest.skip(
      f"Fashion-MNIST is not in {_FASHION_MNIST} (make data installs it)"
    )
  monkeypatch.setenv("VAE_JAX_NOTEBOOK_QUICK", "1")
  monkeypatch.delenv("VAE_JAX_NOTEBOOK_FIGURES", raising=False)
  monkeypatch.setenv(
    "PYTHONPATH",
    os.pathsep.join(
      p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
    ),
  )
  nb.cells.append(
    nbformat.v4.new_code_cell("import vae_jax; print(vae_jax.__file__)")
  )
  client = nbclient.NotebookClient(
    nb,
    timeout=_CELL_TIMEOUT,
    kernel_name="python3",
    resources={"metadata": {"path": str(tmp_path)}},
  )
  client.execute()  # raises CellExecutionError on the first failing cell

  where = nb.cells[-1].outputs[0]["text"].strip()
  assert where.startswith(str(REPO_ROOT / "vae_jax")), where
  images = [
    o
    for c in nb.cells
    if c.cell_type == "code"
    for o in c.outputs
    if "image/png" in o.get("data", {})
  ]
  assert images, "the notebook drew no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ID)
def test_committed_without_outputs(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  for cell in nb.cells:
    assert "execution" not in cell.metadata, (
      f"{path.name}: run `python scripts/notebooks.py strip`"
    )
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, (
        f"{path.name} holds outputs: run `python scripts/notebooks.py "
        "strip` before committing"
      )


def test_the_install_cell_is_the_first_code_cell_of_every_notebook():
  sources = {_install_source(p) for p in NOTEBOOKS}
  assert len(sources) == 1, "the first code cells differ between notebooks"
  assert "REPO_URL = " in sources.pop()


def _run_install_cell(monkeypatch, tmp_path, in_colab: bool):
  """Executes the install cell with pip and downloads recorded, not done."""
  monkeypatch.chdir(tmp_path)
  calls = []
  monkeypatch.setattr(
    subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs))
  )

  def fake_urlretrieve(url, filename):
    calls.append((url, filename))
    open(filename, "wb").close()

  monkeypatch.setattr(urllib.request, "urlretrieve", fake_urlretrieve)
  if in_colab:
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)
  else:  # whatever is installed, `import google.colab` fails
    monkeypatch.setitem(sys.modules, "google.colab", None)
  namespace = {}
  source = _install_source(NOTEBOOKS[0])
  exec(compile(source, "install cell", "exec"), namespace)  # pylint: disable=exec-used
  return namespace, calls


def test_the_install_cell_does_nothing_without_google_colab(
  tmp_path, monkeypatch
):
  namespace, calls = _run_install_cell(monkeypatch, tmp_path, in_colab=False)
  assert calls == []
  assert list(tmp_path.iterdir()) == []
  assert namespace["IN_COLAB"] is False
  assert namespace["DATA_DIR"] == ""  # the config's default places


def test_in_colab_the_install_cell_installs_and_fetches_the_data(
  tmp_path, monkeypatch
):
  namespace, calls = _run_install_cell(monkeypatch, tmp_path, in_colab=True)
  (pip_args, pip_kwargs), *downloads = calls
  repo_url = namespace["REPO_URL"]
  assert pip_args[0][-1] == f"git+{repo_url}" and pip_kwargs["check"]
  data_dir = tmp_path / "fashion-mnist"
  assert namespace["DATA_DIR"] == str(data_dir)
  assert (
    sorted(os.path.basename(f) for _, f in downloads)
    == sorted(os.listdir(data_dir))
    == [
      "t10k-images-idx3-ubyte.gz",
      "t10k-labels-idx1-ubyte.gz",
      "train-images-idx3-ubyte.gz",
      "train-labels-idx1-ubyte.gz",
    ]
  )
  assert all(url.endswith(os.path.basename(f)) for url, f in downloads)
  # Run again (Colab's "run all" twice): the files are not fetched again.
  _, calls = _run_install_cell(monkeypatch, tmp_path, in_colab=True)
  assert len(calls) == 1


def _assert_links_follow_repo_url(root, repo_url):
  assert notebook_tools.repo_url(root) == repo_url
  expected = {
    notebook_tools.colab_url(repo_url, p.name)
    for p in notebook_tools.notebook_paths(root)
  }
  for path in notebook_tools.notebook_paths(root):
    nb = nbformat.read(path, as_version=4)
    assert f'REPO_URL = "{repo_url}"' in nb.cells[1].source
    badge_cell = nb.cells[0].source  # the title and its badge
    assert _COLAB_LINK.findall(badge_cell) == [
      notebook_tools.colab_url(repo_url, path.name)
    ], path.name
    assert set(_COLAB_LINK.findall(path.read_text())) <= expected
  assert set(_COLAB_LINK.findall((root / "README.md").read_text())) == expected


def test_every_colab_badge_is_built_from_repo_url():
  _assert_links_follow_repo_url(REPO_ROOT, notebook_tools.repo_url(REPO_ROOT))


def test_set_repo_url_rewrites_the_install_cells_and_every_badge(tmp_path):
  shutil.copytree(
    REPO_ROOT / "notebooks",
    tmp_path / "notebooks",
    ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"),
  )
  shutil.copy(REPO_ROOT / "README.md", tmp_path / "README.md")
  new = "https://github.com/someone/vae-fork"
  notebook_tools.main(["--root", str(tmp_path), "set-repo-url", new])
  _assert_links_follow_repo_url(tmp_path, new)
  with pytest.raises(SystemExit):
    notebook_tools.main(
      [
        "--root",
        str(tmp_path),
        "set-repo-url",
        "https://gitlab.com/someone/vae",
      ]
    )


def test_strip_removes_outputs(tmp_path):
  shutil.copytree(
    REPO_ROOT / "notebooks",
    tmp_path / "notebooks",
    ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints"),
  )
  path = tmp_path / "notebooks" / NOTEBOOKS[0].name
  nb = nbformat.read(path, as_version=4)
  code = next(c for c in nb.cells if c.cell_type == "code")
  code.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
  code.execution_count = 3
  nbformat.write(nb, path)
  notebook_tools.main(["--root", str(tmp_path), "strip"])
  assert path.read_bytes() == NOTEBOOKS[0].read_bytes()
