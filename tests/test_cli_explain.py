"""``cyprop explain``: one backpropagation step of a saved model for one CSV row, or of
the textbook example, printed as ``str(cyprop.explain(...))`` prints it.  The figures
are checked through the installed console script, run in a temporary folder outside
the source tree; the rest through ``cli.main``."""

import importlib.util
import os
import re

import numpy as np
import pytest

import cyprop
from cyprop import cli
from cyprop.explain import textbook_example
from conftest import run_script


pytestmark = pytest.mark.skipif(not hasattr(cyprop, "load"),
                                reason="cyprop has no persistence yet")


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``cyprop ARGV``."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err




def assert_one_line_error(err, *fragments):
    assert err.startswith("cyprop: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def table(out, title):
    """The rows of the table under ``title``: {first cell: the other cells}."""
    block = out.split(title, 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    return {cells[0]: cells[1:] for cells in (row.split() for row in block)}


# ------------------------------------------------------------- the textbook
def test_textbook_example_prints_the_books_figures(tmp_path):
    status, out, err = run_script(tmp_path, "explain", "--example", "textbook")
    assert status == 0 and err == "", err
    net, x, y, optimizer = textbook_example()
    assert out == str(cyprop.explain(net, x, y, optimizer)) + "\n"
    assert "a 3-2-1 network" in out and "SGD(learning_rate=0.9," in out

    units = table(out, "Net input and output of each unit")
    assert units == {"4": ["-0.700", "0.332"], "5": ["0.100", "0.525"],
                     "6": ["-0.105", "0.474"]}
    errors = table(out, "Error of each unit")
    # The book prints Err6 = 0.1311, worked out from the rounded O6 = 0.474; the exact
    # value, 0.131169, prints as 0.1312 (docs/explain.md, "The book's rounding").
    assert errors == {"6": ["0.1312"], "5": ["-0.0065"], "4": ["-0.0087"]}
    new = {name: cells[1] for name, cells in table(out, "Weights and biases before").items()}
    assert new == {"w46": "-0.261", "w56": "-0.138", "w14": "0.192", "w15": "-0.306",
                   "w24": "0.400", "w25": "0.100", "w34": "-0.508", "w35": "0.194",
                   "theta6": "0.218", "theta5": "0.194", "theta4": "-0.408"}
    assert "Loss before the step: 0.1384" in out


def test_textbook_example_with_another_rate_and_a_drawing(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "step.png"
    status, out, err = run(capsys, "explain", "--example", "textbook", "--lr", "0.5",
                           "--plot", str(png))
    assert status == 0, err
    net, x, y, _ = textbook_example()
    step = cyprop.explain(net, x, y, cyprop.SGD(learning_rate=0.5))
    assert out == f"{step}\ndrawing written to {png}\n"
    assert png.read_bytes()[:4] == b"\x89PNG"
    status, out, err = run(capsys, "explain", "--example", "textbook", "--optimizer", "adam")
    assert status == 0, err
    assert out == str(cyprop.explain(net, x, y, cyprop.Adam())) + "\n"


# -------------------------------------------------------- a model and a row
@pytest.fixture(scope="module")
def moons_model(tmp_path_factory):
    """A model trained on moons (Adam, with its state), saved, and the file's bytes."""
    folder = tmp_path_factory.mktemp("model")
    X, y = cyprop.datasets.moons(n=60, seed=0)
    net = cyprop.Network([2, 4, 2], activation="tanh", seed=0)
    net.fit(X, y, epochs=3, optimizer=cyprop.Adam(learning_rate=0.01), verbose=0)
    path = folder / "moons.npz"
    net.save(path)
    return path


def write_rows(path, rows, header=None):
    lines = ([header] if header else []) + [",".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_script_explains_a_row_of_a_csv_file(tmp_path, moons_model):
    write_rows(tmp_path / "points.csv", [(0.5, 0.2), (-0.5, 0.9), (1.5, -0.3)], "x,y")
    before = moons_model.read_bytes()
    status, out, err = run_script(tmp_path, "explain", str(moons_model), "--row",
                                  "points.csv:2", "--target", "1")
    assert status == 0 and err == "", err
    step = cyprop.explain(cyprop.load(moons_model), [1.5, -0.3], 1)
    assert out == str(step) + "\n"
    # The model's own optimizer, its state included, takes the step.
    assert "Optimizer: Adam(learning_rate=0.01," in out
    assert "x1 = 1.500   x2 = -0.300" in out and "T7 = 0.000   T8 = 1.000" in out
    assert moons_model.read_bytes() == before      # the model file is left as it was


def test_script_train_then_explain(tmp_path):
    status, out, err = run_script(tmp_path, "train", "--data", "xor", "--quiet",
                                  "--no-compare", "--save", "xor.npz")
    assert status == 0, err
    write_rows(tmp_path / "xor.csv", [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)], "a,b,xor")
    status, out, err = run_script(tmp_path, "explain", "xor.npz", "--row", "xor.csv:1",
                                  "--target-column", "xor")
    assert status == 0 and err == "", err
    step = cyprop.explain(cyprop.load(tmp_path / "xor.npz"), [0, 1], 1)
    assert out == str(step) + "\n"
    assert "a 2-8-2 network" in out and "Optimizer: Adam(learning_rate=0.05," in out


def test_row_zero_is_the_default_and_negative_rows_count_from_the_end(capsys, tmp_path,
                                                                      moons_model):
    points = write_rows(tmp_path / "p.csv", [(0.1, 0.2), (0.3, 0.4), (0.5, 0.6)])
    net = cyprop.load(moons_model)
    for row, x in ((str(points), [0.1, 0.2]), (f"{points}:-1", [0.5, 0.6]),
                   (f"{points}:1", [0.3, 0.4])):
        status, out, err = run(capsys, "explain", str(moons_model), "--row", row,
                               "--target", "0")
        assert status == 0, err
        assert out == str(cyprop.explain(net, x, 0)) + "\n", row


def test_target_vector_and_single_output(capsys, tmp_path, moons_model):
    points = write_rows(tmp_path / "p.csv", [(0.1, 0.2)])
    status, out, err = run(capsys, "explain", str(moons_model), "--row", str(points),
                           "--target", "0.25,0.75")
    assert status == 0, err
    step = cyprop.explain(cyprop.load(moons_model), [0.1, 0.2], np.array([[0.25, 0.75]]))
    assert out == str(step) + "\n" and "T7 = 0.250   T8 = 0.750" in out

    single = cyprop.Network([2, 3, 1], activation="sigmoid", output="sigmoid", loss="mse",
                            seed=1)
    single.save(tmp_path / "single.npz")
    status, out, err = run(capsys, "explain", str(tmp_path / "single.npz"), "--row",
                           str(points), "--target", "0.3")
    assert status == 0, err
    assert out == str(cyprop.explain(single, [0.1, 0.2], np.array([[0.3]]))) + "\n"
    # A model saved before training has no optimizer: plain SGD takes the step.
    assert "Optimizer: SGD(learning_rate=0.1, momentum=0.0," in out


def test_target_column_with_class_names(capsys, tmp_path, moons_model):
    # Names are numbered in sorted order, as 'cyprop train --data csv:FILE:kind' does.
    data = write_rows(tmp_path / "named.csv", [(0.1, "up", 0.2), (0.3, "down", 0.4)],
                      "x,kind,y")
    net = cyprop.load(moons_model)
    for column in ("kind", "1", "-2"):
        status, out, err = run(capsys, "explain", str(moons_model), "--row", f"{data}:0",
                               "--target-column", column)
        assert status == 0, (column, err)
        assert out == str(cyprop.explain(net, [0.1, 0.2], 1)) + "\n"     # "up" is class 1
    status, out, err = run(capsys, "explain", str(moons_model), "--row", f"{data}:1",
                           "--target-column", "kind")
    assert status == 0 and "T7 = 1.000   T8 = 0.000" in out


def test_rate_and_optimizer_overrides(capsys, tmp_path, moons_model):
    points = write_rows(tmp_path / "p.csv", [(0.1, 0.2)])
    argv = ["explain", str(moons_model), "--row", str(points), "--target", "1"]
    # --lr alone: the model's optimizer, with its state, at another rate.
    status, out, err = run(capsys, *argv, "--lr", "0.5")
    assert status == 0, err
    net = cyprop.load(moons_model)
    net.optimizer.learning_rate = net.optimizer.initial_learning_rate = 0.5
    assert out == str(cyprop.explain(net, [0.1, 0.2], 1)) + "\n"
    assert "Adam(learning_rate=0.5," in out
    # --optimizer: a fresh one of that kind, at its own rate or --lr.
    net = cyprop.load(moons_model)
    for extra, optimizer in ((["--optimizer", "sgd"], cyprop.SGD()),
                             (["--optimizer", "sgd", "--lr", "2"], cyprop.SGD(2.0)),
                             (["--optimizer", "rmsprop"], cyprop.RMSprop())):
        status, out, err = run(capsys, *argv, *extra)
        assert status == 0, err
        assert out == str(cyprop.explain(net, [0.1, 0.2], 1, optimizer)) + "\n", extra


def test_tab_delimiter_and_a_path_with_a_colon(capsys, tmp_path, moons_model):
    folder = tmp_path / "a:b"
    folder.mkdir()
    points = folder / "p.tsv"
    points.write_text("0.1\t0.2\n0.3\t0.4\n")
    for row, x in ((str(points), [0.1, 0.2]), (f"{points}:1", [0.3, 0.4])):
        status, out, err = run(capsys, "explain", str(moons_model), "--row", row,
                               "--target", "1", "--delimiter", "tab")
        assert status == 0, err
        assert f"x1 = {x[0]:.3f}   x2 = {x[1]:.3f}" in out


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, status, fragments", [
    (["explain"], 2, ["give a MODEL.npz (or --example textbook)"]),
    (["explain", "MODEL"], 2, ["--row FILE.csv[:N]"]),
    (["explain", "MODEL", "--row", "ROWS"], 2, ["--target LABEL", "--target-column"]),
    (["explain", "MODEL", "--row", "ROWS", "--target", "1", "--target-column", "0"], 2,
     ["not allowed with argument --target"]),
    (["explain", "--example", "textbook", "MODEL"], 2, ["leave out MODEL"]),
    (["explain", "--example", "textbook", "--row", "ROWS", "--target", "1"], 2,
     ["leave out --row, --target"]),
    (["explain", "--example", "book"], 2, ["invalid choice: 'book'"]),
    (["explain", "--example", "textbook", "--lr", "0"], 2, ["--lr must be a finite number > 0, got 0"]),
    (["explain", "--example", "textbook", "--optimizer", "lbfgs"], 2, ["invalid choice"]),
    pytest.param(["explain", "--example", "textbook", "--plot", "step.xyz"], 2,
                 ["cannot write .xyz files"],   # matplotlib knows the formats
                 marks=pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                          reason="needs matplotlib")),
    (["explain", "MODEL", "--row", "WIDE", "--target", "1"], 1,
     ["3 columns, but the model takes 2 features", "--target-column"]),
    (["explain", "MODEL", "--row", "WIDE", "--target-column", "0"], 1,
     ["line 2, column 'x'", "fractional"]),      # a label column holds classes
    (["explain", "MODEL", "--row", "ROWS:2", "--target", "1"], 1,
     ["rows.csv:2: the file has 2 data rows, numbered 0 to 1"]),
    (["explain", "MODEL", "--row", "ROWS:-3", "--target", "1"], 1, ["has 2 data rows"]),
    (["explain", "MODEL", "--row", "ROWS", "--target", "2"], 1,
     ["a class number must be a whole number from 0 to 1"]),
    (["explain", "MODEL", "--row", "ROWS", "--target", "0.5"], 1, ["give 2, one per output"]),
    (["explain", "MODEL", "--row", "ROWS", "--target", "1,0,0"], 1,
     ["--target has 3 values, but the model has 2 outputs"]),
    (["explain", "MODEL", "--row", "ROWS", "--target", "up"], 1,
     ["class names are not stored in the model"]),
    (["explain", "MODEL", "--row", "WIDE", "--target-column", "kind"], 1,
     ["has no column 'kind'"]),
    (["explain", "MODEL", "--row", "ROWS", "--target", "0,nan"], 1, ["NaN"]),
    (["explain", "MODEL", "--row", "MISSING", "--target", "1"], 1,
     ["CSV file", "missing.csv' not found"]),
    (["explain", "MISSING", "--row", "ROWS", "--target", "1"], 1,
     ["model file", "missing.csv' not found"]),
    (["explain", "ROWS", "--row", "ROWS", "--target", "1"], 1, ["rows.csv"]),
])
def test_errors_are_one_line(capsys, tmp_path, moons_model, argv, status, fragments):
    rows = write_rows(tmp_path / "rows.csv", [(0.1, 0.2), (0.3, 0.4)])
    wide = write_rows(tmp_path / "wide.csv", [(0.1, 0.2, 1)], "x,y,label")
    names = {"MODEL": str(moons_model), "ROWS": str(rows), "ROWS:2": f"{rows}:2",
             "ROWS:-3": f"{rows}:-3", "WIDE": str(wide), "MISSING": str(tmp_path / "missing.csv")}
    code, out, err = run(capsys, *[names.get(arg, arg) for arg in argv])
    assert code == status, err
    assert out == ""
    assert_one_line_error(err, *fragments)


