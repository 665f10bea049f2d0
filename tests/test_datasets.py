"""cyprop.datasets: built-in problems, the split, MNIST IDX files and CSV tables."""

import gzip
import re
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
    # quoted: zsh, macOS's shell, takes an unquoted cyprop[sklearn] for a file pattern
    with pytest.raises(ImportError,
                       match=r'pip install scikit-learn.*pip install "cyprop\[sklearn\]"'):
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


@pytest.mark.parametrize("classes", ["3", None, [2]])
def test_spirals_checks_classes_before_comparing_n_with_it(classes):
    # n was checked first, against classes: "'<' not supported between 'int' and 'str'"
    with pytest.raises(TypeError, match="classes must be an integer"):
        datasets.spirals(n=10, classes=classes)


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


def test_train_test_split_refuses_a_single_value():
    # a 0-d X or y raised IndexError "tuple index out of range"
    with pytest.raises(TypeError, match="X must be an array of samples, got the single value 5"):
        datasets.train_test_split(5, [1, 2])
    with pytest.raises(TypeError, match="y must be an array of samples"):
        datasets.train_test_split(np.zeros((4, 2)), np.float64(1.0))



def test_train_test_split_refuses_sparse_by_name():
    # np.asarray wraps a sparse matrix in a 0-d object array: it was refused as "the
    # single value <Compressed Sparse Row sparse matrix ...>"
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.csr_matrix(np.eye(4))
    with pytest.raises(TypeError, match=r"X is a scipy.sparse csr_matrix: .*X.toarray\(\)"):
        datasets.train_test_split(X, [0, 1, 0, 1])
    with pytest.raises(TypeError, match=r"y is a scipy.sparse csr_matrix"):
        datasets.train_test_split(np.eye(4), sparse.csr_matrix(np.eye(4)))
    assert datasets.train_test_split(X.toarray(), [0, 1, 0, 1])[0].shape == (3, 4)

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
    (tmp_path / "a-file").write_text("")   # (it said the folder did not exist)
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        datasets.load_mnist(tmp_path / "a-file")


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


def test_load_mnist_gzip_longer_than_its_header_is_not_decompressed_whole(tmp_path):
    # A small .gz that inflates to far more than its header declares (a gzip bomb, or
    # a damaged file) is refused once the declared bytes and one more are read: the
    # memory used is what the header declares, not what the file inflates to.
    import tracemalloc
    import zlib

    write_mnist(tmp_path, n=5)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)   # 31: the gzip format
    data = packer.compress(struct.pack(">IIII", 2051, 5, 3, 4))
    data += b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()
    assert len(data) < 1 << 20                           # 64 MiB inflated
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="longer than its header"):
            datasets.load_mnist(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_load_mnist_corrupted_gzip_is_a_value_error(tmp_path):
    # Damaged deflate data (not only a cut): zlib raises its own error, not an OSError.
    write_mnist(tmp_path, n=50, compress=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[12:40] = bytes(b ^ 0xFF for b in data[12:40])
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged gzip"):
        datasets.load_mnist(tmp_path)


@pytest.mark.parametrize("images, labels, message", [
    ((0, 3, 4), (0,), r"train-images-idx3-ubyte holds no images \(its header gives shape "
                      r"\(0, 3, 4\)\)"),
    ((2, 3, 4), (0,), r"train-labels-idx1-ubyte holds no labels"),
    ((2, 0, 4), (2,), r"train-images-idx3-ubyte holds images of no pixels"),
    ((2, 3, 0), (2,), r"holds images of no pixels"),
])
def test_load_mnist_no_images_or_no_pixels_is_refused(tmp_path, images, labels, message):
    """A file of 0 images (as a header-only file is) loaded as 0 rows, which fit,
    evaluate and predict all refuse as 'X is empty', without naming the file."""
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(images), 2051)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(labels), 2049)
    with pytest.raises(ValueError, match=message):
        datasets.load_mnist(tmp_path)


def test_load_mnist_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(tmp_path, kind="validation")
    # an unhashable kind raised "unhashable type: 'list'" from the lookup
    with pytest.raises(ValueError, match=r"kind must be 'train' or 'test', got \['train'\]"):
        datasets.load_mnist(tmp_path, kind=["train"])



