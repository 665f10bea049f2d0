"""cyprop.datasets: built-in problems, the split, MNIST IDX files and CSV tables."""

import gzip
import struct

import numpy as np
import pytest

from cyprop import datasets


def write_idx(path, array, magic, compress=False):
    """An IDX file as MNIST ships them: big-endian magic, dimensions, then the bytes."""
    array = np.asarray(array, dtype=np.uint8)
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.tobytes()
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    return data


def write_mnist(folder, n=5, rows=3, cols=4, kind="train", compress=False, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "train" if kind == "train" else "t10k"
    gz = ".gz" if compress else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{gz}", images, 2051, compress)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{gz}", labels, 2049, compress)
    return images, labels


def check_xy(X, y, n, n_features):
    assert X.shape == (n, n_features) and y.shape == (n,)
    assert X.dtype == np.float64 and y.dtype == np.int64
    assert np.isfinite(X).all()


# ------------------------------------------------------------------ built-in
def test_xor():
    X, y = datasets.xor()
    check_xy(X, y, 4, 2)
    np.testing.assert_array_equal(y, (X[:, 0] != X[:, 1]).astype(int))


def test_load_digits():
    pytest.importorskip("sklearn")
    X, y = datasets.load_digits()
    check_xy(X, y, 1797, 64)
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_load_digits_without_sklearn_says_how_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("No module named 'sklearn'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(ImportError, match=r"pip install scikit-learn.*cyprop\[sklearn\]"):
        datasets.load_digits()


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_spirals(classes):
    X, y = datasets.spirals(n=301, noise=0.1, seed=1, classes=classes)
    check_xy(X, y, 301, 2)
    counts = np.bincount(y)
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    assert np.abs(X).max() < 2


def test_spirals_without_noise_lie_within_the_unit_disc():
    X, _ = datasets.spirals(n=100, noise=0, seed=0)
    assert np.hypot(X[:, 0], X[:, 1]).max() == pytest.approx(1.0)


def test_moons():
    X, y = datasets.moons(n=201, noise=0.0, seed=0)
    check_xy(X, y, 201, 2)
    assert np.bincount(y).tolist() == [101, 100]
    upper = X[y == 0]
    # Without noise the upper moon is the unit half circle.
    np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0)


@pytest.mark.parametrize("make", [datasets.spirals, datasets.moons])
def test_generators_are_seeded(make):
    X1, y1 = make(n=50, seed=3)
    X2, y2 = make(n=50, seed=3)
    X3, _ = make(n=50, seed=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert len(np.unique(y1[:10])) == 2    # shuffled, not sorted by class


@pytest.mark.parametrize("kwargs, error", [
    ({"n": 1}, ValueError), ({"n": 10.5}, TypeError), ({"noise": -1}, ValueError),
    ({"noise": float("nan")}, ValueError), ({"noise": "x"}, TypeError)])
def test_generators_reject_bad_arguments(kwargs, error):
    with pytest.raises(error):
        datasets.moons(**kwargs)
    with pytest.raises(error):
        datasets.spirals(**kwargs)


def test_spirals_needs_two_classes():
    with pytest.raises(ValueError, match="classes"):
        datasets.spirals(classes=1)


# --------------------------------------------------------------------- split
def test_train_test_split():
    X = np.arange(40.0).reshape(20, 2)
    y = np.arange(20)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size=0.25, seed=0)
    assert len(y_test) == 5 and len(y_train) == 15
    assert sorted(np.concatenate([y_train, y_test])) == list(range(20))
    np.testing.assert_array_equal(X_train[:, 0], 2 * y_train)   # rows stay with their labels
    again = datasets.train_test_split(X, y, test_size=0.25, seed=0)
    np.testing.assert_array_equal(again[3], y_test)
    other = datasets.train_test_split(X, y, test_size=0.25, seed=1)
    assert not np.array_equal(other[3], y_test)


def test_train_test_split_rounds_up_and_takes_counts():
    X, y = np.zeros((10, 1)), np.zeros(10)
    assert len(datasets.train_test_split(X, y, test_size=0.21)[1]) == 3
    assert len(datasets.train_test_split(X, y, test_size=4)[1]) == 4