def test_script_errors_and_fifos(tmp_path, moons_model):
    """A FIFO as the row file or the model is refused at once (from its stat)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    write_rows(tmp_path / "rows.csv", [(0.1, 0.2)])
    for argv, fragment in (
            ([str(moons_model), "--row", str(fifo), "--target", "1"],
             "is a FIFO (named pipe), not a CSV file"),
            ([str(fifo), "--row", "rows.csv", "--target", "1"],
             "is a FIFO (named pipe), not a model file")):
        status, out, err = run_script(tmp_path, "explain", *argv, timeout=60)
        assert status == 1 and out == ""
        assert_one_line_error(err, fragment)
    status, out, err = run_script(tmp_path, "explain", "--example", "textbook", "--plot",
                                  str(fifo), timeout=60)
    assert status == 2 and out == ""
    assert_one_line_error(err, "--plot", "is a FIFO (named pipe)")


def test_help(capsys):
    status, out, _ = run(capsys, "explain", "--help")
    assert status == 0 and out.startswith("usage: cyprop explain")
    for option in ("--row", "--target", "--target-column", "--lr", "--optimizer", "--plot",
                   "--example"):
        assert option in out
    status, out, _ = run(capsys, "--help")
    assert status == 0 and re.search(r"^\s+explain\s+one backpropagation step", out, re.M)


def test_a_class_name_as_target_names_the_models_classes(capsys, tmp_path):
    """A model trained on a CSV file keeps its labels: the error for --target NAME said
    that class names are not stored in the model; it now gives their numbers."""
    lines = ["a,b,kind"] + [f"{i % 2},{i % 3},{['cat', 'dog'][i % 2]}" for i in range(12)]
    (tmp_path / "pets.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "m.npz"
    assert cli.main(["train", "--data", f"csv:{tmp_path / 'pets.csv'}", "--epochs", "2",
                     "--quiet", "--no-compare", "--save", str(model)]) == 0
    (tmp_path / "row.csv").write_text("0,1\n")
    status, _, err = run(capsys, "explain", str(model), "--row", str(tmp_path / "row.csv"),
                         "--target", "cow")
    assert status == 1 and "not stored" not in err
    assert "give the class's number or name: 0=cat, 1=dog" in err and err.count("\n") == 1


def _model_of_labels(capsys, tmp_path, labels):
    """A model trained by 'cyprop train' on a CSV file of these labels (it keeps them)."""
    lines = ["a,b,kind"] + [f"{i % 2},{i % 3},{labels[i % len(labels)]}" for i in range(12)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "m.npz"
    assert cli.main(["train", "--data", f"csv:{tmp_path / 'train.csv'}", "--epochs", "2",
                     "--quiet", "--no-compare", "--save", str(model)]) == 0
    capsys.readouterr()
    return model


def test_a_class_name_as_target_is_the_models_class(capsys, tmp_path):
    model = _model_of_labels(capsys, tmp_path, ["cat", "dog", "emu"])
    (tmp_path / "row.csv").write_text("0,1\n")
    outputs = []
    for target in ("emu", "2"):   # a name, and the class's number
        status, out, _ = run(capsys, "explain", str(model), "--row",
                             str(tmp_path / "row.csv"), "--target", target)
        assert status == 0
        outputs.append(out)
    assert outputs[0] == outputs[1]


def test_a_target_column_is_read_through_the_models_labels(capsys, tmp_path):
    """The file numbers its own classes (here only 107 and 7: 0 and 1); the model's
    class of 107 is 2: the row's label was taken as the model's class 0."""
    model = _model_of_labels(capsys, tmp_path, [7, 50, 107])
    (tmp_path / "rows.csv").write_text("a,b,kind\n0,1,107\n1,1,7\n")
    status, by_column, _ = run(capsys, "explain", str(model), "--row",
                               str(tmp_path / "rows.csv") + ":0", "--target-column", "kind")
    assert status == 0
    status, from_the_end, _ = run(capsys, "explain", str(model), "--row",
                                  str(tmp_path / "rows.csv") + ":-2", "--target-column", "kind")
    assert status == 0 and from_the_end == by_column
    (tmp_path / "row.csv").write_text("0,1\n")
    status, by_number, _ = run(capsys, "explain", str(model), "--row",
                               str(tmp_path / "row.csv"), "--target", "2")
    assert status == 0 and by_column == by_number
    (tmp_path / "other.csv").write_text("a,b,kind\n0,1,8\n")
    status, _, err = run(capsys, "explain", str(model), "--row", str(tmp_path / "other.csv"),
                         "--target-column", "kind")
    assert status == 1 and "has the label 8, which is not one of the model's classes (0=7, 1=50, 2=107)" in err