def test_load_mnist_special_files_are_named_not_missing(tmp_path):
    # A FIFO, device or folder under a file's name was "not found"; the FIFO, found
    # a moment later, blocked the open.
    import os

    write_idx(tmp_path / "train-images-idx3-ubyte", np.ones((2, 2, 2)), 2051)
    labels = tmp_path / "train-labels-idx1-ubyte"
    for make, kind in ((lambda: os.mkfifo(labels), "a FIFO"),
                       (lambda: os.symlink(os.devnull, labels), "a character device"),
                       (lambda: labels.mkdir(), "a directory")):
        make()
        with pytest.raises(ValueError, match=f"{re.escape(repr(str(labels)))} is {kind}.*, "
                                             "not a MNIST file"):
            datasets.load_mnist(tmp_path)
        labels.rmdir() if labels.is_dir() and not labels.is_symlink() else labels.unlink()


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
    with pytest.raises(ValueError, match="line 2, column 0: missing value"):
        datasets.load_csv(write(tmp_path, "1,2,0\n,4,1\n"))
    with pytest.raises(ValueError, match="not a finite number"):
        datasets.load_csv(write(tmp_path, "1,2,0\nnan,4,1\n"))
    with pytest.raises(ValueError, match="empty"):
        datasets.load_csv(write(tmp_path, "\n\n"))
    with pytest.raises(ValueError, match=r"no data rows$"):
        datasets.load_csv(write(tmp_path, "a,b\n"))
    with pytest.raises(ValueError, match="no column 'd'"):
        datasets.load_csv(write(tmp_path, "a,b,c\n1,2,0\n"), target="d")
    with pytest.raises(ValueError, match="no header"):
        datasets.load_csv(write(tmp_path, "1,2,0\n"), target="c")
    with pytest.raises(ValueError, match="out of range"):
        datasets.load_csv(write(tmp_path, "1,2,0\n"), target=3)
    with pytest.raises(ValueError, match="only the target"):
        datasets.load_csv(write(tmp_path, "0\n1\n"))


# ------------------------------------------------------- CSV: header and rows

@pytest.mark.parametrize("delimiter", ["\t", ";"])
def test_csv_read_with_the_wrong_delimiter_names_the_one_it_holds(tmp_path, delimiter):
    # read as one column of text: one line looked like a header without data, more like a
    # target without features, and neither message said why
    line = delimiter.join(["1", "2", "3", "0"])
    hint = re.escape(f"(its lines hold {delimiter!r}: pass delimiter={delimiter!r}")
    with pytest.raises(ValueError, match=f"no data rows {hint}"):
        datasets.load_csv(write(tmp_path, line + "\n"))
    with pytest.raises(ValueError, match=f"only the target column, no features {hint}"):
        datasets.load_csv(write(tmp_path, f"{line}\n{line}\n"))
    X, y = datasets.load_csv(write(tmp_path, f"{line}\n{line}\n"), delimiter=delimiter)
    assert X.shape == (2, 3) and list(y) == [0, 0]
    with pytest.raises(ValueError, match=r"only the target column, no features$"):
        datasets.load_csv(write(tmp_path, "0\n1\n"))   # one column, and nothing else

def write_bytes(tmp_path, data, name="data.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("text, line, column", [
    ("1,,0\n2,3,1\n4,5,0\n", 1, 1),           # was taken for a header and dropped
    ("1,2,0\n3,,1\n", 2, 1),
    ("a,b,c\n1,2,0\n ,4,1\n", 3, "'a'"),
])
def test_csv_missing_feature_is_an_error_naming_line_and_column(tmp_path, text, line, column):
    with pytest.raises(ValueError, match=rf"line {line}, column {column}: missing value"):
        datasets.load_csv(write(tmp_path, text))
    with pytest.raises(ValueError, match=rf"line {line}, column {column}: missing value"):
        datasets.load_csv(write(tmp_path, text), target=None)


def test_csv_missing_target_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="line 2, column 2: the target is missing"):
        datasets.load_csv(write(tmp_path, "1,2,0\n3,4,\n"))


def test_csv_a_data_row_is_never_a_header(tmp_path):
    # Any number in the first row makes it data, whatever the second row holds.
    for text in ("1,x,0\n2,3,1\n", "0.5,nan_label\n1,2\n"):
        with pytest.raises(ValueError, match="line 1"):
            datasets.load_csv(write(tmp_path, text))
    # Names above names: no header either (and names are no features).
    with pytest.raises(ValueError, match="line 1, column 0: feature 'a' is not a number"):
        datasets.load_csv(write(tmp_path, "a,b\nc,d\n"))


def test_csv_header_with_an_empty_name_is_refused(tmp_path):
    path = write(tmp_path, ",x,label\n0,1.5,1\n1,2.5,0\n")     # pandas' index column
    with pytest.raises(ValueError, match="line 1: looks like a header .* column 0 has no "
                                         "name .* header=True or header=False"):
        datasets.load_csv(path)
    X, y = datasets.load_csv(path, header=True, target="label")
    assert X.tolist() == [[0, 1.5], [1, 2.5]] and y.tolist() == [1, 0]