@pytest.mark.parametrize("test_size", [0, 1.0, 10, -0.5, 0.0])
def test_train_test_split_keeps_both_parts(test_size):
    with pytest.raises(ValueError):
        datasets.train_test_split(np.zeros((10, 1)), np.zeros(10), test_size=test_size)


def test_train_test_split_checks_lengths():
    with pytest.raises(ValueError, match="different numbers"):
        datasets.train_test_split(np.zeros((10, 1)), np.zeros(9))


# --------------------------------------------------------------------- MNIST
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("kind", ["train", "test"])
def test_load_mnist(tmp_path, compress, kind):
    images, labels = write_mnist(tmp_path, n=6, kind=kind, compress=compress)
    X, y = datasets.load_mnist(tmp_path, kind=kind)
    check_xy(X, y, 6, 12)
    np.testing.assert_array_equal(X, images.reshape(6, 12) / 255.0)
    np.testing.assert_array_equal(y, labels)
    assert 0 <= X.min() and X.max() <= 1


def test_load_mnist_accepts_dotted_names(tmp_path):
    # Some mirrors name the files "train-images.idx3-ubyte".
    write_idx(tmp_path / "train-images.idx3-ubyte", np.ones((2, 2, 2)), 2051)
    write_idx(tmp_path / "train-labels.idx1-ubyte", [3, 4], 2049)
    X, y = datasets.load_mnist(str(tmp_path))
    assert X.shape == (2, 4) and y.tolist() == [3, 4]


def test_load_mnist_reads_gzip_by_content(tmp_path):
    # A gzipped file without the .gz suffix is still read.
    write_idx(tmp_path / "train-images-idx3-ubyte", np.ones((2, 2, 2)), 2051, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", [1, 2], 2049)
    assert datasets.load_mnist(tmp_path)[0].shape == (2, 4)


def test_load_mnist_missing_file_says_where_to_get_it(tmp_path):
    write_mnist(tmp_path, kind="train")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte") as info:
        datasets.load_mnist(tmp_path, kind="test")
    assert "yann.lecun.com" in str(info.value) and "fashion-mnist" in str(info.value)


def test_load_mnist_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.load_mnist(tmp_path / "nowhere")


def test_load_mnist_wrong_magic(tmp_path):
    write_mnist(tmp_path)
    # Labels where images belong.
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(5), 2049)
    with pytest.raises(ValueError, match="magic number 2049, expected 2051"):
        datasets.load_mnist(tmp_path)


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_truncated(tmp_path, compress):
    write_mnist(tmp_path, compress=compress)
    name = "train-images-idx3-ubyte" + (".gz" if compress else "")
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[:-7])
    with pytest.raises(ValueError, match="truncated|damaged"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_too_long_and_too_short(tmp_path):
    write_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="longer than its header"):
        datasets.load_mnist(tmp_path)
    labels.write_bytes(b"\0\0\x08\x01\0\0")
    with pytest.raises(ValueError, match="truncated: only 6 bytes"):
        datasets.load_mnist(tmp_path)
    labels.write_bytes(b"\0\0\x08")
    with pytest.raises(ValueError, match="magic number missing"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_count_mismatch(tmp_path):
    write_mnist(tmp_path, n=5)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4), 2049)
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        datasets.load_mnist(tmp_path)


def test_load_mnist_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(tmp_path, kind="validation")


# ----------------------------------------------------------------------- CSV
def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_numeric_without_header(tmp_path):
    path = write(tmp_path, "0.5,1,0\n1.5,2,1\n2.5,3,2\n\n")
    X, y = datasets.load_csv(path)
    check_xy(X, y, 3, 2)
    np.testing.assert_array_equal(X, [[0.5, 1], [1.5, 2], [2.5, 3]])
    assert y.tolist() == [0, 1, 2]


