"""The command line, mostly through ``cli.main([...])``; what could block or crash (FIFOs,
divergence) through the installed console script in a child process, run in a
temporary folder outside the source tree, and one run as ``python -m cyprop``."""

import gzip
import os
import pickle
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

import cyprop
from cyprop import cli
from conftest import run_script

QUICK = ["--epochs", "3", "--no-compare"]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``cyprop ARGV``."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err, *fragments):
    assert err.startswith("cyprop: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def accuracy_of(out):
    return float(re.search(r"test accuracy: ([\d.]+)%", out).group(1)) / 100


@pytest.fixture
def pickle_persistence(monkeypatch):
    """Stand-in ``Network.save`` / ``cyprop.load``, so the CLI's model commands can be
    tested whether or not the real persistence is there."""
    def save(self, path):
        with open(path, "wb") as f:
            pickle.dump(self, f)

    def load(path):
        with open(path, "rb") as f:
            return pickle.load(f)

    monkeypatch.setattr(cyprop.Network, "save", save, raising=False)
    monkeypatch.setattr(cyprop, "load", load, raising=False)


# -------------------------------------------------------------------- train
def test_train_prints_header_epochs_and_results(capsys):
    status, out, err = run(capsys, "train", "--data", "spirals", "--epochs", "4",
                           "--activation", "tanh", "--lr", "0.1")
    assert status == 0, err
    assert "training on spirals" in out
    assert "150 training samples x 2 features, 2 classes; 50 for testing" in out
    assert "network:   2-32-2" in out and "tanh hidden" in out
    assert f"backend:   {cyprop.Network([2, 2]).backend}" in out
    assert len(re.findall(r"^epoch \d+/4 .*samples/s$", out, re.M)) == 4
    assert 0 <= accuracy_of(out) <= 1
    assert re.search(r"^training: [\d,]+ samples/s", out, re.M)
    if "cython" in cyprop.available_backends():
        assert re.search(r"compiled backend: [\d,]+ samples/s, NumPy reference: [\d,]+ "
                         r"samples/s, speed-up: [\d.]+x", out)


def test_one_epoch_and_one_sample_are_counted_in_the_singular(capsys, tmp_path):
    # ("1 epochs", "on 1 training samples")
    (tmp_path / "one.csv").write_text("x,y\n0.5,1\n")
    status, out, err = run(capsys, "train", "--data", f"csv:{tmp_path / 'one.csv'}",
                           "--epochs", "1", "--no-compare")
    assert status == 0, err
    assert ", 1 epoch, batch size" in out and "for 1 epoch\n" in out
    assert "on 1 training sample\n" in out


def test_train_learns_xor(capsys):
    # Every setting given: flags win over the data set's defaults.
    status, out, _ = run(capsys, "train", "--data", "xor", "--layers", "2,8,2",
                         "--activation", "tanh", "--optimizer", "sgd", "--lr", "2",
                         "--batch-size", "4", "--epochs", "1000", "--quiet", "--no-compare")
    assert status == 0
    assert "on 4 training samples" in out      # too small to split
    assert accuracy_of(out) == 1.0
    assert not re.search(r"^epoch", out, re.M) and "network:" not in out


def test_train_digits_default_is_accurate(capsys):
    pytest.importorskip("sklearn")
    status, out, _ = run(capsys, "train", "--quiet", "--no-compare")
    assert status == 0
    assert accuracy_of(out) >= 0.95


def test_train_moons_with_one_sigmoid_output(capsys):
    status, out, _ = run(capsys, "train", "--data", "moons", "--layers", "2,16,1", *QUICK)
    assert status == 0 and "2-16-1" in out and "sigmoid output" in out


def test_train_speedup_skipped_without_compiled_backend(capsys, monkeypatch):
    monkeypatch.setattr(cyprop, "available_backends", lambda: ("numpy",))
    status, out, _ = run(capsys, "train", "--data", "moons", "--epochs", "1", "--quiet",
                         "--backend", "numpy")
    assert status == 0
    assert "speed-up: not measured, the compiled backend is not available" in out


def test_train_speedup_line(capsys):
    if "cython" not in cyprop.available_backends():
        pytest.skip("needs the compiled backend")
    status, out, _ = run(capsys, "train", "--data", "moons", "--epochs", "1", "--quiet")
    assert status == 0
    match = re.search(r"compiled backend: ([\d,]+) samples/s, NumPy reference: ([\d,]+) "
                      r"samples/s, speed-up: ([\d.]+)x", out)
    assert match and float(match.group(3)) > 0


def test_train_csv_with_class_names(capsys, tmp_path):
    rng = np.random.default_rng(0)
    rows = ["width,height,kind"]
    for _ in range(40):
        kind = rng.integers(2)
        w, h = rng.normal(size=2) + 3 * kind
        rows.append(f"{w:.3f},{h:.3f},{['small', 'large'][kind]}")
    path = tmp_path / "shapes.csv"
    path.write_text("\n".join(rows) + "\n")
    status, out, _ = run(capsys, "train", "--data", f"csv:{path}:kind", *QUICK)
    assert status == 0
    assert "classes:   0=large, 1=small" in out
    assert "30 training samples x 2 features" in out
    status, _, err = run(capsys, "train", "--data", f"csv:{path}:0", *QUICK)
    assert status == 1
    assert_one_line_error(err, "column 'kind'", "is not a number")


def write_idx(path, array, magic):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def write_mnist_folder(folder, labels_name="{}-labels-idx1-ubyte.gz"):
    """A tiny MNIST in ``folder``: 30 training and 10 test images of 4 x 4."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 4, 4)), 2051)
        write_idx(folder / labels_name.format(prefix), np.arange(n) % 10, 2049)


def test_train_mnist_folder(capsys, tmp_path):
    write_mnist_folder(tmp_path)
    status, out, _ = run(capsys, "train", "--data", f"mnist:{tmp_path}", *QUICK)
    assert status == 0
    assert "30 training samples x 16 features, 10 classes; 10 for testing" in out
    assert "network:   16-32-10" in out


def test_train_mnist_missing_files(capsys, tmp_path):
    status, _, err = run(capsys, "train", "--data", f"mnist:{tmp_path}")
    assert status == 1
    assert_one_line_error(err, "train-images-idx3-ubyte", "yann.lecun.com")


def test_train_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    status, out, _ = run(capsys, "train", "--data", "moons", "--plot", str(png), *QUICK)
    assert status == 0 and f"curves written to {png}" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_train_plot_that_cannot_be_written_keeps_the_previous_file(capsys, tmp_path,
                                                                   monkeypatch):
    """--plot writes as Network.save does: a write that fails part way (a full disk)
    leaves the curves that were there, and nothing beside them."""
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    assert run(capsys, "train", "--data", "moons", "--plot", str(png), *QUICK)[0] == 0
    before = png.read_bytes()

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    status, _, err = run(capsys, "train", "--data", "xor", "--plot", str(png), *QUICK)
    monkeypatch.undo()
    assert status == 1 and "No space left" in err
    assert png.read_bytes() == before and os.listdir(tmp_path) == ["curves.png"]


def test_train_plot_titled_with_dollar_signs_is_written_and_the_model_saved(capsys, tmp_path):
    """The title names the data as given: its dollar signs are text, not mathtext
    (a CSV file named x$_$.csv failed at the end with a ParseSyntaxException, after
    training, and the model was not saved)."""
    pytest.importorskip("matplotlib")
    data = tmp_path / "x$_$.csv"
    data.write_text("a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    png, model = tmp_path / "curves.png", tmp_path / "m.npz"
    status, out, err = run(capsys, "train", "--data", f"csv:{data}", "--plot", str(png),
                           "--save", str(model), *QUICK)
    assert status == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert cyprop.load(model).sizes[0] == 2


def test_train_plot_without_matplotlib(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)   # import fails
    status, out, err = run(capsys, "train", "--data", "moons", "--plot", "x.png", *QUICK)
    assert status == 1 and out == ""        # found out before training
    assert_one_line_error(err, "pip install matplotlib", 'pip install "cyprop[plot]"')


# ------------------------------------------------------------- usage errors
@pytest.mark.parametrize("argv, fragment", [
    ([], "required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["train", "--data", "iris"], "unknown data 'iris'"),
    (["train", "--data", "mnist"], "unknown data 'mnist'"),
    (["train", "--epochs", "many"], "invalid int value: 'many'"),
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--lr", "-1"], "--lr must be a finite number > 0, got -1"),
    (["train", "--data", "xor", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["train", "--data", "xor", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["train", "--data", "xor", "--weight-decay", "nan"], "--weight-decay must be a finite"),
    (["train", "--data", "xor", "--optimizer", "sgd", "--momentum", "inf"],
     "--momentum must be a finite number >= 0, got inf"),
    (["explain", "--example", "textbook", "--lr", "inf"], "--lr must be a finite number > 0"),
    (["train", "--layers", "2,x,2"], "comma-separated layer sizes"),
    (["train", "--data", "xor", "--layers", "3,4,2"], "starts with 3 inputs, but xor has 2"),
    (["train", "--data", "xor", "--layers", "2,4,3"], "ends with 3 outputs, but xor has 2"),
    (["train", "--data", "xor", "--test-size", "1.5"], "--test-size"),
    # (a negative seed reached numpy as "expected non-negative integer", status 1)
    (["train", "--data", "moons", "--seed", "-1", "--epochs", "1"], "--seed"),
    (["evaluate", "m.npz", "--data", "moons", "--seed", "-5"], "--seed"),
    (["train", "--activation", "softmax"], "invalid choice: 'softmax'"),
    # (the command's own help named: 'see cyprop --help' pointed to the commands' list)
    (["train", "--bogus"], "unrecognized arguments: --bogus (see 'cyprop train --help')"),
    (["info", "extra"], "unrecognized arguments: extra (see 'cyprop info --help')"),
])
def test_usage_errors_are_one_line_with_status_2(capsys, argv, fragment):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, fragment)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "info", "export",
                                     "explain"])
def test_help(capsys, command):
    status, out, _ = run(capsys, command, "--help")
    assert status == 0 and out.startswith(f"usage: cyprop {command}")


def test_top_level_help_and_version(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for command in ("train", "evaluate", "predict", "info", "bench"):
        assert command in out
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.strip() == f"cyprop {cyprop.__version__}"


def test_diverging_training_is_an_error(capsys, monkeypatch):
    def diverge(self, *args, **kwargs):
        raise cyprop.TrainingDiverged("training diverged in epoch 1: try a smaller rate")
    monkeypatch.setattr(cyprop.Network, "fit", diverge)
    status, _, err = run(capsys, "train", "--data", "xor", "--quiet")
    assert status == 1
    assert_one_line_error(err, "training diverged")


# --------------------------------------------------- save / evaluate / predict
def test_save_evaluate_predict(capsys, tmp_path, pickle_persistence):
    model = tmp_path / "model.npz"
    status, out, _ = run(capsys, "train", "--data", "moons", "--epochs", "20", "--lr", "0.2",
                         "--activation", "tanh", "--quiet", "--no-compare", "--save", str(model))
    assert status == 0 and f"model saved to {model}" in out
    trained = accuracy_of(out)

    status, out, _ = run(capsys, "evaluate", str(model), "--data", "moons")
    assert status == 0
    # The default split is train's, so evaluate reports train's test accuracy.
    accuracy = float(re.search(r"accuracy ([\d.]+)%", out).group(1)) / 100
    assert accuracy == pytest.approx(trained) and "(50 test samples)" in out

    features = tmp_path / "points.csv"
    features.write_text("x,y\n0,1\n1,-0.5\n-1,0.5\n")
    status, out, _ = run(capsys, "predict", str(model), str(features))
    assert status == 0
    expected = cyprop.load(model).predict([[0, 1], [1, -0.5], [-1, 0.5]])
    assert out.split() == [str(label) for label in expected]

    labels = tmp_path / "labels.txt"
    status, out, _ = run(capsys, "predict", str(model), str(features), "-o", str(labels))
    assert status == 0 and out == ""
    assert labels.read_text().split() == [str(label) for label in expected]

    status, _, err = run(capsys, "evaluate", str(model), "--data", "xor", "--test-size", "0")
    assert status == 0
    status, _, err = run(capsys, "predict", str(model), str(tmp_path / "nope.csv"))
    assert status == 1
    assert_one_line_error(err, "nope.csv")
    features.write_text("1,2,3\n")
    status, _, err = run(capsys, "predict", str(model), str(features))
    assert status == 1
    assert_one_line_error(err, "3 columns, but the model takes 2 features")


def test_model_errors(capsys, tmp_path, pickle_persistence):
    status, _, err = run(capsys, "evaluate", str(tmp_path / "missing.npz"), "--data", "xor")
    assert status == 1
    assert_one_line_error(err, "missing.npz")
    model = tmp_path / "m.npz"
    cyprop.Network([3, 2]).save(model)
    status, _, err = run(capsys, "evaluate", str(model), "--data", "xor")
    assert status == 1
    assert_one_line_error(err, "takes 3 features")


def test_without_persistence_the_model_commands_say_so(capsys, monkeypatch, tmp_path):
    monkeypatch.delattr(cyprop.Network, "save", raising=False)
    monkeypatch.delattr(cyprop, "load", raising=False)
    status, out, err = run(capsys, "train", "--data", "xor", "--save", "m.npz")
    assert status == 1 and out == ""        # refused before training
    assert_one_line_error(err, "cannot save or load models")
    for argv in (["evaluate", "m.npz"], ["predict", "m.npz", "x.csv"]):
        status, _, err = run(capsys, *argv)
        assert status == 1
        assert_one_line_error(err, "cannot save or load models")


@pytest.mark.skipif(not hasattr(cyprop, "load"), reason="cyprop has no persistence yet")
def test_real_persistence_round_trip(capsys, tmp_path):
    model = tmp_path / "model.npz"
    status, out, _ = run(capsys, "train", "--data", "moons", "--quiet", "--no-compare",
                         "--save", str(model))
    assert status == 0
    status, out2, _ = run(capsys, "evaluate", str(model), "--data", "moons")
    assert status == 0
    assert re.search(r"accuracy ([\d.]+)%", out2).group(1) in out


# -------------------------------------------------------------- info, bench
def test_info(capsys):
    status, out, _ = run(capsys, "info")
    assert status == 0
    assert f"cyprop:          {cyprop.__version__}" in out
    assert f"NumPy:           {np.__version__}" in out
    assert f"backends:        {', '.join(cyprop.available_backends())}" in out
    assert "compiled module:" in out and "OMP_NUM_THREADS:" in out


def test_cpu_info_parsing(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU @ 3GHz\n"
                       "flags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\n")
    assert cli._cpu_info(str(cpuinfo)) == ("Example CPU @ 3GHz", ["sse2", "avx", "avx2", "fma"])
    assert cli._cpu_info(str(tmp_path / "none")) == (None, None)


def test_bench_passes_arguments_on(monkeypatch):
    import cyprop.bench
    calls = []
    monkeypatch.setattr(cyprop.bench, "main", lambda argv, prog=None: calls.append(
        (argv, prog)) or 3)
    assert cli.main(["bench", "--quick", "--repeats", "2"]) == 3
    assert calls == [(["--quick", "--repeats", "2"], "cyprop bench")]


def test_bench_help_and_usage_errors(capsys):
    status, out, _ = run(capsys, "bench", "--help")
    assert status == 0 and out.startswith("usage: cyprop bench")
    assert "--quick" in out
    status, _, err = run(capsys, "bench", "--systems", "nope")
    assert status == 2 and "unknown system 'nope'" in err


# --------------------------------------------------------------- subprocess
def test_python_dash_m(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "cyprop", "train", "--data", "moons",
                           "--epochs", "2", "--quiet"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "test accuracy:" in done.stdout
    done = subprocess.run([sys.executable, "-m", "cyprop", "train", "--data", "nope"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("cyprop: error:") and done.stderr.count("\n") == 1


@pytest.mark.parametrize("setting, saved", [
    ({"PYTHONIOENCODING": "ascii"}, b"m\\xe9.npz"),
    # without UTF-8 mode, argv's bytes come in undecodable and go out as they came
    ({"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}, "m\u00e9.npz".encode())])
def test_an_ascii_output_encoding_escapes_what_it_cannot_show(tmp_path, setting, saved):
    # PYTHONIOENCODING=ascii (or an ASCII or Latin-1 locale) and a class name or path
    # beyond it: escaped in the messages, as on stderr, not a UnicodeEncodeError that
    # ends the run before the model is saved.
    data = tmp_path / "caf\u00e9.csv"
    labels = ["caf\u00e9", "th\u00e9"]
    data.write_text("a,b,label\n" + "".join(f"{i % 3},{i % 2},{labels[i % 2]}\n"
                                              for i in range(8)), encoding="utf-8")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **setting}
    done = subprocess.run([sys.executable, "-m", "cyprop", "train", "--data", f"csv:{data}",
                           "--epochs", "2", "--no-compare", "--save", "m\u00e9.npz"],
                          capture_output=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert b"caf\\xe9" in done.stdout and b"model saved to " + saved in done.stdout, \
        done.stdout
    assert (tmp_path / "m\u00e9.npz").is_file() and done.stderr == b""


@pytest.mark.skipif(os.name != "posix", reason="closes stdout with the shell's >&-")
@pytest.mark.parametrize("argv", [["info"], ["train", "--data", "xor", "--epochs", "3"]])
def test_a_closed_stdout_is_one_line_error(tmp_path, argv):
    # Started with no stdout at all (sys.stdout None): not a silent success (info) nor
    # "'NoneType' object has no attribute 'flush'" (train).
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(["sh", "-c", '"$0" -m cyprop "$@" >&-', sys.executable, *argv],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "standard output is closed")


def test_main_with_a_closed_sys_stdout_is_one_line_error(tmp_path):
    # main called by a program that has closed sys.stdout: an error line, not a
    # ValueError raised out of main.
    code = ("import sys; from cyprop import cli; sys.stdout.close(); "
            "sys.exit(cli.main(['info']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "closed file")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("argv", [["info"], ["--version"],
                                  ["explain", "--example", "textbook"]])
def test_output_to_a_full_disk_is_one_line_error(tmp_path, argv):
    # Block-buffered stdout (no PYTHONUNBUFFERED, as for most users): the lines are
    # written when flushed, which a full disk refuses; that is an error line and
    # status 1, not Python's "Exception ignored ..." at exit with status 120, nor
    # (--version) a silent success.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONWARNINGS"] = "ignore"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "cyprop", *argv], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path,
                              env=env)
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, "No space left on device")


# ------------------------------------------- the console script, as installed




@pytest.mark.parametrize("data, lr", [("moons", "1e10"), ("moons", "1e300"),
                                      ("xor", "1e10")])   # (xor: one batch an epoch)
def test_script_diverging_training_is_an_error(tmp_path, data, lr):
    model = tmp_path / "model.npz"
    status, out, err = run_script(tmp_path, "train", "--data", data, "--epochs", "5",
                                  "--lr", lr, "--no-compare", "--save", str(model))
    assert status != 0, out
    assert_one_line_error(err, "diverged", "try a smaller --lr")
    assert "test accuracy" not in out and not model.exists()


def test_script_train_and_predict(tmp_path):
    if not hasattr(cyprop, "load"):
        pytest.skip("cyprop has no persistence yet")
    status, out, err = run_script(tmp_path, "train", "--data", "moons", "--epochs", "3",
                                  "--quiet", "--no-compare", "--save", "m.npz")
    assert status == 0, err
    assert "model saved to m.npz" in out and (tmp_path / "m.npz").is_file()
    (tmp_path / "x.tsv").write_text("x\ty\n0\t1\n1\t-0.5\n")
    status, out, err = run_script(tmp_path, "predict", "m.npz", "x.tsv", "--delimiter", "tab")
    assert status == 0, err
    assert len(out.split()) == 2
    # '-o -' writes to stdout, as most tools take it, not to a file named '-'
    status, dashed, err = run_script(tmp_path, "predict", "m.npz", "x.tsv", "--delimiter",
                                     "tab", "-o", "-")
    assert status == 0 and dashed == out and not (tmp_path / "-").exists(), err


@pytest.mark.skipif(os.name != "posix", reason="limits the file size with setrlimit")
def test_script_predict_output_that_cannot_be_written_keeps_the_previous_file(tmp_path):
    """A write that fails part way (here: past the file-size limit, as a full disk
    would) must leave the labels file that was there, not the first labels of the new
    ones, which would read as a complete answer."""
    if not hasattr(cyprop, "load"):
        pytest.skip("cyprop has no persistence yet")
    import resource

    from conftest import CYPROP

    status, _, err = run_script(tmp_path, "train", "--data", "xor", "--epochs", "3",
                                "--quiet", "--no-compare", "--save", "m.npz")
    assert status == 0, err
    rows = np.random.default_rng(0).normal(size=(3000, 2))
    np.savetxt(tmp_path / "x.csv", rows, delimiter=",")
    labels = tmp_path / "labels.txt"
    labels.write_text("the previous labels\n")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    done = subprocess.run([str(CYPROP), "predict", "m.npz", "x.csv", "-o", "labels.txt"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, preexec_fn=small_files)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "File too large")
    assert labels.read_text() == "the previous labels\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "m.npz", "x.csv"]


@pytest.mark.skipif(os.name != "posix", reason="limits the file size with setrlimit")
@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_script_predict_to_stdout_that_fills_up_is_an_error(tmp_path, unbuffered):
    """Labels to stdout, a file that reaches its size limit part way: with
    PYTHONUNBUFFERED the write came back short, the rest was dropped and the
    command succeeded with the labels cut off."""
    if not hasattr(cyprop, "load"):
        pytest.skip("cyprop has no persistence yet")
    import resource

    from conftest import CYPROP

    status, _, err = run_script(tmp_path, "train", "--data", "xor", "--epochs", "3",
                                "--quiet", "--no-compare", "--save", "m.npz")
    assert status == 0, err
    np.savetxt(tmp_path / "x.csv", np.random.default_rng(0).normal(size=(3000, 2)),
               delimiter=",")

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": unbuffered}
    with open(tmp_path / "labels.txt", "wb") as out:
        done = subprocess.run([str(CYPROP), "predict", "m.npz", "x.csv"], stdout=out,
                              stderr=subprocess.PIPE, text=True, timeout=120, cwd=tmp_path,
                              stdin=subprocess.DEVNULL, env=env, preexec_fn=small_files)
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, "File too large")


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_script_refuses_fifos_directories_and_devices_at_once(tmp_path, fifo):
    """Nothing may block on a FIFO: each refusal comes at once (from a stat)."""
    (tmp_path / "x.csv").write_text("1,2\n")
    cases = [
        (["evaluate", str(fifo), "--data", "xor"], 1, "is a FIFO (named pipe), not a model file"),
        (["evaluate", str(tmp_path), "--data", "xor"], 1, "is a directory, not a model file"),
        (["predict", os.devnull, "x.csv"], 1, "is a character device, not a model file"),
        (["train", "--data", f"csv:{fifo}", *QUICK], 1, "is a FIFO (named pipe), not a CSV file"),
        (["train", "--data", f"csv:{tmp_path}", *QUICK], 1, "is a directory, not a CSV file"),
        (["train", "--data", "xor", "--save", str(fifo)], 2, "is a FIFO (named pipe)"),
        (["train", "--data", "xor", "--plot", str(fifo)], 2, "is a FIFO (named pipe)"),
        (["predict", "m.npz", "x.csv", "-o", str(fifo)], 2, "is a FIFO (named pipe)"),
    ]
    for argv, expected, fragment in cases:
        status, out, err = run_script(tmp_path, *argv, timeout=60)
        assert status == expected, (argv, err)
        assert_one_line_error(err, fragment)
        assert out == "", argv          # nothing trained or printed first


def test_script_predict_input_fifo(tmp_path, fifo):
    (tmp_path / "m.npz").write_bytes(b"")     # the input is checked first
    status, _, err = run_script(tmp_path, "predict", "m.npz", str(fifo), timeout=60)
    assert status == 1
    assert_one_line_error(err, "is a FIFO (named pipe), not a CSV file")


# ------------------------------------------------ destinations, before training
@pytest.mark.parametrize("option", ["--save", "--plot"])
def test_destinations_are_checked_before_training(capsys, tmp_path, option):
    pytest.importorskip("matplotlib")
    name = "out.npz" if option == "--save" else "out.png"
    for destination, fragment in [
            (tmp_path / "missing" / name, "does not exist"),
            (tmp_path, "is a directory"),
            (f"{tmp_path}/", "names a folder"),
            (os.devnull, "is a character device")]:
        status, out, err = run(capsys, "train", "--data", "moons", option, str(destination),
                               *QUICK)
        assert status == 2 and out == "", destination
        assert_one_line_error(err, option, fragment)


@pytest.mark.parametrize("exists", [False, True])
def test_save_and_plot_onto_one_file_are_refused_before_training(capsys, tmp_path,
                                                                monkeypatch, exists):
    # (--save out.png --plot ./out.png wrote the curves, then the model over them)
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    if exists:
        (tmp_path / "out.png").write_bytes(b"kept")
        os.symlink("out.png", "link.png")
    plot = "link.png" if exists else "./out.png"
    status, out, err = run(capsys, "train", "--data", "xor", "--save", "out.png",
                           "--plot", plot, *QUICK)
    assert status == 2 and out == ""
    assert_one_line_error(err, "--save", "--plot", "same file")
    assert sorted(os.listdir(tmp_path)) == (["link.png", "out.png"] if exists else [])
    if exists:
        assert (tmp_path / "out.png").read_bytes() == b"kept"


def test_epoch_lines_of_an_absurd_number_of_epochs(capsys):
    # (train --epochs 200000000000000000000 stopped with "cyprop: error: StopIteration")
    lines = cli._EveryKthEpoch(2 * 10 ** 20)
    assert lines.every == cli._ROUND_STEPS[-1]
    lines.on_epoch_end(None, 0, {"loss": 1.0, "accuracy": 0.5, "learning_rate": 0.1,
                                 "seconds": 0.1, "samples_per_second": 40.0})
    assert capsys.readouterr().out.startswith("epoch 1/200000000000000000000  loss 1.0000")


def test_an_empty_destination_is_refused_not_skipped(capsys, tmp_path):
    # ("--save ''" trained, saved nothing and exited 0; "-o ''" printed to stdout)
    for argv in (["train", "--data", "xor", "--save", "", *QUICK],
                 ["train", "--data", "xor", "--plot", "", *QUICK],
                 ["predict", "m.npz", "x.csv", "-o", ""],
                 ["explain", "--example", "textbook", "--plot", ""]):
        status, out, err = run(capsys, *argv)
        assert status == 2 and out == "", argv
        assert_one_line_error(err, "needs a file name")


def test_a_destination_that_is_an_input_file_is_refused(capsys, tmp_path, monkeypatch):
    # ("predict model.npz x.csv -o x.csv" wrote the labels over the CSV file, and
    # "-o model.npz" over the model; "train --data csv:F --save F" the model over F)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    data = "".join(f"{a:.3f},{b:.3f},{int(a > b)}\n" for a, b in rng.normal(size=(20, 2)))
    (tmp_path / "d.csv").write_text(data)
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    status, _, _ = run(capsys, "train", "--data", "csv:d.csv", "--save", "m.npz", *QUICK)
    assert status == 0
    model = (tmp_path / "m.npz").read_bytes()
    for argv in (["predict", "m.npz", "x.csv", "-o", "x.csv"],
                 ["predict", "m.npz", "x.csv", "-o", "./m.npz"],
                 ["train", "--data", "csv:d.csv", "--save", "d.csv", *QUICK],
                 ["export", "m.npz", "m.npz"]):
        status, out, err = run(capsys, *argv)
        assert status == 2 and out == "", argv
        assert_one_line_error(err, "is the input file", "would destroy it")
    assert (tmp_path / "m.npz").read_bytes() == model
    assert (tmp_path / "x.csv").read_text() == "1,2\n3,4\n"
    assert (tmp_path / "d.csv").read_text() == data


def test_a_destination_that_is_an_mnist_file_is_refused(capsys, tmp_path):
    # (mnist:FOLDER names a folder, so "--save FOLDER/t10k-images-idx3-ubyte.gz"
    # wrote the model over the test images)
    write_mnist_folder(tmp_path, labels_name="{}-labels.idx1-ubyte.gz")
    files = {path: path.read_bytes() for path in tmp_path.iterdir()}
    for path in files:
        status, out, err = run(capsys, "train", "--data", f"mnist:{tmp_path}",
                               "--save", str(path), *QUICK)
        assert status == 2 and out == "", path
        assert_one_line_error(err, "is the input file", "would destroy it")
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == files


@pytest.mark.parametrize("name, fragment", [("curves.xyz", "cannot write .xyz files"),
                                            ("curves", "needs an extension")])
def test_plot_format_is_checked_before_training(capsys, tmp_path, name, fragment):
    pytest.importorskip("matplotlib")
    status, out, err = run(capsys, "train", "--data", "moons", "--plot",
                           str(tmp_path / name), *QUICK)
    assert status == 2 and out == ""
    assert_one_line_error(err, fragment, ".png", ".pdf", ".svg")


def test_unwritable_destinations(capsys, tmp_path, pickle_persistence, permissions_as_owner):
    folder = tmp_path / "locked"
    folder.mkdir()
    readonly = tmp_path / "readonly.npz"
    readonly.write_bytes(b"")
    readonly.chmod(0o444)
    folder.chmod(0o555)
    try:
        for destination in (folder / "m.npz", readonly):
            status, out, err = run(capsys, "train", "--data", "xor", "--save",
                                   str(destination), *QUICK)
            assert status == 2 and out == ""
            assert_one_line_error(err, "not writable")
        status, _, err = run(capsys, "predict", "m.npz", "x.csv", "-o", str(readonly))
        assert status == 2
        assert_one_line_error(err, "--output", "not writable")
    finally:
        folder.chmod(0o755)


def test_output_destination_is_checked_before_the_model(capsys, tmp_path):
    status, _, err = run(capsys, "predict", "nope.npz", "x.csv", "-o",
                         str(tmp_path / "missing" / "labels.txt"))
    assert status == 2
    assert_one_line_error(err, "--output", "does not exist")


# --------------------------------------------------------------- CSV classes
def test_train_csv_shows_mapped_number_classes(capsys, tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"{x:.3f},{[100, 5000][int(x > 0)]}" for x in rng.normal(size=40)]
    path = tmp_path / "codes.csv"
    path.write_text("\n".join(rows) + "\n")
    status, out, _ = run(capsys, "train", "--data", f"csv:{path}", *QUICK)
    assert status == 0
    assert "2 classes" in out and "classes:   0=100, 1=5000" in out


def test_train_csv_refuses_a_quantity_as_target(capsys, tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("size,price\n1,0.5\n2,1.5\n")
    status, out, err = run(capsys, "train", "--data", f"csv:{path}", *QUICK)
    assert status == 1 and out == ""
    assert_one_line_error(err, "line 2", "fractional")


@pytest.mark.parametrize("delimiter", ["", "ab", '"', "\n"])
def test_a_delimiter_that_is_not_one_character_is_a_usage_error(capsys, tmp_path, delimiter):
    """(An empty one failed with exit status 1 and the csv module's words.)"""
    model, data = tmp_path / "m.npz", tmp_path / "x.csv"
    status, _, err = run(capsys, "train", "--data", "xor", "--epochs", "1", "--quiet",
                         "--no-compare", "--save", str(model))
    assert status == 0, err
    data.write_text("0,1\n1,0\n")
    status, out, err = run(capsys, "predict", str(model), str(data), "--delimiter", delimiter)
    assert status == 2 and not out
    assert_one_line_error(err, "--delimiter must be one character")


@pytest.mark.parametrize("labels, rows", [
    (("7", "107"), None), (("cat", "dog"), None), (("-1", "5000"), None),
    # (as written: 007 is the class 7, and a float's 7.0 too)
    (("007", "107.0"), ("7", "107"))])
def test_predict_prints_the_labels_of_the_training_file(capsys, tmp_path, labels, rows):
    """cyprop train numbers a CSV file's classes 0..k-1; predict printed those numbers
    instead of the file's own labels."""
    lines = ["a,b,label"] + [f"{i % 2 * 3 + j * 0.1},{i % 2 * 3},{labels[i % 2]}"
                             for i in range(20) for j in range(2)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "rows.csv").write_text("a,b\n0,0\n3,3\n0.1,0\n")
    model = tmp_path / "m.npz"
    status, out, err = run(capsys, "train", "--data", f"csv:{tmp_path / 'train.csv'}",
                           "--epochs", "40", "--quiet", "--no-compare", "--save", str(model))
    assert status == 0, err
    expected = rows or labels
    status, out, err = run(capsys, "predict", str(model), str(tmp_path / "rows.csv"))
    assert status == 0, err
    assert out.split("\n") == [expected[0], expected[1], expected[0], ""]
    status, out, err = run(capsys, "predict", str(model), str(tmp_path / "rows.csv"),
                           "-o", str(tmp_path / "labels.txt"))
    assert status == 0 and out == "", err
    assert (tmp_path / "labels.txt").read_text().split() == [expected[0], expected[1],
                                                             expected[0]]


@pytest.mark.parametrize("labels", [("cat", "dog", "gnu"), ("7", "107", "300")])
def test_evaluate_numbers_a_files_labels_as_the_model_does(capsys, tmp_path, labels):
    """A file holding some of the model's classes numbered them 0..k-1 among its own
    (dog and gnu as 0 and 1, the model's cat and dog): the accuracy was of other
    classes, without a word."""
    def rows(classes):
        return ["a,b,label"] + [f"{labels.index(c) * 3 + j * 0.1},{labels.index(c) * 3},{c}"
                                for c in classes for j in range(8)]
    (tmp_path / "train.csv").write_text("\n".join(rows(labels)) + "\n")
    (tmp_path / "some.csv").write_text("\n".join(rows(labels[1:])) + "\n")
    model = tmp_path / "m.npz"
    status, _, err = run(capsys, "train", "--data", f"csv:{tmp_path / 'train.csv'}",
                         "--epochs", "100", "--quiet", "--no-compare", "--save", str(model))
    assert status == 0, err
    status, out, err = run(capsys, "evaluate", str(model), "--data",
                           f"csv:{tmp_path / 'some.csv'}", "--test-size", "0")
    assert status == 0, err
    assert "accuracy 100.00%" in out
    unknown = "999" if labels[0].isdigit() else "emu"
    (tmp_path / "other.csv").write_text("\n".join(rows(labels[1:])).replace(
        f",{labels[2]}", f",{unknown}") + "\n")
    status, out, err = run(capsys, "evaluate", str(model), "--data",
                           f"csv:{tmp_path / 'other.csv'}", "--test-size", "0")
    assert status == 1 and out == ""
    assert_one_line_error(err, unknown, "not one of the model's classes")


def test_predict_of_one_output_unit_prints_the_labels(capsys, tmp_path):
    lines = ["a,label"] + [f"{i % 2 * 3},{['no', 'yes'][i % 2]}" for i in range(20)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "rows.csv").write_text("0\n3\n")
    model = tmp_path / "m.npz"
    status, _, err = run(capsys, "train", "--data", f"csv:{tmp_path / 'train.csv'}",
                         "--layers", "1,4,1", "--epochs", "60", "--quiet", "--no-compare",
                         "--save", str(model))
    assert status == 0, err
    status, out, err = run(capsys, "predict", str(model), str(tmp_path / "rows.csv"))
    assert status == 0, err
    assert out == "no\nyes\n"


def test_train_refuses_before_training_labels_a_model_file_cannot_hold(capsys, tmp_path):
    lines = ["a,label"] + [f"{i % 2},\"{['one', 'two' + chr(10) + 'lines'][i % 2]}\""
                           for i in range(10)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    model = tmp_path / "m.npz"
    status, out, err = run(capsys, "train", "--data", f"csv:{tmp_path / 'train.csv'}",
                           *QUICK, "--save", str(model))
    assert status == 1 and "epoch" not in out and not model.exists()
    assert_one_line_error(err, "cannot save the labels", "line break")
    # without --save the labels are not needed: it trains
    status, out, err = run(capsys, "train", "--data", f"csv:{tmp_path / 'train.csv'}",
                           *QUICK)
    assert status == 0, err


def test_script_predict_labels_the_output_encoding_cannot_write(tmp_path):
    """A label the output's encoding has no letters for (a Latin-1 or ASCII locale) is
    an error that says what to do, with nothing printed (labels are data: never
    changed); --output writes UTF-8."""
    lines = ["a,label"] + [f"{i % 2},{['café', '猫'][i % 2]}" for i in range(10)]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "rows.csv").write_text("0\n1\n")
    status, _, err = run_script(tmp_path, "train", "--data", "csv:train.csv", "--epochs",
                                "200", "--quiet", "--no-compare", "--save", "m.npz")
    assert status == 0, err
    env = {**os.environ, "PYTHONIOENCODING": "latin-1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([str(sys.executable), "-m", "cyprop", "predict", "m.npz",
                           "rows.csv"], capture_output=True, cwd=tmp_path, env=env)
    assert done.returncode == 1 and done.stdout == b""
    err = done.stderr.decode("latin-1")
    assert_one_line_error(err, "'\\u732b'", "latin-1", "--output")
    status, out, err = run_script(tmp_path, "predict", "m.npz", "rows.csv", "-o", "l.txt")
    assert status == 0, err
    assert (tmp_path / "l.txt").read_text(encoding="utf-8") == "café\n猫\n"


@pytest.mark.parametrize("debug", ["", "0", "1"])
def test_cyprop_debug_raises_the_error_only_when_set(capsys, monkeypatch, tmp_path, debug):
    monkeypatch.setenv("CYPROP_DEBUG", debug)
    missing = str(tmp_path / "missing.csv")
    if debug == "1":
        with pytest.raises(OSError):
            cli.main(["train", "--data", f"csv:{missing}", "--epochs", "1"])
    else:
        assert cli.main(["train", "--data", f"csv:{missing}", "--epochs", "1"]) == 1
        assert capsys.readouterr().err.startswith("cyprop: error: ")