def test_csv_numeric_column_names_suggest_header_true(tmp_path):
    path = write(tmp_path, "1,2,label\n0.5,0.1,0\n0.2,0.3,1\n")
    with pytest.raises(ValueError, match="pass header=True"):
        datasets.load_csv(path)
    with pytest.raises(ValueError, match="line 1, column 2: feature 'label'.*header=True"):
        datasets.load_csv(path, target=None)
    X, y = datasets.load_csv(path, header=True)
    assert X.shape == (2, 2) and y.tolist() == [0, 1]


def test_csv_rows_of_empty_fields_are_blank(tmp_path):
    X, y = datasets.load_csv(write(tmp_path, ",,\n1,2,0\n , ,\n3,4,1\n,,\n"))
    assert X.tolist() == [[1, 2], [3, 4]] and y.tolist() == [0, 1]


def test_csv_duplicate_target_name(tmp_path):
    with pytest.raises(ValueError, match="2 columns named 'a'"):
        datasets.load_csv(write(tmp_path, "a,a,b\n1,2,0\n"), target="a")


# ------------------------------------------------------------- CSV: labels
@pytest.mark.parametrize("labels, y, classes", [
    (["0", "9"], [0, 9], list(range(10))),              # digits, some missing: kept
    (["1", "2", "2"], [1, 2, 2], [0, 1, 2]),             # counted from 1: kept
    (["1", "1.0", "3e0"], [1, 1, 3], [0, 1, 2, 3]),      # the same number is one class
    (["100", "5000", "100"], [0, 1, 0], [100, 5000]),    # sparse: mapped
    (["100000000", "0"], [1, 0], [0, 100000000]),        # was 10**8 outputs (24 GiB)
    (["-1", "1"], [0, 1], [-1, 1]),
    (["b", "a", "b"], [1, 0, 1], ["a", "b"]),
])
def test_csv_label_rules(tmp_path, labels, y, classes):
    text = "".join(f"{i},{label}\n" for i, label in enumerate(labels))
    _, got, got_classes = datasets.load_csv(write(tmp_path, text), return_classes=True)
    assert got.tolist() == y and got_classes.tolist() == classes
    assert got.dtype == np.int64


@pytest.mark.parametrize("label, message", [
    ("1e300", "too large for a class number"),            # was a negative class
    ("9007199254740992", "too large for a class number"),
    ("1.5", "fractional"),
    ("nan", "not a finite number"),
    ("-inf", "not a finite number"),
])
def test_csv_refused_labels(tmp_path, label, message):
    with pytest.raises(ValueError, match=f"line 2, column 1: target '{label}' .*{message}"):
        datasets.load_csv(write(tmp_path, f"1,0\n2,{label}\n"))


def test_csv_labels_are_numbers_or_names_not_both(tmp_path):
    with pytest.raises(ValueError, match="line 3, column 1: target 'NA' is a name, but the "
                                         "target on line 1 \\('0'\\) is a number"):
        datasets.load_csv(write(tmp_path, "1,0\n2,1\n3,NA\n"))


def test_csv_too_many_classes(tmp_path):
    rows = "".join(f"{i},{i}\n" for i in range(datasets.MAX_CLASSES + 1))
    with pytest.raises(ValueError, match=f"line {datasets.MAX_CLASSES + 1}, .* more than "
                                         f"{datasets.MAX_CLASSES} distinct targets"):
        datasets.load_csv(write(tmp_path, rows))
    X, y = datasets.load_csv(write(tmp_path, rows), target=None)   # features are fine
    assert X.shape == (datasets.MAX_CLASSES + 1, 2) and y is None


# --------------------------------------------------- CSV: bytes and sizes
def test_csv_encodings_and_line_ends(tmp_path):
    for data in (b"\xef\xbb\xbfa,b\n1,0\n2,1\n", b"a,b\r1,0\r2,1", b"a,b\r\n1,0\r\n2,1\r\n"):
        X, y = datasets.load_csv(write_bytes(tmp_path, data), target="b")
        assert X.tolist() == [[1], [2]] and y.tolist() == [0, 1]


