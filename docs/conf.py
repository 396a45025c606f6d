"""Sphinx configuration for fastbp's documentation.

Build (from the repository root, fastbp installed or built in place):

    pip install ".[docs]" && sphinx-build -W -b html docs docs/_build/html

``-W`` turns every warning into an error. The gallery (``examples/``) is run by the build
with ``FASTBP_EXAMPLES_QUICK=1``, the examples' quick mode (smaller grids, fewer seeds), and
their tables and figures go to a folder of the build (``FASTBP_EXAMPLES_OUT``), never over
the full runs' results in ``examples/results/``.

Intersphinx works offline: see ``_inventories.py``. Each external project's inventory is
fetched from its site first and, where that fails (no internet), read from a small local
inventory written at the start of the build, which lists the external names these pages
refer to with their real URLs.
"""
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import fastbp  # noqa: E402  (the installed package, or src/ on PYTHONPATH)

import _gallery  # noqa: E402
from _inventories import intersphinx_mapping as _mapping  # noqa: E402

project = "fastbp"
author = "the fastbp developers"
copyright = f"{time.gmtime().tm_year}, {author}"
release = fastbp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json"]
html_theme = "alabaster"
html_static_path = []
html_theme_options = {"description": "Fast backpropagation for MLPs on the CPU",
                      "fixed_sidebar": True}
default_role = "obj"

# -- autodoc / autosummary / numpydoc ----------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"            # the numpydoc Parameters sections give the types
numpydoc_show_class_members = False   # members are listed by the autosummary templates
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- intersphinx: remote first, local fallback (offline builds) ------------------------
intersphinx_mapping = _mapping(os.path.join(HERE, "_build", "inventories"))
intersphinx_timeout = 5

# -- sphinx-gallery ----------------------------------------------------------------------
# The examples' quick mode and a scratch folder for the tables and figures they write.
_EXAMPLES_OUT = os.path.join(HERE, "_build", "examples_out")
os.makedirs(_EXAMPLES_OUT, exist_ok=True)
_gallery.reset_seen(_EXAMPLES_OUT)
os.environ["FASTBP_EXAMPLES_QUICK"] = "1"
os.environ["FASTBP_EXAMPLES_OUT"] = _EXAMPLES_OUT
os.environ.setdefault("MPLBACKEND", "Agg")


sphinx_gallery_conf = {
    "examples_dirs": os.path.join(ROOT, "examples"),
    "gallery_dirs": "auto_examples",
    # run every example (not only plot_*.py) but cluster_search.py, which starts a Dask
    # cluster and a Ray instance: it is shown, not run (tests/test_cluster.py runs both)
    "filename_pattern": r"/(?!cluster_search)[^/]*\.py$",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "_gallery.ExampleOrder",
    "image_scrapers": ("matplotlib", "_gallery.saved_png_scraper"),
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "show_memory": False,
    "min_reported_time": 1,
}

# Harmless noise from third-party libraries while the examples run
warnings.filterwarnings("ignore", category=UserWarning,
                        message="Matplotlib is currently using agg")

# Every page can say ``fastbp`` for the package
rst_prolog = """
.. |fastbp| replace:: ``fastbp``
"""


def _skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters (``set_fit_request``,
    ...): their docstrings refer to scikit-learn's own glossary and guide."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_member)
