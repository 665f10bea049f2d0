"""The documentation's examples run as written: the docstrings' ``>>>`` examples, and the
README's and docs/explain.md's self-contained code blocks (each in a fresh interpreter,
in a scratch folder).  The README's Dask example is run by tests/test_large_data.py,
examples/ by tests/test_scaling.py."""

import doctest
import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(path, language="python"):
    """The fenced code blocks of a Markdown file, skipping the test if it is not beside
    these tests (the sdist has README.md, not docs/)."""
    if not path.is_file():
        pytest.skip(f"{path.name} is not beside these tests")
    return [code for lang, code in FENCE.findall(path.read_text(encoding="utf-8"))
            if lang == language]


def block(path, marker):
    """The one Python block of ``path`` that contains ``marker``."""
    found = [code for code in blocks(path) if marker in code]
    assert len(found) == 1, f"{len(found)} blocks of {path.name} contain {marker!r}"
    return found[0]


def run(code, cwd):
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("module", ["cyprop", "cyprop.datasets", "cyprop.ensemble"])
def test_docstring_examples_run(module):
    pytest.importorskip("sklearn")       # the examples train on the digits
    tests = [t for t in doctest.DocTestFinder().find(importlib.import_module(module))
             if t.examples]
    assert tests
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_readme_api_in_short(tmp_path):
    pytest.importorskip("sklearn")
    code = block(ROOT / "README.md", "net.gradients(X_test, y_test)")
    run(code + "\nassert net2.evaluate(X_test, y_test)['accuracy'] > 0.9\n", tmp_path)
    assert (tmp_path / "digits.npz").is_file()


def test_readme_textbook_step(tmp_path):
    out = run(block(ROOT / "README.md", "cyprop.explain(*textbook_example())"), tmp_path)
    assert "-0.700" in out and "w46                 -0.300      -0.261" in out


def test_readme_memory_mapped_data(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    X = rng.normal(size=(2000, 784)) * 0.1
    X[np.arange(2000), y] += 3.0   # learnable
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code = block(ROOT / "README.md", 'X = np.load("X.npy", mmap_mode="r")')
    run(code + "\nassert labels.shape == y.shape and (labels == y).mean() > 0.9\n",
        tmp_path)


def test_readme_scikit_learn_blocks(tmp_path):
    """The grid search, then the same search on threads and saving with skops, in one
    interpreter as a reader runs them one after the other (the later blocks use the
    first one's ``pipe``, ``grid``, ``X`` and ``y``; the skops block a fitted ``clf``)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skops")
    readme = ROOT / "README.md"
    code = "\n".join([
        "import warnings; warnings.simplefilter('ignore')",   # 50 iterations: unconverged
        block(readme, "GridSearchCV(pipe, grid, cv=3, n_jobs=2)"),
        block(readme, 'joblib.parallel_backend("threading", n_jobs=2)'),
        "clf = search.best_estimator_[-1]",
        block(readme, 'sio.dump(clf, "model.skops")'),
        "print(sio.get_untrusted_types(file='model.skops'))",
        "print((clf.predict(StandardScaler().fit_transform(X)) == y).mean())",
    ])
    out = run(code, tmp_path).splitlines()
    params, score = out[0].rsplit(" ", 1)
    assert "backpropclassifier__hidden_layer_sizes" in params and float(score) > 0.9
    assert out[1] == "['cyprop.sklearn.BackpropClassifier']"
    assert float(out[2]) > 0.9


def test_explain_page_prints_what_it_shows(tmp_path):
    pytest.importorskip("matplotlib")
    code, shown = (blocks(ROOT / "docs" / "explain.md", lang) for lang in ("python", ""))
    assert run(code[0], tmp_path) == shown[0]
    assert (tmp_path / "step.png").is_file()