@pytest.mark.parametrize("boms", [2, 3])
def test_csv_a_doubled_byte_order_mark_is_dropped_too(tmp_path, boms):
    """A file given a BOM by two tools in turn: utf-8-sig dropped the first, and the
    second stayed in the first column's name ('\ufeffa' is no column 'a') or made the
    first feature not a number."""
    bom = b"\xef\xbb\xbf" * boms
    X, y = datasets.load_csv(write_bytes(tmp_path, bom + b"a,b\n1,0\n2,1\n"), target="a")
    assert X.tolist() == [[0], [1]] and y.tolist() == [1, 2]
    X, y = datasets.load_csv(write_bytes(tmp_path, bom + b"1,0\n2,1\n"), target=0)
    assert X.tolist() == [[0], [1]] and y.tolist() == [1, 2]


@pytest.mark.parametrize("data, message", [
    (b"1,2,0\n3,\xff,1\n", r"line 2: not UTF-8 text \(byte 0xff\)"),
    ("a,b\n1,2\n".encode("utf-16"), "line 1: not UTF-8 text"),
    (b"1,2\x00,0\n", r"line 1, column 1: feature '2\\x00' holds a NUL byte"),
    (b"1,2\x1e,0\n", r"line 1, column 1: feature '2\\x1e' is not a number"),  # fuzzer
    (b'1,"2,0\n3,4,1\n', r"line 2: not valid CSV \(unexpected end of data\)"),
    (b'1,"2"x,0\n', "line 1: not valid CSV"),
    (b"1,1e999,0\n", "line 1, column 1: '1e999' is not a finite number"),
    (b"1,2," + b"9" * 200_000 + b"\n", r"line 1: not valid CSV \(field larger than field limit"),
    (b"\n" + b"0," * datasets.MAX_COLUMNS + b"0\n", "line 2: more than 100,000 fields"),
])
def test_csv_bad_bytes_are_clear_errors(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        datasets.load_csv(write_bytes(tmp_path, data))


def test_csv_a_label_holding_a_nul_byte_is_refused(tmp_path):
    """NumPy's strings drop trailing NULs: 'cat' and 'cat\\0' were two classes whose
    classes entries both read 'cat'."""
    path = write_bytes(tmp_path, b"1,cat\n2,cat\x00\n3,dog\n")
    with pytest.raises(ValueError, match=r"line 2, column 1: target 'cat\\x00' holds a NUL "
                                         "byte"):
        datasets.load_csv(path, return_classes=True)


def test_csv_record_length_is_limited(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "MAX_RECORD_CHARS", 1000)
    X, _ = datasets.load_csv(write(tmp_path, "0." + "1" * 990 + ",0\n"))
    assert X.shape == (1, 1)
    with pytest.raises(ValueError, match="line 2: a record longer than 1,000 characters"):
        datasets.load_csv(write(tmp_path, "1,0\n" + "1" * 1200))       # no line end at all
    with pytest.raises(ValueError, match="line 4: a record longer"):   # a quote left open
        datasets.load_csv(write(tmp_path, '1,0\n2,"\n' + ("x" * 600 + "\n") * 3))


def test_csv_options_are_checked(tmp_path):
    path = write(tmp_path, "1,0\n")
    for delimiter in ("", ",,", '"', "\n", ".", "-", "1", 7):
        with pytest.raises(ValueError, match="delimiter"):
            datasets.load_csv(path, delimiter=delimiter)
    with pytest.raises(TypeError, match="target"):
        datasets.load_csv(path, target=1.0)
    assert datasets.load_csv(write(tmp_path, "1\t2\t0\n"), delimiter="\t")[0].shape == (1, 2)
    # an exponent's letter is part of a number too: "1.5e3e0" read as 1.5, 3 and class 0
    exponent = write(tmp_path, "1.5e3e0\n")
    for delimiter in ("e", "E"):
        with pytest.raises(ValueError, match="cannot separate fields of numbers"):
            datasets.load_csv(exponent, delimiter=delimiter)


def test_csv_header_none_means_no_header(tmp_path):
    X, _ = datasets.load_csv(write(tmp_path, "1,0\n2,1\n"), header=None)
    assert X.shape == (2, 1)


# ---------------------------------------------- CSV: in a child process only
REPLAY = """
import sys
from pathlib import Path
import numpy as np
from cyprop import datasets

loaded = refused = 0
for path in sorted(Path(sys.argv[1]).iterdir()):
    for target, header, delimiter in ((-1, "infer", ","), (None, "infer", ","),
                                      (0, True, ","), (-1, "infer", ";")):
        try:
            X, y, classes = datasets.load_csv(path, target=target, header=header,
                                              delimiter=delimiter, return_classes=True)
        except (ValueError, OSError, TypeError) as exc:
            assert str(exc).strip(), (path, type(exc))
            refused += 1
            continue
        assert X.dtype == np.float64 and X.ndim == 2 and np.isfinite(X).all(), path
        if target is not None:
            assert y.dtype == np.int64 and y.shape == (len(X),), path
            assert 0 <= y.min() and y.max() < len(classes), path
        loaded += 1
print(loaded, refused)
"""


def test_csv_corpus_replays_cleanly(tmp_path):
    """Every file of tests/corpus/csv (crafted, and what the fuzzer found) loads or is
    refused with a clear error; a crash would take the child down, not the tests."""
    import subprocess
    import sys
    from pathlib import Path

    corpus = Path(__file__).parent / "corpus" / "csv"
    if not corpus.is_dir():
        pytest.skip("no tests/corpus/csv beside these tests")
    done = subprocess.run([sys.executable, "-c", REPLAY, str(corpus)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    loaded, refused = map(int, done.stdout.split())
    assert loaded > 0 and refused > 0 and loaded + refused == 4 * len(list(corpus.iterdir()))


def test_csv_special_files_are_refused_without_blocking(tmp_path):
    import os
    import subprocess
    import sys

    os.mkfifo(tmp_path / "fifo")
    code = ("import sys\nfrom cyprop import datasets\n"
            "for path in sys.argv[1:]:\n"
            "    try:\n        datasets.load_csv(path)\n"
            "    except ValueError as exc:\n        print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "fifo"), str(tmp_path),
                           os.devnull], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{str(tmp_path / 'fifo')!r} is a FIFO (named pipe), not a CSV file",
        f"{str(tmp_path)!r} is a directory, not a CSV file",
        f"{os.devnull!r} is a character device, not a CSV file"]


# ---------------------------------------------------------------- public API
PUBLIC = ["load_csv", "load_digits", "load_mnist", "moons", "spirals", "train_test_split",
          "xor"]


def test_the_module_shows_only_its_data_set_functions():
    import rlcompleter

    assert sorted(datasets.__all__) == PUBLIC
    assert dir(datasets) == PUBLIC
    namespace = {}
    exec("from cyprop.datasets import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == PUBLIC
    # The standard library is imported under private names: nothing to complete.
    for name in ("array", "csv", "gzip", "itertools", "math", "numbers", "os", "re", "stat"):
        assert not hasattr(datasets, name), name
    # What the standard REPL offers after `datasets.` (rlcompleter reads dir()).
    completer = rlcompleter.Completer({"datasets": datasets})
    offered, state = [], 0
    while (match := completer.complete("datasets.", state)) is not None:
        offered.append(match.removeprefix("datasets.").rstrip("()"))
        state += 1
    assert sorted(offered) == PUBLIC
    for name in PUBLIC:
        assert callable(getattr(datasets, name)) and getattr(datasets, name).__doc__


@pytest.mark.parametrize("field", ["1_0", "\u0661", "\uff11", " 1_0\u00a0"])
def test_csv_refuses_numbers_only_python_reads(tmp_path, field):
    """float() reads 1_0 as 10 and digits of other scripts as numbers; NumPy's loadtxt
    and pandas do not, and cyprop read them silently."""
    with pytest.raises(ValueError, match=r"line 2, column 'b': feature .* is not a plain number"):
        datasets.load_csv(write(tmp_path, f"a,b,c\n1,{field},0\n3,4,1\n"))
    # the target column's class names may be anything
    # (and spaces of any script around a number are spaces, as NumPy's loadtxt reads them)
    X, y, classes = datasets.load_csv(write(tmp_path, "a,b,c\n1,2\u00a0,caf\u00e9_1\n3,4,b\n"),
                                      return_classes=True)
    assert X.tolist() == [[1, 2], [3, 4]] and list(classes) == ["b", "caf\u00e9_1"]


@pytest.mark.parametrize("label", ["1_1", "\u0661\u0661", "\uff11\uff11"])
def test_csv_targets_only_python_reads_as_numbers_are_names(tmp_path, label):
    # float() read "1_1" (and "١١") as 11: a class of that name merged with class 11
    with pytest.raises(ValueError, match=r"line 3, column 1: target '11' is a number, but "
                                         r"the target on line 1 .* is a name"):
        datasets.load_csv(write(tmp_path, f"1,{label}\n2,{label}\n3,11\n"))
    X, y, classes = datasets.load_csv(write(tmp_path, f"1,{label}\n2,a\n3,{label}\n"),
                                      return_classes=True)
    assert sorted(classes) == sorted(["a", label])
    assert classes[y].tolist() == [label, "a", label]
