"""cyprop's own Sphinx helpers.

``cli-help``: a directive that runs ``cyprop [COMMAND] --help`` while the docs build and
shows what it prints, so the command-line reference is the parser's own text and cannot
fall out of step with it.

numpydoc validates the docstrings of what the API pages document, but autodoc also hands
it names a module imported from elsewhere and data (constants, dataclass fields) whose
documentation is a ``#:`` comment numpydoc cannot see; those are added to
``numpydoc_validation_exclude`` so that only cyprop's own public functions, classes,
methods and properties are checked.

Once the sources are read, four checks that keep the docs complete, each a warning (so an
error under ``-W``): every ``##`` section of README.md is included by a page of the user
guide; every name in ``cyprop.__all__`` is listed in ``api/cyprop.rst``; every script in
``examples/`` is included by ``examples.md``; ``docs/requirements.txt`` names the
packages of pyproject.toml's ``docs`` extra.
"""

import contextlib
import functools
import importlib
import inspect
import io
import os
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.util import logging

logger = logging.getLogger(__name__)

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
HELP_COLUMNS = "88"


def cli_help_text(args):
    """What ``cyprop ARGS --help`` prints, at a fixed width."""
    from cyprop import cli

    out = io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS      # argparse wraps to the terminal's width
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            status = cli.main([*args, "--help"])
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    if status != 0:
        raise RuntimeError(f"'cyprop {' '.join([*args, '--help'])}' exited with {status}")
    return out.getvalue().rstrip()


class CliHelp(Directive):
    """``.. cli-help:: [COMMAND]``: a literal block of ``cyprop [COMMAND] --help``."""

    optional_arguments = 1
    has_content = False

    def run(self):
        args = self.arguments[0].split() if self.arguments else []
        try:
            text = cli_help_text(args)
        except Exception as exc:  # noqa: BLE001 - reported as a build warning
            return [self.state_machine.reporter.warning(
                f"cli-help: {exc}", line=self.lineno)]
        command = " ".join(["cyprop", *args, "--help"])
        node = nodes.literal_block(text, f"$ {command}\n{text}")
        node["language"] = "text"
        return [node]


#: The modules the API reference documents (docs/api/).
PUBLIC_MODULES = (
    "cyprop", "cyprop.network", "cyprop.optimizers", "cyprop.schedules", "cyprop.history",
    "cyprop.persistence", "cyprop.initializers", "cyprop.errors", "cyprop.gradcheck",
    "cyprop.explain", "cyprop.ensemble", "cyprop.sklearn", "cyprop.interop",
    "cyprop.datasets", "cyprop.bench", "cyprop.cli",
)
_ROUTINE_TYPES = (property, classmethod, staticmethod, functools.cached_property)


def not_validated():
    """Full names, in public modules, of what numpydoc should not validate: names
    imported from elsewhere or left out of ``__all__``, and data."""
    names = set()
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        exported = getattr(module, "__all__", None)
        for name, obj in vars(module).items():
            if name.startswith("_") or inspect.ismodule(obj):
                continue
            full = f"{modname}.{name}"
            routine = inspect.isclass(obj) or callable(obj)
            here = getattr(obj, "__module__", None) == modname
            if (not routine or (exported is None and not here)
                    or (exported is not None and name not in exported)):
                names.add(full)
            elif inspect.isclass(obj) and here:
                names.update(f"{full}.{attr}" for attr, value in vars(obj).items()
                             if not attr.startswith("_")
                             and not (callable(value) or isinstance(value, _ROUTINE_TYPES)))
    return names


def exclude_from_validation(app, config):
    config.numpydoc_validation_exclude = set(config.numpydoc_validation_exclude) | {
        rf"^{re.escape(name)}$" for name in not_validated()}


def _requirement_names(lines):
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.match(r"[A-Za-z0-9._-]+", line).group(0).lower().replace("_", "-"))
    return names


def readme_sections():
    """The ``## `` headings of README.md, outside fenced code."""
    text = re.sub(r"^```.*?^```", "", (ROOT / "README.md").read_text(), flags=re.M | re.S)
    return re.findall(r"^## .+$", text, re.M)


def check_completeness(app, env):
    import cyprop

    guide = "\n".join(page.read_text() for page in sorted((DOCS / "guide").glob("*.md")))
    for heading in readme_sections():
        if f':start-after: "{heading}"' not in guide:
            logger.warning(f"README.md's section {heading!r} is not included by any page of "
                           "docs/guide/", location="guide/index")

    api = (DOCS / "api" / "cyprop.rst").read_text()
    for name in cyprop.__all__:
        obj = getattr(cyprop, name)
        where = {f"cyprop.{name}"}
        if hasattr(obj, "__qualname__"):
            where.add(f"{obj.__module__}.{obj.__qualname__}")
        if not any(re.search(rf"[\s~`]{re.escape(w)}\b", api) for w in where):
            logger.warning(f"cyprop.{name} is in cyprop.__all__ but not listed in "
                           "docs/api/cyprop.rst", location="api/cyprop")

    examples = (DOCS / "examples.md").read_text()
    for script in sorted((ROOT / "examples").glob("*.py")):
        if f"../examples/{script.name}" not in examples:
            logger.warning(f"examples/{script.name} is not included in docs/examples.md",
                           location="examples")

    try:
        import tomllib
    except ImportError:      # Python 3.10: nothing to read pyproject.toml with
        return
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"].get("docs", [])
    required = _requirement_names((DOCS / "requirements.txt").read_text().splitlines())
    if _requirement_names(extra) != required:
        logger.warning("docs/requirements.txt and pyproject.toml's docs extra name different "
                       f"packages: {sorted(_requirement_names(extra) ^ required)}")


def skip_sklearn_routing(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_{method}_request`` methods: scikit-learn
    documents them (their docstrings refer to its glossary)."""
    if what == "class" and re.fullmatch(r"set_\w+_request", name):
        return True
    return None


def setup(app):
    app.add_directive("cli-help", CliHelp)
    # before numpydoc's own config-inited handler (priority 500) compiles the patterns
    app.connect("config-inited", exclude_from_validation, priority=400)
    app.connect("autodoc-skip-member", skip_sklearn_routing)
    app.connect("env-check-consistency", check_completeness)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