def test_csv_header_is_inferred_and_target_named(tmp_path):
    path = write(tmp_path, "label,a,b\n1,0.5,1\n0,1.5,2\n")
    X, y = datasets.load_csv(path, target="label")
    np.testing.assert_array_equal(X, [[0.5, 1], [1.5, 2]])
    assert y.tolist() == [1, 0]
    X, y = datasets.load_csv(path, target=0)
    assert y.tolist() == [1, 0]


def test_csv_explicit_header_flags(tmp_path):
    path = write(tmp_path, "1,2,0\n3,4,1\n")
    X, y = datasets.load_csv(path, header=True)   # the first row taken as names
    assert X.shape == (1, 2) and y.tolist() == [1]
    X, y = datasets.load_csv(path, header=False)
    assert X.shape == (2, 2)
    with pytest.raises(ValueError, match="header"):
        datasets.load_csv(path, header="yes")


def test_csv_string_classes(tmp_path):
    path = write(tmp_path, "x;y;species\n1;2;setosa\n3;4;virginica\n5;6; setosa\n7;8;versicolor\n")
    X, y, classes = datasets.load_csv(path, target="species", delimiter=";",
                                      return_classes=True)
    assert X.shape == (4, 2)
    assert classes.tolist() == ["setosa", "versicolor", "virginica"]
    assert y.tolist() == [0, 2, 0, 1]
    assert y.dtype == np.int64


def test_csv_string_classes_without_header(tmp_path):
    # A column of class names must not be mistaken for a header.
    path = write(tmp_path, "1,2,cat\n3,4,dog\n")
    X, y = datasets.load_csv(path)
    assert X.shape == (2, 2) and y.tolist() == [0, 1]


def test_csv_numeric_labels(tmp_path):
    path = write(tmp_path, "1,3\n2,1.0\n3,3\n")
    _, y, classes = datasets.load_csv(path, return_classes=True)
    assert y.tolist() == [3, 1, 3]               # whole numbers >= 0 are kept
    assert classes.tolist() == [0, 1, 2, 3]
    path = write(tmp_path, "1,-1\n2,1\n3,-1\n")
    _, y, classes = datasets.load_csv(path, return_classes=True)
    assert y.tolist() == [0, 1, 0] and classes.tolist() == [-1, 1]


def test_csv_rejects_fractional_target(tmp_path):
    with pytest.raises(ValueError, match="fractional"):
        datasets.load_csv(write(tmp_path, "1,0.5\n2,1.5\n"))


def test_csv_features_only(tmp_path):
    X, y = datasets.load_csv(write(tmp_path, "a,b\n1,2\n3,4\n"), target=None)
    assert y is None and X.shape == (2, 2)


def test_csv_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        datasets.load_csv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="line 3: 2 fields, but the first row has 3"):
        datasets.load_csv(write(tmp_path, "1,2,0\n3,4,1\n5,6\n"))
    with pytest.raises(ValueError, match=r"line 3, column 'b': feature 'oops' is not a number"):
        datasets.load_csv(write(tmp_path, "a,b,c\n1,2,0\n3,oops,1\n"))
    with pytest.raises(ValueError, match="line 2, column 0: feature '' is not a number"):
        datasets.load_csv(write(tmp_path, "1,2,0\n,4,1\n"))
    with pytest.raises(ValueError, match="not a finite number"):
        datasets.load_csv(write(tmp_path, "1,2,0\nnan,4,1\n"))
    with pytest.raises(ValueError, match="empty"):
        datasets.load_csv(write(tmp_path, "\n\n"))
    with pytest.raises(ValueError, match="no data rows"):
        datasets.load_csv(write(tmp_path, "a,b\n"))
    with pytest.raises(ValueError, match="no column 'd'"):
        datasets.load_csv(write(tmp_path, "a,b,c\n1,2,0\n"), target="d")
    with pytest.raises(ValueError, match="no header"):
        datasets.load_csv(write(tmp_path, "1,2,0\n"), target="c")
    with pytest.raises(ValueError, match="out of range"):
        datasets.load_csv(write(tmp_path, "1,2,0\n"), target=3)
    with pytest.raises(ValueError, match="only the target"):
        datasets.load_csv(write(tmp_path, "0\n1\n"))
