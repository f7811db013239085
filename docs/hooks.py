"""MkDocs hooks (mkdocs.yml's `hooks:`): the pages' generated parts.

A page holds a placeholder line, and the build puts in its place:

    <!-- hooks: config reference -->   every setting's default, role and
        meaning, from the declarations in vae_jax/settings.py
        (`settings.reference_markdown()`), its headings one level down
    <!-- hooks: notebooks -->   the notebooks with their "Open in Colab"
        links, built from REPO_URL by scripts/notebooks.py (the one place
        that sets it)
    <!-- hooks: public api -->   the names `vae_jax` exports, each with the
        module that defines it, linked where an API page renders that module

Nothing is written into docs/: the pages keep their placeholders, and a
placeholder that is not replaced fails the (strict) build.
"""

from __future__ import annotations

import importlib.util
import logging
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
_PLACEHOLDER = re.compile(r"^<!-- hooks: ([a-z ]+) -->$", re.MULTILINE)
_RENDERED = re.compile(r"^::: ([\w.]+)$", re.MULTILINE)
_log = logging.getLogger("mkdocs.hooks")

# The notebooks, in order, and what each one shows.
_NOTEBOOKS = {
  "01_vae_and_elbo.ipynb": (
    "1. The VAE and its ELBO, step by step",
    "the generative and recognition models, the KL, log p(x) = ELBO + "
    "KL(q ‖ p(z\\|x)) checked exactly on a linear-Gaussian model, joint SGD "
    "on (φ, θ) closing the bound, amortised inference",
  ),
  "02_train_and_explore.ipynb": (
    "2. Train and explore",
    "a 2-D-latent VAE on Fashion-MNIST through the library's trainer; the "
    "run directory; reconstructions, prior samples, the latent space "
    "against the prior, the manifold; log p(x) and the gap, split into "
    "approximation and amortisation gaps",
  ),
  "03_sweep_and_compare.ipynb": (
    "3. Sweep and compare",
    "a β sweep trained as one vmapped program; test ELBO, KL and active "
    "units against β",
  ),
}
_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def _import(path: pathlib.Path, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _config_reference() -> str:
  sys.path.insert(0, str(ROOT))
  try:
    from vae_jax import settings  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(ROOT))
  # The reference's sections are `##`; on the page they sit under a `##`.
  return re.sub(
    r"^(#+) ", r"#\1 ", settings.reference_markdown(), flags=re.MULTILINE
  )


def _notebooks() -> str:
  tools = _import(ROOT / "scripts" / "notebooks.py", "notebook_tools")
  repo_url = tools.repo_url(ROOT)
  names = [p.name for p in tools.notebook_paths(ROOT)]
  if sorted(names) != sorted(_NOTEBOOKS):
    raise ValueError(
      f"notebooks/ holds {names}, docs/hooks.py describes "
      f"{list(_NOTEBOOKS)}: describe each notebook in _NOTEBOOKS"
    )
  rows = ["| | notebook | what it shows |", "|---|---|---|"]
  for name, (title, what) in _NOTEBOOKS.items():
    colab = tools.colab_url(repo_url, name)
    source = f"{repo_url}/blob/main/notebooks/{name}"
    rows.append(
      f"| [![Open In Colab]({_BADGE})]({colab}) | [{title}]({source}) "
      f"| {what} |"
    )
  return "\n".join(rows) + f"\n\n`REPO_URL` is now `{repo_url}`.\n"


def _public_api(rendered: set[str]) -> str:
  sys.path.insert(0, str(ROOT))
  try:
    import vae_jax  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(ROOT))
  rows = ["| name | defined in |", "|---|---|"]
  for name in vae_jax.__all__:
    module = vae_jax._EXPORTS[name]  # pylint: disable=protected-access
    if module in rendered:
      rows.append(f"| [`{name}`][{module}.{name}] | `{module}` |")
    else:
      rows.append(f"| `{name}` | `{module}` |")
  return "\n".join(rows) + "\n"


def _rendered_modules(config) -> set[str]:
  docs = pathlib.Path(config["docs_dir"])
  return {
    m
    for page in docs.glob("api/*.md")
    for m in _RENDERED.findall(page.read_text())
  }


def on_page_markdown(markdown, page, config, files):
  del files

  def generate(match: re.Match) -> str:
    what = match.group(1)
    if what == "config reference":
      return _config_reference()
    if what == "notebooks":
      return _notebooks()
    if what == "public api":
      return _public_api(_rendered_modules(config))
    _log.warning("%s: unknown placeholder %r", page.file.src_path, what)
    return match.group(0)

  return _PLACEHOLDER.sub(generate, markdown)
