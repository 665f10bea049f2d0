"""Sphinx configuration: the user guide (from README.md's sections) and the API reference
(from the docstrings, NumPy style, through numpydoc).

Build: ``python -m sphinx -E -W --keep-going -b html docs docs/_build/html`` with cyprop
installed (autodoc imports it) and ``pip install -r docs/requirements.txt``.  Nothing is
fetched from the network: intersphinx is off unless CYPROP_DOCS_INTERSPHINX=1.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import cyprop  # noqa: E402  (autodoc imports the installed package; so does the version)

project = "cyprop"
author = "The cyprop developers"
copyright = "the cyprop developers"
release = cyprop.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "cyprop_docs",          # docs/_ext: `cyprop --help` pages, coverage checks
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []

# ---------------------------------------------------------------- autodoc / numpydoc
# Each automodule in api/ says :members: itself (a default "members" would override a
# page's own list).  A public name without a docstring still shows, and numpydoc's GL08
# below flags it.
autodoc_default_options = {
    "undoc-members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autoclass_content = "class"     # NumPy style: the class docstring documents __init__
autosummary_generate = False    # the tables link to what the module pages document

numpydoc_show_class_members = False     # autodoc lists the members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False        # no intersphinx in CI: nothing to link to
# Checks every public docstring must pass (numpydoc's codes): a summary, documented
# parameters that exist, documented returns, no undocumented public objects.
numpydoc_validation_checks = {"GL08", "SS01", "PR01", "PR02", "RT01"}
numpydoc_validation_exclude = {
    r"\.__\w+__$",          # dunder methods
    r"\._\w+$",             # private members
}

# ---------------------------------------------------------------- MyST (markdown)
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# ---------------------------------------------------------------- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"cyprop {release}"
html_static_path = []
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False

# Links to Python's, NumPy's and scikit-learn's docs need their inventories, fetched
# over the network: only on request (CI has no network but PyPI).
if os.environ.get("CYPROP_DOCS_INTERSPHINX") == "1":
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "sklearn": ("https://scikit-learn.org/stable", None),
    }
